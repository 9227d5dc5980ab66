//! `testbed bench services`: a NodePort with a remote backend, served by
//! merle (`dsr`, `snat`) and by kube-proxy's iptables rules (DNAT in
//! PREROUTING, MASQUERADE), in one testbed, the setups alternating
//! (ABC, then CBA) every round, at 1, 1,000 and 10,000 services.
//!
//! ```text
//!   client 192.168.100.2 ── ToR ── n1 10.0.0.1 (the NodePort)
//!                              └── n2 10.0.0.2 (pod b1: the backend)
//! ```
//! Figures: short TCP connections (connect, one byte each way, close; one
//! at a time, both ends pinned to CPU 0) per second with their p50 and
//! p99 latency, and one TCP stream (iperf3) through the NodePort. At N
//! services, merle's maps hold N frontends (N - 2 ClusterIP-only ones
//! besides the two NodePorts); kube-proxy's table holds a KUBE-SERVICES
//! rule per ClusterIP, walked before the NodePort jump, as kube-proxy
//! writes it.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::bench::median;
use crate::bench_datapath::{join, need, pin_to_cpu0, stream_to, ByteServer, IPERF_PORT};
use crate::datapath::Pod;
use crate::lbbed::ServiceBed;
use crate::netns::Netns;
use crate::wait;

const CONN_PORT: u16 = 12000;
const WEB_NODE_PORT: u16 = 30080;
const IPERF_NODE_PORT: u16 = 30201;
const IO_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, clap::Args)]
pub struct Params {
    /// Rounds at each scale; each round measures every setup.
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// Seconds of each connection run.
    #[arg(long, default_value_t = 5)]
    pub conn_seconds: u32,
    /// Seconds of each stream (at the first scale only).
    #[arg(long, default_value_t = 5)]
    pub stream_seconds: u32,
    /// The numbers of services programmed.
    #[arg(long, value_delimiter = ',', default_value = "1,1000,10000")]
    pub scale: Vec<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    Dsr,
    Snat,
    Iptables,
}

impl Setup {
    const ALL: [Setup; 3] = [Setup::Dsr, Setup::Snat, Setup::Iptables];
    fn name(self) -> &'static str {
        match self {
            Setup::Dsr => "merle dsr",
            Setup::Snat => "merle snat",
            Setup::Iptables => "iptables",
        }
    }
}

fn filler_ip(i: u32) -> String {
    format!("10.97.{}.{}", i / 256, i % 256)
}

/// The configuration's services at `n` services: n - 2 ClusterIP-only ones
/// and the two under test, with NodePorts unless iptables serves them.
fn services_toml(n: u32, setup: Setup, b1: &Pod) -> String {
    let mut s = String::from("[service_ranges]\ncluster_ips = [\"10.96.0.0/12\"]\n\n");
    let backend = |port: u16| format!("backends = [{{ address = \"{}\", port = {port}, node = \"n2\" }}]\n", b1.v4);
    for i in 0..n.saturating_sub(2) {
        let _ = write!(
            s,
            "[[services]]\nname = \"svc-{i}\"\nprotocol = \"tcp\"\ncluster_ip = \"{}\"\nport = 80\n{}\n",
            filler_ip(i),
            backend(CONN_PORT)
        );
    }
    let (np, mode) = match setup {
        Setup::Dsr => (true, "dsr"),
        Setup::Snat => (true, "snat"),
        Setup::Iptables => (false, "snat"),
    };
    for (name, cip, port, node_port) in
        [("web", "10.96.0.10", CONN_PORT, WEB_NODE_PORT), ("iperf", "10.96.0.11", IPERF_PORT, IPERF_NODE_PORT)]
    {
        let _ =
            write!(s, "[[services]]\nname = \"{name}\"\nprotocol = \"tcp\"\ncluster_ip = \"{cip}\"\nport = {port}\n");
        if np {
            let _ = writeln!(s, "node_port = {node_port}\nmode = \"{mode}\"");
        }
        let _ = writeln!(s, "{}", backend(port));
    }
    s
}

/// kube-proxy's nat table for the same services, for iptables-restore.
fn iptables_rules(n: u32, b1: &Pod) -> String {
    let mut s = String::from(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
         :KUBE-SERVICES - [0:0]\n:KUBE-NODEPORTS - [0:0]\n:KUBE-POSTROUTING - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n\
         :KUBE-SVC-WEB - [0:0]\n:KUBE-SEP-WEB - [0:0]\n:KUBE-SVC-IPERF - [0:0]\n:KUBE-SEP-IPERF - [0:0]\n",
    );
    let fillers = n.saturating_sub(2);
    for i in 0..fillers {
        let _ = writeln!(s, ":KUBE-SVC-{i} - [0:0]\n:KUBE-SEP-{i} - [0:0]");
    }
    s += "-A PREROUTING -j KUBE-SERVICES\n-A OUTPUT -j KUBE-SERVICES\n-A POSTROUTING -j KUBE-POSTROUTING\n\
          -A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000\n\
          -A KUBE-POSTROUTING -m mark --mark 0x4000/0x4000 -j MASQUERADE\n";
    for i in 0..fillers {
        let _ = writeln!(
            s,
            "-A KUBE-SERVICES -d {}/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-{i}\n-A KUBE-SVC-{i} -j KUBE-SEP-{i}\n\
             -A KUBE-SEP-{i} -p tcp -m tcp -j DNAT --to-destination {}:{CONN_PORT}",
            filler_ip(i),
            b1.v4
        );
    }
    let _ = write!(
        s,
        "-A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -m tcp --dport {CONN_PORT} -j KUBE-SVC-WEB\n\
         -A KUBE-SERVICES -d 10.96.0.11/32 -p tcp -m tcp --dport {IPERF_PORT} -j KUBE-SVC-IPERF\n\
         -A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n\
         -A KUBE-NODEPORTS -p tcp -m tcp --dport {WEB_NODE_PORT} -j KUBE-MARK-MASQ\n\
         -A KUBE-NODEPORTS -p tcp -m tcp --dport {WEB_NODE_PORT} -j KUBE-SVC-WEB\n\
         -A KUBE-NODEPORTS -p tcp -m tcp --dport {IPERF_NODE_PORT} -j KUBE-MARK-MASQ\n\
         -A KUBE-NODEPORTS -p tcp -m tcp --dport {IPERF_NODE_PORT} -j KUBE-SVC-IPERF\n\
         -A KUBE-SVC-WEB -j KUBE-SEP-WEB\n-A KUBE-SEP-WEB -p tcp -m tcp -j DNAT --to-destination {b}:{CONN_PORT}\n\
         -A KUBE-SVC-IPERF -j KUBE-SEP-IPERF\n-A KUBE-SEP-IPERF -p tcp -m tcp -j DNAT --to-destination {b}:{IPERF_PORT}\n\
         COMMIT\n",
        b = b1.v4
    );
    s
}

fn iptables_restore(ns: &Netns, rules: &str) -> anyhow::Result<()> {
    let mut c = ns.command("iptables-restore");
    c.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
    let mut child = c.spawn().context("iptables-restore")?;
    child.stdin.take().context("stdin")?.write_all(rules.as_bytes())?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(out.status.success(), "iptables-restore: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

fn iptables_flush(ns: &Netns) -> anyhow::Result<()> {
    iptables_restore(
        ns,
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n",
    )
}

/// Puts `setup` in place at `n` services; how long merled (or
/// iptables-restore) took to have it.
fn enter(bed: &ServiceBed, b1: &Pod, n: u32, setup: Setup) -> anyhow::Result<Duration> {
    let c = &bed.cluster;
    let t = Instant::now();
    if setup != Setup::Iptables {
        iptables_flush(c.ns(0))?;
    }
    for i in 0..c.nodes.len() {
        c.set_services(i, &services_toml(n, setup, b1))?;
    }
    let want_np = setup != Setup::Iptables;
    let want_dsr = setup == Setup::Dsr;
    wait::poll(&format!("{} at {n} services", setup.name()), Duration::from_secs(300), || {
        let v = c.services(0).ok()?;
        let list = v.as_array()?;
        if list.len() != n.max(2) as usize {
            return None;
        }
        let web = list.iter().find(|s| s["service"]["name"] == "web")?;
        let f = web["frontends"].as_array()?;
        let np = f.iter().any(|f| f["kind"] == "node-port");
        (np == want_np && f.iter().all(|f| !f["lb_id"].is_null() && (!np || f["dsr"] == want_dsr))).then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}\n{}", c.logs()))?;
    if setup == Setup::Iptables {
        iptables_restore(c.ns(0), &iptables_rules(n, b1))?;
    }
    Ok(t.elapsed())
}

struct Conns {
    rate: f64,
    p50_us: f64,
    p99_us: f64,
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

/// Short connections from the client to n1's NodePort, one at a time.
fn conns(bed: &ServiceBed, b1: &Pod, secs: u32) -> anyhow::Result<Conns> {
    let srv = ByteServer::start(&b1.ns, SocketAddr::from(([0, 0, 0, 0], CONN_PORT)))?;
    let to: SocketAddr = format!("10.0.0.1:{WEB_NODE_PORT}").parse()?;
    let dur = Duration::from_secs(u64::from(secs));
    let cli = bed.client.spawn(move || -> anyhow::Result<(Vec<f64>, Duration)> {
        pin_to_cpu0()?;
        // A few first, untimed: neighbours resolved, caches warm.
        for _ in 0..20 {
            let mut s = TcpStream::connect_timeout(&to, IO_TIMEOUT).with_context(|| format!("warm-up connect {to}"))?;
            s.write_all(&[1])?;
            let mut b = [0u8; 1];
            s.set_read_timeout(Some(IO_TIMEOUT))?;
            s.read_exact(&mut b).context("warm-up connection")?;
        }
        let start = Instant::now();
        let mut lat = Vec::new();
        while start.elapsed() < dur {
            let t = Instant::now();
            let mut s = TcpStream::connect_timeout(&to, IO_TIMEOUT).with_context(|| format!("connect {to}"))?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(IO_TIMEOUT))?;
            s.write_all(&[1])?;
            let mut b = [0u8; 1];
            s.read_exact(&mut b).with_context(|| format!("connection {} to {to}", lat.len() + 1))?;
            drop(s);
            lat.push(t.elapsed().as_secs_f64() * 1e6);
        }
        Ok((lat, start.elapsed()))
    });
    let done = cli.and_then(|h| join(h, "the connection client"));
    srv.stop()?;
    let (mut lat, elapsed) = done?;
    lat.sort_by(|a, b| a.total_cmp(b));
    Ok(Conns {
        rate: lat.len() as f64 / elapsed.as_secs_f64(),
        p50_us: quantile(&lat, 0.5),
        p99_us: quantile(&lat, 0.99),
    })
}

#[derive(Default)]
struct Cell {
    rate: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    gbps: Vec<f64>,
    enter_s: Vec<f64>,
}

pub fn run(prm: &Params) -> anyhow::Result<()> {
    for t in ["iperf3", "iptables-restore"] {
        need(t)?;
    }
    let bed = ServiceBed::new("bsv", 2)?;
    let b1 = bed.cluster.add_pod(1, "bsvb1")?;
    let mut out = String::new();
    let mut say = |s: &str| {
        println!("{s}");
        out.push_str(s);
        out.push('\n');
    };
    say(&format!(
        "services bench: {} rounds at {:?} services, {} s of connections, {} s streams",
        prm.rounds, prm.scale, prm.conn_seconds, prm.stream_seconds
    ));
    let mut table: Vec<(u32, [Cell; 3])> = Vec::new();
    for &n in &prm.scale {
        let mut cells: [Cell; 3] = Default::default();
        for round in 0..prm.rounds {
            let order: Vec<Setup> =
                if round % 2 == 0 { Setup::ALL.to_vec() } else { Setup::ALL.iter().rev().copied().collect() };
            for setup in order {
                let took = enter(&bed, &b1, n, setup)?;
                let c = conns(&bed, &b1, prm.conn_seconds)?;
                let cell = &mut cells[setup as usize];
                cell.rate.push(c.rate);
                cell.p50.push(c.p50_us);
                cell.p99.push(c.p99_us);
                cell.enter_s.push(took.as_secs_f64());
                let mut line = format!(
                    "  {n:>5} services, round {}, {:<10}: {:7.0} conn/s, p50 {:6.0} µs, p99 {:6.0} µs (set up in {:.1} s)",
                    round + 1,
                    setup.name(),
                    c.rate,
                    c.p50_us,
                    c.p99_us,
                    took.as_secs_f64()
                );
                if n == prm.scale[0] {
                    let s = stream_to(&b1.ns, &bed.client, "10.0.0.1", IPERF_NODE_PORT, prm.stream_seconds)?;
                    cell.gbps.push(s.gbps);
                    let _ = write!(line, ", stream {:.1} Gbit/s", s.gbps);
                }
                say(&line);
            }
        }
        table.push((n, cells));
    }
    iptables_flush(bed.cluster.ns(0))?;
    say("\nMedians:");
    say("| services | setup | conn/s | p50 µs | p99 µs | stream Gbit/s | set up s |");
    say("| ---: | --- | ---: | ---: | ---: | ---: | ---: |");
    for (n, cells) in &table {
        for s in Setup::ALL {
            let c = &cells[s as usize];
            let g = if c.gbps.is_empty() { "".into() } else { format!("{:.1}", median(c.gbps.clone())) };
            say(&format!(
                "| {n} | {} | {:.0} | {:.0} | {:.0} | {g} | {:.1} |",
                s.name(),
                median(c.rate.clone()),
                median(c.p50.clone()),
                median(c.p99.clone()),
                median(c.enter_s.clone())
            ));
        }
    }
    let m = |n: usize, s: Setup, f: fn(&Cell) -> &Vec<f64>| median(f(&table[n].1[s as usize]).clone());
    fn rate(c: &Cell) -> &Vec<f64> {
        &c.rate
    }
    fn p50(c: &Cell) -> &Vec<f64> {
        &c.p50
    }
    fn p99(c: &Cell) -> &Vec<f64> {
        &c.p99
    }
    say("\nGoals:");
    say(&format!(
        "- DSR connections/s / iptables at {} services: {:.2} (goal >= 1.30)",
        table[0].0,
        m(0, Setup::Dsr, rate) / m(0, Setup::Iptables, rate)
    ));
    say(&format!(
        "- p99 latency, DSR {:.0} µs against iptables {:.0} µs (goal: lower)",
        m(0, Setup::Dsr, p99),
        m(0, Setup::Iptables, p99)
    ));
    let last = table.len() - 1;
    for s in Setup::ALL {
        say(&format!(
            "- p50 at {} / at {} services, {}: {:.2} (merle's goal: within 1.10)",
            table[last].0,
            table[0].0,
            s.name(),
            m(last, s, p50) / m(0, s, p50)
        ));
    }
    Ok(())
}
