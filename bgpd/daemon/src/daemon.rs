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
use bgpd::rib::{Changed, DecisionOptions, NO_SLOT};
use ipnet::IpNet;

use crate::conn::PeerInput;
use crate::listener::PeerDirectory;
use crate::peer::{NodeCtx, PeerTask};
use crate::plan::PeerConfig;
use crate::shared::Shared;
use crate::{control, listener};
use bgpd::rib::PathSource;

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
/// their communities), the service ranges, and the /32 or /128 of each
/// `Local`-policy external or load-balancer IP this node has a backend of.
/// One `[[advertise]]` prefix (or IPAM block) with its communities.
pub type LocalRoute = (IpNet, Vec<Community>, Vec<LargeCommunity>);

pub fn local_routes(cfg: &conf::Config) -> Vec<LocalRoute> {
    let mut out: Vec<LocalRoute> = Vec::new();
    for a in &cfg.advertise {
        // Validation already checked every community's syntax.
        let std = a.communities.iter().filter_map(|c| c.parse::<Community>().ok()).collect();
        let large = a.communities.iter().filter_map(|c| c.parse::<LargeCommunity>().ok()).collect();
        out.push((a.prefix, std, large));
    }
    for p in cfg.service_ranges.all() {
        if !out.iter().any(|(q, ..)| q == p) {
            out.push((*p, vec![], vec![]));
        }
    }
    // externalTrafficPolicy Local: the VIPs of services with a backend on
    // this node, as host routes (Calico's per-service advertisement).
    for vip in crate::services::node_plan(cfg).local_vips() {
        let p = IpNet::from(vip);
        if !out.iter().any(|(q, ..)| *q == p) {
            out.push((p, vec![], vec![]));
        }
    }
    out
}

/// Puts the node's own prefixes in the RIB as local routes: they are
/// exported to every peer and win over learned copies.
fn originate(shared: &Shared, node: &NodeCtx, routes: Vec<LocalRoute>) {
    use bgpd::rib::{Path, PathSource};
    let mut rib = shared.rib();
    for (prefix, std, large) in routes {
        let next_hop = match prefix {
            IpNet::V4(_) => node.node_v4.map_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), IpAddr::V4),
            IpNet::V6(_) => node.node_v6.map_or(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), IpAddr::V6),
        };
        let attrs = Arc::new(crate::export::local_attrs(std, large));
        rib.insert(
            prefix,
            Path { source: PathSource::Local, path_id: 0, next_hop, attrs, stale: false, lost_at: None, ecmp: 0 },
        );
    }
}

fn node_ctx(cfg: &conf::Config, own: Vec<IpNet>, restarting: bool) -> NodeCtx {
    let node_ip = cfg.node.address.addr();
    NodeCtx {
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
        own,
        cluster_id: crate::plan::cluster_id(cfg),
        restarting,
    }
}

/// The settings a running merled cannot change: they name the node, its
/// sockets or the decision process itself.
fn restart_required(old: &conf::Config, new: &conf::Config) -> Option<&'static str> {
    if old.node != new.node {
        return Some("node");
    }
    if old.bgp.listen_address != new.bgp.listen_address || old.bgp.listen_port != new.bgp.listen_port {
        return Some("bgp.listen_address / bgp.listen_port");
    }
    if old.bgp.max_paths != new.bgp.max_paths || old.bgp.always_compare_med != new.bgp.always_compare_med {
        return Some("bgp.max_paths / bgp.always_compare_med");
    }
    if old.control != new.control {
        return Some("control.socket");
    }
    if old.health != new.health {
        return Some("health.listen");
    }
    if old.metrics != new.metrics {
        return Some("metrics.listen");
    }
    if old.log != new.log {
        return Some("log.level");
    }
    if old.fib.enabled != new.fib.enabled || old.fib.table != new.fib.table || old.fib.protocol != new.fib.protocol {
        return Some("fib.enabled / fib.table / fib.protocol");
    }
    if old.datastore != new.datastore {
        return Some("datastore");
    }
    None
}

/// A running merled: what it was started with and the tasks it runs.
struct Running {
    /// The configuration in effect: the file's plus what IPAM adds.
    cfg: conf::Config,
    /// The configuration file as last applied.
    file_cfg: conf::Config,
    ipam: crate::ipam::IpamLink,
    ipam_view: crate::ipam::IpamView,
    path: std::path::PathBuf,
    shared: Arc<Shared>,
    node: Arc<NodeCtx>,
    directory: PeerDirectory,
    peers: HashMap<IpAddr, (PeerConfig, tokio::sync::mpsc::Sender<PeerInput>)>,
    /// The listening socket, for TCP MD5 keys of peers added later.
    listener: std::os::fd::OwnedFd,
    listen_v6: bool,
    /// The file content last applied (or rejected), to notice edits.
    last_text: String,
    fib: Option<crate::fib::FibLink>,
    dataplane: crate::dataplane::DataplaneLink,
}

impl Running {
    fn spawn_peer(&mut self, pc: PeerConfig) {
        let addr = pc.address;
        let (task, tx) = PeerTask::new(pc.clone(), self.node.clone(), self.shared.clone());
        self.directory.write().unwrap_or_else(|p| p.into_inner()).insert(addr, tx.clone());
        self.peers.insert(addr, (pc, tx));
        tokio::spawn(task.run());
    }

    fn set_md5(&self, peer: IpAddr, key: Option<&str>) -> anyhow::Result<()> {
        crate::sockopt::set_md5(&self.listener, self.listen_v6, peer, key)
            .with_context(|| format!("cannot set the TCP MD5 key for {peer}"))
    }

    /// Re-reads the file and applies it if it changed; `force` applies it
    /// even when unchanged (SIGHUP).
    async fn check_file(&mut self, force: bool) {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) => {
                if force || self.last_text != "\0unreadable" {
                    let msg = format!("{}: cannot read: {e}", self.path.display());
                    warn!("configuration not reloaded: {msg}");
                    self.shared.set_config_error(Some(msg));
                    self.last_text = "\0unreadable".into();
                }
                return;
            }
        };
        if !force && text == self.last_text {
            return;
        }
        self.last_text = text;
        match conf::load(&self.path) {
            Err(e) => {
                warn!("configuration change rejected, the running configuration stays: {e}");
                self.shared.set_config_error(Some(e.to_string()));
            }
            Ok(new) => match self.apply(new).await {
                Ok(summary) => {
                    info!("configuration reloaded: {summary}");
                    self.shared.set_config_error(None);
                    self.shared.set_config(Arc::new(self.cfg.clone()));
                }
                Err(e) => {
                    warn!("configuration change rejected, the running configuration stays: {e}");
                    self.shared.set_config_error(Some(e));
                }
            },
        }
    }

    /// Applies a validated configuration file, with IPAM's blocks and
    /// nodes: peers added, removed or changed, local routes updated.
    /// Sessions the edit does not touch are left alone.
    async fn apply(&mut self, file: conf::Config) -> Result<String, String> {
        let new = crate::ipam::effective(&file, &self.ipam_view);
        if let Some(what) = restart_required(&self.cfg, &new) {
            return Err(format!("{}: changing {what} requires restarting merled", self.path.display()));
        }
        let (old_routes, new_routes) = (local_routes(&self.cfg), local_routes(&new));
        let plan: HashMap<IpAddr, PeerConfig> = crate::plan::plan(&new).into_iter().map(|p| (p.address, p)).collect();
        // MD5 keys first: a failure here leaves everything as it was.
        for (addr, pc) in &plan {
            let old_key = self.peers.get(addr).and_then(|(o, _)| o.password.clone());
            if pc.password != old_key {
                self.set_md5(*addr, pc.password.as_deref()).map_err(|e| format!("{e:#}"))?;
            }
        }
        self.node = Arc::new(node_ctx(&new, new_routes.iter().map(|(p, ..)| *p).collect(), self.node.restarting));
        if let Some(f) = &self.fib {
            f.reconfigure(&new, crate::fib::own_blocks(&file, &self.ipam_view));
        }
        if new.dataplane != self.cfg.dataplane
            || new.pools != self.cfg.pools
            || new.nodes != self.cfg.nodes
            || new.services != self.cfg.services
            || new.service_ranges != self.cfg.service_ranges
        {
            self.dataplane.reconfigure(&new);
        }
        if file != self.file_cfg {
            let _ = self.ipam.tx.send(crate::ipam::Cmd::Reconfigure(Box::new(file.clone())));
        }
        self.cfg = new;
        self.file_cfg = file;

        let (mut added, mut removed, mut changed) = (0, 0, 0);
        let gone: Vec<IpAddr> = self.peers.keys().filter(|a| !plan.contains_key(a)).copied().collect();
        for addr in gone {
            if let Some((pc, tx)) = self.peers.remove(&addr) {
                self.directory.write().unwrap_or_else(|p| p.into_inner()).remove(&addr);
                let (rtx, rrx) = tokio::sync::oneshot::channel();
                if tx.send(PeerInput::Deconfigure(rtx)).await.is_ok() {
                    let _ = tokio::time::timeout(Duration::from_secs(3), rrx).await;
                }
                if pc.password.is_some() {
                    let _ = self.set_md5(addr, None);
                }
                removed += 1;
            }
        }
        for (addr, pc) in plan {
            match self.peers.get_mut(&addr) {
                Some((old, tx)) => {
                    if *old != pc {
                        changed += 1;
                    }
                    *old = pc.clone();
                    let _ = tx.send(PeerInput::Reconfigure(Box::new(pc), self.node.clone())).await;
                }
                None => {
                    self.spawn_peer(pc);
                    added += 1;
                }
            }
        }

        let touched = self.local_routes_changed(old_routes, new_routes);
        Ok(format!("{added} peers added, {removed} removed, {changed} changed; {touched} local prefixes changed"))
    }

    /// IPAM claimed or released blocks (or borrowed or returned an
    /// address), and nothing else changed: the advertisements and the
    /// blackholes follow, and nothing else. No peer is re-planned or sent
    /// anything but the changed prefixes; fib-sync recomputes the blocks
    /// that came or went without re-reading the kernel.
    async fn apply_blocks(&mut self) -> String {
        let new = crate::ipam::effective(&self.file_cfg, &self.ipam_view);
        let (old_routes, new_routes) = (local_routes(&self.cfg), local_routes(&new));
        self.node = Arc::new(node_ctx(&new, new_routes.iter().map(|(p, ..)| *p).collect(), self.node.restarting));
        for (_, tx) in self.peers.values() {
            let _ = tx.send(PeerInput::Node(self.node.clone())).await;
        }
        if let Some(f) = &self.fib {
            f.reconfigure(&new, crate::fib::own_blocks(&self.file_cfg, &self.ipam_view));
        }
        self.cfg = new;
        self.shared.set_config(Arc::new(self.cfg.clone()));
        let touched = self.local_routes_changed(old_routes, new_routes);
        format!("{touched} local prefixes changed")
    }

    /// Local routes: withdraws the ones gone, (re)inserts the rest, and
    /// tells export which prefixes changed; returns how many.
    fn local_routes_changed(&self, old_routes: Vec<LocalRoute>, new_routes: Vec<LocalRoute>) -> usize {
        let mut touched = Vec::new();
        {
            let mut rib = self.shared.rib();
            for (p, ..) in &old_routes {
                if !new_routes.iter().any(|(q, ..)| q == p) {
                    touched.extend(rib.withdraw(p, &PathSource::Local, 0).changed(*p));
                }
            }
        }
        let fresh: Vec<_> = new_routes.into_iter().filter(|r| !old_routes.contains(r)).collect();
        touched.extend(fresh.iter().map(|(p, ..)| Changed { prefix: *p, kinds: PathSource::LOCAL, slot: NO_SLOT }));
        originate(&self.shared, &self.node, fresh);
        touched.len()
    }
}

pub async fn run(file_cfg: conf::Config, path: &std::path::Path) -> anyhow::Result<()> {
    // IPAM first: the node's blocks are part of what it advertises from the
    // start. A store that does not answer in time is followed later.
    let ipam = crate::ipam::IpamLink::start(&file_cfg)?;
    let mut ipam_rx = ipam.view.clone();
    if tokio::time::timeout(Duration::from_secs(3), ipam_rx.changed()).await.is_err() {
        warn!("IPAM store not read yet: starting without its blocks");
    }
    let ipam_view = ipam_rx.borrow_and_update().clone();
    let cfg = crate::ipam::effective(&file_cfg, &ipam_view);
    let listen = match cfg.bgp.listen_address {
        Some(a) => format!("{}", std::net::SocketAddr::new(a, cfg.bgp.listen_port)),
        None => format!("*:{}", cfg.bgp.listen_port),
    };
    let opts =
        DecisionOptions { always_compare_med: cfg.bgp.always_compare_med, max_paths: usize::from(cfg.bgp.max_paths) };
    let shared = Arc::new(Shared::new(cfg.node.name.clone(), cfg.node.router_id(), cfg.node.as_number, listen, opts));
    let routes = local_routes(&cfg);
    let node = Arc::new(node_ctx(&cfg, routes.iter().map(|(p, ..)| *p).collect(), take_restart_marker(&cfg)));
    if node.restarting {
        info!("restarting gracefully: peers are told with the R bit (RFC 4724)");
    }
    originate(&shared, &node, routes);

    let bgp_listener = listener::bind(cfg.bgp.listen_address, cfg.bgp.listen_port)?;
    let control_listener = control::bind(&cfg.control.socket).await?;
    let health_listener = match cfg.health.listen {
        Some(a) => Some(crate::health::bind(a).await?),
        None => None,
    };
    let metrics_listener = match cfg.metrics.listen {
        Some(a) => Some(crate::metrics::bind(a).await?),
        None => None,
    };
    let _socket_guard = control::SocketGuard(cfg.control.socket.clone());
    use std::os::fd::AsFd;
    let listener_fd = bgp_listener.as_fd().try_clone_to_owned().context("cannot duplicate the listening socket")?;
    let listen_v6 = bgp_listener.local_addr().is_ok_and(|a| a.is_ipv6());
    shared.set_ipam(ipam.tx.clone());
    // The datapath before the sessions: `mode = "ebpf"` on a kernel that
    // cannot do it stops merled here.
    let dataplane = crate::dataplane::DataplaneLink::start(&cfg, shared.clone()).await?;
    let own_blocks = crate::fib::own_blocks(&file_cfg, &ipam_view);
    let mut running = Running {
        last_text: std::fs::read_to_string(path).unwrap_or_default(),
        cfg,
        file_cfg,
        ipam,
        ipam_view,
        path: path.to_owned(),
        shared: shared.clone(),
        node,
        directory: Arc::new(RwLock::new(HashMap::new())),
        peers: HashMap::new(),
        listener: listener_fd,
        listen_v6,
        fib: None,
        dataplane,
    };
    let plan = crate::plan::plan(&running.cfg);
    // RFC 2385: the listening socket needs every peer's key before the
    // peer's SYN arrives.
    for pc in &plan {
        if let Some(pw) = &pc.password {
            running.set_md5(pc.address, Some(pw))?;
        }
    }
    if running.cfg.fib.enabled {
        let peers = plan.iter().map(|p| p.address).collect();
        running.fib = Some(crate::fib::FibLink::start(&running.cfg, own_blocks, &shared, peers)?);
    }
    for pc in plan {
        running.spawn_peer(pc);
    }
    tokio::spawn(listener::run(bgp_listener, running.directory.clone()));
    tokio::spawn(control::run(control_listener, shared.clone()));
    if let Some(l) = health_listener {
        tokio::spawn(crate::health::serve(l, shared.clone()));
    }
    if let Some(l) = metrics_listener {
        tokio::spawn(crate::metrics::serve(l, shared.clone()));
    }
    shared.set_config(Arc::new(running.cfg.clone()));
    tokio::spawn(sample_md5(shared.clone()));
    shared.set_started();
    info!(
        node = %running.cfg.node.name,
        router_id = %running.cfg.node.router_id(),
        as_number = running.cfg.node.as_number,
        peers = running.peers.len(),
        socket = %running.cfg.control.socket.display(),
        "merled started"
    );

    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    // Edits are noticed by comparing the file's content once a second: this
    // also catches Kubernetes ConfigMap updates, which swap symlinks rather
    // than write the file.
    let mut poll = tokio::time::interval(Duration::from_secs(1));
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                info!("SIGHUP: reloading {}", running.path.display());
                running.check_file(true).await;
            }
            _ = poll.tick() => running.check_file(false).await,
            Ok(()) = ipam_rx.changed() => {
                let view = ipam_rx.borrow_and_update().clone();
                let blocks_only = view.nodes == running.ipam_view.nodes && view.services == running.ipam_view.services;
                running.ipam_view = view;
                for e in &running.ipam_view.service_errors {
                    if !running.shared.service_errors().contains(e) {
                        warn!("datastore service left out: {e}");
                    }
                }
                running.shared.set_service_errors(running.ipam_view.service_errors.clone());
                running.dataplane.reconcile();
                if blocks_only {
                    let summary = running.apply_blocks().await;
                    info!("IPAM changed: {summary}");
                } else {
                    let file = running.file_cfg.clone();
                    match running.apply(file).await {
                        Ok(summary) => info!("IPAM changed: {summary}"),
                        Err(e) => warn!("IPAM change not applied: {e}"),
                    }
                }
            }
        }
    }
    running.ipam.stop();
    // Pinned programs and links stay: pods keep forwarding until the next
    // merled adopts them.
    running.dataplane.stop().await;
    // The FIB first: closing the sessions withdraws their routes from the
    // RIB, and those must not reach the kernel.
    if let Some(f) = running.fib.take() {
        f.stop(&shared);
    }
    let cfg = &running.cfg;
    if cfg.bgp.graceful_restart_time > 0 {
        info!(
            "shutting down with graceful restart: peers keep this node's routes for up to {}s",
            cfg.bgp.graceful_restart_time
        );
        write_restart_marker(cfg);
    } else {
        info!("shutting down: sending Cease to every peer");
    }
    let mut waits = Vec::new();
    for (_, tx) in running.peers.values() {
        let (rtx, rrx) = tokio::sync::oneshot::channel();
        if tx.send(PeerInput::Shutdown(None, rtx)).await.is_ok() {
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

/// How often, and over how long, the node's TCP MD5 counters are kept
/// for `show peer`.
const MD5_EVERY: Duration = Duration::from_secs(5);
const MD5_WINDOW: Duration = Duration::from_secs(60);

async fn sample_md5(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(MD5_EVERY);
    loop {
        tick.tick().await;
        match crate::peer_detail::read_md5() {
            Some(c) => shared.sample_md5(std::time::Instant::now(), c, MD5_WINDOW),
            None => return, // no /proc/net/netstat: nothing to watch
        }
    }
}
