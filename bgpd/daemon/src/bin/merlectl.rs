//! merlectl: asks a running merled for its sessions and routes.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use merled::api::{FibRoute, NodeStatus, Request, Response, RouteCounts, RouteEntry, RouteQuery};

#[derive(Debug, Parser)]
#[command(name = "merlectl", version, about = "Query a running merled")]
struct Args {
    /// merled's control socket.
    #[arg(long, global = true, default_value = conf::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// BGP sessions, one line per peer (as `calicoctl node status`).
    Status,
    /// Received and local routes, with the best path marked and its kernel
    /// state.
    Routes(RoutesArgs),
    /// The kernel routes fib-sync manages: installed, or why not.
    Fib,
    /// IP address management: pools, blocks and handles.
    #[command(subcommand)]
    Ipam(IpamCommand),
    /// The datapath: eBPF or kernel mode and why, the interfaces with their
    /// programs, the endpoint map, and the path and drop counters.
    Dataplane,
    /// Services: as configured, and what of them the datapath holds.
    #[command(subcommand)]
    Service(ServiceCommand),
    /// One peer in detail, or the configuration in effect.
    #[command(subcommand)]
    Show(ShowCommand),
}

#[derive(Debug, Subcommand)]
enum ShowCommand {
    /// Negotiated capabilities, timers, message and prefix counters, the
    /// last error and NOTIFICATIONs, uptime and flaps, and the likely
    /// cause of a session that stays down.
    Peer {
        /// The peer's address.
        #[arg(value_parser = parse_address)]
        address: String,
    },
    /// The configuration merled runs with, as TOML (passwords shown as
    /// set, never as they are).
    Config,
}

fn parse_address(s: &str) -> Result<String, String> {
    s.parse::<std::net::IpAddr>().map(|a| a.to_string()).map_err(|_| "expected an IP address".into())
}

#[derive(Debug, Subcommand)]
enum ServiceCommand {
    /// One line per service.
    List,
    /// One service: its frontends on this node and its backends.
    Show {
        /// The service's name.
        name: String,
    },
    /// Stores the services of a file (`[[services]]` tables, as in the
    /// configuration) in the datastore, so that every node programs them;
    /// each is checked first and a refused one changes nothing.
    Apply {
        /// The file.
        file: PathBuf,
    },
    /// Removes a service from the datastore.
    Delete {
        /// The service's name.
        name: String,
    },
}

#[derive(Debug, clap::Args)]
struct RoutesArgs {
    /// Only this prefix (10.0.0.0/24), or the longest prefix that holds
    /// this address (10.0.0.1).
    #[arg(long, value_parser = parse_prefix_match)]
    prefix: Option<String>,
    /// Only paths from this peer address, or "local" for this node's own.
    #[arg(long, value_parser = parse_peer)]
    peer: Option<String>,
    /// Only best paths.
    #[arg(long)]
    best: bool,
    /// Count prefixes and paths (per peer) instead of listing them.
    #[arg(long)]
    count: bool,
}

fn parse_prefix_match(s: &str) -> Result<String, String> {
    if s.parse::<ipnet::IpNet>().is_ok() || s.parse::<std::net::IpAddr>().is_ok() {
        Ok(s.to_owned())
    } else {
        Err("expected a prefix (10.0.0.0/24, fd00::/64) or an address (10.0.0.1)".into())
    }
}

fn parse_peer(s: &str) -> Result<String, String> {
    if s == "local" || s.parse::<std::net::IpAddr>().is_ok() {
        Ok(s.to_owned())
    } else {
        Err("expected a peer address or \"local\"".into())
    }
}

#[derive(Debug, Subcommand)]
enum IpamCommand {
    /// Pools with their use, blocks with their affinity, and handles.
    Show,
    /// Frees every address a handle holds (as `calicoctl ipam release`).
    Release {
        /// `<network>.<container id>[.<ifname>]`
        #[arg(long)]
        handle: String,
    },
}

fn query(socket: &PathBuf, req: &Request) -> anyhow::Result<Response> {
    let mut s = UnixStream::connect(socket)
        .with_context(|| format!("cannot connect to merled at {} (is it running?)", socket.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    s.write_all(&line)?;
    let mut resp = String::new();
    BufReader::new(&s).read_line(&mut resp).context("no answer from merled")?;
    let r: Response = serde_json::from_str(&resp).context("merled sent a malformed answer")?;
    if !r.ok {
        bail!("merled: {}", r.error.unwrap_or_default());
    }
    Ok(r)
}

/// Renders rows as a boxed table like calicoctl's.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let sep = format!("+{}+\n", w.iter().map(|n| "-".repeat(n + 2)).collect::<Vec<_>>().join("+"));
    let line = |cells: Vec<String>| {
        format!(
            "|{}|\n",
            cells.iter().enumerate().map(|(i, c)| format!(" {c:<0$} ", w[i])).collect::<Vec<_>>().join("|")
        )
    };
    let mut out = sep.clone();
    out += &line(headers.iter().map(|h| h.to_string()).collect());
    out += &sep;
    for r in rows {
        out += &line(r.clone());
    }
    out += &sep;
    out
}

fn since(unix: u64) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let t = std::time::UNIX_EPOCH + Duration::from_secs(unix);
    let s = humantime::format_rfc3339_seconds(t).to_string();
    // Time of day when recent, the date otherwise (as BIRD and calicoctl).
    if now.saturating_sub(unix) < 86_400 {
        s[11..19].to_owned()
    } else {
        s[..10].to_owned()
    }
}

fn print_status(s: &NodeStatus) {
    println!(
        "merled is running: node {} (router ID {}, AS {}), listening on {}",
        s.name, s.router_id, s.as_number, s.listen
    );
    if let Some(e) = &s.config_error {
        println!("CONFIGURATION ERROR (the previous configuration is still running): {e}");
    }
    if let Some(d) = &s.dataplane {
        println!("Dataplane: {} (requested {}): {}", d.mode, d.requested, d.reason);
    }
    match &s.fib {
        Some(f) => {
            println!(
                "FIB: table {}, protocol {}, {} routes installed, {} failed{}",
                f.table,
                f.protocol,
                f.installed,
                f.failed,
                if f.converged { "" } else { "; stale routes kept until the routing converges" }
            );
            if !f.devices.is_empty() {
                println!("VXLAN devices: {}", f.devices.join(", "));
            }
            println!("IPIP: {}", f.ipip);
        }
        None => println!("FIB: disabled ([fib] enabled = false)"),
    }
    let r = &s.rib;
    println!(
        "RIB: {} prefixes, {} attribute sets; Adj-RIB-Out {:.1} KiB, {} withdrawals pending",
        r.prefixes,
        r.attribute_sets,
        r.adj_rib_out_bytes as f64 / 1024.0,
        r.withdrawals_pending
    );
    println!();
    for (title, v6) in [("IPv4 BGP status", false), ("IPv6 BGP status", true)] {
        let rows: Vec<Vec<String>> = s
            .peers
            .iter()
            .filter(|p| p.address.contains(':') == v6)
            .map(|p| {
                let state = match p.state.as_str() {
                    "Established" => "up",
                    "Idle" if p.last_error.as_deref() == Some("stopped") => "down",
                    _ => "start",
                };
                vec![
                    p.address.clone(),
                    format!("{} ({})", p.peer_type, p.session),
                    state.to_owned(),
                    since(p.since_unix),
                    p.info.clone(),
                ]
            })
            .collect();
        println!("{title}");
        if rows.is_empty() {
            println!("No {} peers found.\n", if v6 { "IPv6" } else { "IPv4" });
        } else {
            println!("{}", table(&["PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO"], &rows));
        }
    }
}

fn print_routes(routes: &[RouteEntry]) {
    let rows: Vec<Vec<String>> = routes
        .iter()
        .map(|r| {
            vec![
                r.prefix.clone(),
                r.next_hop.clone(),
                if r.as_path_text.is_empty() { "(empty)".into() } else { r.as_path_text.clone() },
                r.origin.clone(),
                r.peer.clone(),
                match (&r.lost_at, r.multipath) {
                    (None, _) => "*".into(),
                    (Some(_), true) => "= (multipath)".into(),
                    (Some(step), false) => format!("lost: {step}"),
                },
                r.fib.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    if rows.is_empty() {
        println!("No routes.");
    } else {
        print!("{}", table(&["PREFIX", "NEXT HOP", "AS PATH", "ORIGIN", "PEER", "BEST", "KERNEL"], &rows));
    }
}

fn print_counts(c: &RouteCounts) {
    println!("{} prefixes, {} paths, {} best", c.prefixes, c.paths, c.best);
    if !c.peers.is_empty() {
        let rows: Vec<Vec<String>> =
            c.peers.iter().map(|p| vec![p.peer.clone(), p.paths.to_string(), p.best.to_string()]).collect();
        print!("{}", table(&["PEER", "PATHS", "BEST"], &rows));
    }
}

fn print_fib(routes: &[FibRoute]) {
    let rows: Vec<Vec<String>> =
        routes.iter().map(|r| vec![r.prefix.clone(), r.kernel.clone(), r.state.to_string()]).collect();
    if rows.is_empty() {
        println!("No FIB routes.");
    } else {
        print!("{}", table(&["PREFIX", "KERNEL ROUTE", "STATE"], &rows));
    }
}

fn print_ipam(r: &merle_ipam::report::Report) {
    let rows: Vec<Vec<String>> = r
        .pools
        .iter()
        .map(|p| {
            vec![
                p.cidr.to_string(),
                format!("/{}", p.block_size),
                p.blocks.to_string(),
                format!("{} ({})", p.used, percent(p.used_percent())),
                p.size_text(),
            ]
        })
        .collect();
    print!("{}", table(&["POOL", "BLOCK SIZE", "BLOCKS", "IN USE", "ADDRESSES"], &rows));
    let rows: Vec<Vec<String>> = r
        .blocks
        .iter()
        .map(|b| {
            vec![
                b.cidr.to_string(),
                b.affinity.clone().unwrap_or_else(|| "-".into()),
                format!("{}/{}", b.used, b.size),
                match b.empty_since {
                    Some(t) => format!(
                        "empty since {}",
                        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(t))
                    ),
                    None if b.used == 0 => "never used".into(),
                    None => "in use".into(),
                },
            ]
        })
        .collect();
    print!("{}", table(&["BLOCK", "AFFINITY", "USED", "STATE"], &rows));
    let rows: Vec<Vec<String>> = r
        .handles
        .iter()
        .map(|h| {
            let addrs: Vec<String> = h.addresses.iter().map(|a| a.to_string()).collect();
            let from = if h.borrowed { "borrowed from another node's block" } else { "own block" };
            vec![h.handle.clone(), h.node.clone(), addrs.join(", "), from.into()]
        })
        .collect();
    print!("{}", table(&["HANDLE", "NODE", "ADDRESSES", "SOURCE"], &rows));
}

/// A share in percent that never reads as 0 when something is used (a few
/// pods in an IPv6 pool are a vanishing fraction of it).
fn percent(p: f64) -> String {
    match p {
        0.0 => "0%".into(),
        p if p < 0.001 => "<0.001%".into(),
        p if p < 0.1 => format!("{p:.3}%"),
        p => format!("{p:.1}%"),
    }
}

fn print_dataplane(d: &merle_ebpf::report::Report) {
    println!("Mode: {} (requested {})", d.mode, d.requested);
    println!("Why: {}", d.reason);
    println!("Pin directory: {}", d.pin_dir);
    if let Some(v) = &d.version {
        println!(
            "Programs: version {}, {}",
            v,
            if d.adopted { "adopted from a previous merled" } else { "loaded by this merled" }
        );
    }
    println!("Outgoing NAT rules: {}", if d.nat_outgoing { "installed (nft table inet merle_nat)" } else { "none" });
    if d.mode != "ebpf" {
        return;
    }
    if let Some(ct) = &d.conntrack {
        let mut line = format!(
            "Conntrack: {} of {} entries at the last sweep ({} ms); {} sweeps deleted {} expired; next in {} s",
            ct.entries, ct.capacity, ct.last_sweep_ms, ct.sweeps, ct.deleted, ct.interval_seconds
        );
        if let Some(e) = &ct.error {
            line.push_str(&format!(" (last sweep failed: {e})"));
        }
        println!("{line}");
    }
    println!("\nInterfaces:");
    let rows: Vec<Vec<String>> = d
        .interfaces
        .iter()
        .map(|i| {
            vec![
                i.ifname.clone(),
                i.ifindex.to_string(),
                i.hook.name().into(),
                i.program.clone(),
                i.attach.clone(),
                i.program_id.to_string(),
            ]
        })
        .collect();
    print!("{}", table(&["INTERFACE", "IFINDEX", "HOOK", "PROGRAM", "ATTACH", "PROG ID"], &rows));
    println!("\nEndpoints ({}):", d.endpoints.len());
    let rows: Vec<Vec<String>> = d
        .endpoints
        .iter()
        .map(|e| vec![e.ip.clone(), e.ifname.clone(), e.ifindex.to_string(), e.pod_mac.clone()])
        .collect();
    print!("{}", table(&["ADDRESS", "VETH", "IFINDEX", "POD MAC"], &rows));
    println!("\nCounters:");
    let rows: Vec<Vec<String>> = d
        .counters
        .iter()
        .map(|c| {
            vec![
                c.hook.name().into(),
                c.reason.clone(),
                format!("{:?}", c.kind).to_lowercase(),
                c.packets.to_string(),
                c.bytes.to_string(),
            ]
        })
        .collect();
    print!("{}", table(&["HOOK", "REASON", "KIND", "PACKETS", "BYTES"], &rows));
}

fn service_state(s: &merle_ebpf::report::ServiceReport, d: &merle_ebpf::report::Report) -> String {
    if d.mode != "ebpf" {
        return "not programmed (kernel mode)".into();
    }
    if s.frontends.iter().all(|f| f.lb_id.is_some()) {
        "programmed".into()
    } else if d.services_error.is_some() {
        "refused (see below)".into()
    } else {
        "pending".into()
    }
}

fn print_services(d: &merle_ebpf::report::Report) {
    let rows: Vec<Vec<String>> = d
        .services
        .iter()
        .map(|r| {
            let s = &r.service;
            let outside: Vec<String> =
                s.external_ips.iter().chain(&s.load_balancer_ips).map(ToString::to_string).collect();
            let local = s.backends.iter().filter(|b| b.node == r.node).count();
            vec![
                s.name.clone(),
                format!("{:?}", s.protocol).to_lowercase(),
                format!("{}:{}", s.cluster_ip, s.port),
                s.node_port.map_or("-".into(), |p| p.to_string()),
                if outside.is_empty() { "-".into() } else { outside.join(",") },
                format!("{:?}", s.external_traffic_policy),
                format!("{:?}", s.mode).to_lowercase(),
                format!("{} ({local} here)", s.backends.len()),
                service_state(r, d),
            ]
        })
        .collect();
    print!(
        "{}",
        table(&["NAME", "PROTO", "CLUSTER-IP", "NODEPORT", "EXTERNAL", "POLICY", "MODE", "BACKENDS", "STATE"], &rows)
    );
    if let Some(e) = &d.services_error {
        println!("\nNot programmed as configured: {e}");
    }
    for e in &d.datastore_errors {
        println!("Left out of the datastore's services: {e}");
    }
}

fn print_service(r: &merle_ebpf::report::ServiceReport, d: &merle_ebpf::report::Report) {
    let s = &r.service;
    println!("Service: {} ({})", s.name, service_state(r, d));
    println!("Protocol: {:?}, mode {:?}, externalTrafficPolicy {:?}", s.protocol, s.mode, s.external_traffic_policy);
    println!("\nFrontends on {}:", r.node);
    let rows: Vec<Vec<String>> = r
        .frontends
        .iter()
        .map(|f| {
            vec![
                f.frontend.clone(),
                format!("{:?}", f.kind),
                if f.local { "local backends" } else { "all backends" }.into(),
                if f.dsr { "dsr" } else { "snat" }.into(),
                f.backends.to_string(),
                f.lb_id.map_or("-".into(), |i| i.to_string()),
                f.programmed_backends.map_or("-".into(), |i| i.to_string()),
            ]
        })
        .collect();
    print!("{}", table(&["FRONTEND", "KIND", "TABLE", "REMOTE", "BACKENDS", "LB ID", "IN MAPS"], &rows));
    println!("\nBackends:");
    let rows: Vec<Vec<String>> =
        s.backends.iter().map(|b| vec![b.address.to_string(), b.port.to_string(), b.node.clone()]).collect();
    print!("{}", table(&["ADDRESS", "PORT", "NODE"], &rows));
    if let Some(e) = &d.services_error {
        println!("\nNot programmed as configured: {e}");
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.command {
        Command::Status => {
            let r = query(&args.socket, &Request::Status)?;
            let s = r.status.context("merled sent no status")?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print_status(&s);
            }
        }
        Command::Routes(a) => {
            let q = RouteQuery { prefix: a.prefix, peer: a.peer, best: a.best, count: a.count };
            let r = query(&args.socket, &Request::Routes(q))?;
            if a.count {
                let c = r.route_counts.context("merled sent no counts")?;
                if args.json {
                    println!("{}", serde_json::to_string_pretty(&c)?);
                } else {
                    print_counts(&c);
                }
                return Ok(());
            }
            let routes = r.routes.context("merled sent no routes")?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&routes)?);
            } else {
                print_routes(&routes);
            }
        }
        Command::Fib => {
            let r = query(&args.socket, &Request::Fib)?;
            let routes = r.fib.context("merled sent no FIB")?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&routes)?);
            } else {
                print_fib(&routes);
            }
        }
        Command::Dataplane => {
            let r = query(&args.socket, &Request::Dataplane)?;
            let d = r.dataplane.context("merled sent no dataplane report")?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&d)?);
            } else {
                print_dataplane(&d);
            }
        }
        Command::Service(ServiceCommand::Apply { file }) => {
            let list = conf::services_file(&file)?;
            for s in list {
                let name = s.name.clone();
                query(&args.socket, &Request::ServicePut { service: Box::new(s) })?;
                println!("{name}: stored");
            }
        }
        Command::Service(ServiceCommand::Delete { name }) => {
            query(&args.socket, &Request::ServiceDelete { name: name.clone() })?;
            println!("{name}: removed");
        }
        Command::Service(cmd) => {
            let r = query(&args.socket, &Request::Dataplane)?;
            let d = r.dataplane.context("merled sent no dataplane report")?;
            match cmd {
                ServiceCommand::List => {
                    if args.json {
                        println!("{}", serde_json::to_string_pretty(&d.services)?);
                    } else {
                        print_services(&d);
                    }
                }
                ServiceCommand::Apply { .. } | ServiceCommand::Delete { .. } => {}
                ServiceCommand::Show { name } => {
                    let Some(s) = d.services.iter().find(|s| s.service.name == name) else {
                        bail!("no service {name:?} (merlectl service list shows them)");
                    };
                    if args.json {
                        println!("{}", serde_json::to_string_pretty(s)?);
                    } else {
                        print_service(s, &d);
                    }
                }
            }
        }
        Command::Show(ShowCommand::Peer { address }) => {
            let r = query(&args.socket, &Request::ShowPeer { address })?;
            let p = r.peer.context("merled sent no peer")?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&p)?);
            } else {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
                print!("{}", merled::show::peer(&p, now));
            }
        }
        Command::Show(ShowCommand::Config) => {
            let r = query(&args.socket, &Request::ShowConfig)?;
            let c = r.config.context("merled sent no configuration")?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&c)?);
            } else {
                print!("{}", toml::to_string(&merled::show::without_nulls(c)).context("cannot render TOML")?);
            }
        }
        Command::Ipam(IpamCommand::Show) => {
            let r = query(&args.socket, &Request::IpamShow)?;
            let rep = r.ipam.context("merled sent no IPAM report")?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&rep)?);
            } else {
                print_ipam(&rep);
            }
        }
        Command::Ipam(IpamCommand::Release { handle }) => {
            let r = query(&args.socket, &Request::IpamRelease { handle: handle.clone() })?;
            let freed = r.released.unwrap_or_default();
            if args.json {
                println!("{}", serde_json::to_string_pretty(&freed)?);
            } else if freed.is_empty() {
                println!("{handle}: no addresses held (nothing to release)");
            } else {
                let addrs: Vec<String> = freed.iter().map(|a| a.to_string()).collect();
                println!("{handle}: released {}", addrs.join(", "));
            }
        }
    }
    Ok(())
}
