//! Interop with FRR's bgpd as an eBGP top-of-rack router, in network
//! namespaces, checked through `vtysh ... json`; and failure and recovery.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;
use testbed::frr::{Frr, BGPD};
use testbed::wait;

const T: Duration = Duration::from_secs(30);

fn frr_config(hold: u16) -> String {
    format!(
        r#"hostname tor
router bgp 65001
 bgp router-id {PEER_V4}
 no bgp ebgp-requires-policy
 no bgp network import-check
 no bgp default ipv4-unicast
 timers bgp {ka} {hold}
 neighbor {MERLE_V4} remote-as 64512
 neighbor {MERLE_V4} timers connect 2
 address-family ipv4 unicast
  network 10.250.1.0/24 route-map TAG
  neighbor {MERLE_V4} activate
 exit-address-family
 address-family ipv6 unicast
  network fd00:250:1::/64
  neighbor {MERLE_V4} activate
  neighbor {MERLE_V4} route-map V6-NH out
 exit-address-family
!
route-map TAG permit 10
 set community 65001:200
 set large-community 65001:3:4
!
route-map V6-NH permit 10
 set ipv6 next-hop global {PEER_V6}
!
"#,
        ka = hold / 3
    )
}

fn frr_path(f: &Frr, family: &str, prefix: &str) -> Option<Value> {
    let v = f.json(&format!("show bgp {family} unicast {prefix} json")).ok()?;
    v["paths"].as_array()?.first().cloned()
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn frr_tor_ebgp_ipv4_and_ipv6() {
    if testbed::skip_unless_root("frr_tor_ebgp_ipv4_and_ipv6") {
        return;
    }
    require(BGPD);
    let p = pair("fe");
    let frr = Frr::start(&p.peer, "tor", &frr_config(90)).unwrap();
    let m = start_merled(&p, &merled_config(&[(PEER_V4, 65001)], 90));
    wait_established(&m, PEER_V4, T);
    wait::poll("FRR sees merled Established", T, || {
        (frr.neighbor_state(MERLE_V4).as_deref() == Some("Established")).then_some(())
    })
    .unwrap();

    // FRR -> merled.
    let r = wait_route(&m, "10.250.1.0/24", PEER_V4, T);
    assert_eq!(r["next_hop"], PEER_V4);
    assert_eq!(as_path(&r), vec![65001]);
    assert_eq!(r["origin"], "igp");
    assert_eq!(r["communities"][0], "65001:200");
    assert_eq!(r["large_communities"][0], "65001:3:4");
    let r = wait_route(&m, "fd00:250:1::/64", PEER_V4, T);
    assert_eq!(r["next_hop"], PEER_V6);
    assert_eq!(as_path(&r), vec![65001]);

    // merled -> FRR, through vtysh JSON.
    let path = wait::poll("10.244.1.0/26 in FRR", T, || frr_path(&frr, "ipv4", "10.244.1.0/26")).unwrap();
    assert_eq!(path["aspath"]["string"], "64512", "{path}");
    assert_eq!(path["origin"], "IGP", "{path}");
    assert_eq!(path["nexthops"][0]["ip"], MERLE_V4, "{path}");
    assert_eq!(path["peer"]["peerId"], MERLE_V4, "{path}");
    let path = wait::poll("fd00:244:1::/122 in FRR", T, || frr_path(&frr, "ipv6", "fd00:244:1::/122")).unwrap();
    assert_eq!(path["aspath"]["string"], "64512", "{path}");
    assert_eq!(path["nexthops"][0]["ip"], MERLE_V6, "{path}");

    // FRR re-advertises merled's own route back; merled drops it (AS loop).
    assert!(m.route("10.244.1.0/26", PEER_V4).is_none());
    // merlectl's table output names the peer and marks the best path.
    let table = m.merlectl(&["routes"]).unwrap();
    assert!(table.contains("10.250.1.0/24") && table.contains("65001") && table.contains(PEER_V4), "{table}");
    let status = m.merlectl(&["status"]).unwrap();
    assert!(status.contains(PEER_V4) && status.contains("Established") && status.contains("global (ebgp)"), "{status}");
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn frr_failure_and_recovery() {
    if testbed::skip_unless_root("frr_failure_and_recovery") {
        return;
    }
    require(BGPD);
    let p = pair("ff");
    let hold = 6;
    let mut frr = Frr::start(&p.peer, "tor", &frr_config(hold)).unwrap();
    let m = start_merled(&p, &merled_config(&[(PEER_V4, 65001)], hold));
    wait_established(&m, PEER_V4, T);
    wait_route(&m, "10.250.1.0/24", PEER_V4, T);

    // Crash (SIGKILL): the kernel closes the socket; routes go at once.
    frr.daemon.kill();
    wait_down_and_withdrawn(&m, PEER_V4, "10.250.1.0/24", Duration::from_secs(u64::from(hold)));
    drop(frr);

    // FRR restarts: the session comes back on its own.
    let frr = Frr::start(&p.peer, "tor2", &frr_config(hold)).unwrap();
    wait_established(&m, PEER_V4, T);
    wait_route(&m, "10.250.1.0/24", PEER_V4, T);
    wait::poll("merled's route back in FRR", T, || frr_path(&frr, "ipv4", "10.244.1.0/26")).unwrap();

    // Freeze FRR: merled's hold timer expires and the routes go.
    let pid = frr.daemon.pid().unwrap().to_string();
    testbed::netns::run(std::process::Command::new("kill").args(["-STOP", &pid])).unwrap();
    wait_down_and_withdrawn(&m, PEER_V4, "10.250.1.0/24", Duration::from_secs(u64::from(hold) + 2));
    testbed::netns::run(std::process::Command::new("kill").args(["-CONT", &pid])).unwrap();
    wait_established(&m, PEER_V4, T);
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn frr_two_octet_peer_sees_as_trans() {
    if testbed::skip_unless_root("frr_two_octet_peer_sees_as_trans") {
        return;
    }
    require(BGPD);
    let p = pair("f2");
    // FRR sends no capabilities at all, so it is an "old" 2-octet speaker:
    // merled's AS 4200000001 must reach it as AS_TRANS (RFC 6793 §4.2.2).
    // (That AS4_PATH rides along is checked on the wire in daemon.rs.)
    let cfg = format!(
        r#"hostname tor
router bgp 65001
 bgp router-id {PEER_V4}
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor {MERLE_V4} remote-as 4200000001
 neighbor {MERLE_V4} dont-capability-negotiate
 neighbor {MERLE_V4} timers connect 2
 address-family ipv4 unicast
  network 10.250.1.0/24
 exit-address-family
!
"#
    );
    let frr = Frr::start(&p.peer, "as2", &cfg).unwrap();
    let m =
        start_merled(&p, &merled_config(&[(PEER_V4, 65001)], 90).replace("[bgp]", "as_number = 4200000001\n\n[bgp]"));
    wait_established(&m, PEER_V4, T);
    let st = m.peer(PEER_V4).unwrap();
    assert_eq!(st["four_octet_as"], false, "{st}");
    assert_eq!(st["families"], serde_json::json!(["ipv4-unicast"]), "{st}");
    let r = wait_route(&m, "10.250.1.0/24", PEER_V4, T);
    assert_eq!(as_path(&r), vec![65001]);
    let path = wait::poll("10.244.1.0/26 in FRR", T, || frr_path(&frr, "ipv4", "10.244.1.0/26")).unwrap();
    assert_eq!(path["aspath"]["string"], "23456", "{path}");
    assert_eq!(path["origin"], "IGP", "{path}");
}
