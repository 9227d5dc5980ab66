//! Property: for every well-formed message and negotiated context, encoding
//! then decoding gives back the same message, and the encoding fits in
//! 4096 octets.
#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, Ipv6Addr};

use bgpd::packet::*;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use proptest::collection::vec;
use proptest::prelude::*;

#[derive(Debug, Clone, Copy)]
struct Ctx {
    four: bool,
    ap4: bool,
    ap6: bool,
}

impl Ctx {
    fn dctx(self) -> DecodeCtx {
        let mut d = DecodeCtx { four_octet_as: self.four, ..Default::default() };
        if self.ap4 {
            d.add_path_rx.insert(Family::Ipv4Unicast);
        }
        if self.ap6 {
            d.add_path_rx.insert(Family::Ipv6Unicast);
        }
        d
    }
    fn ectx(self) -> EncodeCtx {
        EncodeCtx { four_octet_as: self.four, add_path_tx: self.dctx().add_path_rx }
    }
}

fn asn(four: bool) -> BoxedStrategy<u32> {
    if four {
        (1u32..=u32::MAX).boxed()
    } else {
        (1u32..=65535).boxed()
    }
}

fn nlri(f: Family, ap: bool) -> impl Strategy<Value = Nlri> {
    let prefix: BoxedStrategy<IpNet> = match f {
        Family::Ipv4Unicast => (any::<u32>(), 0u8..=32)
            .prop_map(|(a, l)| IpNet::V4(Ipv4Net::new(Ipv4Addr::from(a), l).unwrap().trunc()))
            .boxed(),
        Family::Ipv6Unicast => (any::<u128>(), 0u8..=128)
            .prop_map(|(a, l)| IpNet::V6(Ipv6Net::new(Ipv6Addr::from(a), l).unwrap().trunc()))
            .boxed(),
    };
    (prefix, any::<u32>()).prop_map(move |(prefix, id)| Nlri { path_id: ap.then_some(id), prefix })
}

fn as_path(four: bool, confed: bool) -> impl Strategy<Value = AsPath> {
    let kinds = if confed {
        prop_oneof![
            Just(SegmentType::AsSequence),
            Just(SegmentType::AsSet),
            Just(SegmentType::AsConfedSequence),
            Just(SegmentType::AsConfedSet)
        ]
        .boxed()
    } else {
        prop_oneof![Just(SegmentType::AsSequence), Just(SegmentType::AsSet)].boxed()
    };
    vec((kinds, vec(asn(four), 1..6)).prop_map(|(kind, asns)| AsSegment { kind, asns }), 0..4)
        .prop_map(|segments| AsPath { segments })
}

fn unicast_v4() -> impl Strategy<Value = Ipv4Addr> {
    (1u8..=223, any::<[u8; 3]>()).prop_map(|(a, r)| Ipv4Addr::new(if a == 127 { 10 } else { a }, r[0], r[1], r[2]))
}

/// One attribute of each known kind (all but MP and NEXT_HOP/ORIGIN/AS_PATH).
fn optional_attr(ctx: Ctx) -> impl Strategy<Value = AttrValue> {
    prop_oneof![
        any::<u32>().prop_map(AttrValue::MultiExitDisc),
        any::<u32>().prop_map(AttrValue::LocalPref),
        Just(AttrValue::AtomicAggregate),
        (asn(ctx.four), any::<u32>()).prop_map(|(asn, a)| AttrValue::Aggregator(Aggregator { asn, address: a.into() })),
        vec(any::<u32>().prop_map(Community), 1..20).prop_map(AttrValue::Communities),
        any::<u32>().prop_map(|a| AttrValue::OriginatorId(a.into())),
        vec(any::<u32>().prop_map(Ipv4Addr::from), 1..5).prop_map(AttrValue::ClusterList),
        vec(any::<[u8; 8]>().prop_map(ExtCommunity), 1..10).prop_map(AttrValue::ExtendedCommunities),
        as_path(true, false).prop_map(AttrValue::As4Path),
        (1u32..=u32::MAX, any::<u32>())
            .prop_map(|(asn, a)| AttrValue::As4Aggregator(Aggregator { asn, address: a.into() })),
        vec(any::<[u32; 3]>(), 1..8).prop_map(|v| AttrValue::LargeCommunities(
            v.into_iter().map(|[a, b, c]| LargeCommunity { global_admin: a, local_data1: b, local_data2: c }).collect()
        )),
        (prop_oneof![19u8..=31, 33u8..=254], vec(any::<u8>(), 0..40))
            .prop_map(|(type_code, v)| AttrValue::Unknown { type_code, value: v.into() }),
    ]
}

fn with_flags(v: AttrValue, ext: bool, partial: bool) -> PathAttr {
    let mut a = PathAttr::new(v);
    if ext {
        a.flags |= attribute::FLAG_EXTENDED_LENGTH;
    }
    if partial && a.is_optional() && a.is_transitive() {
        a.flags |= attribute::FLAG_PARTIAL;
    }
    a
}

fn update(ctx: Ctx) -> impl Strategy<Value = UpdateMsg> {
    let mp = prop_oneof![
        Just(None),
        (vec(nlri(Family::Ipv6Unicast, ctx.ap6), 1..20), any::<u128>(), proptest::option::of(any::<u128>())).prop_map(
            |(nlri, g, ll)| Some(AttrValue::MpReachNlri(MpReach {
                family: Family::Ipv6Unicast,
                next_hop: NextHop::V6 {
                    // A routable global address: not ::, ::1 or multicast.
                    global: if g >> 120 == 0xff || g <= 1 { Ipv6Addr::from(0xfd00u128 << 112 | 1) } else { g.into() },
                    link_local: ll.map(Ipv6Addr::from),
                },
                nlri,
            }))
        ),
        (vec(nlri(Family::Ipv6Unicast, ctx.ap6), 0..20))
            .prop_map(|w| Some(AttrValue::MpUnreachNlri(MpUnreach { family: Family::Ipv6Unicast, withdrawn: w }))),
        (prop_oneof![Just(25u16), Just(16388)], 3u8..=200, vec(any::<u8>(), 0..30))
            .prop_map(|(afi, safi, rest)| Some(AttrValue::MpReachOther(attribute_other(afi, safi, rest)))),
    ];
    (
        vec(nlri(Family::Ipv4Unicast, ctx.ap4), 0..30),
        vec(nlri(Family::Ipv4Unicast, ctx.ap4), 0..30),
        prop_oneof![Just(Origin::Igp), Just(Origin::Egp), Just(Origin::Incomplete)],
        as_path(ctx.four, true),
        unicast_v4(),
        vec((optional_attr(ctx), any::<bool>(), any::<bool>()), 0..8),
        mp,
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|(withdrawn, nlri, origin, path, nh, extras, mp, announce, shuffle)| {
            let mut attrs = Vec::new();
            let mut seen = std::collections::HashSet::new();
            let mut push = |a: PathAttr, attrs: &mut Vec<PathAttr>| {
                if seen.insert(a.type_code()) {
                    attrs.push(a);
                }
            };
            let announces = announce || !nlri.is_empty() || matches!(mp, Some(AttrValue::MpReachNlri(_)));
            if announces {
                push(PathAttr::new(AttrValue::Origin(origin)), &mut attrs);
                push(PathAttr::new(AttrValue::AsPath(path)), &mut attrs);
                push(PathAttr::new(AttrValue::NextHop(nh)), &mut attrs);
                for (v, ext, partial) in extras {
                    push(with_flags(v, ext, partial), &mut attrs);
                }
            }
            if let Some(m) = mp {
                push(PathAttr::new(m), &mut attrs);
            }
            // Any attribute order must survive.
            let n = attrs.len();
            if n > 1 {
                attrs.rotate_left((shuffle % n as u64) as usize);
            }
            UpdateMsg { withdrawn, attrs, nlri: if announces { nlri } else { vec![] }, ..Default::default() }
        })
}

fn attribute_other(afi: u16, safi: u8, rest: Vec<u8>) -> MpOther {
    MpOther { afi_safi: AfiSafi::new(afi, safi), rest: rest.into() }
}

use bgpd::packet::mp::MpOther;

fn capability() -> impl Strategy<Value = Capability> {
    let afi_safi = (any::<u16>(), any::<u8>()).prop_map(|(a, s)| AfiSafi::new(a, s));
    let mode = prop_oneof![Just(AddPathMode::Receive), Just(AddPathMode::Send), Just(AddPathMode::Both)];
    prop_oneof![
        afi_safi.clone().prop_map(Capability::Multiprotocol),
        Just(Capability::RouteRefresh),
        Just(Capability::EnhancedRouteRefresh),
        vec((afi_safi.clone(), any::<u16>()).prop_map(|(nlri, nh)| ExtendedNextHop { nlri, next_hop_afi: nh }), 0..5)
            .prop_map(Capability::ExtendedNextHop),
        (any::<bool>(), any::<bool>(), 0u16..4096, vec((afi_safi.clone(), any::<bool>()), 0..4)).prop_map(
            |(r, n, t, f)| {
                Capability::GracefulRestart(GracefulRestart {
                    restart_state: r,
                    notification: n,
                    restart_time: t,
                    families: f
                        .into_iter()
                        .map(|(a, fp)| GracefulRestartFamily { afi_safi: a, forwarding_preserved: fp })
                        .collect(),
                })
            }
        ),
        any::<u32>().prop_map(Capability::FourOctetAs),
        vec((afi_safi, mode).prop_map(|(a, m)| AddPathFamily { afi_safi: a, mode: m }), 0..5)
            .prop_map(Capability::AddPath),
        (prop_oneof![Just(71u8), Just(73), 128u8..=255], vec(any::<u8>(), 0..20))
            .prop_map(|(code, v)| Capability::Unknown { code, value: v.into() }),
    ]
}

fn message(ctx: Ctx) -> impl Strategy<Value = Message> {
    prop_oneof![
        (any::<u16>(), prop_oneof![Just(0u16), 3u16..], 1u32.., vec(vec(capability(), 0..5), 0..3)).prop_map(
            |(my_as, hold_time, id, params)| Message::Open(OpenMsg {
                version: 4,
                my_as,
                hold_time,
                bgp_id: id.into(),
                params
            })
        ),
        update(ctx).prop_map(Message::Update),
        (any::<u8>(), any::<u8>(), vec(any::<u8>(), 0..100))
            .prop_map(|(c, s, d)| Message::Notification(NotificationMsg::new(c, s, d.into()))),
        Just(Message::Keepalive),
        (any::<u16>(), any::<u8>(), any::<u8>()).prop_map(|(afi, sub, safi)| {
            let subtype = match sub {
                0 => RefreshSubtype::Request,
                1 => RefreshSubtype::BoRR,
                2 => RefreshSubtype::EoRR,
                v => RefreshSubtype::Reserved(v),
            };
            Message::RouteRefresh(RouteRefreshMsg { afi_safi: AfiSafi::new(afi, safi), subtype })
        }),
    ]
}

fn ctx_and_message() -> impl Strategy<Value = (Ctx, Message)> {
    (any::<bool>(), any::<bool>(), any::<bool>())
        .prop_map(|(four, ap4, ap6)| Ctx { four, ap4, ap6 })
        .prop_flat_map(|c| (Just(c), message(c)))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn encode_then_decode_is_identity((ctx, msg) in ctx_and_message()) {
        let bytes = msg.encode(&ctx.ectx());
        prop_assume!(bytes.len() <= MAX_MESSAGE_LEN);
        let back = Message::decode(&bytes, &ctx.dctx());
        prop_assert_eq!(back, Ok(msg.clone()));
        // And re-encoding is stable.
        prop_assert_eq!(msg.encode(&ctx.ectx()), bytes);
    }

    #[test]
    fn decoding_garbage_never_panics(bytes in vec(any::<u8>(), 0..600), ap in any::<bool>(), four in any::<bool>()) {
        let mut framed = vec![0xff; 16];
        framed.extend_from_slice(&((bytes.len() + 18).min(4096) as u16).to_be_bytes());
        framed.extend_from_slice(&bytes);
        let ctx = Ctx { four, ap4: ap, ap6: ap }.dctx();
        let _ = Message::decode(&framed, &ctx);
        let _ = bgpd::packet::frame_len(&framed);
    }

    #[test]
    fn packed_updates_fit_and_carry_every_prefix(n in 1usize..3000, ap in any::<bool>()) {
        let ctx = Ctx { four: true, ap4: ap, ap6: ap };
        let attrs = vec![
            PathAttr::new(AttrValue::Origin(Origin::Igp)),
            PathAttr::new(AttrValue::AsPath(AsPath::sequence(vec![64512]))),
            PathAttr::new(AttrValue::NextHop(Ipv4Addr::new(10, 0, 0, 1))),
        ];
        let v4: Vec<Nlri> = (0..n as u32)
            .map(|i| Nlri { path_id: ap.then_some(i), prefix: IpNet::V4(Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + (i << 8)), 24).unwrap()) })
            .collect();
        let msgs = UpdateMsg::pack(&attrs, Family::Ipv4Unicast, None, &v4, &ctx.ectx());
        let mut got = 0;
        for m in &msgs {
            let b = Message::Update(m.clone()).encode(&ctx.ectx());
            prop_assert!(b.len() <= MAX_MESSAGE_LEN);
            got += m.nlri.len();
        }
        prop_assert_eq!(got, n);
        let v6: Vec<Nlri> = (0..n as u128)
            .map(|i| Nlri { path_id: ap.then_some(i as u32), prefix: IpNet::V6(Ipv6Net::new(Ipv6Addr::from((0xfd00u128 << 112) + (i << 64)), 64).unwrap()) })
            .collect();
        let nh = NextHop::V6 { global: "fd00::1".parse().unwrap(), link_local: Some("fe80::1".parse().unwrap()) };
        let msgs = UpdateMsg::pack(&attrs[..2], Family::Ipv6Unicast, Some(nh), &v6, &ctx.ectx());
        let mut got = 0;
        for m in &msgs {
            let b = Message::Update(m.clone()).encode(&ctx.ectx());
            prop_assert!(b.len() <= MAX_MESSAGE_LEN);
            got += m.mp_reach().unwrap().nlri.len();
        }
        prop_assert_eq!(got, n);
        let w = UpdateMsg::pack_withdrawals(Family::Ipv6Unicast, &v6, &ctx.ectx());
        prop_assert!(w.iter().all(|m| Message::Update(m.clone()).encode(&ctx.ectx()).len() <= MAX_MESSAGE_LEN));
        prop_assert_eq!(w.iter().map(|m| m.withdrawals().len()).sum::<usize>(), n);
    }
}
