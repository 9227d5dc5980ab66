//! Every containerlab topology in testbed/topologies comes up in plain
//! namespaces from its `.clab.yml`: each node runs, every merled session
//! is Established, and every node's kernel holds every other merled
//! node's blocks; then it comes down and leaves nothing. In the DSR
//! topology, a client behind the ToR also reaches the services.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use testbed::echo::{ask_tcp, ask_udp, Echo};
use testbed::netns::NsPath;
use testbed::topology::{self, Lab, Topology};

/// Downs the lab on drop, on failure too.
struct Up(Option<Lab>);

impl Drop for Up {
    fn drop(&mut self) {
        if let Some(l) = self.0.take() {
            let _ = topology::down(&l.name);
        }
    }
}

fn files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("topologies");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".clab.yml"))
        .collect();
    v.sort();
    v
}

/// A merled node's config, from its bind onto /etc/merle/merled.toml.
fn merled_config(t: &Topology, node: &str) -> conf::Config {
    let n = t.nodes.iter().find(|n| n.name == node).unwrap();
    let b = n.binds.iter().find(|b| b.node == Path::new("/etc/merle/merled.toml")).unwrap();
    conf::load(&b.host).unwrap_or_else(|e| panic!("{node}'s config: {e}"))
}

fn run(lab: &Lab, node: &str, argv: &[&str]) -> String {
    let argv: Vec<String> = argv.iter().map(|s| (*s).to_owned()).collect();
    let out = topology::node_command(lab, node, &argv).unwrap().output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The DSR topology: each node's pod, the blocks in every kernel, then a
/// client behind the ToR reaches the load-balancer IPs and a NodePort,
/// every backend answers, each sees the client's own address, and every
/// answer comes from the address the client asked. Returns a process
/// left running in n1's pod, which the lab's end must end.
fn dsr(lab: &Lab, merled: &[String]) -> std::process::Child {
    let pid = |n: &str| lab.nodes[n].1;
    let client = NsPath(PathBuf::from(format!("/proc/{}/ns/net", pid("client"))));
    let me: IpAddr = "192.168.100.2".parse().unwrap();
    let mut servers = Vec::new();
    for (i, n) in merled.iter().enumerate() {
        let pod = format!("10.244.{}.0/32", i + 1);
        testbed::wait::poll(&format!("{n}'s pod {pod}"), Duration::from_secs(60), || {
            run(lab, n, &["ip", "-n", "pod", "-4", "-o", "addr", "show", "dev", "eth0"]).contains(&pod).then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}: {}", run(lab, n, &["ip", "netns", "list"])));
        for (j, o) in merled.iter().enumerate() {
            if i == j {
                continue;
            }
            let block = format!("10.244.{}.0/26", j + 1);
            testbed::wait::poll(&format!("{n}: {o}'s block {block}"), Duration::from_secs(40), || {
                run(lab, n, &["ip", "route", "show", "proto", "198"]).contains(&block).then_some(())
            })
            .unwrap_or_else(|e| panic!("{e}: {}", run(lab, n, &["ip", "route"])));
        }
        // The pod's namespace is a file of the node's own /run.
        let at = NsPath(PathBuf::from(format!("/proc/{}/root/run/netns/pod", pid(n))));
        servers.push(Echo::tcp(&at, "0.0.0.0:8080".parse().unwrap(), n).unwrap());
        servers.push(Echo::udp(&at, "0.0.0.0:5353".parse().unwrap(), n).unwrap());
    }
    testbed::wait::poll("192.0.2.0/24 over the three nodes at the ToR", Duration::from_secs(40), || {
        (run(lab, "tor", &["ip", "route", "show", "192.0.2.0/24"]).matches("nexthop").count() == 3).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}: {}", run(lab, "tor", &["ip", "route"])));
    let web: SocketAddr = "192.0.2.10:80".parse().unwrap();
    // Each node programs the services once its pods' addresses are known.
    testbed::wait::poll("the first connection to 192.0.2.10:80", Duration::from_secs(40), || {
        ask_tcp(&client, web).ok()
    })
    .unwrap();
    let check = |to: SocketAddr, tries: usize, udp: bool| {
        let mut seen = BTreeSet::new();
        for k in 0..tries {
            let a = if udp { ask_udp(&client, to) } else { ask_tcp(&client, to) }
                .unwrap_or_else(|e| panic!("{to}, try {k}: {e:#}"));
            assert_eq!(a.peer.ip(), me, "{to}: the backend saw {a:?}, not the client's own address");
            assert_eq!(a.from, to, "{to}: the answer came from another address: {a:?}");
            seen.insert(a.server);
        }
        let all: BTreeSet<String> = merled.iter().cloned().collect();
        assert_eq!(seen, all, "{to}: not every backend answered in {tries} tries");
    };
    check(web, 120, false);
    check("10.0.0.1:30080".parse().unwrap(), 60, false);
    check("192.0.2.53:53".parse().unwrap(), 60, true);
    let argv: Vec<String> = ["ip", "netns", "exec", "pod", "sleep", "600"].map(String::from).to_vec();
    topology::node_command(lab, &merled[0], &argv).unwrap().spawn().unwrap()
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn every_topology_comes_up_in_namespaces_converges_and_comes_down() {
    if testbed::skip_unless_root("every_topology_comes_up_in_namespaces") {
        return;
    }
    let bin = testbed::merled::sibling_binary("merled").unwrap();
    let bin_dir = bin.parent().unwrap();
    let merlectl = bin_dir.join("merlectl").display().to_string();
    let all = files();
    assert!(all.len() >= 2, "{all:?}");
    for file in all {
        let t = Topology::load(&file).unwrap();
        let name = format!("{}-{}", t.name, std::process::id());
        let lab =
            topology::up_named(&file, bin_dir, Some(&name)).unwrap_or_else(|e| panic!("{}: {e:#}", file.display()));
        let guard = Up(Some(lab.clone()));
        let merled: Vec<String> = lab.merled.clone();
        assert!(!merled.is_empty(), "{}", file.display());
        // Every session Established.
        let log = |n: &str| {
            std::fs::read_to_string(Path::new(topology::STATE_ROOT).join(&name).join(n).join("log")).unwrap_or_default()
        };
        for n in &merled {
            testbed::wait::poll(&format!("{name}/{n}: every session Established"), Duration::from_secs(40), || {
                let v: serde_json::Value =
                    serde_json::from_str(&run(&lab, n, &[&merlectl, "--json", "status"])).ok()?;
                let peers = v["peers"].as_array()?.clone();
                (!peers.is_empty() && peers.iter().all(|p| p["state"] == "Established")).then_some(())
            })
            .unwrap_or_else(|e| panic!("{e}\n{}", log(n)));
        }
        // Every node's kernel has every other node's blocks.
        let blocks: Vec<(String, Vec<String>)> = merled
            .iter()
            .map(|n| (n.clone(), merled_config(&t, n).advertise.iter().map(|a| a.prefix.to_string()).collect()))
            .collect();
        for n in &merled {
            let want: Vec<&String> = blocks.iter().filter(|(o, _)| o != n).flat_map(|(_, b)| b).collect();
            testbed::wait::poll(
                &format!("{name}/{n}: every other node's block in the kernel"),
                Duration::from_secs(40),
                || {
                    let routes = run(&lab, n, &["ip", "route", "show", "proto", "198"]);
                    want.iter().all(|b| routes.lines().any(|l| l.starts_with(b.as_str()))).then_some(())
                },
            )
            .unwrap_or_else(|e| panic!("{e}: {}\n{}", run(&lab, n, &["ip", "route"]), log(n)));
        }
        let in_pod = (t.name == "dsr").then(|| dsr(&lab, &merled));
        // Every node still running, FRR's and the switches' too.
        let st = topology::status(Some(&name), bin_dir).unwrap();
        assert!(!st.contains("STOPPED"), "{st}");
        // The same names as in the file.
        let links = run(&lab, &merled[0], &["ip", "-br", "link"]);
        assert!(links.contains("eth1@"), "{links}");
        drop(guard);
        if let Some(mut p) = in_pod {
            let gone = testbed::wait::poll("the pod's process to end with the lab", Duration::from_secs(5), || {
                p.try_wait().ok().flatten()
            });
            if gone.is_err() {
                let _ = p.kill();
                panic!("a process in a pod of {name} outlived the lab");
            }
        }
        assert!(!Path::new(topology::STATE_ROOT).join(&name).exists());
        let ns =
            String::from_utf8_lossy(&std::process::Command::new("ip").args(["netns", "list"]).output().unwrap().stdout)
                .into_owned();
        assert!(!ns.contains(&name), "namespaces left: {ns}");
    }
}
