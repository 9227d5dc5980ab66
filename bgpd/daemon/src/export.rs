//! Export: from a Loc-RIB best path to what one peer is sent (RFC 4271
//! §5.1 and §9.1.3, RFC 4456 reflection, RFC 6793 §4.2.2, RFC 4760/2545/
//! 8950 next hops), and the UPDATEs that carry it. Pure, so it is tested
//! without sockets.
//!
//! The Adj-RIB-Out of a peer is this function applied to the Loc-RIB; it is
//! not stored (as in BIRD), only the prefixes waiting to be sent are.
//!
//! Which routes go where:
//! - routes this node originates go to every peer;
//! - routes learned over eBGP go to iBGP peers, and to other eBGP peers only
//!   when the target has `export_learned`;
//! - routes learned over iBGP go to eBGP peers only with `export_learned`,
//!   and to iBGP peers only when this node is a route reflector: from a
//!   client to everyone, from a non-client to clients (RFC 4456 §6);
//! - nothing goes back to the peer it came from.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bgpd::fsm::Negotiated;
use bgpd::packet::{AttrValue, Family, NextHop, Nlri, PathAttr, UpdateMsg};
use bgpd::rib::decision::DEFAULT_LOCAL_PREF;
use bgpd::rib::{Path, PathSource};
use bytes::Bytes;
use ipnet::IpNet;

/// How the next hop is chosen (Calico's BGPPeer `nextHopMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NextHopMode {
    /// RFC behaviour: ourselves towards eBGP peers and for our own routes;
    /// unchanged towards iBGP peers.
    #[default]
    Auto,
    /// Always ourselves.
    SelfAddr,
    /// Always the path's next hop (ourselves for our own routes).
    Keep,
}

/// The peer being exported to.
#[derive(Debug, Clone)]
pub struct Target {
    pub address: IpAddr,
    pub ebgp: bool,
    /// This node reflects to the target as one of its clients.
    pub rr_client: bool,
    /// Send routes learned from other peers to this eBGP peer.
    pub export_learned: bool,
    pub next_hop_mode: NextHopMode,
    /// Export filter rules for this peer, per family.
    pub rules: std::sync::Arc<crate::plan::PeerRules>,
}

/// This node, as export sees it.
#[derive(Debug, Clone)]
pub struct NodeExport {
    pub local_as: u32,
    pub router_id: Ipv4Addr,
    /// Set when this node is a route reflector.
    pub cluster_id: Option<Ipv4Addr>,
}

/// Which kinds of best path ([`PathSource::kind_bit`]) `export_path` can
/// ever send to `t`: the rest of a change need not be looked at for it.
pub fn interest(t: &Target, node: &NodeExport) -> u8 {
    const ALL: u8 = PathSource::LOCAL | PathSource::EBGP | PathSource::IBGP_CLIENT | PathSource::IBGP;
    if t.ebgp {
        return if t.export_learned { ALL } else { PathSource::LOCAL };
    }
    match node.cluster_id {
        None => PathSource::LOCAL | PathSource::EBGP,
        Some(_) if t.rr_client => ALL,
        Some(_) => PathSource::LOCAL | PathSource::EBGP | PathSource::IBGP_CLIENT,
    }
}

/// One route as it leaves towards a peer: its attributes except the next
/// hop, and the next hop (`None`: our own address on the session).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OutRoute {
    pub attrs: Vec<PathAttr>,
    pub next_hop: Option<IpAddr>,
}

/// What `p` looks like to `t`, or `None` if `t` must not get it.
pub fn export_path(prefix: &IpNet, p: &Path, t: &Target, node: &NodeExport, n: &Negotiated) -> Option<OutRoute> {
    let (learned, reflect) = match &p.source {
        PathSource::Local => (false, false),
        PathSource::Peer(src) => {
            if src.address == t.address {
                return None;
            }
            match (src.ebgp, t.ebgp) {
                (_, true) if !t.export_learned => return None,
                (false, false) => {
                    // iBGP to iBGP: only a reflector, and not between two
                    // non-clients.
                    node.cluster_id?;
                    if !src.rr_client && !t.rr_client {
                        return None;
                    }
                    (true, true)
                }
                _ => (true, false),
            }
        }
    };

    // Export filters see the route as it is in the Loc-RIB.
    let rules = &t.rules.export[family_of(prefix).index()];
    let subject = bgpd::policy::Subject {
        prefix,
        attrs: &p.attrs,
        learned,
        peer_type: if t.ebgp { bgpd::policy::PeerType::Ebgp } else { bgpd::policy::PeerType::Ibgp },
    };
    let modified;
    let a: &bgpd::rib::RouteAttrs = match bgpd::policy::evaluate(rules, &subject) {
        bgpd::policy::Verdict::Reject => return None,
        bgpd::policy::Verdict::Accept => &p.attrs,
        bgpd::policy::Verdict::Modified(m) => {
            modified = m;
            &modified
        }
    };

    let mut attrs = vec![PathAttr::new(AttrValue::Origin(a.origin))];
    let path = if t.ebgp { a.as_path.prepend(node.local_as, 1) } else { a.as_path.clone() };
    // RFC 6793 §4.2.2: a 2-octet peer sees AS_TRANS plus AS4_PATH.
    let as4 = (!n.four_octet_as && path.needs_as4()).then(|| path.clone());
    attrs.push(PathAttr::new(AttrValue::AsPath(path)));
    // RFC 4271 §5.1.4: a MED learned from another AS is not passed on to
    // other ASes.
    if let Some(med) = a.med {
        let from_ebgp = matches!(&p.source, PathSource::Peer(s) if s.ebgp);
        if !(t.ebgp && from_ebgp) {
            attrs.push(PathAttr::new(AttrValue::MultiExitDisc(med)));
        }
    }
    if !t.ebgp {
        attrs.push(PathAttr::new(AttrValue::LocalPref(a.local_pref.unwrap_or(DEFAULT_LOCAL_PREF))));
    }
    if a.atomic_aggregate {
        attrs.push(PathAttr::new(AttrValue::AtomicAggregate));
    }
    if !a.communities.is_empty() {
        attrs.push(PathAttr::new(AttrValue::Communities(a.communities.clone())));
    }
    if reflect {
        // RFC 4456 §8.
        if let (PathSource::Peer(src), Some(cluster)) = (&p.source, node.cluster_id) {
            let originator = a.originator_id.unwrap_or(src.router_id);
            attrs.push(PathAttr::new(AttrValue::OriginatorId(originator)));
            let mut list = vec![cluster];
            list.extend_from_slice(&a.cluster_list);
            attrs.push(PathAttr::new(AttrValue::ClusterList(list)));
        }
    } else if !t.ebgp && learned {
        // iBGP-only attributes survive when passing an iBGP route on over iBGP.
        if let Some(o) = a.originator_id {
            attrs.push(PathAttr::new(AttrValue::OriginatorId(o)));
        }
        if !a.cluster_list.is_empty() {
            attrs.push(PathAttr::new(AttrValue::ClusterList(a.cluster_list.clone())));
        }
    }
    if !a.ext_communities.is_empty() {
        attrs.push(PathAttr::new(AttrValue::ExtendedCommunities(a.ext_communities.clone())));
    }
    if let Some(p4) = as4 {
        attrs.push(PathAttr::new(AttrValue::As4Path(p4)));
    }
    if !a.large_communities.is_empty() {
        attrs.push(PathAttr::new(AttrValue::LargeCommunities(a.large_communities.clone())));
    }
    attrs.extend(a.other.iter().cloned());

    let keep = match (t.next_hop_mode, &p.source) {
        (_, PathSource::Local) => false,
        (NextHopMode::SelfAddr, _) => false,
        (NextHopMode::Keep, _) => true,
        (NextHopMode::Auto, _) => !t.ebgp,
    };
    Some(OutRoute { attrs, next_hop: keep.then_some(p.next_hop) })
}

/// Our addresses for one session.
#[derive(Debug, Clone)]
pub struct SessionAddrs {
    /// Our address on this session's TCP connection.
    pub local_addr: IpAddr,
    pub node_v4: Option<Ipv4Addr>,
    pub node_v6: Option<Ipv6Addr>,
}

/// Problems that kept a prefix from being advertised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub prefix: IpNet,
    pub reason: &'static str,
}

pub const NO_V6_NEXT_HOP: &str = "no IPv6 next hop on an IPv4 session: set node.address_v6";
const NO_V4_NEXT_HOP: &str =
    "no IPv4 next hop on an IPv6 session (set node.address to IPv4 or enable extended next hop on the peer)";

/// Our IPv4 address for this session, if there is one.
fn self_v4(s: &SessionAddrs) -> Option<Ipv4Addr> {
    match s.local_addr {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(a) => a.to_ipv4_mapped().or(s.node_v4),
    }
}

/// Our IPv6 next hop (RFC 2545 §3): the session address if it is a global
/// IPv6 address; over a link-local session, the node's global address with
/// the link-local one beside it; otherwise the node's IPv6 address.
fn self_v6(s: &SessionAddrs) -> Option<NextHop> {
    let link_local = |a: &Ipv6Addr| a.segments()[0] & 0xffc0 == 0xfe80;
    match s.local_addr {
        IpAddr::V6(a) if a.to_ipv4_mapped().is_none() && !link_local(&a) => {
            Some(NextHop::V6 { global: a, link_local: None })
        }
        IpAddr::V6(a) if link_local(&a) => s.node_v6.map(|g| NextHop::V6 { global: g, link_local: Some(a) }),
        _ => s.node_v6.map(|g| NextHop::V6 { global: g, link_local: None }),
    }
}

/// Where the next hop goes: the NEXT_HOP attribute (IPv4 NLRI) or
/// MP_REACH_NLRI.
enum Placement {
    NextHopAttr(Ipv4Addr),
    Mp(NextHop),
}

fn placement(family: Family, nh: Option<IpAddr>, s: &SessionAddrs, n: &Negotiated) -> Result<Placement, &'static str> {
    match family {
        Family::Ipv4Unicast => match nh {
            Some(IpAddr::V4(a)) => Ok(Placement::NextHopAttr(a)),
            // RFC 8950 only if the peer takes IPv6 next hops for IPv4.
            Some(IpAddr::V6(g)) if n.extended_next_hop_tx.contains(family) => {
                Ok(Placement::Mp(NextHop::V6 { global: g, link_local: None }))
            }
            _ => match self_v4(s) {
                Some(a) => Ok(Placement::NextHopAttr(a)),
                None if n.extended_next_hop_tx.contains(family) => self_v6(s).map(Placement::Mp).ok_or(NO_V4_NEXT_HOP),
                None => Err(NO_V4_NEXT_HOP),
            },
        },
        Family::Ipv6Unicast => match nh {
            Some(IpAddr::V6(g)) => Ok(Placement::Mp(NextHop::V6 { global: g, link_local: None })),
            _ => self_v6(s).map(Placement::Mp).ok_or(NO_V6_NEXT_HOP),
        },
    }
}

/// Whether a route of `family` can be sent on this session: `Err` names
/// why not (no next hop of the kind the family needs).
pub fn placeable(family: Family, route: &OutRoute, s: &SessionAddrs, n: &Negotiated) -> Result<(), &'static str> {
    placement(family, route.next_hop, s, n).map(|_| ())
}

/// One group placed: its attributes (with NEXT_HOP for IPv4 NLRI), the
/// MP_REACH_NLRI next hop otherwise, and its NLRI.
type Placed = (Vec<PathAttr>, Option<NextHop>, Vec<Nlri>);

/// Places each group's next hop for this session, or names why a group
/// cannot be sent.
fn place(
    family: Family,
    groups: Vec<(OutRoute, Vec<IpNet>)>,
    s: &SessionAddrs,
    n: &Negotiated,
) -> (Vec<Placed>, Vec<Skipped>) {
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for (route, prefixes) in groups {
        let path_id = n.add_path_tx.contains(family).then_some(1);
        match placement(family, route.next_hop, s, n) {
            Ok(Placement::NextHopAttr(a)) => {
                let mut attrs = route.attrs;
                attrs.push(PathAttr::new(AttrValue::NextHop(a)));
                out.push((attrs, None, prefixes.iter().map(|p| Nlri { path_id, prefix: *p }).collect()));
            }
            Ok(Placement::Mp(nh)) => {
                out.push((route.attrs, Some(nh), prefixes.iter().map(|p| Nlri { path_id, prefix: *p }).collect()))
            }
            Err(reason) => skipped.extend(prefixes.into_iter().map(|prefix| Skipped { prefix, reason })),
        }
    }
    (out, skipped)
}

/// UPDATEs for groups of prefixes of one family that share an
/// [`OutRoute`], packed to the 4096-octet limit.
pub fn build(
    family: Family,
    groups: Vec<(OutRoute, Vec<IpNet>)>,
    s: &SessionAddrs,
    n: &Negotiated,
) -> (Vec<UpdateMsg>, Vec<Skipped>) {
    build_with(family, groups, s, n, UpdateMsg::pack)
}

/// [`build`] straight to the wire: each UPDATE encoded once, its
/// attributes once per group (what the export path sends).
pub fn build_wire(
    family: Family,
    groups: Vec<(OutRoute, Vec<IpNet>)>,
    s: &SessionAddrs,
    n: &Negotiated,
) -> (Vec<Bytes>, Vec<Skipped>) {
    build_with(family, groups, s, n, UpdateMsg::pack_wire)
}

type Packer<T> = fn(&[PathAttr], Family, Option<NextHop>, &[Nlri], &bgpd::packet::EncodeCtx) -> Vec<T>;

fn build_with<T>(
    family: Family,
    groups: Vec<(OutRoute, Vec<IpNet>)>,
    s: &SessionAddrs,
    n: &Negotiated,
    pack: Packer<T>,
) -> (Vec<T>, Vec<Skipped>) {
    let ectx = n.encode_ctx();
    let (placed, skipped) = place(family, groups, s, n);
    let out = placed.iter().flat_map(|(attrs, nh, nlri)| pack(attrs, family, *nh, nlri, &ectx)).collect();
    (out, skipped)
}

/// UPDATEs withdrawing `prefixes` of one family.
pub fn withdraw(family: Family, prefixes: &[IpNet], n: &Negotiated) -> Vec<UpdateMsg> {
    let nlri: Vec<Nlri> =
        prefixes.iter().map(|p| Nlri { path_id: n.add_path_tx.contains(family).then_some(1), prefix: *p }).collect();
    UpdateMsg::pack_withdrawals(family, &nlri, &n.encode_ctx())
}

/// The family of a prefix.
pub fn family_of(p: &IpNet) -> Family {
    Nlri::new(*p).family()
}

/// The attributes of a route this node originates.
pub fn local_attrs(
    communities: Vec<bgpd::packet::Community>,
    large: Vec<bgpd::packet::LargeCommunity>,
) -> bgpd::rib::RouteAttrs {
    bgpd::rib::RouteAttrs {
        communities,
        large_communities: large,
        ..bgpd::rib::RouteAttrs::with_path(bgpd::packet::AsPath::default())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use bgpd::fsm::negotiate;
    use bgpd::packet::{AfiSafi, AsPath, Capability, Community, Message, OpenMsg, Origin};
    use bgpd::rib::PeerRef;

    const LOCAL_AS: u32 = 4_200_000_000;

    fn session(ebgp: bool, four: bool, v6: bool) -> Negotiated {
        let mut caps = vec![Capability::Multiprotocol(AfiSafi::IPV4_UNICAST)];
        if v6 {
            caps.push(Capability::Multiprotocol(AfiSafi::IPV6_UNICAST));
        }
        let local = [caps.clone(), vec![Capability::FourOctetAs(LOCAL_AS)]].concat();
        let peer_as = if ebgp { 65001 } else { LOCAL_AS };
        if four {
            caps.push(Capability::FourOctetAs(peer_as));
        }
        let open = OpenMsg::new(peer_as, 90, Ipv4Addr::new(10, 0, 0, 254), caps);
        negotiate(LOCAL_AS, 90, &local, &open)
    }

    fn node(rr: bool) -> NodeExport {
        NodeExport {
            local_as: LOCAL_AS,
            router_id: Ipv4Addr::new(10, 0, 0, 1),
            cluster_id: rr.then_some(Ipv4Addr::new(1, 0, 0, 1)),
        }
    }

    fn target(addr: &str, ebgp: bool, rr_client: bool) -> Target {
        Target {
            address: addr.parse().unwrap(),
            ebgp,
            rr_client,
            export_learned: false,
            next_hop_mode: NextHopMode::Auto,
            rules: Default::default(),
        }
    }

    fn pfx() -> IpNet {
        "10.244.1.0/26".parse().unwrap()
    }

    fn local_path() -> Path {
        Path {
            source: PathSource::Local,
            path_id: 0,
            next_hop: "10.0.0.1".parse().unwrap(),
            attrs: Arc::new(local_attrs(vec![Community::new(65000, 100)], vec![])),
            stale: false,
            lost_at: None,
            ecmp: 0,
        }
    }

    fn learned(from: &str, ebgp: bool, rr_client: bool) -> Path {
        let mut a = local_attrs(vec![], vec![]);
        a.as_path = if ebgp { AsPath::sequence(vec![65001]) } else { AsPath::default() };
        a.med = Some(7);
        a.local_pref = (!ebgp).then_some(200);
        Path {
            source: PathSource::Peer(Arc::new(PeerRef {
                address: from.parse().unwrap(),
                asn: if ebgp { 65001 } else { LOCAL_AS },
                router_id: from.parse().unwrap(),
                ebgp,
                rr_client,
            })),
            path_id: 0,
            next_hop: from.parse().unwrap(),
            attrs: Arc::new(a),
            stale: false,
            lost_at: None,
            ecmp: 0,
        }
    }

    fn find(r: &OutRoute, f: impl Fn(&AttrValue) -> bool) -> Option<&AttrValue> {
        r.attrs.iter().map(|a| &a.value).find(|v| f(v))
    }

    #[test]
    fn own_routes_go_everywhere_with_their_communities() {
        let ebgp = export_path(
            &pfx(),
            &local_path(),
            &target("10.0.0.254", true, false),
            &node(false),
            &session(true, true, false),
        )
        .unwrap();
        assert!(find(&ebgp, |v| *v == AttrValue::AsPath(AsPath::sequence(vec![LOCAL_AS]))).is_some());
        assert!(find(&ebgp, |v| matches!(v, AttrValue::LocalPref(_))).is_none());
        assert!(find(&ebgp, |v| matches!(v, AttrValue::Communities(c) if c[0] == Community::new(65000, 100))).is_some());
        assert_eq!(ebgp.next_hop, None);
        let ibgp = export_path(
            &pfx(),
            &local_path(),
            &target("10.0.0.2", false, false),
            &node(false),
            &session(false, true, false),
        )
        .unwrap();
        assert!(find(&ibgp, |v| *v == AttrValue::LocalPref(100)).is_some());
        assert!(find(&ibgp, |v| *v == AttrValue::AsPath(AsPath::default())).is_some());
    }

    #[test]
    fn learned_routes_follow_the_ibgp_and_reflection_rules() {
        let n_i = session(false, true, false);
        let n_e = session(true, true, false);
        // eBGP-learned → iBGP: yes, next hop kept, MED and LOCAL_PREF kept.
        let r = export_path(
            &pfx(),
            &learned("10.0.0.254", true, false),
            &target("10.0.0.2", false, false),
            &node(false),
            &n_i,
        )
        .unwrap();
        assert_eq!(r.next_hop, Some("10.0.0.254".parse().unwrap()));
        assert!(find(&r, |v| *v == AttrValue::MultiExitDisc(7)).is_some());
        // eBGP-learned → eBGP: not unless export_learned; MED dropped then.
        assert!(export_path(
            &pfx(),
            &learned("10.0.0.254", true, false),
            &target("10.9.0.1", true, false),
            &node(false),
            &n_e
        )
        .is_none());
        let mut t = target("10.9.0.1", true, false);
        t.export_learned = true;
        let r = export_path(&pfx(), &learned("10.0.0.254", true, false), &t, &node(false), &n_e).unwrap();
        assert!(find(&r, |v| matches!(v, AttrValue::MultiExitDisc(_))).is_none());
        assert!(find(&r, |v| *v == AttrValue::AsPath(AsPath::sequence(vec![LOCAL_AS, 65001]))).is_some());
        assert_eq!(r.next_hop, None);
        // iBGP-learned → iBGP: not without reflection.
        assert!(export_path(
            &pfx(),
            &learned("10.0.0.3", false, false),
            &target("10.0.0.2", false, false),
            &node(false),
            &n_i
        )
        .is_none());
        // Never back to the source.
        assert!(export_path(
            &pfx(),
            &learned("10.0.0.2", false, true),
            &target("10.0.0.2", false, true),
            &node(true),
            &n_i
        )
        .is_none());
    }

    #[test]
    fn reflector_client_and_non_client_rules() {
        let n = session(false, true, false);
        let rr = node(true);
        // Client → non-client and client → client: reflected.
        for to_client in [false, true] {
            let r =
                export_path(&pfx(), &learned("10.0.0.3", false, true), &target("10.0.0.2", false, to_client), &rr, &n)
                    .unwrap();
            assert!(find(&r, |v| *v == AttrValue::OriginatorId("10.0.0.3".parse().unwrap())).is_some());
            assert!(find(&r, |v| *v == AttrValue::ClusterList(vec!["1.0.0.1".parse().unwrap()])).is_some());
            assert_eq!(r.next_hop, Some("10.0.0.3".parse().unwrap()));
            assert!(find(&r, |v| *v == AttrValue::LocalPref(200)).is_some());
        }
        // Non-client → client: reflected; non-client → non-client: not.
        assert!(export_path(&pfx(), &learned("10.0.0.3", false, false), &target("10.0.0.2", false, true), &rr, &n)
            .is_some());
        assert!(export_path(&pfx(), &learned("10.0.0.3", false, false), &target("10.0.0.2", false, false), &rr, &n)
            .is_none());
        // An existing ORIGINATOR_ID is kept and the CLUSTER_LIST grows.
        let mut p = learned("10.0.0.3", false, true);
        let a = Arc::make_mut(&mut p.attrs);
        a.originator_id = Some("10.0.0.9".parse().unwrap());
        a.cluster_list = vec!["2.0.0.2".parse().unwrap()];
        let r = export_path(&pfx(), &p, &target("10.0.0.2", false, true), &rr, &n).unwrap();
        assert!(find(&r, |v| *v == AttrValue::OriginatorId("10.0.0.9".parse().unwrap())).is_some());
        assert!(find(&r, |v| *v
            == AttrValue::ClusterList(vec!["1.0.0.1".parse().unwrap(), "2.0.0.2".parse().unwrap()]))
        .is_some());
    }

    #[test]
    fn next_hop_modes() {
        let n = session(false, true, false);
        let p = learned("10.0.0.254", true, false);
        let mut t = target("10.0.0.2", false, false);
        t.next_hop_mode = NextHopMode::SelfAddr;
        assert_eq!(export_path(&pfx(), &p, &t, &node(false), &n).unwrap().next_hop, None);
        let mut t = target("10.9.0.1", true, false);
        t.export_learned = true;
        t.next_hop_mode = NextHopMode::Keep;
        assert_eq!(
            export_path(&pfx(), &p, &t, &node(false), &session(true, true, false)).unwrap().next_hop,
            Some(p.next_hop)
        );
    }

    fn addrs(local: &str, v6: Option<&str>) -> SessionAddrs {
        SessionAddrs { local_addr: local.parse().unwrap(), node_v4: None, node_v6: v6.map(|a| a.parse().unwrap()) }
    }

    fn out(next_hop: Option<IpAddr>) -> OutRoute {
        OutRoute {
            attrs: vec![
                PathAttr::new(AttrValue::Origin(Origin::Igp)),
                PathAttr::new(AttrValue::AsPath(AsPath::default())),
            ],
            next_hop,
        }
    }

    #[test]
    fn build_places_next_hops_per_family() {
        let n = session(true, true, true);
        let v4: IpNet = "10.244.1.0/26".parse().unwrap();
        let v6: IpNet = "fd00:244:1::/122".parse().unwrap();
        let (u, skipped) = build(Family::Ipv4Unicast, vec![(out(None), vec![v4])], &addrs("10.0.0.1", None), &n);
        assert!(skipped.is_empty());
        assert_eq!(u[0].next_hop(), Some(Ipv4Addr::new(10, 0, 0, 1)));
        // IPv6 over an IPv4 session needs the node's IPv6 address.
        let (_, skipped) = build(Family::Ipv6Unicast, vec![(out(None), vec![v6])], &addrs("10.0.0.1", None), &n);
        assert_eq!(skipped, vec![Skipped { prefix: v6, reason: NO_V6_NEXT_HOP }]);
        let (u, _) = build(Family::Ipv6Unicast, vec![(out(None), vec![v6])], &addrs("10.0.0.1", Some("fd00::1")), &n);
        assert_eq!(u[0].mp_reach().unwrap().next_hop.addr().to_string(), "fd00::1");
        // A link-local session: global from the node, link-local beside it.
        let (u, _) = build(Family::Ipv6Unicast, vec![(out(None), vec![v6])], &addrs("fe80::1", Some("fd00::1")), &n);
        assert_eq!(
            u[0].mp_reach().unwrap().next_hop,
            NextHop::V6 { global: "fd00::1".parse().unwrap(), link_local: Some("fe80::1".parse().unwrap()) }
        );
        // A kept next hop.
        let (u, _) = build(
            Family::Ipv4Unicast,
            vec![(out(Some("10.0.0.9".parse().unwrap())), vec![v4])],
            &addrs("10.0.0.1", None),
            &n,
        );
        assert_eq!(u[0].next_hop(), Some(Ipv4Addr::new(10, 0, 0, 9)));
        for m in u {
            let b = Message::Update(m.clone()).encode(&n.encode_ctx());
            assert_eq!(Message::decode(&b, &n.decode_ctx(false)).unwrap(), Message::Update(m));
        }
        let w = withdraw(Family::Ipv6Unicast, &[v6], &n);
        assert_eq!(w[0].withdrawals().len(), 1);
    }

    #[test]
    fn the_wire_build_sends_the_bytes_of_the_built_messages() {
        let n = session(true, true, true);
        let v4: Vec<IpNet> = (0..2500u32)
            .map(|i| IpNet::V4(ipnet::Ipv4Net::new(Ipv4Addr::from(0x1400_0000 + (i << 8)), 24).unwrap()))
            .collect();
        let v6: Vec<IpNet> = (0..700u128)
            .map(|i| IpNet::V6(ipnet::Ipv6Net::new(Ipv6Addr::from(0xfd00_0244_u128 << 96 | i << 64), 64).unwrap()))
            .collect();
        let a = addrs("10.0.0.1", Some("fd00::1"));
        let nh9 = Some("10.0.0.9".parse().unwrap());
        for (f, groups) in [
            (Family::Ipv4Unicast, vec![(out(None), v4.clone()), (out(nh9), v4[..10].to_vec())]),
            (Family::Ipv6Unicast, vec![(out(None), v6)]),
        ] {
            let (msgs, s1) = build(f, groups.clone(), &a, &n);
            let (wire, s2) = build_wire(f, groups, &a, &n);
            assert_eq!(s1, s2);
            let want: Vec<Bytes> = msgs.into_iter().map(|m| Message::Update(m).encode(&n.encode_ctx())).collect();
            assert!(want.len() > 1, "{f:?}: several messages");
            assert_eq!(wire, want, "{f:?}");
        }
    }

    #[test]
    fn two_octet_peer_gets_as_trans_and_as4_path() {
        let n = session(true, false, false);
        let r = export_path(&pfx(), &local_path(), &target("10.0.0.254", true, false), &node(false), &n).unwrap();
        let (u, _) =
            build(Family::Ipv4Unicast, vec![(r, vec!["10.244.1.0/26".parse().unwrap()])], &addrs("10.0.0.1", None), &n);
        let b = Message::Update(u[0].clone()).encode(&n.encode_ctx());
        let Message::Update(back) = Message::decode(&b, &n.decode_ctx(false)).unwrap() else { panic!() };
        assert_eq!(back.as_path().unwrap().flat(), vec![23456]);
        assert_eq!(back.effective_as_path(false).unwrap().flat(), vec![LOCAL_AS]);
    }
}

/// Groups prefixes by what they look like to one peer, calling
/// [`export_path`] once per distinct (attribute set, source, next hop) when
/// the peer has no export rules for the family (rules can depend on the
/// prefix itself). Routes of one UPDATE share their interned attributes, so
/// a table of a million routes from ten peers costs about ten calls.
#[derive(Debug, Default)]
pub struct Grouper {
    groups: Vec<(OutRoute, Vec<IpNet>)>,
    index: bgpd::hash::HashMap<OutRoute, usize>,
    cache: bgpd::hash::HashMap<(usize, usize, IpAddr), Option<usize>>,
}

impl Grouper {
    /// Files `prefix` under its export and returns the group's index, or
    /// `None` when `t` must not get it.
    pub fn add(&mut self, prefix: &IpNet, p: &Path, t: &Target, node: &NodeExport, n: &Negotiated) -> Option<usize> {
        let cacheable = t.rules.export[family_of(prefix).index()].is_empty();
        let key = (std::sync::Arc::as_ptr(&p.attrs) as usize, p.source.identity(), p.next_hop);
        let slot = match cacheable.then(|| self.cache.get(&key).copied()).flatten() {
            Some(slot) => slot,
            None => {
                let slot = export_path(prefix, p, t, node, n).map(|r| match self.index.get(&r) {
                    Some(&i) => i,
                    None => {
                        self.groups.push((r.clone(), Vec::new()));
                        self.index.insert(r, self.groups.len() - 1);
                        self.groups.len() - 1
                    }
                });
                if cacheable {
                    self.cache.insert(key, slot);
                }
                slot
            }
        };
        let i = slot?;
        self.groups[i].1.push(*prefix);
        Some(i)
    }

    /// Files `prefix` under `route`, computed elsewhere; returns the
    /// group's index.
    pub fn push(&mut self, route: OutRoute, prefix: IpNet) -> usize {
        let i = match self.index.get(&route) {
            Some(&i) => i,
            None => {
                self.groups.push((route.clone(), Vec::new()));
                self.index.insert(route, self.groups.len() - 1);
                self.groups.len() - 1
            }
        };
        self.groups[i].1.push(prefix);
        i
    }

    /// The groups, in the order of the indices [`Grouper::add`] returned
    /// (some may be empty).
    pub fn into_groups(self) -> Vec<(OutRoute, Vec<IpNet>)> {
        self.groups
    }
}
