//! Session security against real peers: TCP MD5 (RFC 2385) with BIRD,
//! GTSM (RFC 5082), and the max-prefix limit (RFC 4486 Cease subcode 1).
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bgpd::packet::Message;
use common::speaker::{frame, Speaker};
use common::*;
use testbed::bird::Bird;
use testbed::wait;

const T: Duration = Duration::from_secs(30);

fn bird(extra: &str) -> String {
    format!(
        r#"log stderr all;
router id {PEER_V4};
protocol device {{ scan time 10; }}
protocol static s4 {{ ipv4; route 10.250.1.0/24 blackhole; }}
protocol bgp merle4 {{
  local {PEER_V4} as 65002;
  neighbor {MERLE_V4} as 64512;
  connect retry time 2;
  error wait time 1, 2;
  {extra}
  ipv4 {{ import all; export all; }};
}}
"#
    )
}

fn merled_with(peer_extra: &str) -> String {
    merled_config(&[(PEER_V4, 65002)], 90).replace("as_number = 65002\n", &format!("as_number = 65002\n{peer_extra}"))
}

/// Asserts the session stays down for `d`.
fn never_established(m: &testbed::merled::Merled, d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        assert_ne!(m.peer_state(PEER_V4).as_deref(), Some("Established"), "session must not come up");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn md5_right_password_establishes() {
    if testbed::skip_unless_root("md5_right_password_establishes") {
        return;
    }
    require("bird");
    let p = pair("md");
    let _b = Bird::start(&p.peer, "md5", &bird("password \"s3cr3t-key\";")).unwrap();
    let m = start_merled(&p, &merled_with("password = \"s3cr3t-key\"\n"));
    wait_established(&m, PEER_V4, T);
    wait_route(&m, "10.250.1.0/24", PEER_V4, T);
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn md5_wrong_password_means_no_session() {
    if testbed::skip_unless_root("md5_wrong_password_means_no_session") {
        return;
    }
    require("bird");
    let p = pair("mw");
    let b = Bird::start(&p.peer, "md5w", &bird("password \"other-key\";")).unwrap();
    let m = start_merled(&p, &merled_with("password = \"s3cr3t-key\"\n"));
    never_established(&m, Duration::from_secs(8));
    assert!(!b.established("merle4"));
    // `show peer` names the cause, from the kernel's MD5 counters (BIRD's
    // SYNs fail to verify here), where the state alone says only Active.
    let cause = |m: &testbed::merled::Merled| {
        let v: serde_json::Value =
            serde_json::from_str(&m.merlectl(&["show", "peer", PEER_V4, "--json"]).unwrap()).unwrap();
        v["detail"]["likely_cause"].as_str().unwrap_or_default().to_owned()
    };
    let c = wait::poll("a likely cause", T, || Some(cause(&m)).filter(|c| !c.is_empty())).unwrap();
    assert!(c.starts_with("password mismatch") && c.contains("TCPMD5Failure"), "{c}");
    let text = m.merlectl(&["show", "peer", PEER_V4]).unwrap();
    assert!(text.contains("Likely cause:      password mismatch") && text.contains("TCP MD5 on"), "{text}");
    // And without any password on merled's side, BIRD's signed SYNs are
    // dropped too, and said to be signed.
    drop(m);
    let m = start_merled(&p, &merled_with(""));
    never_established(&m, Duration::from_secs(5));
    let c = wait::poll("a likely cause", T, || Some(cause(&m)).filter(|c| !c.is_empty())).unwrap();
    assert!(c.contains("TCPMD5Unexpected") && c.contains("no password is set here"), "{c}");
    // The configuration in effect never shows a password.
    drop(m);
    let m = start_merled(&p, &merled_with("password = \"s3cr3t-key\"\n"));
    let shown = m.merlectl(&["show", "config"]).unwrap();
    assert!(shown.contains("password = \"(set)\"") && !shown.contains("s3cr3t"), "{shown}");
    assert!(shown.contains(&format!("address = \"{PEER_V4}\"")), "{shown}");
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn gtsm_with_bird_and_a_far_away_speaker() {
    if testbed::skip_unless_root("gtsm_with_bird_and_a_far_away_speaker") {
        return;
    }
    require("bird");
    // BIRD with TTL security: both sides send TTL 255 and require it.
    let p = pair("gt");
    let _b = Bird::start(&p.peer, "gtsm", &bird("ttl security on;")).unwrap();
    let m = start_merled(&p, &merled_with("ttl_security = 1\n"));
    wait_established(&m, PEER_V4, T);
    drop(m);
    drop(_b);

    // A speaker whose packets arrive with TTL 64 never gets a session.
    let p = pair("gf");
    let m = start_merled(&p, &merled_with("ttl_security = 1\npassive = true\n"));
    let dst: SocketAddr = format!("{MERLE_V4}:179").parse().unwrap();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let h = p
        .peer
        .spawn(move || {
            let mut s = Speaker::connect_ttl(PEER_V4.parse().unwrap(), dst, Some(64)).unwrap();
            // merled's OPEN comes after it set the minimum TTL on this
            // connection; everything we send from then on is dropped.
            assert!(matches!(s.recv(Duration::from_secs(10)), Some(Message::Open(_))));
            let open = bgpd::packet::OpenMsg::new(65002, 90, Ipv4Addr::new(10, 1, 0, 2), vec![]);
            s.send(&Message::Open(open));
            let _ = stop_rx.recv_timeout(Duration::from_secs(30));
        })
        .unwrap();
    never_established(&m, Duration::from_secs(4));
    assert_eq!(m.peer_state(PEER_V4).as_deref(), Some("OpenSent"), "the OPEN with TTL 64 must be dropped");
    stop_tx.send(()).unwrap();
    h.join().unwrap().unwrap();
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn max_prefixes_sends_cease_1_and_restarts_later() {
    if testbed::skip_unless_root("max_prefixes_sends_cease_1_and_restarts_later") {
        return;
    }
    let p = pair("mp");
    let m = start_merled(&p, &merled_with("passive = true\nmax_prefixes = 2\nmax_prefixes_restart = 2\n"));
    let dst: SocketAddr = format!("{MERLE_V4}:179").parse().unwrap();
    let h = p
        .peer
        .spawn(move || {
            let mut s = Speaker::connect(PEER_V4.parse().unwrap(), dst).unwrap();
            s.handshake(65002, Ipv4Addr::new(10, 1, 0, 2), 90);
            let attrs =
                [&[0x40, 1, 1, 0][..], &[0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xea], &[0x40, 3, 4, 10, 1, 0, 2]].concat();
            s.send_update_raw(&attrs, &[24, 10, 9, 1, 24, 10, 9, 2, 24, 10, 9, 3]);
            loop {
                match s.recv(Duration::from_secs(10)) {
                    Some(Message::Notification(n)) => return (n.code, n.subcode, n.data.to_vec()),
                    Some(_) => continue,
                    None => panic!("no NOTIFICATION"),
                }
            }
        })
        .unwrap();
    let (code, sub, data) = h.join().unwrap().unwrap();
    assert_eq!((code, sub), (6, 1), "Cease / Maximum Number of Prefixes Reached");
    assert_eq!(data, vec![0, 1, 1, 0, 0, 0, 2], "AFI 1, SAFI 1, limit 2");
    let st = m.peer(PEER_V4).unwrap();
    assert!(st["last_error"].as_str().unwrap().contains("maximum prefixes (2) exceeded"), "{st}");
    assert!(m.route("10.9.1.0/24", PEER_V4).is_none());
    // While the restart delay runs, the peer is refused; afterwards it is
    // accepted again.
    wait::poll("session accepted again after the delay", T, || {
        (m.peer_state(PEER_V4).as_deref() == Some("Active")).then_some(())
    })
    .unwrap();
    let h = p
        .peer
        .spawn(move || {
            let mut s = Speaker::connect(PEER_V4.parse().unwrap(), dst).unwrap();
            s.handshake(65002, Ipv4Addr::new(10, 1, 0, 2), 90);
        })
        .unwrap();
    h.join().unwrap().unwrap();
}

/// An OPEN body with the given capability bytes as one optional parameter.
fn open_with_caps(asn: u16, id: [u8; 4], caps: &[u8]) -> Vec<u8> {
    let mut b = vec![4];
    b.extend_from_slice(&asn.to_be_bytes());
    b.extend_from_slice(&90u16.to_be_bytes());
    b.extend_from_slice(&id);
    b.push((caps.len() + 2) as u8);
    b.push(2);
    b.push(caps.len() as u8);
    b.extend_from_slice(caps);
    b
}

/// The NOTIFICATION a speaker gets within 20 s, other messages skipped.
fn notification_of(s: &mut Speaker) -> Option<(u8, u8)> {
    s.notification(Duration::from_secs(20))
}

/// Hostile input on one session (RFC 4271, RFC 5492, RFC 2918): an OPEN
/// with a capability list as long as the field allows, a flood of
/// ROUTE-REFRESH, a message over 4096 octets without the extended message
/// capability, and a capability that overruns its parameter: each handled
/// as the RFCs say, while a peer with a 3 s hold time on the same merled
/// never misses a keepalive.
#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn hostile_opens_floods_and_oversized_messages_leave_other_sessions_alone() {
    use std::io::Write;
    if testbed::skip_unless_root("hostile_opens_floods_and_oversized_messages_leave_other_sessions_alone") {
        return;
    }
    const ATTACKER: &str = "10.1.0.3";
    let p = pair_with("ho", &[ATTACKER]);
    let cfg = merled_config(&[(PEER_V4, 65002), (ATTACKER, 65003)], 3)
        .replace("as_number = 6500", "passive = true\nas_number = 6500");
    let m = start_merled(&p, &cfg);
    let dst: SocketAddr = format!("{MERLE_V4}:179").parse().unwrap();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let victim = p
        .peer
        .spawn(move || {
            let mut s = Speaker::connect(PEER_V4.parse().unwrap(), dst).unwrap();
            s.handshake(65002, Ipv4Addr::new(10, 1, 0, 2), 3);
            let (mut last, mut worst, mut sent) = (Instant::now(), Duration::ZERO, Instant::now());
            loop {
                if stop_rx.try_recv().is_ok() {
                    return (worst, true);
                }
                if sent.elapsed() >= Duration::from_millis(900) {
                    s.send(&Message::Keepalive);
                    sent = Instant::now();
                }
                match s.recv(Duration::from_millis(200)) {
                    Some(Message::Notification(_)) => return (worst, false),
                    Some(_) => {
                        worst = worst.max(last.elapsed());
                        last = Instant::now();
                    }
                    None => {}
                }
            }
        })
        .unwrap();
    wait_established(&m, PEER_V4, T);
    let attacker = p
        .peer
        .spawn(move || {
            let src = ATTACKER.parse().unwrap();
            // 1. Every capability the field holds (125 of an unknown code,
            // then the two merled needs): unknown ones are ignored.
            let mut caps: Vec<u8> = [200u8, 0].repeat(120);
            caps.extend_from_slice(&[1, 4, 0, 1, 0, 1]); // IPv4 unicast
            caps.extend_from_slice(&[65, 4, 0, 0, 0xfd, 0xeb]); // 4-octet AS 65003
            let mut s = Speaker::connect(src, dst).unwrap();
            s.stream.write_all(&frame(1, &open_with_caps(65003, [10, 1, 0, 3], &caps))).unwrap();
            let accepted = matches!(s.recv(Duration::from_secs(10)), Some(Message::Open(_)));
            s.dctx.four_octet_as = true;
            s.ectx.four_octet_as = true;
            s.send(&Message::Keepalive);
            // 2. 20,000 ROUTE-REFRESH requests at once.
            let rr = Message::RouteRefresh(bgpd::packet::RouteRefreshMsg::request(bgpd::packet::AfiSafi::IPV4_UNICAST));
            let one = rr.encode(&s.ectx);
            let flood: Vec<u8> = one.iter().copied().cycle().take(one.len() * 20_000).collect();
            s.stream.write_all(&flood).unwrap();
            // 3. A 5,000-octet message: Message Header Error, Bad Message
            // Length (RFC 4271 §6.1).
            let mut big = vec![0xff; 16];
            big.extend_from_slice(&5000u16.to_be_bytes());
            big.push(2);
            big.resize(5000, 0);
            s.stream.write_all(&big).unwrap();
            let too_long = notification_of(&mut s);
            drop(s);
            // 4. A capability whose length overruns its parameter.
            let bad = [1u8, 40, 0, 1, 0, 1];
            let mut s = Speaker::establish_raw(src, dst, &frame(1, &open_with_caps(65003, [10, 1, 0, 3], &bad)));
            let overrun = notification_of(&mut s);
            (accepted, too_long, overrun)
        })
        .unwrap();
    let (accepted, too_long, overrun) = attacker.join().unwrap().unwrap();
    assert!(accepted, "an OPEN with a full capability list of unknown codes is accepted");
    assert_eq!(too_long, Some((1, 2)), "Message Header Error, Bad Message Length");
    assert_eq!(overrun.map(|(c, _)| c), Some(2), "OPEN Message Error for the overrunning capability");
    // The other session is watched a while longer, for late effects.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(m.peer_state(PEER_V4).as_deref(), Some("Established"));
    stop_tx.send(()).unwrap();
    let (worst, up) = victim.join().unwrap().unwrap();
    assert!(up, "the other session must stay up");
    assert!(worst < Duration::from_secs(3), "the other session's longest silence from merled: {worst:?}");
    println!("other session's longest silence during the attack: {worst:?}");
}
