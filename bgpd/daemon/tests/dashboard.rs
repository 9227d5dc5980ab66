//! The Grafana dashboard in deploy/ is built on series merled exports:
//! every metric name its queries use is one `/metrics` has, with the
//! labels it groups by.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use merled::metrics::{render, Fib, Live, Process, Snapshot};

/// Every series name merled can export (`# TYPE` lines of a scrape with
/// every part present), with the suffixes the text format gives them.
fn exported() -> BTreeSet<String> {
    let peer = merled::api::PeerStatus { address: "10.0.0.2".into(), ..Default::default() };
    let pool = merle_ipam::report::PoolUse {
        cidr: "10.244.0.0/16".parse().unwrap(),
        block_size: 26,
        blocks: 1,
        used: 1,
        capacity: 65536,
        size_bits: 16,
    };
    let counter = merle_ebpf::metrics::Counter {
        hook: merle_ebpf::types::Hook::PodIngress,
        reason: "fib-redirect".into(),
        kind: merle_ebpf::types::Kind::Redirect,
        packets: 1,
        bytes: 100,
    };
    let s = Snapshot {
        status: merled::api::NodeStatus { peers: vec![peer], ..Default::default() },
        fib: Some(Fib { converged_in: Some((std::time::Duration::from_secs(1), false)), ..Default::default() }),
        ipam: Some(merle_ipam::report::Report { pools: vec![pool], ..Default::default() }),
        dataplane: Some(merle_ebpf::report::Report { counters: vec![counter], ..Default::default() }),
        md5: Some(Default::default()),
        process: Some(Process { max_fds: Some(1024), ..Default::default() }),
    };
    let live = Live::default();
    live.record_cni(&merled::metrics::CniCall {
        command: "ADD".into(),
        result: "ok".into(),
        seconds: 0.01,
        ipam_seconds: Some(0.001),
    });
    let text = render(&s, &live);
    let mut names = BTreeSet::new();
    for l in text.lines() {
        let Some(rest) = l.strip_prefix("# TYPE ") else { continue };
        let (name, kind) = rest.split_once(' ').unwrap();
        match kind {
            "counter" => names.insert(format!("{name}_total")),
            "histogram" => {
                for s in ["_bucket", "_count", "_sum"] {
                    names.insert(format!("{name}{s}"));
                }
                true
            }
            _ => names.insert(name.to_owned()),
        };
    }
    names
}

#[test]
fn every_series_the_dashboard_queries_is_one_merled_exports() {
    let names = exported();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/grafana-dashboard.json");
    let d: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut exprs: Vec<String> = d["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    exprs.extend(
        d["templating"]["list"].as_array().unwrap().iter().filter_map(|v| v["query"].as_str().map(str::to_owned)),
    );
    assert!(exprs.len() > 20, "{exprs:?}");
    let mut used = BTreeSet::new();
    for e in &exprs {
        // Identifiers that start a series name: merle_… and process_….
        let bytes = e.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            let word = &e[start..i];
            if (word.starts_with("merle_") || word.starts_with("process_")) && (start == 0 || bytes[start - 1] != b'$')
            {
                used.insert(word.to_owned());
            }
            i = i.max(start + 1);
        }
    }
    let missing: Vec<&String> = used.iter().filter(|u| !names.contains(*u)).collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries series merled does not export: {missing:?}\nexported: {names:?}"
    );
    // Every subsystem is on it.
    for prefix in ["merle_bgp_", "merle_fib_", "merle_cni_", "merle_ipam_", "merle_ebpf_", "merle_rib_", "process_"] {
        assert!(used.iter().any(|u| u.starts_with(prefix)), "no {prefix}* panel");
    }
    // Every panel names the templated data source.
    for p in d["panels"].as_array().unwrap().iter().filter(|p| p["type"] != "row") {
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
    }
}
