//! The control socket under load: with about a million routes in the RIB,
//! `merlectl routes` (full dumps, counts, filters) must not hold up the
//! sessions, nor must three new peers owed the full table, a ROUTE-REFRESH
//! from a fourth and an export-policy edit (every route re-sent to a
//! fifth), all at once, nor a peer that is Established, owed the table and
//! stops reading. The scenario is `testbed::sessions` (also run by `testbed
//! bench sessions`); this test asserts on its figures: the 3 s-hold
//! monitor's longest gap under 1.1 s in every phase, no session dropped,
//! and the stalled peer's queue held by the writer's high-water mark.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;
use testbed::sessions::{self, config, received, update, Session, GAP_LIMIT, PER_SOURCE};
use testbed::wait;

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn route_dumps_of_a_million_routes_never_hold_up_the_sessions() {
    if testbed::skip_unless_root("route_dumps_of_a_million_routes_never_hold_up_the_sessions") {
        return;
    }
    let f = sessions::run("ctl", &merled_bin(), &merlectl_bin()).unwrap();
    eprintln!("{f:#?}");
    assert_eq!(f.dump_routes as u64, f.routes, "the dump must hold every route");
    assert_eq!(f.loaded_dump_routes as u64, f.routes, "the dump under load must hold every route");
    assert_eq!(f.counted_paths, f.routes);
    assert_eq!(f.counted_source_paths, u64::from(PER_SOURCE));
    assert!(f.refresh_logged, "merled did not log the route refresh");
    assert!(f.reexport_logged, "merled did not log the re-export after the policy edit");
    assert!(f.dropped.is_empty(), "sessions dropped: {:?}", f.dropped);
    assert!(f.dump_gap < GAP_LIMIT, "a dump held merled's messages for {:?}", f.dump_gap);
    assert!(
        f.loaded_gap < GAP_LIMIT,
        "feeds, a refresh, a re-export and a dump held merled's messages for {:?}",
        f.loaded_gap
    );
    assert!(
        f.stalled_queue_max >= 64 * 1024,
        "the stalled peer's queue never filled ({} bytes): the test stalls nothing",
        f.stalled_queue_max
    );
    assert!(
        f.stalled_queue_max <= 512 * 1024,
        "merled queued {} bytes for a peer that does not read",
        f.stalled_queue_max
    );
    assert!(f.stall_gap < GAP_LIMIT, "a stalled peer held merled's messages to the monitor for {:?}", f.stall_gap);
    assert!(
        f.rss_after_kib < f.rss_before_kib + 16 * 1024,
        "merled grew from {} to {} KiB while a peer stalled",
        f.rss_before_kib,
        f.rss_after_kib
    );
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn route_filters_select_and_bad_queries_are_refused() {
    if testbed::skip_unless_root("route_filters_select_and_bad_queries_are_refused") {
        return;
    }
    let p = pair("ctlf");
    p.peer.add_addr("eth0", "10.1.0.10/24").unwrap();
    p.peer.add_addr("eth0", "10.1.0.11/24").unwrap();
    let cfg = config(false).replace("[fib]", "[[advertise]]\nprefix = \"10.244.1.0/26\"\n\n[fib]");
    let m = start_merled(&p, &cfg);
    // 16.0.1.0/24 from two sources (10.1.0.11's with a lower LOCAL_PREF
    // loses), two more prefixes from one, and the node's own block.
    let a = Session::open(&p.peer, "10.1.0.10", 64512, 90).unwrap();
    a.send(&update([10, 1, 0, 10], 100, &[24, 16, 0, 1, 24, 16, 0, 2, 16, 16, 0])).unwrap();
    let b = Session::open(&p.peer, "10.1.0.11", 64512, 90).unwrap();
    b.send(&update([10, 1, 0, 11], 50, &[24, 16, 0, 1])).unwrap();
    wait::poll("routes in", Duration::from_secs(20), || (received(&m).ok()? == 4).then_some(()))
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", m.merlectl(&["routes"]).unwrap(), m.daemon.log_tail(5)));
    let q = |args: &[&str]| -> Vec<serde_json::Value> {
        let mut a = vec!["routes", "--json"];
        a.extend_from_slice(args);
        serde_json::from_str::<serde_json::Value>(&m.merlectl(&a).unwrap()).unwrap().as_array().unwrap().clone()
    };
    let prefixes = |v: &[serde_json::Value]| -> Vec<(String, String)> {
        v.iter().map(|r| (r["prefix"].as_str().unwrap().to_owned(), r["peer"].as_str().unwrap().to_owned())).collect()
    };
    let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(prefixes(&q(&["--prefix", "16.0.0.0/16"])), vec![pair("16.0.0.0/16", "10.1.0.10")]);
    // An address selects the longest prefix holding it.
    assert_eq!(prefixes(&q(&["--prefix", "16.0.2.77"])), vec![pair("16.0.2.0/24", "10.1.0.10")]);
    assert_eq!(prefixes(&q(&["--prefix", "16.0.7.1"])), vec![pair("16.0.0.0/16", "10.1.0.10")]);
    assert!(q(&["--prefix", "17.0.0.1"]).is_empty());
    // Both paths of the shared prefix, best first; then filtered.
    let both = q(&["--prefix", "16.0.1.0/24"]);
    assert_eq!(prefixes(&both), vec![pair("16.0.1.0/24", "10.1.0.10"), pair("16.0.1.0/24", "10.1.0.11")]);
    assert_eq!((both[0]["best"].clone(), both[1]["best"].clone()), (true.into(), false.into()));
    assert_eq!(both[1]["lost_at"], "local-pref");
    assert_eq!(prefixes(&q(&["--prefix", "16.0.1.0/24", "--best"])), vec![pair("16.0.1.0/24", "10.1.0.10")]);
    assert_eq!(prefixes(&q(&["--peer", "10.1.0.11"])), vec![pair("16.0.1.0/24", "10.1.0.11")]);
    assert!(q(&["--peer", "10.1.0.11", "--best"]).is_empty());
    assert_eq!(prefixes(&q(&["--peer", "local"])), vec![pair("10.244.1.0/26", "local")]);
    assert_eq!(q(&["--peer", "10.1.0.10"]).len(), 3);
    assert_eq!(q(&["--best"]).len(), 4);
    let all = q(&[]);
    assert_eq!(all.len(), 5);
    let order: Vec<&str> = all.iter().map(|r| r["prefix"].as_str().unwrap()).collect();
    assert_eq!(order, ["10.244.1.0/26", "16.0.0.0/16", "16.0.1.0/24", "16.0.1.0/24", "16.0.2.0/24"]);
    let c: serde_json::Value = serde_json::from_str(&m.merlectl(&["routes", "--count", "--json"]).unwrap()).unwrap();
    assert_eq!(
        c,
        serde_json::json!({"prefixes": 4, "paths": 5, "best": 4, "peers": [
            {"peer": "10.1.0.10", "paths": 3, "best": 3},
            {"peer": "10.1.0.11", "paths": 1, "best": 0},
            {"peer": "local", "paths": 1, "best": 1}]}),
    );
    let table = m.merlectl(&["routes", "--count"]).unwrap();
    assert!(table.starts_with("4 prefixes, 5 paths, 4 best"), "{table}");

    // Bad input: refused by merlectl, and by merled from any client.
    for args in [["--prefix", "10.0.0.0/99"], ["--prefix", "banana"], ["--peer", "10.1.0"]] {
        let mut a = vec!["routes"];
        a.extend_from_slice(&args);
        let e = m.merlectl(&a).unwrap_err().to_string();
        assert!(e.contains(args[1]) && e.contains("expected"), "{e}");
    }
    let raw = |req: &str| -> serde_json::Value {
        use std::io::BufRead;
        let mut c = std::os::unix::net::UnixStream::connect(&m.socket).unwrap();
        c.write_all(req.as_bytes()).unwrap();
        let mut line = String::new();
        std::io::BufReader::new(c).read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap()
    };
    let r = raw("{\"command\":\"routes\",\"prefix\":\"10.0.0.0/99\"}\n");
    assert_eq!(r["ok"], false);
    assert!(r["error"].as_str().unwrap().contains("bad prefix \"10.0.0.0/99\""), "{r}");
    let r = raw("{\"command\":\"routes\",\"peer\":\"x\"}\n");
    assert!(r["error"].as_str().unwrap().contains("bad peer \"x\""), "{r}");
    let r = raw("{\"command\":\"routes\",\"prefixes\":\"10.0.0.0/8\"}\n");
    assert!(r["error"].as_str().unwrap().contains("unknown field"), "{r}");
    // The plain request still answers everything, and the session is up.
    let r = raw("{\"command\":\"routes\"}\n");
    assert_eq!(r["routes"].as_array().unwrap().len(), 5);
    assert_eq!(m.peer_state("10.1.0.10").as_deref(), Some("Established"));
    drop((a, b));
}
