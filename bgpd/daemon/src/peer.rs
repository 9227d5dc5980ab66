//! The task that runs one BGP neighbour: its state machine, its timers, its
//! connections, and what its UPDATEs do to the RIB.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bgpd::fsm::{Action, ConnId, DownReason, Event, Fsm, FsmConfig, Negotiated, State, Timer};
use bgpd::packet::error::cease_sub;
use bgpd::packet::{
    AddPathFamily, AddPathMode, AfiSafi, Capability, DecodeCtx, EncodeCtx, ExtendedNextHop, Family, Message,
    NotificationMsg, RefreshSubtype, UpdateMsg,
};
use bgpd::rib::{OutId, PathSource, PeerRef, NO_SLOT};
use ipnet::IpNet;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::conn::{spawn_connect, spawn_reader, spawn_writer, ConnEvent, PeerInput, WriterCmd, WriterLoad};
use crate::export::{self, NodeExport, SessionAddrs, Target};
use crate::import::{self, ImportCtx, RibChange};
use crate::outbound::{self, Job, Mode, Pass};
use crate::peer_status::{self, Counters, Facts, Publisher};
use crate::plan::PeerConfig;
use crate::restart::Restart;
use crate::session_rules;
use crate::shared::Shared;

/// What every peer task knows about this node.
#[derive(Debug, Clone)]
pub struct NodeCtx {
    pub local_as: u32,
    pub router_id: Ipv4Addr,
    pub node_v4: Option<Ipv4Addr>,
    pub node_v6: Option<Ipv6Addr>,
    /// This node's own prefixes: routes for exactly these are not imported.
    pub own: Vec<IpNet>,
    /// Set when this node is a route reflector.
    pub cluster_id: Option<Ipv4Addr>,
    /// merled came back from a graceful shutdown (the R bit, RFC 4724).
    pub restarting: bool,
}

/// The capabilities merled advertises: IPv4 and IPv6 unicast, route
/// refresh, 4-octet AS, ADD-PATH receive and extended next hop for IPv4.
impl NodeCtx {
    /// This node as export sees it.
    pub fn export(&self) -> NodeExport {
        NodeExport { local_as: self.local_as, router_id: self.router_id, cluster_id: self.cluster_id }
    }
}

impl PeerConfig {
    /// This peer as export sees it, for a session that negotiated `n`.
    pub fn target(&self, n: &Negotiated) -> Target {
        Target {
            address: self.address,
            ebgp: n.ebgp,
            rr_client: self.rr_client(),
            export_learned: self.export_learned,
            next_hop_mode: self.next_hop_mode,
            rules: self.rules.clone(),
        }
    }
}

/// How many changed prefixes one export round handles.
const EXPORT_BATCH: usize = 50_000;

/// Our graceful restart capability: the N bit (RFC 8538) always; the R bit
/// after a graceful shutdown; the F bit for both families, because the
/// forwarding state (the kernel's routes) outlives merled.
pub fn graceful_restart_capability(restart_time: u16, restarting: bool) -> Capability {
    Capability::GracefulRestart(bgpd::packet::GracefulRestart {
        restart_state: restarting,
        notification: true,
        restart_time: restart_time.min(4095),
        families: [AfiSafi::IPV4_UNICAST, AfiSafi::IPV6_UNICAST]
            .into_iter()
            .map(|afi_safi| bgpd::packet::GracefulRestartFamily { afi_safi, forwarding_preserved: true })
            .collect(),
    })
}

pub fn local_capabilities(local_as: u32) -> Vec<Capability> {
    vec![
        Capability::Multiprotocol(AfiSafi::IPV4_UNICAST),
        Capability::Multiprotocol(AfiSafi::IPV6_UNICAST),
        Capability::RouteRefresh,
        Capability::ExtendedNextHop(vec![ExtendedNextHop {
            nlri: AfiSafi::IPV4_UNICAST,
            next_hop_afi: bgpd::packet::afi::AFI_IPV6,
        }]),
        Capability::FourOctetAs(local_as),
        Capability::AddPath(vec![
            AddPathFamily { afi_safi: AfiSafi::IPV4_UNICAST, mode: AddPathMode::Receive },
            AddPathFamily { afi_safi: AfiSafi::IPV6_UNICAST, mode: AddPathMode::Receive },
        ]),
    ]
}

#[derive(Debug)]
struct ConnHandle {
    writer: mpsc::UnboundedSender<WriterCmd>,
    /// What the writer holds: the export waits above HIGH_WATER.
    load: Arc<WriterLoad>,
    writer_task: JoinHandle<()>,
    reader: JoinHandle<()>,
    local: SocketAddr,
}

#[derive(Debug)]
pub struct PeerTask {
    cfg: PeerConfig,
    node: Arc<NodeCtx>,
    shared: Arc<Shared>,
    fsm: Fsm,
    rx: mpsc::Receiver<PeerInput>,
    tx: mpsc::Sender<PeerInput>,
    conns: HashMap<ConnId, ConnHandle>,
    timers: HashMap<Timer, Instant>,
    session: Option<(ConnId, Negotiated)>,
    /// The session's share of the Adj-RIB-Out, while it is Established.
    adj_out: Option<OutId>,
    source: Option<PathSource>,
    pending: VecDeque<Event>,
    /// Wakes the task when the RIB queued changes for the session.
    notify: Arc<tokio::sync::Notify>,
    /// Taken from `out` and not yet exported: a big change (a full table
    /// arriving) is exported EXPORT_BATCH prefixes per turn of the task
    /// loop, so timers and input are served in between.
    backlog: VecDeque<(IpNet, u32)>,
    /// Whole-table jobs (the full export after Established or a route
    /// refresh, the re-export after a policy edit), worked JOB_SLICE
    /// prefixes per turn of the task loop, the front one first.
    jobs: VecDeque<Job>,
    /// Graceful restart of the peer (its routes kept stale) and the
    /// End-of-RIB bookkeeping.
    restart: Restart,
    last_error: Option<String>,
    counters: Counters,
    /// Malformed messages received, for RFC 7606 §6 logging.
    malformed: u64,
    /// Counters, NOTIFICATIONs and the last session's capabilities.
    detail: crate::api::PeerDetail,
    /// When the status is published, and since when the peer is in its
    /// state.
    publisher: Publisher,
}

impl PeerTask {
    pub fn new(cfg: PeerConfig, node: Arc<NodeCtx>, shared: Arc<Shared>) -> (Self, mpsc::Sender<PeerInput>) {
        // Small: frames wait in the socket, not here (TCP back-pressure).
        let (tx, rx) = mpsc::channel(64);
        let f = Self::fsm_config(&cfg, &node);
        let mut task = Self {
            fsm: Fsm::new(f),
            cfg,
            node,
            shared,
            rx,
            tx: tx.clone(),
            conns: HashMap::new(),
            timers: HashMap::new(),
            session: None,
            adj_out: None,
            source: None,
            pending: VecDeque::new(),
            notify: Arc::new(tokio::sync::Notify::new()),
            backlog: VecDeque::new(),
            jobs: VecDeque::new(),
            restart: Restart::default(),
            last_error: None,
            counters: Counters::default(),
            malformed: 0,
            detail: crate::api::PeerDetail::default(),
            publisher: Publisher::new(Instant::now()),
        };
        task.publish_now();
        (task, tx)
    }

    pub async fn run(mut self) {
        self.event(Event::ManualStart);
        loop {
            let publish_at = self.publisher.wake_at();
            let deadline = self.timers.values().copied().chain(self.restart.deadline()).chain(publish_at).min();
            let sleep =
                tokio::time::sleep_until(deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)));
            let notify = self.notify.clone();
            // A writer that holds HIGH_WATER: nothing more is encoded for
            // it until it drains; changes wait in `out`, one per prefix.
            let load = self.session_load();
            let blocked = load.as_ref().is_some_and(|l| l.over());
            let exporting = self.session.is_some() && !blocked;
            let backlog = exporting && (!self.backlog.is_empty() || !self.jobs.is_empty());
            tokio::select! {
                input = self.rx.recv() => match input {
                    None => break,
                    Some(PeerInput::Shutdown(text, reply)) => {
                        self.shutdown(text).await;
                        let _ = reply.send(());
                        break;
                    }
                    Some(PeerInput::Deconfigure(reply)) => {
                        self.deconfigure().await;
                        let _ = reply.send(());
                        break;
                    }
                    Some(i) => self.input(i),
                },
                () = sleep, if deadline.is_some() => self.fire_timers(),
                // Taken only once the backlog is out, so that it holds each
                // prefix at most once.
                () = notify.notified(), if exporting && self.backlog.is_empty() => {
                    // The backlog is empty: it takes the queue's buffer
                    // as it is, no copy.
                    if let Some(id) = self.adj_out {
                        self.backlog = self.shared.rib().take_queue(id).into();
                    }
                    self.export_backlog();
                }
                () = async { if let Some(l) = &load { l.drained.notified().await } }, if blocked => {}
                // Yield first, so the other sessions' timers and input run
                // between slices of a big export.
                () = tokio::task::yield_now(), if backlog => {
                    if !self.jobs.is_empty() {
                        self.job_slice();
                    } else {
                        self.export_backlog();
                    }
                }
            }
            self.publish();
        }
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        if self.restart.expire(now) {
            self.purge_stale(None, "graceful restart timer expired");
        }
        let due: Vec<Timer> = self.timers.iter().filter(|(_, at)| **at <= now).map(|(t, _)| *t).collect();
        for t in due {
            self.timers.remove(&t);
            self.event(Event::TimerExpired(t));
        }
    }

    fn input(&mut self, i: PeerInput) {
        match i {
            PeerInput::Inbound(stream) => {
                let id = self.fsm.new_conn_id();
                if self.attach(id, stream) {
                    self.event(Event::TcpConnectionConfirmed(id));
                }
            }
            PeerInput::Conn(id, ev) => match ev {
                ConnEvent::Connected(stream) => {
                    if self.attach(id, stream) {
                        self.event(Event::TcpCrAcked(id));
                    }
                }
                ConnEvent::ConnectFailed(e) => {
                    debug!(peer = %self.cfg.address, "connect failed: {e}");
                    self.last_error = Some(format!("connect: {e}"));
                    self.event(Event::TcpConnectionFails(id));
                }
                ConnEvent::Frame(frame) => {
                    if !self.conns.contains_key(&id) {
                        return;
                    }
                    let ctx = self.decode_ctx(id);
                    match Message::decode(&frame, &ctx) {
                        Ok(m) => {
                            crate::peer_detail::count(&mut self.detail.messages_received, &m);
                            if let Message::Notification(n) = &m {
                                self.detail.last_notification_received =
                                    Some(crate::peer_detail::notice(n, unix_now()));
                            }
                            if let Message::Update(u) = &m {
                                if u.treat_as_withdraw.is_some() || !u.discarded.is_empty() {
                                    self.log_malformed(&frame);
                                }
                            }
                            self.event(Event::Message(id, m));
                        }
                        Err(e) => {
                            warn!(peer = %self.cfg.address, "malformed message: {e}");
                            self.log_malformed(&frame);
                            self.event(Event::DecodeError(id, e));
                        }
                    }
                }
                ConnEvent::HeaderError(e) => {
                    warn!(peer = %self.cfg.address, "bad message header: {e}");
                    self.event(Event::DecodeError(id, e));
                }
                ConnEvent::Closed(reason) => {
                    if self.conns.contains_key(&id) {
                        self.last_error = Some(reason);
                        self.event(Event::TcpConnectionFails(id));
                    }
                }
            },
            PeerInput::Reconfigure(cfg, node) => self.reconfigure(*cfg, node),
            // Only import reads the own prefixes; the FSM's settings and
            // every export are as they were.
            PeerInput::Node(node) => self.node = node,
            PeerInput::Shutdown(..) | PeerInput::Deconfigure(..) => {}
        }
    }

    /// RFC 8538 §3: a NOTIFICATION meant to end the session for good, in a
    /// Hard Reset when both sides sent the N bit.
    fn hard_reset(&self, inner: NotificationMsg) -> NotificationMsg {
        let n = self.session.as_ref().map(|(_, n)| n);
        session_rules::hard_reset(session_rules::both_n(self.cfg.graceful_restart_time, n), inner)
    }

    fn fsm_config(cfg: &PeerConfig, node: &NodeCtx) -> FsmConfig {
        let mut f = FsmConfig::new(node.local_as, node.router_id, cfg.as_number);
        f.hold_time = cfg.hold_time;
        f.passive = cfg.passive;
        f.capabilities = local_capabilities(node.local_as);
        if cfg.graceful_restart_time > 0 {
            f.capabilities.push(graceful_restart_capability(cfg.graceful_restart_time, node.restarting));
        }
        f.connect_retry = cfg.connect_retry;
        f.connect_retry_max = cfg.connect_retry_max;
        f.idle_hold = cfg.error_wait;
        f.idle_hold_max = cfg.error_wait_max;
        f.stable_time = cfg.error_forget;
        f.jitter_seed = std::collections::hash_map::RandomState::new().hash_one(cfg.address);
        f
    }

    /// Applies a configuration change. Settings the session negotiated or
    /// its transport depends on reset it (Cease, Other Configuration
    /// Change); policy settings apply in place: the export is recomputed and
    /// re-sent, and new import rules are applied by asking the peer to send
    /// its routes again (ROUTE-REFRESH) or, without route refresh, by a
    /// reset.
    fn reconfigure(&mut self, new: PeerConfig, node: Arc<NodeCtx>) {
        let old = std::mem::replace(&mut self.cfg, new);
        let old_node = std::mem::replace(&mut self.node, node);
        let r = session_rules::reconfigure(&old, &self.cfg, &old_node, &self.node);
        self.fsm.set_config(Self::fsm_config(&self.cfg, &self.node));
        if r.reset {
            info!(peer = %self.cfg.address, "configuration changed: resetting the session");
            if self.session.is_some() || self.fsm.state() != State::Idle {
                let n = self.hard_reset(NotificationMsg::cease_with_communication(
                    cease_sub::OTHER_CONFIGURATION_CHANGE,
                    "configuration changed",
                ));
                self.event(Event::Stop { notification: Some(n), restart_after: Some(Duration::ZERO) });
            }
            return;
        }
        let Some((id, n)) = self.session.clone() else { return };
        if let Some(out) = self.adj_out {
            let interest = export::interest(&self.target(&n), &self.node_export());
            self.shared.rib().set_interest(out, interest);
        }
        if r.reexport {
            info!(peer = %self.cfg.address, "export policy changed: re-sending routes");
            self.reexport(id, &old, &old_node, &n);
        }
        if r.reimport {
            if n.route_refresh {
                info!(peer = %self.cfg.address, "import policy changed: asking the peer for its routes (ROUTE-REFRESH)");
                for f in n.families.iter() {
                    self.send(id, &Message::RouteRefresh(bgpd::packet::RouteRefreshMsg::request(f.afi_safi())));
                }
            } else {
                info!(peer = %self.cfg.address, "import policy changed and the peer has no route refresh: resetting");
                let m = NotificationMsg::cease_with_communication(
                    cease_sub::OTHER_CONFIGURATION_CHANGE,
                    "import policy changed",
                );
                let m = self.hard_reset(m);
                self.event(Event::Stop { notification: Some(m), restart_after: Some(Duration::ZERO) });
            }
        }
    }

    /// Starts sending the difference between the old and the new export
    /// of every Loc-RIB route: withdrawals for routes the new policy drops,
    /// updates for routes whose exported form changed. A slice at a time,
    /// like every whole-table job. Of a full export still running, only
    /// the part already sent (under the old policy) needs it: the rest goes
    /// out under the new one.
    fn reexport(&mut self, id: ConnId, old: &PeerConfig, old_node: &NodeCtx, n: &Negotiated) {
        let pass = Pass::Reexport { old: Box::new(old.target(n)), old_node: old_node.export() };
        let prefixes = match self.jobs.iter().find(|j| j.id == id && matches!(j.pass, Pass::Full { .. })) {
            Some(full) => full.prefixes[..full.next].to_vec(),
            None => outbound::job_prefixes(&self.shared.rib(), u8::MAX, n.families, None),
        };
        self.jobs.push_back(Job::new(id, pass, prefixes));
    }

    /// The peer left the configuration.
    async fn deconfigure(&mut self) {
        info!(peer = %self.cfg.address, "peer removed from the configuration");
        let n = self.hard_reset(NotificationMsg::new(
            bgpd::packet::error::code::CEASE,
            cease_sub::PEER_DECONFIGURED,
            bytes::Bytes::new(),
        ));
        // Stale routes kept from an earlier restart go too.
        if self.restart.stale() {
            self.restart.clear();
            self.purge_stale(None, "peer removed from the configuration");
        }
        self.stop_and_leave(Some(n)).await;
    }

    /// Stops the session (sending `notification` if given), waits a bounded
    /// time for the writers to flush it, and removes the peer's status.
    async fn stop_and_leave(&mut self, notification: Option<NotificationMsg>) {
        let writers: Vec<mpsc::UnboundedSender<WriterCmd>> = self.conns.values().map(|h| h.writer.clone()).collect();
        self.event(Event::Stop { notification, restart_after: None });
        self.close_adj_out();
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            for w in writers {
                w.closed().await;
            }
        })
        .await;
        self.shared.remove_peer(self.cfg.address);
    }

    /// Sets up the reader and writer of a new connection.
    fn attach(&mut self, id: ConnId, stream: TcpStream) -> bool {
        let _ = stream.set_nodelay(true);
        let Ok(local) = stream.local_addr() else { return false };
        if let Some(hops) = self.cfg.ttl_security {
            // Inbound connections come from the shared listener: apply GTSM
            // to this one before any of its messages is read.
            if let Err(e) = crate::sockopt::set_gtsm(&stream, local.is_ipv6(), hops) {
                warn!(peer = %self.cfg.address, "cannot set GTSM: {e}");
                return false;
            }
        }
        let (rd, wr) = stream.into_split();
        let (wtx, wrx) = mpsc::unbounded_channel();
        let load = Arc::new(WriterLoad::default());
        let reader = spawn_reader(id, rd, self.tx.clone());
        let writer_task = spawn_writer(id, wr, wrx, load.clone(), self.tx.clone());
        self.conns.insert(id, ConnHandle { writer: wtx, load, writer_task, reader, local });
        true
    }

    fn decode_ctx(&self, id: ConnId) -> DecodeCtx {
        match &self.session {
            Some((c, n)) if *c == id => n.decode_ctx(self.cfg.enforce_first_as),
            _ => DecodeCtx::default(),
        }
    }

    fn encode_ctx(&self, id: ConnId) -> EncodeCtx {
        match &self.session {
            Some((c, n)) if *c == id => n.encode_ctx(),
            _ => EncodeCtx::default(),
        }
    }

    /// Runs an event, and any events its actions cause, through the FSM.
    fn event(&mut self, e: Event) {
        self.pending.push_back(e);
        while let Some(e) = self.pending.pop_front() {
            for a in self.fsm.handle(e) {
                self.action(a);
            }
        }
    }

    fn send(&mut self, id: ConnId, m: &Message) {
        let bytes = m.encode(&self.encode_ctx(id));
        if !self.push(id, bytes) {
            return;
        }
        if matches!(m, Message::Update(_)) {
            self.counters.updates_sent += 1;
        }
        crate::peer_detail::count(&mut self.detail.messages_sent, m);
        if let Message::Notification(n) = m {
            self.detail.last_notification_sent = Some(crate::peer_detail::notice(n, unix_now()));
        }
    }

    /// Sends one UPDATE already on the wire's terms (the export path
    /// encodes each once, straight to bytes).
    fn send_update_wire(&mut self, id: ConnId, bytes: bytes::Bytes) {
        if self.push(id, bytes) {
            self.counters.updates_sent += 1;
            self.detail.messages_sent.update += 1;
        }
    }

    /// Hands encoded bytes to the connection's writer, counted in its
    /// load; whether the writer took them.
    fn push(&mut self, id: ConnId, bytes: bytes::Bytes) -> bool {
        let Some(h) = self.conns.get(&id) else { return false };
        h.load.add(bytes.len());
        if h.writer.send(WriterCmd::Send(bytes)).is_err() {
            // The writer ended (its socket failed); its Closed event follows.
            debug!(peer = %self.cfg.address, "writer gone; message dropped");
            return false;
        }
        true
    }

    fn action(&mut self, a: Action) {
        match a {
            Action::Connect(id) => {
                let addr = SocketAddr::new(self.cfg.address, self.cfg.port);
                let sec =
                    crate::conn::Security { password: self.cfg.password.clone(), ttl_security: self.cfg.ttl_security };
                spawn_connect(id, addr, self.cfg.connect_retry.max(Duration::from_secs(1)), sec, self.tx.clone());
            }
            Action::Send(id, m) => self.send(id, &m),
            Action::Close(id) => {
                if let Some(h) = self.conns.remove(&id) {
                    // Flush what is queued (a final NOTIFICATION) for a
                    // bounded time; a peer that does not read loses it.
                    let _ = h.writer.send(WriterCmd::Close);
                    h.reader.abort();
                    let writer = h.writer_task;
                    tokio::spawn(async move {
                        tokio::time::sleep(crate::conn::CLOSE_GRACE).await;
                        writer.abort();
                    });
                }
            }
            Action::StartTimer(t, d) => {
                self.timers.insert(t, Instant::now() + d);
            }
            Action::StopTimer(t) => {
                self.timers.remove(&t);
            }
            Action::Established(id, n) => self.established(id, *n),
            Action::SessionDown(reason) => self.session_down(&reason),
            Action::Update(u) => self.update(&u),
            Action::RouteRefresh(r) => {
                if r.subtype != RefreshSubtype::Request {
                    return;
                }
                let Some((id, n)) = &self.session else { return };
                match r.afi_safi.family().filter(|f| n.families.contains(*f)) {
                    Some(f) => {
                        info!(peer = %self.cfg.address, family = %r.afi_safi, "route refresh requested");
                        let id = *id;
                        self.full_export(id, Some(f));
                    }
                    // RFC 2918 §4: a family not negotiated is ignored.
                    None => {
                        warn!(peer = %self.cfg.address, family = %r.afi_safi, "route refresh for a family not negotiated; ignored")
                    }
                }
            }
        }
    }

    fn established(&mut self, id: ConnId, n: Negotiated) {
        info!(
            peer = %self.cfg.address,
            remote_as = n.remote_as,
            remote_id = %n.remote_id,
            hold_time = n.hold_time,
            kind = self.cfg.kind.label(),
            "session Established"
        );
        self.source = Some(PathSource::Peer(Arc::new(PeerRef {
            address: self.cfg.address,
            asn: n.remote_as,
            router_id: n.remote_id,
            ebgp: n.ebgp,
            rr_client: self.cfg.rr_client(),
        })));
        // RFC 4724 §4.2: families the restarted peer no longer lists, or
        // lists without the F bit, lose their stale routes now; the rest
        // wait for End-of-RIB.
        for f in self.restart.established(&n, Instant::now()) {
            self.purge_stale(Some(f), "forwarding state not preserved");
        }
        self.detail.capabilities = Some(crate::peer_detail::capabilities(&n));
        self.detail.established_unix = Some(unix_now());
        self.session = Some((id, n));
        self.last_error = None;
        // Changes are queued from here on, before the full export notes the
        // table, so nothing between the two is missed.
        self.close_adj_out();
        self.backlog.clear();
        if let Some((_, n)) = &self.session {
            let interest = export::interest(&self.target(n), &self.node_export());
            self.adj_out = Some(self.shared.open_consumer(interest, self.notify.clone()));
        }
        self.full_export(id, None);
    }

    fn target(&self, n: &Negotiated) -> Target {
        self.cfg.target(n)
    }

    /// The established connection's writer load.
    fn session_load(&self) -> Option<Arc<WriterLoad>> {
        let (id, _) = self.session.as_ref()?;
        self.conns.get(id).map(|h| h.load.clone())
    }

    fn node_export(&self) -> NodeExport {
        self.node.export()
    }

    fn session_addrs(&self, id: ConnId) -> Option<SessionAddrs> {
        let h = self.conns.get(&id)?;
        Some(SessionAddrs { local_addr: h.local.ip(), node_v4: self.node.node_v4, node_v6: self.node.node_v6 })
    }

    /// Starts sending the whole Adj-RIB-Out (of one family, or all), then
    /// End-of-RIB: the prefixes this peer can be sent are noted now (one
    /// pass over the table), their routes are sent a slice at a time.
    fn full_export(&mut self, id: ConnId, family: Option<Family>) {
        let Some((_, n)) = &self.session else { return };
        // A refresh during a full export widens it rather than racing it.
        let running = self.jobs.iter().position(|j| j.id == id && matches!(j.pass, Pass::Full { .. }));
        let family = match running.map(|i| &self.jobs[i].pass) {
            Some(Pass::Full { family: f }) if *f != family => None,
            _ => family,
        };
        let interest = export::interest(&self.target(n), &self.node_export());
        let prefixes = outbound::job_prefixes(&self.shared.rib(), interest, n.families, family);
        if let Some(i) = running {
            self.jobs.remove(i);
        }
        self.jobs.push_front(Job::new(id, Pass::Full { family }, prefixes));
        self.job_slice();
    }

    /// Works the next slice of the front job; at the end of a full export,
    /// End-of-RIB.
    fn job_slice(&mut self) {
        let Some(mut job) = self.jobs.pop_front() else { return };
        let Some((id, n)) = &self.session else { return };
        let n = n.clone();
        if *id != job.id {
            self.jobs.retain(|j| j.id == *id);
            return;
        }
        let (Some(addrs), Some(out)) = (self.session_addrs(job.id), self.adj_out) else { return };
        let (target, node) = (self.target(&n), self.node_export());
        let to = outbound::To { target: &target, node: &node, n: &n, addrs: &addrs, out };
        let decided = {
            let mut rib = self.shared.rib();
            let (slice, mode) = job.slice();
            outbound::decide(&mut rib, slice.iter().map(|p| (*p, NO_SLOT)), mode, &to, false)
        };
        job.sent += self.send_decided(job.id, decided, &addrs, &n);
        if !job.done() {
            self.jobs.push_front(job);
            return;
        }
        match job.pass {
            Pass::Full { family } => {
                for f in Family::ALL {
                    if n.families.contains(f) && family.is_none_or(|x| x == f) {
                        self.send(job.id, &Message::Update(UpdateMsg::end_of_rib_marker(f)));
                    }
                }
                debug!(peer = %self.cfg.address, prefixes = job.sent, took = ?job.started.elapsed(), "full export sent");
            }
            Pass::Reexport { .. } => {
                info!(peer = %self.cfg.address, prefixes = job.sent, took = ?job.started.elapsed(), "re-export after the policy change sent");
            }
        }
    }

    /// Encodes and sends what [`outbound::decide`] decided, withdrawals
    /// first (they are cheap and stop traffic sooner); returns how many
    /// prefixes were announced.
    fn send_decided(&mut self, id: ConnId, d: outbound::Decided, addrs: &SessionAddrs, n: &Negotiated) -> usize {
        let mut sent = 0;
        let outbound::Decided { groups, withdrawn, skipped, held: d_held } = d;
        self.log_skipped(&skipped);
        self.counters.prefixes_advertised = d_held;
        for (f, (g, w)) in Family::ALL.into_iter().zip(groups.into_iter().zip(withdrawn)) {
            for u in export::withdraw(f, &w, n) {
                self.send(id, &Message::Update(u));
            }
            if g.is_empty() {
                continue;
            }
            sent += g.iter().map(|(_, v)| v.len()).sum::<usize>();
            let (updates, skipped) = export::build_wire(f, g, addrs, n);
            self.log_skipped(&skipped);
            sent -= skipped.len();
            for u in updates {
                self.send_update_wire(id, u);
            }
        }
        sent
    }

    /// Exports the next EXPORT_BATCH prefixes of the backlog.
    fn export_backlog(&mut self) {
        let n = self.backlog.len().min(EXPORT_BATCH);
        let batch: Vec<(IpNet, u32)> = self.backlog.drain(..n).collect();
        if self.backlog.is_empty() {
            // The buffer was the queue's, sized for its burst: the next
            // take brings a buffer of its own, so this one goes now rather
            // than sitting idle at the burst's size.
            self.backlog = VecDeque::new();
        }
        self.export_changes(batch);
    }

    /// Recomputes and sends the export of prefixes whose best path changed.
    fn export_changes(&mut self, prefixes: Vec<(IpNet, u32)>) {
        let Some((id, n)) = &self.session else { return };
        let (id, n) = (*id, n.clone());
        let (Some(addrs), Some(out)) = (self.session_addrs(id), self.adj_out) else { return };
        let (target, node) = (self.target(&n), self.node_export());
        let to = outbound::To { target: &target, node: &node, n: &n, addrs: &addrs, out };
        let decided = outbound::decide(&mut self.shared.rib(), prefixes, Mode::Announce, &to, true);
        self.send_decided(id, decided, &addrs, &n);
    }

    /// RFC 7606 §6: a malformed UPDATE is logged whole, as hex, so that the
    /// sender's bug can be found. A peer that sends many is logged for the
    /// first MALFORMED_DUMPS, then every thousandth.
    fn log_malformed(&mut self, frame: &[u8]) {
        const MALFORMED_DUMPS: u64 = 16;
        self.malformed += 1;
        if self.malformed <= MALFORMED_DUMPS || self.malformed % 1000 == 0 {
            let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
            warn!(peer = %self.cfg.address, count = self.malformed, "malformed message (hex): {hex}");
        }
    }

    fn log_skipped(&self, skipped: &[export::Skipped]) {
        for s in skipped {
            warn!(peer = %self.cfg.address, prefix = %s.prefix, "not advertised: {}", s.reason);
        }
    }

    /// How long to keep the peer's routes after this session loss (RFC 4724
    /// §4.2, RFC 8538 §3), or `None` to withdraw them now.
    fn graceful_restart_hold(&self, reason: &DownReason) -> Option<Duration> {
        let (_, n) = self.session.as_ref()?;
        session_rules::graceful_restart_hold(n, self.cfg.graceful_restart_time, reason)
    }

    /// Drops the peer's stale routes (of one family, or all), as
    /// [`Restart`] decided.
    fn purge_stale(&mut self, family: Option<Family>, why: &str) {
        let (n, changed) = self.shared.rib().purge_stale(self.cfg.address, family);
        if n > 0 {
            info!(peer = %self.cfg.address, purged = n, ?family, "stale routes removed: {why}");
        }
        self.counters.prefixes_received = self.counters.prefixes_received.saturating_sub(n);
        debug!(peer = %self.cfg.address, changed = changed.len(), "best paths changed by the purge");
    }

    fn session_down(&mut self, reason: &DownReason) {
        info!(peer = %self.cfg.address, "session down: {reason}");
        self.last_error = Some(reason.to_string());
        if self.session.is_some() {
            self.detail.flaps += 1;
        }
        self.detail.established_unix = None;
        self.close_adj_out();
        self.backlog.clear();
        self.jobs.clear();
        let hold = self.graceful_restart_hold(reason);
        if let Some(src) = self.source.take() {
            match hold {
                Some(t) => {
                    // Keep forwarding on the peer's routes while it restarts.
                    let (kept, families) = self.shared.rib().mark_stale(self.cfg.address);
                    info!(peer = %self.cfg.address, kept, restart_time = ?t, "graceful restart: keeping routes as stale");
                    self.restart.session_down(families, t, Instant::now());
                    self.last_error = Some(format!("{reason} (graceful restart: {kept} routes kept)"));
                }
                None => {
                    let (removed, changed) = self.shared.rib().remove_source(&src);
                    debug!(peer = %self.cfg.address, removed, changed = changed.len(), "routes withdrawn");
                    self.restart.clear();
                }
            }
        }
        self.session = None;
        if !self.restart.stale() {
            self.counters.prefixes_received = 0;
        }
        self.counters.prefixes_advertised = 0;
    }

    /// The session no longer holds anything of ours.
    fn close_adj_out(&mut self) {
        if let Some(out) = self.adj_out.take() {
            self.shared.close_consumer(out);
        }
    }

    fn update(&mut self, u: &UpdateMsg) {
        self.counters.updates_received += 1;
        let (Some((id, n)), Some(PathSource::Peer(peer))) = (&self.session, &self.source) else { return };
        if let Some(e) = &u.treat_as_withdraw {
            warn!(peer = %self.cfg.address, "malformed UPDATE treated as withdraw (RFC 7606): {e}");
        }
        for e in &u.discarded {
            warn!(peer = %self.cfg.address, "malformed attribute discarded (RFC 7606): {e}");
        }
        if let Some(f) = u.end_of_rib() {
            debug!(peer = %self.cfg.address, family = %f, "End-of-RIB");
            if let Some(fam) = f.family() {
                let e = self.restart.end_of_rib(fam);
                if e.converged {
                    self.shared.peer_converged(self.cfg.address);
                }
                if e.purge {
                    self.purge_stale(Some(fam), "End-of-RIB");
                }
            }
            return;
        }
        let ctx = ImportCtx {
            local_as: self.node.local_as,
            router_id: self.node.router_id,
            cluster_id: self.node.cluster_id,
            own: &self.node.own,
            allow_local_as: self.cfg.allow_local_as,
            peer: peer.clone(),
            four_octet_as: n.four_octet_as,
            families: n.families,
            local_addrs: [
                self.session_addrs(*id).map(|a| a.local_addr),
                self.node.node_v4.map(IpAddr::V4),
                self.node.node_v6.map(IpAddr::V6),
            ],
        };
        let (changes, rejected) = import::import(u, &ctx);
        if let Some(r) = rejected {
            if r == import::Rejection::NextHopIsSelf {
                warn!(peer = %self.cfg.address, "route with this node's own address as next hop ignored (RFC 4271 §6.3)");
            }
            debug!(peer = %self.cfg.address, "announcement rejected: {r:?}");
        }
        // Withdrawals beyond the UPDATE's own are announcements the checks
        // turned away (a loop, this node's next hop or prefix).
        let withdrawn = u.withdrawals().iter().filter(|w| n.families.contains(w.family())).count();
        let implicit =
            changes.iter().filter(|c| matches!(c, RibChange::Withdraw(..))).count().saturating_sub(withdrawn);
        self.detail.withdrawals_received += withdrawn as u64;
        self.detail.prefixes_rejected += implicit as u64;
        let peer_type = if n.ebgp { bgpd::policy::PeerType::Ebgp } else { bgpd::policy::PeerType::Ibgp };
        let applied = {
            let mut rib = self.shared.rib();
            import::apply(&mut rib, changes, &PathSource::Peer(peer.clone()), &self.cfg.rules.import, peer_type)
        };
        self.detail.prefixes_accepted += applied.accepted;
        self.detail.prefixes_rejected += applied.rejected;
        self.counters.prefixes_received =
            (self.counters.prefixes_received + applied.added).saturating_sub(applied.removed);
        if let Some(max) = self.cfg.max_prefixes {
            if self.counters.prefixes_received > max as usize {
                self.max_prefixes_exceeded(max, u);
            }
        }
    }

    /// RFC 4486: Cease, Maximum Number of Prefixes Reached, with the family
    /// and the limit as data; the session comes back after a delay.
    fn max_prefixes_exceeded(&mut self, max: u32, u: &UpdateMsg) {
        let family = u.announcements().first().map_or(Family::Ipv4Unicast, |(n, _)| n.family()).afi_safi();
        let n = session_rules::max_prefixes_notification(family, max);
        warn!(
            peer = %self.cfg.address,
            received = self.counters.prefixes_received,
            max,
            restart_in = ?self.cfg.max_prefixes_restart,
            "maximum prefixes exceeded; closing the session"
        );
        let restart = Some(self.cfg.max_prefixes_restart);
        let n = self.hard_reset(n);
        self.event(Event::Stop { notification: Some(n), restart_after: restart });
        self.last_error = Some(format!(
            "maximum prefixes ({max}) exceeded; restarting in {}s",
            self.cfg.max_prefixes_restart.as_secs()
        ));
    }

    /// Stops the session. With graceful restart negotiated the peer must
    /// keep our routes while merled is away, so it just sees the connection
    /// close (RFC 4724 §4.2; RFC 8538 would make an Administrative Shutdown
    /// a Hard Reset). Without it, a Cease ends the session.
    async fn shutdown(&mut self, text: Option<String>) {
        let n = NotificationMsg::cease_with_communication(
            cease_sub::ADMINISTRATIVE_SHUTDOWN,
            text.as_deref().unwrap_or("merled shutting down"),
        );
        let notification = match self.session.as_ref().map(|(_, n)| n) {
            Some(neg) if neg.graceful_restart && self.cfg.graceful_restart_time > 0 => None,
            _ => Some(n),
        };
        self.stop_and_leave(notification).await;
    }

    /// Publishes the status when the state changed or PUBLISH_EVERY has
    /// passed; otherwise the task loop wakes for it later.
    fn publish(&mut self) {
        if self.publisher.turn(self.fsm.state(), Instant::now()) {
            self.publish_now();
        }
    }

    fn publish_now(&mut self) {
        let state = self.fsm.state();
        if let Some(from) = self.publisher.published(state, Instant::now()) {
            debug!(peer = %self.cfg.address, from = %from, to = %state, "state change");
        }
        let status = peer_status::build(&Facts {
            cfg: &self.cfg,
            local_as: self.node.local_as,
            state,
            since: self.publisher.since(),
            session: self.session.as_ref().map(|(_, n)| n),
            last_error: self.last_error.as_deref(),
            counters: self.counters,
            out_queue_bytes: self.session_load().map_or(0, |l| l.queued()),
            detail: &self.detail,
        });
        self.shared.set_peer_status(status, self.cfg.address);
    }
}

impl Drop for PeerTask {
    /// However the task ends, its session's Adj-RIB-Out goes with it.
    fn drop(&mut self) {
        self.close_adj_out();
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
