//! `testbed`: runs merle testbeds in network namespaces.

use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use testbed::{demo, merled::sibling_binary};

#[derive(Debug, Parser)]
#[command(name = "testbed", about = "merle testbeds in network namespaces (run as root)")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Two merled nodes meshed over iBGP, each peered over eBGP with an FRR
    /// ToR. Prints sessions and routes, then tears down.
    Demo {
        /// Keep the testbed up until Ctrl-C instead of tearing it down.
        #[arg(long)]
        keep: bool,
    },
    /// Benchmarks against BIRD 2.
    #[command(subcommand)]
    Bench(Bench),
    /// Brings a containerlab topology file up in network namespaces (the
    /// same nodes, interface names, addresses and configs).
    Up {
        /// The `.clab.yml` file.
        file: std::path::PathBuf,
    },
    /// The nodes of a lab that is up, and their BGP sessions.
    Status {
        /// The lab's name (needed when several are up).
        lab: Option<String>,
    },
    /// Runs a command on a node (its network and mount namespaces).
    Exec {
        /// NODE, or LAB/NODE.
        node: String,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Stops a lab and removes its namespaces.
    Down {
        /// The lab's name (needed when several are up).
        lab: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// bgperf-style ingest: a BIRD tester sends peers x prefixes routes to
    /// the target, which re-advertises them to a BIRD monitor. Target:
    /// merled, then BIRD 2, alternating.
    Ingest {
        #[arg(long, default_value_t = 10)]
        peers: u32,
        #[arg(long, default_value_t = 100_000)]
        prefixes: u32,
        #[arg(long, default_value_t = 3)]
        runs: u32,
        /// Start the clock with the tester process, whose sessions come up
        /// while it loads its routes (an outside harness's way), instead
        /// of once its routes are loaded.
        #[arg(long)]
        cold: bool,
    },
    /// Sessions under whole-table work (issue 17): a million routes held,
    /// three new peers owed the table, a ROUTE-REFRESH, an export-policy
    /// edit by live reload and a dump at once, then a peer that stops
    /// reading; the longest gap to a 3 s-hold monitor, run after run.
    Sessions {
        #[arg(long, default_value_t = 3)]
        runs: u32,
    },
    /// Route-reflector fan-out: one reflector, `clients` iBGP clients (one
    /// BIRD process) each advertising `prefixes` prefixes; time until every
    /// client holds every route. Reflector: merled, then BIRD 2, alternating.
    Fanout {
        #[arg(long, default_value_t = 100)]
        clients: u32,
        #[arg(long, default_value_t = 100)]
        prefixes: u32,
        #[arg(long, default_value_t = 3)]
        runs: u32,
    },
    /// A cluster at scale: `nodes` speakers on one LAN each advertising a
    /// block, in a full mesh and then with two route reflectors; time until
    /// every kernel holds every block, and memory per node. merled and
    /// BIRD 2, alternating.
    Scale {
        /// Cluster sizes, comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = [50, 100, 200])]
        nodes: Vec<usize>,
        #[arg(long, default_value_t = 3)]
        runs: u32,
        /// `mesh`, `rr` (two route reflectors) or `both`.
        #[arg(long, default_value = "mesh", value_parser = ["mesh", "rr", "both"])]
        topology: String,
    },
    /// FIB programming: install and remove `routes` kernel routes in a
    /// namespace through fib-sync, `ip -batch` and BIRD 2's kernel
    /// protocol, alternating; and fib-sync's single-change latency.
    Fib {
        #[arg(long, default_value_t = 100_000)]
        routes: u32,
        #[arg(long, default_value_t = 3)]
        runs: u32,
    },
    /// CNI: ADD and DEL latency (p50, p99) over `pods` pods one by one, and
    /// `pods` ADDs then DELs all at once, for merle-cni and the reference
    /// ptp + host-local plugins, alternating.
    Cni {
        #[arg(long, default_value_t = 200)]
        pods: u32,
        #[arg(long, default_value_t = 3)]
        runs: u32,
    },
    /// Datapath: TCP stream (iperf3) with its CPU cost, request/response
    /// latency (sockperf) and connections per second, pod to pod across
    /// nodes and on one node, in eBPF and kernel mode (switched live,
    /// alternating), against the node-to-node baseline; and the programs'
    /// per-packet cost from BPF_PROG_TEST_RUN.
    Datapath(testbed::bench_datapath::Params),
    /// Services: a NodePort with a remote backend by merle (dsr, snat) and
    /// by kube-proxy's iptables rules, alternating, at 1, 1,000 and 10,000
    /// services: connections/s with p50/p99 latency, one TCP stream.
    Services(testbed::bench_services::Params),
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !testbed::is_root() {
        anyhow::bail!("the testbed needs root (network namespaces)");
    }
    let bin_dir = || -> anyhow::Result<std::path::PathBuf> {
        Ok(sibling_binary("merled")?.parent().context("no binary directory")?.to_owned())
    };
    match args.command {
        Command::Up { file } => {
            let lab = testbed::topology::up(&file, &bin_dir()?)?;
            println!("lab {} is up: {} nodes", lab.name, lab.nodes.len());
            for (n, (ns, pid)) in &lab.nodes {
                println!("  {n:<10} {ns:<28} pid {pid}");
            }
            println!("`testbed status {0}`, `testbed exec NODE -- CMD`, `testbed down {0}`", lab.name);
        }
        Command::Status { lab } => print!("{}", testbed::topology::status(lab.as_deref(), &bin_dir()?)?),
        Command::Exec { node, command } => {
            let (lab, node) = testbed::topology::resolve_node(&node)?;
            let mut c = testbed::topology::node_command(&lab, &node, &command)?;
            // merled, merlectl and merle-cni by name, as in the image.
            let path = std::env::var("PATH").unwrap_or_default();
            c.env("PATH", format!("{}:{path}", bin_dir()?.display()));
            let st = c.status()?;
            std::process::exit(st.code().unwrap_or(1));
        }
        Command::Down { lab } => {
            let name = match lab {
                Some(l) => l,
                None => match testbed::topology::labs().as_slice() {
                    [one] => one.name.clone(),
                    [] => anyhow::bail!("no lab is up"),
                    _ => anyhow::bail!("several labs are up: name one"),
                },
            };
            testbed::topology::down(&name)?;
            println!("lab {name} is down");
        }
        Command::Demo { keep } => {
            let merled = sibling_binary("merled")?;
            let merlectl = sibling_binary("merlectl")?;
            let mut d = demo::start(&merled, &merlectl).context("starting the demo testbed")?;
            println!(
                "Testbed up: namespaces {}, {} (merled) and {} (FRR ToR).",
                d.ns_nodes[0].name, d.ns_nodes[1].name, d.ns_tor.name
            );
            d.add_pods(&sibling_binary("merle-cni")?).context("creating pods with merle-cni")?;
            d.converge(Duration::from_secs(60))?;
            d.settle(Duration::from_secs(20))?;
            d.add_service().context("programming the service")?;
            println!("All sessions Established, every pod block routed, every kernel route installed.\n");
            d.print()?;
            if keep {
                println!("\nKeeping the testbed up. Try:");
                for m in &d.nodes {
                    println!("  {} --socket {} status", m.merlectl.display(), m.socket.display());
                }
                println!("  vtysh --vty_socket {} -d bgpd -c 'show bgp summary'", d.tor.vty_dir.display());
                println!("Press Ctrl-C to tear it down.");
                wait_for_ctrl_c()?;
            }
            drop(d);
            println!("Testbed torn down.");
        }
        Command::Bench(Bench::Ingest { peers, prefixes, runs, cold }) => {
            testbed::wait::interrupt_waits_on_signal()?;
            let merled = sibling_binary("merled")?;
            let merlectl = sibling_binary("merlectl")?;
            testbed::bench::ingest(peers, prefixes, runs, cold, &merled, &merlectl)?;
        }
        Command::Bench(Bench::Sessions { runs }) => {
            testbed::wait::interrupt_waits_on_signal()?;
            let merled = sibling_binary("merled")?;
            let merlectl = sibling_binary("merlectl")?;
            testbed::sessions::bench(runs, &merled, &merlectl)?;
        }
        Command::Bench(Bench::Fanout { clients, prefixes, runs }) => {
            testbed::wait::interrupt_waits_on_signal()?;
            let merled = sibling_binary("merled")?;
            let merlectl = sibling_binary("merlectl")?;
            testbed::bench_rr::fanout(clients, prefixes, runs, &merled, &merlectl)?;
        }
        Command::Bench(Bench::Scale { nodes, runs, topology }) => {
            testbed::wait::interrupt_waits_on_signal()?;
            let topologies: &[bool] = match topology.as_str() {
                "mesh" => &[false],
                "rr" => &[true],
                _ => &[false, true],
            };
            testbed::bench_scale::run(&nodes, runs, topologies, &sibling_binary("merled")?)?;
        }
        Command::Bench(Bench::Fib { routes, runs }) => {
            testbed::wait::interrupt_waits_on_signal()?;
            testbed::bench_fib::run(routes, runs)?;
        }
        Command::Bench(Bench::Cni { pods, runs }) => {
            testbed::wait::interrupt_waits_on_signal()?;
            testbed::bench_cni::run_bench(pods, runs, &sibling_binary("merle-cni")?)?;
        }
        Command::Bench(Bench::Datapath(params)) => {
            testbed::wait::interrupt_waits_on_signal()?;
            testbed::bench_datapath::run(&params)?;
        }
        Command::Bench(Bench::Services(params)) => {
            testbed::wait::interrupt_waits_on_signal()?;
            testbed::bench_services::run(&params)?;
        }
    }
    Ok(())
}

/// Blocks until SIGINT or SIGTERM, so the drops can clean up.
fn wait_for_ctrl_c() -> anyhow::Result<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = tx.send(());
    })
    .context("cannot install the Ctrl-C handler")?;
    let _ = rx.recv();
    Ok(())
}
