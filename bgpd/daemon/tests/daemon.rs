//! merled as a process: configuration errors, the control socket, refused
//! connections, RFC 7606 handling over a real session, and a stuck peer that
//! must not stall the others.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use bgpd::packet::Message;
use common::speaker::{Speaker, AS_PATH, NEXT_HOP, ORIGIN};
use common::*;
use testbed::{wait, TempDir};

const T: Duration = Duration::from_secs(20);

fn write_config(dir: &TempDir, text: &str) -> std::path::PathBuf {
    let p = dir.path().join("merled.toml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn invalid_config_stops_the_daemon_before_it_starts() {
    let dir = TempDir::new("badconf").unwrap();
    let base = "[node]\nname = \"n\"\naddress = \"10.0.0.1/24\"\n[control]\nsocket = \"SOCK\"\n";
    let sock = dir.path().join("s.sock");
    let base = base.replace("SOCK", sock.to_str().unwrap());
    let cases = [
        ("[bgp]\nlisten_prot = 179\n", "bgp.listen_prot", "unknown field"),
        ("[[advertise]]\nprefix = \"10.244.1.0/99\"\n", "advertise[0].prefix", "invalid"),
        ("[[bgp.peers]]\naddress = \"10.0.0.2\"\nas_number = 4294967296\n", "bgp.peers[0].as_number", "integer"),
        (
            "[[bgp.peers]]\naddress = \"10.0.0.2\"\nas_number = 1\n[[bgp.peers]]\naddress = \"10.0.0.2\"\nas_number = 1\n",
            "bgp.peers[1].address",
            "duplicate peer",
        ),
    ];
    for (extra, key, what) in cases {
        let path = write_config(&dir, &format!("{base}{extra}"));
        let out = Command::new(merled_bin()).arg("--config").arg(&path).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(path.to_str().unwrap()), "must name the file: {err}");
        assert!(err.contains(&format!("`{key}`")), "must name the key {key}: {err}");
        assert!(err.contains(what), "must say what is wrong ({what}): {err}");
        assert!(!sock.exists(), "nothing may start on a bad config");
    }
    // --check accepts a good file without starting.
    let path = write_config(&dir, &base);
    let out = Command::new(merled_bin()).args(["--check", "--config"]).arg(&path).output().unwrap();
    assert!(out.status.success());
    assert!(!sock.exists());
}

#[test]
fn control_socket_is_private_and_survives_bad_requests() {
    // Loopback only, an unprivileged port, no peers: needs no root.
    let dir = TempDir::new("ctl").unwrap();
    let sock = dir.path().join("merled.sock");
    let port = 20000 + (std::process::id() % 20000) as u16;
    let cfg = format!(
        "[node]\nname = \"ctl\"\naddress = \"127.0.0.1/8\"\nrouter_id = \"10.9.9.9\"\n[bgp]\nlisten_address = \"127.0.0.1\"\nlisten_port = {port}\n\
         [[advertise]]\nprefix = \"10.244.7.0/26\"\n[control]\nsocket = \"{}\"\n\
         # This merled runs in the host's namespace: it must not touch its FIB\n\
         # or attach programs to its interfaces, or clear a real merled's pins.\n\
         [fib]\nenabled = false\n[dataplane]\nmode = \"kernel\"\npin_dir = \"{}\"\n",
        sock.display(),
        dir.path().join("pins").display()
    );
    let path = write_config(&dir, &cfg);
    let mut child = Command::new(merled_bin()).arg("--config").arg(&path).stderr(Stdio::null()).spawn().unwrap();
    wait::poll("control socket", T, || sock.exists().then_some(())).unwrap();
    assert_eq!(std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777, 0o600);
    if testbed::is_root() {
        // A user other than root is refused by the socket's mode, even
        // with the directory open to everyone.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(merlectl_bin())
            .arg("--socket")
            .arg(&sock)
            .arg("status")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "nobody must be refused: {err}");
        assert!(err.to_lowercase().contains("permission denied"), "{err}");
    } else {
        eprintln!("control_socket_is_private: not root, the non-root refusal is not checked");
    }

    let ctl = |args: &[&str]| Command::new(merlectl_bin()).arg("--socket").arg(&sock).args(args).output().unwrap();
    let out = ctl(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["name"], "ctl");
    assert_eq!(v["as_number"], 64512);
    let out = ctl(&["--json", "routes"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["prefix"], "10.244.7.0/26");
    assert_eq!(v[0]["peer"], "local");

    // Garbage and oversized requests get an error, and merled stays up.
    use std::io::{BufRead, BufReader, Write};
    let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    s.write_all(b"{\"command\":\"reboot\"}\nnot json\n").unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    for _ in 0..2 {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["ok"], false, "{line}");
    }
    let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    let _ = s.write_all(&vec![b'x'; 200_000]);
    drop(s);
    assert!(ctl(&["status"]).status.success());

    // A second merled must not steal the socket.
    let out = Command::new(merled_bin()).arg("--config").arg(&path).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use"), "{}", String::from_utf8_lossy(&out.stderr));

    // SIGTERM: clean exit, socket removed.
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let st = wait::poll("merled exit", T, || child.try_wait().unwrap()).unwrap();
    assert!(st.success());
    assert!(!sock.exists());

    // merlectl without a daemon says so.
    let out = ctl(&["status"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is it running"));
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn connections_from_unknown_addresses_are_closed() {
    if testbed::skip_unless_root("connections_from_unknown_addresses_are_closed") {
        return;
    }
    let p = pair("ua");
    p.peer.add_addr("eth0", "10.1.0.9/24").unwrap();
    let m = start_merled(&p, &merled_config(&[(PEER_V4, 65002)], 90));
    let dst: SocketAddr = format!("{MERLE_V4}:179").parse().unwrap();
    let closed = p
        .peer
        .spawn(move || {
            let mut s = Speaker::connect("10.1.0.9".parse().unwrap(), dst).unwrap();
            s.closed_without_data(Duration::from_secs(5))
        })
        .unwrap()
        .join()
        .unwrap()
        .unwrap();
    assert!(closed, "a connection from an unknown address must be closed without an OPEN");
    assert!(m.daemon.log_tail(50).contains("not a configured peer"));
}

/// Announces `prefix` (a /24 in 10.9.0.0/16) with raw attributes.
fn nlri24(third: u8) -> Vec<u8> {
    vec![24, 10, 9, third]
}

fn valid(extra: &[u8]) -> Vec<u8> {
    [ORIGIN, AS_PATH, NEXT_HOP, extra].concat()
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn rfc7606_malformed_updates_over_a_real_session() {
    if testbed::skip_unless_root("rfc7606_malformed_updates_over_a_real_session") {
        return;
    }
    let p = pair("rw");
    // Passive: merled waits for our scripted speaker.
    let cfg =
        merled_config(&[(PEER_V4, 65002)], 90).replace("as_number = 65002\n", "as_number = 65002\npassive = true\n");
    let m = start_merled(&p, &cfg);
    let (to_main, from_speaker) = mpsc::channel::<&'static str>();
    let (to_speaker, from_main) = mpsc::channel::<()>();
    let dst: SocketAddr = format!("{MERLE_V4}:179").parse().unwrap();
    let h = p
        .peer
        .spawn(move || {
            let mut s = Speaker::connect(PEER_V4.parse().unwrap(), dst).unwrap();
            let open = s.handshake(65002, Ipv4Addr::new(10, 1, 0, 2), 90);
            assert_eq!(open.asn(), 64512);
            s.send_update_raw(&[&[0x40, 1, 1, 5][..], AS_PATH, NEXT_HOP].concat(), &nlri24(1)); // bad ORIGIN
            s.send_update_raw(&[ORIGIN, &[0x40, 2, 2, 2, 0][..], NEXT_HOP].concat(), &nlri24(2)); // empty segment
            s.send_update_raw(&valid(&[0xc0, 8, 3, 1, 2, 3]), &nlri24(3)); // COMMUNITIES length 3
            s.send_update_raw(&valid(&[0x40, 6, 1, 0]), &nlri24(4)); // ATOMIC_AGGREGATE length 1: discard
            s.send_update_raw(&valid(&[]), &nlri24(5));
            s.send_update_raw(&valid(&[0x80, 4, 2, 0, 1]), &nlri24(5)); // MED length 2: withdraws .5
            s.send_update_raw(&valid(&[0xc0, 99, 2, 0xab, 0xcd]), &nlri24(6)); // unknown optional transitive
            s.send_update_raw(&[ORIGIN, AS_PATH].concat(), &nlri24(7)); // missing NEXT_HOP
            s.send_update_raw(&valid(&[]), &nlri24(9)); // the sentinel
            to_main.send("sent").unwrap();
            from_main.recv().unwrap();
            // A repeated MP_UNREACH_NLRI must reset the session.
            let mp = [0x80, 15, 3, 0, 2, 1];
            s.send_update_raw(&valid(&[&mp[..], &mp].concat()), &nlri24(8));
            loop {
                match s.recv(Duration::from_secs(10)) {
                    Some(Message::Notification(n)) => return Some((n.code, n.subcode)),
                    Some(_) => continue,
                    None => return None,
                }
            }
        })
        .unwrap();
    assert_eq!(from_speaker.recv_timeout(T).unwrap(), "sent");
    wait_route(&m, "10.9.9.0/24", PEER_V4, T);
    assert_eq!(m.peer_state(PEER_V4).as_deref(), Some("Established"));
    for absent in [1, 2, 3, 5, 7] {
        assert!(m.route(&format!("10.9.{absent}.0/24"), PEER_V4).is_none(), "10.9.{absent}.0/24 must be withdrawn");
    }
    for present in [4, 6] {
        assert!(m.route(&format!("10.9.{present}.0/24"), PEER_V4).is_some(), "10.9.{present}.0/24 must be kept");
    }
    let log = m.daemon.log_tail(200);
    assert!(log.contains("treated as withdraw"), "{log}");
    assert!(log.contains("discarded"), "{log}");

    to_speaker.send(()).unwrap();
    let notif = h.join().unwrap().unwrap();
    assert_eq!(notif, Some((3, 1)), "UPDATE Message Error / Malformed Attribute List");
    wait::poll("routes withdrawn after the reset", T, || m.route("10.9.9.0/24", PEER_V4).is_none().then_some(()))
        .unwrap();
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn rfc7606_attributes_without_reachable_nlri_reset_ipv4_and_ipv6() {
    if testbed::skip_unless_root("rfc7606_attributes_without_reachable_nlri_reset_ipv4_and_ipv6") {
        return;
    }
    // RFC 7606 §5.2: an UPDATE with attributes but no reachable NLRI cannot
    // be treated as a withdraw, so an error that calls for one resets. One
    // peer per case, so no case waits for a reconnect.
    let p = pair("r52");
    p.peer.add_addr("eth0", "10.1.0.3/24").unwrap();
    let cfg = merled_config(&[(PEER_V4, 65002), ("10.1.0.3", 65003), (PEER_V6, 65006)], 90)
        .replace("\"\nas_number = ", "\"\npassive = true\nas_number = ");
    let m = start_merled(&p, &cfg);
    let bad_origin: &[u8] = &[0x40, 1, 1, 3];
    let communities_5: &[u8] = &[0xc0, 8, 5, 1, 2, 3, 4, 5];

    // IPv4, COMMUNITIES of length 5 next to a valid ORIGIN and AS_PATH,
    // no NLRI at all: Attribute Length Error.
    let (routed_tx, routed_rx) = mpsc::channel::<()>();
    let dst: SocketAddr = format!("{MERLE_V4}:179").parse().unwrap();
    let a = p
        .peer
        .spawn(move || {
            let mut s = Speaker::connect(PEER_V4.parse().unwrap(), dst).unwrap();
            s.handshake(65002, Ipv4Addr::new(10, 1, 0, 2), 90);
            s.send_update_raw(&valid(&[]), &nlri24(1));
            routed_rx.recv().unwrap();
            s.send_update_raw(&[ORIGIN, AS_PATH, communities_5].concat(), &[]);
            s.notification(T)
        })
        .unwrap();
    wait_route(&m, "10.9.1.0/24", PEER_V4, T);
    routed_tx.send(()).unwrap();
    assert_eq!(a.join().unwrap().unwrap(), Some((3, 5)), "UPDATE Message Error / Attribute Length Error");
    wait::poll("10.9.1.0/24 gone with the session", T, || m.route("10.9.1.0/24", PEER_V4).is_none().then_some(()))
        .unwrap();

    // IPv4, a malformed ORIGIN in an UPDATE that only withdraws.
    let b = p
        .peer
        .spawn(move || {
            let mut s = Speaker::connect("10.1.0.3".parse().unwrap(), dst).unwrap();
            s.handshake(65003, Ipv4Addr::new(10, 1, 0, 3), 90);
            s.send_update_parts(&nlri24(2), &[bad_origin, AS_PATH].concat(), &[]);
            s.notification(T)
        })
        .unwrap();
    assert_eq!(b.join().unwrap().unwrap(), Some((3, 6)), "UPDATE Message Error / Invalid ORIGIN Attribute");

    // IPv6 over an IPv6 session: a malformed ORIGIN next to reachable NLRI
    // in MP_REACH_NLRI is treated as withdraw (the session stays); next to
    // an MP_UNREACH_NLRI it resets.
    let (step_tx, step_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let dst6: SocketAddr = format!("[{MERLE_V6}]:179").parse().unwrap();
    let mp_reach = |third: u8| -> Vec<u8> {
        let mut mp = vec![0x80, 14, 26, 0, 2, 1, 16];
        mp.extend_from_slice(&PEER_V6.parse::<std::net::Ipv6Addr>().unwrap().octets());
        mp.extend_from_slice(&[0, 32, 0xfd, 0, 0, third]);
        mp
    };
    let c = p
        .peer
        .spawn(move || {
            use bgpd::packet::{AfiSafi, Capability};
            let mut s = Speaker::connect(PEER_V6.parse().unwrap(), dst6).unwrap();
            let caps = vec![Capability::Multiprotocol(AfiSafi::IPV6_UNICAST), Capability::FourOctetAs(65006)];
            s.handshake_with(65006, Ipv4Addr::new(10, 1, 0, 6), 90, caps);
            let as_path: &[u8] = &[0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xee]; // 65006
            s.send_update_raw(&[ORIGIN, as_path, &mp_reach(1)].concat(), &[]);
            s.send_update_raw(&[ORIGIN, as_path, &mp_reach(2)].concat(), &[]);
            step_rx.recv().unwrap();
            s.send_update_raw(&[bad_origin, as_path, &mp_reach(2)].concat(), &[]);
            // Still up: no NOTIFICATION.
            let quiet = s.notification(Duration::from_millis(500));
            done_tx.send(()).unwrap();
            step_rx.recv().unwrap();
            s.send_update_raw(&[bad_origin, &[0x80, 15, 8, 0, 2, 1, 32, 0xfd, 0, 0, 1]].concat(), &[]);
            (quiet, s.notification(T))
        })
        .unwrap();
    wait_route(&m, "fd00:1::/32", PEER_V6, T);
    wait_route(&m, "fd00:2::/32", PEER_V6, T);
    step_tx.send(()).unwrap();
    done_rx.recv_timeout(T).unwrap();
    wait::poll("fd00:2::/32 withdrawn", T, || m.route("fd00:2::/32", PEER_V6).is_none().then_some(())).unwrap();
    assert!(m.route("fd00:1::/32", PEER_V6).is_some());
    assert_eq!(m.peer_state(PEER_V6).as_deref(), Some("Established"));
    step_tx.send(()).unwrap();
    let (quiet, reset) = c.join().unwrap().unwrap();
    assert_eq!(quiet, None, "treat-as-withdraw must keep the session");
    assert_eq!(reset, Some((3, 6)), "UPDATE Message Error / Invalid ORIGIN Attribute");
    wait::poll("fd00:1::/32 gone with the session", T, || m.route("fd00:1::/32", PEER_V6).is_none().then_some(()))
        .unwrap();
    // Every malformed UPDATE was logged whole (RFC 7606 §6).
    let log = m.daemon.log_tail(400);
    assert_eq!(log.matches("malformed message (hex): ").count(), 4, "{log}");
    assert!(log.contains("c008050102030405"), "the COMMUNITIES attribute in the dump: {log}");
}

/// Damping holds back our own attempts, not the peer's: a passive peer
/// whose session failed accepts the peer's next connection at once, even
/// with a long `error_wait_time_min`.
#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn a_damped_passive_peer_accepts_the_peers_next_connection() {
    if testbed::skip_unless_root("a_damped_passive_peer_accepts_the_peers_next_connection") {
        return;
    }
    let p = pair("dp");
    let cfg = merled_config(&[(PEER_V4, 65002)], 90)
        .replace("as_number = 65002\n", "as_number = 65002\npassive = true\nerror_wait_time_min = 60\n");
    let m = start_merled(&p, &cfg);
    let dst: SocketAddr = format!("{MERLE_V4}:179").parse().unwrap();
    let h = p
        .peer
        .spawn(move || {
            let mut s = Speaker::connect(PEER_V4.parse().unwrap(), dst).unwrap();
            s.handshake(65002, Ipv4Addr::new(10, 1, 0, 2), 90);
            // An error on the session: merled damps it (60 s).
            s.send(&Message::Notification(bgpd::packet::NotificationMsg::new(6, 4, bytes::Bytes::new())));
            drop(s);
            std::thread::sleep(Duration::from_millis(300));
            let t = std::time::Instant::now();
            let mut s = Speaker::connect(PEER_V4.parse().unwrap(), dst).unwrap();
            s.handshake(65002, Ipv4Addr::new(10, 1, 0, 2), 90);
            (t.elapsed(), s)
        })
        .unwrap();
    let (took, _session) = h.join().unwrap().unwrap();
    assert!(took < Duration::from_secs(5), "the second session took {took:?}");
    wait_established(&m, PEER_V4, T);
}

/// The Adj-RIB-Out is exact: a peer whose export policy kept a prefix
/// from it is not sent a withdrawal for that prefix, whether the route goes
/// by an UPDATE or with its session; what it was sent is withdrawn once.
#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn withdrawals_go_only_to_peers_that_were_sent_the_route() {
    if testbed::skip_unless_root("withdrawals_go_only_to_peers_that_were_sent_the_route") {
        return;
    }
    const MONITOR_V4: &str = "10.1.0.3";
    let p = pair_with("ao", &[MONITOR_V4]);
    let cfg = format!(
        "[node]\nname = \"merle\"\naddress = \"{MERLE_V4}/24\"\n\n\
         [bgp]\nhold_time = 90\nconnect_retry_time = 1\n\n\
         [[bgp.peers]]\naddress = \"{PEER_V4}\"\nas_number = 65002\npassive = true\n\n\
         [[bgp.peers]]\naddress = \"{MONITOR_V4}\"\nas_number = 65003\npassive = true\n\
         export_learned = true\nfilters = [\"monitor\"]\n\n\
         [[filters]]\nname = \"monitor\"\n[[filters.export_v4]]\ncidr = \"10.9.2.0/23\"\n\
         match_operator = \"In\"\naction = \"Reject\"\n\n\
         [[advertise]]\nprefix = \"10.244.1.0/26\"\n\n[control]\nsocket = \"{{socket}}\"\n"
    );
    let m = start_merled(&p, &cfg);
    let dst: SocketAddr = format!("{MERLE_V4}:179").parse().unwrap();
    let (to_upstream, upstream_rx) = mpsc::channel::<()>();
    let monitor = p
        .peer
        .spawn(move || {
            let mut s = Speaker::connect(MONITOR_V4.parse().unwrap(), dst).unwrap();
            s.handshake(65003, Ipv4Addr::new(10, 1, 0, 3), 90);
            let (mut announced, mut withdrawn) = (Vec::new(), Vec::new());
            let mut quiet_until: Option<std::time::Instant> = None;
            loop {
                let left = match quiet_until {
                    Some(t) => match t.checked_duration_since(std::time::Instant::now()) {
                        Some(d) => d,
                        None => break,
                    },
                    None => Duration::from_secs(30),
                };
                let Some(msg) = s.recv(left) else { break };
                if let Message::Update(u) = msg {
                    announced.extend(u.announcements().into_iter().map(|(n, _)| n.prefix.to_string()));
                    withdrawn.extend(u.withdrawals().into_iter().map(|n| n.prefix.to_string()));
                }
                if announced.len() == 3 && quiet_until.is_none() && withdrawn.is_empty() {
                    // Everything this peer gets is here: the upstream may go.
                    let _ = to_upstream.send(());
                }
                if withdrawn.len() >= 2 && quiet_until.is_none() {
                    // Listen on a while for withdrawals that must not come.
                    quiet_until = Some(std::time::Instant::now() + Duration::from_secs(2));
                }
            }
            announced.sort();
            withdrawn.sort();
            // The session stays up (the stream is handed back) for the
            // status check.
            (announced, withdrawn, s)
        })
        .unwrap();
    let upstream = p
        .peer
        .spawn(move || {
            let mut s = Speaker::connect(PEER_V4.parse().unwrap(), dst).unwrap();
            s.handshake(65002, Ipv4Addr::new(10, 1, 0, 2), 90);
            // Two the monitor gets (10.9.0, 10.9.1), two its filter keeps
            // from it (10.9.2, 10.9.3).
            s.send_update_raw(&valid(&[]), &[nlri24(0), nlri24(1), nlri24(2), nlri24(3)].concat());
            upstream_rx.recv_timeout(Duration::from_secs(30)).unwrap();
            // One of each withdrawn by an UPDATE, the others by the
            // session's end.
            s.send_update_parts(&[nlri24(0), nlri24(2)].concat(), &[], &[]);
            std::thread::sleep(Duration::from_millis(300));
            drop(s);
        })
        .unwrap();
    upstream.join().unwrap().unwrap();
    let (announced, withdrawn, _session) = monitor.join().unwrap().unwrap();
    assert_eq!(announced, ["10.244.1.0/26", "10.9.0.0/24", "10.9.1.0/24"]);
    assert_eq!(withdrawn, ["10.9.0.0/24", "10.9.1.0/24"], "withdrawals only for what the monitor was sent, once each");
    wait::poll("the monitor's advertised count", T, || {
        let st = m.peer(MONITOR_V4)?;
        (st["prefixes_advertised"].as_u64() == Some(1)).then_some(())
    })
    .unwrap();
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn a_stuck_peer_does_not_stall_the_others() {
    if testbed::skip_unless_root("a_stuck_peer_does_not_stall_the_others") {
        return;
    }
    let p = pair("sp");
    p.peer.add_addr("eth0", "10.1.0.3/24").unwrap();
    // 10.1.0.3 accepts merled's connection and then never reads or writes.
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let stuck = p
        .peer
        .spawn(move || {
            let l = std::net::TcpListener::bind("10.1.0.3:179").unwrap();
            let (c, _) = l.accept().unwrap();
            let _ = stop_rx.recv_timeout(Duration::from_secs(60));
            drop(c);
        })
        .unwrap();
    let cfg = merled_config(&[(PEER_V4, 65002), ("10.1.0.3", 65003)], 90)
        .replace("as_number = 65002\n", "as_number = 65002\npassive = true\n");
    let m = start_merled(&p, &cfg);
    wait::poll("stuck peer in OpenSent", T, || (m.peer_state("10.1.0.3").as_deref() == Some("OpenSent")).then_some(()))
        .unwrap();
    let dst: SocketAddr = format!("{MERLE_V4}:179").parse().unwrap();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let good = p
        .peer
        .spawn(move || {
            let mut s = Speaker::connect(IpAddr::V4(Ipv4Addr::new(10, 1, 0, 2)), dst).unwrap();
            s.handshake(65002, Ipv4Addr::new(10, 1, 0, 2), 90);
            s.send_update_raw(&valid(&[]), &nlri24(9));
            let _ = done_rx.recv_timeout(Duration::from_secs(60));
        })
        .unwrap();
    wait_route(&m, "10.9.9.0/24", PEER_V4, T);
    assert_eq!(m.peer_state("10.1.0.3").as_deref(), Some("OpenSent"));
    let _ = done_tx.send(());
    let _ = stop_tx.send(());
    good.join().unwrap().unwrap();
    stuck.join().unwrap().unwrap();
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn two_octet_peer_gets_as_trans_and_as4_path_and_is_merged_on_import() {
    if testbed::skip_unless_root("two_octet_peer_gets_as_trans_and_as4_path_and_is_merged_on_import") {
        return;
    }
    let p = pair("as4");
    let cfg = merled_config(&[(PEER_V4, 65002)], 90)
        .replace("as_number = 65002\n", "as_number = 65002\npassive = true\n")
        .replace("[bgp]", "as_number = 4200000001\n\n[bgp]");
    let m = start_merled(&p, &cfg);
    let dst: SocketAddr = format!("{MERLE_V4}:179").parse().unwrap();
    let (result_tx, result_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let h = p
        .peer
        .spawn(move || {
            use bgpd::packet::{AfiSafi, Capability};
            let mut s = Speaker::connect(PEER_V4.parse().unwrap(), dst).unwrap();
            // An "old" speaker: no 4-octet AS capability.
            let open = s.handshake_with(
                65002,
                Ipv4Addr::new(10, 1, 0, 2),
                90,
                vec![Capability::Multiprotocol(AfiSafi::IPV4_UNICAST)],
            );
            // AS_PATH 65002 AS_TRANS, AS4_PATH 4200000009: a path through a
            // 4-octet AS, seen by a 2-octet speaker.
            let attrs = [
                ORIGIN,
                &[0x40, 2, 6, 2, 2, 0xfd, 0xea, 0x5b, 0xa0][..],
                NEXT_HOP,
                &[0xc0, 17, 6, 2, 1, 0xfa, 0x56, 0xea, 0x09][..],
            ]
            .concat();
            s.send_update_raw(&attrs, &nlri24(9));
            // merled's own route, as the 2-octet speaker receives it.
            loop {
                match s.recv(Duration::from_secs(10)) {
                    Some(Message::Update(u)) if !u.nlri.is_empty() => {
                        let r = (open.my_as, u.as_path().unwrap().flat(), u.as4_path().map(|p| p.flat()));
                        result_tx.send(r).unwrap();
                        // Keep the session up while the main thread looks.
                        let _ = done_rx.recv_timeout(Duration::from_secs(60));
                        return;
                    }
                    Some(_) => continue,
                    None => panic!("no UPDATE from merled"),
                }
            }
        })
        .unwrap();
    let (my_as, as_path, as4_path) = result_rx.recv_timeout(T).unwrap();
    assert_eq!(my_as, 23456, "OPEN My AS must be AS_TRANS");
    assert_eq!(as_path, vec![23456]);
    assert_eq!(as4_path, Some(vec![4_200_000_001]));
    let r = wait_route(&m, "10.9.9.0/24", PEER_V4, T);
    assert_eq!(as_path_of(&r), vec![65002, 4_200_000_009]);
    assert_eq!(m.peer(PEER_V4).unwrap()["four_octet_as"], false);
    done_tx.send(()).unwrap();
    h.join().unwrap().unwrap();
}

fn as_path_of(r: &serde_json::Value) -> Vec<u64> {
    common::as_path(r)
}
