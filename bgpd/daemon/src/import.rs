//! Turns a received UPDATE into RIB changes (RFC 4271 §9.1): withdrawals
//! first, then announcements, with loop detection and the per-session rules
//! for LOCAL_PREF. Pure, so it is tested without sockets.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use bgpd::packet::{AttrValue, FamilySet, Origin, UpdateMsg};
use bgpd::rib::{Path, PathSource, PeerRef, RouteAttrs};
use ipnet::IpNet;

/// What the import needs to know about this node and the session.
#[derive(Debug, Clone)]
pub struct ImportCtx<'a> {
    pub local_as: u32,
    pub router_id: Ipv4Addr,
    /// Our cluster ID when we are a route reflector.
    pub cluster_id: Option<Ipv4Addr>,
    /// This node's own prefixes: routes for them are not imported.
    pub own: &'a [IpNet],
    /// How often our AS may appear in an eBGP AS path (Calico's
    /// `allowLocalAS`).
    pub allow_local_as: u8,
    pub peer: Arc<PeerRef>,
    pub four_octet_as: bool,
    pub families: FamilySet,
    /// This node's addresses (the session's own end, the node's IPv4 and
    /// IPv6 addresses): a route whose next hop is one of them is ignored
    /// (RFC 4271 §6.3).
    pub local_addrs: [Option<IpAddr>; 3],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RibChange {
    Announce(IpNet, Path),
    Withdraw(IpNet, u32),
}

/// Why announced routes were turned into withdrawals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Our AS is in the AS_PATH (RFC 4271 §9.1.2).
    AsPathLoop,
    /// ORIGINATOR_ID is our router ID (RFC 4456 §8).
    OriginatorLoop,
    /// Our cluster ID is in the CLUSTER_LIST (RFC 4456 §8).
    ClusterLoop,
    /// The next hop is this node's own address (RFC 4271 §6.3): the route
    /// is ignored.
    NextHopIsSelf,
}

/// The changes an UPDATE makes, and why announcements were rejected if so.
pub fn import(u: &UpdateMsg, ctx: &ImportCtx<'_>) -> (Vec<RibChange>, Option<Rejection>) {
    let mut changes: Vec<RibChange> = u
        .withdrawals()
        .into_iter()
        .filter(|n| ctx.families.contains(n.family()))
        .map(|n| RibChange::Withdraw(n.prefix, n.path_id.unwrap_or(0)))
        .collect();
    let announced = u.announcements();
    if announced.is_empty() {
        return (changes, None);
    }
    let Some(as_path) = u.effective_as_path(ctx.four_octet_as) else {
        return (changes, None);
    };
    let local_as_count = as_path.segments.iter().flat_map(|s| s.asns.iter()).filter(|a| **a == ctx.local_as).count();
    let looped = if ctx.peer.ebgp && local_as_count > usize::from(ctx.allow_local_as) {
        Some(Rejection::AsPathLoop)
    } else if !ctx.peer.ebgp && u.originator_id() == Some(ctx.router_id) {
        Some(Rejection::OriginatorLoop)
    } else if ctx.cluster_id.is_some_and(|c| u.cluster_list().contains(&c)) {
        Some(Rejection::ClusterLoop)
    } else {
        None
    };
    let attrs = Arc::new(RouteAttrs {
        origin: u.origin().unwrap_or(Origin::Incomplete),
        as_path,
        med: u.med(),
        // RFC 4271 §5.1.5: LOCAL_PREF from an external peer is ignored.
        local_pref: if ctx.peer.ebgp { None } else { u.local_pref() },
        communities: u.communities().to_vec(),
        ext_communities: u.ext_communities().to_vec(),
        large_communities: u.large_communities().to_vec(),
        originator_id: u.originator_id(),
        cluster_list: u.cluster_list().to_vec(),
        atomic_aggregate: u.attrs.iter().any(|a| a.value == AttrValue::AtomicAggregate),
        other: u
            .attrs
            .iter()
            .filter(|a| matches!(a.value, AttrValue::Unknown { .. } | AttrValue::Aggregator(_)))
            .filter_map(|a| a.for_propagation())
            .collect(),
    });
    let mut rejection = looped;
    for (n, next_hop) in announced {
        if !ctx.families.contains(n.family()) {
            continue;
        }
        let path_id = n.path_id.unwrap_or(0);
        let next_hop = match next_hop {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        let to_self = ctx.local_addrs.contains(&Some(next_hop));
        if to_self {
            rejection.get_or_insert(Rejection::NextHopIsSelf);
        }
        // Our own prefixes are ours: a copy from a peer is not imported
        // (it would replace the blackhole for our blocks).
        if looped.is_some() || to_self || ctx.own.contains(&n.prefix) {
            // An UPDATE replacing a route implicitly withdraws the old one.
            changes.push(RibChange::Withdraw(n.prefix, path_id));
            continue;
        }
        changes.push(RibChange::Announce(
            n.prefix,
            Path {
                source: PathSource::Peer(ctx.peer.clone()),
                path_id,
                next_hop,
                attrs: attrs.clone(),
                stale: false,
                lost_at: None,
                ecmp: 0,
            },
        ));
    }
    (changes, rejection)
}

/// What applying one UPDATE's changes to the RIB did.
#[derive(Debug, Default)]
pub struct Applied {
    /// How many prefixes' best path or ECMP set changed (the RIB queued
    /// them for export and the FIB itself).
    pub changed: usize,
    /// Announcements the import policy let in, and those it turned away.
    pub accepted: u64,
    pub rejected: u64,
    /// Paths of this source that appeared and that went.
    pub added: usize,
    pub removed: usize,
}

/// Applies [`import`]'s changes from source `src` to the RIB: each
/// announcement through the peer's import rules (`rules`, per family;
/// a rejected one withdraws the path it would replace), its attribute set
/// interned once for the whole UPDATE (all its NLRI share one), then
/// inserted; withdrawals removed.
pub fn apply(
    rib: &mut bgpd::rib::Rib,
    changes: Vec<RibChange>,
    src: &PathSource,
    rules: &[Vec<bgpd::policy::Rule>; 2],
    peer_type: bgpd::policy::PeerType,
) -> Applied {
    use bgpd::policy::{evaluate, Subject, Verdict};
    let mut out = Applied::default();
    let mut interned: Option<(*const RouteAttrs, Arc<RouteAttrs>)> = None;
    for c in changes {
        let o = match c {
            RibChange::Announce(prefix, mut path) => {
                let family_rules = &rules[crate::export::family_of(&prefix).index()];
                let subject = Subject { prefix: &prefix, attrs: &path.attrs, learned: true, peer_type };
                match evaluate(family_rules, &subject) {
                    Verdict::Reject => {
                        out.rejected += 1;
                        rib.withdraw(&prefix, src, path.path_id)
                    }
                    verdict => {
                        out.accepted += 1;
                        path.attrs = match verdict {
                            Verdict::Modified(m) => rib.intern(*m),
                            _ => match &interned {
                                Some((ptr, a)) if *ptr == Arc::as_ptr(&path.attrs) => a.clone(),
                                _ => {
                                    let ptr = Arc::as_ptr(&path.attrs);
                                    let a = rib.intern_arc(path.attrs.clone());
                                    interned = Some((ptr, a.clone()));
                                    a
                                }
                            },
                        };
                        rib.insert(prefix, path)
                    }
                }
            }
            RibChange::Withdraw(prefix, id) => rib.withdraw(&prefix, src, id),
        };
        out.added += usize::from(o.added);
        out.removed += usize::from(o.removed);
        out.changed += usize::from(o.best_changed);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bgpd::packet::{AsPath, Family, Nlri, PathAttr};

    const OWN: &[IpNet] = &[];

    fn ctx(ebgp: bool) -> ImportCtx<'static> {
        ImportCtx {
            local_as: 64512,
            router_id: Ipv4Addr::new(10, 0, 0, 1),
            cluster_id: None,
            own: OWN,
            allow_local_as: 0,
            peer: Arc::new(PeerRef {
                address: "10.0.0.254".parse().unwrap(),
                asn: if ebgp { 65001 } else { 64512 },
                router_id: Ipv4Addr::new(10, 0, 0, 254),
                ebgp,
                rr_client: false,
            }),
            four_octet_as: true,
            families: [Family::Ipv4Unicast].into_iter().collect(),
            local_addrs: [Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))), None, None],
        }
    }

    fn update(path: Vec<u32>, extra: Vec<AttrValue>) -> UpdateMsg {
        let mut attrs = vec![
            PathAttr::new(AttrValue::Origin(Origin::Igp)),
            PathAttr::new(AttrValue::AsPath(AsPath::sequence(path))),
            PathAttr::new(AttrValue::NextHop(Ipv4Addr::new(10, 0, 0, 254))),
        ];
        attrs.extend(extra.into_iter().map(PathAttr::new));
        UpdateMsg {
            attrs,
            nlri: vec![Nlri::new("10.244.9.0/26".parse().unwrap())],
            withdrawn: vec![Nlri::new("10.244.8.0/26".parse().unwrap())],
            ..Default::default()
        }
    }

    #[test]
    fn announces_and_withdraws() {
        let (c, r) = import(&update(vec![65001], vec![AttrValue::LocalPref(300)]), &ctx(true));
        assert_eq!(r, None);
        assert_eq!(c[0], RibChange::Withdraw("10.244.8.0/26".parse().unwrap(), 0));
        let RibChange::Announce(p, path) = &c[1] else { panic!() };
        assert_eq!(p.to_string(), "10.244.9.0/26");
        assert_eq!(path.next_hop.to_string(), "10.0.0.254");
        // LOCAL_PREF from an eBGP peer is ignored...
        assert_eq!(path.attrs.local_pref, None);
        // ...but kept from an iBGP peer.
        let (c, _) = import(&update(vec![], vec![AttrValue::LocalPref(300)]), &ctx(false));
        let RibChange::Announce(_, path) = &c[1] else { panic!() };
        assert_eq!(path.attrs.local_pref, Some(300));
    }

    /// An UPDATE of three prefixes through import rules that reject one:
    /// two go in sharing one interned attribute set, the rejected one
    /// withdraws the path it would have replaced, and a later withdrawal
    /// takes one out; the counts say so.
    #[test]
    fn applying_an_update_filters_interns_once_and_counts() {
        use bgpd::policy::{Action, MatchOperator, PeerType, Rule};
        let mut rib = bgpd::rib::Rib::new(bgpd::rib::DecisionOptions::default());
        let c = ctx(true);
        let src = PathSource::Peer(c.peer.clone());
        let reject = Rule {
            cidr: Some(("10.244.2.0/24".parse().unwrap(), MatchOperator::In)),
            prefix_length: None,
            remote_peers_only: false,
            peer_type: None,
            community: None,
            as_path_prefix: vec![],
            action: Action::Reject,
        };
        let rules = [vec![reject], vec![]];
        let mut u = update(vec![65001], vec![]);
        u.withdrawn.clear();
        u.nlri =
            ["10.244.1.0/26", "10.244.2.0/26", "10.244.3.0/26"].iter().map(|p| Nlri::new(p.parse().unwrap())).collect();
        // The rejected prefix held a path from this peer before.
        let (old, _) = import(&update(vec![65001], vec![]), &c);
        let RibChange::Announce(_, mut held) = old[1].clone() else { panic!() };
        let rejected: IpNet = "10.244.2.0/26".parse().unwrap();
        held.attrs = rib.intern((*held.attrs).clone());
        rib.insert(rejected, held);

        let (changes, _) = import(&u, &c);
        // What changed is what the RIB queues for a consumer of every kind.
        let consumer = rib.open_adj_out(u8::MAX);
        let a = apply(&mut rib, changes, &src, &rules, PeerType::Ebgp);
        assert_eq!((a.accepted, a.rejected, a.added, a.removed), (2, 1, 2, 1));
        let mut changed: Vec<String> = rib.take_queue(consumer).iter().map(|(p, _)| p.to_string()).collect();
        assert_eq!(changed.len(), a.changed);
        changed.sort();
        assert_eq!(changed, ["10.244.1.0/26", "10.244.2.0/26", "10.244.3.0/26"]);
        assert!(rib.get(&rejected).is_none(), "the rejected announcement withdrew the old path");
        let one = &rib.get(&"10.244.1.0/26".parse().unwrap()).unwrap().paths[0].attrs;
        let three = &rib.get(&"10.244.3.0/26".parse().unwrap()).unwrap().paths[0].attrs;
        assert!(Arc::ptr_eq(one, three), "the UPDATE's prefixes share one attribute set");

        let gone = vec![RibChange::Withdraw("10.244.1.0/26".parse().unwrap(), 0)];
        let a = apply(&mut rib, gone, &src, &rules, PeerType::Ebgp);
        assert_eq!((a.accepted, a.rejected, a.added, a.removed, a.changed), (0, 0, 0, 1, 1));
    }

    #[test]
    fn loops_become_withdrawals() {
        let (c, r) = import(&update(vec![65001, 64512], vec![]), &ctx(true));
        assert_eq!(r, Some(Rejection::AsPathLoop));
        assert!(c.iter().all(|x| matches!(x, RibChange::Withdraw(..))));
        assert_eq!(c.len(), 2);
        let (_, r) = import(&update(vec![], vec![AttrValue::OriginatorId(Ipv4Addr::new(10, 0, 0, 1))]), &ctx(false));
        assert_eq!(r, Some(Rejection::OriginatorLoop));
    }

    #[test]
    fn allow_local_as_cluster_loops_and_own_prefixes() {
        let mut c = ctx(true);
        c.allow_local_as = 1;
        let (_, r) = import(&update(vec![65001, 64512], vec![]), &c);
        assert_eq!(r, None, "one occurrence is allowed");
        let (_, r) = import(&update(vec![65001, 64512, 64512], vec![]), &c);
        assert_eq!(r, Some(Rejection::AsPathLoop));
        let mut c = ctx(false);
        c.cluster_id = Some(Ipv4Addr::new(1, 0, 0, 1));
        let (_, r) = import(&update(vec![], vec![AttrValue::ClusterList(vec![Ipv4Addr::new(1, 0, 0, 1)])]), &c);
        assert_eq!(r, Some(Rejection::ClusterLoop));
        let own = ["10.244.9.0/26".parse().unwrap()];
        let mut c = ctx(true);
        c.own = &own;
        let (ch, _) = import(&update(vec![65001], vec![]), &c);
        assert!(ch.iter().all(|x| matches!(x, RibChange::Withdraw(..))));
    }

    #[test]
    fn a_next_hop_that_is_our_own_address_is_ignored() {
        let mut u = update(vec![65001], vec![]);
        u.attrs[2] = PathAttr::new(AttrValue::NextHop(Ipv4Addr::new(10, 0, 0, 1)));
        let (ch, r) = import(&u, &ctx(true));
        assert_eq!(r, Some(Rejection::NextHopIsSelf));
        assert!(ch.iter().all(|x| matches!(x, RibChange::Withdraw(..))), "{ch:?}");
        // Another next hop is fine.
        let (ch, r) = import(&update(vec![65001], vec![]), &ctx(true));
        assert_eq!(r, None);
        assert!(ch.iter().any(|x| matches!(x, RibChange::Announce(..))));
    }

    #[test]
    fn families_not_negotiated_are_ignored() {
        let mut u = update(vec![65001], vec![]);
        u.nlri = vec![];
        u.withdrawn = vec![];
        u.attrs.push(PathAttr::new(AttrValue::MpReachNlri(bgpd::packet::MpReach {
            family: Family::Ipv6Unicast,
            next_hop: bgpd::packet::NextHop::V6 { global: "fd00::1".parse().unwrap(), link_local: None },
            nlri: vec![Nlri::new("fd00:244::/64".parse().unwrap())],
        })));
        let (c, _) = import(&u, &ctx(true));
        assert!(c.is_empty());
    }
}
