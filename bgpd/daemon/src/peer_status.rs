//! A peer's published status, pure: the [`PeerStatus`] that `merlectl
//! status` and the metrics read, built from what the peer task holds, and
//! when it is rebuilt: at once on a state change, at most every
//! [`PUBLISH_EVERY`] while only counters move (not once per frame).

use std::time::{Duration, SystemTime};

use bgpd::fsm::{Negotiated, State};
use tokio::time::Instant;

use crate::api::{PeerDetail, PeerStatus};
use crate::plan::PeerConfig;

/// How stale the published status may be while nothing but counters
/// change.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(100);

/// What the peer task counts.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    /// Paths held from the peer.
    pub prefixes_received: usize,
    /// Prefixes the peer holds from us (its Adj-RIB-Out).
    pub prefixes_advertised: usize,
    pub updates_received: u64,
    pub updates_sent: u64,
}

/// Everything a status is built from.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub cfg: &'a PeerConfig,
    pub local_as: u32,
    pub state: State,
    pub since: SystemTime,
    pub session: Option<&'a Negotiated>,
    pub last_error: Option<&'a str>,
    pub counters: Counters,
    pub out_queue_bytes: usize,
    pub detail: &'a PeerDetail,
}

/// The Info column, as BIRD and Calico show it: the state, and the last
/// error while not Established.
pub fn info(state: State, last_error: Option<&str>) -> String {
    match (last_error, state) {
        (_, State::Established) => "Established".to_owned(),
        (Some(e), s) => format!("{s}: {e}"),
        (None, s) => s.to_string(),
    }
}

pub fn build(f: &Facts<'_>) -> PeerStatus {
    let (cfg, n) = (f.cfg, f.session);
    let ebgp = cfg.as_number != f.local_as;
    PeerStatus {
        address: cfg.address.to_string(),
        port: cfg.port,
        as_number: cfg.as_number,
        peer_type: cfg.kind.label().into(),
        session: if ebgp { "ebgp" } else { "ibgp" }.into(),
        state: f.state.to_string(),
        since: humantime::format_rfc3339_seconds(f.since).to_string(),
        since_unix: f.since.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        info: info(f.state, f.last_error),
        passive: cfg.passive,
        description: cfg.description.clone(),
        remote_id: n.map(|n| n.remote_id.to_string()),
        hold_time: n.map(|n| n.hold_time),
        keepalive: n.map(|n| n.keepalive),
        families: n.map(|n| n.families.iter().map(|f| f.to_string()).collect()).unwrap_or_default(),
        four_octet_as: n.map(|n| n.four_octet_as),
        prefixes_received: f.counters.prefixes_received,
        prefixes_advertised: f.counters.prefixes_advertised,
        updates_received: f.counters.updates_received,
        updates_sent: f.counters.updates_sent,
        out_queue_bytes: f.out_queue_bytes,
        last_error: f.last_error.map(str::to_owned),
        detail: PeerDetail {
            hold_time_configured: cfg.hold_time,
            connect_retry: cfg.connect_retry.as_secs(),
            password: cfg.password.is_some(),
            ttl_security: cfg.ttl_security,
            graceful_restart_time: cfg.graceful_restart_time,
            ..f.detail.clone()
        },
    }
}

/// When to publish, and since when the peer is in its state.
#[derive(Debug)]
pub struct Publisher {
    at: Instant,
    due: bool,
    state: State,
    since: SystemTime,
}

impl Publisher {
    pub fn new(now: Instant) -> Self {
        Self { at: now, due: false, state: State::Idle, since: SystemTime::now() }
    }

    /// After a turn of the task loop: whether to publish now (the state
    /// changed, or PUBLISH_EVERY has passed); otherwise the publication is
    /// noted as due and [`Publisher::wake_at`] says when.
    pub fn turn(&mut self, state: State, now: Instant) -> bool {
        if state != self.state || now.duration_since(self.at) >= PUBLISH_EVERY {
            return true;
        }
        self.due = true;
        false
    }

    /// When the task must wake to publish what is due.
    pub fn wake_at(&self) -> Option<Instant> {
        self.due.then_some(self.at + PUBLISH_EVERY)
    }

    /// A publication of `state` at `now`: returns the state left, if it
    /// changed.
    pub fn published(&mut self, state: State, now: Instant) -> Option<State> {
        self.at = now;
        self.due = false;
        if state == self.state {
            return None;
        }
        self.since = SystemTime::now();
        Some(std::mem::replace(&mut self.state, state))
    }

    /// When the peer entered its current state.
    pub fn since(&self) -> SystemTime {
        self.since
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_state_change_publishes_at_once_counters_at_most_every_100_ms() {
        let t0 = Instant::now();
        let mut p = Publisher::new(t0);
        assert_eq!(p.wake_at(), None);
        assert!(p.turn(State::Connect, t0), "a state change");
        assert_eq!(p.published(State::Connect, t0), Some(State::Idle));
        let ms = |n| t0 + Duration::from_millis(n);
        assert!(!p.turn(State::Connect, ms(10)), "only counters moved");
        assert_eq!(p.wake_at(), Some(ms(100)));
        assert!(!p.turn(State::Connect, ms(60)));
        assert!(p.turn(State::Connect, ms(100)));
        assert_eq!(p.published(State::Connect, ms(100)), None);
        assert_eq!(p.wake_at(), None);
        assert!(p.turn(State::OpenSent, ms(101)), "a state change does not wait");
    }

    #[test]
    fn info_shows_the_last_error_until_established() {
        assert_eq!(info(State::Active, Some("connect: refused")), "Active: connect: refused");
        assert_eq!(info(State::Established, Some("old")), "Established");
        assert_eq!(info(State::Idle, None), "Idle");
    }

    #[test]
    fn a_status_carries_the_configuration_the_session_and_the_counters() {
        let file = conf::from_str(
            "[node]\nname = \"a\"\naddress = \"10.0.0.1/24\"\n\n[[bgp.peers]]\naddress = \"10.0.0.254\"\nas_number = 65001\n",
            std::path::Path::new("test.toml"),
        )
        .unwrap();
        let cfg = crate::plan::plan(&file).into_iter().find(|p| p.address.to_string() == "10.0.0.254").unwrap();
        let detail = PeerDetail { flaps: 2, ..Default::default() };
        let counters = Counters { prefixes_received: 5, prefixes_advertised: 3, updates_received: 7, updates_sent: 4 };
        let f = Facts {
            cfg: &cfg,
            local_as: 64512,
            state: State::Active,
            since: SystemTime::UNIX_EPOCH + Duration::from_secs(60),
            session: None,
            last_error: Some("hold timer expired"),
            counters,
            out_queue_bytes: 19,
            detail: &detail,
        };
        let s = build(&f);
        assert_eq!((s.session.as_str(), s.state.as_str(), s.since_unix), ("ebgp", "Active", 60));
        assert_eq!(s.info, "Active: hold timer expired");
        assert_eq!((s.prefixes_received, s.prefixes_advertised, s.updates_sent, s.out_queue_bytes), (5, 3, 4, 19));
        assert_eq!((s.detail.flaps, s.detail.hold_time_configured), (2, cfg.hold_time));
        assert!(s.remote_id.is_none() && s.families.is_empty());
        let ibgp = Facts { local_as: 65001, ..f };
        assert_eq!(build(&ibgp).session, "ibgp");
    }
}
