//! A cluster at scale: N speakers on one LAN, each advertising its own
//! block, in a full iBGP mesh or with two route reflectors. The clock
//! starts when the first speaker is started (all are started at once) and
//! stops when every node's kernel FIB holds every other node's block.
//! merled and BIRD 2 (with its kernel protocol) alternate as the speaker,
//! in the same topology.
//!
//! Convergence is read from each node's kernel over a netlink socket
//! opened inside the node's namespace, every 50 ms, without a process per
//! check.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use netlink_packet_route::route::RouteType;
use netlink_packet_route::RouteNetlinkMessage;

use crate::bench::{cpu_time, median, status_kib, Target};
use crate::netns::Lan;
use crate::process::Daemon;
use crate::TempDir;

/// The speakers' kernel protocol numbers: merle's and BIRD's.
const PROTO_MERLE: u8 = 198;
const PROTO_BIRD: u8 = 12;

fn addr(i: usize) -> String {
    format!("10.0.{}.{}", i / 250, i % 250 + 1)
}

fn block(i: usize) -> String {
    format!("10.{}.{}.0/26", 100 + i / 256, i % 256)
}

fn is_rr(i: usize, rr: bool) -> bool {
    rr && i < 2
}

fn merled_config(i: usize, n: usize, rr: bool, socket: &Path) -> String {
    let cluster = if is_rr(i, rr) { "route_reflector_cluster_id = \"1.0.0.1\"\n" } else { "" };
    let mut s = format!(
        "[node]\nname = \"n{i}\"\naddress = \"{}/16\"\n\n[bgp]\nhold_time = 30\nconnect_retry_time = 1\nconnect_retry_max = 2\n{cluster}\n\
         [[advertise]]\nprefix = \"{}\"\n\n[dataplane]\nmode = \"kernel\"\n\n[control]\nsocket = \"{}\"\n\n",
        addr(i),
        block(i),
        socket.display()
    );
    for j in 0..n {
        let cluster = if is_rr(j, rr) { "route_reflector_cluster_id = \"1.0.0.1\"\n" } else { "" };
        let _ = write!(s, "[[nodes]]\nname = \"n{j}\"\naddress = \"{}/16\"\n{cluster}\n", addr(j));
    }
    s
}

/// BIRD as Calico runs it: one iBGP protocol per peer (every other node,
/// or the reflectors; reflectors have every node as a client), the
/// node's block from a static blackhole, the kernel protocol exporting
/// what BGP learned.
fn bird_config(i: usize, n: usize, rr: bool) -> String {
    let mut s = format!(
        "log stderr {{ warning, error, fatal }};\nrouter id {};\nprotocol device {{ scan time 60; }}\n\
         protocol direct {{ ipv4; interface \"eth0\"; }}\n\
         protocol kernel {{ ipv4 {{ import none; export filter {{ if proto = \"own\" then reject; accept; }}; }}; \
         merge paths on; }}\n\
         protocol static own {{ ipv4; route {} blackhole; }}\n",
        addr(i),
        block(i)
    );
    let peers: Vec<usize> = (0..n).filter(|&j| j != i).filter(|&j| !rr || is_rr(i, rr) || is_rr(j, rr)).collect();
    for j in peers {
        let client = if is_rr(i, rr) && !is_rr(j, rr) { "  rr client;\n  rr cluster id 1.0.0.1;\n" } else { "" };
        let _ = write!(
            s,
            "protocol bgp p{j} {{\n  local {} as 64512;\n  neighbor {} as 64512;\n  direct;\n{client}  \
             hold time 30;\n  connect delay time 1;\n  connect retry time 1;\n  error wait time 1, 2;\n  \
             ipv4 {{ import all; export all; next hop self; }};\n}}\n",
            addr(i),
            addr(j)
        );
    }
    s
}

/// A netlink socket inside each node's namespace.
fn open_sockets(lan: &Lan) -> anyhow::Result<Vec<merle_netlink::Netlink>> {
    lan.hosts
        .iter()
        .map(|h| {
            crate::netns::spawn_in(&h.name, merle_netlink::Netlink::open)?
                .join()
                .map_err(|_| anyhow::anyhow!("netlink thread panicked"))??
                .map_err(|e| anyhow::anyhow!("netlink in {}: {e}", h.name))
        })
        .collect()
}

/// The unicast /26 routes of protocol `proto` in one node's kernel.
fn learned(nl: &mut merle_netlink::Netlink, proto: u8) -> anyhow::Result<usize> {
    let msgs = nl
        .dump(RouteNetlinkMessage::GetRoute(fib_sync::kernel::route_dump(false)))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(msgs
        .iter()
        .filter(|m| match m {
            RouteNetlinkMessage::NewRoute(r) => {
                r.header.destination_prefix_length == 26
                    && u8::from(r.header.protocol) == proto
                    && r.header.kind == RouteType::Unicast
            }
            _ => false,
        })
        .count())
}

/// One run's figures.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    /// None: not converged within the run's timeout.
    pub converged: Option<Duration>,
    /// Median resident memory of a node's speaker, after convergence.
    pub rss_kib: u64,
    /// The median of its private part (`RssAnon`: heap and stacks; the
    /// rest is the binary's and the libraries' pages, shared by every
    /// node's process).
    pub anon_kib: u64,
    /// The median CPU time a node's speaker had used by then.
    pub cpu: Duration,
}

/// One run of `target` with `n` nodes; `timeout` bounds the wait.
pub fn once(t: Target, lan: &Lan, n: usize, rr: bool, merled: &Path, timeout: Duration) -> anyhow::Result<Run> {
    let dir = TempDir::new("scale")?;
    let mut socks = open_sockets(lan)?;
    let proto = if t == Target::Merled { PROTO_MERLE } else { PROTO_BIRD };
    // Configs first, so that the start is only the processes.
    let mut argvs = Vec::new();
    for i in 0..n {
        let d = dir.path().join(format!("n{i}"));
        std::fs::create_dir_all(&d)?;
        let conf = d.join("conf");
        let argv: Vec<String> = match t {
            Target::Merled => {
                std::fs::write(&conf, merled_config(i, n, rr, &d.join("merled.sock")))?;
                vec![merled.display().to_string(), "--config".into(), conf.display().to_string()]
            }
            Target::Bird => {
                std::fs::write(&conf, bird_config(i, n, rr))?;
                let ctl = d.join("bird.ctl").display().to_string();
                vec!["bird".into(), "-f".into(), "-c".into(), conf.display().to_string(), "-s".into(), ctl]
            }
        };
        argvs.push((d, argv));
    }
    let start = Instant::now();
    let mut daemons = Vec::new();
    for (i, (d, argv)) in argvs.iter().enumerate() {
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let env: &[(&str, &str)] = if t == Target::Merled { &[("MERLE_LOG", "warn")] } else { &[] };
        daemons.push(Daemon::spawn(&lan.hosts[i], t.name(), &argv, &d.join("log"), env)?);
    }
    let mut done = vec![false; n];
    let mut left = n;
    let mut stuck = None;
    while left > 0 {
        crate::wait::check_interrupted()?;
        if let Some(i) = (0..n).find(|&i| !daemons[i].alive()) {
            bail!("node n{i}'s {} exited:\n{}", t.name(), daemons[i].log_tail(10));
        }
        if start.elapsed() > timeout {
            let late: Vec<usize> = (0..n).filter(|&i| !done[i]).take(5).collect();
            let counts: Vec<String> =
                late.iter().map(|&i| format!("n{i}: {}", learned(&mut socks[i], proto).unwrap_or(0))).collect();
            stuck = Some(format!(
                "{} of {n} nodes not converged after {timeout:?} ({}; want {} each)",
                left,
                counts.join(", "),
                n - 1
            ));
            break;
        }
        for i in 0..n {
            if !done[i] && learned(&mut socks[i], proto)? >= n - 1 {
                done[i] = true;
                left -= 1;
            }
        }
        if left > 0 {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let converged = stuck.is_none().then(|| start.elapsed());
    if let Some(why) = &stuck {
        println!("{n} nodes: {} {why}", t.name());
    }
    let pids: Vec<u32> = daemons.iter().filter_map(|d| d.pid()).collect();
    let kib = |field: &str| median(pids.iter().map(|&p| status_kib(p, field) as f64).collect()) as u64;
    let (rss_kib, anon_kib) = (kib("VmRSS:"), kib("RssAnon:"));
    let cpu = Duration::from_secs_f64(median(pids.iter().map(|&p| cpu_time(p).as_secs_f64()).collect()));
    // The figures are taken: SIGKILL, so that hundreds of speakers do
    // not each take their grace period in turn.
    for mut d in daemons {
        d.kill();
    }
    // The next run starts from a clean kernel. merled keeps its routes
    // in the kernel when it stops (graceful restart: forwarding goes on
    // while it restarts), so the speakers' routes are flushed here.
    for (i, s) in socks.iter_mut().enumerate() {
        for proto in ["198", "bird"] {
            lan.hosts[i].ip(&["route", "flush", "proto", proto])?;
        }
        if learned(s, PROTO_MERLE)? + learned(s, PROTO_BIRD)? != 0 {
            bail!("n{i}: routes of the last run left after the flush");
        }
    }
    Ok(Run { converged, rss_kib, anon_kib, cpu })
}

/// `testbed bench scale`: for each size and each topology, `runs`
/// alternating runs of merled and BIRD; medians and ratios.
pub fn run(sizes: &[usize], runs: u32, topologies: &[bool], merled: &Path) -> anyhow::Result<()> {
    for &n in sizes {
        if !(3..=1000).contains(&n) {
            bail!("--nodes {n}: between 3 and 1000");
        }
        // The kernel's neighbour table is shared by every namespace.
        let _room = crate::neigh::NeighRoom::for_mesh(n)?;
        let lan = lan(n).with_context(|| format!("building a LAN of {n} nodes"))?;
        for &rr in topologies {
            let topo = if rr { "two route reflectors" } else { "full mesh" };
            let timeout = Duration::from_secs(120 + n as u64);
            let mut res: Vec<(Target, Run)> = Vec::new();
            for r in 0..runs {
                for t in [Target::Merled, Target::Bird] {
                    let x = once(t, &lan, n, rr, merled, timeout)?;
                    let Some(took) = x.converged else { continue };
                    println!(
                        "{n} nodes, {topo}, run {}: {:>6} converged in {:>7.2} s, median RSS {:>6.1} MiB \
                         (private {:>5.1}), CPU {:>6.3} s per node",
                        r + 1,
                        t.name(),
                        took.as_secs_f64(),
                        x.rss_kib as f64 / 1024.0,
                        x.anon_kib as f64 / 1024.0,
                        x.cpu.as_secs_f64()
                    );
                    res.push((t, x));
                }
            }
            let med = |t: Target, f: fn(&Run) -> f64| {
                median(res.iter().filter(|(x, _)| *x == t).map(|(_, r)| f(r)).collect())
            };
            if let Some(t) = [Target::Merled, Target::Bird].into_iter().find(|t| !res.iter().any(|(x, _)| x == t)) {
                println!("== {n} nodes, {topo}: {} did not converge in any run", t.name());
                continue;
            }
            let secs = |r: &Run| r.converged.map_or(0.0, |d| d.as_secs_f64());
            let (ms, bs) = (med(Target::Merled, secs), med(Target::Bird, secs));
            let (mm, bm) =
                (med(Target::Merled, |r| r.rss_kib as f64 / 1024.0), med(Target::Bird, |r| r.rss_kib as f64 / 1024.0));
            let (ma, ba) = (
                med(Target::Merled, |r| r.anon_kib as f64 / 1024.0),
                med(Target::Bird, |r| r.anon_kib as f64 / 1024.0),
            );
            let (mc, bc) = (med(Target::Merled, |r| r.cpu.as_secs_f64()), med(Target::Bird, |r| r.cpu.as_secs_f64()));
            println!(
                "== {n} nodes, {topo}: merled {ms:.2} s, BIRD {bs:.2} s (merled/BIRD {:.2}); RSS per node merled \
                 {mm:.1} MiB, BIRD {bm:.1} MiB ({:.2}); private merled {ma:.1} MiB, BIRD {ba:.1} MiB ({:.2}); \
                 CPU per node merled {mc:.3} s, BIRD {bc:.3} s ({:.2}), all nodes together {:.1} and {:.1} CPU-s",
                ms / bs,
                mm / bm,
                ma / ba,
                mc / bc,
                mc * n as f64,
                bc * n as f64
            );
        }
    }
    Ok(())
}

/// `n` nodes on one /16 behind a bridge, with every host's neighbour
/// entry for every other and the bridge's entry for every host's MAC
/// written before the runs.
///
/// Without them, the N² ARP requests of a cold mesh are each flooded to
/// all N ports of one bridge, on this machine's two cores: at 400 nodes
/// the kernel's softirq work took 87% of the CPU and the first runs paid
/// for it, whichever speaker ran first. A real network spreads that over
/// N machines and a switch, so the testbed leaves it out.
fn lan(n: usize) -> anyhow::Result<Lan> {
    let lan = Lan::scale("scale", n, |i| format!("{}/16", addr(i)))?;
    let mac = |ns: &crate::netns::Netns| -> anyhow::Result<String> {
        let v: serde_json::Value = serde_json::from_str(&ns.ip(&["-j", "link", "show", "dev", "eth0"])?)?;
        v[0]["address"].as_str().map(str::to_owned).context("eth0 has no MAC address")
    };
    let macs: Vec<String> = lan.hosts.iter().map(mac).collect::<anyhow::Result<_>>()?;
    let dir = TempDir::new("scale-neigh")?;
    // `ip -batch` and `bridge -batch` in a namespace, from a file.
    let batch = |program: &str, ns: &str, file: &str, text: String| -> anyhow::Result<()> {
        let f = dir.path().join(file);
        std::fs::write(&f, text)?;
        crate::netns::run(std::process::Command::new(program).args(["-n", ns, "-batch"]).arg(&f)).map(|_| ())
    };
    let mut fdb = String::new();
    for (i, m) in macs.iter().enumerate() {
        let _ = writeln!(fdb, "fdb replace {m} dev p{i} master static");
    }
    batch("bridge", &lan.switch.name, "fdb", fdb)?;
    for (i, h) in lan.hosts.iter().enumerate() {
        let mut t = String::new();
        for (j, m) in macs.iter().enumerate().filter(|(j, _)| *j != i) {
            let _ = writeln!(t, "neigh replace {} lladdr {m} dev eth0 nud permanent", addr(j));
        }
        batch("ip", &h.name, &format!("n{i}"), t)?;
    }
    Ok(lan)
}
