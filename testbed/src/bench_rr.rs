//! Route-reflector fan-out: one reflector (the *target*) serves `clients`
//! iBGP route-reflector clients, each advertising `prefixes` prefixes. The
//! clock starts when the clients' sessions are enabled and stops when every
//! client holds every route (its own and all reflected ones). merled and
//! BIRD 2 alternate as the reflector, with the same clients.
//!
//! All clients are BGP protocols of one BIRD process, each with its own
//! table, router ID and address (BIRD allows one session per neighbor
//! address, and a reflected route carrying the receiver's own router ID as
//! ORIGINATOR_ID would be dropped as a loop):
//!
//! ```text
//!   clients (BIRD, 10.10.2.1-N, tables t0..)  --iBGP x N-->  reflector (10.10.3.1-N)
//! ```

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::bench::{alternate, peak_rss_kib, Figures, Target};
use crate::bird::Bird;
use crate::merled::Merled;
use crate::netns::Lan;
use crate::wait;

const CLUSTER_ID: &str = "1.0.0.1";

fn client_addr(c: u32) -> String {
    format!("10.10.2.{}", c + 1)
}

fn reflector_addr(c: u32) -> String {
    format!("10.10.3.{}", c + 1)
}

/// The `j`th prefix of client `c`: distinct /24s from 20.0.0.0 on.
fn prefix(c: u32, j: u32, prefixes: u32) -> String {
    let n = c * prefixes + j;
    format!("{}.{}.{}.0/24", 20 + (n >> 16), (n >> 8) & 0xff, n & 0xff)
}

fn clients_config(clients: u32, prefixes: u32) -> String {
    let mut s = String::from(
        "log stderr { warning, error, fatal };\nrouter id 10.10.2.1;\nprotocol device { scan time 60; }\n\
         protocol direct { ipv4; }\n",
    );
    for c in 0..clients {
        let _ = writeln!(s, "ipv4 table t{c};\nprotocol static s{c} {{\n  ipv4 {{ table t{c}; }};");
        for j in 0..prefixes {
            let _ = writeln!(s, "  route {} blackhole;", prefix(c, j, prefixes));
        }
        let _ = writeln!(
            s,
            "}}\nprotocol bgp c{c} {{\n  disabled;\n  router id {local};\n  local {local} as 64512;\n  neighbor {} as 64512;\n  direct;\n  connect delay time 1;\n  ipv4 {{ table t{c}; igp table master4; gateway recursive; import all; export all; }};\n}}",
            reflector_addr(c),
            local = client_addr(c),
        );
    }
    s
}

fn bird_reflector_config(clients: u32) -> String {
    let mut s = String::from(
        "log stderr { warning, error, fatal };\nrouter id 10.10.3.1;\nprotocol device { scan time 60; }\n",
    );
    for c in 0..clients {
        let _ = writeln!(
            s,
            "protocol bgp c{c} {{ local {} as 64512; neighbor {} as 64512; rr client; rr cluster id {CLUSTER_ID}; passive on; direct; ipv4 {{ import all; export all; }}; }}",
            reflector_addr(c),
            client_addr(c)
        );
    }
    s
}

fn merled_reflector_config(clients: u32) -> String {
    let mut s = format!(
        "[node]\nname = \"rr\"\naddress = \"10.10.3.1/16\"\n\n[bgp]\nnode_mesh = false\nroute_reflector_cluster_id = \"{CLUSTER_ID}\"\n\n"
    );
    for c in 0..clients {
        let _ = writeln!(
            s,
            "[[bgp.peers]]\naddress = \"{}\"\nas_number = 64512\npassive = true\nroute_reflector_client = true\n",
            client_addr(c)
        );
    }
    // BIRD here exports to no kernel table either: the bench is BGP only.
    s.push_str("[log]\nlevel = \"warn\"\n\n[fib]\nenabled = false\n\n[control]\nsocket = \"{socket}\"\n");
    s
}

/// The clients whose tables hold fewer than `want` networks, from one
/// birdc call (a script of `show route table tN count` lines on stdin).
fn clients_missing(b: &Bird, clients: u32, want: u64) -> anyhow::Result<Vec<u32>> {
    let script: String = (0..clients).map(|c| format!("show route table t{c} count\n")).collect();
    let out = b.birdc_script(&script)?;
    // "N of N routes for K networks in table tC"
    let mut done = vec![false; clients as usize];
    for l in out.lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        let Some(i) = w.iter().position(|x| *x == "networks") else { continue };
        let n = i.checked_sub(1).and_then(|j| w[j].parse::<u64>().ok());
        let t = w.last().and_then(|t| t.strip_prefix('t')).and_then(|t| t.parse::<usize>().ok());
        if let (Some(n), Some(t)) = (n, t) {
            if n >= want && t < done.len() {
                done[t] = true;
            }
        }
    }
    Ok((0..clients).filter(|c| !done[*c as usize]).collect())
}

/// One fan-out run with `target` as the reflector.
pub fn fanout_once(
    target: Target,
    clients: u32,
    prefixes: u32,
    merled: &Path,
    merlectl: &Path,
    clients_conf: &str,
) -> anyhow::Result<Figures> {
    let lan = Lan::with_subnet("rr", 2, "10.10.0", "fd10:")?;
    for c in 0..clients {
        lan.hosts[0].add_addr("eth0", &format!("{}/16", client_addr(c)))?;
        lan.hosts[1].add_addr("eth0", &format!("{}/16", reflector_addr(c)))?;
    }
    // Resolve every address pair first, so no session's first SYN waits on
    // ARP.
    for c in 0..clients {
        let (src, dst) = (client_addr(c), reflector_addr(c));
        wait::poll("client-reflector connectivity", Duration::from_secs(10), || {
            lan.hosts[0].exec(&["ping", "-c1", "-W1", "-I", &src, &dst]).ok()
        })?;
    }
    let (_merled, _bird, pid): (Option<Merled>, Option<Bird>, u32) = match target {
        Target::Merled => {
            let m = Merled::start(&lan.hosts[1], "rr", merled, merlectl, &merled_reflector_config(clients))?;
            let pid = m.daemon.pid().context("merled pid")?;
            (Some(m), None, pid)
        }
        Target::Bird => {
            let b = Bird::start(&lan.hosts[1], "rr", &bird_reflector_config(clients))?;
            let pid = b.daemon.pid().context("bird pid")?;
            (None, Some(b), pid)
        }
    };
    let cl = Bird::start(&lan.hosts[0], "clients", clients_conf)?;
    let last = format!("t{}", clients - 1);
    wait::poll("clients loaded", Duration::from_secs(120), || {
        cl.birdc(&["show", "route", "table", &last, "count"]).ok().filter(|s| s.contains("networks")).map(|_| ())
    })?;
    let want = u64::from(clients) * u64::from(prefixes);
    let trace = std::env::var_os("MERLE_BENCH_TRACE").is_some();
    eprintln!("  [{}] reflector up; enabling {clients} clients", target.name());
    let start = Instant::now();
    cl.birdc(&["enable", "\"c*\""])?;
    wait::until("every client holds every route", Duration::from_secs(600), Duration::from_millis(50), || {
        let missing = clients_missing(&cl, clients, want).unwrap_or_else(|_| (0..clients).collect());
        if trace {
            let few = if missing.len() <= 3 { format!(" missing {missing:?}") } else { String::new() };
            eprintln!("    t={:.2}s clients incomplete={}{few}", start.elapsed().as_secs_f64(), missing.len());
        }
        missing.is_empty().then_some(())
    })
    .with_context(|| {
        let missing = clients_missing(&cl, clients, want).map(|m| m.len()).unwrap_or(clients as usize);
        format!("{missing} of {clients} clients lack some of the {want} routes")
    })?;
    Ok(Figures { elapsed: start.elapsed(), peak_rss_kib: peak_rss_kib(pid), cpu: None })
}

/// The fan-out benchmark: `runs` rounds of merled then BIRD as the
/// reflector.
pub fn fanout(clients: u32, prefixes: u32, runs: u32, merled: &Path, merlectl: &Path) -> anyhow::Result<()> {
    anyhow::ensure!((1..=250).contains(&clients), "--clients must be 1 to 250");
    anyhow::ensure!(prefixes >= 1 && u64::from(clients) * u64::from(prefixes) <= 1 << 24, "too many prefixes");
    let conf = clients_config(clients, prefixes);
    let title = format!(
        "route-reflector fan-out: {clients} clients x {prefixes} prefixes = {} routes per client",
        u64::from(clients) * u64::from(prefixes)
    );
    alternate(runs, &title, None, |t| fanout_once(t, clients, prefixes, merled, merlectl, &conf))
}
