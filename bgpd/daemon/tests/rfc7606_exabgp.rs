//! RFC 7606 from a third implementation (issue 18): ExaBGP sends malformed
//! IPv4 UPDATEs to merled over eBGP, as FRR's topotests drive it, one
//! session per case, each case followed by a valid sentinel route on the
//! same session. The bytes are ExaBGP's (its generic `attribute [ code
//! flags value ]`), the expected action is the RFC's (the table in
//! docs/architecture.md, "Errors and RFC 7606"):
//!
//! - treat-as-withdraw: the case's prefix, announced valid first, is gone
//!   after the malformed UPDATE; the sentinel is in; the session stays;
//! - attribute discard: the prefix is in without the attribute (merled
//!   logs the discard); the sentinel is in; the session stays;
//! - session reset: merled sends the NOTIFICATION the RFC names.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;
use testbed::exabgp::{ExaBgp, Neighbor, EXABGP};
use testbed::wait;

const T: Duration = Duration::from_secs(20);

#[derive(Clone, Copy)]
enum Want {
    Withdrawn,
    /// Kept, the attribute discarded (merled logs it), and the route's JSON
    /// passes the check.
    Discarded(fn(&Value) -> bool),
    /// Kept as it came.
    Kept,
    /// Reset with this NOTIFICATION code and subcode.
    Reset(u8, u8),
}

struct Case {
    name: &'static str,
    /// An iBGP session (AS 64512) instead of eBGP (AS 65002).
    ibgp: bool,
    rfc: &'static str,
    attribute: &'static str,
    want: Want,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            ibgp: false,
            name: "COMMUNITIES of 3 octets",
            rfc: "7606 §7.8",
            attribute: "[ 0x08 0xc0 0x010203 ]",
            want: Want::Withdrawn,
        },
        Case {
            ibgp: false,
            name: "MED of 2 octets",
            rfc: "7606 §7.4",
            attribute: "[ 0x04 0x80 0x0102 ]",
            want: Want::Withdrawn,
        },
        Case {
            ibgp: false,
            name: "MED with the transitive flag (flags conflict)",
            rfc: "7606 §3 c, §7.4",
            attribute: "[ 0x04 0xc0 0x00000064 ]",
            want: Want::Withdrawn,
        },
        Case {
            ibgp: false,
            name: "EXTENDED_COMMUNITIES of 7 octets",
            rfc: "7606 §7.14",
            attribute: "[ 0x10 0xc0 0x00020001000000 ]",
            want: Want::Withdrawn,
        },
        Case {
            ibgp: false,
            name: "LARGE_COMMUNITIES of 11 octets",
            rfc: "8092 §5, 7606",
            attribute: "[ 0x20 0xc0 0x0000fde90000000100000a ]",
            want: Want::Withdrawn,
        },
        Case {
            // ExaBGP sends no LOCAL_PREF to an external peer, so this one
            // is iBGP, where a malformed one withdraws.
            ibgp: true,
            name: "LOCAL_PREF of 2 octets from an iBGP peer",
            rfc: "7606 §7.5",
            attribute: "[ 0x05 0x40 0x00c8 ]",
            want: Want::Withdrawn,
        },
        Case {
            ibgp: false,
            name: "ATOMIC_AGGREGATE of 1 octet",
            rfc: "7606 §7.6",
            attribute: "[ 0x06 0x40 0x01 ]",
            want: Want::Discarded(|_| true),
        },
        Case {
            ibgp: false,
            name: "AGGREGATOR of 5 octets",
            rfc: "7606 §7.7",
            attribute: "[ 0x07 0xc0 0x0000fde90a ]",
            want: Want::Discarded(|_| true),
        },
        Case {
            ibgp: false,
            name: "ORIGINATOR_ID from an eBGP peer",
            rfc: "7606 §7.9",
            attribute: "[ 0x09 0x80 0x0a010063 ]",
            want: Want::Discarded(|r| r["originator_id"].is_null()),
        },
        Case {
            ibgp: false,
            name: "unknown optional transitive attribute",
            rfc: "4271 §5",
            attribute: "[ 0xf0 0xc0 0x01020304 ]",
            want: Want::Kept,
        },
        // Last: ExaBGP reconnects and merled damps it.
        Case {
            ibgp: false,
            name: "unrecognized well-known attribute",
            rfc: "4271 §6.3",
            attribute: "[ 0xf1 0x40 0x01 ]",
            want: Want::Reset(3, 2),
        },
    ]
}

/// The log without its colours.
fn plain(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut esc = false;
    for ch in log.chars() {
        match (esc, ch) {
            (false, '\x1b') => esc = true,
            (true, 'm') => esc = false,
            (true, _) => {}
            (false, c) => out.push(c),
        }
    }
    out
}

fn local(i: usize) -> String {
    format!("10.1.0.{}", 10 + i)
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn malformed_ipv4_updates_from_exabgp_get_the_rfc_7606_action() {
    if testbed::skip_unless_root("malformed_ipv4_updates_from_exabgp_get_the_rfc_7606_action") {
        return;
    }
    require(EXABGP);
    let cases = cases();
    let addrs: Vec<String> = (0..cases.len()).map(local).collect();
    let p = pair_with("x76", &addrs.iter().map(String::as_str).collect::<Vec<_>>());
    let asn = |c: &Case| if c.ibgp { 64512 } else { 65002 };
    let peers: Vec<(&str, u32)> = addrs.iter().zip(&cases).map(|(a, c)| (a.as_str(), asn(c))).collect();
    let cfg = merled_config(&peers, 90).replace("\"\nas_number = ", "\"\npassive = true\nas_number = ");
    let m = start_merled(&p, &cfg);
    let neighbors: Vec<Neighbor> = addrs
        .iter()
        .zip(&cases)
        .map(|(a, c)| Neighbor { local: a.clone(), local_as: asn(c), peer: MERLE_V4.into(), peer_as: 64512 })
        .collect();
    let exa = ExaBgp::start(&p.peer, "x76", &neighbors).unwrap();
    for a in &addrs {
        if wait::poll(&format!("{a} Established"), T, || {
            (m.peer_state(a).as_deref() == Some("Established")).then_some(())
        })
        .is_err()
        {
            panic!("{a} never Established\nExaBGP:\n{}\nmerled:\n{}", exa.log_tail(40), m.daemon.log_tail(40));
        }
    }
    let announce = |i: usize, prefix: &str, attribute: &str| {
        let a = local(i);
        let extra = if attribute.is_empty() { String::new() } else { format!(" attribute {attribute}") };
        format!("neighbor {MERLE_V4} local-ip {a} announce route {prefix} next-hop {a}{extra}")
    };
    let flaps = |a: &str| m.peer(a).and_then(|v| v["detail"]["flaps"].as_u64()).unwrap_or(u64::MAX);

    let mut table = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let (a, prefix, sentinel) = (local(i), format!("10.9.{i}.0/24"), format!("10.9.{}.0/24", 100 + i));
        let before = flaps(&a);
        if matches!(c.want, Want::Withdrawn) {
            exa.send(&[announce(i, &prefix, "")]).unwrap();
            wait_route(&m, &prefix, &a, T);
        }
        exa.send(&[announce(i, &prefix, c.attribute), announce(i, &sentinel, "")]).unwrap();
        let got = match c.want {
            Want::Reset(code, sub) => {
                let sent = wait::poll(&format!("{}: a NOTIFICATION", c.name), T, || {
                    let n = m.peer(&a)?["detail"]["last_notification_sent"].clone();
                    n.is_object().then_some(n)
                })
                .unwrap();
                assert_eq!((sent["code"].as_u64(), sent["subcode"].as_u64()), (Some(code.into()), Some(sub.into())));
                assert!(m.route(&sentinel, &a).is_none(), "{}: nothing of the session stays", c.name);
                format!("reset, {code}/{sub} ({})", sent["text"].as_str().unwrap_or_default())
            }
            Want::Withdrawn => {
                wait_route(&m, &sentinel, &a, T);
                wait::poll(&format!("{}: {prefix} withdrawn", c.name), T, || {
                    m.route(&prefix, &a).is_none().then_some(())
                })
                .unwrap();
                "prefix withdrawn, sentinel in".to_string()
            }
            Want::Discarded(check) => {
                wait_route(&m, &sentinel, &a, T);
                let r = wait_route(&m, &prefix, &a, T);
                assert!(check(&r), "{}: the attribute discarded: {r}", c.name);
                let peer = format!("peer={a}");
                let logged = wait::poll(&format!("{}: the discard logged", c.name), T, || {
                    let log = plain(&m.daemon.log_tail(5000));
                    log.lines()
                        .any(|l| l.contains("malformed attribute discarded") && l.split_whitespace().any(|w| w == peer))
                        .then_some(())
                });
                if let Err(e) = logged {
                    let log = m.daemon.log_tail(5000);
                    let mine: Vec<&str> = log.lines().filter(|l| l.contains(&a) || l.contains("malformed")).collect();
                    panic!("{e}; merled's log of {a}:\n{}", mine.join("\n"));
                }
                "attribute discarded, prefix in, sentinel in".to_string()
            }
            Want::Kept => {
                wait_route(&m, &sentinel, &a, T);
                wait_route(&m, &prefix, &a, T);
                "prefix in, sentinel in".to_string()
            }
        };
        if !matches!(c.want, Want::Reset(..)) {
            assert_eq!(flaps(&a), before, "{}: the session stays up", c.name);
            assert_eq!(m.peer_state(&a).as_deref(), Some("Established"), "{}", c.name);
        }
        table.push((c.name, c.rfc, got));
    }
    // The other sessions never noticed.
    for (i, a) in addrs.iter().enumerate().take(cases.len() - 1) {
        assert_eq!(m.peer_state(a).as_deref(), Some("Established"), "{a}");
        assert!(m.route(&format!("10.9.{}.0/24", 100 + i), a).is_some(), "{a}'s sentinel");
    }
    println!("{:<48} {:<18} merled", "case (from ExaBGP)", "RFC");
    for (name, rfc, got) in table {
        println!("{name:<48} {rfc:<18} {got}");
    }
    drop(exa);
}
