//! Sessions under whole-table work: the measure of issue 17, shared by the
//! million-route test (which asserts on it) and `testbed bench sessions`
//! (which repeats it and reports medians).
//!
//! merled holds 1,000,000 routes from four iBGP sources. A *monitor* peer
//! with a 3 s hold time watches: tcpdump on its side timestamps every
//! segment with a payload that merled sends it, and the longest gap must
//! stay under 1.1 s (keepalives are due every second). Against it:
//! 1. `merlectl routes` dumps and counts alone;
//! 2. a dump while three new peers are owed the full table, a fourth asks
//!    for it again (ROUTE-REFRESH) and a fifth's export policy is edited by
//!    live reload, so that every route it holds changes;
//! 3. a peer that is Established, owed the table, and never reads: merled
//!    must hold no more than its writer's high-water mark for it.
//!
//! ```text
//!   +---------------------+   veth   +--------------------------------------+
//!   | merle ns: merled    |----------| peer ns: raw BGP sessions (threads)   |
//!   | 10.1.0.1/24         |          | sources 10.1.0.10-13, monitor .30,    |
//!   |                     |          | feeds .40-.42, refresh .43, edited .44|
//!   +---------------------+          | stalled .50; tcpdump on eth0          |
//!                                    +--------------------------------------+
//! ```

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use bgpd::packet::{AfiSafi, Capability, EncodeCtx, Message, OpenMsg, RouteRefreshMsg};

use crate::capture::{self, Capture};
use crate::merled::Merled;
use crate::netns::{veth, Netns};
use crate::wait;

pub const MERLE_V4: &str = "10.1.0.1";
pub const SOURCES: u32 = 4;
pub const PER_SOURCE: u32 = 250_000;
pub const MONITOR: &str = "10.1.0.30";
pub const FEEDS: [&str; 3] = ["10.1.0.40", "10.1.0.41", "10.1.0.42"];
/// Established, owed the full table, and never reads.
pub const STALLED: &str = "10.1.0.50";
/// Fed the table, then asks for it again (ROUTE-REFRESH).
pub const REFRESH: &str = "10.1.0.43";
/// Fed the table, then its export policy is edited: every route changes.
pub const EDITED: &str = "10.1.0.44";
/// The longest gap allowed between merled's messages to the monitor.
pub const GAP_LIMIT: Duration = Duration::from_millis(1100);

pub fn source_addr(i: u32) -> String {
    format!("10.1.0.{}", 10 + i)
}

/// The j-th /24 of source i, inside 16.0.0.0/4.
fn prefix(i: u32, j: u32) -> [u8; 3] {
    let n = 0x10_0000 + i * PER_SOURCE + j;
    [(n >> 16) as u8, (n >> 8) as u8, n as u8]
}

/// What one reader saw of merled's side of a session.
#[derive(Debug, Default)]
pub struct Seen {
    pub end_of_rib: AtomicBool,
    pub updates: AtomicU64,
    /// Prefixes announced in the IPv4 NLRI field of those UPDATEs.
    pub announced: AtomicU64,
    /// A NOTIFICATION, or the connection closing.
    pub down: Mutex<Option<String>>,
}

/// An established session with merled, driven by two threads: one reads
/// and frames everything merled sends (headers only, so it never falls
/// behind), one sends a KEEPALIVE every `keepalive`.
#[derive(Debug)]
pub struct Session {
    pub seen: Arc<Seen>,
    stream: TcpStream,
    stop: Arc<AtomicBool>,
}

impl Session {
    /// Connects from `src` in `ns` and sends OPEN and KEEPALIVE at once:
    /// merled (passive) answers with its OPEN and KEEPALIVE, which the
    /// reader consumes.
    pub fn open(ns: &Netns, src: &str, asn: u32, hold: u16) -> anyhow::Result<Self> {
        Self::open_with(ns, src, asn, hold, true)
    }

    /// As `open`; with `reads` false nothing merled sends is ever read,
    /// and the socket's receive buffer is as small as the kernel allows,
    /// so that what merled queues for it stays in merled.
    pub fn open_with(ns: &Netns, src: &str, asn: u32, hold: u16, reads: bool) -> anyhow::Result<Self> {
        let src: IpAddr = src.parse()?;
        let IpAddr::V4(id) = src else { anyhow::bail!("{src}: IPv4 only") };
        let dst: SocketAddr = format!("{MERLE_V4}:179").parse()?;
        let stream = ns
            .spawn(move || {
                let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
                if !reads {
                    s.set_recv_buffer_size(1)?;
                }
                s.bind(&SocketAddr::new(src, 0).into())?;
                s.connect_timeout(&dst.into(), Duration::from_secs(5))?;
                let s: TcpStream = s.into();
                s.set_nodelay(true)?;
                anyhow::Ok(s)
            })?
            .join()
            .map_err(|_| anyhow::anyhow!("the connecting thread panicked"))???;
        let caps = vec![
            Capability::Multiprotocol(AfiSafi::IPV4_UNICAST),
            Capability::RouteRefresh,
            Capability::FourOctetAs(asn),
        ];
        let ctx = EncodeCtx { four_octet_as: true, ..EncodeCtx::default() };
        let mut hello = Message::Open(OpenMsg::new(asn, hold, id, caps)).encode(&ctx).to_vec();
        hello.extend_from_slice(&Message::Keepalive.encode(&ctx));
        (&stream).write_all(&hello)?;
        let seen = Arc::new(Seen::default());
        let stop = Arc::new(AtomicBool::new(false));
        if reads {
            let (mut rd, seen, stop) = (stream.try_clone()?, seen.clone(), stop.clone());
            std::thread::spawn(move || read_loop(&mut rd, &seen, &stop));
        }
        {
            let (mut wr, stop) = (stream.try_clone()?, stop.clone());
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
        Ok(Self { seen, stream, stop })
    }

    pub fn send(&self, bytes: &[u8]) -> anyhow::Result<()> {
        (&self.stream).write_all(bytes)?;
        Ok(())
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
                    seen.down
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert_with(|| "connection closed by merled".into());
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
                    let n = nlri_count(&pending[at + 19..at + len]);
                    seen.announced.fetch_add(n, Ordering::Relaxed);
                }
                3 => {
                    let m = &pending[at..at + len];
                    *seen.down.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!("NOTIFICATION {:?}", &m[19..]));
                }
                _ => {}
            }
            at += len;
        }
        pending.drain(..at);
    }
}

impl Seen {
    /// Why the session went down, if it did.
    pub fn down(&self) -> Option<String> {
        self.down.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// How many prefixes an UPDATE body announces in its IPv4 NLRI field.
fn nlri_count(body: &[u8]) -> u64 {
    let field = |at: usize| body.get(at..at + 2).map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]])));
    let withdrawn = field(0);
    let attrs = field(2 + withdrawn);
    let mut at = 2 + withdrawn + 2 + attrs;
    let mut n = 0;
    while let Some(&bits) = body.get(at) {
        at += 1 + usize::from(bits).div_ceil(8);
        n += 1;
    }
    n
}

/// Source i's table as raw UPDATEs, about 1,000 prefixes each.
pub fn table(i: u32) -> Vec<u8> {
    let nh: std::net::Ipv4Addr = source_addr(i).parse().unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
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
pub fn update(next_hop: [u8; 4], local_pref: u8, nlri: &[u8]) -> Vec<u8> {
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
pub fn config(edited: bool) -> String {
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

/// The prefixes merled holds from every peer.
pub fn received(m: &Merled) -> anyhow::Result<u64> {
    let st = m.status()?;
    let peers = st["peers"].as_array().context("status without peers")?;
    Ok(peers.iter().map(|p| p["prefixes_received"].as_u64().unwrap_or(0)).sum())
}

/// Runs `merlectl routes --json` and returns how many routes it printed.
pub fn dump(m: &Merled) -> anyhow::Result<(usize, Duration)> {
    let t = Instant::now();
    let out = Command::new(&m.merlectl).arg("--socket").arg(&m.socket).args(["routes", "--json"]).output()?;
    anyhow::ensure!(out.status.success(), "merlectl routes: {}", String::from_utf8_lossy(&out.stderr));
    let n = out.stdout.split(|b| *b == b'\n').filter(|l| l.starts_with(b"    \"prefix\": ")).count();
    Ok((n, t.elapsed()))
}

/// merled's resident set, KiB.
pub fn rss_kib(m: &Merled) -> u64 {
    m.daemon.pid().map_or(0, |pid| crate::bench::status_kib(pid, "VmRSS:"))
}

/// What merled has queued for `peer` and not written, bytes.
pub fn out_queue(m: &Merled, peer: &str) -> u64 {
    let Ok(st) = m.status() else { return 0 };
    st["peers"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["address"] == peer))
        .and_then(|p| p["out_queue_bytes"].as_u64())
        .unwrap_or(0)
}

/// The two namespaces of the scenario, joined by a veth.
#[derive(Debug)]
pub struct Pair {
    pub merle: Netns,
    pub peer: Netns,
}

/// Makes the namespaces (`tag`-m, `tag`-p) with every peer address.
pub fn pair(tag: &str) -> anyhow::Result<Pair> {
    let merle = Netns::new(&format!("{tag}-m"))?;
    let peer = Netns::new(&format!("{tag}-p"))?;
    veth(&merle, "eth0", &peer, "eth0")?;
    merle.add_addr("eth0", &format!("{MERLE_V4}/24"))?;
    let addrs = (0..SOURCES)
        .map(source_addr)
        .chain([MONITOR, STALLED, REFRESH, EDITED].map(str::to_string))
        .chain(FEEDS.map(str::to_string));
    for a in addrs {
        peer.add_addr("eth0", &format!("{a}/24"))?;
    }
    wait::poll("veth up", Duration::from_secs(10), || merle.exec(&["ping", "-c1", "-W1", "10.1.0.10"]).ok())?;
    Ok(Pair { merle, peer })
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct Figures {
    pub routes: u64,
    pub loaded_in: Duration,
    /// Keepalives only: the longest gap with nothing else going on.
    pub baseline_gap: Duration,
    /// A dump alone: its routes, its time, the longest gap meanwhile.
    pub dump_routes: usize,
    pub dump_took: Duration,
    pub dump_gap: Duration,
    /// `merlectl routes --count` and the count of one source's paths.
    pub counted_paths: u64,
    pub counted_source_paths: u64,
    /// Three feeds, a ROUTE-REFRESH, a policy re-export and a dump at once.
    pub loaded_dump_routes: usize,
    pub loaded_took: Duration,
    pub loaded_gap: Duration,
    /// The stalled peer: its largest output queue, merled's RSS before and
    /// after, and the monitor's longest gap meanwhile.
    pub stalled_queue_max: u64,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub stall_gap: Duration,
    /// Sessions that dropped (none should).
    pub dropped: Vec<String>,
    /// merled logged the route refresh and the re-export.
    pub refresh_logged: bool,
    pub reexport_logged: bool,
}

/// Runs the scenario once in namespaces tagged `tag`.
pub fn run(tag: &str, merled: &Path, merlectl: &Path) -> anyhow::Result<Figures> {
    let p = pair(tag)?;
    let m = Merled::start(&p.merle, "merle", merled, merlectl, &config(false))?;
    let total = u64::from(SOURCES * PER_SOURCE);
    let t = Instant::now();
    let mut sources = Vec::new();
    for i in 0..SOURCES {
        let s = Session::open(&p.peer, &source_addr(i), 64512, 90)?;
        s.send(&table(i))?;
        sources.push(s);
    }
    wait::until("the full table in merled", Duration::from_secs(240), Duration::from_millis(500), || {
        (received(&m).ok()? == total).then_some(())
    })
    .with_context(|| format!("{} of {total}\n{}", received(&m).unwrap_or(0), m.daemon.log_tail(20)))?;
    let loaded_in = t.elapsed();

    let monitor = Session::open(&p.peer, MONITOR, 65100, 3)?;
    let refresh = Session::open(&p.peer, REFRESH, 65105, 90)?;
    let edited = Session::open(&p.peer, EDITED, 65106, 90)?;
    wait::until("the monitor and two more fed", Duration::from_secs(240), Duration::from_millis(200), || {
        [&monitor, &refresh, &edited].iter().all(|s| s.seen.end_of_rib.load(Ordering::Relaxed)).then_some(())
    })
    .with_context(|| format!("{:?}\n{}", monitor.seen.down(), m.daemon.log_tail(20)))?;
    let (refresh_fed, edited_fed) =
        (refresh.seen.announced.load(Ordering::Relaxed), edited.seen.announced.load(Ordering::Relaxed));
    let filter = format!("tcp and src host {MERLE_V4} and dst host {MONITOR} and {}", capture::TCP_PAYLOAD_V4);
    let cap = Capture::start(&p.peer, "eth0", &filter)?;
    let quiet = SystemTime::now();
    std::thread::sleep(Duration::from_secs(3));
    let baseline_gap = cap.longest_gap(quiet, SystemTime::now());

    // 1. Dumps and counts alone.
    let from = SystemTime::now();
    let (dump_routes, dump_took) = dump(&m)?;
    let counts: serde_json::Value = serde_json::from_str(&m.merlectl(&["routes", "--count", "--json"])?)?;
    let per_source: serde_json::Value =
        serde_json::from_str(&m.merlectl(&["routes", "--count", "--json", "--peer", &source_addr(1)])?)?;
    std::thread::sleep(Duration::from_millis(1500));
    let dump_gap = cap.longest_gap(from, SystemTime::now());

    // 2. Everything at once.
    let from = SystemTime::now();
    let t = Instant::now();
    let mut feeds = Vec::new();
    for (k, a) in FEEDS.iter().enumerate() {
        feeds.push(Session::open(&p.peer, a, 65101 + k as u32, 90)?);
    }
    refresh
        .send(&Message::RouteRefresh(RouteRefreshMsg::request(AfiSafi::IPV4_UNICAST)).encode(&EncodeCtx::default()))?;
    m.write_config(&config(true))?;
    let (loaded_dump_routes, _) = dump(&m)?;
    // Each of the two is sent the whole table again.
    let again = |s: &Session, first: u64| s.seen.announced.load(Ordering::Relaxed) >= 2 * first;
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
    .with_context(|| {
        format!(
            "prefixes announced: refresh {} of {}, edited {} of {}\n{}",
            refresh.seen.announced.load(Ordering::Relaxed),
            2 * refresh_fed,
            edited.seen.announced.load(Ordering::Relaxed),
            2 * edited_fed,
            m.daemon.log_tail(30)
        )
    })?;
    let loaded_took = t.elapsed();
    let loaded_gap = cap.longest_gap(from, SystemTime::now());
    let log = m.daemon.log_tail(2000);
    let (refresh_logged, reexport_logged) =
        (log.contains("route refresh requested"), log.contains("re-export after the policy change sent"));

    // 3. A peer that is Established, is owed the full table and stops
    // reading.
    let from = SystemTime::now();
    let stalled = Session::open_with(&p.peer, STALLED, 65104, 90, false)?;
    wait::until("the stalled peer Established", Duration::from_secs(30), Duration::from_millis(100), || {
        (m.peer_state(STALLED).as_deref() == Some("Established")).then_some(())
    })
    .with_context(|| m.daemon.log_tail(20))?;
    // Measured from Established, once the peer's writer has filled: the
    // full export notes the table's prefixes when it starts (18 bytes each,
    // bounded by the RIB, not by the peer's slowness); what must not grow is
    // anything while the peer goes on not reading.
    wait::until("the stalled peer's writer full", Duration::from_secs(30), Duration::from_millis(50), || {
        (out_queue(&m, STALLED) >= 64 * 1024).then_some(())
    })?;
    let rss_before_kib = rss_kib(&m);
    let (mut stalled_queue_max, t) = (0, Instant::now());
    while t.elapsed() < Duration::from_secs(6) {
        stalled_queue_max = stalled_queue_max.max(out_queue(&m, STALLED));
        std::thread::sleep(Duration::from_millis(100));
    }
    let rss_after_kib = rss_kib(&m);
    let stall_gap = cap.longest_gap(from, SystemTime::now());

    let mut dropped = Vec::new();
    for (s, name) in [(&monitor, MONITOR), (&refresh, REFRESH), (&edited, EDITED)] {
        if let Some(why) = s.seen.down() {
            dropped.push(format!("{name}: {why}"));
        }
    }
    for a in std::iter::once(MONITOR).chain(FEEDS) {
        if m.peer_state(a).as_deref() != Some("Established") {
            dropped.push(format!("{a}: {:?}", m.peer_state(a)));
        }
    }
    cap.stop();
    drop((sources, feeds, monitor, stalled, refresh, edited));
    Ok(Figures {
        routes: total,
        loaded_in,
        baseline_gap,
        dump_routes,
        dump_took,
        dump_gap,
        counted_paths: counts["paths"].as_u64().unwrap_or(0),
        counted_source_paths: per_source["paths"].as_u64().unwrap_or(0),
        loaded_dump_routes,
        loaded_took,
        loaded_gap,
        stalled_queue_max,
        rss_before_kib,
        rss_after_kib,
        stall_gap,
        dropped,
        refresh_logged,
        reexport_logged,
    })
}

/// `testbed bench sessions`: the scenario `runs` times; each run's figures,
/// then the medians and the worst gaps.
pub fn bench(runs: u32, merled: &Path, merlectl: &Path) -> anyhow::Result<()> {
    let mut all = Vec::new();
    for r in 0..runs {
        let f = run(&format!("bs{r}"), merled, merlectl)?;
        println!(
            "run {}: gaps: keepalives only {:.3} s, dump {:.3} s, feeds+refresh+re-export+dump {:.3} s (all done in {:.1} s), \
             stalled peer {:.3} s; stalled queue at most {} bytes; RSS {:.1} -> {:.1} MiB; dropped: {}",
            r + 1,
            f.baseline_gap.as_secs_f64(),
            f.dump_gap.as_secs_f64(),
            f.loaded_gap.as_secs_f64(),
            f.loaded_took.as_secs_f64(),
            f.stall_gap.as_secs_f64(),
            f.stalled_queue_max,
            f.rss_before_kib as f64 / 1024.0,
            f.rss_after_kib as f64 / 1024.0,
            if f.dropped.is_empty() { "none".to_owned() } else { f.dropped.join(", ") }
        );
        all.push(f);
    }
    let med = |g: &dyn Fn(&Figures) -> f64| crate::bench::median(all.iter().map(g).collect());
    let worst = |g: &dyn Fn(&Figures) -> f64| all.iter().map(g).fold(0.0, f64::max);
    let loaded = |f: &Figures| f.loaded_gap.as_secs_f64();
    let stall = |f: &Figures| f.stall_gap.as_secs_f64();
    println!("\nsessions under whole-table work, {} routes, {runs} runs:", all.first().map_or(0, |f| f.routes));
    println!(
        "  longest gap to the 3 s-hold monitor, everything at once: median {:.3} s, worst {:.3} s (limit {:.1} s)",
        med(&loaded),
        worst(&loaded),
        GAP_LIMIT.as_secs_f64()
    );
    println!("  longest gap while a peer stalls: median {:.3} s, worst {:.3} s", med(&stall), worst(&stall));
    println!("  stalled peer's queue at most: median {:.0} bytes", med(&|f| f.stalled_queue_max as f64));
    println!("  all the work done in: median {:.1} s", med(&|f| f.loaded_took.as_secs_f64()));
    println!("  sessions dropped: {}", all.iter().map(|f| f.dropped.len()).sum::<usize>());
    Ok(())
}
