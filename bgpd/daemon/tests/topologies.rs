//! Calico-style topologies of merled nodes on one LAN, in namespaces:
//! the node-to-node mesh and route reflectors.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use testbed::merled::Merled;
use testbed::netns::Lan;
use testbed::wait;

const T: Duration = Duration::from_secs(40);

/// The `[[nodes]]` list of `count` nodes; `rr` are reflectors.
fn nodes(count: u8, rr: &[u8]) -> String {
    (1..=count)
        .map(|i| {
            let rr = if rr.contains(&i) { "route_reflector_cluster_id = \"1.0.0.1\"\n" } else { "" };
            format!("[[nodes]]\nname = \"n{i}\"\naddress = \"10.0.0.{i}/24\"\n{rr}\n")
        })
        .collect()
}

fn node_config(i: u8, nodes: &str, rr: bool) -> String {
    let cluster = if rr { "route_reflector_cluster_id = \"1.0.0.1\"\n" } else { "" };
    format!(
        "[node]\nname = \"n{i}\"\naddress = \"10.0.0.{i}/24\"\n\n[bgp]\nhold_time = 9\nconnect_retry_time = 1\nconnect_retry_max = 2\n{cluster}\n\
         [[advertise]]\nprefix = \"10.244.{i}.0/26\"\n\n{nodes}[control]\nsocket = \"{{socket}}\"\n"
    )
}

fn start(lan: &Lan, count: u8, rr: &[u8]) -> Vec<Merled> {
    let list = nodes(count, rr);
    (1..=count)
        .map(|i| {
            let ns = &lan.hosts[usize::from(i - 1)];
            Merled::start(ns, &format!("n{i}"), &merled_bin(), &merlectl_bin(), &node_config(i, &list, rr.contains(&i)))
                .unwrap()
        })
        .collect()
}

/// Waits until node `m` has a route for every block in `blocks`.
fn wait_blocks(m: &Merled, blocks: &[u8]) {
    let want: Vec<String> = blocks.iter().map(|b| format!("10.244.{b}.0/26")).collect();
    if let Err(e) = wait::poll("all blocks", T, || {
        let routes = m.routes().ok()?;
        want.iter().all(|p| routes.iter().any(|r| r["prefix"] == p.as_str() && r["best"] == true)).then_some(())
    }) {
        panic!("{e}: want {want:?}\nroutes: {:?}\nlog:\n{}", m.routes(), m.daemon.log_tail(30));
    }
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn four_node_full_mesh() {
    if testbed::skip_unless_root("four_node_full_mesh") {
        return;
    }
    let lan = Lan::new("mesh", 4).unwrap();
    let ms = start(&lan, 4, &[]);
    for (i, m) in ms.iter().enumerate() {
        let others: Vec<u8> = (1..=4).filter(|b| *b != i as u8 + 1).collect();
        wait_blocks(m, &others);
        let st = m.status().unwrap();
        let peers = st["peers"].as_array().unwrap();
        assert_eq!(peers.len(), 3, "three mesh peers, own entry skipped");
        for p in peers {
            assert_eq!(p["peer_type"], "node-to-node mesh");
            assert_eq!(p["state"], "Established");
            // The higher address is the passive side.
            let their = p["address"].as_str().unwrap().rsplit('.').next().unwrap().parse::<usize>().unwrap();
            assert_eq!(p["passive"], (i + 1) > their, "{p}");
        }
        // A block learned in the mesh comes straight from its owner.
        let r = m.routes().unwrap().into_iter().find(|r| r["prefix"] == format!("10.244.{}.0/26", others[0])).unwrap();
        assert_eq!(r["peer"], format!("10.0.0.{}", others[0]));
        assert_eq!(r["next_hop"], format!("10.0.0.{}", others[0]));
    }
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn two_reflectors_one_cluster_five_clients() {
    if testbed::skip_unless_root("two_reflectors_one_cluster_five_clients") {
        return;
    }
    let lan = Lan::new("rr", 7).unwrap();
    let mut ms = start(&lan, 7, &[1, 2]);
    let all: Vec<u8> = (1..=7).collect();
    for (i, m) in ms.iter().enumerate() {
        let others: Vec<u8> = all.iter().copied().filter(|b| *b != i as u8 + 1).collect();
        wait_blocks(m, &others);
    }
    // A client sees another client's block through both reflectors, with
    // the originator and the cluster recorded.
    let c3 = &ms[2];
    let routes = c3.routes().unwrap();
    let via: Vec<&serde_json::Value> = routes.iter().filter(|r| r["prefix"] == "10.244.5.0/26").collect();
    assert_eq!(via.len(), 2, "{via:?}");
    for r in &via {
        assert_eq!(r["originator_id"], "10.0.0.5");
        assert_eq!(r["cluster_list"], serde_json::json!(["1.0.0.1"]));
        assert_eq!(r["next_hop"], "10.0.0.5", "a reflector keeps the next hop");
    }
    let st = c3.status().unwrap();
    let kinds: Vec<&str> = st["peers"].as_array().unwrap().iter().map(|p| p["peer_type"].as_str().unwrap()).collect();
    assert_eq!(kinds, vec!["route reflector", "route reflector"]);
    // Reflector n1 sees clients and the other reflector.
    let st = ms[0].status().unwrap();
    let clients = st["peers"].as_array().unwrap().iter().filter(|p| p["peer_type"] == "route reflector client").count();
    assert_eq!(clients, 5);

    // Stop one reflector: everything stays converged through the other.
    // n1 shuts down gracefully (RFC 4724/8538): its paths are kept, stale,
    // while it is away, and every block still has a fresh path through n2.
    ms[0].daemon.stop(Duration::from_secs(5));
    for (i, m) in ms.iter().enumerate().skip(2) {
        let others: Vec<u8> = all.iter().copied().filter(|b| *b != i as u8 + 1).collect();
        wait_blocks(m, &others);
        wait::poll("every block fresh through n2, n1's paths stale", T, || {
            let routes = m.routes().ok()?;
            let via_n2 = others.iter().all(|b| {
                routes.iter().any(|r| {
                    r["prefix"] == format!("10.244.{b}.0/26") && r["peer"] == "10.0.0.2" && r["stale"] == false
                })
            });
            let n1_stale = routes.iter().filter(|r| r["peer"] == "10.0.0.1").all(|r| r["stale"] == true);
            (via_n2 && n1_stale).then_some(())
        })
        .unwrap();
    }
    drop(ms.remove(0));
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn graceful_restart_keeps_routes_stale_then_refreshes_them() {
    if testbed::skip_unless_root("graceful_restart_keeps_routes_stale_then_refreshes_them") {
        return;
    }
    let lan = Lan::new("gr", 2).unwrap();
    let mut ms = start(&lan, 2, &[]);
    wait_blocks(&ms[1], &[1]);
    let fresh = |m: &Merled| m.routes().ok().and_then(|r| r.into_iter().find(|r| r["prefix"] == "10.244.1.0/26"));
    assert_eq!(fresh(&ms[1]).unwrap()["stale"], false);

    // n1 restarts. n2 keeps n1's block, stale, the whole time.
    let cfg = std::fs::read_to_string(&ms[0].config).unwrap();
    ms[0].daemon.stop(Duration::from_secs(5));
    wait::poll("n1's block stale on n2", T, || (fresh(&ms[1])?["stale"] == true).then_some(())).unwrap();
    assert_ne!(ms[1].peer_state("10.0.0.1").as_deref(), Some("Established"));
    let socket_dir = ms[0].socket.parent().unwrap().to_owned();
    assert!(socket_dir.join("merled.gr").exists(), "a graceful shutdown leaves its mark");
    let old = ms.remove(0);
    // Start n1 again with the same config and control socket directory.
    let conf_path = old.config.clone();
    let log = socket_dir.join("merled.restart.log");
    std::fs::write(&conf_path, cfg).unwrap();
    let mut again = testbed::process::Daemon::spawn(
        &lan.hosts[0],
        "merled n1 again",
        &[merled_bin().to_str().unwrap(), "--config", conf_path.to_str().unwrap()],
        &log,
        &[("MERLE_LOG", "debug")],
    )
    .unwrap();
    wait::poll("n1's block refreshed on n2", T, || {
        (ms[0].peer_state("10.0.0.1").as_deref() == Some("Established") && fresh(&ms[0])?["stale"] == false)
            .then_some(())
    })
    .unwrap();
    let restarted_log = std::fs::read_to_string(&log).unwrap();
    assert!(restarted_log.contains("restarting gracefully"), "{restarted_log}");
    let n2_log = ms[0].daemon.log_tail(200);
    assert!(n2_log.contains("graceful restart: keeping routes as stale"), "{n2_log}");
    again.stop(Duration::from_secs(5));
    drop(old);
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn live_reload_changes_only_what_the_edit_touches() {
    if testbed::skip_unless_root("live_reload_changes_only_what_the_edit_touches") {
        return;
    }
    let lan = Lan::new("lr", 4).unwrap();
    let ms = start(&lan, 4, &[]);
    for (i, m) in ms.iter().enumerate() {
        let others: Vec<u8> = (1..=4).filter(|b| *b != i as u8 + 1).collect();
        wait_blocks(m, &others);
    }
    let since = |m: &Merled, peer: &str| m.peer(peer).map(|p| (p["since_unix"].clone(), p["state"].clone()));
    let before: Vec<_> = (0..3)
        .map(|i| {
            (1..=3).filter(|j| *j != i + 1).map(|j| since(&ms[i as usize], &format!("10.0.0.{j}"))).collect::<Vec<_>>()
        })
        .collect();

    // Remove n4 from the node list of n1, n2 and n3.
    let without_n4 = nodes(3, &[]);
    for i in 1..=3u8 {
        let text =
            node_config(i, &without_n4, false).replace("{socket}", ms[usize::from(i - 1)].socket.to_str().unwrap());
        ms[usize::from(i - 1)].write_config(&text).unwrap();
    }
    for m in &ms[..3] {
        wait::poll("n4 gone", T, || {
            let gone_route = m.routes().ok()?.iter().all(|r| r["prefix"] != "10.244.4.0/26");
            (gone_route && m.peer("10.0.0.4").is_none()).then_some(())
        })
        .unwrap();
    }
    // No other session was reset.
    let after: Vec<_> = (0..3)
        .map(|i| {
            (1..=3).filter(|j| *j != i + 1).map(|j| since(&ms[i as usize], &format!("10.0.0.{j}"))).collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(before, after);
    assert!(ms[0].daemon.log_tail(200).contains("configuration reloaded"));

    // An invalid edit is rejected as a whole and shown; nothing changes.
    let good = std::fs::read_to_string(&ms[0].config).unwrap();
    ms[0].write_config(&good.replace("10.244.1.0/26", "10.244.1.0/99")).unwrap();
    wait::poll("config error shown", T, || {
        let e = ms[0].status().ok()?["config_error"].as_str()?.to_owned();
        e.contains("advertise[0].prefix").then_some(())
    })
    .unwrap();
    assert!(ms[0].merlectl(&["status"]).unwrap().contains("CONFIGURATION ERROR"));
    assert!(ms[1].route("10.244.1.0/26", "10.0.0.1").is_some(), "the running config stays");

    // A valid edit adds a prefix, picked up on SIGHUP without waiting.
    std::fs::write(
        &ms[0].config,
        good.replacen("[[nodes]]", "[[advertise]]\nprefix = \"10.244.11.0/26\"\n\n[[nodes]]", 1),
    )
    .unwrap();
    testbed::netns::run(std::process::Command::new("kill").args(["-HUP", &ms[0].daemon.pid().unwrap().to_string()]))
        .unwrap();
    wait::poll("new prefix on n2", T, || ms[1].route("10.244.11.0/26", "10.0.0.1")).unwrap();
    assert!(ms[0].status().unwrap()["config_error"].is_null());
    let after2: Vec<_> = (0..3)
        .map(|i| {
            (1..=3).filter(|j| *j != i + 1).map(|j| since(&ms[i as usize], &format!("10.0.0.{j}"))).collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(before, after2);
    // Dropping the prefix again withdraws it.
    ms[0].write_config(&good).unwrap();
    wait::poll("prefix withdrawn on n2", T, || ms[1].route("10.244.11.0/26", "10.0.0.1").is_none().then_some(()))
        .unwrap();
}
