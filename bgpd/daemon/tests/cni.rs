//! Pods made by merle-cni, end to end: merled advertises the blocks IPAM
//! gives its node (and the addresses it borrowed), fib-sync installs the
//! routes learned from the other node, and pods on two nodes reach each
//! other.
//!
//! ```text
//!   LAN 10.0.0.0/24: A 10.0.0.1, B 10.0.0.2; pool 10.244.0.0/29 in /30 blocks
//!   A: a0..a3 fill A's block 10.244.0.0/30; B: b0 claims 10.244.0.4/30;
//!   A: a4 finds no free block and borrows 10.244.0.5 from B's block.
//! ```
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::Value;
use testbed::etcd::Etcd;
use testbed::merled::{sibling_binary, Merled};
use testbed::netns::{Lan, Netns};
use testbed::{wait, TempDir};

const T: Duration = Duration::from_secs(40);

/// No `[[nodes]]`: the mesh comes from the nodes registered in etcd.
fn config(name: &str, addr: &str, etcd: &str, lock_dir: &Path) -> String {
    format!(
        "[node]\nname = \"{name}\"\naddress = \"{addr}/24\"\n\n[bgp]\nhold_time = 9\nconnect_retry_time = 1\nconnect_retry_max = 2\n\n\
         [[pools]]\ncidr = \"10.244.0.0/29\"\nblock_size = 30\n\n\
         [datastore]\ntype = \"etcd\"\nendpoints = [\"{etcd}\"]\npath = \"{}\"\n\n[control]\nsocket = \"{{socket}}\"\n",
        lock_dir.display()
    )
}

/// Runs the project's conflist (merle-cni, portmap, bandwidth) in `node`
/// for a pod netns; returns the ADD result (null for DEL).
fn cni(node: &Netns, cmd: &str, merle_config: &Path, pod: &Netns, id: &str) -> anyhow::Result<Value> {
    let rt = testbed::cni::Runtime::new(&sibling_binary("merle-cni")?, merle_config)?;
    match cmd {
        "ADD" => rt.add(node, pod, id),
        "DEL" => rt.del(node, pod, id).map(|()| Value::Null),
        _ => anyhow::bail!("unsupported command {cmd}"),
    }
}

fn pod_ip(result: &Value) -> String {
    testbed::cni::addresses(result).remove(0)
}

fn kernel(ns: &Netns) -> Vec<String> {
    ns.routes_of_proto("-4", "198").unwrap()
}

fn wait_kernel(ns: &Netns, m: &Merled, want: &[&str]) {
    let want: Vec<String> = want.iter().map(|s| (*s).to_owned()).collect();
    if let Err(e) = wait::poll("merle's kernel routes", T, || (kernel(ns) == want).then_some(())) {
        panic!("{e}:\nhave {:#?}\nwant {want:#?}\nlog:\n{}", kernel(ns), m.daemon.log_tail(40));
    }
}

fn ping(from: &Netns, to: &str) {
    let r = wait::poll(&format!("ping {to}"), T, || from.exec(&["ping", "-c", "1", "-W", "1", to]).ok());
    if let Err(e) = r {
        panic!("{e}\n{}", from.ip(&["route"]).unwrap_or_default());
    }
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn pods_from_merle_cni_reach_each_other_across_nodes_with_blocks_and_a_borrowed_address() {
    if testbed::skip_unless_root("pods_from_merle_cni_reach_each_other_across_nodes") {
        return;
    }
    assert!(Etcd::installed(), "etcd is not installed; run the README test command, which installs etcd-server");
    let lan = Lan::with_subnet("cni", 2, "10.0.0", "fd00:").unwrap();
    let (na, nb) = (&lan.hosts[0], &lan.hosts[1]);
    // etcd on the LAN, in the switch's namespace, where both nodes reach it.
    let etcd = Etcd::start(Some(&lan.switch), "10.0.0.254".parse().unwrap()).unwrap();
    let (da, db) = (TempDir::new("cni-a").unwrap(), TempDir::new("cni-b").unwrap());
    // A serves metrics on its loopback: merle-cni's calls and IPAM's use
    // are read back from them below.
    let cfg_a = config("a", "10.0.0.1", &etcd.url, da.path())
        .replace("[control]", "[metrics]\nlisten = \"127.0.0.1:9091\"\n\n[control]");
    let ma = Merled::start(na, "a", &merled_bin(), &merlectl_bin(), &cfg_a).unwrap();
    let mb =
        Merled::start(nb, "b", &merled_bin(), &merlectl_bin(), &config("b", "10.0.0.2", &etcd.url, db.path())).unwrap();
    // Neither config lists the other node: each learns it from the registry.
    wait::poll("the mesh from the node registry", T, || {
        (ma.peer_state("10.0.0.2").as_deref() == Some("Established")
            && mb.peer_state("10.0.0.1").as_deref() == Some("Established"))
        .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\nA:\n{}\nB:\n{}", ma.daemon.log_tail(30), mb.daemon.log_tail(30)));

    // IPAM changes below touch the advertisements and blackholes alone:
    // no whole-table read of the kernel, no re-export to a peer.
    let fib_reads = || -> f64 {
        let (code, body) = testbed::prometheus::http_get_in(&na.name, "127.0.0.1:9091".parse().unwrap(), "/metrics")
            .expect("merled's metrics answer");
        assert_eq!(code, 200);
        body.lines()
            .find_map(|l| l.strip_prefix("merle_fib_table_reads_total ")?.parse().ok())
            .unwrap_or_else(|| panic!("no merle_fib_table_reads_total in\n{body}"))
    };
    let reads_before = fib_reads();

    // A fills its block, B claims the other one, A borrows from B's.
    let mut pods_a = Vec::new();
    let mut ips_a = Vec::new();
    for i in 0..4 {
        let p = Netns::new(&format!("cpa{i}")).unwrap();
        ips_a.push(pod_ip(&cni(na, "ADD", &ma.config, &p, &format!("a{i}")).unwrap()));
        pods_a.push(p);
    }
    assert_eq!(ips_a, ["10.244.0.0", "10.244.0.1", "10.244.0.2", "10.244.0.3"]);
    let pb = Netns::new("cpb0").unwrap();
    assert_eq!(pod_ip(&cni(nb, "ADD", &mb.config, &pb, "b0").unwrap()), "10.244.0.4");
    let pa4 = Netns::new("cpa4").unwrap();
    assert_eq!(pod_ip(&cni(na, "ADD", &ma.config, &pa4, "a4").unwrap()), "10.244.0.5");
    // Five pods on A, a block claimed and an address borrowed: at most
    // one periodic read (every 90 s) fell among them.
    let reads = fib_reads() - reads_before;
    assert!(reads <= 1.0, "fib-sync re-read the kernel {reads} times for five ADDs and two IPAM changes");

    // Blocks are blackholed at home and routed elsewhere; the borrowed
    // address is routed to its borrower, even on the block's owner.
    wait_kernel(na, &ma, &["10.244.0.4/30 via 10.0.0.2 dev eth0", "blackhole 10.244.0.0/30"]);
    wait_kernel(
        nb,
        &mb,
        &["10.244.0.0/30 via 10.0.0.1 dev eth0", "10.244.0.5 via 10.0.0.1 dev eth0", "blackhole 10.244.0.4/30"],
    );
    ping(&pb, "10.244.0.0");
    ping(&pb, "10.244.0.5");
    ping(&pa4, "10.244.0.4");
    ping(&pods_a[3], "10.244.0.4");

    let show: Value = serde_json::from_str(&ma.merlectl(&["--json", "ipam", "show"]).unwrap()).unwrap();
    let a4 = show["handles"].as_array().unwrap().iter().find(|h| h["handle"] == "k8s-pod-network.a4").unwrap();
    assert_eq!(a4["borrowed"], true, "{show:#}");
    assert_eq!(a4["node"], "a");

    // The borrowed pod goes: A withdraws its /32 and B's route goes with it.
    cni(na, "DEL", &ma.config, &pa4, "a4").unwrap();
    wait_kernel(nb, &mb, &["10.244.0.0/30 via 10.0.0.1 dev eth0", "blackhole 10.244.0.4/30"]);
    // A handle released by hand is gone from the store.
    let out = ma.merlectl(&["ipam", "release", "--handle", "k8s-pod-network.a3"]).unwrap();
    assert!(out.contains("10.244.0.3"), "{out}");
    let show: Value = serde_json::from_str(&mb.merlectl(&["--json", "ipam", "show"]).unwrap()).unwrap();
    assert!(show["handles"].as_array().unwrap().iter().all(|h| h["handle"] != "k8s-pod-network.a3"), "{show:#}");

    let log = ma.daemon.log_tail(10_000);
    assert!(log.contains("IPAM changed: 1 local prefixes changed"), "{log}");
    assert!(!log.contains("re-sending routes"), "an IPAM change re-exported to a peer:\n{log}");

    // What A's metrics say of it all: merle-cni reported each call (five
    // ADDs and a DEL on A), IPAM's pool use, fib-sync's work.
    let scrape = || {
        let (code, body) = testbed::prometheus::http_get_in(&na.name, "127.0.0.1:9091".parse().unwrap(), "/metrics")
            .expect("merled's metrics answer");
        assert_eq!(code, 200);
        body
    };
    let value = |text: &str, series: &str| -> Option<f64> {
        text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    };
    let text = wait::poll("merle-cni's calls counted", T, || {
        let t = scrape();
        (value(&t, "merle_cni_requests_total{command=\"DEL\",result=\"ok\"}") == Some(1.0)).then_some(t)
    })
    .unwrap_or_else(|e| panic!("{e}:\n{}", scrape()));
    assert_eq!(value(&text, "merle_cni_requests_total{command=\"ADD\",result=\"ok\"}"), Some(5.0), "{text}");
    assert_eq!(value(&text, "merle_cni_request_duration_seconds_count{command=\"ADD\"}"), Some(5.0));
    assert_eq!(value(&text, "merle_ipam_allocation_duration_seconds_count"), Some(5.0));
    // Both /30 blocks of the pool claimed; a0..a2 and b0 hold addresses.
    assert_eq!(value(&text, "merle_ipam_blocks{pool=\"10.244.0.0/29\"}"), Some(2.0), "{text}");
    assert_eq!(value(&text, "merle_ipam_addresses_allocated{pool=\"10.244.0.0/29\"}"), Some(4.0), "{text}");
    assert_eq!(value(&text, "merle_ipam_addresses_capacity{pool=\"10.244.0.0/29\"}"), Some(8.0));
    assert_eq!(value(&text, "merle_fib_converged"), Some(1.0));
    assert!(value(&text, "merle_fib_operations_total{op=\"add\"}").unwrap() >= 2.0, "{text}");
    assert_eq!(value(&text, "merle_fib_routes{state=\"installed\"}"), Some(2.0), "{text}");
    drop(etcd);
}
