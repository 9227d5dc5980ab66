//! merled as the DaemonSet runs it: the node's address found by
//! `address_autodetect`, and the health endpoint the kubelet's probes ask
//! (`[health] listen`), against a BIRD 2 peer.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;
use testbed::bird::Bird;
use testbed::netns::Netns;
use testbed::wait;

/// One HTTP/1.1 request from inside `ns`: the status code and the body.
fn http(ns: &Netns, method: &str, path: &str) -> Option<(u16, String)> {
    let req = format!("{method} {path} HTTP/1.1\r\nHost: merled\r\nConnection: close\r\n\r\n");
    ns.spawn(move || -> Option<(u16, String)> {
        let mut s =
            std::net::TcpStream::connect_timeout(&"127.0.0.1:9099".parse().ok()?, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        s.write_all(req.as_bytes()).ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        let code = out.split_whitespace().nth(1)?.parse().ok()?;
        let body = out.split_once("\r\n\r\n").map(|(_, b)| b.trim().to_owned()).unwrap_or_default();
        Some((code, body))
    })
    .ok()?
    .join()
    .ok()?
    .ok()?
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn the_probes_see_merled_live_then_ready_once_its_fib_converged_and_it_finds_its_own_address() {
    if testbed::skip_unless_root("health_probes") {
        return;
    }
    require("bird");
    let p = pair("hlth");
    let bird = Bird::start(
        &p.peer,
        "hlth",
        &format!(
            "log stderr all;\nrouter id {PEER_V4};\nprotocol device {{}}\n\
             protocol static s4 {{ ipv4; route 10.250.1.0/24 blackhole; }}\n\
             protocol bgp merle4 {{ local {PEER_V4} as 64512; neighbor {MERLE_V4} as 64512; hold time 9; \
             connect retry time 2; direct; ipv4 {{ import all; export all; }}; }}\n"
        ),
    )
    .unwrap();
    // The file the DaemonSet's ConfigMap holds: no address, only how to
    // find it; the health endpoint on the loopback, as calico-node's.
    let cfg = merled_config(&[(PEER_V4, 64512)], 9)
        .replace(&format!("address = \"{MERLE_V4}/24\"\n"), &format!("address_autodetect = \"can-reach={PEER_V4}\"\n"))
        + "\n[health]\nlisten = \"127.0.0.1:9099\"\n\n[log]\nformat = \"json\"\n";
    assert!(!cfg.contains(&format!("address = \"{MERLE_V4}")));
    let m = start_merled(&p, &cfg);
    let st = m.status().unwrap();
    assert_eq!(st["router_id"], MERLE_V4, "the router id is the address can-reach found: {st}");

    let (code, body) = wait::poll("the health endpoint", Duration::from_secs(10), || http(&p.merle, "GET", "/healthz"))
        .unwrap_or_else(|e| panic!("{e}\n{}", m.daemon.log_tail(30)));
    assert_eq!(code, 200, "{body}");
    assert!(body.starts_with("live:"), "{body}");
    wait_established(&m, PEER_V4, Duration::from_secs(30));
    let ready = wait::poll("ready", Duration::from_secs(30), || {
        let (code, body) = http(&p.merle, "GET", "/readyz")?;
        (code == 200).then_some(body)
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}\n{}", http(&p.merle, "GET", "/readyz"), m.daemon.log_tail(30)));
    assert_eq!(ready, "ready: 1 sessions set up, 1 Established");

    // The peer going away does not make the node unready: a ToR down must
    // not stall a rolling update of every node.
    drop(bird);
    wait::poll("the session down", Duration::from_secs(30), || {
        (m.peer_state(PEER_V4).as_deref() != Some("Established")).then_some(())
    })
    .unwrap();
    let (code, body) = http(&p.merle, "GET", "/readyz").unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(body, "ready: 1 sessions set up, 0 Established");

    // The log is JSON, one object a line, as log shippers want it.
    let log = m.daemon.log_tail(200);
    let lines: Vec<&str> = log.lines().filter(|l| l.starts_with('{')).collect();
    assert!(lines.len() >= 3, "{log}");
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(v["timestamp"].is_string() && v["level"].is_string() && v["message"].is_string(), "{l}");
    }
    assert!(lines.iter().any(|l| l.contains("\"message\":\"merled started\"")), "{log}");

    // Anything else is refused by name.
    let (code, body) = http(&p.merle, "GET", "/metrics").unwrap();
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("/healthz and /readyz"), "{body}");
    assert_eq!(http(&p.merle, "POST", "/readyz").unwrap().0, 405);
    // Only on the loopback, as configured.
    let outside = p.peer.spawn(move || {
        std::net::TcpStream::connect_timeout(&format!("{MERLE_V4}:9099").parse().unwrap(), Duration::from_secs(1))
            .is_ok()
    });
    assert!(!outside.unwrap().join().unwrap().unwrap(), "the health port must not answer off the loopback");
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn a_health_address_merled_cannot_listen_on_stops_it_with_the_key_named() {
    if testbed::skip_unless_root("health_bad_listen") {
        return;
    }
    let p = pair("hlbad");
    let cfg = merled_config(&[], 9) + "\n[health]\nlisten = \"192.0.2.77:9099\"\n";
    let err = match testbed::merled::Merled::start(&p.merle, "merle", &merled_bin(), &merlectl_bin(), &cfg) {
        Ok(_) => panic!("merled started on an address it does not have"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("health.listen 192.0.2.77:9099: cannot listen"), "{err}");
}
