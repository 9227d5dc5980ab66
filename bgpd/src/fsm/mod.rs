//! The BGP session state machine (RFC 4271 §8), without I/O.
//!
//! One [`Fsm`] runs per configured peer. The driver feeds it [`Event`]s —
//! start/stop requests, TCP connection outcomes, decoded messages, decode
//! errors and timer expiries — and carries out the [`Action`]s it returns:
//! open a connection, send a message, close a connection, (re)arm or stop a
//! timer, and hand routes to the RIB. The machine never reads a clock or a
//! socket; randomness for jitter comes from a seeded generator.
//!
//! Collision detection (RFC 4271 §6.8) needs two connections at once, so the
//! machine tracks up to one inbound and one outbound connection, each in its
//! own connection state. The peer's state is the most advanced of them, or
//! Idle/Connect/Active when none has sent an OPEN.
//!
//! Beyond the RFC's mandatory events this machine implements:
//! - ConnectRetry with exponential backoff and RFC 4271 §10 jitter (each
//!   delay is multiplied by a random factor in [0.75, 1]);
//! - passive peers (ManualStart_with_PassiveTcpEstablishment);
//! - DampPeerOscillations: after every error the IdleHoldTimer doubles, up to
//!   a ceiling, and it resets once a session has stayed up for a while (as
//!   BIRD's `error wait time` and `error forget time`). A zero wait turns it
//!   off. A passive peer has no outbound attempts to hold back, so it
//!   accepts the peer's connection during the wait; only a stop with a
//!   restart delay (a max-prefix Cease) refuses inbound connections;
//! - RFC 4724 §4: a new connection while Established with graceful restart
//!   negotiated means the peer restarted, so the old session is torn down.
//!
//! One documented deviation: a failed outbound connection in Connect goes to
//! Active and retries after ConnectRetryTimer (what BIRD and FRR do) rather
//! than to Idle.

mod negotiate;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

pub use negotiate::{negotiate, Negotiated};

use crate::packet::error::{cease_sub, code, fsm_sub};
use crate::packet::{Capability, DecodeError, Message, NotificationMsg, OpenMsg, RouteRefreshMsg, UpdateMsg};

/// RFC 4271 §8.2.2: the large hold time used until the OPEN arrives.
pub const OPEN_HOLD_TIME: Duration = Duration::from_secs(240);

/// Identifies one TCP connection of a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// We connected to the peer.
    Outbound,
    /// The peer connected to us.
    Inbound,
}

/// The RFC 4271 §8.2.2 states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum State {
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    ConnectRetry,
    IdleHold,
    Hold(ConnId),
    Keepalive(ConnId),
    /// Fires once a session has been up long enough to forget past flaps.
    Stable,
}

/// Configuration of one session.
#[derive(Debug, Clone)]
pub struct FsmConfig {
    pub local_as: u32,
    pub local_id: Ipv4Addr,
    pub peer_as: u32,
    /// The hold time we propose, in seconds (0, or 3 and up).
    pub hold_time: u16,
    pub capabilities: Vec<Capability>,
    pub passive: bool,
    pub connect_retry: Duration,
    pub connect_retry_max: Duration,
    /// The first wait after an error (0: no damping) and its ceiling.
    pub idle_hold: Duration,
    pub idle_hold_max: Duration,
    /// How long a session must stay Established to reset the damping.
    pub stable_time: Duration,
    pub jitter_seed: u64,
}

impl FsmConfig {
    pub fn new(local_as: u32, local_id: Ipv4Addr, peer_as: u32) -> Self {
        Self {
            local_as,
            local_id,
            peer_as,
            hold_time: 90,
            capabilities: Vec::new(),
            passive: false,
            connect_retry: Duration::from_secs(5),
            connect_retry_max: Duration::from_secs(60),
            idle_hold: Duration::from_secs(1),
            idle_hold_max: Duration::from_secs(120),
            stable_time: Duration::from_secs(60),
            jitter_seed: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// ManualStart or ManualStart_with_PassiveTcpEstablishment (per config).
    ManualStart,
    /// ManualStop/AutomaticStop: send `notification` (if a connection is
    /// open) and go Idle; restart after `restart_after` if given.
    Stop {
        notification: Option<NotificationMsg>,
        restart_after: Option<Duration>,
    },
    /// Our outbound connection `conn` completed (Tcp_CR_Acked).
    TcpCrAcked(ConnId),
    /// The peer connected to us; the driver took the id from
    /// [`Fsm::new_conn_id`] (TcpConnectionConfirmed).
    TcpConnectionConfirmed(ConnId),
    /// A connection failed or closed (TcpConnectionFails).
    TcpConnectionFails(ConnId),
    /// A message arrived on `conn`.
    Message(ConnId, Message),
    /// A message on `conn` did not decode.
    DecodeError(ConnId, DecodeError),
    TimerExpired(Timer),
}

/// Why a session left Established (or never got there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownReason {
    HoldTimerExpired,
    NotificationReceived(NotificationMsg),
    /// We sent this NOTIFICATION because of an error or a stop request.
    NotificationSent(NotificationMsg),
    ConnectionClosed,
    /// The peer reconnected while Established with graceful restart.
    PeerRestarted,
    Stopped,
}

impl fmt::Display for DownReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HoldTimerExpired => f.write_str("hold timer expired"),
            Self::NotificationReceived(n) => write!(f, "received NOTIFICATION {n}"),
            Self::NotificationSent(n) => write!(f, "sent NOTIFICATION {n}"),
            Self::ConnectionClosed => f.write_str("connection closed"),
            Self::PeerRestarted => f.write_str("peer restarted (new connection while Established)"),
            Self::Stopped => f.write_str("stopped"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open a TCP connection to the peer, identified as `conn`.
    Connect(ConnId),
    Send(ConnId, Message),
    /// Close the connection (after flushing what was sent).
    Close(ConnId),
    StartTimer(Timer, Duration),
    StopTimer(Timer),
    /// The session reached Established over `conn`.
    Established(ConnId, Box<Negotiated>),
    /// The Established session ended; the RIB must act on its routes.
    SessionDown(DownReason),
    /// An UPDATE for the RIB.
    Update(Box<UpdateMsg>),
    /// The peer asked for our routes again.
    RouteRefresh(RouteRefreshMsg),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum ConnState {
    Connecting,
    OpenSent,
    OpenConfirm,
    Established,
}

#[derive(Debug)]
struct Conn {
    id: ConnId,
    dir: Direction,
    state: ConnState,
    negotiated: Option<Negotiated>,
}

/// The state machine of one peer.
#[derive(Debug)]
pub struct Fsm {
    cfg: FsmConfig,
    /// Whether the peer is administratively started (AllowAutomaticStart).
    running: bool,
    /// In Idle waiting for IdleHoldTimer before restarting.
    idle_hold_pending: bool,
    /// The wait is DampPeerOscillations' (not a stop's restart delay).
    damping: bool,
    conns: Vec<Conn>,
    connect_retry_counter: u32,
    idle_hold_current: Duration,
    next_conn: u64,
    rng: SmallRng,
    last_down: Option<DownReason>,
    /// Whether ConnectRetryTimer is armed, as far as our actions say.
    connect_retry_armed: bool,
}

impl Fsm {
    pub fn new(cfg: FsmConfig) -> Self {
        let rng = SmallRng::seed_from_u64(cfg.jitter_seed);
        let idle_hold_current = cfg.idle_hold;
        Self {
            cfg,
            running: false,
            idle_hold_pending: false,
            damping: false,
            conns: Vec::new(),
            connect_retry_counter: 0,
            idle_hold_current,
            next_conn: 1,
            rng,
            last_down: None,
            connect_retry_armed: false,
        }
    }

    pub fn config(&self) -> &FsmConfig {
        &self.cfg
    }

    /// Replaces the configuration. Takes effect for the next connection.
    pub fn set_config(&mut self, cfg: FsmConfig) {
        // The damping goes on from where it was, within the new bounds.
        self.idle_hold_current = self.idle_hold_current.clamp(cfg.idle_hold, cfg.idle_hold_max.max(cfg.idle_hold));
        self.cfg = cfg;
    }

    /// Allocates an id for a new connection.
    pub fn new_conn_id(&mut self) -> ConnId {
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        id
    }

    pub fn state(&self) -> State {
        match self.conns.iter().map(|c| c.state).max() {
            Some(ConnState::Established) => State::Established,
            Some(ConnState::OpenConfirm) => State::OpenConfirm,
            Some(ConnState::OpenSent) => State::OpenSent,
            Some(ConnState::Connecting) => State::Connect,
            None if self.running && !self.idle_hold_pending => State::Active,
            None => State::Idle,
        }
    }

    /// The negotiated parameters of the Established session.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.conns.iter().find(|c| c.state == ConnState::Established).and_then(|c| c.negotiated.as_ref())
    }

    /// The connection of the Established session.
    pub fn established_conn(&self) -> Option<ConnId> {
        self.conns.iter().find(|c| c.state == ConnState::Established).map(|c| c.id)
    }

    /// Why the session last went down.
    pub fn last_down(&self) -> Option<&DownReason> {
        self.last_down.as_ref()
    }

    pub fn idle_hold_time(&self) -> Duration {
        self.idle_hold_current
    }

    fn jitter(&mut self, d: Duration) -> Duration {
        d.mul_f64(self.rng.random_range(0.75..=1.0))
    }

    fn connect_retry_delay(&mut self) -> Duration {
        let shift = self.connect_retry_counter.min(16);
        let d = self.cfg.connect_retry.saturating_mul(1 << shift).min(self.cfg.connect_retry_max);
        self.connect_retry_counter = self.connect_retry_counter.saturating_add(1);
        self.jitter(d)
    }

    fn open_msg(&self) -> Message {
        Message::Open(OpenMsg::new(
            self.cfg.local_as,
            self.cfg.hold_time,
            self.cfg.local_id,
            self.cfg.capabilities.clone(),
        ))
    }

    fn conn_index(&self, id: ConnId) -> Option<usize> {
        self.conns.iter().position(|c| c.id == id)
    }

    /// Runs one event through the machine.
    pub fn handle(&mut self, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::ManualStart => {
                self.running = true;
                self.idle_hold_pending = false;
                out.push(Action::StopTimer(Timer::IdleHold));
                self.start(&mut out);
            }
            Event::Stop { notification, restart_after } => self.stop(notification, restart_after, &mut out),
            Event::TcpCrAcked(id) => self.tcp_cr_acked(id, &mut out),
            Event::TcpConnectionConfirmed(id) => self.tcp_confirmed(id, &mut out),
            Event::TcpConnectionFails(id) => self.tcp_fails(id, &mut out),
            Event::Message(id, msg) => self.message(id, msg, &mut out),
            Event::DecodeError(id, err) => {
                if self.conn_index(id).is_some() {
                    match err.notification() {
                        Some(n) => self.conn_error(id, Some(n.clone()), DownReason::NotificationSent(n), &mut out),
                        None => self.conn_error(id, None, DownReason::ConnectionClosed, &mut out),
                    }
                }
            }
            Event::TimerExpired(t) => {
                if t == Timer::ConnectRetry {
                    self.connect_retry_armed = false;
                }
                self.timer(t, &mut out)
            }
        }
        for a in &out {
            match a {
                Action::StartTimer(Timer::ConnectRetry, _) => self.connect_retry_armed = true,
                Action::StopTimer(Timer::ConnectRetry) => self.connect_retry_armed = false,
                _ => {}
            }
        }
        self.ensure_progress(&mut out);
        out
    }

    /// An active peer that is running with no connection left must always
    /// have a way forward: if no timer will start a new attempt, arm
    /// ConnectRetry.
    fn ensure_progress(&mut self, out: &mut Vec<Action>) {
        if self.running
            && !self.cfg.passive
            && !self.idle_hold_pending
            && self.conns.is_empty()
            && !self.connect_retry_armed
        {
            let d = self.connect_retry_delay();
            out.push(Action::StartTimer(Timer::ConnectRetry, d));
            self.connect_retry_armed = true;
        }
    }

    /// Starts connecting (unless passive). Called when leaving Idle.
    fn start(&mut self, out: &mut Vec<Action>) {
        if self.cfg.passive {
            return;
        }
        let id = self.new_conn_id();
        self.conns.push(Conn { id, dir: Direction::Outbound, state: ConnState::Connecting, negotiated: None });
        out.push(Action::Connect(id));
        let d = self.connect_retry_delay();
        out.push(Action::StartTimer(Timer::ConnectRetry, d));
    }

    fn stop(&mut self, notification: Option<NotificationMsg>, restart_after: Option<Duration>, out: &mut Vec<Action>) {
        let was_established = self.state() == State::Established;
        for c in std::mem::take(&mut self.conns) {
            if c.state >= ConnState::OpenSent {
                if let Some(n) = &notification {
                    out.push(Action::Send(c.id, Message::Notification(n.clone())));
                }
            }
            out.push(Action::StopTimer(Timer::Hold(c.id)));
            out.push(Action::StopTimer(Timer::Keepalive(c.id)));
            out.push(Action::Close(c.id));
        }
        out.push(Action::StopTimer(Timer::ConnectRetry));
        out.push(Action::StopTimer(Timer::Stable));
        let reason = notification.map_or(DownReason::Stopped, DownReason::NotificationSent);
        if was_established {
            out.push(Action::SessionDown(reason.clone()));
        }
        self.last_down = Some(reason);
        self.connect_retry_counter = 0;
        self.damping = false;
        match restart_after {
            Some(d) => {
                self.running = true;
                self.idle_hold_pending = true;
                out.push(Action::StartTimer(Timer::IdleHold, d));
            }
            None => {
                self.running = false;
                self.idle_hold_pending = false;
                out.push(Action::StopTimer(Timer::IdleHold));
            }
        }
    }

    fn tcp_cr_acked(&mut self, id: ConnId, out: &mut Vec<Action>) {
        match self.conn_index(id) {
            Some(i) if self.conns[i].state == ConnState::Connecting => {
                self.conns[i].state = ConnState::OpenSent;
                out.push(Action::StopTimer(Timer::ConnectRetry));
                out.push(Action::Send(id, self.open_msg()));
                out.push(Action::StartTimer(Timer::Hold(id), OPEN_HOLD_TIME));
            }
            _ => out.push(Action::Close(id)),
        }
    }

    fn tcp_confirmed(&mut self, id: ConnId, out: &mut Vec<Action>) {
        if self.idle_hold_pending && self.damping && self.cfg.passive {
            // A passive peer's damping holds back nothing of ours: the
            // peer chose when to come back.
            self.idle_hold_pending = false;
            self.damping = false;
            out.push(Action::StopTimer(Timer::IdleHold));
        }
        if !self.running || self.idle_hold_pending {
            out.push(Action::Close(id));
            return;
        }
        if let Some(est) = self.conns.iter().find(|c| c.state == ConnState::Established) {
            let gr = est.negotiated.as_ref().is_some_and(|n| n.graceful_restart);
            if !gr {
                // RFC 4271 §6.8: a collision with an Established session
                // closes the new connection.
                out.push(Action::Close(id));
                return;
            }
            // RFC 4724 §4: the peer restarted; drop the old session and
            // take the new connection.
            let old = est.id;
            self.drop_conn(old, None, out);
            out.push(Action::SessionDown(DownReason::PeerRestarted));
            self.last_down = Some(DownReason::PeerRestarted);
        }
        // A second inbound connection replaces the first: the peer gave up on it.
        if let Some(old) = self.conns.iter().find(|c| c.dir == Direction::Inbound).map(|c| c.id) {
            self.drop_conn(old, None, out);
        }
        self.conns.push(Conn { id, dir: Direction::Inbound, state: ConnState::OpenSent, negotiated: None });
        out.push(Action::Send(id, self.open_msg()));
        out.push(Action::StartTimer(Timer::Hold(id), OPEN_HOLD_TIME));
    }

    fn tcp_fails(&mut self, id: ConnId, out: &mut Vec<Action>) {
        let Some(i) = self.conn_index(id) else { return };
        match self.conns[i].state {
            // The ConnectRetryTimer armed with the attempt is still running:
            // wait for it in Active.
            ConnState::Connecting => self.drop_conn(id, None, out),
            ConnState::OpenSent => {
                // RFC 4271 §8.2.2 (OpenSent, Event 18): back to Active and
                // retry after ConnectRetryTimer.
                self.drop_conn(id, None, out);
                if self.conns.is_empty() && !self.cfg.passive {
                    let d = self.connect_retry_delay();
                    out.push(Action::StartTimer(Timer::ConnectRetry, d));
                }
            }
            _ => self.conn_error(id, None, DownReason::ConnectionClosed, out),
        }
    }

    /// Removes a connection, optionally sending a NOTIFICATION first.
    fn drop_conn(&mut self, id: ConnId, notification: Option<NotificationMsg>, out: &mut Vec<Action>) {
        if let Some(i) = self.conn_index(id) {
            self.conns.remove(i);
            if let Some(n) = notification {
                out.push(Action::Send(id, Message::Notification(n)));
            }
            out.push(Action::StopTimer(Timer::Hold(id)));
            out.push(Action::StopTimer(Timer::Keepalive(id)));
            out.push(Action::Close(id));
        }
    }

    /// An error on a connection: notify, close, and — unless another
    /// connection is still negotiating — take the peer to Idle with damping.
    fn conn_error(
        &mut self,
        id: ConnId,
        notification: Option<NotificationMsg>,
        reason: DownReason,
        out: &mut Vec<Action>,
    ) {
        let Some(i) = self.conn_index(id) else { return };
        let was_established = self.conns[i].state == ConnState::Established;
        self.drop_conn(id, notification, out);
        if !was_established && !self.conns.is_empty() {
            return;
        }
        for c in std::mem::take(&mut self.conns) {
            out.push(Action::StopTimer(Timer::Hold(c.id)));
            out.push(Action::StopTimer(Timer::Keepalive(c.id)));
            out.push(Action::Close(c.id));
        }
        out.push(Action::StopTimer(Timer::ConnectRetry));
        out.push(Action::StopTimer(Timer::Stable));
        if was_established {
            out.push(Action::SessionDown(reason.clone()));
        }
        self.last_down = Some(reason);
        self.connect_retry_counter = 0;
        if self.running && !self.idle_hold_current.is_zero() {
            // DampPeerOscillations: wait, then double the next wait.
            self.idle_hold_pending = true;
            self.damping = true;
            let d = self.jitter(self.idle_hold_current);
            out.push(Action::StartTimer(Timer::IdleHold, d));
            self.idle_hold_current = self.idle_hold_current.saturating_mul(2).min(self.cfg.idle_hold_max);
        }
        // Without damping an active peer tries again after ConnectRetry
        // (ensure_progress), a passive one waits for the peer.
    }

    fn fsm_error(&mut self, id: ConnId, state: ConnState, out: &mut Vec<Action>) {
        let sub = match state {
            ConnState::OpenSent => fsm_sub::UNEXPECTED_MESSAGE_IN_OPEN_SENT,
            ConnState::OpenConfirm => fsm_sub::UNEXPECTED_MESSAGE_IN_OPEN_CONFIRM,
            ConnState::Established => fsm_sub::UNEXPECTED_MESSAGE_IN_ESTABLISHED,
            ConnState::Connecting => fsm_sub::UNSPECIFIED,
        };
        let n = NotificationMsg::new(code::FSM, sub, bytes::Bytes::new());
        self.conn_error(id, Some(n.clone()), DownReason::NotificationSent(n), out);
    }

    /// Restarts the hold timer of an Established (or OpenConfirm)
    /// connection after a message: a field read, no copy of the session.
    fn restart_hold(&self, id: ConnId, hold_time: u16, out: &mut Vec<Action>) {
        if hold_time > 0 {
            out.push(Action::StartTimer(Timer::Hold(id), Duration::from_secs(u64::from(hold_time))));
        } else {
            out.push(Action::StopTimer(Timer::Hold(id)));
        }
    }

    fn message(&mut self, id: ConnId, msg: Message, out: &mut Vec<Action>) {
        let Some(i) = self.conn_index(id) else { return };
        let state = self.conns[i].state;
        match (state, msg) {
            (_, Message::Notification(n)) => {
                self.conn_error(id, None, DownReason::NotificationReceived(n), out);
            }
            (ConnState::OpenSent, Message::Open(open)) => self.open_received(id, open, out),
            (ConnState::OpenConfirm, Message::Keepalive) => {
                let Some(n) = self.conns[i].negotiated.clone() else {
                    return self.fsm_error(id, state, out);
                };
                self.conns[i].state = ConnState::Established;
                self.restart_hold(id, n.hold_time, out);
                // Any other connection loses the collision (RFC 4271 §6.8).
                let others: Vec<ConnId> = self.conns.iter().filter(|c| c.id != id).map(|c| c.id).collect();
                for o in others {
                    let sent_open = self.conn_index(o).is_some_and(|j| self.conns[j].state >= ConnState::OpenSent);
                    let cease = sent_open.then(collision_cease);
                    self.drop_conn(o, cease, out);
                }
                out.push(Action::StopTimer(Timer::ConnectRetry));
                out.push(Action::StartTimer(Timer::Stable, self.cfg.stable_time));
                self.connect_retry_counter = 0;
                out.push(Action::Established(id, Box::new(n)));
            }
            (ConnState::Established, Message::Keepalive) => {
                if let Some(h) = self.conns[i].negotiated.as_ref().map(|n| n.hold_time) {
                    self.restart_hold(id, h, out);
                }
            }
            (ConnState::Established, Message::Update(u)) => {
                if let Some(h) = self.conns[i].negotiated.as_ref().map(|n| n.hold_time) {
                    self.restart_hold(id, h, out);
                }
                out.push(Action::Update(Box::new(u)));
            }
            (ConnState::Established, Message::RouteRefresh(r)) => {
                if let Some(h) = self.conns[i].negotiated.as_ref().map(|n| n.hold_time) {
                    self.restart_hold(id, h, out);
                }
                out.push(Action::RouteRefresh(r));
            }
            (ConnState::OpenConfirm, Message::Open(_)) | (ConnState::Established, Message::Open(_)) => {
                self.fsm_error(id, state, out)
            }
            (ConnState::Connecting, _) => {}
            (s, _) => self.fsm_error(id, s, out),
        }
    }

    fn open_received(&mut self, id: ConnId, open: OpenMsg, out: &mut Vec<Action>) {
        let remote_as = open.asn();
        if remote_as != self.cfg.peer_as || remote_as == 0 {
            let e = DecodeError::BadPeerAs(remote_as);
            let mut n =
                e.notification().unwrap_or_else(|| NotificationMsg::new(code::OPEN_MESSAGE, 2, bytes::Bytes::new()));
            n.data = bytes::Bytes::copy_from_slice(&open.my_as.to_be_bytes());
            self.conn_error(id, Some(n.clone()), DownReason::NotificationSent(n), out);
            return;
        }
        // RFC 6286 §2.1: within an AS the identifiers must differ.
        if remote_as == self.cfg.local_as && open.bgp_id == self.cfg.local_id {
            if let Some(n) = DecodeError::BadBgpIdentifier(open.bgp_id).notification() {
                self.conn_error(id, Some(n.clone()), DownReason::NotificationSent(n), out);
            }
            return;
        }
        // Collision detection (RFC 4271 §6.8) against the other connection
        // in OpenConfirm, now that the peer's BGP Identifier is known. The
        // connection initiated by the side with the higher identifier
        // survives; equal identifiers (legal for eBGP) fall back to the
        // higher AS (RFC 6286 §2.3). Decided before answering, so the
        // loser never gets a KEEPALIVE.
        let Some(i) = self.conn_index(id) else { return };
        let dir = self.conns[i].dir;
        let other = self.conns.iter().find(|c| c.id != id && c.state == ConnState::OpenConfirm).map(|c| c.id);
        if let Some(other_id) = other {
            let local = (u32::from(self.cfg.local_id), self.cfg.local_as);
            let keep_outbound = local > (u32::from(open.bgp_id), remote_as);
            if (dir == Direction::Outbound) == keep_outbound {
                self.drop_conn(other_id, Some(collision_cease()), out);
            } else {
                self.drop_conn(id, Some(collision_cease()), out);
                return;
            }
        }
        let n = negotiate(self.cfg.local_as, self.cfg.hold_time, &self.cfg.capabilities, &open);
        let Some(i) = self.conn_index(id) else { return };
        self.conns[i].state = ConnState::OpenConfirm;
        self.conns[i].negotiated = Some(n.clone());
        out.push(Action::Send(id, Message::Keepalive));
        if n.hold_time > 0 {
            out.push(Action::StartTimer(Timer::Hold(id), Duration::from_secs(u64::from(n.hold_time))));
            out.push(Action::StartTimer(Timer::Keepalive(id), Duration::from_secs(u64::from(n.keepalive.max(1)))));
        }
        // With hold time 0 the 240 s OPEN hold timer keeps running until
        // the KEEPALIVE arrives, so a silent peer cannot park us here.
    }

    fn timer(&mut self, t: Timer, out: &mut Vec<Action>) {
        match t {
            Timer::ConnectRetry => {
                if !self.running || self.idle_hold_pending || self.cfg.passive {
                    return;
                }
                // Only retry while no connection got past Connecting.
                if self.conns.iter().any(|c| c.state >= ConnState::OpenSent) {
                    return;
                }
                let stale: Vec<ConnId> =
                    self.conns.iter().filter(|c| c.dir == Direction::Outbound).map(|c| c.id).collect();
                for s in stale {
                    self.drop_conn(s, None, out);
                }
                self.start(out);
            }
            Timer::IdleHold => {
                if self.running && self.idle_hold_pending {
                    self.idle_hold_pending = false;
                    self.start(out);
                }
            }
            Timer::Hold(id) => {
                if self.conn_index(id).is_some() {
                    let n = NotificationMsg::new(code::HOLD_TIMER_EXPIRED, 0, bytes::Bytes::new());
                    self.conn_error(id, Some(n), DownReason::HoldTimerExpired, out);
                }
            }
            Timer::Keepalive(id) => {
                if let Some(i) = self.conn_index(id) {
                    let c = &self.conns[i];
                    if c.state >= ConnState::OpenConfirm {
                        if let Some(n) = &c.negotiated {
                            if n.hold_time > 0 {
                                out.push(Action::Send(id, Message::Keepalive));
                                out.push(Action::StartTimer(
                                    Timer::Keepalive(id),
                                    Duration::from_secs(u64::from(n.keepalive.max(1))),
                                ));
                            }
                        }
                    }
                }
            }
            Timer::Stable => {
                if self.state() == State::Established {
                    self.idle_hold_current = self.cfg.idle_hold;
                }
            }
        }
    }
}

fn collision_cease() -> NotificationMsg {
    NotificationMsg::new(code::CEASE, cease_sub::CONNECTION_COLLISION_RESOLUTION, bytes::Bytes::new())
}
