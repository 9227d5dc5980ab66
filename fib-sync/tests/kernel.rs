//! fib-sync against the real kernel, inside a namespace: installs, repairs,
//! leaves foreign routes alone, keeps its routes over a restart and sweeps
//! them only after convergence.
#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::time::Duration;

use conf::{EncapMode, Pool};
use fib_sync::{Fib, NodeNet, Owner, RouteState, Settings};
use ipnet::IpNet;
use testbed::netns::Netns;
use testbed::wait::poll;

const PROTO: &str = "198";

fn settings(own: &[&str], sweep_after: Duration) -> Settings {
    Settings {
        owner: Owner { table: 254, protocol: 198 },
        vxlan_vni: 4096,
        vxlan_port: 4789,
        underlay_mtu: 1500,
        pools: vec![Pool {
            cidr: "10.244.0.0/16".parse().unwrap(),
            block_size: None,
            ipip_mode: EncapMode::Never,
            vxlan_mode: EncapMode::CrossSubnet,
            nat_outgoing: false,
        }],
        node: NodeNet { v4: Some("10.0.0.1/24".parse().unwrap()), v6: None },
        own_blocks: own.iter().map(|s| s.parse().unwrap()).collect(),
        sweep_after,
    }
}

fn start(ns: &Netns, s: Settings) -> Fib {
    ns.spawn(move || Fib::start(s)).unwrap().join().unwrap().unwrap().unwrap()
}

fn routes(ns: &Netns) -> Vec<String> {
    routes_of(ns, "-4")
}

fn routes_of(ns: &Netns, family: &str) -> Vec<String> {
    ns.routes_of_proto(family, PROTO).unwrap()
}

fn hops(s: &[&str]) -> Vec<IpAddr> {
    s.iter().map(|h| h.parse().unwrap()).collect()
}

fn p(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn node() -> Netns {
    let ns = Netns::new("fib").unwrap();
    // This kernel has no dummy module: a veth whose peer stays here.
    ns.ip(&["link", "add", "eth0", "type", "veth", "peer", "name", "eth0p"]).unwrap();
    ns.ip(&["link", "set", "eth0p", "up"]).unwrap();
    ns.ip(&["link", "set", "eth0", "up"]).unwrap();
    ns.add_addr("eth0", "10.0.0.1/24").unwrap();
    ns
}

fn wait_routes(ns: &Netns, want: &[&str]) {
    let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    poll("the kernel routes", Duration::from_secs(5), || (routes(ns) == want).then_some(())).unwrap_or_else(|e| {
        panic!("{e}: have {:?}, want {want:?}", routes(ns));
    });
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn installs_repairs_and_leaves_foreign_routes_alone() {
    if testbed::skip_unless_root("installs_repairs_and_leaves_foreign_routes_alone") {
        return;
    }
    let ns = node();
    // A route someone else owns, at a key merle will want.
    ns.ip(&["route", "add", "10.244.9.0/26", "via", "10.0.0.9", "proto", "static"]).unwrap();
    let fib = start(&ns, settings(&["10.244.1.0/26"], Duration::from_secs(60)));
    fib.routes(vec![
        (p("10.244.2.0/26"), hops(&["10.0.0.2"])),
        (p("10.244.3.0/26"), hops(&["10.1.0.3"])),
        (p("10.96.0.10/32"), hops(&["10.0.0.3", "10.0.0.2"])),
        (p("10.244.9.0/26"), hops(&["10.0.0.2"])),
        // Unreachable next hop: fails, does not stall the others.
        (p("10.50.0.0/24"), hops(&["192.0.2.1"])),
    ]);
    wait_routes(
        &ns,
        &[
            "10.244.2.0/26 via 10.0.0.2 dev eth0",
            "10.244.3.0/26 via 10.1.0.3 dev vxlan.merle onlink",
            "10.96.0.10 nexthop via 10.0.0.2 dev eth0 nexthop via 10.0.0.3 dev eth0",
            "blackhole 10.244.1.0/26",
        ],
    );
    let neigh = ns.ip(&["neigh", "show", "dev", "vxlan.merle"]).unwrap();
    assert_eq!(neigh.trim(), "10.1.0.3 lladdr 02:6d:0a:01:00:03 PERMANENT");
    let fdb = ns.exec(&["bridge", "fdb", "show", "dev", "vxlan.merle"]).unwrap();
    assert_eq!(fdb.trim(), "02:6d:0a:01:00:03 dst 10.1.0.3 self permanent");
    let link = ns.ip(&["-d", "link", "show", "vxlan.merle"]).unwrap();
    assert!(link.contains("mtu 1450") && link.contains("vxlan id 4096") && link.contains("dstport 4789"), "{link}");
    assert!(link.contains("02:6d:0a:00:00:01") && link.contains("nolearning"), "{link}");

    let status = fib.status();
    let state = |pfx: &str| status.lock().unwrap().routes.get(&p(pfx)).map(|r| r.state.clone());
    poll("failure states", Duration::from_secs(5), || {
        matches!(state("10.50.0.0/24"), Some(RouteState::Failed { .. })).then_some(())
    })
    .unwrap();
    let Some(RouteState::Failed { reason, .. }) = state("10.244.9.0/26") else {
        panic!("{:?}", state("10.244.9.0/26"))
    };
    assert!(reason.contains("protocol 4"), "{reason}");
    let Some(RouteState::Failed { reason, .. }) = state("10.50.0.0/24") else { panic!() };
    assert!(reason.contains("unreachable"), "{reason}");
    assert_eq!(state("10.244.2.0/26"), Some(RouteState::Installed));
    // The foreign route is untouched.
    assert!(ns.ip(&["route", "show", "10.244.9.0/26"]).unwrap().contains("proto static"));

    // Deleted by hand: back within a second. Changed by hand: put back.
    ns.ip(&["route", "del", "10.244.2.0/26", "proto", PROTO]).unwrap();
    ns.ip(&["route", "replace", "10.244.3.0/26", "via", "10.0.0.7", "proto", PROTO]).unwrap();
    ns.ip(&["route", "del", "blackhole", "10.244.1.0/26"]).unwrap();
    let t = std::time::Instant::now();
    wait_routes(
        &ns,
        &[
            "10.244.2.0/26 via 10.0.0.2 dev eth0",
            "10.244.3.0/26 via 10.1.0.3 dev vxlan.merle onlink",
            "10.96.0.10 nexthop via 10.0.0.2 dev eth0 nexthop via 10.0.0.3 dev eth0",
            "blackhole 10.244.1.0/26",
        ],
    );
    assert!(t.elapsed() < Duration::from_secs(1), "repair took {:?}", t.elapsed());
    // The device deleted by hand comes back with its routes and entries.
    ns.ip(&["link", "del", "vxlan.merle"]).unwrap();
    poll("vxlan.merle back", Duration::from_secs(5), || {
        routes(&ns).iter().any(|r| r.contains("vxlan.merle")).then_some(())
    })
    .unwrap();
    poll("the neighbour back", Duration::from_secs(5), || {
        ns.ip(&["neigh", "show", "dev", "vxlan.merle"]).unwrap().contains("PERMANENT").then_some(())
    })
    .unwrap();

    // A foreign route put over one of merle's (issue 18): left alone and
    // reported, and merle's is back once it goes.
    ns.ip(&["route", "replace", "10.244.2.0/26", "via", "10.0.0.7", "proto", "static"]).unwrap();
    poll("the route taken over is reported", Duration::from_secs(5), || {
        matches!(state("10.244.2.0/26"), Some(RouteState::Failed { .. })).then_some(())
    })
    .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let taken = ns.ip(&["route", "show", "10.244.2.0/26"]).unwrap();
    assert!(taken.contains("via 10.0.0.7") && taken.contains("proto static"), "merle must not overwrite it: {taken}");
    ns.ip(&["route", "del", "10.244.2.0/26", "proto", "static"]).unwrap();
    poll("10.244.2.0/26 back", Duration::from_secs(40), || {
        routes(&ns).iter().any(|r| r.starts_with("10.244.2.0/26 via 10.0.0.2")).then_some(())
    })
    .unwrap();
    // When the foreign route goes, merle's takes its place.
    ns.ip(&["route", "del", "10.244.9.0/26", "proto", "static"]).unwrap();
    poll("10.244.9.0/26 installed", Duration::from_secs(40), || {
        routes(&ns).iter().any(|r| r.starts_with("10.244.9.0/26 via 10.0.0.2")).then_some(())
    })
    .unwrap();

    // The uplink down and up: the kernel drops the routes through it;
    // they come back with the link.
    ns.ip(&["link", "set", "eth0", "down"]).unwrap();
    poll("routes through eth0 gone", Duration::from_secs(5), || {
        routes(&ns).iter().all(|r| !r.contains("dev eth0")).then_some(())
    })
    .unwrap();
    ns.ip(&["link", "set", "eth0", "up"]).unwrap();
    wait_routes(
        &ns,
        &[
            "10.244.2.0/26 via 10.0.0.2 dev eth0",
            "10.244.3.0/26 via 10.1.0.3 dev vxlan.merle onlink",
            "10.244.9.0/26 via 10.0.0.2 dev eth0",
            "10.96.0.10 nexthop via 10.0.0.2 dev eth0 nexthop via 10.0.0.3 dev eth0",
            "blackhole 10.244.1.0/26",
        ],
    );

    // Withdrawn: gone, and its VTEP entries with it.
    fib.routes(vec![(p("10.244.3.0/26"), vec![]), (p("10.244.9.0/26"), vec![])]);
    wait_routes(
        &ns,
        &[
            "10.244.2.0/26 via 10.0.0.2 dev eth0",
            "10.96.0.10 nexthop via 10.0.0.2 dev eth0 nexthop via 10.0.0.3 dev eth0",
            "blackhole 10.244.1.0/26",
        ],
    );
    poll("the VTEP entries gone", Duration::from_secs(5), || {
        ns.ip(&["neigh", "show", "dev", "vxlan.merle"]).unwrap().trim().is_empty().then_some(())
    })
    .unwrap();
    fib.stop();
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn routes_survive_a_restart_and_stale_ones_go_only_after_convergence() {
    if testbed::skip_unless_root("routes_survive_a_restart_and_stale_ones_go_only_after_convergence") {
        return;
    }
    let ns = node();
    ns.ip(&["route", "add", "10.77.0.0/16", "via", "10.0.0.254"]).unwrap();
    let fib = start(&ns, settings(&["10.244.1.0/26"], Duration::from_secs(60)));
    fib.routes(vec![(p("10.244.2.0/26"), hops(&["10.0.0.2"])), (p("10.244.4.0/26"), hops(&["10.0.0.4"]))]);
    let all = ["10.244.2.0/26 via 10.0.0.2 dev eth0", "10.244.4.0/26 via 10.0.0.4 dev eth0", "blackhole 10.244.1.0/26"];
    wait_routes(&ns, &all);
    fib.stop();
    // Stopped: everything stays.
    assert_eq!(routes(&ns), all);

    let fib = start(&ns, settings(&["10.244.1.0/26"], Duration::from_secs(60)));
    // Only one route is learned again; the other is stale but kept.
    fib.routes(vec![(p("10.244.2.0/26"), hops(&["10.0.0.2"]))]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(routes(&ns), all);
    let st = fib.status();
    assert_eq!(st.lock().unwrap().routes.get(&p("10.244.4.0/26")).map(|r| r.state.clone()), Some(RouteState::Stale));
    fib.converged();
    wait_routes(&ns, &["10.244.2.0/26 via 10.0.0.2 dev eth0", "blackhole 10.244.1.0/26"]);
    // The route merle never owned survived both starts.
    assert!(ns.ip(&["route", "show", "10.77.0.0/16"]).unwrap().contains("via 10.0.0.254"));
    fib.stop();

    // Without a convergence signal the sweep waits for its timeout.
    let fib = start(&ns, settings(&[], Duration::from_millis(700)));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(routes(&ns).len(), 2);
    wait_routes(&ns, &[]);
    fib.stop();
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn ipv6_plain_multipath_blackhole_and_vxlan_v6() {
    if testbed::skip_unless_root("ipv6_plain_multipath_blackhole_and_vxlan_v6") {
        return;
    }
    let ns = node();
    ns.add_addr("eth0", "fd00::1/64").unwrap();
    let mut s = settings(&["fd00:244:0:1::/122"], Duration::from_secs(60));
    s.pools.push(Pool {
        cidr: "fd00:244::/56".parse().unwrap(),
        block_size: None,
        ipip_mode: EncapMode::Never,
        vxlan_mode: EncapMode::CrossSubnet,
        nat_outgoing: false,
    });
    // A pool tunnelled always: its VTEP fd00::2 is on the node subnet, the
    // case the kernel refuses as an onlink gateway through vxlan-v6.merle.
    s.pools.push(Pool {
        cidr: "fd00:245::/56".parse().unwrap(),
        block_size: None,
        ipip_mode: EncapMode::Never,
        vxlan_mode: EncapMode::Always,
        nat_outgoing: false,
    });
    s.node.v6 = Some("fd00::1/64".parse().unwrap());
    let learned = vec![
        (p("fd00:244:0:2::/122"), hops(&["fd00::2"])),
        (p("fd00:244:0:3::/122"), hops(&["fd00:1::3"])),
        (p("fd00:245:0:2::/122"), hops(&["fd00::2"])),
        (p("fd00:96::/108"), hops(&["fd00::3", "fd00::2"])),
    ];
    let fib = start(&ns, s.clone());
    fib.routes(learned.clone());
    let ll = |vtep: &str| fib_sync::vtep::link_local(fib_sync::vtep::vtep_mac(vtep.parse().unwrap()));
    let want = [
        "blackhole fd00:244:0:1::/122".to_owned(),
        "fd00:244:0:2::/122 via fd00::2 dev eth0".to_owned(),
        format!("fd00:244:0:3::/122 via {} dev vxlan-v6.merle onlink", ll("fd00:1::3")),
        format!("fd00:245:0:2::/122 via {} dev vxlan-v6.merle onlink", ll("fd00::2")),
        "fd00:96::/108 nexthop via fd00::2 dev eth0 nexthop via fd00::3 dev eth0".to_owned(),
    ];
    let want: Vec<String> = want.to_vec();
    poll("the IPv6 routes", Duration::from_secs(5), || (routes_of(&ns, "-6") == want).then_some(()))
        .unwrap_or_else(|e| panic!("{e}: {:?}", routes_of(&ns, "-6")));
    let link = ns.ip(&["-d", "link", "show", "vxlan-v6.merle"]).unwrap();
    assert!(link.contains("mtu 1430") && link.contains("local fd00::1"), "{link}");
    let (neigh, fdb) = l2_tables(&ns, "vxlan-v6.merle");
    let mut want_neigh = vec![
        format!("{} lladdr {} PERMANENT", ll("fd00:1::3"), mac_of("fd00:1::3")),
        format!("{} lladdr {} PERMANENT", ll("fd00::2"), mac_of("fd00::2")),
    ];
    want_neigh.sort();
    assert_eq!(neigh, want_neigh);
    for vtep in ["fd00:1::3", "fd00::2"] {
        let entry = format!("{} dst {vtep} self permanent", mac_of(vtep));
        assert!(fdb.contains(&entry), "{entry} in {fdb:?}");
    }
    // Read back after a restart, the routes are merle's as they are: the
    // link-local gateway matches the VTEP it was made for, nothing is
    // replaced (same kernel state, no warnings of a repair).
    fib.stop();
    // Every route change the kernel reports while the new engine starts:
    // there must be none.
    let mut monitor =
        ns.command("ip").args(["-6", "monitor", "route"]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let fib = start(&ns, s);
    fib.routes(learned);
    fib.converged();
    std::thread::sleep(Duration::from_millis(500));
    let _ = monitor.kill();
    let seen = String::from_utf8(monitor.wait_with_output().unwrap().stdout).unwrap();
    let changes: Vec<&str> = seen.lines().filter(|l| l.contains("fd00:24") || l.contains("fd00:96")).collect();
    assert!(changes.is_empty(), "the restarted engine rewrote routes that were right: {changes:?}");
    assert_eq!(routes_of(&ns, "-6"), want);
    assert_eq!(l2_tables(&ns, "vxlan-v6.merle").0, want_neigh);
    // The only tunnelled route through fd00::2 goes (the CrossSubnet pool
    // reaches it natively): its link-local neighbour and FDB entries go.
    fib.routes(vec![(p("fd00:245:0:2::/122"), vec![])]);
    poll("fd00::2's entries gone", Duration::from_secs(5), || {
        let (n, f) = l2_tables(&ns, "vxlan-v6.merle");
        (n.len() == 1 && !f.iter().any(|e| e.contains("dst fd00::2 "))).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", l2_tables(&ns, "vxlan-v6.merle")));
    let want: Vec<String> = want.into_iter().filter(|r| !r.starts_with("fd00:245:")).collect();
    // A route in the form an older merle made (through the VTEP itself, off
    // the subnet, where the kernel took it) is replaced by the link-local
    // form.
    ns.ip(&[
        "-6",
        "route",
        "replace",
        "fd00:244:0:3::/122",
        "via",
        "fd00:1::3",
        "dev",
        "vxlan-v6.merle",
        "onlink",
        "proto",
        PROTO,
    ])
    .unwrap();
    poll("the link-local form back", Duration::from_secs(5), || (routes_of(&ns, "-6") == want).then_some(()))
        .unwrap_or_else(|e| panic!("{e}: {:?}", routes_of(&ns, "-6")));
    // A hand-deleted IPv6 multipath route comes back whole.
    ns.ip(&["-6", "route", "del", "fd00:96::/108", "proto", PROTO]).unwrap();
    poll("the multipath route back", Duration::from_secs(2), || (routes_of(&ns, "-6") == want).then_some(())).unwrap();
    fib.stop();
}

/// The VXLAN device's neighbour and FDB tables as `ip`/`bridge` print them,
/// sorted.
fn l2_tables(ns: &Netns, dev: &str) -> (Vec<String>, Vec<String>) {
    let lines = |s: String| -> Vec<String> {
        let mut v: Vec<String> = s.lines().map(|l| l.trim().to_owned()).filter(|l| !l.is_empty()).collect();
        v.sort();
        v
    };
    (
        lines(ns.ip(&["neigh", "show", "dev", dev]).unwrap()),
        lines(ns.exec(&["bridge", "fdb", "show", "dev", dev]).unwrap()),
    )
}

fn mac_of(ip: &str) -> String {
    fib_sync::vtep::mac_string(fib_sync::vtep::vtep_mac(ip.parse().unwrap()))
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn vxlan_neighbour_and_fdb_entries_follow_nodes_joining_leaving_and_mode_changes() {
    if testbed::skip_unless_root("vxlan_neighbour_and_fdb_entries_follow_nodes_joining_leaving_and_mode_changes") {
        return;
    }
    let ns = node();
    // Nodes 2-7 on our subnet (VXLAN only in mode Always), nodes 2-7 behind
    // a router (VXLAN in CrossSubnet and Always); node i's block is
    // 10.244.<i>.0/26 on the subnet and 10.244.<10+i>.0/26 behind it.
    let local = |i: u8| format!("10.0.0.{i}");
    let remote = |i: u8| format!("10.1.0.{i}");
    let mut s = settings(&[], Duration::from_secs(60));
    let fib = start(&ns, s.clone());
    fib.converged();
    // Someone else's entries: a flood entry on merle's device, and entries
    // that look like merle's on a device that is not merle's.
    fib.routes(vec![(p("10.244.99.0/26"), hops(&["10.1.0.99"]))]);
    poll("vxlan.merle", Duration::from_secs(5), || ns.ip(&["link", "show", "vxlan.merle"]).ok()).unwrap();
    ns.exec(&[
        "bridge",
        "fdb",
        "append",
        "00:00:00:00:00:00",
        "dev",
        "vxlan.merle",
        "dst",
        "10.9.9.9",
        "self",
        "permanent",
    ])
    .unwrap();
    ns.ip(&[
        "link",
        "add",
        "vx.other",
        "type",
        "vxlan",
        "id",
        "99",
        "dstport",
        "4790",
        "local",
        "10.0.0.1",
        "nolearning",
    ])
    .unwrap();
    ns.ip(&["link", "set", "vx.other", "up"]).unwrap();
    let mac5 = mac_of("10.1.0.5");
    ns.exec(&["bridge", "fdb", "append", &mac5, "dev", "vx.other", "dst", "10.1.0.5", "self", "permanent"]).unwrap();
    ns.ip(&["neigh", "replace", "10.1.0.5", "lladdr", &mac5, "dev", "vx.other", "nud", "permanent"]).unwrap();
    let other = l2_tables(&ns, "vx.other");
    fib.routes(vec![(p("10.244.99.0/26"), vec![])]);

    for round in 0..8u8 {
        // Members change every round; the pool's mode every other one.
        let always = round % 4 >= 2;
        for pool in &mut s.pools {
            pool.vxlan_mode = if always { EncapMode::Always } else { EncapMode::CrossSubnet };
        }
        fib.settings(s.clone());
        let member = |i: u8| (i + round) % 3 != 0;
        let mut updates = Vec::new();
        let mut vteps: Vec<String> = Vec::new();
        for i in 2..8u8 {
            for (node, block, vxlan) in [(local(i), i, always), (remote(i), 10 + i, true)] {
                let prefix = p(&format!("10.244.{block}.0/26"));
                if member(i) {
                    updates.push((prefix, hops(&[node.as_str()])));
                    if vxlan {
                        vteps.push(node);
                    }
                } else {
                    updates.push((prefix, vec![]));
                }
            }
        }
        fib.routes(updates);
        let mut want_neigh: Vec<String> = vteps.iter().map(|v| format!("{v} lladdr {} PERMANENT", mac_of(v))).collect();
        let mut want_fdb: Vec<String> = vteps.iter().map(|v| format!("{} dst {v} self permanent", mac_of(v))).collect();
        want_fdb.push("00:00:00:00:00:00 dst 10.9.9.9 self permanent".into());
        want_neigh.sort();
        want_fdb.sort();
        poll(&format!("round {round}: neighbour and FDB entries"), Duration::from_secs(5), || {
            (l2_tables(&ns, "vxlan.merle") == (want_neigh.clone(), want_fdb.clone())).then_some(())
        })
        .unwrap_or_else(|e| {
            panic!(
                "{e} (mode {}): have {:#?}, want {:#?}",
                if always { "Always" } else { "CrossSubnet" },
                l2_tables(&ns, "vxlan.merle"),
                (&want_neigh, &want_fdb)
            )
        });
    }
    assert_eq!(l2_tables(&ns, "vx.other"), other, "another device's entries were touched");

    // A resync rewrites nothing that is right: the kernel reports no FDB
    // change at all.
    let dir = testbed::TempDir::new("fdbmon").unwrap();
    let log = dir.path().join("monitor.txt");
    let mut mon =
        testbed::process::Daemon::spawn(&ns, "bridge monitor", &["bridge", "monitor", "fdb"], &log, &[]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    fib.sender().send(fib_sync::Input::Resync("test")).unwrap();
    // A change elsewhere forces a pass over the L2 entries too.
    fib.routes(vec![(p("10.244.50.0/26"), hops(&["10.1.0.50"]))]);
    poll("the new VTEP's entry", Duration::from_secs(5), || {
        std::fs::read_to_string(&log).unwrap_or_default().contains("10.1.0.50").then_some(())
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    mon.stop(Duration::from_secs(2));
    let events = std::fs::read_to_string(&log).unwrap();
    let fdb_events: Vec<&str> = events.lines().filter(|l| l.contains("vxlan.merle")).collect();
    assert_eq!(fdb_events.len(), 1, "only the new VTEP's FDB entry may be written: {fdb_events:#?}");
    fib.stop();
}

/// The ifindex of `dev` in `ns`.
fn ifindex(ns: &Netns, dev: &str) -> u32 {
    let v: serde_json::Value = serde_json::from_str(&ns.ip(&["-j", "link", "show", "dev", dev]).unwrap()).unwrap();
    v[0]["ifindex"].as_u64().unwrap() as u32
}

/// Every kind of route merle builds, sent to the kernel as
/// `kernel::route_message` makes it, is what the kernel then reports: in
/// `ip -j route` (read by iproute2, not by merle) with the destination,
/// type, gateways, devices and `onlink` flags merle meant, and read back
/// from a kernel dump by merle's own reader as the spec it was built from.
#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn route_messages_are_what_the_kernel_reports() {
    use fib_sync::kernel::{self, Devices};
    use fib_sync::{Hop, RouteSpec};
    use merle_netlink::{Netlink, Request};
    use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
    use netlink_packet_route::RouteNetlinkMessage;

    if testbed::skip_unless_root("route_messages_are_what_the_kernel_reports") {
        return;
    }
    let ns = node();
    ns.add_addr("eth0", "fd00::1/64").unwrap();
    for (dev, local) in [("vxlan.merle", "10.0.0.1"), ("vxlan-v6.merle", "fd00::1")] {
        ns.ip(&["link", "add", dev, "type", "vxlan", "id", "4096", "dstport", "4789", "local", local, "nolearning"])
            .unwrap();
        ns.ip(&["link", "set", dev, "up"]).unwrap();
    }
    let devs = Devices {
        vxlan_v4: Some(ifindex(&ns, "vxlan.merle")),
        vxlan_v6: Some(ifindex(&ns, "vxlan-v6.merle")),
        tunl0: None,
    };
    let owner = Owner { table: 254, protocol: 198 };
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let ll = |s: &str| fib_sync::vtep::route_gateway(ip(s)).to_string();
    let cases: Vec<(&str, RouteSpec)> = vec![
        ("10.244.1.0/26", RouteSpec::Blackhole),
        ("10.244.2.0/26", RouteSpec::Via(vec![Hop::Direct(ip("10.0.0.2"))])),
        ("10.244.3.0/26", RouteSpec::Via(vec![Hop::Vxlan(ip("10.1.0.3"))])),
        ("10.96.0.0/12", RouteSpec::Via(vec![Hop::Direct(ip("10.0.0.2")), Hop::Direct(ip("10.0.0.3"))])),
        ("fd00:244::/122", RouteSpec::Blackhole),
        ("fd00:244:0:1::/122", RouteSpec::Via(vec![Hop::Vxlan(ip("fd00:1::3"))])),
        ("fd00:96::/108", RouteSpec::Via(vec![Hop::Direct(ip("fd00::2")), Hop::Vxlan(ip("fd00:1::3"))])),
    ];
    let reqs: Vec<Request> = cases
        .iter()
        .map(|(p, spec)| Request {
            message: RouteNetlinkMessage::NewRoute(
                kernel::route_message(p.parse().unwrap(), spec, owner, &devs).unwrap(),
            ),
            flags: NLM_F_CREATE | NLM_F_EXCL,
        })
        .collect();
    let (results, dumped) = ns
        .spawn(move || {
            let mut nl = Netlink::open().unwrap();
            let results = nl.execute(reqs).unwrap();
            let mut dumped = Vec::new();
            for v6 in [false, true] {
                for m in nl.dump(RouteNetlinkMessage::GetRoute(kernel::route_dump(v6))).unwrap() {
                    if let RouteNetlinkMessage::NewRoute(m) = m {
                        dumped.extend(kernel::read_route(&m, &devs).filter(|k| k.protocol == 198));
                    }
                }
            }
            (results, dumped)
        })
        .unwrap()
        .join()
        .unwrap()
        .unwrap();
    for ((p, _), r) in cases.iter().zip(&results) {
        assert!(r.is_ok(), "{p}: the kernel refused merle's message: {r:?}");
    }

    // What iproute2 reads from the kernel, field by field.
    let shown = |family: &str| -> Vec<serde_json::Value> {
        serde_json::from_str(&ns.ip(&[family, "-j", "route", "show", "proto", PROTO]).unwrap()).unwrap()
    };
    let all: Vec<serde_json::Value> = shown("-4").into_iter().chain(shown("-6")).collect();
    let route = |dst: &str| -> &serde_json::Value {
        all.iter().find(|r| r["dst"] == dst).unwrap_or_else(|| panic!("{dst} not in the kernel: {all:#?}"))
    };
    let onlink = |h: &serde_json::Value| h["flags"].as_array().is_some_and(|f| f.iter().any(|x| x == "onlink"));
    assert_eq!(route("10.244.1.0/26")["type"], "blackhole");
    assert_eq!(route("fd00:244::/122")["type"], "blackhole");
    let r = route("10.244.2.0/26");
    assert_eq!((r["gateway"].as_str(), r["dev"].as_str(), onlink(r)), (Some("10.0.0.2"), Some("eth0"), false));
    let r = route("10.244.3.0/26");
    assert_eq!((r["gateway"].as_str(), r["dev"].as_str(), onlink(r)), (Some("10.1.0.3"), Some("vxlan.merle"), true));
    let r = route("fd00:244:0:1::/122");
    let gw = ll("fd00:1::3");
    assert_eq!(
        (r["gateway"].as_str(), r["dev"].as_str(), onlink(r)),
        (Some(gw.as_str()), Some("vxlan-v6.merle"), true),
        "an IPv6 VXLAN route goes through the VTEP's link-local address"
    );
    let hops = |dst: &str| -> Vec<(String, String, bool)> {
        let mut v: Vec<_> = route(dst)["nexthops"]
            .as_array()
            .unwrap_or_else(|| panic!("{dst} is not multipath: {:#}", route(dst)))
            .iter()
            .map(|h| (h["gateway"].as_str().unwrap().to_owned(), h["dev"].as_str().unwrap().to_owned(), onlink(h)))
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        hops("10.96.0.0/12"),
        vec![("10.0.0.2".into(), "eth0".into(), false), ("10.0.0.3".into(), "eth0".into(), false)]
    );
    assert_eq!(
        hops("fd00:96::/108"),
        vec![("fd00::2".into(), "eth0".into(), false), (gw.clone(), "vxlan-v6.merle".into(), true)]
    );

    // And merle's reader, given the kernel's own dump, finds each spec.
    for (p, spec) in &cases {
        let k = dumped.iter().find(|k| k.prefix.to_string() == *p).unwrap_or_else(|| panic!("{p} not dumped"));
        assert_eq!(k.spec, *spec.kernel_form(), "{p}");
    }
    assert_eq!(dumped.len(), cases.len(), "{dumped:#?}");
}
