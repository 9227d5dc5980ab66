//! `testbed bench services`: a NodePort with a remote backend, served by
//! merle (`dsr`, `snat`) and by kube-proxy's iptables rules (DNAT in
//! PREROUTING, MASQUERADE), in one testbed, at 1, 1,000 and 10,000
//! services.
//!
//! ```text
//!   client 192.168.100.2 ── ToR ── n1 10.0.0.1 (the NodePorts)
//!                              └── n2 10.0.0.2 (pod b1: the backend)
//! ```
//! The three setups are in place at once, each on NodePorts of its own:
//! merle's maps hold a `dsr` and a `snat` service, kube-proxy's nat table
//! a third, and a packet for a port merle does not serve goes on to the
//! stack and its rules, as it would with kube-proxy beside merle. The
//! client interleaves them connection by connection (DSR, SNAT, iptables,
//! then iptables, SNAT, DSR, ...), so that the machine's drift, which on
//! these machines moves a 5-second figure by a fifth from one run to the
//! next, falls on every setup alike.
//!
//! Figures: short TCP connections (connect, one byte each way, close; one
//! at a time, both ends pinned to CPU 0) per second of their own time
//! with their p50 and p99 latency, and one TCP stream (iperf3) through
//! each setup's NodePort, the setups in turn (ABC, then CBA every other
//! round). At N services merle's maps and kube-proxy's table each hold N
//! (ClusterIP-only ones besides those under test); kube-proxy's table
//! holds a KUBE-SERVICES rule per ClusterIP, walked before the NodePort
//! jump, as kube-proxy writes it.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::bench::median;
use crate::bench_datapath::{join, need, pin_to_cpu0, stream_to, ByteServer, IPERF_PORT};
use crate::datapath::Pod;
use crate::lbbed::ServiceBed;
use crate::netns::Netns;
use crate::wait;

/// The fillers' backend port.
const CONN_PORT: u16 = 12000;
const IO_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, clap::Args)]
pub struct Params {
    /// Rounds at each scale; each round measures every setup.
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// Seconds of connections per setup and round (the setups interleaved).
    #[arg(long, default_value_t = 5)]
    pub conn_seconds: u32,
    /// Seconds of each stream (at the first scale only).
    #[arg(long, default_value_t = 5)]
    pub stream_seconds: u32,
    /// The numbers of services programmed.
    #[arg(long, value_delimiter = ',', default_value = "1,1000,10000")]
    pub scale: Vec<u32>,
    /// Clients connecting at once in the measure under load (0: none).
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
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
    /// The NodePort of its connection service and of its stream service,
    /// and the ClusterIPs of the two.
    fn ports(self) -> (u16, u16) {
        match self {
            Setup::Dsr => (30080, 30201),
            Setup::Snat => (30081, 30202),
            Setup::Iptables => (30082, 30203),
        }
    }
    /// The backend's port for its connections: each setup has a server
    /// of its own, so that no two setups' translated flows meet in one
    /// 4-tuple at the pod (merle's SNAT and netfilter's MASQUERADE both
    /// take n1's address and ports, and neither knows the other's).
    fn conn_port(self) -> u16 {
        match self {
            Setup::Dsr => 12001,
            Setup::Snat => 12002,
            Setup::Iptables => 12003,
        }
    }
    fn cluster_ips(self) -> (&'static str, &'static str) {
        match self {
            Setup::Dsr => ("10.96.0.10", "10.96.0.11"),
            Setup::Snat => ("10.96.0.12", "10.96.0.13"),
            Setup::Iptables => ("10.96.0.14", "10.96.0.15"),
        }
    }
    fn tag(self) -> &'static str {
        match self {
            Setup::Dsr => "dsr",
            Setup::Snat => "snat",
            Setup::Iptables => "ipt",
        }
    }
}

fn filler_ip(i: u32) -> String {
    format!("10.97.{}.{}", i / 256, i % 256)
}

/// merle's services at `n`: the four under test (a connection and a
/// stream service each for `dsr` and `snat`, with NodePorts) and n - 4
/// ClusterIP-only ones.
fn services_toml(n: u32, b1: &Pod) -> String {
    let mut s = String::from("[service_ranges]\ncluster_ips = [\"10.96.0.0/12\"]\n\n");
    let backend = |port: u16| format!("backends = [{{ address = \"{}\", port = {port}, node = \"n2\" }}]\n", b1.v4);
    for i in 0..n.saturating_sub(4) {
        let _ = write!(
            s,
            "[[services]]\nname = \"svc-{i}\"\nprotocol = \"tcp\"\ncluster_ip = \"{}\"\nport = 80\n{}\n",
            filler_ip(i),
            backend(CONN_PORT)
        );
    }
    for setup in [Setup::Dsr, Setup::Snat] {
        let ((web, iperf), (web_ip, iperf_ip)) = (setup.ports(), setup.cluster_ips());
        for (name, cip, port, node_port) in
            [("web", web_ip, setup.conn_port(), web), ("iperf", iperf_ip, IPERF_PORT, iperf)]
        {
            let _ = writeln!(
                s,
                "[[services]]\nname = \"{name}-{}\"\nprotocol = \"tcp\"\ncluster_ip = \"{cip}\"\nport = {port}\n\
                 node_port = {node_port}\nmode = \"{}\"\n{}",
                setup.tag(),
                setup.tag(),
                backend(port)
            );
        }
    }
    s
}

/// kube-proxy's nat table for its services at `n`, for iptables-restore:
/// the two under test and n - 2 ClusterIP-only ones.
fn iptables_rules(n: u32, b1: &Pod) -> String {
    let ((web, iperf), (web_ip, iperf_ip)) = (Setup::Iptables.ports(), Setup::Iptables.cluster_ips());
    let conn = Setup::Iptables.conn_port();
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
        "-A KUBE-SERVICES -d {web_ip}/32 -p tcp -m tcp --dport {conn} -j KUBE-SVC-WEB\n\
         -A KUBE-SERVICES -d {iperf_ip}/32 -p tcp -m tcp --dport {IPERF_PORT} -j KUBE-SVC-IPERF\n\
         -A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n\
         -A KUBE-NODEPORTS -p tcp -m tcp --dport {web} -j KUBE-MARK-MASQ\n\
         -A KUBE-NODEPORTS -p tcp -m tcp --dport {web} -j KUBE-SVC-WEB\n\
         -A KUBE-NODEPORTS -p tcp -m tcp --dport {iperf} -j KUBE-MARK-MASQ\n\
         -A KUBE-NODEPORTS -p tcp -m tcp --dport {iperf} -j KUBE-SVC-IPERF\n\
         -A KUBE-SVC-WEB -j KUBE-SEP-WEB\n-A KUBE-SEP-WEB -p tcp -m tcp -j DNAT --to-destination {b}:{conn}\n\
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

/// Puts every setup in place at `n` services; how long merled took to
/// have its part, and how long iptables-restore took.
fn enter(bed: &ServiceBed, b1: &Pod, n: u32) -> anyhow::Result<(Duration, Duration)> {
    let c = &bed.cluster;
    let t = Instant::now();
    for i in 0..c.nodes.len() {
        c.set_services(i, &services_toml(n, b1))?;
    }
    let want = n.max(4) as usize;
    wait::poll(&format!("merle's services at {n}"), Duration::from_secs(300), || {
        let v = c.services(0).ok()?;
        let list = v.as_array()?;
        if list.len() != want {
            return None;
        }
        let programmed =
            list.iter().all(|s| s["frontends"].as_array().is_some_and(|f| f.iter().all(|f| !f["lb_id"].is_null())));
        let dsr = |name: &str, want: bool| {
            list.iter().find(|s| s["service"]["name"] == name).and_then(|s| s["frontends"].as_array()).is_some_and(
                |f| {
                    f.iter().any(|f| f["kind"] == "node-port")
                        && f.iter().filter(|f| f["kind"] == "node-port").all(|f| f["dsr"] == want)
                },
            )
        };
        (programmed && dsr("web-dsr", true) && dsr("web-snat", false)).then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}\n{}", c.logs()))?;
    let merle = t.elapsed();
    let t = Instant::now();
    iptables_restore(c.ns(0), &iptables_rules(n, b1))?;
    Ok((merle, t.elapsed()))
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

/// One connection to `to`: connect, a byte each way, close; its time in µs.
fn one(to: &SocketAddr) -> anyhow::Result<f64> {
    let t = Instant::now();
    let mut s = TcpStream::connect_timeout(to, IO_TIMEOUT).with_context(|| format!("connect {to}"))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.write_all(&[1])?;
    let mut b = [0u8; 1];
    s.read_exact(&mut b).with_context(|| format!("connection to {to}"))?;
    drop(s);
    Ok(t.elapsed().as_secs_f64() * 1e6)
}

/// Short connections from the client to each setup's NodePort on n1, one
/// at a time, the setups interleaved (ABC CBA ...) for `secs` seconds
/// each: per setup, connections per second of its own connections' time.
fn conns(bed: &ServiceBed, b1: &Pod, secs: u32) -> anyhow::Result<[Conns; 3]> {
    let mut srv = Vec::new();
    for s in Setup::ALL {
        srv.push(ByteServer::start(&b1.ns, SocketAddr::from(([0, 0, 0, 0], s.conn_port())))?);
    }
    let to: Vec<SocketAddr> = Setup::ALL.iter().map(|s| SocketAddr::from(([10, 0, 0, 1], s.ports().0))).collect();
    let dur = Duration::from_secs(u64::from(secs) * Setup::ALL.len() as u64);
    let cli = bed.client.spawn(move || -> anyhow::Result<Vec<Vec<f64>>> {
        pin_to_cpu0()?;
        // A few first, untimed: neighbours resolved, caches warm.
        for a in &to {
            for _ in 0..20 {
                one(a).context("warm-up")?;
            }
        }
        let order: Vec<usize> = (0..to.len()).chain((0..to.len()).rev()).collect();
        let mut lat = vec![Vec::new(); to.len()];
        let start = Instant::now();
        while start.elapsed() < dur {
            for &i in &order {
                let us = one(&to[i]).with_context(|| format!("connection {}", lat[i].len() + 1))?;
                lat[i].push(us);
            }
        }
        Ok(lat)
    });
    let done = cli.and_then(|h| join(h, "the connection client"));
    for s in srv {
        s.stop()?;
    }
    let lat = done?;
    lat.into_iter()
        .map(|mut l| {
            let total_s: f64 = l.iter().sum::<f64>() / 1e6;
            l.sort_by(|a, b| a.total_cmp(b));
            Conns { rate: l.len() as f64 / total_s, p50_us: quantile(&l, 0.5), p99_us: quantile(&l, 0.99) }
        })
        .collect::<Vec<_>>()
        .try_into()
        .map_err(|_| anyhow::anyhow!("three setups"))
}

/// A slice of the measure under load: every client on one setup.
const SLICE: Duration = Duration::from_millis(500);

/// Connections per second with `clients` connecting at once, unpinned, so
/// that the machine is busy and each setup's work per connection, not
/// its latency, bounds the rate. The setups take turns by slices (ABC CBA
/// ...) until each has had `secs` seconds, every client on the same setup
/// in a slice; per setup, its connections over its slices' time (from
/// the slice's start to the end of its last connection), and the p50 and
/// p99 of their latency.
fn loaded(bed: &ServiceBed, b1: &Pod, secs: u32, clients: usize) -> anyhow::Result<[Conns; 3]> {
    let mut srv = Vec::new();
    for s in Setup::ALL {
        srv.push(ByteServer::start_threads(&b1.ns, SocketAddr::from(([0, 0, 0, 0], s.conn_port())), clients)?);
    }
    let to: Vec<SocketAddr> = Setup::ALL.iter().map(|s| SocketAddr::from(([10, 0, 0, 1], s.ports().0))).collect();
    let per_setup = (u128::from(secs) * 1000).div_ceil(SLICE.as_millis()).max(1) as usize;
    let order: Vec<usize> = [0, 1, 2, 2, 1, 0].into_iter().cycle().take(per_setup * Setup::ALL.len()).collect();
    let cli = bed.client.spawn(move || -> anyhow::Result<(Vec<Duration>, Vec<Vec<f64>>)> {
        let gate = Arc::new(Barrier::new(clients + 1));
        let lat = Arc::new(Mutex::new(vec![Vec::new(); Setup::ALL.len()]));
        let mut workers = Vec::new();
        for _ in 0..clients {
            let (gate, lat, to, order) = (gate.clone(), lat.clone(), to.clone(), order.clone());
            workers.push(std::thread::spawn(move || -> anyhow::Result<()> {
                let mut failed = None;
                for a in &to {
                    for _ in 0..10 {
                        if let Err(e) = one(a).context("warm-up") {
                            failed.get_or_insert(e);
                        }
                    }
                }
                for &i in &order {
                    gate.wait();
                    let (t0, mut mine) = (Instant::now(), Vec::new());
                    // A client that failed still keeps step, so that the
                    // others are not left at the gate.
                    while failed.is_none() && t0.elapsed() < SLICE {
                        match one(&to[i]) {
                            Ok(us) => mine.push(us),
                            Err(e) => failed = Some(e),
                        }
                    }
                    lat.lock().expect("no client panics holding it")[i].extend(mine);
                    gate.wait();
                }
                failed.map_or(Ok(()), Err)
            }));
        }
        let mut took = vec![Duration::ZERO; Setup::ALL.len()];
        for &i in &order {
            gate.wait();
            let t0 = Instant::now();
            gate.wait();
            took[i] += t0.elapsed();
        }
        for w in workers {
            w.join().map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
        }
        let lat = std::mem::take(&mut *lat.lock().expect("the clients are done"));
        Ok((took, lat))
    });
    let done = cli.and_then(|h| join(h, "the clients under load"));
    for s in srv {
        s.stop()?;
    }
    let (took, lat) = done?;
    lat.into_iter()
        .zip(took)
        .map(|(mut l, t)| {
            l.sort_by(|a, b| a.total_cmp(b));
            Conns { rate: l.len() as f64 / t.as_secs_f64(), p50_us: quantile(&l, 0.5), p99_us: quantile(&l, 0.99) }
        })
        .collect::<Vec<_>>()
        .try_into()
        .map_err(|_| anyhow::anyhow!("three setups"))
}

#[derive(Default)]
struct Cell {
    rate: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    gbps: Vec<f64>,
    /// Under load: connections/s, p99.
    busy: Vec<f64>,
    busy_p99: Vec<f64>,
}

pub fn run(prm: &Params) -> anyhow::Result<()> {
    for t in ["iperf3", "iptables-restore"] {
        need(t)?;
    }
    anyhow::ensure!(!prm.scale.is_empty() && prm.rounds > 0, "--scale and --rounds need at least one");
    let bed = ServiceBed::new("bsv", 2)?;
    let b1 = bed.cluster.add_pod(1, "bsvb1")?;
    let mut out = String::new();
    let mut say = |s: &str| {
        println!("{s}");
        out.push_str(s);
        out.push('\n');
    };
    say(&format!(
        "services bench: {} rounds at {:?} services, {} s of connections per setup (interleaved), {} s streams",
        prm.rounds, prm.scale, prm.conn_seconds, prm.stream_seconds
    ));
    let mut table: Vec<(u32, [Cell; 3], Duration, Duration)> = Vec::new();
    for &n in &prm.scale {
        let (merle_took, ipt_took) = enter(&bed, &b1, n)?;
        say(&format!(
            "  {n:>5} services: merled programmed its in {:.1} s, iptables-restore took {:.1} s",
            merle_took.as_secs_f64(),
            ipt_took.as_secs_f64()
        ));
        let mut cells: [Cell; 3] = Default::default();
        for round in 0..prm.rounds {
            let c = conns(&bed, &b1, prm.conn_seconds)?;
            let order: Vec<Setup> =
                if round % 2 == 0 { Setup::ALL.to_vec() } else { Setup::ALL.iter().rev().copied().collect() };
            let mut streams = [None; 3];
            if n == prm.scale[0] {
                for setup in order {
                    let s = stream_to(&b1.ns, &bed.client, "10.0.0.1", setup.ports().1, prm.stream_seconds)?;
                    streams[setup as usize] = Some(s.gbps);
                }
            }
            for setup in Setup::ALL {
                let (c, cell) = (&c[setup as usize], &mut cells[setup as usize]);
                cell.rate.push(c.rate);
                cell.p50.push(c.p50_us);
                cell.p99.push(c.p99_us);
                let mut line = format!(
                    "  {n:>5} services, round {}, {:<10}: {:7.0} conn/s, p50 {:6.0} µs, p99 {:6.0} µs",
                    round + 1,
                    setup.name(),
                    c.rate,
                    c.p50_us,
                    c.p99_us,
                );
                if let Some(g) = streams[setup as usize] {
                    cell.gbps.push(g);
                    let _ = write!(line, ", stream {g:.1} Gbit/s");
                }
                say(&line);
            }
            say(&format!(
                "  {n:>5} services, round {}: DSR / iptables {:.2}",
                round + 1,
                c[Setup::Dsr as usize].rate / c[Setup::Iptables as usize].rate
            ));
            if prm.clients > 0 {
                let l = loaded(&bed, &b1, prm.conn_seconds, prm.clients)?;
                for setup in Setup::ALL {
                    let (c, cell) = (&l[setup as usize], &mut cells[setup as usize]);
                    cell.busy.push(c.rate);
                    cell.busy_p99.push(c.p99_us);
                    say(&format!(
                        "  {n:>5} services, round {}, {:<10}: {:7.0} conn/s under load ({} clients), p50 {:6.0} µs, p99 {:6.0} µs",
                        round + 1,
                        setup.name(),
                        c.rate,
                        prm.clients,
                        c.p50_us,
                        c.p99_us,
                    ));
                }
                say(&format!(
                    "  {n:>5} services, round {}: under load, DSR / iptables {:.2}",
                    round + 1,
                    l[Setup::Dsr as usize].rate / l[Setup::Iptables as usize].rate
                ));
            }
        }
        table.push((n, cells, merle_took, ipt_took));
    }
    iptables_flush(bed.cluster.ns(0))?;
    say("\nMedians:");
    say(&format!(
        "| services | setup | conn/s | p50 µs | p99 µs | stream Gbit/s | set up s | under load ({} clients): conn/s | p99 µs |",
        prm.clients
    ));
    say("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (n, cells, merle_took, ipt_took) in &table {
        for s in Setup::ALL {
            let c = &cells[s as usize];
            let g = if c.gbps.is_empty() { "".into() } else { format!("{:.1}", median(c.gbps.clone())) };
            let took = if s == Setup::Iptables { ipt_took } else { merle_took };
            let busy = |v: &Vec<f64>| if v.is_empty() { String::new() } else { format!("{:.0}", median(v.clone())) };
            say(&format!(
                "| {n} | {} | {:.0} | {:.0} | {:.0} | {g} | {:.1} | {} | {} |",
                s.name(),
                median(c.rate.clone()),
                median(c.p50.clone()),
                median(c.p99.clone()),
                took.as_secs_f64(),
                busy(&c.busy),
                busy(&c.busy_p99),
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
    if prm.clients > 0 {
        fn busy(c: &Cell) -> &Vec<f64> {
            &c.busy
        }
        say(&format!(
            "- under load ({} clients), DSR connections/s / iptables at {} services: {:.2} (goal >= 1.30)",
            prm.clients,
            table[0].0,
            m(0, Setup::Dsr, busy) / m(0, Setup::Iptables, busy)
        ));
    }
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
