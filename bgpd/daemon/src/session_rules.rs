//! A peer session's protocol rules, pure: what a configuration edit does
//! to a running session, when a NOTIFICATION travels inside a Hard Reset
//! (RFC 8538), how long a lost session's routes are kept (RFC 4724), and
//! the Maximum Number of Prefixes NOTIFICATION (RFC 4486). The peer task
//! ([`crate::peer`]) applies the decisions; these functions only decide.

use std::time::Duration;

use bgpd::fsm::{DownReason, Negotiated};
use bgpd::packet::error::{cease_sub, code};
use bgpd::packet::{AfiSafi, NotificationMsg};

use crate::peer::NodeCtx;
use crate::plan::PeerConfig;

/// What a configuration edit does to an Established session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reconfigure {
    /// A setting the session negotiated or its transport depends on
    /// changed: reset it (Cease, Other Configuration Change).
    pub reset: bool,
    /// The export policy changed: re-export the difference.
    pub reexport: bool,
    /// The import policy changed: ask for the peer's routes again
    /// (ROUTE-REFRESH), or reset a peer that has no route refresh.
    pub reimport: bool,
}

/// Decides what changing a peer from `old` to `new` (and this node from
/// `old_node` to `new_node`) does.
pub fn reconfigure(old: &PeerConfig, new: &PeerConfig, old_node: &NodeCtx, new_node: &NodeCtx) -> Reconfigure {
    let reset = old.as_number != new.as_number
        || old.port != new.port
        || old.passive != new.passive
        || old.hold_time != new.hold_time
        || old.password != new.password
        || old.ttl_security != new.ttl_security
        || old.graceful_restart_time != new.graceful_restart_time
        || old.kind != new.kind
        || old.enforce_first_as != new.enforce_first_as;
    if reset {
        return Reconfigure { reset, ..Reconfigure::default() };
    }
    // Export reads the rules, export_learned, the next-hop mode and the
    // cluster ID; never this node's own prefixes (import reads those).
    let reexport = old.rules.export != new.rules.export
        || old.export_learned != new.export_learned
        || old.next_hop_mode != new.next_hop_mode
        || old_node.cluster_id != new_node.cluster_id;
    let reimport = old.rules.import != new.rules.import || old.allow_local_as != new.allow_local_as;
    Reconfigure { reset, reexport, reimport }
}

/// RFC 8538 §3: with the N bit on both sides (`both_n`), a NOTIFICATION
/// meant to end the session for good travels inside Cease/Hard Reset, its
/// code and subcode first in the data.
pub fn hard_reset(both_n: bool, inner: NotificationMsg) -> NotificationMsg {
    if !both_n {
        return inner;
    }
    let mut data = vec![inner.code, inner.subcode];
    data.extend_from_slice(&inner.data);
    NotificationMsg::new(code::CEASE, cease_sub::HARD_RESET, bytes::Bytes::from(data))
}

/// Whether both sides sent the N bit: this side whenever it sends graceful
/// restart (`local_restart_time` > 0), the peer as its capability says.
pub fn both_n(local_restart_time: u16, n: Option<&Negotiated>) -> bool {
    local_restart_time > 0 && n.and_then(|n| n.peer_graceful_restart.as_ref()).is_some_and(|g| g.notification)
}

/// How long to keep the peer's routes after losing the session for
/// `reason` (RFC 4724 §4.2, RFC 8538 §3), or `None` to withdraw them now.
pub fn graceful_restart_hold(n: &Negotiated, local_restart_time: u16, reason: &DownReason) -> Option<Duration> {
    let g = n.peer_graceful_restart.as_ref()?;
    if !n.graceful_restart || g.families.is_empty() || g.restart_time == 0 {
        return None;
    }
    let both_n = g.notification && local_restart_time > 0;
    let retain = match reason {
        DownReason::ConnectionClosed | DownReason::PeerRestarted => true,
        DownReason::HoldTimerExpired => both_n,
        DownReason::NotificationSent(m) | DownReason::NotificationReceived(m) => {
            both_n && !(m.code == code::CEASE && m.subcode == cease_sub::HARD_RESET)
        }
        DownReason::Stopped => false,
    };
    retain.then(|| Duration::from_secs(u64::from(g.restart_time)))
}

/// RFC 4486: Cease, Maximum Number of Prefixes Reached, with the family
/// (AFI, SAFI) and the limit as data.
pub fn max_prefixes_notification(family: AfiSafi, max: u32) -> NotificationMsg {
    let mut data = Vec::with_capacity(7);
    data.extend_from_slice(&family.afi.to_be_bytes());
    data.push(family.safi);
    data.extend_from_slice(&max.to_be_bytes());
    NotificationMsg::new(code::CEASE, cease_sub::MAXIMUM_PREFIXES_REACHED, bytes::Bytes::from(data))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use bgpd::fsm::negotiate;
    use bgpd::packet::{Capability, GracefulRestart, GracefulRestartFamily, OpenMsg};

    fn node(cluster: Option<Ipv4Addr>) -> NodeCtx {
        NodeCtx {
            local_as: 64512,
            router_id: Ipv4Addr::new(10, 0, 0, 1),
            node_v4: Some(Ipv4Addr::new(10, 0, 0, 1)),
            node_v6: None,
            own: vec!["10.244.0.0/26".parse().unwrap()],
            cluster_id: cluster,
            restarting: false,
        }
    }

    fn peer() -> PeerConfig {
        let cfg = conf::from_str(
            "[node]\nname = \"a\"\naddress = \"10.0.0.1/24\"\n\n[[bgp.peers]]\naddress = \"10.0.0.254\"\nas_number = 65001\n",
            std::path::Path::new("test.toml"),
        )
        .unwrap();
        crate::plan::plan(&cfg).into_iter().find(|p| p.address.to_string() == "10.0.0.254").unwrap()
    }

    fn session(peer_gr: Option<(bool, u16)>) -> Negotiated {
        let mut caps = vec![Capability::Multiprotocol(AfiSafi::IPV4_UNICAST), Capability::FourOctetAs(65001)];
        if let Some((n_bit, time)) = peer_gr {
            caps.push(Capability::GracefulRestart(GracefulRestart {
                restart_state: false,
                notification: n_bit,
                restart_time: time,
                families: vec![GracefulRestartFamily { afi_safi: AfiSafi::IPV4_UNICAST, forwarding_preserved: true }],
            }));
        }
        let local =
            [crate::peer::local_capabilities(64512), vec![crate::peer::graceful_restart_capability(120, false)]]
                .concat();
        negotiate(64512, 90, &local, &OpenMsg::new(65001, 90, Ipv4Addr::new(10, 0, 0, 254), caps))
    }

    #[test]
    fn transport_and_negotiated_settings_reset_policy_applies_in_place() {
        let (old, n) = (peer(), node(None));
        assert_eq!(reconfigure(&old, &old, &n, &n), Reconfigure::default(), "no edit, nothing");
        let mut damping = old.clone();
        (damping.error_wait, damping.error_wait_max) = (Duration::ZERO, Duration::ZERO);
        assert_eq!(reconfigure(&old, &damping, &n, &n), Reconfigure::default(), "damping applies in the FSM, in place");
        for edit in [
            |p: &mut PeerConfig| p.hold_time = 30,
            |p: &mut PeerConfig| p.password = Some("x".into()),
            |p: &mut PeerConfig| p.passive = !p.passive,
            |p: &mut PeerConfig| p.graceful_restart_time = 0,
            |p: &mut PeerConfig| p.as_number = 65002,
        ] {
            let mut new = old.clone();
            edit(&mut new);
            assert_eq!(reconfigure(&old, &new, &n, &n), Reconfigure { reset: true, ..Default::default() });
        }
        let mut new = old.clone();
        new.export_learned = !new.export_learned;
        assert_eq!(reconfigure(&old, &new, &n, &n), Reconfigure { reexport: true, ..Default::default() });
        let mut new = old.clone();
        new.allow_local_as = 2;
        assert_eq!(reconfigure(&old, &new, &n, &n), Reconfigure { reimport: true, ..Default::default() });
        // A new cluster ID changes what is reflected; new own prefixes (an
        // IPAM block) change nothing export reads.
        assert!(reconfigure(&old, &old, &n, &node(Some(Ipv4Addr::new(1, 0, 0, 1)))).reexport);
        let mut more_blocks = node(None);
        more_blocks.own.push("10.244.0.64/26".parse().unwrap());
        assert_eq!(reconfigure(&old, &old, &n, &more_blocks), Reconfigure::default());
    }

    #[test]
    fn a_hard_reset_wraps_the_notification_only_with_both_n_bits() {
        let inner = NotificationMsg::cease_with_communication(cease_sub::OTHER_CONFIGURATION_CHANGE, "bye");
        assert_eq!(hard_reset(false, inner.clone()), inner);
        let hr = hard_reset(true, inner.clone());
        assert_eq!((hr.code, hr.subcode), (code::CEASE, cease_sub::HARD_RESET));
        assert_eq!(hr.data[..2], [inner.code, inner.subcode]);
        assert_eq!(&hr.data[2..], &inner.data[..]);
        assert!(both_n(120, Some(&session(Some((true, 120))))));
        assert!(!both_n(0, Some(&session(Some((true, 120))))), "our N bit goes with our capability");
        assert!(!both_n(120, Some(&session(Some((false, 120))))));
        assert!(!both_n(120, Some(&session(None))));
        assert!(!both_n(120, None));
    }

    #[test]
    fn routes_are_kept_through_a_restart_as_rfc_4724_and_8538_say() {
        let cease = |sub| NotificationMsg::new(code::CEASE, sub, bytes::Bytes::new());
        let with_n = session(Some((true, 90)));
        let keep = Some(Duration::from_secs(90));
        assert_eq!(graceful_restart_hold(&with_n, 120, &DownReason::ConnectionClosed), keep);
        assert_eq!(graceful_restart_hold(&with_n, 120, &DownReason::HoldTimerExpired), keep);
        let admin = DownReason::NotificationReceived(cease(cease_sub::ADMINISTRATIVE_SHUTDOWN));
        assert_eq!(graceful_restart_hold(&with_n, 120, &admin), keep, "RFC 8538: any NOTIFICATION but a Hard Reset");
        let hard = DownReason::NotificationSent(cease(cease_sub::HARD_RESET));
        assert_eq!(graceful_restart_hold(&with_n, 120, &hard), None);
        assert_eq!(graceful_restart_hold(&with_n, 120, &DownReason::Stopped), None);
        // Without the N bit (RFC 4724 alone) only a closed connection keeps them.
        let plain = session(Some((false, 90)));
        assert_eq!(graceful_restart_hold(&plain, 120, &DownReason::ConnectionClosed), keep);
        assert_eq!(graceful_restart_hold(&plain, 120, &DownReason::HoldTimerExpired), None);
        assert_eq!(graceful_restart_hold(&plain, 120, &admin), None);
        // No capability, or a restart time of 0: nothing is kept.
        assert_eq!(graceful_restart_hold(&session(None), 120, &DownReason::ConnectionClosed), None);
        assert_eq!(graceful_restart_hold(&session(Some((true, 0))), 120, &DownReason::ConnectionClosed), None);
    }

    #[test]
    fn the_max_prefixes_notification_names_the_family_and_the_limit() {
        let m = max_prefixes_notification(AfiSafi::IPV6_UNICAST, 1000);
        assert_eq!((m.code, m.subcode), (code::CEASE, cease_sub::MAXIMUM_PREFIXES_REACHED));
        assert_eq!(&m.data[..], &[0, 2, 1, 0, 0, 0x03, 0xe8]);
    }
}
