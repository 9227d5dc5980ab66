//! fib-sync end to end: merled nodes on two routed subnets program their
//! kernels from BGP, and pods (namespaces wired the Calico way) reach each
//! other natively on one subnet and over VXLAN across subnets.
//!
//! ```text
//!   subnet 10.0.0.0/24 (sw1)                 subnet 10.0.1.0/24 (sw2)
//!   A 10.0.0.1  B 10.0.0.2  D 10.0.0.3  --sw1==router link==sw2--  C 10.0.1.1
//!   blocks: A 10.244.1.0/26, B .2, D .4, C .3; pool 10.244.0.0/16 VXLAN CrossSubnet
//!   A and B both advertise the service 10.96.0.10/32: D installs it multipath.
//! ```
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;
use testbed::merled::Merled;
use testbed::netns::{veth, Lan, Netns};
use testbed::wait;

const T: Duration = Duration::from_secs(40);

struct Node {
    name: &'static str,
    addr: &'static str,
    block: u8,
    service: bool,
}

const NODES: [Node; 4] = [
    Node { name: "a", addr: "10.0.0.1", block: 1, service: true },
    Node { name: "b", addr: "10.0.0.2", block: 2, service: true },
    Node { name: "c", addr: "10.0.1.1", block: 3, service: false },
    Node { name: "d", addr: "10.0.0.3", block: 4, service: false },
];

fn config(n: &Node, extra_pool: &str) -> String {
    let mut s = format!(
        "[node]\nname = \"{}\"\naddress = \"{}/24\"\n\n[bgp]\nhold_time = 9\nconnect_retry_time = 1\nconnect_retry_max = 2\n\n\
         [[advertise]]\nprefix = \"10.244.{}.0/26\"\n\n",
        n.name, n.addr, n.block
    );
    if n.service {
        s += "[services]\ncluster_ips = [\"10.96.0.10/32\"]\n\n";
    }
    for m in &NODES {
        s += &format!("[[nodes]]\nname = \"{}\"\naddress = \"{}/24\"\n\n", m.name, m.addr);
    }
    s += "[[pools]]\ncidr = \"10.244.0.0/16\"\nvxlan_mode = \"CrossSubnet\"\n\n";
    s += extra_pool;
    s += "[control]\nsocket = \"{socket}\"\n";
    s
}

/// A pod the Calico way: a /32 on eth0 with 169.254.1.1 as its on-link
/// default gateway, answered by proxy ARP on the host end of the veth.
fn pod(host: &Netns, tag: &str, ip: &str) -> Netns {
    let pod = Netns::new(tag).unwrap();
    let host_end = format!("cali{tag}");
    veth(host, &host_end, &pod, "eth0").unwrap();
    host.ip(&["link", "set", &host_end, "address", "ee:ee:ee:ee:ee:ee"]).unwrap();
    host.exec(&["sysctl", "-qw", &format!("net.ipv4.conf.{host_end}.proxy_arp=1")]).unwrap();
    host.ip(&["route", "add", &format!("{ip}/32"), "dev", &host_end]).unwrap();
    pod.ip(&["addr", "add", &format!("{ip}/32"), "dev", "eth0"]).unwrap();
    pod.ip(&["route", "add", "169.254.1.1", "dev", "eth0", "scope", "link"]).unwrap();
    pod.ip(&["route", "add", "default", "via", "169.254.1.1", "dev", "eth0"]).unwrap();
    pod
}

/// merle's kernel routes on `ns`, in `ip route` words.
fn merle_routes(ns: &Netns) -> Vec<String> {
    ns.routes_of_proto("-4", "198").unwrap()
}

fn wait_routes(ns: &Netns, m: &Merled, want: &[&str]) {
    let want: Vec<String> = want.iter().map(|s| (*s).to_owned()).collect();
    if let Err(e) = wait::poll("merle's kernel routes", T, || (merle_routes(ns) == want).then_some(())) {
        panic!("{e}:\nhave {:#?}\nwant {want:#?}\nlog:\n{}", merle_routes(ns), m.daemon.log_tail(40));
    }
}

fn ping(from: &Netns, to: &str) -> anyhow::Result<String> {
    from.exec(&["ping", "-c", "2", "-i", "0.2", "-W", "2", to])
}

/// (transmitted, received) from ping's summary line.
fn ping_counts(out: &str) -> (u64, u64) {
    let line = out.lines().find(|l| l.contains("packets transmitted")).unwrap_or_default();
    let nums: Vec<u64> = line.split(|c: char| !c.is_ascii_digit()).filter_map(|x| x.parse().ok()).collect();
    (nums.first().copied().unwrap_or(0), nums.get(1).copied().unwrap_or(0))
}

struct Bed {
    _lan1: Lan,
    lan2: Lan,
    hosts: Vec<Netns>,
}

/// Two LANs whose switches are joined by a routed link.
fn bed(tag: &str) -> Bed {
    let mut lan1 = Lan::with_subnet(&format!("{tag}1"), 3, "10.0.0", "fd00:").unwrap();
    let mut lan2 = Lan::with_subnet(&format!("{tag}2"), 1, "10.0.1", "fd00:1:").unwrap();
    veth(&lan1.switch, "rt0", &lan2.switch, "rt0").unwrap();
    lan1.switch.add_addr("rt0", "10.255.0.1/30").unwrap();
    lan2.switch.add_addr("rt0", "10.255.0.2/30").unwrap();
    lan1.switch.ip(&["route", "add", "10.0.1.0/24", "via", "10.255.0.2"]).unwrap();
    lan2.switch.ip(&["route", "add", "10.0.0.0/24", "via", "10.255.0.1"]).unwrap();
    wait::poll("the underlay across the router", T, || lan1.hosts[0].exec(&["ping", "-c1", "-W1", "10.0.1.1"]).ok())
        .unwrap_or_else(|e| {
            panic!(
                "{e}\nsw1: {}\nsw2: {}\n{}",
                lan1.switch.ip(&["route"]).unwrap_or_default(),
                lan2.switch.ip(&["route"]).unwrap_or_default(),
                lan1.switch.ip(&["-br", "addr"]).unwrap_or_default()
            )
        });
    // In NODES order: A, B, C (on LAN 2), D.
    let c = lan2.hosts.remove(0);
    let mut hosts: Vec<Netns> = lan1.hosts.drain(..).collect();
    hosts.insert(2, c);
    Bed { _lan1: lan1, lan2, hosts }
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn pods_reach_each_other_natively_and_over_vxlan_and_survive_a_restart() {
    if testbed::skip_unless_root("pods_reach_each_other_natively_and_over_vxlan_and_survive_a_restart") {
        return;
    }
    let b = bed("fib");
    let _ = &b.lan2;
    let ms: Vec<Merled> = NODES
        .iter()
        .zip(&b.hosts)
        .map(|(n, ns)| Merled::start(ns, n.name, &merled_bin(), &merlectl_bin(), &config(n, "")).unwrap())
        .collect();
    let pods: Vec<Netns> = NODES
        .iter()
        .zip(&b.hosts)
        .map(|(n, ns)| pod(ns, &format!("p{}", n.block), &format!("10.244.{}.10", n.block)))
        .collect();
    let (a, c, d) = (&b.hosts[0], &b.hosts[2], &b.hosts[3]);

    // The routes, exactly as designed.
    let a_routes = [
        "10.244.2.0/26 via 10.0.0.2 dev eth0",
        "10.244.3.0/26 via 10.0.1.1 dev vxlan.merle onlink",
        "10.244.4.0/26 via 10.0.0.3 dev eth0",
        // B's copy of the service (A's own wins in A's RIB, so none here).
        "blackhole 10.244.1.0/26",
    ];
    if wait::poll("A's routes", T, || (merle_routes(a) == a_routes).then_some(())).is_err() {
        panic!(
            "A's routes: {:?}\nA->C ping: {:?}\nA: {}\nC: {}\nC links: {}\nC log:\n{}\nA log:\n{}",
            merle_routes(a),
            a.exec(&["ping", "-c1", "-W1", "10.0.1.1"]),
            a.ip(&["route"]).unwrap_or_default(),
            c.ip(&["route"]).unwrap_or_default(),
            c.ip(&["-br", "link"]).unwrap_or_default(),
            ms[2].daemon.log_tail(60),
            ms[0].daemon.log_tail(20),
        );
    }
    wait_routes(
        c,
        &ms[2],
        &[
            "10.244.1.0/26 via 10.0.0.1 dev vxlan.merle onlink",
            "10.244.2.0/26 via 10.0.0.2 dev vxlan.merle onlink",
            "10.244.4.0/26 via 10.0.0.3 dev vxlan.merle onlink",
            "blackhole 10.244.3.0/26",
        ],
    );
    // ECMP: A and B both advertise the service; D installs both.
    wait_routes(
        d,
        &ms[3],
        &[
            "10.244.1.0/26 via 10.0.0.1 dev eth0",
            "10.244.2.0/26 via 10.0.0.2 dev eth0",
            "10.244.3.0/26 via 10.0.1.1 dev vxlan.merle onlink",
            "10.96.0.10 nexthop via 10.0.0.1 dev eth0 nexthop via 10.0.0.2 dev eth0",
            "blackhole 10.244.4.0/26",
        ],
    );
    assert_eq!(
        a.ip(&["neigh", "show", "dev", "vxlan.merle"]).unwrap().trim(),
        "10.0.1.1 lladdr 02:6d:0a:00:01:01 PERMANENT"
    );
    assert_eq!(
        a.exec(&["bridge", "fdb", "show", "dev", "vxlan.merle"]).unwrap().trim(),
        "02:6d:0a:00:01:01 dst 10.0.1.1 self permanent"
    );
    let mut c_neigh: Vec<String> =
        c.ip(&["neigh", "show", "dev", "vxlan.merle"]).unwrap().lines().map(|l| l.trim().to_owned()).collect();
    c_neigh.sort();
    assert_eq!(
        c_neigh,
        [
            "10.0.0.1 lladdr 02:6d:0a:00:00:01 PERMANENT",
            "10.0.0.2 lladdr 02:6d:0a:00:00:02 PERMANENT",
            "10.0.0.3 lladdr 02:6d:0a:00:00:03 PERMANENT"
        ]
    );
    let link = a.ip(&["-d", "link", "show", "vxlan.merle"]).unwrap();
    assert!(link.contains("mtu 1450") && link.contains("vxlan id 4096") && link.contains("dstport 4789"), "{link}");

    // Pod to pod: native on one subnet, VXLAN across.
    for (from, to) in [(0, "10.244.2.10"), (0, "10.244.3.10"), (2, "10.244.2.10"), (3, "10.244.3.10")] {
        if let Err(e) = ping(&pods[from], to) {
            panic!("pod {from} -> {to}: {e}\nA: {:?}", merle_routes(a));
        }
    }
    // merlectl shows each best route's kernel state.
    let routes = ms[0].routes().unwrap();
    let r = routes.iter().find(|r| r["prefix"] == "10.244.3.0/26" && r["best"] == true).unwrap();
    assert_eq!(r["fib"], "installed");
    let fib: Value = serde_json::from_str(&ms[0].merlectl(&["fib", "--json"]).unwrap()).unwrap();
    assert!(fib.as_array().unwrap().iter().any(|r| r["prefix"] == "10.244.1.0/26" && r["kernel"] == "blackhole"));

    // A route deleted by hand comes back within a second.
    a.ip(&["route", "del", "10.244.2.0/26", "proto", "198"]).unwrap();
    let t = std::time::Instant::now();
    wait_routes(a, &ms[0], &a_routes);
    assert!(t.elapsed() < Duration::from_secs(1), "repaired after {:?}", t.elapsed());

    // A restart of A's merled under a ping flood: a route someone else put
    // in the table survives, and no packet is lost.
    a.ip(&["route", "add", "10.123.0.0/16", "via", "10.0.0.254", "proto", "static"]).unwrap();
    let flood = |to: &str| {
        pods[0]
            .command("ping")
            .args(["-i", "0.005", "-w", "8", "-W", "1", to])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (flood_b, flood_c) = (flood("10.244.2.10"), flood("10.244.3.10"));
    std::thread::sleep(Duration::from_secs(1));
    let mut ms = ms;
    let cfg = std::fs::read_to_string(&ms[0].config).unwrap();
    ms[0].daemon.stop(Duration::from_secs(5));
    // merled is down: its routes are still there.
    assert_eq!(merle_routes(a), a_routes);
    let log = ms[0].socket.parent().unwrap().join("merled.again.log");
    ms[0].write_config(&cfg).unwrap();
    let mut again = testbed::process::Daemon::spawn(
        a,
        "merled a again",
        &[merled_bin().to_str().unwrap(), "--config", ms[0].config.to_str().unwrap()],
        &log,
        &[("MERLE_LOG", "debug")],
    )
    .unwrap();
    let sock = ms[0].socket.clone();
    let status = || -> Option<Value> {
        let out = std::process::Command::new(merlectl_bin())
            .args(["--socket", sock.to_str().unwrap(), "status", "--json"])
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    };
    wait::poll("A converged again", T, || (status()?["fib"]["converged"] == true).then_some(()))
        .unwrap_or_else(|e| panic!("{e}\n{}", std::fs::read_to_string(&log).unwrap_or_default()));
    for (what, flood) in [("A->B", flood_b), ("A->C", flood_c)] {
        let out = flood.wait_with_output().unwrap();
        let out = String::from_utf8_lossy(&out.stdout).into_owned();
        let (sent, got) = ping_counts(&out);
        println!("ping flood {what} during merled restart: {sent} sent, {got} received, {} lost", sent - got);
        assert!(sent > 500, "{out}");
        assert_eq!(sent, got, "packets lost during the restart: {out}");
    }
    wait_routes(a, &ms[0], &a_routes);
    assert!(a.ip(&["route", "show", "10.123.0.0/16"]).unwrap().contains("proto static"));
    let restarted = std::fs::read_to_string(&log).unwrap();
    assert!(restarted.contains("found in table 254: kept until the routing converges"), "{restarted}");
    again.stop(Duration::from_secs(5));
}

/// IPIP pools: used where the kernel has IPIP, refused (and reported)
/// where it does not.
#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn ipip_pools_are_used_or_refused_with_a_reason() {
    if testbed::skip_unless_root("ipip_pools_are_used_or_refused_with_a_reason") {
        return;
    }
    let b = bed("ipip");
    let pool = "[[pools]]\ncidr = \"10.245.0.0/16\"\nipip_mode = \"Always\"\n\n";
    let mk = |i: usize, block: &str| {
        let mut cfg = config(&NODES[i], pool);
        cfg = cfg.replace(
            "[[pools]]\ncidr = \"10.244",
            &format!("[[advertise]]\nprefix = \"{block}\"\n\n[[pools]]\ncidr = \"10.244"),
        );
        Merled::start(&b.hosts[i], NODES[i].name, &merled_bin(), &merlectl_bin(), &cfg).unwrap()
    };
    let a = mk(0, "10.245.1.0/26");
    let _c = mk(2, "10.245.3.0/26");
    let ipip = wait::poll("A's FIB status", T, || {
        let s = a.status().ok()?;
        s["fib"]["ipip"].as_str().map(str::to_owned)
    })
    .unwrap();
    let state = |prefix: &str| -> Option<Value> {
        let fib: Value = serde_json::from_str(&a.merlectl(&["fib", "--json"]).ok()?).ok()?;
        fib.as_array()?.iter().find(|r| r["prefix"] == prefix).cloned()
    };
    if ipip == "available" {
        wait::poll("the IPIP route", T, || {
            merle_routes(&b.hosts[0]).contains(&"10.245.3.0/26 via 10.0.1.1 dev tunl0 onlink".to_owned()).then_some(())
        })
        .unwrap();
    } else {
        println!("this kernel has no IPIP ({ipip}): checking the refusal; the IPIP datapath check is skipped");
        assert!(ipip.starts_with("UNAVAILABLE"), "{ipip}");
        let r = wait::poll("the refusal", T, || state("10.245.3.0/26").filter(|r| r["state"] == "refused")).unwrap();
        assert!(r["reason"].as_str().unwrap().contains("uses IPIP, which this kernel does not have"), "{r}");
        let text = a.merlectl(&["status"]).unwrap();
        assert!(text.contains("IPIP: UNAVAILABLE"), "{text}");
        assert!(a.daemon.log_tail(200).contains("IPIP is unavailable on this node"));
    }
    // The VXLAN pool is unaffected either way.
    wait::poll("the VXLAN route", T, || state("10.244.3.0/26").filter(|r| r["state"] == "installed")).unwrap();
}
