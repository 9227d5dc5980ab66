//! merled's side of fib-sync: the engine's settings from the config, the
//! Loc-RIB changes fed to it, and the convergence signal that lets it sweep
//! routes left from before a restart.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bgpd::rib::{Destination, PathSource};
use fib_sync::{Fib, Input, NodeNet, Owner, Settings};
use ipnet::IpNet;
use tracing::info;

use crate::shared::Shared;

/// Routes found at start are swept at the latest this long after it, even
/// if some peer never sends End-of-RIB.
fn sweep_after(cfg: &conf::Config) -> Duration {
    Duration::from_secs(u64::from(cfg.bgp.graceful_restart_time).clamp(10, 600))
}

/// The node's blocks, which get blackholes: its IPAM-affine blocks, and
/// the `[[advertise]]` prefixes of the file that lie inside a pool.
/// Borrowed addresses are not blocks: the pod's own host route serves them.
pub fn own_blocks(file: &conf::Config, view: &crate::ipam::IpamView) -> Vec<IpNet> {
    let mut out: Vec<IpNet> = file
        .advertise
        .iter()
        .map(|a| a.prefix)
        .filter(|p| file.pools.iter().any(|pool| pool.cidr.contains(p)))
        .collect();
    for b in &view.blocks.affine {
        if !out.contains(b) {
            out.push(*b);
        }
    }
    out
}

pub fn settings(cfg: &conf::Config, own_blocks: Vec<IpNet>) -> Settings {
    let v4 = match cfg.node.address {
        IpNet::V4(n) => Some(n),
        IpNet::V6(_) => None,
    };
    let v6 = match (cfg.node.address, cfg.node.address_v6) {
        (_, Some(IpNet::V6(n))) | (IpNet::V6(n), None) => Some(n),
        _ => None,
    };
    Settings {
        owner: Owner { table: cfg.fib.table, protocol: cfg.fib.protocol },
        vxlan_vni: cfg.fib.vxlan_vni,
        vxlan_port: cfg.fib.vxlan_port,
        underlay_mtu: cfg.fib.underlay_mtu,
        pools: cfg.pools.clone(),
        node: NodeNet { v4, v6 },
        own_blocks,
        sweep_after: sweep_after(cfg),
    }
}

/// What the FIB should do for one destination: the next hops of its ECMP
/// set, or none when the best path is this node's own.
fn next_hops(d: Option<&Destination>) -> Vec<IpAddr> {
    let Some(d) = d else { return Vec::new() };
    if d.best().is_none_or(|b| matches!(b.source, PathSource::Local)) {
        return Vec::new();
    }
    let mut hops: Vec<IpAddr> =
        d.multipath().iter().filter(|p| !matches!(p.source, PathSource::Local)).map(|p| p.next_hop).collect();
    hops.sort_unstable();
    hops.dedup();
    hops
}

/// fib-sync running for merled.
#[derive(Debug)]
pub struct FibLink {
    fib: Fib,
    /// The FIB's queue of the RIB's changes.
    consumer: bgpd::rib::OutId,
}

impl FibLink {
    /// Starts the engine and the tasks that feed it. `peers` are the
    /// configured peers whose End-of-RIB means convergence.
    pub fn start(
        cfg: &conf::Config,
        own: Vec<IpNet>,
        shared: &Arc<Shared>,
        peers: Vec<IpAddr>,
    ) -> anyhow::Result<Self> {
        let fib = Fib::start(settings(cfg, own)).context("cannot start fib-sync (it needs CAP_NET_ADMIN)")?;
        let notify = Arc::new(tokio::sync::Notify::new());
        let consumer = shared.open_consumer(u8::MAX, notify.clone());
        shared.attach_fib(fib.status());
        let tx = fib.sender();
        let shared2 = shared.clone();
        tokio::spawn(async move {
            loop {
                notify.notified().await;
                let routes: Vec<(IpNet, Vec<IpAddr>)> = {
                    let mut rib = shared2.rib();
                    let batch = rib.take_queue(consumer);
                    rib.dequeue(consumer, batch, |p, d| (*p, next_hops(d)))
                };
                if routes.is_empty() {
                    continue;
                }
                if tx.send(Input::Routes(routes)).is_err() {
                    return;
                }
            }
        });
        let tx = fib.sender();
        let shared3 = shared.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                if shared3.all_converged(peers.iter().copied()) {
                    info!("End-of-RIB from every peer: the FIB may sweep stale routes");
                    let _ = tx.send(Input::Converged);
                    return;
                }
            }
        });
        Ok(Self { fib, consumer })
    }

    pub fn reconfigure(&self, cfg: &conf::Config, own: Vec<IpNet>) {
        self.fib.settings(settings(cfg, own));
    }

    /// Stops feeding and programming the kernel; merle's routes stay, so
    /// forwarding goes on while merled is down.
    pub fn stop(self, shared: &Shared) {
        shared.close_consumer(self.consumer);
        self.fib.stop();
    }
}
