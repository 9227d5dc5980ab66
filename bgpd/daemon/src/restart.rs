//! Graceful restart as the receiving speaker (RFC 4724 §4.2) and the
//! End-of-RIB bookkeeping of one peer, pure: the peer task tells [`Restart`]
//! that the session went down or came up, that End-of-RIB arrived or that
//! time passed, and does to the RIB what it answers (which families' stale
//! routes go).
//!
//! The families whose routes are kept stale are tracked here, so knowing
//! whether any stale route is left after an End-of-RIB costs no scan of the
//! table.

use std::time::Duration;

use bgpd::fsm::Negotiated;
use bgpd::packet::{Family, FamilySet};
use tokio::time::Instant;

/// RFC 4724: how long stale routes wait for End-of-RIB after the peer's
/// session is back.
pub const STALE_TIME: Duration = Duration::from_secs(360);

#[derive(Debug, Default)]
pub struct Restart {
    /// Families whose routes from the peer are kept stale through its
    /// restart.
    stale: FamilySet,
    /// When the stale routes go if not refreshed: the peer's restart time
    /// while it is down, then STALE_TIME while waiting for End-of-RIB.
    deadline: Option<Instant>,
    /// Families whose End-of-RIB this session has not delivered yet; when
    /// none are left the peer counts as converged for the FIB's sweep.
    eor_waiting: FamilySet,
}

/// What an End-of-RIB marker means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndOfRib {
    /// It was the session's last family to deliver one: the peer has
    /// converged.
    pub converged: bool,
    /// The family's stale routes that were not refreshed go now.
    pub purge: bool,
}

impl Restart {
    /// Some of the peer's routes are kept stale.
    pub fn stale(&self) -> bool {
        !self.stale.is_empty()
    }

    /// When [`Restart::expire`] must be called.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The session went down with the peer's routes of `kept` marked stale,
    /// to be kept for `hold` (RFC 4724 §4.2; nothing kept: nothing waits).
    pub fn session_down(&mut self, kept: FamilySet, hold: Duration, now: Instant) {
        self.stale = kept;
        self.deadline = self.stale().then(|| now + hold);
    }

    /// The peer's routes went at once (no graceful restart), or all stale
    /// ones were purged: nothing is kept.
    pub fn clear(&mut self) {
        self.stale = FamilySet::default();
        self.deadline = None;
    }

    /// The session came up with `n`. Returns the families whose stale
    /// routes go now: those the restarted peer no longer lists, or lists
    /// without the F bit (RFC 4724 §4.2). The rest wait for End-of-RIB, for
    /// STALE_TIME at most.
    pub fn established(&mut self, n: &Negotiated, now: Instant) -> Vec<Family> {
        self.eor_waiting = n.families;
        if !self.stale() {
            return Vec::new();
        }
        let keep: Vec<Family> = n
            .peer_graceful_restart
            .iter()
            .flat_map(|g| g.families.iter())
            .filter(|f| f.forwarding_preserved)
            .filter_map(|f| f.afi_safi.family())
            .collect();
        let purge: Vec<Family> = self.stale.iter().filter(|f| !keep.contains(f)).collect();
        for f in &purge {
            self.stale.remove(*f);
        }
        self.deadline = self.stale().then(|| now + STALE_TIME);
        purge
    }

    /// End-of-RIB for `f` arrived.
    pub fn end_of_rib(&mut self, f: Family) -> EndOfRib {
        let converged = self.eor_waiting.contains(f) && {
            self.eor_waiting.remove(f);
            self.eor_waiting.is_empty()
        };
        let purge = self.stale.contains(f);
        self.stale.remove(f);
        if !self.stale() {
            self.deadline = None;
        }
        EndOfRib { converged, purge }
    }

    /// Whether the deadline has passed: then every stale route goes, and
    /// nothing is kept any more.
    pub fn expire(&mut self, now: Instant) -> bool {
        if self.deadline.is_some_and(|d| d <= now) {
            self.clear();
            return true;
        }
        false
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use bgpd::fsm::negotiate;
    use bgpd::packet::{AfiSafi, Capability, GracefulRestart, GracefulRestartFamily, OpenMsg};

    fn both() -> FamilySet {
        let mut s = FamilySet::default();
        s.insert(Family::Ipv4Unicast);
        s.insert(Family::Ipv6Unicast);
        s
    }

    /// A session with both families, the peer's graceful restart capability
    /// keeping forwarding state for `preserved`.
    fn session(gr: Option<&[Family]>) -> Negotiated {
        let mut caps = vec![
            Capability::Multiprotocol(AfiSafi::IPV4_UNICAST),
            Capability::Multiprotocol(AfiSafi::IPV6_UNICAST),
            Capability::FourOctetAs(65001),
        ];
        let local = caps.iter().cloned().map(|c| match c {
            Capability::FourOctetAs(_) => Capability::FourOctetAs(64512),
            c => c,
        });
        let local: Vec<Capability> = local.collect();
        if let Some(preserved) = gr {
            caps.push(Capability::GracefulRestart(GracefulRestart {
                restart_state: true,
                notification: false,
                restart_time: 120,
                families: [Family::Ipv4Unicast, Family::Ipv6Unicast]
                    .into_iter()
                    .map(|f| GracefulRestartFamily {
                        afi_safi: f.afi_safi(),
                        forwarding_preserved: preserved.contains(&f),
                    })
                    .collect(),
            }));
        }
        negotiate(64512, 90, &local, &OpenMsg::new(65001, 90, Ipv4Addr::new(10, 0, 0, 254), caps))
    }

    #[test]
    fn stale_routes_wait_for_end_of_rib_per_family_where_forwarding_was_kept() {
        let (mut r, now) = (Restart::default(), Instant::now());
        r.session_down(both(), Duration::from_secs(120), now);
        assert!(r.stale());
        assert_eq!(r.deadline(), Some(now + Duration::from_secs(120)), "the peer's restart time while it is down");
        // Back, with forwarding kept for IPv4 only: IPv6's stale routes go.
        assert_eq!(r.established(&session(Some(&[Family::Ipv4Unicast])), now), [Family::Ipv6Unicast]);
        assert_eq!(r.deadline(), Some(now + STALE_TIME));
        assert_eq!(r.end_of_rib(Family::Ipv6Unicast), EndOfRib { converged: false, purge: false });
        assert_eq!(r.end_of_rib(Family::Ipv4Unicast), EndOfRib { converged: true, purge: true });
        assert!(!r.stale());
        assert_eq!(r.deadline(), None, "nothing left to wait for");
        // A second End-of-RIB (after a ROUTE-REFRESH) changes nothing.
        assert_eq!(r.end_of_rib(Family::Ipv4Unicast), EndOfRib { converged: false, purge: false });
    }

    #[test]
    fn a_peer_back_without_graceful_restart_loses_every_stale_route_at_once() {
        let (mut r, now) = (Restart::default(), Instant::now());
        r.session_down(both(), Duration::from_secs(120), now);
        assert_eq!(r.established(&session(None), now), [Family::Ipv4Unicast, Family::Ipv6Unicast]);
        assert!(!r.stale());
        assert_eq!(r.deadline(), None);
    }

    #[test]
    fn the_timer_ends_the_wait() {
        let (mut r, now) = (Restart::default(), Instant::now());
        let mut v4 = FamilySet::default();
        v4.insert(Family::Ipv4Unicast);
        r.session_down(v4, Duration::from_secs(5), now);
        assert!(!r.expire(now + Duration::from_secs(4)));
        assert!(r.expire(now + Duration::from_secs(5)));
        assert!(!r.stale() && r.deadline().is_none());
        assert!(!r.expire(now + Duration::from_secs(6)), "once");
    }

    #[test]
    fn without_a_restart_end_of_rib_only_counts_towards_convergence() {
        let (mut r, now) = (Restart::default(), Instant::now());
        r.session_down(FamilySet::default(), Duration::from_secs(120), now);
        assert!(!r.stale() && r.deadline().is_none(), "nothing kept, nothing to wait for");
        assert!(r.established(&session(Some(&[Family::Ipv4Unicast])), now).is_empty());
        assert_eq!(r.end_of_rib(Family::Ipv4Unicast), EndOfRib { converged: false, purge: false });
        assert_eq!(r.end_of_rib(Family::Ipv6Unicast), EndOfRib { converged: true, purge: false });
    }
}
