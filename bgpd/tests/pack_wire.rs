//! `UpdateMsg::pack_wire` writes the same bytes as `UpdateMsg::pack`
//! followed by encoding each message: for IPv4 NLRI with a NEXT_HOP,
//! IPv4 over an IPv6 next hop (RFC 8950), IPv6 in MP_REACH_NLRI, with and
//! without ADD-PATH, one message or many, attribute sets short and over 255
//! octets (extended length).
#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, Ipv6Addr};

use bgpd::packet::*;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

fn v4(n: usize) -> Vec<Nlri> {
    (0..n)
        .map(|i| {
            let len = [24, 32, 8, 26][i % 4];
            let a = Ipv4Addr::from(0x1400_0000u32 + ((i as u32) << 8));
            Nlri { path_id: None, prefix: IpNet::V4(Ipv4Net::new(a, len).unwrap().trunc()) }
        })
        .collect()
}

fn v6(n: usize) -> Vec<Nlri> {
    (0..n)
        .map(|i| {
            let len = [64, 48, 128, 122][i % 4];
            let a = Ipv6Addr::from(0x2001_0db8_0000_0000_0000_0000_0000_0000u128 + ((i as u128) << 64));
            Nlri { path_id: None, prefix: IpNet::V6(Ipv6Net::new(a, len).unwrap().trunc()) }
        })
        .collect()
}

fn attrs(communities: usize) -> Vec<PathAttr> {
    let mut v = vec![
        PathAttr::new(AttrValue::Origin(Origin::Igp)),
        PathAttr::new(AttrValue::AsPath(AsPath::sequence(vec![64512, 65001]))),
        PathAttr::new(AttrValue::MultiExitDisc(7)),
    ];
    if communities > 0 {
        let c = (0..communities as u32).map(|i| Community::new(64512, i as u16)).collect();
        v.push(PathAttr::new(AttrValue::Communities(c)));
    }
    v
}

fn check(attrs: &[PathAttr], family: Family, nh: Option<NextHop>, nlri: &[Nlri], ctx: &EncodeCtx) -> usize {
    let nlri: Vec<Nlri> = nlri
        .iter()
        .enumerate()
        .map(|(i, n)| Nlri { path_id: ctx.add_path_tx.contains(family).then_some(i as u32 + 1), ..*n })
        .collect();
    let want: Vec<Vec<u8>> = UpdateMsg::pack(attrs, family, nh, &nlri, ctx)
        .into_iter()
        .map(|m| Message::Update(m).encode(ctx).to_vec())
        .collect();
    let got: Vec<Vec<u8>> =
        UpdateMsg::pack_wire(attrs, family, nh, &nlri, ctx).into_iter().map(|b| b.to_vec()).collect();
    assert_eq!(got.len(), want.len(), "{family:?} {} NLRI: message count", nlri.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "{family:?} {} NLRI: message {i} differs", nlri.len());
        assert!(g.len() <= MAX_MESSAGE_LEN);
    }
    got.len()
}

#[test]
fn wire_packing_matches_packing_then_encoding() {
    let nh6 = NextHop::V6 { global: "2001:db8::1".parse().unwrap(), link_local: None };
    let nh6ll = NextHop::V6 { global: "2001:db8::1".parse().unwrap(), link_local: Some("fe80::1".parse().unwrap()) };
    let mut messages = 0;
    for ap in [false, true] {
        for four in [false, true] {
            let mut ctx = EncodeCtx { four_octet_as: four, ..EncodeCtx::default() };
            if ap {
                ctx.add_path_tx.insert(Family::Ipv4Unicast);
                ctx.add_path_tx.insert(Family::Ipv6Unicast);
            }
            for n in [0, 1, 7, 900, 1100, 3000] {
                for c in [0, 3, 80] {
                    let mut with_nh = attrs(c);
                    with_nh.push(PathAttr::new(AttrValue::NextHop(Ipv4Addr::new(10, 0, 0, 1))));
                    messages += check(&with_nh, Family::Ipv4Unicast, None, &v4(n), &ctx);
                    messages += check(&attrs(c), Family::Ipv4Unicast, Some(nh6), &v4(n), &ctx);
                    messages += check(&attrs(c), Family::Ipv6Unicast, Some(nh6), &v6(n), &ctx);
                    messages += check(&attrs(c), Family::Ipv6Unicast, Some(nh6ll), &v6(n), &ctx);
                }
            }
        }
    }
    // Many of the cases took more than one message.
    assert!(messages > 400, "{messages}");
}
