//! The FIB benchmark: install and remove N routes in a namespace through
//! fib-sync, through `ip -batch`, and through BIRD 2's kernel protocol, and
//! the latency of one route change through fib-sync.
//!
//! Every method is timed the same way: from the moment it is told to act
//! until a netlink listener in the namespace has seen the kernel announce
//! the last route (RTM_NEWROUTE on install, RTM_DELROUTE on removal).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use fib_sync::{Fib, NodeNet, Owner, Settings};
use ipnet::{IpNet, Ipv4Net};
use netlink_packet_core::{NetlinkBuffer, NlasIterator};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::bench::median;
use crate::bird::Bird;
use crate::netns::Netns;
use crate::TempDir;

const MERLE_PROTO: u8 = 198;
const BIRD_PROTO: u8 = 12;
const GATEWAY: &str = "10.0.0.2";
const WAIT: Duration = Duration::from_secs(120);

/// The i-th benchmark prefix: /28s from 10.128.0.0/9.
fn prefix(i: u32) -> Ipv4Net {
    let base = u32::from(Ipv4Addr::new(10, 128, 0, 0));
    Ipv4Net::new(Ipv4Addr::from(base + i * 16), 28).unwrap_or_default()
}

/// A /32 route event (the latency probes): added or removed, its address,
/// and when it was read.
#[derive(Debug, Clone, Copy)]
struct Probe {
    new: bool,
    addr: Ipv4Addr,
    at: Instant,
}

/// Counts of route events of the protocol under test, and the time of the
/// last one.
#[derive(Debug, Default)]
struct Counts {
    new: AtomicU64,
    del: AtomicU64,
    last: Mutex<Option<Instant>>,
}

/// A netlink listener on the IPv4 route group inside a namespace. It reads
/// only the few header bytes it needs, so that it keeps up with any of the
/// methods and never becomes what is measured.
struct Listener {
    counts: Arc<Counts>,
    probes: Receiver<Probe>,
    stop: Arc<AtomicBool>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTA_DST: u16 = 1;

/// (type, protocol, dst_len, RTA_DST as IPv4) of one IPv4 route message,
/// read from the header and attributes without decoding the rest.
fn route_header(m: &[u8]) -> Option<(u16, u8, u8, Option<Ipv4Addr>)> {
    let kind = NetlinkBuffer::new_checked(m).ok()?.message_type();
    if (kind != RTM_NEWROUTE && kind != RTM_DELROUTE) || m.len() < 28 || m[16] != libc::AF_INET as u8 {
        return None;
    }
    let (dst_len, protocol) = (m[17], m[21]);
    let dst = NlasIterator::new(&m[28..])
        .map_while(Result::ok)
        .find(|a| a.kind() == RTA_DST)
        .and_then(|a| <[u8; 4]>::try_from(a.value()).ok())
        .map(Ipv4Addr::from);
    Some((kind, protocol, dst_len, dst))
}

impl Listener {
    fn start(ns: &Netns, protocol: u8) -> anyhow::Result<Self> {
        let (tx, probes) = std::sync::mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts::default());
        let (stop2, counts2) = (stop.clone(), counts.clone());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        ns.spawn(move || {
            let sock = (|| -> std::io::Result<Socket> {
                let mut s = Socket::new(NETLINK_ROUTE)?;
                s.bind(&SocketAddr::new(0, 0))?;
                s.add_membership(libc::RTNLGRP_IPV4_ROUTE)?;
                merle_netlink::grow_rcvbuf(&s, 512 * 1024 * 1024);
                nix::sys::socket::setsockopt(
                    &s,
                    nix::sys::socket::sockopt::ReceiveTimeout,
                    &nix::sys::time::TimeVal::new(0, 100_000),
                )?;
                Ok(s)
            })();
            let sock = match sock {
                Ok(s) => {
                    let _ = ready_tx.send(Ok(()));
                    s
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
            while !stop2.load(Ordering::Relaxed) {
                buf.clear();
                match sock.recv(&mut buf, 0) {
                    Ok(_) => {}
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                        eprintln!("bench listener: ENOBUFS, route events lost");
                        continue;
                    }
                    Err(_) => continue,
                }
                let at = Instant::now();
                let mut seen = false;
                for m in merle_netlink::messages(&buf).map_while(Result::ok) {
                    if let Some((kind, proto, dst_len, dst)) = route_header(m.into_inner()) {
                        if proto == protocol {
                            seen = true;
                            let c = if kind == RTM_NEWROUTE { &counts2.new } else { &counts2.del };
                            c.fetch_add(1, Ordering::Relaxed);
                        }
                        if let (32, Some(addr)) = (dst_len, dst) {
                            let _ = tx.send(Probe { new: kind == RTM_NEWROUTE, addr, at });
                        }
                    }
                }
                if seen {
                    *counts2.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(at);
                }
            }
        })?;
        ready_rx.recv().context("listener thread")?.context("listener socket")?;
        Ok(Self { counts, probes, stop })
    }

    /// Waits until `n` events of this kind have been seen; returns the
    /// time the last one was read.
    fn count(&self, new: bool, n: u64) -> anyhow::Result<Instant> {
        let c = if new { &self.counts.new } else { &self.counts.del };
        let deadline = Instant::now() + WAIT;
        loop {
            let seen = c.load(Ordering::Relaxed);
            if seen >= n {
                break;
            }
            if Instant::now() > deadline {
                bail!("saw {seen} of {n} route events before the timeout");
            }
            crate::wait::check_interrupted()?;
            std::thread::sleep(Duration::from_millis(1));
        }
        self.counts.last.lock().unwrap_or_else(|p| p.into_inner()).context("no event time")
    }

    fn reset(&self) {
        self.counts.new.store(0, Ordering::Relaxed);
        self.counts.del.store(0, Ordering::Relaxed);
    }

    /// Waits for the event of one /32.
    fn probe(&self, new: bool, addr: Ipv4Addr) -> anyhow::Result<Instant> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self.probes.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(e) if e.new == new && e.addr == addr => return Ok(e.at),
                Ok(_) => {}
                Err(_) => bail!("no event for {addr}/32"),
            }
        }
    }
}

fn node() -> anyhow::Result<Netns> {
    let ns = Netns::new("fibbench")?;
    ns.ip(&["link", "add", "eth0", "type", "veth", "peer", "name", "eth0p"])?;
    ns.ip(&["link", "set", "eth0p", "up"])?;
    ns.ip(&["link", "set", "eth0", "up"])?;
    ns.add_addr("eth0", "10.0.0.1/24")?;
    Ok(ns)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    FibSync,
    IpBatch,
    Bird,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Self::FibSync => "fib-sync",
            Self::IpBatch => "ip -batch",
            Self::Bird => "BIRD 2",
        }
    }
}

fn settings() -> Settings {
    Settings {
        owner: Owner { table: 254, protocol: MERLE_PROTO },
        vxlan_vni: 4096,
        vxlan_port: 4789,
        underlay_mtu: 1500,
        pools: vec![],
        node: NodeNet { v4: "10.0.0.1/24".parse().ok(), v6: None },
        own_blocks: vec![],
        sweep_after: Duration::from_secs(3600),
    }
}

/// One install and one removal of `n` routes: (install, remove) times.
fn once(m: Method, n: u32, latency: &mut Vec<f64>) -> anyhow::Result<(Duration, Duration)> {
    let ns = node()?;
    let l = Listener::start(&ns, if m == Method::Bird { BIRD_PROTO } else { MERLE_PROTO })?;
    let gw: IpAddr = GATEWAY.parse()?;
    let n_us = u64::from(n);
    match m {
        Method::FibSync => {
            let fib = ns.spawn(move || Fib::start(settings()))?.join().map_err(|_| anyhow::anyhow!("panic"))???;
            let all: Vec<(IpNet, Vec<IpAddr>)> = (0..n).map(|i| (IpNet::V4(prefix(i)), vec![gw])).collect();
            let t0 = Instant::now();
            fib.routes(all);
            let install = l.count(true, n_us)? - t0;
            // Single changes with the table full: add one, remove it.
            for i in 0..100u32 {
                let addr = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 127, 0, 0)) + i);
                let p = IpNet::V4(Ipv4Net::new(addr, 32)?);
                let t = Instant::now();
                fib.routes(vec![(p, vec![gw])]);
                latency.push((l.probe(true, addr)? - t).as_secs_f64() * 1e3);
                let t = Instant::now();
                fib.routes(vec![(p, vec![])]);
                latency.push((l.probe(false, addr)? - t).as_secs_f64() * 1e3);
            }
            l.reset();
            let t1 = Instant::now();
            fib.routes((0..n).map(|i| (IpNet::V4(prefix(i)), vec![])).collect());
            let remove = l.count(false, n_us)? - t1;
            fib.stop();
            Ok((install, remove))
        }
        Method::IpBatch => {
            let dir = TempDir::new("fibbench")?;
            let add = dir.path().join("add");
            let del = dir.path().join("del");
            let mut a = String::with_capacity(n as usize * 48);
            let mut d = String::with_capacity(n as usize * 48);
            for i in 0..n {
                a += &format!("route add {} via {GATEWAY} proto {MERLE_PROTO}\n", prefix(i));
                d += &format!("route del {} via {GATEWAY} proto {MERLE_PROTO}\n", prefix(i));
            }
            std::fs::write(&add, a)?;
            std::fs::write(&del, d)?;
            let t0 = Instant::now();
            ns.ip(&["-batch", add.to_str().context("path")?])?;
            let install = l.count(true, n_us)? - t0;
            let t1 = Instant::now();
            ns.ip(&["-batch", del.to_str().context("path")?])?;
            let remove = l.count(false, n_us)? - t1;
            Ok((install, remove))
        }
        Method::Bird => {
            let dir = TempDir::new("fibbench-bird")?;
            let routes = dir.path().join("routes.conf");
            let mut s = String::with_capacity(n as usize * 40);
            for i in 0..n {
                s += &format!("route {} via {GATEWAY};\n", prefix(i));
            }
            std::fs::write(&routes, s)?;
            let conf = format!(
                "router id 10.0.0.1;\nprotocol device {{ }}\n\
                 protocol static s1 {{\nipv4;\ninclude \"{}\";\n}}\n\
                 protocol kernel k1 {{ disabled; ipv4 {{ export all; }}; }}\n",
                routes.display()
            );
            let bird = Bird::start(&ns, "fibbench", &conf)?;
            crate::wait::poll("BIRD's static routes", WAIT, || {
                let out = bird.birdc(&["show", "route", "count"]).ok()?;
                out.contains(&format!("{n} of {n} routes")).then_some(())
            })?;
            let t0 = Instant::now();
            bird.birdc(&["enable", "k1"])?;
            let install = l.count(true, n_us)? - t0;
            let t1 = Instant::now();
            bird.birdc(&["disable", "k1"])?;
            let remove = l.count(false, n_us)? - t1;
            Ok((install, remove))
        }
    }
}

/// `runs` rounds of the three methods, then medians and ratios.
pub fn run(routes: u32, runs: u32) -> anyhow::Result<()> {
    let methods = [Method::FibSync, Method::IpBatch, Method::Bird];
    let mut res: Vec<(Method, f64, f64)> = Vec::new();
    let mut latency = Vec::new();
    for r in 0..runs {
        for m in methods {
            let (i, d) = once(m, routes, &mut latency)?;
            let (ri, rd) = (f64::from(routes) / i.as_secs_f64(), f64::from(routes) / d.as_secs_f64());
            println!(
                "run {}: {:>9}  install {:>6.3} s ({:>9.0} routes/s)  remove {:>6.3} s ({:>9.0} routes/s)",
                r + 1,
                m.name(),
                i.as_secs_f64(),
                ri,
                d.as_secs_f64(),
                rd
            );
            res.push((m, ri, rd));
        }
    }
    let med = |m: Method, f: fn(&(Method, f64, f64)) -> f64| median(res.iter().filter(|x| x.0 == m).map(f).collect());
    println!("\nFIB install/remove of {routes} routes, {runs} runs, medians (routes/s):");
    for m in methods {
        println!("  {:>9}: install {:>9.0}  remove {:>9.0}", m.name(), med(m, |x| x.1), med(m, |x| x.2));
    }
    for (other, goal) in [(Method::IpBatch, ">= 2"), (Method::Bird, "> 1")] {
        println!(
            "  fib-sync / {}: install {:.2}, remove {:.2} (goal {goal})",
            other.name(),
            med(Method::FibSync, |x| x.1) / med(other, |x| x.1),
            med(Method::FibSync, |x| x.2) / med(other, |x| x.2)
        );
    }
    latency.sort_by(f64::total_cmp);
    let pct = |q: f64| latency.get(((latency.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0.0);
    println!(
        "  single change with {routes} routes installed, {} samples: median {:.3} ms, p99 {:.3} ms, max {:.3} ms (goal <= 10 ms)",
        latency.len(),
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    Ok(())
}
