//! The control socket under load: with about a million routes in the RIB,
//! `merlectl routes` (full dumps, counts, filters) must not hold up the
//! sessions. tcpdump on the monitor's side timestamps every segment with a
//! payload that merled sends to a monitor peer with a 3 s hold time; the
//! longest gap must stay under 1.1 s (keepalives are due every second) and
//! the session must stay up, with and without three new peers being fed
//! the full table at the same time while a fourth asks for it again with a
//! ROUTE-REFRESH and a fifth's export policy is edited by live reload
//! (every route it holds sent again), and while a peer that is Established
//! and owed the table stops reading (merled must hold no more than its
//! writer's high-water mark for it).
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bgpd::packet::{AfiSafi, Capability, EncodeCtx, Message, OpenMsg, RouteRefreshMsg};
use common::*;
use testbed::capture::{self, Capture};
use testbed::netns::Netns;
use testbed::wait;

const SOURCES: u32 = 4;
const PER_SOURCE: u32 = 250_000;
const MONITOR: &str = "10.1.0.30";
const FEEDS: [&str; 3] = ["10.1.0.40", "10.1.0.41", "10.1.0.42"];
/// Established, owed the full table, and never reads.
const STALLED: &str = "10.1.0.50";
/// Fed the table, then asks for it again (ROUTE-REFRESH).
const REFRESH: &str = "10.1.0.43";
/// Fed the table, then its export policy is edited: every route changes.
const EDITED: &str = "10.1.0.44";
const GAP_LIMIT: Duration = Duration::from_millis(1100);

fn source_addr(i: u32) -> String {
    format!("10.1.0.{}", 10 + i)
}

/// The j-th /24 of source i, inside 16.0.0.0/4.
fn prefix(i: u32, j: u32) -> [u8; 3] {
    let n = 0x10_0000 + i * PER_SOURCE + j;
    [(n >> 16) as u8, (n >> 8) as u8, n as u8]
}

/// What one reader saw of merled's side of a session.
#[derive(Default)]
struct Seen {
    end_of_rib: AtomicBool,
    updates: AtomicU64,
    /// A NOTIFICATION, or the connection closing.
    down: Mutex<Option<String>>,
}

/// An established session with merled, driven by two threads: one reads
/// and frames everything merled sends (headers only, so it never falls
/// behind), one sends a KEEPALIVE every `keepalive`.
struct Session {
    seen: Arc<Seen>,
    stream: TcpStream,
    stop: Arc<AtomicBool>,
}

impl Session {
    /// Connects from `src` in `ns` and sends OPEN and KEEPALIVE at once:
    /// merled (passive) answers with its OPEN and KEEPALIVE, which the
    /// reader consumes.
    fn open(ns: &Netns, src: &str, asn: u32, hold: u16) -> Self {
        Self::open_with(ns, src, asn, hold, true)
    }

    /// As `open`; with `reads` false nothing merled sends is ever read,
    /// and the socket's receive buffer is as small as the kernel allows,
    /// so that what merled queues for it stays in merled.
    fn open_with(ns: &Netns, src: &str, asn: u32, hold: u16, reads: bool) -> Self {
        let src: IpAddr = src.parse().unwrap();
        let dst: SocketAddr = format!("{MERLE_V4}:179").parse().unwrap();
        let stream = ns
            .spawn(move || {
                let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
                if !reads {
                    s.set_recv_buffer_size(1).unwrap();
                }
                s.bind(&SocketAddr::new(src, 0).into()).unwrap();
                s.connect_timeout(&dst.into(), Duration::from_secs(5)).unwrap();
                let s: TcpStream = s.into();
                s.set_nodelay(true).unwrap();
                s
            })
            .unwrap()
            .join()
            .unwrap()
            .unwrap();
        let IpAddr::V4(id) = src else { unreachable!() };
        let caps = vec![
            Capability::Multiprotocol(AfiSafi::IPV4_UNICAST),
            Capability::RouteRefresh,
            Capability::FourOctetAs(asn),
        ];
        let ctx = EncodeCtx { four_octet_as: true, ..EncodeCtx::default() };
        let mut hello = Message::Open(OpenMsg::new(asn, hold, id, caps)).encode(&ctx).to_vec();
        hello.extend_from_slice(&Message::Keepalive.encode(&ctx));
        (&stream).write_all(&hello).unwrap();
        let seen = Arc::new(Seen::default());
        let stop = Arc::new(AtomicBool::new(false));
        if reads {
            let (mut rd, seen, stop) = (stream.try_clone().unwrap(), seen.clone(), stop.clone());
            std::thread::spawn(move || read_loop(&mut rd, &seen, &stop));
        }
        {
            let (mut wr, stop) = (stream.try_clone().unwrap(), stop.clone());
            let every = Duration::from_secs(u64::from(hold / 3).max(1));
            std::thread::spawn(move || {
                let ka = Message::Keepalive.encode(&EncodeCtx::default());
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(every);
                    if wr.write_all(&ka).is_err() {
                        return;
                    }
                }
            });
        }
        Self { seen, stream, stop }
    }

    fn send(&self, bytes: &[u8]) {
        (&self.stream).write_all(bytes).unwrap();
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

fn read_loop(rd: &mut TcpStream, seen: &Seen, stop: &AtomicBool) {
    let mut buf = vec![0u8; 256 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let n = match rd.read(&mut buf) {
            Ok(0) | Err(_) => {
                if !stop.load(Ordering::Relaxed) {
                    seen.down.lock().unwrap().get_or_insert_with(|| "connection closed by merled".into());
                }
                return;
            }
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        let mut at = 0;
        while pending.len() - at >= 19 {
            let len = usize::from(u16::from_be_bytes([pending[at + 16], pending[at + 17]]));
            if len < 19 || pending.len() - at < len {
                break;
            }
            match pending[at + 18] {
                2 if len == 23 => seen.end_of_rib.store(true, Ordering::Relaxed),
                2 => {
                    seen.updates.fetch_add(1, Ordering::Relaxed);
                }
                3 => {
                    let m = &pending[at..at + len];
                    *seen.down.lock().unwrap() = Some(format!("NOTIFICATION {:?}", &m[19..]));
                }
                _ => {}
            }
            at += len;
        }
        pending.drain(..at);
    }
}

/// Source i's table as raw UPDATEs, about 1,000 prefixes each.
fn table(i: u32) -> Vec<u8> {
    let IpAddr::V4(nh) = source_addr(i).parse().unwrap() else { unreachable!() };
    let per_update = (4096 - 23 - ibgp_attrs(nh.octets(), 100).len()) / 4;
    let mut out = Vec::new();
    let all: Vec<u32> = (0..PER_SOURCE).collect();
    for chunk in all.chunks(per_update) {
        let nlri: Vec<u8> = chunk.iter().flat_map(|&j| std::iter::once(24).chain(prefix(i, j))).collect();
        out.extend(update(nh.octets(), 100, &nlri));
    }
    // End-of-RIB.
    out.extend_from_slice(&[0xff; 16]);
    out.extend_from_slice(&[0, 23, 2, 0, 0, 0, 0]);
    out
}

fn ibgp_attrs(next_hop: [u8; 4], local_pref: u8) -> Vec<u8> {
    let mut attrs = vec![0x40, 1, 1, 0, 0x40, 2, 0, 0x40, 3, 4];
    attrs.extend_from_slice(&next_hop);
    attrs.extend_from_slice(&[0x40, 5, 4, 0, 0, 0, local_pref]);
    attrs
}

/// An iBGP UPDATE for raw IPv4 NLRI with this next hop and LOCAL_PREF.
fn update(next_hop: [u8; 4], local_pref: u8, nlri: &[u8]) -> Vec<u8> {
    let attrs = ibgp_attrs(next_hop, local_pref);
    let len = 23 + attrs.len() + nlri.len();
    let mut u = vec![0xff; 16];
    u.extend_from_slice(&(len as u16).to_be_bytes());
    u.extend_from_slice(&[2, 0, 0]);
    u.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    u.extend_from_slice(&attrs);
    u.extend_from_slice(nlri);
    u
}

/// The configuration; with `edited`, EDITED's export adds a community to
/// every route.
fn config(edited: bool) -> String {
    let mut s = format!(
        "[node]\nname = \"merle\"\naddress = \"{MERLE_V4}/24\"\n\n\
         [bgp]\nhold_time = 90\nconnect_retry_time = 1\n\n"
    );
    for i in 0..SOURCES {
        s += &format!("[[bgp.peers]]\naddress = \"{}\"\nas_number = 64512\npassive = true\n\n", source_addr(i));
    }
    for (k, a) in std::iter::once(MONITOR).chain(FEEDS).chain([STALLED, REFRESH, EDITED]).enumerate() {
        s += &format!(
            "[[bgp.peers]]\naddress = \"{a}\"\nas_number = {}\npassive = true\nexport_learned = true\n",
            65100 + k
        );
        if edited && a == EDITED {
            s += "filters = [\"tag\"]\n";
        }
        s += "\n";
    }
    if edited {
        s += "[[filters]]\nname = \"tag\"\n[[filters.export_v4]]\naction = \"Accept\"\nadd_community = \"64512:777\"\n\n";
    }
    s += "[fib]\nenabled = false\n\n[control]\nsocket = \"{socket}\"\n";
    s
}

fn received(m: &testbed::merled::Merled) -> u64 {
    let st = m.status().unwrap();
    st["peers"].as_array().unwrap().iter().map(|p| p["prefixes_received"].as_u64().unwrap_or(0)).sum()
}

/// Runs `merlectl routes --json` and returns how many routes it printed.
fn dump(m: &testbed::merled::Merled) -> (usize, Duration) {
    let t = Instant::now();
    let out = Command::new(&m.merlectl).arg("--socket").arg(&m.socket).args(["routes", "--json"]).output().unwrap();
    assert!(out.status.success(), "merlectl routes: {}", String::from_utf8_lossy(&out.stderr));
    let n = out.stdout.split(|b| *b == b'\n').filter(|l| l.starts_with(b"    \"prefix\": ")).count();
    (n, t.elapsed())
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn route_dumps_of_a_million_routes_never_hold_up_the_sessions() {
    if testbed::skip_unless_root("route_dumps_of_a_million_routes_never_hold_up_the_sessions") {
        return;
    }
    let p = pair("ctl");
    for a in (0..SOURCES)
        .map(source_addr)
        .chain([MONITOR, STALLED, REFRESH, EDITED].map(str::to_string))
        .chain(FEEDS.map(str::to_string))
    {
        p.peer.add_addr("eth0", &format!("{a}/24")).unwrap();
    }
    let m = start_merled(&p, &config(false));
    let total = u64::from(SOURCES * PER_SOURCE);

    let t = Instant::now();
    let sources: Vec<Session> = (0..SOURCES)
        .map(|i| {
            let s = Session::open(&p.peer, &source_addr(i), 64512, 90);
            s.send(&table(i));
            s
        })
        .collect();
    wait::until("the full table in merled", Duration::from_secs(240), Duration::from_millis(500), || {
        (received(&m) == total).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}: {} of {total}\n{}", received(&m), m.daemon.log_tail(20)));
    eprintln!("{total} routes loaded in {:?}", t.elapsed());

    let monitor = Session::open(&p.peer, MONITOR, 65100, 3);
    let refresh = Session::open(&p.peer, REFRESH, 65105, 90);
    let edited = Session::open(&p.peer, EDITED, 65106, 90);
    wait::until("the monitor and two more fed", Duration::from_secs(240), Duration::from_millis(200), || {
        [&monitor, &refresh, &edited].iter().all(|s| s.seen.end_of_rib.load(Ordering::Relaxed)).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}\n{}", monitor.seen.down.lock().unwrap(), m.daemon.log_tail(20)));
    let (refresh_fed, edited_fed) =
        (refresh.seen.updates.load(Ordering::Relaxed), edited.seen.updates.load(Ordering::Relaxed));
    eprintln!("monitor fed {} UPDATEs in {:?}", monitor.seen.updates.load(Ordering::Relaxed), t.elapsed());
    let filter = format!("tcp and src host {MERLE_V4} and dst host {MONITOR} and {}", capture::TCP_PAYLOAD_V4);
    let cap = Capture::start(&p.peer, "eth0", &filter).unwrap();
    // A quiet while as the baseline: keepalives only.
    let quiet = SystemTime::now();
    std::thread::sleep(Duration::from_secs(3));
    let baseline = cap.longest_gap(quiet, SystemTime::now());

    // 1. Dumps and counts alone.
    let from = SystemTime::now();
    let (n, took) = dump(&m);
    assert_eq!(n as u64, total, "the dump must hold every route");
    let t = Instant::now();
    let counts: serde_json::Value =
        serde_json::from_str(&m.merlectl(&["routes", "--count", "--json"]).unwrap()).unwrap();
    eprintln!("count walk in {:?}", t.elapsed());
    assert_eq!(counts["paths"].as_u64(), Some(total), "{counts}");
    let per_source: serde_json::Value =
        serde_json::from_str(&m.merlectl(&["routes", "--count", "--json", "--peer", &source_addr(1)]).unwrap())
            .unwrap();
    assert_eq!(per_source["paths"].as_u64(), Some(u64::from(PER_SOURCE)), "{per_source}");
    std::thread::sleep(Duration::from_millis(1500));
    let alone = cap.longest_gap(from, SystemTime::now());
    eprintln!("dump alone: {n} routes in {took:?}; longest gap between merled's segments {alone:?}");

    // 2. A dump while three new peers are fed the full table, a fourth
    // asks for it again and a fifth's export policy changes every route.
    let from = SystemTime::now();
    let t = Instant::now();
    let feeds: Vec<Session> =
        FEEDS.iter().enumerate().map(|(k, a)| Session::open(&p.peer, a, 65101 + k as u32, 90)).collect();
    refresh.send(&Message::RouteRefresh(RouteRefreshMsg::request(AfiSafi::IPV4_UNICAST)).encode(&EncodeCtx::default()));
    m.write_config(&config(true)).unwrap();
    let (n2, took2) = dump(&m);
    assert_eq!(n2 as u64, total);
    // Each of the two is sent the whole table again: at least as many
    // UPDATEs as the first time (the community makes the edited ones a
    // little fuller).
    let again = |s: &Session, first: u64| s.seen.updates.load(Ordering::Relaxed) >= 2 * first;
    wait::until(
        "the feeds fed, the refresh and the re-export sent",
        Duration::from_secs(240),
        Duration::from_millis(200),
        || {
            (feeds.iter().all(|f| f.seen.end_of_rib.load(Ordering::Relaxed))
                && again(&refresh, refresh_fed)
                && again(&edited, edited_fed))
            .then_some(())
        },
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e}: refresh {} of {}, edited {} of {}\n{}",
            refresh.seen.updates.load(Ordering::Relaxed),
            2 * refresh_fed,
            edited.seen.updates.load(Ordering::Relaxed),
            2 * edited_fed,
            m.daemon.log_tail(30)
        )
    });
    let fed = t.elapsed();
    let loaded = cap.longest_gap(from, SystemTime::now());
    eprintln!("no dump (keepalives only): longest gap {baseline:?}");
    eprintln!(
        "dump during 3 full-table feeds, a route refresh and a policy re-export: {took2:?}, all done in {fed:?}; \
         longest gap {loaded:?}"
    );
    let log = m.daemon.log_tail(2000);
    assert!(log.contains("route refresh requested"), "{log}");
    assert!(log.contains("re-export after the policy change sent"), "{log}");
    for (s, name) in [(&refresh, REFRESH), (&edited, EDITED)] {
        assert_eq!(*s.seen.down.lock().unwrap(), None, "{name}'s session dropped");
    }

    // 3. A peer that is Established, is owed the full table and stops
    // reading: merled holds no more than HIGH_WATER (256 KiB) plus one
    // export slice for it, and the other sessions go on.
    let from = SystemTime::now();
    let rss_before = rss_kib(&m);
    let stalled = Session::open_with(&p.peer, STALLED, 65104, 90, false);
    wait::until("the stalled peer Established", Duration::from_secs(30), Duration::from_millis(100), || {
        (m.peer_state(STALLED).as_deref() == Some("Established")).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", m.daemon.log_tail(20)));
    let (mut most, t) = (0, Instant::now());
    while t.elapsed() < Duration::from_secs(6) {
        most = most.max(out_queue(&m, STALLED));
        std::thread::sleep(Duration::from_millis(100));
    }
    let rss_after = rss_kib(&m);
    let stall_gap = cap.longest_gap(from, SystemTime::now());
    eprintln!(
        "stalled peer: output queue at most {most} bytes; merled's RSS {rss_before} -> {rss_after} KiB; \
         longest gap to the monitor {stall_gap:?}"
    );
    assert!(most >= 64 * 1024, "the stalled peer's queue never filled ({most} bytes): the test stalls nothing");
    assert!(most <= 512 * 1024, "merled queued {most} bytes for a peer that does not read");
    assert!(stall_gap < GAP_LIMIT, "a stalled peer held merled's messages to the monitor for {stall_gap:?}");
    for f in FEEDS {
        assert_eq!(m.peer_state(f).as_deref(), Some("Established"), "{f}");
    }

    let log = m.daemon.log_tail(400);
    for l in log.lines().filter(|l| l.contains("took")) {
        eprintln!("{l}");
    }
    assert_eq!(*monitor.seen.down.lock().unwrap(), None, "the monitor's session dropped");
    assert_eq!(m.peer_state(MONITOR).as_deref(), Some("Established"));
    assert!(alone < GAP_LIMIT, "a dump held merled's messages for {alone:?}");
    assert!(loaded < GAP_LIMIT, "a dump during feeds held merled's messages for {loaded:?}");
    cap.stop();
    drop((sources, feeds, monitor, stalled, refresh, edited));
}

/// merled's resident set, KiB.
fn rss_kib(m: &testbed::merled::Merled) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{}/status", m.daemon.pid().unwrap())).unwrap();
    s.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap()
}

/// What merled has queued for `peer` and not written, bytes.
fn out_queue(m: &testbed::merled::Merled, peer: &str) -> u64 {
    let st = m.status().unwrap();
    st["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["address"] == peer)
        .and_then(|p| p["out_queue_bytes"].as_u64())
        .unwrap()
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
    let a = Session::open(&p.peer, "10.1.0.10", 64512, 90);
    a.send(&update([10, 1, 0, 10], 100, &[24, 16, 0, 1, 24, 16, 0, 2, 16, 16, 0]));
    let b = Session::open(&p.peer, "10.1.0.11", 64512, 90);
    b.send(&update([10, 1, 0, 11], 50, &[24, 16, 0, 1]));
    wait::poll("routes in", Duration::from_secs(20), || (received(&m) == 4).then_some(()))
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
