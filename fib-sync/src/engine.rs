//! The engine: one thread that owns merle's part of the kernel FIB.
//!
//! It keeps three views and drives the kernel from the difference:
//! - `want`: the desired route per prefix ([`crate::want::Want`], the
//!   rules of [`crate::desired::route`] applied to each changed prefix);
//! - `have`: merle's routes in the kernel (its protocol, its table), read
//!   by a dump at start and on resyncs and kept current by the netlink
//!   watch and by the outcome of every request;
//! - `foreign`: prefixes where some other protocol holds the route merle
//!   would install; merle never replaces or deletes those.
//!
//! Only changed prefixes are looked at; [`crate::reconcile`] decides what
//! each needs, and every change goes out in one pipelined batch. Routes
//! found at start are *stale* until the routing has converged (the owner
//! says so, or the sweep timeout passes): until then they stay, so
//! forwarding survives a restart.

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conf::{EncapMode, Pool};
use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use tracing::{debug, error, info, warn};

use crate::desired::{self, Hop, Inputs, NodeNet, RouteSpec, VxlanDevice, IPIP_DEV};
use crate::kernel::{self, Devices, KernelLink, KernelRoute, Owner};
use crate::monitor::{KernelEvent, Watch, RESYNC_INTERVAL};
use crate::reconcile::{self, default_priority, RouteOp};
use crate::status::{FibStatus, Ipip, RouteState, RouteStatus};
use crate::want::{Changed, Want};
use merle_netlink::{Netlink, NlError, Request};

/// Everything the engine is configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub owner: Owner,
    pub vxlan_vni: u32,
    pub vxlan_port: u16,
    pub underlay_mtu: u16,
    pub pools: Vec<Pool>,
    pub node: NodeNet,
    pub own_blocks: Vec<IpNet>,
    /// How long routes found at start may stay stale before they are
    /// swept without a convergence signal.
    pub sweep_after: Duration,
}

/// What the engine is told.
#[derive(Debug)]
pub enum Input {
    /// Learned routes: each prefix with its ECMP next hops; none means
    /// withdrawn.
    Routes(Vec<(IpNet, Vec<IpAddr>)>),
    Settings(Box<Settings>),
    /// The RIB has converged (End-of-RIB from every peer): stale routes may
    /// go.
    Converged,
    Kernel(Vec<KernelEvent>),
    /// Re-read the kernel, for this reason.
    Resync(&'static str),
    Stop,
}

const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Link flaps come in bursts; one resync covers a burst.
const LINK_RESYNC_DELAY: Duration = Duration::from_millis(200);

#[derive(Debug)]
struct Failure {
    reason: String,
    attempts: u32,
    retry_at: Instant,
}

pub(crate) struct Engine {
    nl: Netlink,
    s: Settings,
    ipip: Ipip,
    devs: Devices,
    /// The VXLAN devices these settings call for.
    vxlan: Vec<VxlanDevice>,
    want: Want,
    have: HashMap<IpNet, KernelRoute>,
    foreign: HashMap<IpNet, u8>,
    stale: HashSet<IpNet>,
    converged: bool,
    started: Instant,
    converged_in: Option<(Duration, bool)>,
    ops: crate::status::OpCounts,
    sweep_at: Instant,
    failed: HashMap<IpNet, Failure>,
    dirty: HashSet<IpNet>,
    l2_dirty: bool,
    /// Each link's up state, to notice flaps.
    links_up: HashMap<u32, bool>,
    resync_at: Instant,
    status: Arc<Mutex<FibStatus>>,
    touched: HashSet<IpNet>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("want", &self.want.routes().len()).field("have", &self.have.len()).finish()
    }
}

fn check(r: Result<(), merle_netlink::Refusal>, what: &str) {
    if let Err(r) = r {
        error!("{what}: the kernel refused: {r}");
    }
}

impl Engine {
    /// Opens the sockets, reads the kernel and programs the blackholes and
    /// devices; returns the engine and the watch, still to be started.
    pub(crate) fn start(s: Settings, status: Arc<Mutex<FibStatus>>) -> Result<(Self, Watch), NlError> {
        let watch = Watch::open()?;
        let nl = Netlink::open()?;
        let now = Instant::now();
        let mut e = Self {
            nl,
            sweep_at: now + s.sweep_after,
            s,
            ipip: Ipip::NotNeeded,
            devs: Devices::default(),
            vxlan: Vec::new(),
            want: Want::new(),
            have: HashMap::new(),
            foreign: HashMap::new(),
            stale: HashSet::new(),
            converged: false,
            started: now,
            converged_in: None,
            ops: crate::status::OpCounts::default(),
            failed: HashMap::new(),
            dirty: HashSet::new(),
            l2_dirty: true,
            links_up: HashMap::new(),
            resync_at: now + RESYNC_INTERVAL,
            status,
            touched: HashSet::new(),
        };
        e.configure()?;
        e.stale = e.have.keys().filter(|p| e.want.route(p).is_none()).copied().collect();
        if !e.stale.is_empty() {
            info!(
                "{} routes of protocol {} found in table {}: kept until the routing converges",
                e.stale.len(),
                e.s.owner.protocol,
                e.s.owner.table
            );
        }
        e.sync()?;
        Ok((e, watch))
    }

    pub(crate) fn port(&self) -> u32 {
        self.nl.port()
    }

    pub(crate) fn run(mut self, rx: &Receiver<Input>, stop: &AtomicBool) {
        loop {
            let now = Instant::now();
            let mut wake = self.resync_at;
            if !self.converged {
                wake = wake.min(self.sweep_at);
            }
            if let Some(f) = self.failed.values().map(|f| f.retry_at).min() {
                wake = wake.min(f);
            }
            let first = match rx.recv_timeout(wake.saturating_duration_since(now)) {
                Ok(i) => Some(i),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut stopping = false;
            // Take everything already queued: one batch for all of it.
            for input in first.into_iter().chain(std::iter::from_fn(|| rx.try_recv().ok())) {
                if let Input::Stop = input {
                    stopping = true;
                    break;
                }
                if let Err(e) = self.input(input) {
                    error!("fib-sync: {e}; resyncing");
                    self.resync_at = Instant::now();
                }
            }
            if stopping {
                break;
            }
            if let Err(e) = self.tick() {
                error!("fib-sync: {e}; retrying in 1s");
                self.resync_at = Instant::now() + Duration::from_secs(1);
            }
        }
        stop.store(true, Ordering::Relaxed);
        info!("fib-sync stopped; merle's kernel routes stay in place");
    }

    fn input(&mut self, input: Input) -> Result<(), NlError> {
        match input {
            Input::Routes(routes) => {
                for (prefix, hops) in routes {
                    let c = self.want.learn(&inputs(&self.s, &self.ipip), &self.vxlan, prefix, hops);
                    self.changed(prefix, c);
                }
            }
            Input::Settings(s) => {
                let blocks_only = Settings { own_blocks: self.s.own_blocks.clone(), ..(*s).clone() } == self.s;
                if blocks_only && s.own_blocks != self.s.own_blocks {
                    // IPAM claimed or released a block: its blackhole and
                    // the routes learned inside it, nothing else (no
                    // kernel re-read, no other prefix recomputed).
                    let old = std::mem::replace(&mut self.s.own_blocks, s.own_blocks);
                    self.blocks_changed(&old);
                } else if *s != self.s {
                    let old_table = self.s.owner;
                    self.s = *s;
                    if old_table != self.s.owner {
                        warn!("fib-sync: the table and protocol cannot change while running; keeping the old ones");
                        self.s.owner = old_table;
                    }
                    self.configure()?;
                }
            }
            Input::Converged => {
                if !self.converged {
                    info!("routing converged: sweeping {} stale routes", self.stale.len());
                    self.converged = true;
                    self.converged_in = Some((self.started.elapsed(), false));
                    self.l2_dirty = true;
                    self.dirty.extend(self.stale.iter().copied());
                }
            }
            Input::Kernel(events) => {
                for ev in events {
                    self.kernel_event(ev);
                }
            }
            Input::Resync(why) => {
                warn!("fib-sync: {why}; re-reading the kernel");
                self.resync_at = Instant::now();
            }
            Input::Stop => {}
        }
        Ok(())
    }

    fn tick(&mut self) -> Result<(), NlError> {
        let now = Instant::now();
        if !self.converged && now >= self.sweep_at {
            info!(
                "routing did not converge within {:?}: sweeping {} stale routes anyway",
                self.s.sweep_after,
                self.stale.len()
            );
            self.converged = true;
            self.converged_in = Some((self.started.elapsed(), true));
            self.l2_dirty = true;
            self.dirty.extend(self.stale.iter().copied());
        }
        if now >= self.resync_at {
            self.resync()?;
        }
        for (p, f) in &self.failed {
            if f.retry_at <= now {
                self.dirty.insert(*p);
            }
        }
        self.sync()
    }

    /// Applies the settings: devices, IPIP, and every route recomputed.
    fn configure(&mut self) -> Result<(), NlError> {
        self.vxlan = desired::devices(&self.s.pools, self.s.node, self.s.underlay_mtu);
        let needs_ipip = self.s.pools.iter().any(|p| p.ipip_mode != EncapMode::Never);
        if needs_ipip && !matches!(self.ipip, Ipip::Available) {
            self.ipip = self.probe_ipip()?;
            if let Ipip::Unavailable(why) = &self.ipip {
                let pools: Vec<String> = self
                    .s
                    .pools
                    .iter()
                    .filter(|p| p.ipip_mode != EncapMode::Never)
                    .map(|p| p.cidr.to_string())
                    .collect();
                error!("IPIP is unavailable on this node ({why}): refusing the IPIP pools {}", pools.join(", "));
            }
        } else if !needs_ipip {
            self.ipip = Ipip::NotNeeded;
        }
        self.resync()?;
        for p in self.want.prefixes().into_iter().chain(self.s.own_blocks.clone()) {
            self.recompute(p);
        }
        self.publish_header();
        Ok(())
    }

    /// Whether this kernel has IPIP: `tunl0` exists once the `ipip` module
    /// is loaded; creating an `ipip` link makes the kernel load it if it
    /// can.
    fn probe_ipip(&mut self) -> Result<Ipip, NlError> {
        if self.links()?.iter().any(|l| l.name == IPIP_DEV) {
            return Ok(Ipip::Available);
        }
        let probe = rtnetlink::LinkMessageBuilder::<rtnetlink::LinkIpIp>::new("merle-ipipchk").build();
        match self.nl.request(RouteNetlinkMessage::NewLink(probe), NLM_F_CREATE | NLM_F_EXCL)? {
            Ok(()) => {
                if let Some(l) = self.links()?.into_iter().find(|l| l.name == "merle-ipipchk") {
                    let _ = self.nl.request(RouteNetlinkMessage::DelLink(kernel::link_delete(l.index)), 0)?;
                }
                Ok(if self.links()?.iter().any(|l| l.name == IPIP_DEV) {
                    Ipip::Available
                } else {
                    Ipip::Unavailable(format!("the ipip module loaded but {IPIP_DEV} did not appear"))
                })
            }
            Err(r) => Ok(Ipip::Unavailable(format!("the kernel cannot create an ipip link: {r}"))),
        }
    }

    fn links(&mut self) -> Result<Vec<KernelLink>, NlError> {
        Ok(self
            .nl
            .dump(RouteNetlinkMessage::GetLink(kernel::link_dump()))?
            .iter()
            .filter_map(|m| if let RouteNetlinkMessage::NewLink(l) = m { Some(kernel::read_link(l)) } else { None })
            .collect())
    }

    /// Brings the devices in line, then re-reads the whole table.
    fn resync(&mut self) -> Result<(), NlError> {
        self.resync_at = Instant::now() + RESYNC_INTERVAL;
        self.ops.table_reads += 1;
        self.ensure_devices()?;
        let mut have = HashMap::new();
        let mut foreign = HashMap::new();
        for v6 in [false, true] {
            let mut tries = 0;
            let msgs = loop {
                match self.nl.dump(RouteNetlinkMessage::GetRoute(kernel::route_dump(v6))) {
                    Err(NlError::DumpInterrupted) if tries < 5 => tries += 1,
                    r => break r?,
                }
            };
            for m in msgs {
                let RouteNetlinkMessage::NewRoute(m) = m else { continue };
                let Some(k) = kernel::read_route(&m, &self.devs) else { continue };
                if k.table != self.s.owner.table {
                    continue;
                }
                if k.protocol == self.s.owner.protocol {
                    have.insert(k.prefix, k);
                } else if k.priority == default_priority(&k.prefix) {
                    foreign.insert(k.prefix, k.protocol);
                }
            }
        }
        // Everything that differs from the last view needs a look.
        for (p, k) in &have {
            if self.have.get(p) != Some(k) {
                self.dirty.insert(*p);
            }
        }
        self.dirty.extend(self.have.keys().filter(|p| !have.contains_key(p)));
        self.dirty.extend(self.want.routes().keys().filter(|p| !have.contains_key(p)));
        self.dirty.extend(foreign.keys().chain(self.foreign.keys()));
        self.have = have;
        self.foreign = foreign;
        self.l2_dirty = true;
        Ok(())
    }

    /// Creates, fixes or removes merle's VXLAN devices and notes the
    /// indexes of the devices routes name.
    fn ensure_devices(&mut self) -> Result<(), NlError> {
        let links = self.links()?;
        self.links_up = links.iter().map(|l| (l.index, l.up)).collect();
        let find = |name: &str| links.iter().find(|l| l.name == name);
        let mut changed = false;
        for dev in self.vxlan.clone() {
            let vni = self.s.vxlan_vni;
            let port = self.s.vxlan_port;
            match find(dev.name) {
                Some(l)
                    if l.kind.as_deref() == Some("vxlan")
                        && l.vxlan.is_some_and(|x| {
                            x.vni == Some(vni)
                                && x.port == Some(port)
                                && x.local == Some(dev.local)
                                && x.learning != Some(true)
                        }) =>
                {
                    if !l.up || l.mac != Some(dev.mac) || l.mtu != Some(u32::from(dev.mtu)) {
                        info!("{}: setting MAC, MTU {} and up", dev.name, dev.mtu);
                        check(
                            self.nl.request(
                                RouteNetlinkMessage::SetLink(kernel::link_set(l.index, dev.mac, dev.mtu)),
                                0,
                            )?,
                            dev.name,
                        );
                    }
                }
                other => {
                    if let Some(l) = other {
                        warn!("{}: exists with other settings ({:?} {:?}); recreating it", dev.name, l.kind, l.vxlan);
                        check(
                            self.nl.request(RouteNetlinkMessage::DelLink(kernel::link_delete(l.index)), 0)?,
                            dev.name,
                        );
                    } else {
                        info!("{}: creating (VNI {vni}, port {port}, local {}, MTU {})", dev.name, dev.local, dev.mtu);
                    }
                    let m = kernel::vxlan_create(&dev, vni, port);
                    check(self.nl.request(RouteNetlinkMessage::NewLink(m), NLM_F_CREATE | NLM_F_EXCL)?, dev.name);
                    changed = true;
                }
            }
        }
        for name in [desired::VXLAN_DEV_V4, desired::VXLAN_DEV_V6] {
            if let (Some(l), false) = (find(name), self.vxlan.iter().any(|d| d.name == name)) {
                info!("{name}: no pool uses it any more; removing it");
                check(self.nl.request(RouteNetlinkMessage::DelLink(kernel::link_delete(l.index)), 0)?, name);
                changed = true;
            }
        }
        if let (Ipip::Available, Some(t)) = (&self.ipip, find(IPIP_DEV)) {
            let mtu = u32::from(self.s.underlay_mtu.saturating_sub(20));
            if !t.up || t.mtu != Some(mtu) {
                let m = rtnetlink::LinkUnspec::new_with_index(t.index).mtu(mtu).up().build();
                check(self.nl.request(RouteNetlinkMessage::SetLink(m), 0)?, IPIP_DEV);
            }
        }
        let links = if changed { self.links()? } else { links };
        let index = |name: &str| links.iter().find(|l| l.name == name).map(|l| l.index);
        let devs = Devices {
            vxlan_v4: index(desired::VXLAN_DEV_V4),
            vxlan_v6: index(desired::VXLAN_DEV_V6),
            tunl0: if matches!(self.ipip, Ipip::Available) { index(IPIP_DEV) } else { None },
        };
        if devs != self.devs {
            self.devs = devs;
            // Routes through a recreated device went with the old one.
            self.dirty.extend(self.want.routes().keys().copied());
        }
        Ok(())
    }

    /// Recomputes the wanted route of one prefix.
    fn recompute(&mut self, prefix: IpNet) {
        let c = self.want.recompute(&inputs(&self.s, &self.ipip), &self.vxlan, prefix);
        self.changed(prefix, c);
    }

    /// The blocks changed from `old` to the current ones: each block that
    /// came or went, and every learned route inside one, is recomputed.
    fn blocks_changed(&mut self, old: &[IpNet]) {
        let new = self.s.own_blocks.clone();
        let moved: Vec<IpNet> =
            old.iter().filter(|b| !new.contains(b)).chain(new.iter().filter(|b| !old.contains(b))).copied().collect();
        for b in moved {
            for p in std::iter::once(b).chain(self.want.learned_within(&b)) {
                self.recompute(p);
            }
        }
    }

    /// Notes what a recompute changed.
    fn changed(&mut self, prefix: IpNet, c: Changed) {
        if c.newly_refused {
            if let Some(reason) = self.want.refused(&prefix) {
                warn!("{prefix}: not installed: {reason}");
            }
        }
        self.l2_dirty |= c.vteps;
        if c.route {
            self.stale.remove(&prefix);
            self.dirty.insert(prefix);
        } else {
            self.touched.insert(prefix);
        }
    }

    fn kernel_event(&mut self, ev: KernelEvent) {
        match ev {
            KernelEvent::Route(present, m) => {
                let Some(k) = kernel::read_route(&m, &self.devs) else { return };
                let p = k.prefix;
                if k.protocol == self.s.owner.protocol {
                    if present {
                        self.have.insert(p, k);
                    } else if self.have.get(&p).is_some_and(|h| h.priority == k.priority) {
                        self.have.remove(&p);
                        if self.want.route(&p).is_some() {
                            warn!("{p}: merle's route was deleted by someone else; restoring it");
                        }
                    }
                } else if k.priority == default_priority(&p) {
                    if present {
                        self.foreign.insert(p, k.protocol);
                    } else {
                        self.foreign.remove(&p);
                        // The way is clear: no need to wait out a backoff.
                        if let Some(f) = self.failed.get_mut(&p) {
                            f.retry_at = Instant::now();
                        }
                    }
                }
                self.dirty.insert(p);
            }
            KernelEvent::Link(present, l) => {
                let l = kernel::read_link(&l);
                let ours = [desired::VXLAN_DEV_V4, desired::VXLAN_DEV_V6, IPIP_DEV].contains(&l.name.as_str());
                let known = [self.devs.vxlan_v4, self.devs.vxlan_v6, self.devs.tunl0].contains(&Some(l.index));
                let prev = if present { self.links_up.insert(l.index, l.up) } else { self.links_up.remove(&l.index) };
                if (ours || known) && (!present || (!l.up && prev == Some(true))) {
                    warn!(
                        "{}: was {} by someone else; repairing",
                        l.name,
                        if present { "set down" } else { "deleted" }
                    );
                }
                // A link going down or away takes its IPv4 routes with it,
                // without a word: look again shortly. One coming up takes
                // nothing (a pod's veth does, once per ADD), and a route
                // refused while it was down is retried on its backoff.
                let flapped = match (present, prev) {
                    (_, None) => false,
                    (false, Some(_)) => true,
                    (true, Some(was)) => was && !l.up,
                };
                if ours || known || flapped {
                    self.resync_at = self.resync_at.min(Instant::now() + LINK_RESYNC_DELAY);
                }
            }
            KernelEvent::Neighbour(ifindex) => {
                if [self.devs.vxlan_v4, self.devs.vxlan_v6].contains(&Some(ifindex)) {
                    self.l2_dirty = true;
                }
            }
        }
    }

    /// Brings the kernel in line for every dirty prefix, in one batch.
    fn sync(&mut self) -> Result<(), NlError> {
        if self.l2_dirty {
            self.sync_l2()?;
        }
        let now = Instant::now();
        // Each request's prefix, the route it installs (none: a delete)
        // and whether it replaces one.
        let mut ops: Vec<(IpNet, Option<RouteSpec>, bool)> = Vec::new();
        let mut reqs = Vec::new();
        let dirty: Vec<IpNet> = self.dirty.drain().collect();
        self.touched.extend(dirty.iter().copied());
        // Prefixes in backoff are retried when it ends.
        let due = dirty.into_iter().filter(|p| self.failed.get(p).is_none_or(|f| f.retry_at <= now));
        let (want, stale, converged) = (&self.want, &self.stale, self.converged);
        let decided =
            reconcile::routes(due, |p| want.route(p), &self.have, &self.foreign, |p| !converged && stale.contains(p));
        for (p, op) in decided {
            match op {
                RouteOp::InSync => {
                    self.failed.remove(&p);
                }
                RouteOp::Held => {}
                RouteOp::Blocked { protocol } => {
                    let reason = format!(
                        "table {} already has a route to {p} of protocol {protocol}; merle leaves it alone",
                        self.s.owner.table
                    );
                    self.fail(p, reason, now);
                }
                RouteOp::Install { spec, replace } => match kernel::route_message(p, &spec, self.s.owner, &self.devs) {
                    Ok(m) => {
                        let flags = NLM_F_CREATE | if replace { NLM_F_REPLACE } else { NLM_F_EXCL };
                        reqs.push(Request { message: RouteNetlinkMessage::NewRoute(m), flags });
                        ops.push((p, Some(spec), replace));
                    }
                    Err(e) => {
                        self.ops.failed += 1;
                        self.fail(p, e.to_string(), now)
                    }
                },
                RouteOp::Delete { priority } => {
                    reqs.push(Request {
                        message: RouteNetlinkMessage::DelRoute(kernel::route_delete(p, self.s.owner, priority)),
                        flags: 0,
                    });
                    ops.push((p, None, false));
                }
            }
        }
        if reqs.is_empty() {
            self.publish();
            return Ok(());
        }
        let results = self.nl.execute(reqs)?;
        for ((p, spec, replace), r) in ops.into_iter().zip(results) {
            match (&spec, &r) {
                (Some(_), Ok(())) if replace => self.ops.replaced += 1,
                (Some(_), Ok(())) => self.ops.added += 1,
                (None, Ok(())) => self.ops.deleted += 1,
                (None, Err(r)) if r.errno == libc::ESRCH => self.ops.deleted += 1,
                (_, Err(_)) => self.ops.failed += 1,
            }
            match (spec, r) {
                (Some(spec), Ok(())) => {
                    let priority = default_priority(&p);
                    let k = KernelRoute {
                        prefix: p,
                        table: self.s.owner.table,
                        protocol: self.s.owner.protocol,
                        priority,
                        spec: spec.kernel_form().into_owned(),
                    };
                    self.have.insert(p, k);
                    if self.failed.remove(&p).is_some() {
                        info!("{p}: installed after earlier failures");
                    }
                }
                (None, Ok(())) => {
                    self.have.remove(&p);
                    self.stale.remove(&p);
                    self.failed.remove(&p);
                }
                (None, Err(r)) if r.errno == libc::ESRCH => {
                    self.have.remove(&p);
                    self.stale.remove(&p);
                }
                (Some(_), Err(r)) if r.errno == libc::EEXIST => {
                    // Someone else's route got there first: learn its
                    // protocol on the next read.
                    self.resync_at = self.resync_at.min(now + Duration::from_millis(100));
                    self.fail(p, format!("a route to {p} that merle does not own is in the way ({r})"), now);
                }
                (_, Err(r)) => self.fail(p, r.to_string(), now),
            }
        }
        self.publish();
        Ok(())
    }

    fn fail(&mut self, p: IpNet, reason: String, now: Instant) {
        let f = self.failed.entry(p).or_insert(Failure { reason: String::new(), attempts: 0, retry_at: now });
        f.attempts += 1;
        let backoff = BACKOFF_FIRST.saturating_mul(1 << f.attempts.min(6).saturating_sub(1)).min(BACKOFF_MAX);
        f.retry_at = now + backoff;
        if f.reason != reason || f.attempts == 1 {
            warn!("{p}: kernel install failed: {reason}; retrying with backoff");
        } else {
            debug!("{p}: still failing ({reason}), attempt {}; next in {backoff:?}", f.attempts);
        }
        f.reason = reason;
        self.touched.insert(p);
    }

    /// Neighbour and FDB entries: every VTEP in use gets a permanent entry
    /// of each; other permanent entries on merle's devices go, once the
    /// routing has converged.
    fn sync_l2(&mut self) -> Result<(), NlError> {
        self.l2_dirty = false;
        // Without a VXLAN device nothing of merle's can be in the tables,
        // and a dump is not cheap: the kernel walks one neighbour table
        // shared by every network namespace (every container of a host),
        // not this namespace's entries alone.
        if self.devs.vxlan_v4.is_none() && self.devs.vxlan_v6.is_none() {
            return Ok(());
        }
        let mut want_neigh: HashSet<(u32, IpAddr, [u8; 6])> = HashSet::new();
        let mut want_fdb: HashSet<(u32, [u8; 6], IpAddr)> = HashSet::new();
        for (n, f) in self.want.l2_entries() {
            let idx = if f.dst.is_ipv4() { self.devs.vxlan_v4 } else { self.devs.vxlan_v6 };
            let Some(idx) = idx else { continue };
            want_neigh.insert((idx, n.ip, n.mac));
            want_fdb.insert((idx, f.mac, f.dst));
        }
        let mut stale_vteps: HashSet<IpAddr> = HashSet::new();
        if !self.converged {
            for p in &self.stale {
                if let Some(RouteSpec::Via(hops)) = self.have.get(p).map(|k| &k.spec) {
                    // The gateway as the kernel holds it, and as written
                    // (an older merle's IPv6 route through the VTEP itself).
                    for h in hops.iter().filter(|h| matches!(h, Hop::Vxlan(_))) {
                        stale_vteps.insert(h.kernel_gateway());
                        stale_vteps.insert(h.gateway());
                    }
                }
            }
        }
        let ours: Vec<u32> = [self.devs.vxlan_v4, self.devs.vxlan_v6].into_iter().flatten().collect();
        let mut messages = Vec::new();
        let mut dumped = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6, AddressFamily::Bridge] {
            for m in self.nl.dump(RouteNetlinkMessage::GetNeighbour(kernel::neighbour_dump(family)))? {
                let RouteNetlinkMessage::NewNeighbour(m) = m else { continue };
                let Some(k) = kernel::read_neighbour(&m) else { continue };
                if ours.contains(&k.ifindex) {
                    dumped.push(k);
                    messages.push(m);
                }
            }
        }
        // Before convergence the entries of stale routes stay, as the
        // routes do.
        let decided = reconcile::l2(&dumped, &ours, want_neigh, want_fdb, &stale_vteps);
        let mut messages: Vec<Option<_>> = messages.into_iter().map(Some).collect();
        let mut reqs = Vec::new();
        for i in decided.delete {
            if let Some(m) = messages.get_mut(i).and_then(Option::take) {
                reqs.push(Request { message: RouteNetlinkMessage::DelNeighbour(m), flags: 0 });
            }
        }
        let (want_neigh, want_fdb) = (decided.add_neighbours, decided.add_fdb);
        for (idx, ip, mac) in want_neigh {
            let m = kernel::neighbour_message(idx, ip, mac);
            reqs.push(Request { message: RouteNetlinkMessage::NewNeighbour(m), flags: NLM_F_CREATE | NLM_F_REPLACE });
        }
        for (idx, mac, dst) in want_fdb {
            let m = kernel::fdb_message(idx, mac, dst);
            reqs.push(Request { message: RouteNetlinkMessage::NewNeighbour(m), flags: NLM_F_CREATE | NLM_F_REPLACE });
        }
        for r in self.nl.execute(reqs)?.into_iter().filter_map(Result::err) {
            if r.errno != libc::ENOENT {
                warn!("VXLAN neighbour/FDB entry refused: {r}; retrying on the next resync");
            }
        }
        Ok(())
    }

    fn publish_header(&self) {
        let mut st = self.status.lock().unwrap_or_else(|p| p.into_inner());
        st.table = self.s.owner.table;
        st.protocol = self.s.owner.protocol;
        st.ipip = self.ipip.clone();
        st.devices = self.vxlan.iter().map(|d| d.name.to_owned()).collect();
    }

    /// Copies the state of every prefix looked at since the last time into
    /// the shared status.
    fn publish(&mut self) {
        let mut st = self.status.lock().unwrap_or_else(|p| p.into_inner());
        st.converged = self.converged;
        for p in self.touched.drain() {
            let state = if let Some(f) = self.failed.get(&p) {
                RouteState::Failed { reason: f.reason.clone(), attempts: f.attempts }
            } else if let Some(r) = self.want.refused(&p) {
                RouteState::Refused { reason: r.to_owned() }
            } else if self.stale.contains(&p) && self.have.contains_key(&p) {
                RouteState::Stale
            } else if self.want.route(&p).is_some() && self.have.contains_key(&p) {
                RouteState::Installed
            } else if self.want.route(&p).is_some() {
                RouteState::Pending
            } else {
                st.routes.remove(&p);
                continue;
            };
            let spec = self.want.route(&p).or_else(|| self.have.get(&p).map(|k| &k.spec)).cloned();
            st.routes.insert(p, RouteStatus { spec, state });
        }
        st.installed = self.have.len();
        st.failed = self.failed.len();
        st.ops = self.ops;
        st.converged_in = self.converged_in;
    }
}

/// The inputs of the rules, from the settings.
fn inputs<'a>(s: &'a Settings, ipip: &Ipip) -> Inputs<'a> {
    Inputs {
        routes: &[],
        own_blocks: &s.own_blocks,
        pools: &s.pools,
        node: s.node,
        ipip_supported: matches!(ipip, Ipip::Available),
        underlay_mtu: s.underlay_mtu,
    }
}

/// A running engine: its input channel and shared status.
#[derive(Debug)]
pub struct Fib {
    tx: Sender<Input>,
    status: Arc<Mutex<FibStatus>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Fib {
    /// Starts fib-sync: reads the kernel, creates the devices and
    /// blackholes, and runs the engine and the watch on their own threads.
    pub fn start(s: Settings) -> Result<Self, NlError> {
        let status = Arc::new(Mutex::new(FibStatus::default()));
        let (engine, watch) = Engine::start(s.clone(), status.clone())?;
        let (tx, rx) = std::sync::mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        watch.spawn(s.owner.table, engine.port(), tx.clone(), stop.clone())?;
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("fib-sync".into())
            .spawn(move || engine.run(&rx, &stop2))
            .map_err(NlError::Io)?;
        Ok(Self { tx, status, stop, thread: Some(thread) })
    }

    /// Queues learned-route changes; never blocks.
    pub fn routes(&self, routes: Vec<(IpNet, Vec<IpAddr>)>) {
        let _ = self.tx.send(Input::Routes(routes));
    }

    pub fn settings(&self, s: Settings) {
        let _ = self.tx.send(Input::Settings(Box::new(s)));
    }

    pub fn converged(&self) {
        let _ = self.tx.send(Input::Converged);
    }

    /// A handle for feeding the engine from elsewhere.
    pub fn sender(&self) -> Sender<Input> {
        self.tx.clone()
    }

    pub fn status(&self) -> Arc<Mutex<FibStatus>> {
        self.status.clone()
    }

    /// Stops the threads; the kernel routes stay.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let _ = self.tx.send(Input::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Drop for Fib {
    fn drop(&mut self) {
        self.shutdown();
    }
}
