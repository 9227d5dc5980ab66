//! Every containerlab topology in testbed/topologies comes up in plain
//! namespaces from its `.clab.yml`: each node runs, every merled session
//! is Established, and every node's kernel holds every other merled
//! node's blocks; then it comes down and leaves nothing.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

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

#[test]
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
        // Every node still running, FRR's and the switches' too.
        let st = topology::status(Some(&name), bin_dir).unwrap();
        assert!(!st.contains("STOPPED"), "{st}");
        // The same names as in the file.
        let links = run(&lab, &merled[0], &["ip", "-br", "link"]);
        assert!(links.contains("eth1@"), "{links}");
        drop(guard);
        assert!(!Path::new(topology::STATE_ROOT).join(&name).exists());
        let ns =
            String::from_utf8_lossy(&std::process::Command::new("ip").args(["netns", "list"]).output().unwrap().stdout)
                .into_owned();
        assert!(!ns.contains(&name), "namespaces left: {ns}");
    }
}
