//! The datapath benchmark: merle's eBPF mode against its kernel mode (the
//! same routes, forwarded by the host's stack), on one two-node cluster,
//! with the modes switched live, each figure taken in both modes back to
//! back (ABBA order), and the node-to-node path (no pods) as the baseline.
//!
//! ```text
//!   n1 10.0.0.1: pods a1, a2        n2 10.0.0.2: pod b1       (Encap::Native)
//!   cross-node a1 -> b1, same node a1 -> a2, baseline n1 -> n2 over eth0
//! ```
//! Per round, in each mode: a TCP stream (iperf3) with the machine's busy CPU
//! time per Gbit/s, TCP request/response latency (sockperf ping-pong,
//! pinned to CPU 0 and not), and short TCP connections per second (one
//! byte each way, one at a time, both ends pinned to CPU 0). The baseline
//! is taken in kernel mode, so no program sits on eth0. Each round also
//! times the programs themselves with BPF_PROG_TEST_RUN in a namespace of
//! their own, as in `ebpf/tests/programs.rs`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::bench_minimal::{self, Minimal};
use anyhow::{bail, Context};
use ipnet::IpNet;
use merle_ebpf::datapath::{load, AttachMode, Linker};
use merle_ebpf::endpoints::Endpoints;
use merle_ebpf::nets::Nets;
use merle_ebpf::objects;
use merle_ebpf::stats::{program_runs, ProgramRuns, RunStats};
use merle_ebpf::sys::ifindex;
use merle_ebpf::types::{EndpointInfo, NET_F_NAT_OUTGOING, NET_F_NODE, NET_F_POOL};
use merle_ebpf::PinDir;
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::{TimeVal, TimeValLike};

use crate::bench::median;
use crate::bpf::packet::{self, V4};
use crate::bpf::{mac_of, BpfFs};
use crate::datapath::{Cluster, Encap, Mode, Pod, T as SWITCH_WAIT};
use crate::netns::Netns;
use crate::wait;

pub(crate) const IPERF_PORT: u16 = 5201;
const SOCKPERF_PORT: u16 = 11111;
const CONN_PORT: u16 = 12000;
/// USER_HZ: the unit of /proc/stat.
const USER_HZ: f64 = 100.0;
const LISTEN: Duration = Duration::from_secs(10);
const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// The benchmark's parameters, as `testbed bench datapath` takes them.
#[derive(Debug, Clone, clap::Args)]
pub struct Params {
    #[arg(long, default_value_t = 5)]
    pub runs: u32,
    /// Seconds of each iperf3 stream.
    #[arg(long, default_value_t = 10)]
    pub seconds: u32,
    /// Seconds of each sockperf ping-pong.
    #[arg(long, default_value_t = 5)]
    pub latency_seconds: u32,
    /// Seconds of each connections-per-second run.
    #[arg(long, default_value_t = 5)]
    pub conn_seconds: u32,
    /// BPF_PROG_TEST_RUN calls per packet and round (median taken).
    #[arg(long, default_value_t = 5000)]
    pub prog_calls: u32,
    /// Repeats per BPF_PROG_TEST_RUN call (at most 250: the packet's
    /// TTL, 255, drops by one per repeat).
    #[arg(long, default_value_t = 200)]
    pub prog_repeat: u32,
    /// Only the program costs (BPF_PROG_TEST_RUN and in place), in eBPF
    /// mode: no streams, latency or connection figures.
    #[arg(long)]
    pub programs_only: bool,
    /// Only these tests (comma-separated: cross, same, pinned, unpinned,
    /// conns); all by default.
    #[arg(long, value_delimiter = ',')]
    pub tests: Vec<String>,
    /// Also record a system-wide perf profile (cpu-clock, call graphs) of
    /// a pinned ping-pong in each setup, per round, into this directory.
    #[arg(long)]
    pub profile: Option<PathBuf>,
    /// Also write the report to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fig {
    StreamCross,
    StreamSame,
    CpuCross,
    CpuSame,
    LatPinned,
    LatUnpinned,
    Conns,
}

impl Fig {
    const ALL: [Fig; 7] =
        [Fig::StreamCross, Fig::StreamSame, Fig::CpuCross, Fig::CpuSame, Fig::LatPinned, Fig::LatUnpinned, Fig::Conns];

    /// The row label and the decimals shown.
    fn label(self) -> (&'static str, usize) {
        match self {
            Fig::StreamCross => ("TCP stream, cross-node (Gbit/s)", 2),
            Fig::StreamSame => ("TCP stream, same node (Gbit/s)", 2),
            Fig::CpuCross => ("CPU per Gbit/s, cross-node (CPU-s/Gbit)", 3),
            Fig::CpuSame => ("CPU per Gbit/s, same node (CPU-s/Gbit)", 3),
            Fig::LatPinned => ("TCP RR latency, pinned to CPU 0 (µs, half RTT)", 2),
            Fig::LatUnpinned => ("TCP RR latency, unpinned (µs, half RTT)", 2),
            Fig::Conns => ("TCP connections/s, pinned to CPU 0", 0),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Col {
    Baseline,
    Kernel,
    /// eBPF mode with the links pointed at bpf/test/minimal.bpf.c.
    Minimal,
    Ebpf,
}

/// What forwards the pods' packets during a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    Ebpf,
    Kernel,
    Minimal,
}

impl Setup {
    fn name(self) -> &'static str {
        match self {
            Setup::Ebpf => "ebpf",
            Setup::Kernel => "kernel",
            Setup::Minimal => "minimal",
        }
    }

    fn col(self) -> Col {
        match self {
            Setup::Ebpf => Col::Ebpf,
            Setup::Kernel => Col::Kernel,
            Setup::Minimal => Col::Minimal,
        }
    }
}

/// One value per round for each (figure, column) measured.
#[derive(Debug, Default)]
struct Samples(BTreeMap<(Fig, Col), Vec<f64>>);

impl Samples {
    fn push(&mut self, f: Fig, c: Col, v: f64) {
        self.0.entry((f, c)).or_default().push(v);
    }
    fn get(&self, f: Fig, c: Col) -> &[f64] {
        self.0.get(&(f, c)).map(Vec::as_slice).unwrap_or(&[])
    }
    /// `a / b` round by round.
    fn ratios(&self, f: Fig, a: Col, b: Col) -> Vec<f64> {
        self.get(f, a).iter().zip(self.get(f, b)).map(|(x, y)| x / y).collect()
    }
}

/// "median (min–max)", or a dash when nothing was measured.
fn cell(v: &[f64], prec: usize) -> String {
    if v.is_empty() {
        return "—".into();
    }
    let (lo, hi) = v.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| (l.min(*x), h.max(*x)));
    format!("{:.prec$} ({lo:.prec$}–{hi:.prec$})", median(v.to_vec()))
}

/// Joins a thread started by [`Netns::spawn`].
pub(crate) fn join<T>(h: JoinHandle<anyhow::Result<anyhow::Result<T>>>, what: &str) -> anyhow::Result<T> {
    let r = h.join().map_err(|_| anyhow::anyhow!("{what}: the thread panicked"))?;
    r.with_context(|| format!("{what}: entering the namespace"))?.with_context(|| what.to_owned())
}

/// Pins the calling thread to CPU 0.
pub(crate) fn pin_to_cpu0() -> anyhow::Result<()> {
    let mut set = nix::sched::CpuSet::new();
    set.set(0).context("CPU set")?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).context("sched_setaffinity to CPU 0")
}

pub(crate) fn need(tool: &str) -> anyhow::Result<()> {
    let found = std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
    anyhow::ensure!(found, "{tool} is not installed (testbed/install-deps.sh installs it)");
    Ok(())
}

fn clip(s: &str) -> String {
    s.chars().take(4000).collect()
}

/// A server process, killed on drop.
struct Server(Child);

impl Server {
    /// Starts `cmd` and waits until something listens on TCP `port` in `ns`.
    fn start(mut cmd: Command, what: &str, ns: &Netns, port: u16) -> anyhow::Result<Self> {
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut s = Self(cmd.spawn().with_context(|| format!("cannot start {what}"))?);
        let suffix = format!(":{port}");
        let up = wait::poll(&format!("{what} to listen on port {port}"), LISTEN, || {
            if let Ok(Some(status)) = s.0.try_wait() {
                return Some(Err(status));
            }
            let ss = ns.exec(&["ss", "-Hltn"]).ok()?;
            // `LISTEN 0 4096 0.0.0.0:5201 0.0.0.0:*`
            let local = |l: &str| l.split_whitespace().nth(3).is_some_and(|a| a.ends_with(suffix.as_str()));
            ss.lines().any(local).then_some(Ok(()))
        })?;
        if let Err(status) = up {
            let mut err = String::new();
            if let Some(mut e) = s.0.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            bail!("{what} exited ({status}): {}", err.trim());
        }
        Ok(s)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Output {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn drain<R: Read + Send + 'static>(p: Option<R>) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut b = Vec::new();
        if let Some(mut p) = p {
            let _ = p.read_to_end(&mut b);
        }
        String::from_utf8_lossy(&b).into_owned()
    })
}

/// Runs `cmd` to its end, killing it after `timeout`.
fn run_bounded(mut cmd: Command, timeout: Duration, what: &str) -> anyhow::Result<Output> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("cannot start {what}"))?;
    let (out, err) = (drain(child.stdout.take()), drain(child.stderr.take()));
    let status = match wait::until(what, timeout, Duration::from_millis(20), || child.try_wait().ok().flatten()) {
        Ok(s) => s,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    };
    let stdout = out.join().map_err(|_| anyhow::anyhow!("{what}: stdout reader panicked"))?;
    let stderr = err.join().map_err(|_| anyhow::anyhow!("{what}: stderr reader panicked"))?;
    Ok(Output { ok: status.success(), stdout, stderr })
}

/// Busy jiffies of all CPUs since boot: the first 8 fields of /proc/stat's
/// `cpu` line (guest time is already in user) less idle and iowait.
fn cpu_busy() -> anyhow::Result<u64> {
    let s = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let line = s.lines().next().filter(|l| l.starts_with("cpu ")).context("/proc/stat: no cpu line first")?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("/proc/stat: {line}"))?;
    anyhow::ensure!(f.len() >= 5, "/proc/stat: too few fields: {line}");
    Ok(f.iter().sum::<u64>() - f[3] - f[4])
}

fn parse_iperf(text: &str) -> anyhow::Result<f64> {
    let v: serde_json::Value =
        serde_json::from_str(text).with_context(|| format!("iperf3 -J printed no JSON:\n{}", clip(text)))?;
    if let Some(e) = v["error"].as_str() {
        bail!("iperf3: {e}");
    }
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .with_context(|| format!("no end.sum_received.bits_per_second in the iperf3 output:\n{}", clip(text)))
}

/// The average latency sockperf reports (half the round trip, µs):
/// `avg-latency=12.345` (3.x), `avg-lat= 12.345` (older), or the
/// `Latency is 12.345 usec` summary.
fn parse_sockperf(text: &str) -> anyhow::Result<f64> {
    for key in ["avg-latency=", "avg-lat=", "Latency is "] {
        let Some(i) = text.find(key) else { continue };
        let rest = text[i + key.len()..].trim_start();
        let num: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
        if let Ok(v) = num.parse::<f64>() {
            return Ok(v);
        }
    }
    bail!("no average latency in the sockperf output:\n{}", clip(text))
}

pub(crate) struct Stream {
    pub(crate) gbps: f64,
    pub(crate) cpu_per_gbps: f64,
}

/// One iperf3 stream from `client` to `addr`, served in `server`.
fn stream(server: &Netns, client: &Netns, addr: &str, secs: u32) -> anyhow::Result<Stream> {
    stream_to(server, client, addr, IPERF_PORT, secs)
}

/// One iperf3 stream from `client` to `addr`:`port` (a NodePort, say),
/// served in `server` on iperf3's own port.
pub(crate) fn stream_to(server: &Netns, client: &Netns, addr: &str, port: u16, secs: u32) -> anyhow::Result<Stream> {
    let mut s = server.command("iperf3");
    s.args(["-s", "-1"]);
    let _server = Server::start(s, "iperf3 -s", server, IPERF_PORT)?;
    let mut c = client.command("iperf3");
    c.args(["-c", addr, "-p", &port.to_string(), "-t", &secs.to_string(), "-J"]);
    let before = cpu_busy()?;
    let t = Instant::now();
    let out = run_bounded(c, Duration::from_secs(u64::from(secs) + 30), &format!("iperf3 -c {addr}"))?;
    let wall = t.elapsed().as_secs_f64();
    let busy = cpu_busy()?.saturating_sub(before);
    let bps = parse_iperf(&out.stdout).with_context(|| format!("iperf3 -c {addr}: {}", out.stderr.trim()))?;
    anyhow::ensure!(out.ok && bps > 0.0, "iperf3 -c {addr} failed: {}\n{}", out.stderr.trim(), clip(&out.stdout));
    let gbps = bps / 1e9;
    Ok(Stream { gbps, cpu_per_gbps: busy as f64 / USER_HZ / wall / gbps })
}

/// sockperf TCP ping-pong from `client` to `addr`, served in `server`.
fn latency(server: &Netns, client: &Netns, addr: &str, secs: u32, pinned: bool) -> anyhow::Result<f64> {
    let sockperf = |ns: &Netns, args: &[&str]| {
        let mut c = if pinned { ns.command("taskset") } else { ns.command("sockperf") };
        if pinned {
            c.args(["-c", "0", "sockperf"]);
        }
        c.args(args);
        c
    };
    let port = SOCKPERF_PORT.to_string();
    let srv = sockperf(server, &["server", "--tcp", "-i", addr, "-p", &port]);
    let _server = Server::start(srv, "sockperf server", server, SOCKPERF_PORT)?;
    let cli = sockperf(client, &["ping-pong", "--tcp", "-i", addr, "-p", &port, "-t", &secs.to_string()]);
    let out = run_bounded(cli, Duration::from_secs(u64::from(secs) + 30), &format!("sockperf ping-pong {addr}"))?;
    let text = format!("{}\n{}", out.stdout, out.stderr);
    anyhow::ensure!(out.ok, "sockperf ping-pong to {addr} failed:\n{}", clip(&text));
    parse_sockperf(&text)
}

fn one_conn(sa: &SocketAddr) -> std::io::Result<()> {
    let mut s = TcpStream::connect_timeout(sa, IO_TIMEOUT)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.write_all(&[1])?;
    let mut b = [0u8; 1];
    s.read_exact(&mut b)
}

/// A server that answers each connection's byte with that byte, then
/// closes it: the far end of the connection benchmarks. `start` is one
/// thread pinned to CPU 0 (connections one at a time); `start_threads`
/// is `n` unpinned threads accepting on one listener (connections under
/// load).
pub(crate) struct ByteServer {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<anyhow::Result<anyhow::Result<()>>>,
}

/// Answers connections on `l` until `halt`.
fn byte_loop(l: &TcpListener, halt: &AtomicBool) -> anyhow::Result<()> {
    while !halt.load(Ordering::Relaxed) {
        match l.accept() {
            // A connection that fails shows as a client error.
            Ok((mut s, _)) => {
                let mut b = [0u8; 1];
                let _ = s
                    .set_nodelay(true)
                    .and_then(|()| s.set_read_timeout(Some(IO_TIMEOUT)))
                    .and_then(|()| s.read_exact(&mut b))
                    .and_then(|()| s.write_all(&b));
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
            Err(e) => return Err(e).context("accept"),
        }
    }
    Ok(())
}

impl ByteServer {
    pub(crate) fn start(ns: &Netns, bind: SocketAddr) -> anyhow::Result<Self> {
        Self::spawn(ns, bind, 1, true)
    }

    pub(crate) fn start_threads(ns: &Netns, bind: SocketAddr, threads: usize) -> anyhow::Result<Self> {
        Self::spawn(ns, bind, threads.max(1), false)
    }

    fn spawn(ns: &Netns, bind: SocketAddr, threads: usize, pin: bool) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let halt = stop.clone();
        let (ready_tx, ready_rx) = mpsc::channel();
        let handle = ns.spawn(move || -> anyhow::Result<()> {
            if pin {
                pin_to_cpu0()?;
            }
            let l = TcpListener::bind(bind).with_context(|| format!("binding {bind}"))?;
            // accept(2) honours SO_RCVTIMEO: the loop sees the stop flag.
            setsockopt(&l, sockopt::ReceiveTimeout, &TimeVal::milliseconds(200)).context("SO_RCVTIMEO")?;
            // The others share the listener (threads made here are in
            // this namespace too).
            let mut more = Vec::new();
            for _ in 1..threads {
                let (l, halt) = (l.try_clone().context("cloning the listener")?, halt.clone());
                more.push(std::thread::spawn(move || byte_loop(&l, &halt)));
            }
            let _ = ready_tx.send(());
            let mut r = byte_loop(&l, &halt);
            for h in more {
                let one = h.join().map_err(|_| anyhow::anyhow!("a server thread panicked")).and_then(|r| r);
                r = r.and(one);
            }
            r
        })?;
        let srv = Self { stop, handle };
        if ready_rx.recv_timeout(LISTEN).is_err() {
            srv.stop()?;
            bail!("the connection server on {bind} did not start");
        }
        Ok(srv)
    }

    pub(crate) fn stop(self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        join(self.handle, "the connection server")
    }
}

/// Short connections per second from `client` to `addr`, one at a time,
/// both ends pinned to CPU 0.
fn conn_rate(server: &Netns, client: &Netns, addr: &str, secs: u32) -> anyhow::Result<f64> {
    let sa: SocketAddr = format!("{addr}:{CONN_PORT}").parse().with_context(|| format!("bad address {addr}"))?;
    let srv = ByteServer::start(server, sa)?;
    let dur = Duration::from_secs(u64::from(secs));
    let cli = client.spawn(move || -> anyhow::Result<(u64, Duration)> {
        pin_to_cpu0()?;
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < dur {
            one_conn(&sa).with_context(|| format!("connection {} to {sa}", n + 1))?;
            n += 1;
        }
        Ok((n, start.elapsed()))
    });
    let done = cli.and_then(|h| join(h, "the connection client"));
    srv.stop()?;
    let (n, elapsed) = done?;
    Ok(n as f64 / elapsed.as_secs_f64())
}

struct Pods {
    a1: Pod,
    a2: Pod,
    b1: Pod,
}

/// Both nodes in `mode`, the programs linked (or gone), the paths up.
fn switch(c: &Cluster, mode: Mode, p: &Pods) -> anyhow::Result<()> {
    for i in 0..2 {
        c.set_mode(i, mode)?;
    }
    let links = |n: usize, hook: &str| -> Option<usize> {
        let d = c.dataplane(n).ok()?;
        Some(d["interfaces"].as_array()?.iter().filter(|i| hook.is_empty() || i["hook"] == hook).count())
    };
    match mode {
        Mode::Ebpf => {
            for i in 0..2 {
                c.wait_node_links(i)?;
            }
            wait::poll("the pods' programs linked", SWITCH_WAIT, || {
                (links(0, "pod-ingress")? >= 2 && links(1, "pod-ingress")? >= 1).then_some(())
            })?;
        }
        Mode::Kernel => {
            let none = || -> Option<()> { (links(0, "")? == 0 && links(1, "")? == 0).then_some(()) };
            wait::poll("every program detached", SWITCH_WAIT, none)?;
        }
    }
    c.wait_ping(&p.a1, &p.b1.v4)?;
    c.wait_ping(&p.a1, &p.a2.v4)
}

/// Every (node, hook, reason) counter's packets.
fn all_counters(c: &Cluster) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for i in 0..c.nodes.len() {
        let Ok(d) = c.dataplane(i) else { continue };
        for e in d["counters"].as_array().into_iter().flatten() {
            let key =
                format!("n{} {} {}", i + 1, e["hook"].as_str().unwrap_or("?"), e["reason"].as_str().unwrap_or("?"));
            out.insert(key, e["packets"].as_u64().unwrap_or(0));
        }
    }
    out
}

/// The counters that rose from `a` to `b`, as `name +n`.
fn counted(a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>) -> String {
    let rose: Vec<String> = b
        .iter()
        .filter_map(|(k, v)| {
            let d = v.saturating_sub(a.get(k).copied().unwrap_or(0));
            (d > 0).then(|| format!("{k} +{d}"))
        })
        .collect();
    rose.join(", ")
}

/// The eBPF fast-path counters: same-node, FIB, arriving into a pod.
fn fast_path(c: &Cluster) -> [u64; 3] {
    [
        c.counter(0, "pod-ingress", "redirect-peer"),
        c.counter(0, "pod-ingress", "redirect-fib") + c.counter(0, "pod-ingress", "redirect-neigh"),
        c.counter(1, "node-ingress", "redirect-peer"),
    ]
}

/// One measurement of a round; each runs in both modes back to back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Test {
    Cross,
    Same,
    Pinned,
    Unpinned,
    Conns,
}

impl Test {
    const ALL: [Test; 5] = [Test::Cross, Test::Same, Test::Pinned, Test::Unpinned, Test::Conns];

    fn name(self) -> &'static str {
        match self {
            Test::Cross => "cross",
            Test::Same => "same",
            Test::Pinned => "pinned",
            Test::Unpinned => "unpinned",
            Test::Conns => "conns",
        }
    }

    /// The fast-path counters (see [`fast_path`]) its traffic must raise.
    fn counters(self) -> &'static [usize] {
        match self {
            Test::Same => &[0],
            _ => &[1, 2],
        }
    }
}

fn measure_pods(t: Test, p: &Pods, prm: &Params, col: Col, s: &mut Samples) -> anyhow::Result<String> {
    let (a1, a2, b1) = (&p.a1, &p.a2, &p.b1);
    Ok(match t {
        Test::Cross | Test::Same => {
            let (to, fig, cpu, what) = if t == Test::Cross {
                (b1, Fig::StreamCross, Fig::CpuCross, "cross-node")
            } else {
                (a2, Fig::StreamSame, Fig::CpuSame, "same node")
            };
            let st = stream(&to.ns, &a1.ns, &to.v4, prm.seconds).with_context(|| format!("{what} stream"))?;
            s.push(fig, col, st.gbps);
            s.push(cpu, col, st.cpu_per_gbps);
            format!("stream {what} {:6.2} Gbit/s ({:.3} CPU-s/Gbit)", st.gbps, st.cpu_per_gbps)
        }
        Test::Pinned | Test::Unpinned => {
            let pinned = t == Test::Pinned;
            let v = latency(&b1.ns, &a1.ns, &b1.v4, prm.latency_seconds, pinned).context("latency")?;
            s.push(if pinned { Fig::LatPinned } else { Fig::LatUnpinned }, col, v);
            format!("latency {} {v:6.2} µs", if pinned { "pinned" } else { "unpinned" })
        }
        Test::Conns => {
            let v = conn_rate(&b1.ns, &a1.ns, &b1.v4, prm.conn_seconds).context("connections per second")?;
            s.push(Fig::Conns, col, v);
            format!("{v:7.0} conn/s")
        }
    })
}

/// The node-to-node figure of `t`, if it has one (taken in kernel mode,
/// so no program sits on eth0).
fn measure_baseline(t: Test, c: &Cluster, prm: &Params, s: &mut Samples) -> anyhow::Result<Option<String>> {
    let (n1, n2, addr) = (c.ns(0), c.ns(1), "10.0.0.2");
    Ok(match t {
        Test::Cross => {
            let st = stream(n2, n1, addr, prm.seconds).context("baseline stream")?;
            s.push(Fig::StreamCross, Col::Baseline, st.gbps);
            s.push(Fig::CpuCross, Col::Baseline, st.cpu_per_gbps);
            Some(format!("stream {:6.2} Gbit/s ({:.3} CPU-s/Gbit)", st.gbps, st.cpu_per_gbps))
        }
        Test::Pinned => {
            let lat = latency(n2, n1, addr, prm.latency_seconds, true).context("baseline latency")?;
            s.push(Fig::LatPinned, Col::Baseline, lat);
            Some(format!("latency pinned {lat:6.2} µs"))
        }
        Test::Conns => {
            let conns = conn_rate(n2, n1, addr, prm.conn_seconds).context("baseline connections per second")?;
            s.push(Fig::Conns, Col::Baseline, conns);
            Some(format!("{conns:7.0} conn/s"))
        }
        Test::Same | Test::Unpinned => None,
    })
}

const TC_ACT_REDIRECT: u32 = 7;
const POD0_MAC: [u8; 6] = [0x0a, 0x58, 10, 1, 0, 5];
const POD1_MAC: [u8; 6] = [0x0a, 0x58, 10, 1, 0, 6];
const NODE_MAC: [u8; 6] = [0xee; 6];
const GW_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const PROG_CASES: [(&str, &str, &str); 3] = [
    ("pod_ingress", "pod to pod, same node (redirect_peer)", "80–90 (minimal program)"),
    ("pod_ingress", "pod to remote (FIB lookup, redirect)", "≈190 (minimal program)"),
    ("node_ingress", "wire to a local pod (redirect_peer)", "80–90 (minimal program)"),
];

/// The namespace of [`crate::bpf::prog_net`], the programs loaded in a
/// private bpffs and the maps filled, as in `ebpf/tests/programs.rs`.
struct ProgBed {
    ns: Netns,
    _fs: BpfFs,
    pins: PinDir,
    up_mac: [u8; 6],
}

fn fill_maps(pins: &PinDir) -> anyhow::Result<()> {
    load(pins, &objects::PROGRAMS, &objects::digest())?;
    let (p0, p1) = (ifindex("pod0"), ifindex("pod1"));
    anyhow::ensure!(p0 != 0 && p1 != 0, "pod0 or pod1 missing in the namespace");
    let ep = |index, pod_mac| EndpointInfo { ifindex: index, pod_mac, node_mac: NODE_MAC, flags: 0, pad: 0 };
    let mut eps = Endpoints::open(pins)?;
    eps.put(IpAddr::V4(Ipv4Addr::new(10, 1, 0, 5)), ep(p0, POD0_MAC))?;
    eps.put(IpAddr::V4(Ipv4Addr::new(10, 1, 0, 6)), ep(p1, POD1_MAC))?;
    let want: BTreeMap<IpNet, u32> = [
        ("10.1.0.0/16".parse::<IpNet>()?, NET_F_POOL | NET_F_NAT_OUTGOING),
        ("10.99.0.0/24".parse::<IpNet>()?, NET_F_NODE),
    ]
    .into();
    Nets::open(pins)?.sync(&want)?;
    Ok(())
}

impl ProgBed {
    fn new() -> anyhow::Result<Self> {
        let fs = BpfFs::new("bench-dp")?;
        let ns = Netns::new("bench-prog")?;
        crate::bpf::prog_net(&ns)?;
        let up_mac = mac_of(&ns, "up0")?;
        let pins = PinDir::new(fs.pin_dir());
        let p = pins.clone();
        join(ns.spawn(move || fill_maps(&p))?, "loading the programs")?;
        Ok(Self { ns, _fs: fs, pins, up_mac })
    }

    /// The ns per run of each of [`PROG_CASES`]: the median over `calls`
    /// test runs of `repeat` repeats each. The program rewrites the packet
    /// in place between repeats; only the TTL matters (`pkt_type` is set
    /// once), so it starts at 255 and each call checks it fell by `repeat`:
    /// every repeat took the redirect.
    fn measure(&self, calls: u32, repeat: u32, minimal: &Minimal) -> anyhow::Result<[f64; 4]> {
        let (pins, up_mac) = (self.pins.clone(), self.up_mac);
        let min_pod = minimal.fd(bench_minimal::POD)?.try_clone_to_owned().context("dup of minimal_pod")?;
        let h = self.ns.spawn(move || -> anyhow::Result<[f64; 4]> {
            let pod = Linker::open(&pins, AttachMode::Tcx, &objects::POD_INGRESS)?;
            let node = Linker::open(&pins, AttachMode::Tcx, &objects::NODE_INGRESS)?;
            let (p0, p1, up) = (ifindex("pod0"), ifindex("pod1"), ifindex("up0"));
            let ip = |d| Ipv4Addr::new(10, 1, 0, d);
            let pkt = |dmac, smac, src, dst| packet::ipv4(dmac, smac, V4 { ttl: 255, ..V4::udp(src, dst) });
            let remote = Ipv4Addr::new(10, 99, 0, 7);
            let cases = [
                (&pod, pkt(NODE_MAC, POD0_MAC, ip(5), ip(6)), p0, p1),
                (&pod, pkt(NODE_MAC, POD0_MAC, ip(5), remote), p0, up),
                (&node, pkt(up_mac, GW_MAC, remote, ip(6)), up, p1),
            ];
            let end_ttl = u8::try_from(255u32.saturating_sub(repeat))?;
            let mut out = [0.0; 4];
            for (i, (prog, frame, on, to)) in cases.iter().enumerate() {
                let mut durs = Vec::with_capacity(calls as usize);
                for _ in 0..calls {
                    let r = prog.test_run(frame, *on, repeat)?;
                    let ttl = r.data.get(22).copied();
                    if r.retval != TC_ACT_REDIRECT || r.cb0 != *to || ttl != Some(end_ttl) {
                        bail!(
                            "{} {}: verdict {} to ifindex {}, TTL {ttl:?} after {repeat} runs; \
                             expected redirect ({TC_ACT_REDIRECT}) to {to}, TTL {end_ttl}",
                            PROG_CASES[i].0,
                            PROG_CASES[i].1,
                            r.retval,
                            r.cb0
                        );
                    }
                    durs.push(f64::from(r.duration_ns));
                }
                out[i] = median(durs);
            }
            // The minimal program on the FIB case (it leaves no target in
            // cb[0]; the verdict and the TTL say it redirected).
            let frame = pkt(NODE_MAC, POD0_MAC, ip(5), remote);
            let mut durs = Vec::with_capacity(calls as usize);
            for _ in 0..calls {
                let r = merle_ebpf::sys::prog_test_run(min_pod.as_fd(), &frame, p0, repeat)?;
                let ttl = r.data.get(22).copied();
                anyhow::ensure!(
                    r.retval == TC_ACT_REDIRECT && ttl == Some(end_ttl),
                    "minimal_pod: verdict {}, TTL {ttl:?} after {repeat} runs; expected a redirect, TTL {end_ttl}",
                    r.retval
                );
                durs.push(f64::from(r.duration_ns));
            }
            out[3] = median(durs);
            Ok(out)
        })?;
        join(h, "BPF_PROG_TEST_RUN")
    }
}

/// Prints `s` and keeps it for `--out`.
fn say(log: &mut String, s: &str) {
    println!("{s}");
    log.push_str(s);
    log.push('\n');
}

fn summary(prm: &Params, s: &Samples, progs: &[[f64; 4]], situ: &[Vec<f64>]) -> String {
    let mut o = String::new();
    if prm.programs_only {
        return programs_summary(prm, progs, situ);
    }
    let _ = writeln!(o, "\n## Datapath, {} rounds: median (min–max)\n", prm.runs);
    let _ = writeln!(
        o,
        "Streams: iperf3 -t {}, one TCP flow; CPU: every CPU's busy time (/proc/stat, all of the machine) over the \
         client run, per Gbit/s; latency: sockperf TCP ping-pong -t {}; connections: 1 byte each way, one at a time, \
         {} s. Baseline: node to node over eth0 (10.0.0.1 -> 10.0.0.2) in kernel mode. Ratios are taken per round \
         (the modes run back to back), then median (min–max).\n",
        prm.seconds, prm.latency_seconds, prm.conn_seconds
    );
    let _ = writeln!(
        o,
        "| figure | node baseline | kernel | minimal | eBPF | eBPF/kernel | minimal/kernel | eBPF/minimal | eBPF/baseline |"
    );
    let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for f in Fig::ALL {
        let (label, p) = f.label();
        let _ = writeln!(
            o,
            "| {label} | {} | {} | {} | {} | {} | {} | {} | {} |",
            cell(s.get(f, Col::Baseline), p),
            cell(s.get(f, Col::Kernel), p),
            cell(s.get(f, Col::Minimal), p),
            cell(s.get(f, Col::Ebpf), p),
            cell(&s.ratios(f, Col::Ebpf, Col::Kernel), 2),
            cell(&s.ratios(f, Col::Minimal, Col::Kernel), 2),
            cell(&s.ratios(f, Col::Ebpf, Col::Minimal), 2),
            cell(&s.ratios(f, Col::Ebpf, Col::Baseline), 2)
        );
    }
    let _ = writeln!(o, "\n### Goals (median of the per-round ratios)\n");
    for (what, f, vs, at_least, goal) in [
        ("cross-node stream, eBPF/kernel", Fig::StreamCross, Col::Kernel, true, 1.07),
        ("cross-node stream, eBPF/baseline", Fig::StreamCross, Col::Baseline, true, 0.86),
        ("same-node stream, eBPF/kernel", Fig::StreamSame, Col::Kernel, true, 1.15),
        ("pinned latency, eBPF/kernel", Fig::LatPinned, Col::Kernel, false, 0.90),
        ("connections/s, eBPF/kernel", Fig::Conns, Col::Kernel, true, 1.10),
    ] {
        let r = median(s.ratios(f, Col::Ebpf, vs));
        let met = if at_least { r >= goal } else { r <= goal };
        let reference = if vs == Col::Kernel {
            format!("; the minimal program: {:.3}", median(s.ratios(f, Col::Minimal, vs)))
        } else {
            String::new()
        };
        let _ = writeln!(
            o,
            "- {what}: {r:.3} (goal {} {goal:.2}): {}{reference}",
            if at_least { ">=" } else { "<=" },
            if met { "MET" } else { "MISSED" }
        );
    }
    o + &programs_summary(prm, progs, situ)
}

/// The program-cost tables: test runs and in place.
fn programs_summary(prm: &Params, progs: &[[f64; 4]], situ: &[Vec<f64>]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "\n### Per-packet program cost (BPF_PROG_TEST_RUN, {} calls of {} repeats per round; ns)\n",
        prm.prog_calls, prm.prog_repeat
    );
    let _ = writeln!(o, "| program | packet | ns per packet | reference ns |");
    let _ = writeln!(o, "|---|---|---:|---:|");
    for (i, (prog, what, reference)) in PROG_CASES.iter().enumerate() {
        let v: Vec<f64> = progs.iter().map(|r| r[i]).collect();
        let _ = writeln!(o, "| {prog} | {what} | {} | {reference} |", cell(&v, 1));
    }
    let v: Vec<f64> = progs.iter().map(|r| r[3]).collect();
    let _ = writeln!(o, "| minimal_pod | pod to remote (FIB lookup, redirect) | {} | ≈190 |", cell(&v, 1));
    let _ = writeln!(
        o,
        "\n### In place (BPF_ENABLE_STATS over a pinned ping-pong a1 -> b1, {} s per round; ns per packet)\n",
        prm.latency_seconds
    );
    let _ = writeln!(o, "| program | node | ns per packet |");
    let _ = writeln!(o, "|---|---|---:|");
    for (i, (prog, node)) in IN_SITU.iter().enumerate() {
        let v: Vec<f64> = situ.iter().map(|r| r[i]).collect();
        let _ = writeln!(o, "| {prog} | {node} | {} |", cell(&v, 0));
    }
    let merle: Vec<f64> = situ.iter().map(|r| r[..4].iter().sum::<f64>() / 1000.0).collect();
    let minimal: Vec<f64> = situ.iter().map(|r| 2.0 * (r[4] + r[5]) / 1000.0).collect();
    let _ = writeln!(
        o,
        "\nPer round trip (a pod and a node program on each node): merle {} µs, minimal {} µs.",
        cell(&merle, 2),
        cell(&minimal, 2)
    );
    o
}

/// merle's programs in place, as `(node, hook)`, then the minimal ones
/// (one copy serves both nodes).
const IN_SITU: [(&str, &str); 6] = [
    ("pod_ingress", "n1"),
    ("node_ingress", "n1"),
    ("pod_ingress", "n2"),
    ("node_ingress", "n2"),
    ("minimal_pod", "n1 and n2"),
    ("minimal_node", "n1 and n2"),
];

/// The program IDs of merle's pod and node programs on each node.
fn merle_ids(c: &Cluster) -> anyhow::Result<Vec<u32>> {
    let id = |node: usize, hook: &str| -> anyhow::Result<u32> {
        let d = c.dataplane(node)?;
        d["interfaces"]
            .as_array()
            .and_then(|a| a.iter().find(|i| i["hook"] == hook))
            .and_then(|i| i["program_id"].as_u64())
            .and_then(|v| u32::try_from(v).ok())
            .with_context(|| format!("no {hook} program on n{}: {d}", node + 1))
    };
    [(0, "pod-ingress"), (0, "node-ingress"), (1, "pod-ingress"), (1, "node-ingress")]
        .iter()
        .map(|(n, h)| id(*n, h))
        .collect()
}

/// The time each program in `ids` spends per packet in place: the
/// kernel's run statistics (BPF_ENABLE_STATS) over a pinned ping-pong from
/// a1 to b1, one packet at a time, so the caches are as cold as a request
/// finds them. The counting itself adds two clock reads per run.
fn in_situ(ids: &[u32], p: &Pods, secs: u32) -> anyhow::Result<Vec<f64>> {
    let snap = || -> anyhow::Result<Vec<ProgramRuns>> {
        ids.iter().map(|i| program_runs(*i).with_context(|| format!("program {i} is not loaded"))).collect()
    };
    let stats = RunStats::enable()?;
    let before = snap()?;
    latency(&p.b1.ns, &p.a1.ns, &p.b1.v4, secs, true)?;
    let after = snap()?;
    drop(stats);
    after
        .iter()
        .zip(&before)
        .zip(ids)
        .map(|((a, b), id)| a.since(*b).per_run().with_context(|| format!("program {id} never ran")))
        .collect()
}

/// A pinned ping-pong a1 -> b1 under `perf record -a -g -e cpu-clock`,
/// written to `out`; returns the latency.
fn profile(p: &Pods, secs: u32, out: &std::path::Path) -> anyhow::Result<f64> {
    need("perf")?;
    if let Some(d) = out.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let mut rec = Command::new("perf");
    rec.args(["record", "-q", "-a", "-g", "-e", "cpu-clock", "-F", "20000", "-o"]).arg(out);
    rec.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = rec.spawn().context("starting perf record")?;
    std::thread::sleep(Duration::from_millis(300));
    let lat = latency(&p.b1.ns, &p.a1.ns, &p.b1.v4, secs, true);
    // perf record stops and writes its file on SIGINT.
    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    let done = wait::until("perf record to finish", Duration::from_secs(30), Duration::from_millis(50), || {
        child.try_wait().ok().flatten()
    });
    let status = match done {
        Ok(s) => s,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    // perf exits with the signal's status after a clean SIGINT stop.
    anyhow::ensure!(
        out.exists() && (status.success() || status.code() == Some(130) || status.code().is_none()),
        "perf record failed ({status}): {}",
        err.trim()
    );
    lat
}

/// Moves the cluster from `from` to `to`.
fn enter(c: &Cluster, p: &Pods, m: &Minimal, from: Option<Setup>, to: Setup) -> anyhow::Result<()> {
    if from == Some(to) {
        return Ok(());
    }
    if from == Some(Setup::Minimal) {
        bench_minimal::relink(c, None)?;
    }
    match to {
        Setup::Kernel => switch(c, Mode::Kernel, p),
        Setup::Ebpf if from == Some(Setup::Minimal) => Ok(()),
        Setup::Ebpf => switch(c, Mode::Ebpf, p),
        Setup::Minimal => {
            if from != Some(Setup::Ebpf) {
                switch(c, Mode::Ebpf, p)?;
            }
            let n = bench_minimal::relink(c, Some(m))?;
            anyhow::ensure!(n >= 5, "only {n} links moved to the minimal programs");
            bench_minimal::prove_fast_path(c, &p.a1, &p.b1)
        }
    }
}

/// The benchmark: `runs` rounds of eBPF and kernel mode (alternating which
/// goes first), the baseline in kernel mode, and the program costs.
pub fn run(prm: &Params) -> anyhow::Result<()> {
    anyhow::ensure!(prm.runs >= 1, "--runs must be at least 1");
    for t in &prm.tests {
        anyhow::ensure!(
            Test::ALL.iter().any(|x| x.name() == t),
            "--tests: no test {t:?} (cross, same, pinned, unpinned, conns)"
        );
    }
    anyhow::ensure!(
        prm.seconds >= 1 && prm.latency_seconds >= 1 && prm.conn_seconds >= 1 && prm.prog_calls >= 1,
        "durations and --prog-calls must be at least 1"
    );
    anyhow::ensure!(
        (1..=250).contains(&prm.prog_repeat),
        "--prog-repeat must be 1 to 250 (the TTL starts at 255 and drops by one per repeat)"
    );
    for tool in ["iperf3", "sockperf", "taskset", "ss"] {
        need(tool)?;
    }
    let mut log = String::new();
    let bed = ProgBed::new().context("setting up the BPF_PROG_TEST_RUN namespace")?;
    let c = Cluster::new("bdp", 2, Encap::Native, Mode::Ebpf).context("starting the cluster")?;
    let pods = Pods { a1: c.add_pod(0, "bdpa1")?, a2: c.add_pod(0, "bdpa2")?, b1: c.add_pod(1, "bdpb1")? };
    // Tens of thousands of connections in a few seconds: let the clients
    // reuse ports in TIME_WAIT and use the whole range.
    for ns in [&pods.a1.ns, c.ns(0)] {
        ns.exec(&["sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1", "net.ipv4.ip_local_port_range=1024 65535"])?;
    }
    let mut s = Samples::default();
    let mut progs = Vec::new();
    // Each test runs in both modes back to back, in ABBA order (the mode
    // stays across a test boundary), so every eBPF sample has a kernel
    // sample taken seconds from it: this machine's throughput drifts by
    // 2x over minutes.
    let minimal = Minimal::load()?;
    let minimal_ids = [minimal.id(bench_minimal::POD)?, minimal.id(bench_minimal::NODE)?];
    let mut current: Option<Setup> = None;
    let mut situ = Vec::new();
    for r in 0..prm.runs {
        let mut order = if r % 2 == 0 {
            [Setup::Ebpf, Setup::Kernel, Setup::Minimal]
        } else {
            [Setup::Minimal, Setup::Kernel, Setup::Ebpf]
        };
        for t in Test::ALL {
            if prm.programs_only {
                break;
            }
            if !prm.tests.is_empty() && !prm.tests.iter().any(|n| n == t.name()) {
                continue;
            }
            for setup in order {
                wait::check_interrupted()?;
                enter(&c, &pods, &minimal, current, setup).with_context(|| format!("switching to {}", setup.name()))?;
                current = Some(setup);
                let before = fast_path(&c);
                let reasons = all_counters(&c);
                let line = measure_pods(t, &pods, prm, setup.col(), &mut s).with_context(|| setup.name())?;
                say(&mut log, &format!("round {}: {:>8}  {line}", r + 1, setup.name()));
                if setup == Setup::Ebpf {
                    say(&mut log, &format!("round {}:   counted  {}", r + 1, counted(&reasons, &all_counters(&c))));
                }
                let after = fast_path(&c);
                match setup {
                    Setup::Ebpf => {
                        let names = ["same-node redirect-peer", "FIB redirect", "node-ingress redirect-peer"];
                        for i in t.counters() {
                            anyhow::ensure!(
                                after[*i] > before[*i],
                                "eBPF mode: no {} counted, the traffic missed the fast path\n{}",
                                names[*i],
                                c.logs()
                            );
                        }
                    }
                    Setup::Minimal => anyhow::ensure!(
                        after == before,
                        "the minimal setup counted packets in merle's programs: a link still runs them"
                    ),
                    Setup::Kernel => {
                        if let Some(line) = measure_baseline(t, &c, prm, &mut s)? {
                            say(&mut log, &format!("round {}: baseline  {line}", r + 1));
                        }
                    }
                }
            }
            order.reverse();
        }
        let p = bed.measure(prm.prog_calls, prm.prog_repeat, &minimal)?;
        let line = format!(
            "{:.1} ns same node, {:.1} ns FIB, {:.1} ns node to pod; minimal FIB {:.1} ns",
            p[0], p[1], p[2], p[3]
        );
        say(&mut log, &format!("round {}: programs  {line}", r + 1));
        progs.push(p);
        // In place: merle's programs, then the minimal ones, in the order
        // the round ended in.
        let mut q = vec![0.0; IN_SITU.len()];
        let mut which = [Setup::Ebpf, Setup::Minimal];
        if current == Some(Setup::Minimal) {
            which.reverse();
        }
        for setup in which {
            enter(&c, &pods, &minimal, current, setup)?;
            current = Some(setup);
            if setup == Setup::Ebpf {
                let v = in_situ(&merle_ids(&c)?, &pods, prm.latency_seconds)?;
                q[..4].copy_from_slice(&v);
            } else {
                let v = in_situ(&minimal_ids, &pods, prm.latency_seconds)?;
                q[4..].copy_from_slice(&v);
            }
        }
        let line: Vec<String> = q.iter().map(|v| format!("{v:.0}")).collect();
        say(&mut log, &format!("round {}: in place  {} ns", r + 1, line.join(" / ")));
        situ.push(q);
        if let Some(dir) = &prm.profile {
            for setup in [Setup::Ebpf, Setup::Minimal, Setup::Kernel] {
                enter(&c, &pods, &minimal, current, setup)?;
                current = Some(setup);
                let out = dir.join(format!("round{}-{}.data", r + 1, setup.name()));
                let lat = profile(&pods, prm.latency_seconds, &out)?;
                say(&mut log, &format!("round {}: profile  {} {lat:.2} µs: {}", r + 1, setup.name(), out.display()));
            }
        }
    }
    if current == Some(Setup::Minimal) {
        bench_minimal::relink(&c, None)?;
    }
    let report = summary(prm, &s, &progs, &situ);
    say(&mut log, &report);
    if let Some(path) = &prm.out {
        std::fs::write(path, log.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
