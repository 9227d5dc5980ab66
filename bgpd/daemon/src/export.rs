//! Builds the UPDATEs that advertise this node's prefixes to one session
//! (RFC 4271 §5.1, RFC 4760, RFC 8950, RFC 6793 §4.2.2) and the End-of-RIB
//! markers that follow them (RFC 4724 §2). Pure, so it is tested without
//! sockets.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bgpd::fsm::Negotiated;
use bgpd::packet::{AsPath, AttrValue, Family, NextHop, Nlri, Origin, PathAttr, UpdateMsg};
use bgpd::rib::decision::DEFAULT_LOCAL_PREF;
use ipnet::IpNet;

#[derive(Debug, Clone)]
pub struct ExportCtx {
    pub local_as: u32,
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

fn base_attrs(ctx: &ExportCtx, n: &Negotiated) -> Vec<PathAttr> {
    let path = if n.ebgp { AsPath::sequence(vec![ctx.local_as]) } else { AsPath::default() };
    let mut attrs = vec![PathAttr::new(AttrValue::Origin(Origin::Igp))];
    // RFC 6793 §4.2.2: a 2-octet peer sees AS_TRANS plus AS4_PATH.
    let as4 = (!n.four_octet_as && path.needs_as4()).then(|| path.clone());
    attrs.push(PathAttr::new(AttrValue::AsPath(path)));
    if let Some(p) = as4 {
        attrs.push(PathAttr::new(AttrValue::As4Path(p)));
    }
    if !n.ebgp {
        attrs.push(PathAttr::new(AttrValue::LocalPref(DEFAULT_LOCAL_PREF)));
    }
    attrs
}

/// The IPv4 next hop for this session, if there is one.
fn v4_next_hop(ctx: &ExportCtx) -> Option<Ipv4Addr> {
    match ctx.local_addr {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(a) => a.to_ipv4_mapped().or(ctx.node_v4),
    }
}

/// The IPv6 next hop (RFC 2545 §3): the session address if it is a global
/// IPv6 address; over a link-local session, the node's global address with
/// the link-local one beside it; otherwise the node's IPv6 address.
fn v6_next_hop(ctx: &ExportCtx) -> Option<NextHop> {
    let link_local = |a: &Ipv6Addr| a.segments()[0] & 0xffc0 == 0xfe80;
    match ctx.local_addr {
        IpAddr::V6(a) if a.to_ipv4_mapped().is_none() && !link_local(&a) => {
            Some(NextHop::V6 { global: a, link_local: None })
        }
        IpAddr::V6(a) if link_local(&a) => ctx.node_v6.map(|g| NextHop::V6 { global: g, link_local: Some(a) }),
        _ => ctx.node_v6.map(|g| NextHop::V6 { global: g, link_local: None }),
    }
}

const NO_V6_NEXT_HOP: &str = "no IPv6 next hop on an IPv4 session: set node.address_v6";

/// UPDATEs announcing `prefixes` on a session, then one End-of-RIB per
/// negotiated family. Prefixes of families the session did not negotiate,
/// or without a usable next hop, are skipped and reported.
pub fn advertise(prefixes: &[IpNet], ctx: &ExportCtx, n: &Negotiated) -> (Vec<UpdateMsg>, Vec<Skipped>) {
    let ectx = n.encode_ctx();
    let attrs = base_attrs(ctx, n);
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    let nlri_of = |f: Family| -> Vec<Nlri> {
        prefixes
            .iter()
            .filter(|p| Nlri::new(**p).family() == f)
            .map(|p| Nlri { path_id: n.add_path_tx.contains(f).then_some(1), prefix: *p })
            .collect()
    };
    for f in Family::ALL {
        let nlri = nlri_of(f);
        if !n.families.contains(f) {
            skipped.extend(nlri.iter().map(|x| Skipped { prefix: x.prefix, reason: "address family not negotiated" }));
            continue;
        }
        if !nlri.is_empty() {
            match f {
                Family::Ipv4Unicast => match v4_next_hop(ctx) {
                    Some(nh) => {
                        let mut a = attrs.clone();
                        a.push(PathAttr::new(AttrValue::NextHop(nh)));
                        out.extend(UpdateMsg::pack(&a, f, None, &nlri, &ectx));
                    }
                    // RFC 8950: an IPv6 next hop for IPv4 NLRI.
                    None if n.extended_next_hop_tx.contains(f) && v6_next_hop(ctx).is_some() => {
                        out.extend(UpdateMsg::pack(&attrs, f, v6_next_hop(ctx), &nlri, &ectx));
                    }
                    None => skipped.extend(nlri.iter().map(|x| Skipped {
                        prefix: x.prefix,
                        reason: "no IPv4 next hop on an IPv6 session (set node.address to IPv4 or enable extended next hop)",
                    })),
                },
                Family::Ipv6Unicast => match v6_next_hop(ctx) {
                    Some(nh) => out.extend(UpdateMsg::pack(&attrs, f, Some(nh), &nlri, &ectx)),
                    None => skipped.extend(nlri.iter().map(|x| Skipped { prefix: x.prefix, reason: NO_V6_NEXT_HOP })),
                },
            }
        }
        out.push(UpdateMsg::end_of_rib_marker(f));
    }
    (out, skipped)
}

/// UPDATEs withdrawing `prefixes` from a session.
pub fn withdraw(prefixes: &[IpNet], n: &Negotiated) -> Vec<UpdateMsg> {
    let ectx = n.encode_ctx();
    let mut out = Vec::new();
    for f in n.families.iter() {
        let nlri: Vec<Nlri> = prefixes
            .iter()
            .filter(|p| Nlri::new(**p).family() == f)
            .map(|p| Nlri { path_id: n.add_path_tx.contains(f).then_some(1), prefix: *p })
            .collect();
        out.extend(UpdateMsg::pack_withdrawals(f, &nlri, &ectx));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bgpd::fsm::negotiate;
    use bgpd::packet::{AfiSafi, Capability, Message, OpenMsg};

    fn session(ebgp: bool, four: bool, v6: bool) -> Negotiated {
        let mut caps = vec![Capability::Multiprotocol(AfiSafi::IPV4_UNICAST)];
        if v6 {
            caps.push(Capability::Multiprotocol(AfiSafi::IPV6_UNICAST));
        }
        let local = [caps.clone(), vec![Capability::FourOctetAs(4_200_000_000)]].concat();
        let peer_as = if ebgp { 65001 } else { 4_200_000_000 };
        if four {
            caps.push(Capability::FourOctetAs(peer_as));
        }
        let open = OpenMsg::new(peer_as, 90, Ipv4Addr::new(10, 0, 0, 254), caps);
        negotiate(4_200_000_000, 90, &local, &open)
    }

    fn ctx(local: &str) -> ExportCtx {
        ExportCtx { local_as: 4_200_000_000, local_addr: local.parse().unwrap(), node_v4: None, node_v6: None }
    }

    fn prefixes() -> Vec<IpNet> {
        vec!["10.244.1.0/26".parse().unwrap(), "fd00:244:1::/122".parse().unwrap()]
    }

    #[test]
    fn ebgp_prepends_and_ends_each_family() {
        let n = session(true, true, true);
        let mut c = ctx("10.0.0.1");
        c.node_v6 = Some("fd00::1".parse().unwrap());
        let (u, skipped) = advertise(&prefixes(), &c, &n);
        assert!(skipped.is_empty());
        assert_eq!(u.len(), 4);
        assert_eq!(u[0].as_path().unwrap().flat(), vec![4_200_000_000]);
        assert_eq!(u[0].next_hop(), Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(u[0].local_pref(), None);
        assert_eq!(u[1].end_of_rib(), Some(AfiSafi::IPV4_UNICAST));
        // IPv6 over an IPv4 session: the node's IPv6 address.
        assert_eq!(u[2].mp_reach().unwrap().next_hop.addr().to_string(), "fd00::1");
        assert_eq!(u[3].end_of_rib(), Some(AfiSafi::IPV6_UNICAST));
        // Without one, the IPv6 prefix is skipped with a reason.
        let (u, skipped) = advertise(&prefixes(), &ctx("10.0.0.1"), &n);
        assert_eq!(skipped, vec![Skipped { prefix: prefixes()[1], reason: NO_V6_NEXT_HOP }]);
        assert_eq!(u.len(), 3);
        for m in u {
            let b = Message::Update(m.clone()).encode(&n.encode_ctx());
            assert_eq!(Message::decode(&b, &n.decode_ctx(false)).unwrap(), Message::Update(m));
        }
    }

    #[test]
    fn ibgp_sends_local_pref_and_empty_path() {
        let n = session(false, true, false);
        let (u, skipped) = advertise(&prefixes(), &ctx("10.0.0.1"), &n);
        assert_eq!(u[0].local_pref(), Some(100));
        assert!(u[0].as_path().unwrap().segments.is_empty());
        assert_eq!(skipped, vec![Skipped { prefix: prefixes()[1], reason: "address family not negotiated" }]);
    }

    #[test]
    fn two_octet_peer_gets_as_trans_and_as4_path() {
        let n = session(true, false, false);
        let (u, _) = advertise(&prefixes()[..1], &ctx("10.0.0.1"), &n);
        let b = Message::Update(u[0].clone()).encode(&n.encode_ctx());
        let Message::Update(back) = Message::decode(&b, &n.decode_ctx(false)).unwrap() else { panic!() };
        assert_eq!(back.as_path().unwrap().flat(), vec![23456]);
        assert_eq!(back.effective_as_path(false).unwrap().flat(), vec![4_200_000_000]);
    }

    #[test]
    fn ipv6_session_uses_its_own_address() {
        let n = session(true, true, true);
        let mut c = ctx("fd00::1");
        c.node_v4 = Some(Ipv4Addr::new(10, 0, 0, 1));
        let (u, skipped) = advertise(&prefixes(), &c, &n);
        assert!(skipped.is_empty());
        assert_eq!(u[0].next_hop(), Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(u[2].mp_reach().unwrap().next_hop.addr().to_string(), "fd00::1");
        // A link-local session: global from the node, link-local beside it.
        let mut c = ctx("fe80::1");
        c.node_v6 = Some("fd00::1".parse().unwrap());
        let (u, _) = advertise(&prefixes()[1..], &c, &n);
        assert_eq!(
            u[1].mp_reach().unwrap().next_hop,
            NextHop::V6 { global: "fd00::1".parse().unwrap(), link_local: Some("fe80::1".parse().unwrap()) }
        );
        let w = withdraw(&prefixes(), &n);
        assert_eq!(w.iter().map(|m| m.withdrawals().len()).sum::<usize>(), 2);
    }
}
