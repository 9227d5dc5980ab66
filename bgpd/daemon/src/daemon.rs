//! Start-up and shutdown: binds the sockets, spawns the tasks, and on
//! SIGTERM/SIGINT sends every peer a Cease with a shutdown communication.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{info, warn};

use bgpd::packet::{Community, LargeCommunity};
use bgpd::rib::DecisionOptions;
use ipnet::IpNet;

use crate::listener::PeerDirectory;
use crate::peer::{NodeCtx, PeerTask};
use crate::shared::Shared;
use crate::{control, listener};

/// Where a graceful shutdown leaves its mark for the next start.
fn restart_marker(cfg: &conf::Config) -> std::path::PathBuf {
    cfg.control.socket.with_extension("gr")
}

fn write_restart_marker(cfg: &conf::Config) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    if let Err(e) = std::fs::write(restart_marker(cfg), now.to_string()) {
        warn!("cannot record the graceful shutdown: {e}");
    }
}

/// Whether the previous merled shut down gracefully within the restart
/// time; the mark is used once.
fn take_restart_marker(cfg: &conf::Config) -> bool {
    let path = restart_marker(cfg);
    let Ok(text) = std::fs::read_to_string(&path) else { return false };
    let _ = std::fs::remove_file(&path);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    text.trim().parse::<u64>().is_ok_and(|t| now.saturating_sub(t) <= u64::from(cfg.bgp.graceful_restart_time))
}

/// The prefixes this node originates: its `[[advertise]]` blocks (with
/// their communities) and the service CIDRs.
pub fn local_routes(cfg: &conf::Config) -> Vec<(IpNet, Vec<Community>, Vec<LargeCommunity>)> {
    let mut out: Vec<(IpNet, Vec<Community>, Vec<LargeCommunity>)> = Vec::new();
    for a in &cfg.advertise {
        // Validation already checked every community's syntax.
        let std = a.communities.iter().filter_map(|c| c.parse::<Community>().ok()).collect();
        let large = a.communities.iter().filter_map(|c| c.parse::<LargeCommunity>().ok()).collect();
        out.push((a.prefix, std, large));
    }
    for p in cfg.services.all() {
        if !out.iter().any(|(q, ..)| q == p) {
            out.push((*p, vec![], vec![]));
        }
    }
    out
}

/// Puts the node's own prefixes in the RIB as local routes: they are
/// exported to every peer and win over learned copies.
fn originate(shared: &Shared, node: &NodeCtx, routes: Vec<(IpNet, Vec<Community>, Vec<LargeCommunity>)>) {
    use bgpd::rib::{Path, PathSource};
    let mut rib = shared.rib();
    for (prefix, std, large) in routes {
        let next_hop = match prefix {
            IpNet::V4(_) => node.node_v4.map_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), IpAddr::V4),
            IpNet::V6(_) => node.node_v6.map_or(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), IpAddr::V6),
        };
        let attrs = Arc::new(crate::export::local_attrs(std, large));
        rib.insert(prefix, Path { source: PathSource::Local, path_id: 0, next_hop, attrs, stale: false });
    }
}

pub async fn run(cfg: conf::Config) -> anyhow::Result<()> {
    let node_ip = cfg.node.address.addr();
    let listen = match cfg.bgp.listen_address {
        Some(a) => format!("{}", std::net::SocketAddr::new(a, cfg.bgp.listen_port)),
        None => format!("*:{}", cfg.bgp.listen_port),
    };
    let opts =
        DecisionOptions { always_compare_med: cfg.bgp.always_compare_med, max_paths: usize::from(cfg.bgp.max_paths) };
    let shared = Arc::new(Shared::new(cfg.node.name.clone(), cfg.node.router_id(), cfg.node.as_number, listen, opts));
    let routes = local_routes(&cfg);
    let node = Arc::new(NodeCtx {
        local_as: cfg.node.as_number,
        router_id: cfg.node.router_id(),
        node_v4: match node_ip {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        },
        node_v6: match (node_ip, cfg.node.address_v6) {
            (_, Some(v6)) => match v6.addr() {
                IpAddr::V6(a) => Some(a),
                IpAddr::V4(_) => None,
            },
            (IpAddr::V6(a), None) => Some(a),
            _ => None,
        },
        own: routes.iter().map(|(p, ..)| *p).collect(),
        cluster_id: crate::plan::cluster_id(&cfg),
        restarting: take_restart_marker(&cfg),
    });
    if node.restarting {
        info!("restarting gracefully: peers are told with the R bit (RFC 4724)");
    }

    originate(&shared, &node, routes);

    let bgp_listener = listener::bind(cfg.bgp.listen_address, cfg.bgp.listen_port)?;
    let control_listener = control::bind(&cfg.control.socket).await?;
    let _socket_guard = control::SocketGuard(cfg.control.socket.clone());

    let directory: PeerDirectory = Arc::new(RwLock::new(HashMap::new()));
    let mut peers = Vec::new();
    let plan = crate::plan::plan(&cfg);
    // RFC 2385: the listening socket needs every peer's key before the
    // peer's SYN arrives.
    let listen_v6 = bgp_listener.local_addr().is_ok_and(|a| a.is_ipv6());
    for pc in &plan {
        if let Some(pw) = &pc.password {
            crate::sockopt::set_md5(&bgp_listener, listen_v6, pc.address, Some(pw))
                .with_context(|| format!("cannot set the TCP MD5 key for {}", pc.address))?;
        }
    }
    for pc in plan {
        let addr = pc.address;
        let (task, tx) = PeerTask::new(pc, node.clone(), shared.clone());
        directory.write().unwrap_or_else(|p| p.into_inner()).insert(addr, tx.clone());
        peers.push(tx);
        tokio::spawn(task.run());
    }
    tokio::spawn(listener::run(bgp_listener, directory.clone()));
    tokio::spawn(control::run(control_listener, shared.clone()));
    info!(
        node = %cfg.node.name,
        router_id = %cfg.node.router_id(),
        as_number = cfg.node.as_number,
        peers = peers.len(),
        socket = %cfg.control.socket.display(),
        "merled started"
    );

    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => warn!("SIGHUP: this version applies configuration changes on restart only"),
        }
    }
    if cfg.bgp.graceful_restart_time > 0 {
        info!(
            "shutting down with graceful restart: peers keep this node's routes for up to {}s",
            cfg.bgp.graceful_restart_time
        );
        write_restart_marker(&cfg);
    } else {
        info!("shutting down: sending Cease to every peer");
    }
    let mut waits = Vec::new();
    for tx in peers {
        let (rtx, rrx) = tokio::sync::oneshot::channel();
        if tx.send(crate::conn::PeerInput::Shutdown(None, rtx)).await.is_ok() {
            waits.push(rrx);
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        for w in waits {
            let _ = w.await;
        }
    })
    .await;
    info!("merled stopped");
    Ok(())
}
