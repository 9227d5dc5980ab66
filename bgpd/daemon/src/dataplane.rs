//! merled's side of the eBPF datapath, on a thread of its own (its work is
//! short bpf(2) and netlink syscalls, never on the sessions' runtime).
//!
//! - At start it decides the mode: `kernel` as configured; `ebpf` or
//!   `auto` when the kernel passes the probe and the programs load. `ebpf`
//!   on a kernel that fails the probe stops merled with the reason; a
//!   program the verifier rejects leaves merled up in kernel mode with the
//!   verifier log in its log and status, nothing attached.
//! - In eBPF mode it loads (or adopts) the programs, links the node
//!   program to the uplinks and vxlan.merle, syncs the cluster ranges, and
//!   reconciles the endpoint map and pod links with IPAM's pods: in full
//!   on entering eBPF mode, then for stale entries when IPAM changes and
//!   every few seconds (vxlan.merle appears once fib-sync creates it).
//! - A configuration change of the mode is applied live: to kernel mode
//!   every program is detached and every pin removed (packets go on through
//!   the routes fib-sync keeps in both modes); to eBPF mode the programs are
//!   loaded and linked as at start.
//! - Outgoing NAT rules (nftables) follow the pools in both modes.
//! - At shutdown nothing is detached: pinned links keep forwarding until
//!   the next merled adopts them.

use std::collections::BTreeSet;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

use fib_sync::vtep::mac_string;
use merle_ebpf::pods::Scope;
use merle_ebpf::report::{Endpoint, Interface, Report};
use merle_ebpf::types::Hook;
use merle_ebpf::{datapath, probe, Datapath, PinDir};
use tokio::sync::oneshot;
use tracing::{error, info, warn};

const TICK: Duration = Duration::from_secs(3);

#[derive(Debug)]
pub enum Cmd {
    Reconfigure(Box<conf::Config>),
    /// IPAM changed: reconcile the pods now.
    Reconcile,
    Report(oneshot::Sender<Report>),
    Stop(oneshot::Sender<()>),
}

/// The mode in effect and why, for `merlectl status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub mode: String,
    pub requested: String,
    pub reason: String,
}

#[derive(Debug)]
struct Engine {
    cfg: conf::Config,
    dp: Option<Datapath>,
    reason: String,
    nat: bool,
    /// The node-program interfaces last linked.
    node_ifaces: BTreeSet<String>,
    shared: std::sync::Arc<crate::shared::Shared>,
    /// The IPAM store, opened once (an etcd client keeps its connection).
    store: Option<Box<dyn merle_ipam::Store>>,
    /// The pods that existed when eBPF mode was entered are linked.
    pods_linked: bool,
    /// The service plan the maps hold, and why the configured one is not
    /// there (a backend IPAM does not know, a map error).
    services_applied: Option<merle_lb::plan::Plan>,
    services_error: Option<String>,
    /// The socket programs' state for the report, once linked (or why not).
    socket_lb: Option<String>,
    socket_linked: bool,
    /// The conntrack sweep: when it is due next, and what it found.
    ct_due: std::time::Instant,
    ct: merle_ebpf::report::Conntrack,
}

/// The interfaces holding the node's addresses, or the configured ones;
/// vxlan.merle when it exists.
fn node_interfaces(cfg: &conf::Config) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = cfg.dataplane.interfaces.iter().cloned().collect();
    if out.is_empty() {
        let want: Vec<std::net::IpAddr> =
            std::iter::once(cfg.node.address.addr()).chain(cfg.node.address_v6.map(|a| a.addr())).collect();
        if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
            for a in addrs {
                let ip = a.address.as_ref().and_then(|s| {
                    s.as_sockaddr_in()
                        .map(|v| std::net::IpAddr::V4(v.ip()))
                        .or_else(|| s.as_sockaddr_in6().map(|v| std::net::IpAddr::V6(v.ip())))
                });
                if ip.is_some_and(|ip| want.contains(&ip)) {
                    out.insert(a.interface_name);
                }
            }
        }
    }
    for dev in [fib_sync::desired::VXLAN_DEV_V4, fib_sync::desired::VXLAN_DEV_V6] {
        if merle_ebpf::sys::ifindex(dev) != 0 {
            out.insert(dev.to_owned());
        }
    }
    out
}

impl Engine {
    fn pins(&self) -> PinDir {
        merle_ebpf::pods::pins(&self.cfg)
    }

    fn summary(&self) -> Summary {
        Summary {
            mode: if self.dp.is_some() { "ebpf" } else { "kernel" }.into(),
            requested: self.cfg.dataplane.mode.name().into(),
            reason: self.reason.clone(),
        }
    }

    fn publish(&self) {
        self.shared.set_dataplane_summary(self.summary());
    }

    /// Enters the configured mode. `Err` only for `mode = "ebpf"` on a
    /// kernel that cannot do it.
    fn enter(&mut self) -> anyhow::Result<()> {
        let requested = self.cfg.dataplane.mode;
        if requested == conf::DataplaneMode::Kernel {
            self.leave("mode = \"kernel\" in the configuration".into());
            return Ok(());
        }
        let p = match probe::probe() {
            Ok(p) => p,
            Err(e) if requested == conf::DataplaneMode::Ebpf => {
                anyhow::bail!("[dataplane] mode = \"ebpf\": {e}")
            }
            Err(e) => {
                self.leave(format!("auto: {e}"));
                return Ok(());
            }
        };
        if self.dp.is_some() {
            return Ok(());
        }
        let attach = merle_ebpf::pods::attach_mode(&self.cfg);
        match Datapath::open(&self.pins(), attach) {
            Ok(dp) => {
                self.reason = format!(
                    "{}: kernel {} runs the programs, attached with {}{}; programs {} (version {})",
                    requested.name(),
                    p.kernel,
                    attach.name(),
                    if p.attach == attach { " (detected)" } else { " (configured)" },
                    if dp.adopted { "adopted from the pins of the previous merled" } else { "loaded" },
                    dp.digest
                );
                info!("dataplane: eBPF mode: {}", self.reason);
                self.dp = Some(dp);
                self.sync();
            }
            Err(e) => {
                error!("dataplane: the eBPF datapath could not be loaded, staying in kernel mode: {e}");
                self.leave(format!("{}: eBPF failed, kernel mode: {e}", requested.name()));
            }
        }
        Ok(())
    }

    /// Kernel mode: every program detached, every pin merle made removed.
    fn leave(&mut self, reason: String) {
        let pins = self.pins();
        self.dp = None;
        self.services_applied = None;
        self.socket_linked = false;
        self.socket_lb = None;
        self.pods_linked = false;
        self.node_ifaces.clear();
        if pins.root().exists() {
            for hook in Hook::ALL {
                for (ifname, _) in pins.linked(hook) {
                    if let Err(e) = datapath::unlink(&pins, hook, &ifname) {
                        warn!("dataplane: detaching from {ifname}: {e}");
                    }
                }
            }
            match pins.remove_all() {
                Ok(()) => info!("dataplane: removed the pins under {}", pins.root().display()),
                Err(e) => warn!("dataplane: cannot remove {}: {e}", pins.root().display()),
            }
        }
        if self.reason != reason {
            info!("dataplane: kernel mode: {reason}");
        }
        self.reason = reason;
    }

    /// eBPF mode: node links, cluster ranges and pods as they should be.
    fn sync(&mut self) {
        let Some(dp) = self.dp.as_mut() else { return };
        let want = node_interfaces(&self.cfg);
        for ifname in &want {
            match dp.node.link(ifname) {
                Ok(l) if !l.kept => info!("dataplane: node program attached to {ifname} ({})", l.attach.name()),
                Ok(_) => {}
                Err(e) => warn!("dataplane: {e}"),
            }
        }
        for (ifname, _) in dp.pins.linked(Hook::NodeIngress) {
            if !want.contains(&ifname) {
                let _ = datapath::unlink(&dp.pins, Hook::NodeIngress, &ifname);
            }
        }
        self.node_ifaces = want;
        let full = !self.pods_linked;
        match merle_ebpf::nets::Nets::open(&dp.pins).and_then(|mut n| n.sync(&merle_ebpf::nets::ranges(&self.cfg))) {
            Ok(0) => {}
            Ok(n) => info!("dataplane: {n} cluster ranges updated"),
            Err(e) => warn!("dataplane: {e}"),
        }
        // In full once per entry into eBPF mode (no plugin linked the pods
        // that already exist); afterwards stale entries only.
        self.reconcile_pods(if full { Scope::Full } else { Scope::Stale });
        self.pods_linked = true;
        self.sync_services();
        self.sync_socket_lb();
    }

    /// The socket programs linked to the cgroup v2 root with this
    /// namespace's cookie, or unlinked when `socket_lb` is off.
    fn sync_socket_lb(&mut self) {
        let Some(dp) = self.dp.as_ref() else { return };
        let pins = dp.pins.clone();
        if !self.cfg.dataplane.socket_lb {
            if self.socket_linked || !merle_ebpf::sock::linked(&pins).is_empty() {
                if let Err(e) = merle_ebpf::sock::unlink(&pins) {
                    warn!("dataplane: socket programs: {e}");
                }
                let _ = merle_ebpf::services::Services::open(&pins).and_then(|mut m| m.set_host_netns(0));
                info!("dataplane: socket programs unlinked: ClusterIPs from the host are left to kube-proxy");
            }
            self.socket_linked = false;
            self.socket_lb =
                Some("off ([dataplane] socket_lb = false): ClusterIPs from the host are left to kube-proxy".into());
            return;
        }
        if self.socket_linked {
            return;
        }
        let digest = dp.digest.clone();
        let r = (|| -> Result<String, merle_ebpf::Error> {
            merle_ebpf::sock::load(&pins, &digest)?;
            let root = merle_ebpf::sock::cgroup_root(&self.cfg.dataplane.cgroup_root)?;
            let links = merle_ebpf::sock::link(&pins, &digest, &root)?;
            let cookie = merle_ebpf::sys::netns_cookie()
                .map_err(|e| merle_ebpf::Error::Unsupported(format!("the network namespace's cookie: {e}")))?;
            merle_ebpf::services::Services::open(&pins)?.set_host_netns(cookie)?;
            let kept = links.iter().filter(|l| l.kept).count();
            Ok(format!(
                "{} programs on {} ({} kept), for network namespace {cookie}",
                links.len(),
                root.display(),
                kept
            ))
        })();
        match r {
            Ok(s) => {
                info!("dataplane: socket programs: {s}");
                self.socket_lb = Some(s);
                self.socket_linked = true;
            }
            Err(e) => {
                warn!("dataplane: socket programs not linked, ClusterIPs from the host are not balanced: {e}");
                self.socket_lb = Some(format!("not linked: {e}"));
            }
        }
    }

    /// IPAM's blocks, through the store opened once.
    fn blocks(&mut self) -> Option<merle_ipam::alloc::Blocks> {
        if self.store.is_none() {
            match merle_ipam::open(&self.cfg) {
                Ok(s) => self.store = Some(s),
                Err(e) => {
                    warn!("dataplane: cannot open IPAM: {e}");
                    return None;
                }
            }
        }
        match self.store.as_ref()?.load() {
            Ok(b) => Some(b),
            Err(e) => {
                warn!("dataplane: cannot read IPAM: {e}");
                None
            }
        }
    }

    /// The service maps as the configuration says, once every backend is
    /// a pod IPAM knows; until then the maps keep what they had and the
    /// reason is reported. A plan already in the maps is not rewritten.
    fn sync_services(&mut self) {
        if self.dp.is_none() {
            return;
        }
        let plan = crate::services::node_plan(&self.cfg);
        if self.services_error.is_none() && self.services_applied.as_ref() == Some(&plan) {
            return;
        }
        if !self.cfg.services.is_empty() {
            let Some(blocks) = self.blocks() else {
                self.services_error = Some("IPAM cannot be read to check the backends".into());
                return;
            };
            if let Err(e) = crate::services::check_backends(&self.cfg.services, &crate::services::pods(&blocks)) {
                if self.services_error.as_deref() != Some(e.as_str()) {
                    warn!("dataplane: services not programmed, the maps keep the previous set: {e}");
                }
                self.services_error = Some(e);
                return;
            }
        }
        let Some(dp) = self.dp.as_ref() else { return };
        match merle_ebpf::services::Services::open(&dp.pins).and_then(|mut m| m.sync(&plan)) {
            Ok(d) => {
                if d.changed() {
                    info!(
                        "dataplane: services: {} frontends put, {} removed; {} tables written, {} removed; \
                         {} backends put, {} removed",
                        d.frontends_put,
                        d.frontends_removed,
                        d.tables_written,
                        d.tables_removed,
                        d.backends_put,
                        d.backends_removed
                    );
                }
                self.services_applied = Some(plan);
                self.services_error = None;
            }
            Err(e) => {
                warn!("dataplane: services: {e}");
                self.services_error = Some(e.to_string());
            }
        }
    }

    fn reconcile_pods(&mut self, scope: merle_ebpf::pods::Scope) {
        if self.dp.is_none() {
            return;
        }
        let Some(blocks) = self.blocks() else { return };
        let node = &self.cfg.node.name;
        let (pods, held) = (merle_ipam::pods::attachments(&blocks, node), merle_ipam::pods::allocated(&blocks, node));
        match merle_ebpf::pods::reconcile(&self.cfg, &pods, &held, scope) {
            Ok(r) => {
                if r.endpoints_put + r.endpoints_removed + r.ifaces_fixed + r.links_added + r.links_removed > 0 {
                    info!(
                        "dataplane: reconciled with IPAM: {} endpoints put, {} removed, {} veth entries fixed; \
                         {} pod links added, {} removed",
                        r.endpoints_put, r.endpoints_removed, r.ifaces_fixed, r.links_added, r.links_removed
                    );
                }
                for e in r.errors {
                    warn!("dataplane: {e}");
                }
            }
            Err(e) => warn!("dataplane: reconcile: {e}"),
        }
    }

    fn apply_nat(&mut self) {
        let want = merle_ebpf::nat::wanted(&self.cfg);
        if !want && !self.nat {
            return;
        }
        match merle_ebpf::nat::apply(&self.cfg) {
            Ok(()) => {
                if want != self.nat {
                    info!("dataplane: outgoing NAT rules {}", if want { "installed" } else { "removed" });
                }
                self.nat = want;
            }
            Err(e) => warn!("dataplane: {e}"),
        }
    }

    fn reconfigure(&mut self, cfg: conf::Config) {
        let (old, new) = (&self.cfg.dataplane, &cfg.dataplane);
        // Only the node-program interfaces changed: relink, nothing else.
        let relink_only = old.mode == new.mode && old.attach == new.attach && old.pin_dir == new.pin_dir && old != new;
        let changed = old != new && !relink_only;
        if cfg.datastore != self.cfg.datastore {
            self.store = None;
        }
        if old.conntrack_gc_interval != new.conntrack_gc_interval {
            // The next sweep at the new pace.
            self.ct_due = self.ct_due.min(std::time::Instant::now() + ct_gc_first(&cfg));
        }
        if changed && self.dp.is_some() {
            // Kernel mode, another pin directory or attach type: the old
            // datapath goes first, with the pins of the old directory.
            self.leave("reconfigured".into());
        }
        self.cfg = cfg;
        if changed {
            if let Err(e) = self.enter() {
                warn!("dataplane: the change is refused, kernel mode: {e:#}");
                self.leave(format!("{e:#}"));
            }
        } else {
            self.sync();
        }
        self.apply_nat();
        self.publish();
    }

    fn report(&self) -> Report {
        let mut r = Report {
            mode: self.summary().mode,
            requested: self.cfg.dataplane.mode.name().into(),
            reason: self.reason.clone(),
            pin_dir: self.cfg.dataplane.pin_dir.display().to_string(),
            nat_outgoing: self.nat,
            ..Report::default()
        };
        r.services_error = self.services_error.clone();
        r.socket_lb = self.socket_lb.clone();
        let Some(dp) = &self.dp else {
            r.services = crate::services::report(&self.cfg, None);
            return r;
        };
        let programmed = merle_ebpf::services::Services::open(&dp.pins).map(|m| m.programmed()).ok();
        r.services = crate::services::report(&self.cfg, programmed.as_deref());
        r.conntrack = Some(self.ct.clone());
        r.attach = Some(dp.attach.name().into());
        r.version = Some(dp.digest.clone());
        r.adopted = dp.adopted;
        for (hook, prog) in [(Hook::NodeIngress, &dp.node), (Hook::PodIngress, &dp.pod)] {
            for (ifname, clsact) in dp.pins.linked(hook) {
                let (ifindex, prog_id) = if clsact {
                    (merle_ebpf::sys::ifindex(&ifname), prog.prog_id())
                } else {
                    match merle_ebpf::sys::obj_get(&dp.pins.link(hook, &ifname))
                        .and_then(|fd| merle_ebpf::sys::link_info(std::os::fd::AsFd::as_fd(&fd)))
                    {
                        Ok(i) => (i.ifindex, i.prog_id),
                        Err(_) => (0, 0),
                    }
                };
                r.interfaces.push(Interface {
                    ifname,
                    ifindex,
                    hook,
                    program: prog.name().into(),
                    attach: if clsact { "clsact" } else { "tcx" }.into(),
                    program_id: prog_id,
                });
            }
        }
        if let Ok(eps) = merle_ebpf::endpoints::Endpoints::open(&dp.pins) {
            for (ip, e) in eps.list() {
                r.endpoints.push(Endpoint {
                    ip: ip.to_string(),
                    ifindex: e.ifindex,
                    ifname: merle_ebpf::sys::ifname(e.ifindex).unwrap_or_else(|| "?".into()),
                    pod_mac: mac_string(e.pod_mac),
                });
            }
        }
        if let Ok(m) = merle_ebpf::metrics::Metrics::open(&dp.pins) {
            r.counters = m.counters();
        }
        r
    }

    fn tick(&mut self) {
        if self.dp.is_some() {
            if node_interfaces(&self.cfg) != self.node_ifaces {
                self.sync();
            } else {
                self.reconcile_pods(Scope::Stale);
                self.sync_services();
                self.sync_socket_lb();
            }
        }
    }

    /// Sweeps the conntrack table of expired flows when it is due.
    fn sweep_ct(&mut self, now: std::time::Instant) {
        if now < self.ct_due {
            return;
        }
        let prev = Duration::from_secs(self.ct.interval_seconds.max(1));
        let Some(dp) = &self.dp else {
            self.ct_due = now + prev;
            return;
        };
        let t0 = std::time::Instant::now();
        let swept = merle_ebpf::ct_gc::sweep(&dp.pins, merle_ebpf::services::ct_tick());
        self.ct.last_sweep_ms = t0.elapsed().as_millis() as u64;
        let interval = match swept {
            Ok(s) => {
                self.ct.entries = s.entries;
                self.ct.sweeps += 1;
                self.ct.deleted += s.deleted as u64;
                self.ct.error = None;
                tracing::debug!(entries = s.entries, deleted = s.deleted, "conntrack sweep");
                merle_ebpf::ct_gc::next_interval(prev, s, self.ct.capacity)
            }
            Err(e) => {
                if self.ct.error.is_none() {
                    warn!("conntrack sweep: {e}");
                }
                self.ct.error = Some(e.to_string());
                merle_ebpf::ct_gc::INTERVAL_MAX
            }
        };
        let interval = match self.cfg.dataplane.conntrack_gc_interval {
            0 => interval,
            fixed => Duration::from_secs(fixed),
        };
        self.ct.interval_seconds = interval.as_secs();
        self.ct_due = now + interval;
    }

    fn run(mut self, rx: Receiver<Cmd>) {
        // The tick is due every TICK however many requests arrive between.
        let mut next = std::time::Instant::now() + TICK;
        loop {
            let now = std::time::Instant::now();
            if now >= next {
                self.tick();
                next = now + TICK;
            }
            self.sweep_ct(now);
            let due = next.min(self.ct_due);
            match rx.recv_timeout(due.saturating_duration_since(now)) {
                Ok(Cmd::Reconfigure(cfg)) => self.reconfigure(*cfg),
                Ok(Cmd::Reconcile) => {
                    self.reconcile_pods(Scope::Stale);
                    self.sync_services();
                }
                Ok(Cmd::Report(tx)) => {
                    let _ = tx.send(self.report());
                }
                Ok(Cmd::Stop(done)) => {
                    // Pinned links and maps stay: forwarding goes on.
                    let _ = done.send(());
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }
}

/// The wait before the first conntrack sweep.
fn ct_gc_first(cfg: &conf::Config) -> Duration {
    match cfg.dataplane.conntrack_gc_interval {
        0 => merle_ebpf::ct_gc::INTERVAL_START,
        fixed => Duration::from_secs(fixed),
    }
}

/// The running dataplane thread.
#[derive(Debug)]
pub struct DataplaneLink {
    pub tx: Sender<Cmd>,
}

impl DataplaneLink {
    /// Decides the mode and enters it before merled starts its sessions;
    /// an `ebpf` mode the kernel cannot do is an error. The work runs on
    /// the dataplane thread (the etcd IPAM store runs its own runtime,
    /// which cannot start inside merled's).
    pub async fn start(cfg: &conf::Config, shared: std::sync::Arc<crate::shared::Shared>) -> anyhow::Result<Self> {
        let mut e = Engine {
            cfg: cfg.clone(),
            dp: None,
            reason: String::new(),
            nat: false,
            node_ifaces: BTreeSet::new(),
            shared: shared.clone(),
            store: None,
            pods_linked: false,
            services_applied: None,
            services_error: None,
            socket_lb: None,
            socket_linked: false,
            ct_due: std::time::Instant::now() + ct_gc_first(cfg),
            ct: merle_ebpf::report::Conntrack {
                capacity: merle_ebpf::ct_gc::capacity(),
                interval_seconds: ct_gc_first(cfg).as_secs(),
                ..Default::default()
            },
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let (started_tx, started) = oneshot::channel();
        std::thread::Builder::new().name("dataplane".into()).spawn(move || {
            let r = e.enter();
            let ok = r.is_ok();
            if ok {
                e.apply_nat();
                e.publish();
            }
            let _ = started_tx.send(r);
            if ok {
                e.run(rx);
            }
        })?;
        started.await.map_err(|_| anyhow::anyhow!("the dataplane thread stopped"))??;
        shared.set_dataplane(tx.clone());
        Ok(Self { tx })
    }

    pub fn reconfigure(&self, cfg: &conf::Config) {
        let _ = self.tx.send(Cmd::Reconfigure(Box::new(cfg.clone())));
    }

    pub fn reconcile(&self) {
        let _ = self.tx.send(Cmd::Reconcile);
    }

    pub async fn stop(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Cmd::Stop(tx)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(3), rx).await;
        }
    }
}
