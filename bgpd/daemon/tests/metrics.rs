//! merled's Prometheus metrics, scraped by a real Prometheus server
//! (Debian's) in the testbed and read back through Prometheus's own query
//! API, while a BIRD 2 session goes up, down and up again.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use testbed::bird::Bird;
use testbed::prometheus::Prometheus;
use testbed::wait;

const T: Duration = Duration::from_secs(30);

fn bird() -> String {
    format!(
        "log stderr all;\nrouter id {PEER_V4};\nprotocol device {{}}\n\
         protocol static s4 {{ ipv4; route 10.250.1.0/24 blackhole; route 10.250.2.0/24 blackhole; \
         route 10.250.3.0/24 blackhole; }}\n\
         protocol bgp merle4 {{ local {PEER_V4} as 65002; neighbor {MERLE_V4} as 64512; hold time 9; \
         connect retry time 1; error wait time 1, 2; direct; ipv4 {{ import all; export all; }}; }}\n"
    )
}

/// One control request, as merle-cni sends it; merled's answer.
fn control(socket: &std::path::Path, line: &str) -> serde_json::Value {
    let mut s = std::os::unix::net::UnixStream::connect(socket).unwrap();
    s.write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut out = String::new();
    BufReader::new(&s).read_line(&mut out).unwrap();
    serde_json::from_str(&out).unwrap()
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn prometheus_scrapes_merled_and_sees_the_session_go_down_and_up() {
    if testbed::skip_unless_root("prometheus_scrapes_merled") {
        return;
    }
    require("bird");
    assert!(Prometheus::installed(), "{} is missing: run ./testbed/install-deps.sh", testbed::prometheus::PROMETHEUS);
    let p = pair("prom");
    let bird_conf = bird();
    let b = Bird::start(&p.peer, "prom", &bird_conf).unwrap();
    // An import rule that turns one of BIRD's three routes away.
    let filters = "[[filters]]\nname = \"tor\"\n[[filters.import_v4]]\ncidr = \"10.250.3.0/24\"\n\
                   match_operator = \"Equal\"\naction = \"Reject\"\n";
    let cfg = merled_config(&[(PEER_V4, 65002)], 9)
        .replace("as_number = 65002\n", "as_number = 65002\nfilters = [\"tor\"]\n")
        .replace("[control]", &format!("{filters}\n[metrics]\nlisten = \"127.0.0.1:9091\"\n\n[control]"));
    let m = start_merled(&p, &cfg);
    wait_established(&m, PEER_V4, T);
    let target: SocketAddr = "127.0.0.1:9091".parse().unwrap();
    let prom = Prometheus::start(&p.merle, &[target]).unwrap();
    let log =
        |prom: &Prometheus| format!("merled:\n{}\nprometheus:\n{}", m.daemon.log_tail(20), prom.daemon.log_tail(20));

    // The scrape works and the series are there, with their labels.
    let peer = format!("peer=\"{PEER_V4}\",peer_as=\"65002\"");
    let q = |expr: &str| prom.value(expr);
    wait::poll("Prometheus to see the session Established", T, || {
        (q(&format!("merle_bgp_session_established{{{peer}}}")) == Some(1.0)).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", log(&prom)));
    assert_eq!(q("up{job=\"merled\"}"), Some(1.0));
    assert_eq!(q(&format!("merle_bgp_session_state{{{peer},state=\"Established\"}}")), Some(1.0));
    assert_eq!(q(&format!("merle_bgp_session_state{{{peer},state=\"Idle\"}}")), Some(0.0));
    wait::poll("the routes counted", T, || {
        (q(&format!("merle_bgp_prefixes_received{{{peer}}}")) == Some(2.0)).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", log(&prom)));
    assert_eq!(q(&format!("merle_bgp_prefixes_accepted_total{{{peer}}}")), Some(2.0));
    assert_eq!(q(&format!("merle_bgp_prefixes_rejected_total{{{peer}}}")), Some(1.0));
    assert!(q(&format!("merle_bgp_messages_received_total{{{peer},type=\"update\"}}")).unwrap() >= 1.0);
    assert!(q(&format!("merle_bgp_messages_sent_total{{{peer},type=\"open\"}}")).unwrap() >= 1.0);
    // The node's two blocks and BIRD's two routes.
    assert!(q("merle_rib_prefixes").unwrap() >= 4.0);
    assert_eq!(q(&format!("merle_bgp_session_flaps_total{{{peer}}}")), Some(0.0));
    assert!(q("process_resident_memory_bytes{job=\"merled\"}").unwrap() > 1e6);
    assert!(q("process_cpu_seconds_total{job=\"merled\"}").is_some());
    assert!(q("process_open_fds{job=\"merled\"}").unwrap() > 3.0);
    assert!(q("merle_tcp_md5_errors_total{error=\"failure\"}").is_some());
    assert_eq!(q("merle_config_last_reload_successful"), Some(1.0));

    // CNI calls, as merle-cni reports them: counted and timed; a bad
    // report is refused by name and counts nothing.
    let socket = m.socket.clone();
    for (res, secs) in [("ok", 0.004), ("ok", 0.006), ("code_11", 2.5)] {
        let line = format!(
            "{{\"command\":\"cni-report\",\"op\":\"ADD\",\"result\":\"{res}\",\"seconds\":{secs},\"ipam_seconds\":0.001}}"
        );
        assert_eq!(control(&socket, &line)["ok"], true);
    }
    let bad = control(&socket, "{\"command\":\"cni-report\",\"op\":\"ATTACH\",\"result\":\"ok\",\"seconds\":1}");
    assert!(bad["error"].as_str().unwrap().contains("unknown command \"ATTACH\""), "{bad}");
    wait::poll("the CNI calls in Prometheus", T, || {
        (q("merle_cni_requests_total{command=\"ADD\",result=\"ok\"}") == Some(2.0)).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", log(&prom)));
    assert_eq!(q("merle_cni_requests_total{command=\"ADD\",result=\"code_11\"}"), Some(1.0));
    assert_eq!(q("merle_cni_request_duration_seconds_count{command=\"ADD\"}"), Some(3.0));
    assert_eq!(q("merle_ipam_allocation_duration_seconds_count"), Some(3.0));
    let p50 = q("histogram_quantile(0.5, merle_cni_request_duration_seconds_bucket{command=\"ADD\"})").unwrap();
    assert!(p50 > 0.002 && p50 < 0.02, "median ADD {p50}");

    // The session goes down: Prometheus sees it, and the flap.
    drop(b);
    wait::poll("Prometheus to see the session down", T, || {
        (q(&format!("merle_bgp_session_established{{{peer}}}")) == Some(0.0)).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", log(&prom)));
    wait::poll("the flap counted", T, || {
        (q(&format!("merle_bgp_session_flaps_total{{{peer}}}")) == Some(1.0)).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", log(&prom)));
    assert_eq!(q(&format!("merle_bgp_prefixes_received{{{peer}}}")), Some(0.0));
    // And up again.
    let _b = Bird::start(&p.peer, "prom2", &bird_conf).unwrap();
    wait::poll("Prometheus to see the session back", T, || {
        (q(&format!("merle_bgp_session_established{{{peer}}}")) == Some(1.0)).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", log(&prom)));
    // Counters only grew over the run: Prometheus saw no reset.
    assert_eq!(q(&format!("resets(merle_bgp_messages_received_total{{{peer},type=\"keepalive\"}}[5m])")), Some(0.0));
    assert!(
        q(&format!("increase(merle_bgp_messages_received_total{{{peer},type=\"open\"}}[5m])")).unwrap() >= 1.0,
        "a second OPEN"
    );

    // `show peer` agrees with the metrics.
    let v: serde_json::Value =
        serde_json::from_str(&m.merlectl(&["show", "peer", PEER_V4, "--json"]).unwrap()).unwrap();
    assert_eq!(v["detail"]["flaps"], 1, "{v}");
    assert_eq!(v["detail"]["capabilities"]["four_octet_as"], true, "{v}");
    assert!(v["detail"]["last_notification_received"]["text"].as_str().unwrap().contains("Cease"), "{v}");
    let text = m.merlectl(&["show", "peer", PEER_V4]).unwrap();
    assert!(text.contains("Flaps:             1") && text.contains("Uptime:"), "{text}");
    assert!(m.merlectl(&["show", "peer", "10.9.9.9"]).unwrap_err().to_string().contains("no peer 10.9.9.9"));
    // Anything but GET /metrics is refused.
    let other = testbed::prometheus::http_get_in(&p.merle.name, target, "/debug").unwrap();
    assert_eq!(other.0, 404);
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn a_metrics_address_merled_cannot_listen_on_stops_it_with_the_key_named() {
    if testbed::skip_unless_root("metrics_bad_listen") {
        return;
    }
    let p = pair("prbad");
    let cfg = merled_config(&[], 9) + "\n[metrics]\nlisten = \"192.0.2.77:9091\"\n";
    let err = match testbed::merled::Merled::start(&p.merle, "merle", &merled_bin(), &merlectl_bin(), &cfg) {
        Ok(_) => panic!("merled started on an address it does not have"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("metrics.listen 192.0.2.77:9091: cannot listen"), "{err}");
}
