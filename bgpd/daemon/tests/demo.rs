//! The README's demo, as a newcomer first runs it: it must come up and show
//! no failure that is not meant to be shown.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use testbed::merled::sibling_binary;

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn the_demo_comes_up_clean() {
    if testbed::skip_unless_root("the_demo_comes_up_clean") {
        return;
    }
    let mut d = testbed::demo::start(&merled_bin(), &merlectl_bin()).unwrap();
    d.add_pods(&sibling_binary("merle-cni").unwrap()).unwrap();
    d.converge(Duration::from_secs(60)).unwrap();
    // The ToR's default route is the nodes' own: installed, not refused.
    d.settle(Duration::from_secs(20)).unwrap();
    for (i, ns) in d.ns_nodes.iter().enumerate() {
        let routes = ns.ip(&["route", "show", "default"]).unwrap();
        assert!(routes.contains("via 10.0.0.254") && routes.contains("proto 198"), "node {i}: {routes}");
        let status = d.nodes[i].merlectl(&["status"]).unwrap();
        assert!(status.contains(", 0 failed"), "node {i}: {status}");
        // ipam show: an IPv6 pool's size as a power of two, every column
        // named.
        let ipam = d.nodes[i].merlectl(&["ipam", "show"]).unwrap();
        assert!(ipam.contains("2^72") && !ipam.contains("18446744073709551615"), "{ipam}");
        assert!(ipam.contains("| SOURCE ") && ipam.contains("own block"), "{ipam}");
    }
    // The pods reach each other across the nodes (IPv4 and IPv6).
    let (a0, b0) = (&d.pods[0], &d.pods[2]);
    for dst in &b0.addrs {
        a0.ns.exec(&["ping", "-c", "1", "-W", "2", dst]).unwrap();
    }
    // ... in eBPF mode, where this kernel allows it, and the demo shows it.
    // A service reached from behind the ToR: its load-balancer IP (ECMP
    // over both nodes) and its NodePorts, by DSR, the client's address kept.
    d.add_service().unwrap();
    let answers = d.service_answers(10).unwrap();
    let mut servers = std::collections::BTreeSet::new();
    for (to, a) in &answers {
        assert_eq!(a.peer.ip().to_string(), testbed::demo::CLIENT, "{to}: the backend saw {}", a.peer);
        assert_eq!(a.from.to_string(), *to, "the answer comes from the address asked");
        servers.insert(a.server.clone());
    }
    assert_eq!(servers.len(), 2, "both backends answered: {answers:?}");
    for m in &d.nodes {
        let dp = m.merlectl(&["dataplane"]).unwrap();
        assert!(dp.contains("Mode: ebpf (requested auto)"), "{dp}");
        assert!(dp.contains("pod_ingress") && dp.contains("node_ingress") && dp.contains("redirect-"), "{dp}");
    }
}
