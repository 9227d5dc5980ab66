//! Benchmarks against BIRD 2, run in namespaces on one LAN.
//!
//! `ingest` is bgperf-style: one BIRD process, the *tester*, runs `peers`
//! eBGP sessions to the *target*, each sending `prefixes` distinct IPv4
//! prefixes; the target re-advertises everything to a *monitor* (BIRD). The
//! clock starts when the tester's sessions are enabled (its routes loaded)
//! and stops when the monitor holds every route. With `cold`, as an outside
//! harness does, the clock starts with the tester process itself, whose
//! sessions come up as it loads its routes, so that loading competes with
//! the target for the two cores during the data phase. The target is
//! merled, then BIRD, alternating, with the same tester and monitor
//! configuration; its CPU time on the clock and its peak RSS are reported.
//!
//! ```text
//!   tester (BIRD, 10.0.0.11-)  --eBGP x peers-->  target (10.0.0.100-)  --eBGP-->  monitor (BIRD, 10.0.0.3)
//!                                                  target 10.0.0.2 ----------^
//! ```

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::bird::Bird;
use crate::merled::Merled;
use crate::netns::Lan;

use crate::wait;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Merled,
    Bird,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Self::Merled => "merled",
            Self::Bird => "BIRD 2",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Figures {
    pub elapsed: Duration,
    pub peak_rss_kib: u64,
    /// The target's CPU time (user and system) while the clock ran.
    pub cpu: Option<Duration>,
}

/// The CPU time of a process's threads so far (`schedstat`'s first field,
/// in nanoseconds, summed over `/proc/PID/task`): nanosecond resolution,
/// where `/proc/PID/stat` counts 10 ms ticks.
pub fn cpu_time(pid: u32) -> Duration {
    let ns: u64 = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
                .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    Duration::from_nanos(ns)
}

/// A field of `/proc/PID/status`, in kB (0 when the process is gone).
pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

fn prefix(n: u32) -> String {
    format!("{}.{}.{}.0/24", 20 + n / 65536, (n / 256) % 256, n % 256)
}

/// The tester: with `enabled`, its sessions start as it comes up.
fn tester_config(peers: u32, prefixes: u32, enabled: bool) -> String {
    let mut s = String::from(
        "log stderr { warning, error, fatal };\nrouter id 10.0.0.11;\nprotocol device { scan time 60; }\n",
    );
    for p in 0..peers {
        let _ = writeln!(s, "ipv4 table t{p};\nprotocol static s{p} {{\n  ipv4 {{ table t{p}; }};");
        for j in 0..prefixes {
            let _ = writeln!(s, "  route {} blackhole;", prefix(p * prefixes + j));
        }
        let _ = writeln!(
            s,
            "}}\nprotocol bgp b{p} {{\n  {}\n  local 10.0.0.{} as {};\n  neighbor 10.0.0.{} as 64512;\n  connect delay time 1;\n  ipv4 {{ table t{p}; import none; export all; }};\n}}",
            if enabled { "" } else { "disabled;" },
            11 + p,
            65101 + p,
            100 + p
        );
    }
    s
}

fn monitor_config() -> String {
    "log stderr { warning, error, fatal };\nrouter id 10.0.0.3;\nprotocol device { scan time 60; }\n\
     protocol bgp target { local 10.0.0.3 as 65200; neighbor 10.0.0.2 as 64512; ipv4 { import all; export none; }; }\n"
        .into()
}

fn bird_target_config(peers: u32) -> String {
    let mut s =
        String::from("log stderr { warning, error, fatal };\nrouter id 10.0.0.2;\nprotocol device { scan time 60; }\n");
    for p in 0..peers {
        let _ = writeln!(
            s,
            "protocol bgp t{p} {{ local 10.0.0.{} as 64512; neighbor 10.0.0.{} as {}; passive on; ipv4 {{ import all; export none; }}; }}",
            100 + p,
            11 + p,
            65101 + p
        );
    }
    s.push_str("protocol bgp monitor { local 10.0.0.2 as 64512; neighbor 10.0.0.3 as 65200; ipv4 { import none; export all; }; }\n");
    s
}

fn merled_target_config(peers: u32) -> String {
    let mut s = String::from(
        "[node]\nname = \"target\"\naddress = \"10.0.0.2/24\"\n\n[bgp]\nnode_mesh = false\nconnect_retry_time = 1\nconnect_retry_max = 2\n\n",
    );
    for p in 0..peers {
        let _ =
            writeln!(s, "[[bgp.peers]]\naddress = \"10.0.0.{}\"\nas_number = {}\npassive = true\n", 11 + p, 65101 + p);
    }
    s.push_str("[[bgp.peers]]\naddress = \"10.0.0.3\"\nas_number = 65200\nexport_learned = true\n\n");
    // BIRD here exports to no kernel table either: the bench is BGP only.
    s.push_str("[log]\nlevel = \"warn\"\n\n[fib]\nenabled = false\n\n[control]\nsocket = \"{socket}\"\n");
    s
}

/// Peak resident set of a process, from /proc (VmHWM), in KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM:")
}

fn route_count(b: &Bird) -> u64 {
    // "N of N routes for N networks in table master4"
    b.birdc(&["show", "route", "count"])
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.contains("routes for")).and_then(|l| l.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// One ingest run with `target`.
pub fn ingest_once(
    target: Target,
    peers: u32,
    prefixes: u32,
    merled: &Path,
    merlectl: &Path,
    tester_conf: &str,
    cold: bool,
) -> anyhow::Result<Figures> {
    let lan = Lan::new("bn", 3)?;
    // BIRD locks sessions per neighbor address, so each tester session
    // goes to its own address of the target.
    for p in 0..peers {
        lan.hosts[0].add_addr("eth0", &format!("10.0.0.{}/24", 11 + p))?;
        lan.hosts[1].add_addr("eth0", &format!("10.0.0.{}/24", 100 + p))?;
    }
    // Resolve every address pair once, so no session's first SYN waits on
    // ARP (a lost SYN costs a 1 s + 2 s retransmission and skews the clock).
    for p in 0..peers {
        let (src, dst) = (format!("10.0.0.{}", 11 + p), format!("10.0.0.{}", 100 + p));
        wait::poll("tester-target connectivity", Duration::from_secs(10), || {
            lan.hosts[0].exec(&["ping", "-c1", "-W1", "-I", &src, &dst]).ok()
        })?;
    }
    wait::poll("target-monitor connectivity", Duration::from_secs(10), || {
        lan.hosts[1].exec(&["ping", "-c1", "-W1", "10.0.0.3"]).ok()
    })?;
    let monitor = Bird::start(&lan.hosts[2], "monitor", &monitor_config())?;
    let (_merled, _bird_target, pid): (Option<Merled>, Option<Bird>, u32) = match target {
        Target::Merled => {
            let m = Merled::start(&lan.hosts[1], "target", merled, merlectl, &merled_target_config(peers))?;
            let pid = m.daemon.pid().context("merled pid")?;
            (Some(m), None, pid)
        }
        Target::Bird => {
            let b = Bird::start(&lan.hosts[1], "target", &bird_target_config(peers))?;
            let pid = b.daemon.pid().context("bird pid")?;
            (None, Some(b), pid)
        }
    };
    let want = u64::from(peers) * u64::from(prefixes);
    let (start, cpu0, tester) = if cold {
        wait::poll("monitor session", Duration::from_secs(60), || monitor.established("target").then_some(()))?;
        eprintln!("  [{}] target up; starting the tester with its sessions enabled", target.name());
        let (start, cpu0) = (Instant::now(), cpu_time(pid));
        (start, cpu0, Bird::start(&lan.hosts[0], "tester", tester_conf)?)
    } else {
        eprintln!("  [{}] target up; starting the tester", target.name());
        let tester = Bird::start(&lan.hosts[0], "tester", tester_conf)?;
        // Wait for the tester to have loaded its routes and the monitor session.
        wait::poll("tester ready", Duration::from_secs(120), || {
            tester.birdc(&["show", "route", "count"]).ok().filter(|s| s.contains("routes for")).map(|_| ())
        })?;
        wait::poll("monitor session", Duration::from_secs(60), || monitor.established("target").then_some(()))?;
        eprintln!("  [{}] tester ready; enabling {peers} sessions", target.name());
        let (start, cpu0) = (Instant::now(), cpu_time(pid));
        for p in 0..peers {
            tester.birdc(&["enable", &format!("b{p}")])?;
        }
        (start, cpu0, tester)
    };
    let trace = std::env::var_os("MERLE_BENCH_TRACE").is_some();
    // Each poll also asks the tester for its sessions. Left alone, the
    // tester BIRD sometimes sat for about 3 s mid-run, whichever the target;
    // talking to its CLI keeps it moving, so both targets are measured the
    // same, steady way.
    // One CLI call to each per poll, every 50 ms, keeps the clock's
    // resolution well under the difference being measured.
    wait::until("monitor holds every route", Duration::from_secs(600), Duration::from_millis(50), || {
        let c = route_count(&monitor);
        let up = tester
            .birdc(&["show", "protocols"])
            .map(|s| s.lines().filter(|l| l.starts_with('b') && l.contains("Established")).count())
            .unwrap_or(0);
        if trace {
            eprintln!("    t={:.2}s monitor={c} tester sessions up={up}", start.elapsed().as_secs_f64());
        }
        (c >= want).then_some(())
    })
    .with_context(|| format!("monitor has {} of {want} routes", route_count(&monitor)))?;
    let elapsed = start.elapsed();
    let cpu = cpu_time(pid).saturating_sub(cpu0);
    if std::env::var_os("MERLE_BENCH_SMAPS").is_some() {
        let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
        let mut head = String::new();
        for l in smaps.lines() {
            if l.chars().next().is_some_and(|c| c.is_ascii_hexdigit()) && l.contains('-') && !l.starts_with("Rss") {
                head = l.to_owned();
            } else if let Some(v) = l.strip_prefix("Rss:") {
                let kib: u64 = v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0);
                if kib > 1024 {
                    eprintln!("    smaps {kib:>8} KiB  {head}");
                }
            }
        }
    }
    if let Some(m) = &_merled {
        // What the exact Adj-RIB-Out costs at the table's peak.
        if let Ok(st) = m.status() {
            let r = &st["rib"];
            println!(
                "  [merled] RSS now {:.1} MiB (peak {:.1}); RIB {} prefixes; Adj-RIB-Out {:.1} KiB for {} sessions, {} withdrawals pending",
                status_kib(pid, "VmRSS:") as f64 / 1024.0,
                peak_rss_kib(pid) as f64 / 1024.0,
                r["prefixes"],
                r["adj_rib_out_bytes"].as_f64().unwrap_or(0.0) / 1024.0,
                st["peers"].as_array().map_or(0, |p| p.len()),
                r["withdrawals_pending"]
            );
        }
    }
    if trace {
        let stats = monitor.birdc(&["show", "protocols", "all", "target"]).unwrap_or_default();
        for l in stats.lines().filter(|l| l.contains("updates:") || l.contains("withdraws:")) {
            eprintln!("    monitor {}", l.trim());
        }
        // What the target's session to the monitor carried.
        let ss = lan.hosts[1].exec(&["ss", "-tin", "dst", "10.0.0.3"]).unwrap_or_default();
        for l in ss.lines().filter(|l| l.contains("bytes_sent")) {
            let f: Vec<&str> = l
                .split_whitespace()
                .filter(|w| w.starts_with("bytes_sent") || w.starts_with("segs_out") || w.starts_with("data_segs_out"))
                .collect();
            eprintln!("    target->monitor {}", f.join(" "));
        }
    }
    Ok(Figures { elapsed, peak_rss_kib: peak_rss_kib(pid), cpu: Some(cpu) })
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Runs `runs` rounds of `once` with merled, then BIRD 2, as the target;
/// prints each run, then under `title` the medians and the merled/BIRD
/// ratios, with the goals (time, RSS, CPU) when there are some.
pub fn alternate(
    runs: u32,
    title: &str,
    goals: Option<(f64, f64, f64)>,
    mut once: impl FnMut(Target) -> anyhow::Result<Figures>,
) -> anyhow::Result<()> {
    let mut results: Vec<(Target, Figures)> = Vec::new();
    for r in 0..runs {
        for t in [Target::Merled, Target::Bird] {
            let f = once(t)?;
            println!(
                "run {}: {:>7} {:>8.2} s  peak RSS {:>7.1} MiB{}",
                r + 1,
                t.name(),
                f.elapsed.as_secs_f64(),
                f.peak_rss_kib as f64 / 1024.0,
                f.cpu.map(|c| format!("  CPU {:.2} s", c.as_secs_f64())).unwrap_or_default()
            );
            results.push((t, f));
        }
    }
    let med = |t: Target, f: &dyn Fn(&Figures) -> f64| {
        median(results.iter().filter(|(x, _)| *x == t).map(|(_, r)| f(r)).collect())
    };
    let secs = |f: &Figures| f.elapsed.as_secs_f64();
    let mib = |f: &Figures| f.peak_rss_kib as f64 / 1024.0;
    let (mt, bt) = (med(Target::Merled, &secs), med(Target::Bird, &secs));
    let (mr, br) = (med(Target::Merled, &mib), med(Target::Bird, &mib));
    let cpu = |f: &Figures| f.cpu.map_or(0.0, |c| c.as_secs_f64());
    let has_cpu = results.iter().all(|(_, f)| f.cpu.is_some());
    let (mc, bc) = (med(Target::Merled, &cpu), med(Target::Bird, &cpu));
    let goal = |g: Option<f64>| g.map(|g| format!(" (goal <= {g:.2})")).unwrap_or_default();
    let cpus = |c: f64| if has_cpu { format!(", CPU {c:.2} s") } else { String::new() };
    println!("\n{title}, {runs} runs, medians:");
    println!("  merled: {mt:.2} s, peak RSS {mr:.1} MiB{}", cpus(mc));
    println!("  BIRD 2: {bt:.2} s, peak RSS {br:.1} MiB{}", cpus(bc));
    println!("  time ratio merled/BIRD: {:.2}{}", mt / bt, goal(goals.map(|g| g.0)));
    if has_cpu {
        println!("  CPU ratio merled/BIRD:  {:.2}{}", mc / bc, goal(goals.map(|g| g.2)));
    }
    println!("  RSS ratio merled/BIRD:  {:.2}{}", mr / br, goal(goals.map(|g| g.1)));
    Ok(())
}

/// The ingest benchmark: `runs` rounds of merled then BIRD as the target.
/// The goals (issue 17): time <= 1.0x BIRD's, peak RSS <= 1.2x, target CPU
/// <= 0.8x.
pub fn ingest(peers: u32, prefixes: u32, runs: u32, cold: bool, merled: &Path, merlectl: &Path) -> anyhow::Result<()> {
    let tester_conf = tester_config(peers, prefixes, cold);
    let title = format!(
        "ingest {peers} peers x {prefixes} prefixes = {} routes{}",
        u64::from(peers) * u64::from(prefixes),
        if cold { ", clock from the tester's start" } else { "" }
    );
    alternate(runs, &title, Some((1.0, 1.2, 0.8)), |t| {
        ingest_once(t, peers, prefixes, merled, merlectl, &tester_conf, cold)
    })
}
