//! Interop with BIRD 2 in network namespaces: iBGP and eBGP, IPv4 and IPv6
//! unicast both ways, and failure and recovery.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use testbed::bird::Bird;
use testbed::wait;

const T: Duration = Duration::from_secs(30);

fn bird_config(local_as: u32, ebgp: bool, hold: u16) -> String {
    // iBGP: one session per transport family. eBGP: one IPv4 session
    // carrying both families (MP-BGP), with an explicit IPv6 next hop.
    let filters = r#"
filter out_v4 {
  if net = 10.250.1.0/24 then {
    bgp_med = 50;
    bgp_community.add((65002,100));
    bgp_large_community.add((65002,1,2));
  }
  accept;
}
"#;
    let statics = r#"
protocol device { scan time 10; }
protocol static s4 { ipv4; route 10.250.1.0/24 blackhole; route 10.250.2.0/24 blackhole; }
protocol static s6 { ipv6; route fd00:250:1::/64 blackhole; }
"#;
    let sessions = if ebgp {
        format!(
            r#"
protocol bgp merle4 {{
  local {PEER_V4} as {local_as};
  neighbor {MERLE_V4} as 64512;
  hold time {hold};
  connect retry time 2;
  error wait time 1, 5;
  ipv4 {{ import all; export filter out_v4; add paths tx; }};
  ipv6 {{ import all; export all; next hop address {PEER_V6}; add paths tx; }};
}}
"#
        )
    } else {
        format!(
            r#"
protocol bgp merle4 {{
  local {PEER_V4} as {local_as};
  neighbor {MERLE_V4} as 64512;
  hold time {hold};
  connect retry time 2;
  error wait time 1, 5;
  direct;
  ipv4 {{ import all; export filter out_v4; }};
}}
protocol bgp merle6 {{
  local {PEER_V6} as {local_as};
  neighbor {MERLE_V6} as 64512;
  hold time {hold};
  connect retry time 2;
  error wait time 1, 5;
  direct;
  ipv6 {{ import all; export all; }};
  ipv4 {{ import all; export filter out_v4; extended next hop on; }};
}}
"#
        )
    };
    format!("log stderr all;\nrouter id {PEER_V4};\n{statics}{filters}{sessions}")
}

/// BIRD's `show route all` for a prefix.
fn bird_route(b: &Bird, prefix: &str) -> Option<String> {
    let s = b.birdc(&["show", "route", "for", prefix, "all"]).ok()?;
    s.contains("BGP.as_path").then_some(s)
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn bird_ibgp_ipv4_and_ipv6_both_ways() {
    if testbed::skip_unless_root("bird_ibgp_ipv4_and_ipv6_both_ways") {
        return;
    }
    require("bird");
    let p = pair("bi");
    let bird = Bird::start(&p.peer, "ibgp", &bird_config(64512, false, 90)).unwrap();
    let m = start_merled(&p, &merled_config(&[(PEER_V4, 64512), (PEER_V6, 64512)], 90));
    wait_established(&m, PEER_V4, T);
    wait_established(&m, PEER_V6, T);

    // BIRD -> merled.
    let r = wait_route(&m, "10.250.1.0/24", PEER_V4, T);
    assert_eq!(r["next_hop"], PEER_V4);
    assert_eq!(as_path(&r), Vec::<u64>::new());
    assert_eq!(r["origin"], "igp");
    assert_eq!(r["med"], 50);
    assert_eq!(r["local_pref"], 100);
    assert_eq!(r["communities"][0], "65002:100");
    assert_eq!(r["large_communities"][0], "65002:1:2");
    assert_eq!(r["best"], true);
    let r = wait_route(&m, "fd00:250:1::/64", PEER_V6, T);
    assert_eq!(r["next_hop"], PEER_V6);
    assert_eq!(r["origin"], "igp");
    // The IPv4 route also arrives over the IPv6 session with an IPv6 next
    // hop (RFC 8950). The two paths tie down to the peer address.
    let r = wait_route(&m, "10.250.1.0/24", PEER_V6, T);
    assert_eq!(r["next_hop"], PEER_V6);
    assert_eq!(r["best"], false);
    assert_eq!(r["lost_at"], "peer-address");

    // merled -> BIRD.
    let s = wait::poll("10.244.1.0/26 in BIRD", T, || bird_route(&bird, "10.244.1.0/26")).unwrap();
    assert!(s.contains(&format!("via {MERLE_V4}")), "{s}");
    assert!(s.contains("BGP.origin: IGP"), "{s}");
    assert!(s.contains("BGP.as_path: \n") || s.contains("BGP.as_path:\n") || s.contains("BGP.as_path: \r"), "{s}");
    assert!(s.contains("BGP.local_pref: 100"), "{s}");
    let s = wait::poll("fd00:244:1::/122 in BIRD", T, || bird_route(&bird, "fd00:244:1::/122")).unwrap();
    assert!(s.contains(&format!("via {MERLE_V6}")), "{s}");

    // The status JSON carries the contract fields.
    let st = m.peer(PEER_V4).unwrap();
    assert_eq!(st["as_number"], 64512);
    assert_eq!(st["session"], "ibgp");
    assert!(st["since"].as_str().unwrap().ends_with('Z'));
    assert_eq!(st["families"][0], "ipv4-unicast");
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn bird_ebgp_ipv4_and_ipv6_over_one_session() {
    if testbed::skip_unless_root("bird_ebgp_ipv4_and_ipv6_over_one_session") {
        return;
    }
    require("bird");
    let p = pair("be");
    let bird = Bird::start(&p.peer, "ebgp", &bird_config(65002, true, 90)).unwrap();
    let m = start_merled(&p, &merled_config(&[(PEER_V4, 65002)], 90));
    wait_established(&m, PEER_V4, T);

    let r = wait_route(&m, "10.250.1.0/24", PEER_V4, T);
    assert_eq!(r["next_hop"], PEER_V4);
    assert_eq!(as_path(&r), vec![65002]);
    assert_eq!(r["origin"], "igp");
    assert_eq!(r["local_pref"], serde_json::Value::Null, "LOCAL_PREF is not sent over eBGP");
    let r = wait_route(&m, "fd00:250:1::/64", PEER_V4, T);
    assert_eq!(r["next_hop"], PEER_V6);
    assert_eq!(as_path(&r), vec![65002]);

    let s = wait::poll("10.244.1.0/26 in BIRD", T, || bird_route(&bird, "10.244.1.0/26")).unwrap();
    assert!(s.contains(&format!("via {MERLE_V4}")), "{s}");
    assert!(s.contains("BGP.as_path: 64512"), "{s}");
    assert!(s.contains("BGP.origin: IGP"), "{s}");
    let s = wait::poll("fd00:244:1::/122 in BIRD", T, || bird_route(&bird, "fd00:244:1::/122")).unwrap();
    assert!(s.contains(&format!("via {MERLE_V6}")), "{s}");
    assert!(s.contains("BGP.as_path: 64512"), "{s}");
    assert_eq!(m.peer(PEER_V4).unwrap()["session"], "ebgp");

    // BIRD sends path identifiers (ADD-PATH, which merled receives).
    let r = m.route("10.250.2.0/24", PEER_V4).unwrap();
    assert_ne!(r["path_id"], 0, "{r}");

    // `birdc reload in` makes BIRD send ROUTE-REFRESH; merled answers by
    // sending its routes again.
    let sent = m.peer(PEER_V4).unwrap()["updates_sent"].as_u64().unwrap();
    bird.birdc(&["reload", "in", "merle4"]).unwrap();
    wait::poll("routes re-sent after ROUTE-REFRESH", T, || {
        (m.peer(PEER_V4)?["updates_sent"].as_u64()? > sent).then_some(())
    })
    .unwrap();
    assert!(m.daemon.log_tail(100).contains("route refresh requested"));
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn bird_failure_and_recovery() {
    if testbed::skip_unless_root("bird_failure_and_recovery") {
        return;
    }
    require("bird");
    let p = pair("bf");
    let hold = 6;
    let cfg = bird_config(65002, true, hold);
    let mut bird = Bird::start(&p.peer, "fail", &cfg).unwrap();
    let m = start_merled(&p, &merled_config(&[(PEER_V4, 65002)], hold));
    wait_established(&m, PEER_V4, T);
    wait_route(&m, "10.250.1.0/24", PEER_V4, T);
    assert_eq!(m.peer(PEER_V4).unwrap()["hold_time"], hold);

    // 1. The peer freezes: no keepalives, TCP still open. The hold timer
    //    must take the session down and withdraw the routes in time.
    let pid = bird.daemon.pid().unwrap().to_string();
    testbed::netns::run(std::process::Command::new("kill").args(["-STOP", &pid])).unwrap();
    let t0 = Instant::now();
    wait::until(
        "routes withdrawn after hold timer",
        Duration::from_secs(u64::from(hold) + 3),
        Duration::from_millis(100),
        || {
            (m.peer_state(PEER_V4).as_deref() != Some("Established") && m.route("10.250.1.0/24", PEER_V4).is_none())
                .then_some(())
        },
    )
    .unwrap();
    let took = t0.elapsed();
    assert!(took <= Duration::from_secs(u64::from(hold) + 1), "took {took:?}");
    let st = m.peer(PEER_V4).unwrap();
    assert!(st["last_error"].as_str().unwrap().contains("hold timer expired"), "{st}");
    testbed::netns::run(std::process::Command::new("kill").args(["-CONT", &pid])).unwrap();
    // It comes back on its own.
    wait_established(&m, PEER_V4, T);
    wait_route(&m, "10.250.1.0/24", PEER_V4, T);

    // 2. The peer stops cleanly (Cease): routes go at once.
    bird.daemon.stop(Duration::from_secs(5));
    wait_down_and_withdrawn(&m, PEER_V4, "10.250.1.0/24", Duration::from_secs(u64::from(hold)));

    // 3. A new BIRD comes up: the session re-establishes with no help.
    bird = Bird::start(&p.peer, "fail2", &cfg).unwrap();
    wait_established(&m, PEER_V4, T);
    wait_route(&m, "10.250.1.0/24", PEER_V4, T);
    wait::poll("merled's route back in BIRD", T, || bird_route(&bird, "10.244.1.0/26")).unwrap();
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn bird_filters_import_and_export() {
    if testbed::skip_unless_root("bird_filters_import_and_export") {
        return;
    }
    require("bird");
    let p = pair("bx");
    let bird = Bird::start(&p.peer, "filters", &bird_config(65002, true, 90)).unwrap();
    let filters = r#"
[[advertise]]
prefix = "10.244.2.0/26"

[[filters]]
name = "tor"
[[filters.export_v4]]
cidr = "10.244.2.0/26"
match_operator = "Equal"
action = "Reject"
[[filters.export_v4]]
cidr = "10.244.0.0/16"
match_operator = "In"
prefix_length = { min = 26, max = 26 }
action = "Accept"
add_community = "64512:7"
prepend_as_path = [64512, 64512]
[[filters.import_v4]]
cidr = "10.250.2.0/24"
match_operator = "Equal"
action = "Reject"
[[filters.import_v4]]
community = "65002:100"
action = "Accept"
add_community = "64512:99"
"#;
    let cfg = merled_config(&[(PEER_V4, 65002)], 90)
        .replace("as_number = 65002\n", "as_number = 65002\nfilters = [\"tor\"]\n")
        .replace("[control]", &format!("{filters}\n[control]"));
    let m = start_merled(&p, &cfg);
    wait_established(&m, PEER_V4, T);
    // Import: 10.250.2.0/24 rejected; 10.250.1.0/24 (community 65002:100)
    // gets 64512:99 added.
    let r = wait_route(&m, "10.250.1.0/24", PEER_V4, T);
    assert!(r["communities"].as_array().unwrap().iter().any(|c| c == "64512:99"), "{r}");
    assert!(m.route("10.250.2.0/24", PEER_V4).is_none());
    // Export: 10.244.2.0/26 rejected; 10.244.1.0/26 prepended and tagged.
    let s = wait::poll("10.244.1.0/26 in BIRD", T, || bird_route(&bird, "10.244.1.0/26")).unwrap();
    assert!(s.contains("BGP.as_path: 64512 64512 64512"), "{s}");
    assert!(s.contains("(64512,7)"), "{s}");
    assert!(bird_route(&bird, "10.244.2.0/26").is_none());
    // IPv6 has no rules: accepted as is.
    wait::poll("fd00:244:1::/122 in BIRD", T, || bird_route(&bird, "fd00:244:1::/122")).unwrap();
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn bird_graceful_restart_both_roles() {
    if testbed::skip_unless_root("bird_graceful_restart_both_roles") {
        return;
    }
    require("bird");
    let p = pair("bg");
    let cfg = bird_config(65002, true, 30)
        .replace("  connect retry time 2;\n", "  connect retry time 2;\n  graceful restart on;\n");
    let mut bird = Bird::start(&p.peer, "gr", &cfg).unwrap();
    let m = start_merled(&p, &merled_config(&[(PEER_V4, 65002)], 30));
    wait_established(&m, PEER_V4, T);
    wait_route(&m, "10.250.1.0/24", PEER_V4, T);
    wait::poll("merled's route in BIRD", T, || bird_route(&bird, "10.244.1.0/26")).unwrap();

    // merled as the helper: BIRD crashes; its routes stay, stale.
    bird.daemon.kill();
    wait::poll("BIRD's routes kept stale", T, || {
        (m.peer_state(PEER_V4).as_deref() != Some("Established") && m.route("10.250.1.0/24", PEER_V4)?["stale"] == true)
            .then_some(())
    })
    .unwrap();
    bird = Bird::start(&p.peer, "gr2", &cfg).unwrap();
    wait::poll("BIRD's routes refreshed", T, || {
        (m.peer_state(PEER_V4).as_deref() == Some("Established")
            && m.route("10.250.1.0/24", PEER_V4)?["stale"] == false)
            .then_some(())
    })
    .unwrap();
    wait::poll("merled's route back in BIRD", T, || bird_route(&bird, "10.244.1.0/26")).unwrap();

    // BIRD as the helper: merled shuts down gracefully; BIRD keeps its
    // route while the session is down, then gets it again.
    drop(m);
    wait::poll("session down in BIRD", T, || (!bird.established("merle4")).then_some(())).unwrap();
    let kept = bird_route(&bird, "10.244.1.0/26");
    assert!(kept.is_some(), "BIRD must keep merled's route through the restart");
    let m = start_merled(&p, &merled_config(&[(PEER_V4, 65002)], 30));
    wait_established(&m, PEER_V4, T);
    wait::poll("merled's route refreshed in BIRD", T, || {
        bird.established("merle4").then(|| bird_route(&bird, "10.244.1.0/26")).flatten()
    })
    .unwrap();
}
