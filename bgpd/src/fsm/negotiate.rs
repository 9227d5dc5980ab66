//! What two speakers agree on from their OPEN messages: hold time (RFC 4271
//! §4.2), families (RFC 4760 §8), 4-octet AS (RFC 6793), ADD-PATH directions
//! (RFC 7911 §4), extended next hop (RFC 8950), route refresh (RFC 2918,
//! RFC 7313) and the peer's graceful restart state (RFC 4724).

use std::net::Ipv4Addr;

use crate::packet::{
    afi::AFI_IPV6, AddPathMode, Capability, DecodeCtx, EncodeCtx, Family, FamilySet, GracefulRestart, OpenMsg,
};

/// The result of the OPEN exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub remote_as: u32,
    pub remote_id: Ipv4Addr,
    /// Seconds; 0 means no keepalives and no hold timer.
    pub hold_time: u16,
    pub keepalive: u16,
    pub four_octet_as: bool,
    pub families: FamilySet,
    pub add_path_rx: FamilySet,
    pub add_path_tx: FamilySet,
    /// Families whose NLRI we accept with an IPv6 next hop: what we
    /// advertised (RFC 8950 §3 — the capability says what the sender can
    /// receive).
    pub extended_next_hop_rx: FamilySet,
    /// Families we may send with an IPv6 next hop: what the peer advertised.
    pub extended_next_hop_tx: FamilySet,
    pub route_refresh: bool,
    pub enhanced_route_refresh: bool,
    /// The peer's graceful restart capability, if it sent one.
    pub peer_graceful_restart: Option<GracefulRestart>,
    /// Both sides sent graceful restart.
    pub graceful_restart: bool,
    pub ebgp: bool,
}

impl Negotiated {
    pub fn decode_ctx(&self, enforce_first_as: bool) -> DecodeCtx {
        DecodeCtx {
            four_octet_as: self.four_octet_as,
            add_path_rx: self.add_path_rx,
            extended_next_hop: self.extended_next_hop_rx,
            ebgp: self.ebgp,
            enforce_first_as: (self.ebgp && enforce_first_as).then_some(self.remote_as),
        }
    }

    pub fn encode_ctx(&self) -> EncodeCtx {
        EncodeCtx { four_octet_as: self.four_octet_as, add_path_tx: self.add_path_tx }
    }
}

fn mp_families<'a>(caps: impl Iterator<Item = &'a Capability>) -> FamilySet {
    let mut any = false;
    let mut set = FamilySet::EMPTY;
    for c in caps {
        if let Capability::Multiprotocol(a) = c {
            any = true;
            if let Some(f) = a.family() {
                set.insert(f);
            }
        }
    }
    // RFC 4760 §8: without the capability, only IPv4 unicast is spoken.
    if !any {
        set.insert(Family::Ipv4Unicast);
    }
    set
}

fn add_path_modes<'a>(caps: impl Iterator<Item = &'a Capability>) -> Vec<(Family, AddPathMode)> {
    caps.filter_map(|c| match c {
        Capability::AddPath(v) => Some(v.iter().filter_map(|t| Some((t.afi_safi.family()?, t.mode)))),
        _ => None,
    })
    .flatten()
    .collect()
}

fn ext_nh<'a>(caps: impl Iterator<Item = &'a Capability>) -> FamilySet {
    caps.filter_map(|c| match c {
        Capability::ExtendedNextHop(v) => {
            Some(v.iter().filter(|t| t.next_hop_afi == AFI_IPV6).filter_map(|t| t.nlri.family()))
        }
        _ => None,
    })
    .flatten()
    .collect()
}

/// Computes the session parameters from our capabilities and hold time and
/// the peer's OPEN.
pub fn negotiate(local_as: u32, local_hold: u16, local_caps: &[Capability], open: &OpenMsg) -> Negotiated {
    let remote = || open.capabilities();
    let hold_time = local_hold.min(open.hold_time);
    let both = |f: fn(&Capability) -> bool| local_caps.iter().any(f) && open.capabilities().any(f);
    let four_octet_as = both(|c| matches!(c, Capability::FourOctetAs(_)));
    let families = mp_families(local_caps.iter()).intersection(mp_families(remote()));

    let local_ap = add_path_modes(local_caps.iter());
    let remote_ap = add_path_modes(remote());
    let mut add_path_rx = FamilySet::EMPTY;
    let mut add_path_tx = FamilySet::EMPTY;
    for f in families.iter() {
        let l = local_ap.iter().find(|(g, _)| *g == f).map(|x| x.1);
        let r = remote_ap.iter().find(|(g, _)| *g == f).map(|x| x.1);
        if let (Some(l), Some(r)) = (l, r) {
            if l.can_receive() && r.can_send() {
                add_path_rx.insert(f);
            }
            if l.can_send() && r.can_receive() {
                add_path_tx.insert(f);
            }
        }
    }
    let peer_graceful_restart = remote().find_map(|c| match c {
        Capability::GracefulRestart(g) => Some(g.clone()),
        _ => None,
    });
    let local_gr = local_caps.iter().any(|c| matches!(c, Capability::GracefulRestart(_)));
    let remote_as = open.asn();
    Negotiated {
        remote_as,
        remote_id: open.bgp_id,
        hold_time,
        keepalive: hold_time / 3,
        four_octet_as,
        families,
        add_path_rx,
        add_path_tx,
        extended_next_hop_rx: ext_nh(local_caps.iter()),
        extended_next_hop_tx: ext_nh(remote()),
        route_refresh: both(|c| matches!(c, Capability::RouteRefresh)),
        enhanced_route_refresh: both(|c| matches!(c, Capability::EnhancedRouteRefresh)),
        graceful_restart: local_gr && peer_graceful_restart.is_some(),
        peer_graceful_restart,
        ebgp: remote_as != local_as,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{AddPathFamily, AfiSafi};

    fn open(hold: u16, caps: Vec<Capability>) -> OpenMsg {
        OpenMsg::new(65001, hold, Ipv4Addr::new(10, 0, 0, 2), caps)
    }

    #[test]
    fn hold_time_is_the_minimum_and_zero_disables() {
        let n = negotiate(64512, 90, &[], &open(30, vec![]));
        assert_eq!((n.hold_time, n.keepalive), (30, 10));
        let n = negotiate(64512, 90, &[], &open(0, vec![]));
        assert_eq!((n.hold_time, n.keepalive), (0, 0));
    }

    #[test]
    fn families_default_to_ipv4_and_intersect() {
        let n = negotiate(64512, 90, &[], &open(90, vec![]));
        assert_eq!(n.families.iter().collect::<Vec<_>>(), vec![Family::Ipv4Unicast]);
        let local =
            [Capability::Multiprotocol(AfiSafi::IPV4_UNICAST), Capability::Multiprotocol(AfiSafi::IPV6_UNICAST)];
        let n = negotiate(64512, 90, &local, &open(90, vec![Capability::Multiprotocol(AfiSafi::IPV6_UNICAST)]));
        assert_eq!(n.families.iter().collect::<Vec<_>>(), vec![Family::Ipv6Unicast]);
        assert!(n.ebgp);
    }

    #[test]
    fn add_path_directions() {
        let local =
            [Capability::AddPath(vec![AddPathFamily { afi_safi: AfiSafi::IPV4_UNICAST, mode: AddPathMode::Receive }])];
        let remote =
            vec![Capability::AddPath(vec![AddPathFamily { afi_safi: AfiSafi::IPV4_UNICAST, mode: AddPathMode::Both }])];
        let n = negotiate(64512, 90, &local, &open(90, remote));
        assert!(n.add_path_rx.contains(Family::Ipv4Unicast));
        assert!(!n.add_path_tx.contains(Family::Ipv4Unicast));
    }

    #[test]
    fn four_octet_as_needs_both() {
        let local = [Capability::FourOctetAs(64512)];
        let n = negotiate(64512, 90, &local, &open(90, vec![]));
        assert!(!n.four_octet_as);
        let n = negotiate(64512, 90, &local, &open(90, vec![Capability::FourOctetAs(4_200_000_000)]));
        assert!(n.four_octet_as);
        assert_eq!(n.remote_as, 4_200_000_000);
    }
}
