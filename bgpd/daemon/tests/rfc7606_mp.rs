//! RFC 7606 over MP-BGP IPv6 unicast (issue 18): malformed MP_REACH_NLRI
//! and MP_UNREACH_NLRI, MP_REACH for a family that was not negotiated, and
//! missing mandatory attributes next to IPv6 NLRI, each followed by a valid
//! sentinel route on the same session. The action merled must take is the
//! RFC's; the same messages go to BIRD 2 and to FRR in the same test, and
//! what they do is printed beside merled's.
//!
//! - MP_REACH with a next-hop length that fits no IPv6 next hop, NLRI with
//!   a prefix length over 128, NLRI that overruns the attribute, and a
//!   malformed MP_UNREACH: the NLRI cannot be located reliably, so RFC 7606
//!   §7.11 / §5.3 call for a session reset (or AFI/SAFI disable): merled
//!   resets with UPDATE Message Error, Optional Attribute Error (RFC 4760
//!   §7).
//! - MP_REACH for IPv6 multicast, which the session did not negotiate:
//!   RFC 4760 §7 lets the speaker ignore it; merled does, and the session
//!   and the sentinel stay.
//! - No ORIGIN next to MP_REACH IPv6 NLRI: treat-as-withdraw (RFC 7606
//!   §3 d): the IPv6 prefix is withdrawn, the session stays.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bgpd::packet::{AfiSafi, Capability};
use common::speaker::{Speaker, AS_PATH, ORIGIN};
use common::*;
use testbed::bird::Bird;
use testbed::frr::{Frr, BGPD};
use testbed::wait;

/// MP_REACH_NLRI (extended length) with the raw body given.
fn mp_reach(body: &[u8]) -> Vec<u8> {
    let mut a = vec![0x90, 14];
    a.extend_from_slice(&(body.len() as u16).to_be_bytes());
    a.extend_from_slice(body);
    a
}

/// The body of an IPv6 unicast MP_REACH: next hop fd01::2, then `nlri`.
fn v6_reach(afi_safi: (u16, u8), nh_len: u8, nlri: &[u8]) -> Vec<u8> {
    let mut b = afi_safi.0.to_be_bytes().to_vec();
    b.push(afi_safi.1);
    b.push(nh_len);
    let nh: [u8; 16] = "fd01::2".parse::<std::net::Ipv6Addr>().unwrap().octets();
    b.extend_from_slice(&nh[..usize::from(nh_len).min(16)]);
    b.push(0);
    b.extend_from_slice(nlri);
    b
}

/// fd00:9:<n>::/64 as NLRI.
fn nlri64(n: u8) -> Vec<u8> {
    vec![64, 0xfd, 0, 0, 9, 0, n, 0, 0]
}

fn prefix(n: u8) -> String {
    format!("fd00:9:{n:x}::/64")
}

/// A valid IPv6 announcement of fd00:9:<n>::/64.
fn valid(n: u8) -> Vec<u8> {
    [ORIGIN, AS_PATH, &mp_reach(&v6_reach((2, 1), 16, &nlri64(n)))].concat()
}

struct Case {
    name: &'static str,
    /// A valid announcement first (for the treat-as-withdraw case).
    before: Option<Vec<u8>>,
    attrs: Vec<u8>,
    /// What RFC 7606 / RFC 4760 call for: a reset (UPDATE Message Error),
    /// or the session stays with the named prefix present or absent.
    reset: bool,
    check: Option<(u8, bool)>,
}

fn cases() -> Vec<Case> {
    let unreach = |body: &[u8]| {
        let mut a = vec![0x90, 15];
        a.extend_from_slice(&(body.len() as u16).to_be_bytes());
        a.extend_from_slice(body);
        a
    };
    vec![
        Case {
            name: "MP_REACH next-hop length 15",
            before: None,
            attrs: [ORIGIN, AS_PATH, &mp_reach(&v6_reach((2, 1), 15, &nlri64(1)))].concat(),
            reset: true,
            check: None,
        },
        Case {
            name: "MP_REACH prefix length 129",
            before: None,
            attrs: [ORIGIN, AS_PATH, &mp_reach(&v6_reach((2, 1), 16, &[129, 0xfd, 0, 0, 9, 0, 2, 0, 0]))].concat(),
            reset: true,
            check: None,
        },
        Case {
            name: "MP_REACH NLRI overrunning the attribute",
            before: None,
            attrs: [ORIGIN, AS_PATH, &mp_reach(&v6_reach((2, 1), 16, &[64, 0xfd, 0, 0]))].concat(),
            reset: true,
            check: None,
        },
        Case {
            name: "MP_UNREACH prefix length 200",
            before: None,
            attrs: unreach(&[0, 2, 1, 200, 0xfd, 0]),
            reset: true,
            check: None,
        },
        Case {
            name: "MP_REACH for IPv6 multicast (not negotiated)",
            before: None,
            attrs: [ORIGIN, AS_PATH, &mp_reach(&v6_reach((2, 2), 16, &nlri64(5)))].concat(),
            reset: false,
            check: Some((5, false)),
        },
        Case {
            name: "no ORIGIN next to IPv6 NLRI",
            before: Some(valid(6)),
            attrs: [AS_PATH, &mp_reach(&v6_reach((2, 1), 16, &nlri64(6)))[..]].concat(),
            reset: false,
            check: Some((6, false)),
        },
    ]
}

/// Runs every case against the speaker at `dst`, one source address (and
/// one session) per case; returns per case (reset?, the case's prefix
/// present?, the sentinel present?) as `present` reports them.
fn run(p: &Pair, dst: IpAddr, present: &dyn Fn(usize, &str) -> bool) -> Vec<(bool, Option<bool>, bool)> {
    let mut out = Vec::new();
    for (i, c) in cases().into_iter().enumerate() {
        let src: IpAddr = format!("10.1.0.{}", 10 + i).parse().unwrap();
        let dst = SocketAddr::new(dst, 179);
        let sentinel = 100 + i as u8;
        let (before_tx, before_rx) = std::sync::mpsc::channel::<()>();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let before_prefix = c.before.as_ref().map(|_| c.check.map_or(0, |(n, _)| n));
        let h = p
            .peer
            .spawn(move || {
                let mut s = Speaker::connect(src, dst).unwrap();
                let caps = vec![
                    Capability::Multiprotocol(AfiSafi::IPV4_UNICAST),
                    Capability::Multiprotocol(AfiSafi::IPV6_UNICAST),
                    Capability::FourOctetAs(65002),
                ];
                let id = match src {
                    IpAddr::V4(a) => a,
                    IpAddr::V6(_) => Ipv4Addr::new(10, 1, 0, 99),
                };
                s.handshake_with(65002, id, 90, caps);
                if let Some(b) = &c.before {
                    s.send_update_raw(b, &[]);
                    before_tx.send(()).unwrap();
                    go_rx.recv().unwrap();
                }
                s.send_update_raw(&c.attrs, &[]);
                s.send_update_raw(&valid(sentinel), &[]);
                // A reset shows as a NOTIFICATION within 3 s.
                let reset = s.notification(Duration::from_secs(3));
                (reset, s)
            })
            .unwrap();
        if let Some(n) = before_prefix {
            before_rx.recv_timeout(Duration::from_secs(20)).unwrap();
            wait::poll("the route the case withdraws, first there", Duration::from_secs(10), || {
                present(i, &prefix(n)).then_some(())
            })
            .unwrap();
            go_tx.send(()).unwrap();
        }
        let (notification, session) = h.join().unwrap().unwrap();
        let reset = notification.is_some();
        if let Some((code, sub)) = notification {
            println!("  {}: NOTIFICATION {code}/{sub}", c.name);
        }
        let sentinel_there = !reset
            && wait::poll("the sentinel", Duration::from_secs(5), || present(i, &prefix(sentinel)).then_some(()))
                .is_ok();
        let prefix_there = c.check.map(|(n, _)| present(i, &prefix(n)));
        drop(session);
        out.push((reset, prefix_there, sentinel_there));
    }
    out
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn rfc7606_over_mp_bgp_ipv6_as_the_rfcs_say_beside_bird_and_frr() {
    if testbed::skip_unless_root("rfc7606_over_mp_bgp_ipv6_as_the_rfcs_say_beside_bird_and_frr") {
        return;
    }
    require("bird");
    require(BGPD);
    let n = cases().len();
    // merled, one passive peer per case.
    let peers: Vec<(String, u32)> = (0..n).map(|i| (format!("10.1.0.{}", 10 + i), 65002)).collect();
    let p = pair_with("mp7", &peers.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>());
    let refs: Vec<(&str, u32)> = peers.iter().map(|(a, s)| (a.as_str(), *s)).collect();
    let cfg = merled_config(&refs, 90).replace("\"\nas_number = ", "\"\npassive = true\nas_number = ");
    let m = start_merled(&p, &cfg);
    let merled = run(&p, MERLE_V4.parse().unwrap(), &|i, pfx| m.route(pfx, &format!("10.1.0.{}", 10 + i)).is_some());
    drop(m);

    // BIRD 2 in merled's place, one passive neighbour per case.
    let mut conf = format!("log stderr all;\nrouter id {MERLE_V4};\nprotocol device {{ }}\n");
    for i in 0..n {
        conf += &format!(
            "protocol bgp c{i} {{ local {MERLE_V4} as 64512; neighbor 10.1.0.{} as 65002; passive on;\n  \
             ipv4 {{ import all; export none; }};\n  ipv6 {{ import all; export none; extended next hop off; }};\n}}\n",
            10 + i
        );
    }
    let bird = Bird::start(&p.merle, "mp7", &conf).unwrap();
    let bird_results = run(&p, MERLE_V4.parse().unwrap(), &|i, pfx| {
        bird.birdc(&["show", "route", pfx, "protocol", &format!("c{i}")]).is_ok_and(|s| s.contains(pfx))
    });
    drop(bird);

    // FRR in its place, the same way.
    let mut conf = format!(
        "hostname mp7\nrouter bgp 64512\n bgp router-id {MERLE_V4}\n no bgp ebgp-requires-policy\n          no bgp default ipv4-unicast\n"
    );
    for i in 0..n {
        conf += &format!(" neighbor 10.1.0.{0} remote-as 65002\n neighbor 10.1.0.{0} passive\n", 10 + i);
    }
    for af in ["ipv4", "ipv6"] {
        conf += &format!(" address-family {af} unicast\n");
        for i in 0..n {
            conf += &format!("  neighbor 10.1.0.{} activate\n", 10 + i);
        }
        conf += " exit-address-family\n";
    }
    let frr = Frr::start(&p.merle, "mp7", &conf).unwrap();
    let frr_results = run(&p, MERLE_V4.parse().unwrap(), &|i, pfx| {
        let peer = format!("10.1.0.{}", 10 + i);
        frr.json(&format!("show bgp ipv6 unicast {pfx} json")).is_ok_and(|v| {
            v["paths"].as_array().is_some_and(|ps| ps.iter().any(|p| p["peer"]["peerId"] == peer.as_str()))
        })
    });
    drop(frr);

    println!("{:<48} {:>34} {:>34} {:>34}", "case", "merled", "BIRD 2", "FRR");
    let show = |r: &(bool, Option<bool>, bool)| match r {
        (true, _, _) => "session reset".to_string(),
        (false, Some(p), s) => {
            format!("kept, prefix {}, sentinel {}", if *p { "in" } else { "out" }, if *s { "in" } else { "out" })
        }
        (false, None, s) => format!("kept, sentinel {}", if *s { "in" } else { "out" }),
    };
    for (((c, mr), br), fr) in cases().iter().zip(&merled).zip(&bird_results).zip(&frr_results) {
        println!("{:<48} {:>34} {:>34} {:>34}", c.name, show(mr), show(br), show(fr));
    }
    for (c, r) in cases().iter().zip(&merled) {
        assert_eq!(r.0, c.reset, "{}: merled's reset decision", c.name);
        if !c.reset {
            assert!(r.2, "{}: the sentinel after it must be in merled's RIB", c.name);
            if let Some((_, want)) = c.check {
                assert_eq!(r.1, Some(want), "{}: the case's own prefix", c.name);
            }
        }
    }
}
