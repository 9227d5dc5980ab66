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
    ms[0].daemon.stop(Duration::from_secs(5));
    let rest: Vec<u8> = (2..=7).collect();
    for (i, m) in ms.iter().enumerate().skip(2) {
        let others: Vec<u8> = rest.iter().copied().filter(|b| *b != i as u8 + 1).collect();
        wait_blocks(m, &others);
        wait::poll("n1's block withdrawn", T, || {
            m.routes().ok()?.iter().all(|r| r["prefix"] != "10.244.1.0/26").then_some(())
        })
        .unwrap();
    }
    drop(ms.remove(0));
}
