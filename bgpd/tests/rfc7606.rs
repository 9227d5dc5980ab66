//! RFC 7606 error handling: every malformation maps to its action and, for
//! session resets, to the right NOTIFICATION code, subcode and data.
#![allow(clippy::unwrap_used)]

use bgpd::packet::attribute as attr;
use bgpd::packet::error::{code, update_sub};
use bgpd::packet::{AttrAction, AttrErrorKind, DecodeCtx, DecodeError, Message, UpdateMsg};

/// An UPDATE body with the given raw path attributes and IPv4 NLRI
/// 10.244.1.0/26.
fn body(attrs: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0];
    b.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    b.extend_from_slice(attrs);
    b.extend_from_slice(&[26, 10, 244, 1, 0]);
    b
}

const ORIGIN_IGP: &[u8] = &[0x40, 1, 1, 0];
const AS_PATH_65001: &[u8] = &[0x40, 2, 4, 2, 1, 0xfd, 0xe9];
const NEXT_HOP: &[u8] = &[0x40, 3, 4, 10, 0, 0, 2];

fn valid_with(extra: &[u8]) -> Vec<u8> {
    [ORIGIN_IGP, AS_PATH_65001, NEXT_HOP, extra].concat()
}

fn ebgp() -> DecodeCtx {
    DecodeCtx { ebgp: true, ..DecodeCtx::default() }
}

fn decode(attrs: &[u8], ctx: &DecodeCtx) -> Result<UpdateMsg, DecodeError> {
    UpdateMsg::decode(&body(attrs), ctx)
}

/// Asserts the UPDATE decodes but every NLRI is withdrawn, for `kind`.
fn assert_withdraw(attrs: &[u8], ctx: &DecodeCtx, type_code: u8, kind: AttrErrorKind) {
    let u = decode(attrs, ctx).expect("treat-as-withdraw must not reset the session");
    let e = u.treat_as_withdraw.as_ref().expect("treat-as-withdraw expected");
    assert_eq!((e.type_code, e.kind, e.action), (type_code, kind, AttrAction::TreatAsWithdraw));
    assert!(u.announcements().is_empty());
    assert_eq!(u.withdrawals().len(), 1);
}

fn assert_discard(attrs: &[u8], ctx: &DecodeCtx, type_code: u8) {
    let u = decode(attrs, ctx).expect("attribute discard must not reset the session");
    assert!(u.treat_as_withdraw.is_none(), "{:?}", u.treat_as_withdraw);
    assert_eq!(u.discarded.len(), 1);
    assert_eq!(u.discarded[0].type_code, type_code);
    assert_eq!(u.discarded[0].action, AttrAction::AttributeDiscard);
    assert!(u.attrs.iter().all(|a| a.type_code() != type_code || type_code == attr::COMMUNITIES));
    assert_eq!(u.announcements().len(), 1);
}

fn assert_reset(r: Result<UpdateMsg, DecodeError>, subcode: u8, data: &[u8]) {
    let e = r.expect_err("session reset expected");
    let n = e.notification().expect("a NOTIFICATION");
    assert_eq!((n.code, n.subcode, &n.data[..]), (code::UPDATE_MESSAGE, subcode, data), "{e}");
}

#[test]
fn well_formed_update_decodes() {
    let u = decode(&valid_with(&[]), &ebgp()).unwrap();
    assert!(u.treat_as_withdraw.is_none() && u.discarded.is_empty());
    assert_eq!(u.announcements().len(), 1);
}

#[test]
fn origin_errors_withdraw() {
    let bad_value = [&[0x40, 1, 1, 3][..], AS_PATH_65001, NEXT_HOP].concat();
    assert_withdraw(&bad_value, &ebgp(), attr::ORIGIN, AttrErrorKind::InvalidOrigin);
    let bad_len = [&[0x40, 1, 2, 0, 0][..], AS_PATH_65001, NEXT_HOP].concat();
    assert_withdraw(&bad_len, &ebgp(), attr::ORIGIN, AttrErrorKind::LengthError);
}

#[test]
fn flag_conflicts_take_the_attributes_action() {
    // ORIGIN marked optional.
    let a = [&[0xc0, 1, 1, 0][..], AS_PATH_65001, NEXT_HOP].concat();
    assert_withdraw(&a, &ebgp(), attr::ORIGIN, AttrErrorKind::FlagsError);
    // AGGREGATOR marked well-known: discard.
    assert_discard(&valid_with(&[0x40, 7, 6, 0xfd, 0xe9, 1, 2, 3, 4]), &ebgp(), attr::AGGREGATOR);
    // MP_REACH_NLRI marked transitive: reset.
    let mp = [0xc0, 14, 5, 0, 2, 1, 0, 0];
    let r = decode(&valid_with(&mp), &ebgp());
    assert_reset(r, update_sub::ATTRIBUTE_FLAGS_ERROR, &mp);
}

#[test]
fn as_path_errors_withdraw() {
    let cases: &[&[u8]] = &[
        &[0x40, 2, 2, 2, 0],             // empty segment
        &[0x40, 2, 4, 7, 1, 0xfd, 0xe9], // unknown segment type
        &[0x40, 2, 3, 2, 1, 0xfd],       // truncated AS
        &[0x40, 2, 4, 2, 1, 0, 0],       // AS 0 (RFC 7607)
        &[0x40, 2, 4, 3, 1, 0xfd, 0xe9], // confederation segment from eBGP
    ];
    for c in cases {
        let a = [ORIGIN_IGP, c, NEXT_HOP].concat();
        assert_withdraw(&a, &ebgp(), attr::AS_PATH, AttrErrorKind::MalformedAsPath);
    }
    // The first AS must be the peer's when enforced.
    let ctx = DecodeCtx { enforce_first_as: Some(65002), ..ebgp() };
    assert_withdraw(&valid_with(&[]), &ctx, attr::AS_PATH, AttrErrorKind::MalformedAsPath);
}

#[test]
fn next_hop_errors_withdraw() {
    for nh in [[0, 0, 0, 0], [224, 0, 0, 1], [255, 255, 255, 255]] {
        let a = [ORIGIN_IGP, AS_PATH_65001, &[0x40, 3, 4], &nh].concat();
        assert_withdraw(&a, &ebgp(), attr::NEXT_HOP, AttrErrorKind::InvalidNextHop);
    }
    let a = [ORIGIN_IGP, AS_PATH_65001, &[0x40, 3, 3, 10, 0, 0]].concat();
    assert_withdraw(&a, &ebgp(), attr::NEXT_HOP, AttrErrorKind::LengthError);
}

#[test]
fn missing_mandatory_attributes_withdraw() {
    assert_withdraw(&[ORIGIN_IGP, NEXT_HOP].concat(), &ebgp(), attr::AS_PATH, AttrErrorKind::MissingWellKnown);
    assert_withdraw(&[ORIGIN_IGP, AS_PATH_65001].concat(), &ebgp(), attr::NEXT_HOP, AttrErrorKind::MissingWellKnown);
    let u = decode(&[AS_PATH_65001, NEXT_HOP].concat(), &ebgp()).unwrap();
    assert_eq!(u.treat_as_withdraw.unwrap().data[..], [attr::ORIGIN]);
    // No attributes at all, but NLRI present: withdraw.
    let u = decode(&[], &ebgp()).unwrap();
    assert!(u.treat_as_withdraw.is_some());
    // A pure withdrawal needs no attributes.
    let u = UpdateMsg::decode(&[0, 5, 26, 10, 244, 1, 0, 0, 0], &ebgp()).unwrap();
    assert!(u.treat_as_withdraw.is_none());
    assert_eq!(u.withdrawals().len(), 1);
}

#[test]
fn med_local_pref_and_ids_by_length() {
    assert_withdraw(&valid_with(&[0x80, 4, 3, 0, 0, 1]), &ebgp(), attr::MULTI_EXIT_DISC, AttrErrorKind::LengthError);
    // LOCAL_PREF: discard from eBGP, withdraw from iBGP.
    assert_discard(&valid_with(&[0x40, 5, 2, 0, 1]), &ebgp(), attr::LOCAL_PREF);
    assert_withdraw(
        &valid_with(&[0x40, 5, 2, 0, 1]),
        &DecodeCtx::default(),
        attr::LOCAL_PREF,
        AttrErrorKind::LengthError,
    );
    // ORIGINATOR_ID and CLUSTER_LIST: from iBGP, a bad length withdraws.
    let ibgp = DecodeCtx::default();
    assert_withdraw(&valid_with(&[0x80, 9, 3, 1, 2, 3]), &ibgp, attr::ORIGINATOR_ID, AttrErrorKind::LengthError);
    assert_withdraw(&valid_with(&[0x80, 10, 0]), &ibgp, attr::CLUSTER_LIST, AttrErrorKind::LengthError);
    assert_withdraw(&valid_with(&[0x80, 10, 5, 1, 2, 3, 4, 5]), &ibgp, attr::CLUSTER_LIST, AttrErrorKind::LengthError);
}

#[test]
fn originator_id_and_cluster_list_from_an_external_peer_are_discarded() {
    // RFC 7606 §7.9, §7.10: well-formed or not, they are internal-only.
    for a in [&[0x80, 9, 4, 1, 2, 3, 4][..], &[0x80, 9, 3, 1, 2, 3], &[0x80, 10, 4, 1, 2, 3, 4], &[0x80, 10, 0]] {
        assert_discard(&valid_with(a), &ebgp(), a[1]);
        let u = decode(&valid_with(a), &ebgp()).unwrap();
        assert_eq!(u.discarded[0].kind, AttrErrorKind::FromExternalPeer);
        assert_eq!((u.originator_id(), u.cluster_list()), (None, &[][..]));
    }
    // From an internal peer the same attributes are kept.
    let u = decode(&valid_with(&[0x80, 9, 4, 1, 2, 3, 4, 0x80, 10, 4, 5, 6, 7, 8]), &DecodeCtx::default()).unwrap();
    assert_eq!(u.originator_id(), Some("1.2.3.4".parse().unwrap()));
    assert_eq!(u.cluster_list(), &["5.6.7.8".parse::<std::net::Ipv4Addr>().unwrap()]);
}

/// An UPDATE body from raw withdrawn routes, attributes and NLRI.
fn raw_body(withdrawn: &[u8], attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
    let mut b = (withdrawn.len() as u16).to_be_bytes().to_vec();
    b.extend_from_slice(withdrawn);
    b.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    b.extend_from_slice(attrs);
    b.extend_from_slice(nlri);
    b
}

/// MP_UNREACH_NLRI withdrawing fd00::/16.
const MP_UNREACH_V6: &[u8] = &[0x80, 15, 6, 0, 2, 1, 16, 0xfd, 0];

/// MP_REACH_NLRI announcing fd00::/16 via fd00::1.
fn mp_reach_v6() -> Vec<u8> {
    let mut mp = vec![0x80, 14, 24, 0, 2, 1, 16];
    mp.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    mp.extend_from_slice(&[0, 16, 0xfd, 0]);
    mp
}

#[test]
fn attributes_without_reachable_nlri_reset_instead_of_withdrawing() {
    // RFC 7606 §5.2: with no reachable NLRI, treat-as-withdraw has nothing
    // to act on, so the errors that call for it reset the session.
    let bad_origin = &[0x40, 1, 1, 3][..];
    let r = UpdateMsg::decode(&raw_body(&[], &[bad_origin, MP_UNREACH_V6].concat(), &[]), &ebgp());
    assert_reset(r, update_sub::INVALID_ORIGIN_ATTRIBUTE, bad_origin);
    let communities_5 = &[0xc0, 8, 5, 1, 2, 3, 4, 5][..];
    let r = UpdateMsg::decode(&raw_body(&[], &[ORIGIN_IGP, AS_PATH_65001, communities_5].concat(), &[]), &ebgp());
    assert_reset(r, update_sub::ATTRIBUTE_LENGTH_ERROR, communities_5);
    // IPv4 withdrawals only, with a malformed MED.
    let med_2 = &[0x80, 4, 2, 0, 1][..];
    let r = UpdateMsg::decode(&raw_body(&[24, 10, 9, 1], &[ORIGIN_IGP, med_2].concat(), &[]), &ebgp());
    assert_reset(r, update_sub::ATTRIBUTE_LENGTH_ERROR, med_2);
    // IPv6 NLRI in MP_REACH_NLRI is reachable NLRI: withdrawn, no reset.
    let u =
        UpdateMsg::decode(&raw_body(&[], &[bad_origin, AS_PATH_65001, &mp_reach_v6()].concat(), &[]), &ebgp()).unwrap();
    assert_eq!(u.treat_as_withdraw.unwrap().kind, AttrErrorKind::InvalidOrigin);
    // Attribute discard needs no NLRI: still no reset.
    let u = UpdateMsg::decode(&raw_body(&[], &[&[0x40, 6, 1, 0][..], MP_UNREACH_V6].concat(), &[]), &ebgp()).unwrap();
    assert_eq!(u.discarded.len(), 1);
    assert_eq!(u.withdrawals().len(), 1);
    // So does a bad NEXT_HOP (ignored without IPv4 NLRI, RFC 4760 §3).
    let u =
        UpdateMsg::decode(&raw_body(&[], &[ORIGIN_IGP, &[0x40, 3, 4, 0, 0, 0, 0][..]].concat(), &[]), &ebgp()).unwrap();
    assert_eq!(u.discarded[0].type_code, attr::NEXT_HOP);
}

#[test]
fn end_of_rib_is_only_a_clean_empty_update() {
    assert!(UpdateMsg::decode(&raw_body(&[], &[], &[]), &ebgp()).unwrap().end_of_rib().is_some());
    let eor_v6 = [0x80, 15, 3, 0, 2, 1];
    assert!(UpdateMsg::decode(&raw_body(&[], &eor_v6, &[]), &ebgp()).unwrap().end_of_rib().is_some());
    // A malformed attribute that was dropped was still there.
    let u = UpdateMsg::decode(&raw_body(&[], &[0x40, 6, 1, 0], &[]), &ebgp()).unwrap();
    assert_eq!((u.discarded.len(), u.end_of_rib()), (1, None));
    let u = UpdateMsg::decode(&raw_body(&[], &[&eor_v6[..], &[0x40, 6, 1, 0]].concat(), &[]), &ebgp()).unwrap();
    assert_eq!(u.end_of_rib(), None);
}

#[test]
fn withdrawn_routes_and_mp_unreach_prefixes_are_checked_like_nlri() {
    // RFC 7606 §3 i / §5.3: a prefix longer than the family allows resets.
    let r = UpdateMsg::decode(&raw_body(&[33, 1, 0, 0, 0, 0], &[], &[]), &ebgp());
    assert_reset(r, update_sub::INVALID_NETWORK_FIELD, &[]);
    let r = UpdateMsg::decode(&raw_body(&[24, 10, 9], &[], &[]), &ebgp());
    assert_reset(r, update_sub::INVALID_NETWORK_FIELD, &[]);
    let r = UpdateMsg::decode(&raw_body(&[], &[0x80, 15, 5, 0, 2, 1, 129, 0xfd], &[]), &ebgp());
    assert!(
        matches!(r, Err(ref e) if e.notification().unwrap().subcode == update_sub::OPTIONAL_ATTRIBUTE_ERROR),
        "{r:?}"
    );
}

#[test]
fn a_repeated_mp_reach_resets() {
    let mp = mp_reach_v6();
    let r = UpdateMsg::decode(&raw_body(&[], &[ORIGIN_IGP, AS_PATH_65001, &mp, &mp].concat(), &[]), &ebgp());
    assert_reset(r, update_sub::MALFORMED_ATTRIBUTE_LIST, &[]);
}

#[test]
fn the_extended_length_bit_is_accepted_on_any_attribute() {
    // RFC 7606 §4: a two-octet length on a short attribute is legal.
    let u = decode(&[&[0x50, 1, 0, 1, 0][..], AS_PATH_65001, &[0x50, 3, 0, 4, 10, 0, 0, 2]].concat(), &ebgp()).unwrap();
    assert!(u.treat_as_withdraw.is_none() && u.discarded.is_empty(), "{u:?}");
    assert_eq!(u.announcements().len(), 1);
}

#[test]
fn mandatory_attributes_for_mp_only_updates() {
    // MP_REACH_NLRI without ORIGIN: its NLRI is withdrawn (RFC 7606 §3 d).
    let u = UpdateMsg::decode(&raw_body(&[], &[AS_PATH_65001, &mp_reach_v6()].concat(), &[]), &ebgp()).unwrap();
    let e = u.treat_as_withdraw.unwrap();
    assert_eq!((e.type_code, e.kind), (attr::ORIGIN, AttrErrorKind::MissingWellKnown));
    // A lone MP_UNREACH_NLRI needs nothing else.
    let u = UpdateMsg::decode(&raw_body(&[], MP_UNREACH_V6, &[]), &ebgp()).unwrap();
    assert!(u.treat_as_withdraw.is_none() && u.discarded.is_empty());
    assert_eq!(u.withdrawals().len(), 1);
}

#[test]
fn atomic_aggregate_and_aggregators_are_discarded() {
    assert_discard(&valid_with(&[0x40, 6, 1, 0]), &ebgp(), attr::ATOMIC_AGGREGATE);
    assert_discard(&valid_with(&[0xc0, 7, 5, 0, 1, 1, 2, 3]), &ebgp(), attr::AGGREGATOR);
    // AS 0 in AGGREGATOR (RFC 7607).
    assert_discard(&valid_with(&[0xc0, 7, 6, 0, 0, 1, 2, 3, 4]), &ebgp(), attr::AGGREGATOR);
    assert_discard(&valid_with(&[0xc0, 18, 6, 0, 0, 1, 2, 3, 4]), &ebgp(), attr::AS4_AGGREGATOR);
    // AS4_PATH: malformed, or with confederation segments.
    assert_discard(&valid_with(&[0xc0, 17, 2, 2, 0]), &ebgp(), attr::AS4_PATH);
    assert_discard(&valid_with(&[0xc0, 17, 6, 3, 1, 0, 0, 0xfd, 0xe9]), &ebgp(), attr::AS4_PATH);
}

#[test]
fn community_lists_must_be_non_zero_multiples() {
    for (code, unit) in [(attr::COMMUNITIES, 4usize), (attr::EXTENDED_COMMUNITIES, 8), (attr::LARGE_COMMUNITIES, 12)] {
        for len in [0, unit - 1, unit + 1] {
            let mut a = vec![0xc0, code, len as u8];
            a.extend(std::iter::repeat_n(1u8, len));
            assert_withdraw(&valid_with(&a), &ebgp(), code, AttrErrorKind::LengthError);
        }
    }
}

#[test]
fn duplicates_are_discarded_except_mp_which_resets() {
    let u = decode(&valid_with(&[0x40, 1, 1, 2]), &ebgp()).unwrap();
    assert_eq!(u.discarded[0].kind, AttrErrorKind::Duplicate);
    assert_eq!(u.origin(), Some(bgpd::packet::Origin::Igp));
    let mp = [0x80, 15, 3, 0, 2, 1];
    let r = decode(&valid_with(&[&mp[..], &mp].concat()), &ebgp());
    assert_reset(r, update_sub::MALFORMED_ATTRIBUTE_LIST, &[]);
}

#[test]
fn attribute_overruns_withdraw_and_nlri_is_still_found() {
    // Last attribute claims 9 octets but only 2 remain.
    let u = decode(&valid_with(&[0xc0, 8, 9, 0, 1]), &ebgp()).unwrap();
    assert_eq!(u.treat_as_withdraw.as_ref().unwrap().kind, AttrErrorKind::Overrun);
    assert_eq!(u.withdrawals()[0].prefix.to_string(), "10.244.1.0/26");
    // Fewer octets than an attribute header.
    let u = decode(&valid_with(&[0x40, 1]), &ebgp()).unwrap();
    assert_eq!(u.treat_as_withdraw.as_ref().unwrap().kind, AttrErrorKind::Overrun);
    // Extended length with only three header octets.
    let u = decode(&valid_with(&[0x50, 8, 0]), &ebgp()).unwrap();
    assert_eq!(u.treat_as_withdraw.as_ref().unwrap().kind, AttrErrorKind::Overrun);
}

#[test]
fn the_most_severe_action_wins() {
    // A discard (ATOMIC_AGGREGATE) plus a withdraw (COMMUNITIES).
    let u = decode(&valid_with(&[0x40, 6, 1, 0, 0xc0, 8, 3, 0, 0, 0]), &ebgp()).unwrap();
    assert!(u.treat_as_withdraw.is_some());
    assert_eq!(u.discarded.len(), 1);
    // A withdraw plus a reset (unrecognized well-known attribute 99).
    let a = valid_with(&[0xc0, 8, 3, 0, 0, 0, 0x40, 99, 1, 7]);
    assert_reset(decode(&a, &ebgp()), update_sub::UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE, &[0x40, 99, 1, 7]);
}

#[test]
fn unknown_optional_attributes_are_kept_and_propagated_partial() {
    let u = decode(&valid_with(&[0xc0, 99, 2, 0xab, 0xcd, 0x80, 98, 1, 1]), &ebgp()).unwrap();
    assert!(u.discarded.is_empty() && u.treat_as_withdraw.is_none());
    let trans = u.attrs.iter().find(|a| a.type_code() == 99).unwrap();
    let p = trans.for_propagation().unwrap();
    assert!(p.is_partial() && p.is_transitive() && p.is_optional());
    let non_trans = u.attrs.iter().find(|a| a.type_code() == 98).unwrap();
    assert!(non_trans.for_propagation().is_none());
}

#[test]
fn mp_reach_errors_reset() {
    // IPv6 next hop of 5 octets.
    let mp = [0x80, 14, 10, 0, 2, 1, 5, 1, 2, 3, 4, 5, 0];
    assert_reset(decode(&valid_with(&mp), &ebgp()), update_sub::OPTIONAL_ATTRIBUTE_ERROR, &mp);
    // IPv4 NLRI with an IPv6 next hop without RFC 8950 negotiated.
    let mut mp = vec![0x80, 14, 22, 0, 1, 1, 16];
    mp.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    mp.extend_from_slice(&[0, 0]);
    assert_reset(decode(&valid_with(&mp), &ebgp()), update_sub::OPTIONAL_ATTRIBUTE_ERROR, &mp);
    // ... which is fine with it negotiated.
    let mut ctx = ebgp();
    ctx.extended_next_hop.insert(bgpd::packet::Family::Ipv4Unicast);
    assert!(decode(&valid_with(&mp), &ctx).is_ok());
    // NLRI inside MP_REACH_NLRI with a prefix longer than 128.
    let mut mp = vec![0x80, 14, 24, 0, 2, 1, 16];
    mp.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    mp.extend_from_slice(&[0, 129, 1, 2]);
    assert_reset(decode(&valid_with(&mp), &ebgp()), update_sub::OPTIONAL_ATTRIBUTE_ERROR, &mp);
    // Too short to hold AFI/SAFI.
    let mp = [0x80, 15, 2, 0, 2];
    assert_reset(decode(&valid_with(&mp), &ebgp()), update_sub::OPTIONAL_ATTRIBUTE_ERROR, &mp);
}

#[test]
fn mp_of_unknown_families_is_kept_but_ignored() {
    // AFI 25 (L2VPN) SAFI 70 (EVPN).
    let mp = [0x80, 14, 10, 0, 25, 70, 4, 10, 0, 0, 1, 0, 1];
    let u = decode(&valid_with(&mp), &ebgp()).unwrap();
    assert!(u.discarded.is_empty() && u.treat_as_withdraw.is_none());
    assert!(u.mp_reach().is_none());
}

#[test]
fn length_fields_that_overrun_the_message_reset() {
    // Withdrawn Routes Length past the end.
    let r = UpdateMsg::decode(&[0, 9, 24, 10], &ebgp());
    assert_reset(r, update_sub::MALFORMED_ATTRIBUTE_LIST, &[]);
    // Total Path Attribute Length past the end.
    let r = UpdateMsg::decode(&[0, 0, 0, 40, 0x40, 1, 1, 0], &ebgp());
    assert_reset(r, update_sub::MALFORMED_ATTRIBUTE_LIST, &[]);
}

#[test]
fn bad_nlri_fields_reset_with_invalid_network_field() {
    let mut b = body(&valid_with(&[]));
    b.extend_from_slice(&[33, 1, 2, 3, 4, 5]);
    assert_reset(UpdateMsg::decode(&b, &ebgp()), update_sub::INVALID_NETWORK_FIELD, &[]);
    let mut b = body(&valid_with(&[]));
    b.extend_from_slice(&[24, 10]);
    assert_reset(UpdateMsg::decode(&b, &ebgp()), update_sub::INVALID_NETWORK_FIELD, &[]);
}

#[test]
fn header_errors() {
    let mut m = vec![0xff; 16];
    m.extend_from_slice(&[0, 19, 4]);
    assert_eq!(Message::decode(&m, &DecodeCtx::default()), Ok(Message::Keepalive));
    let mut bad = m.clone();
    bad[3] = 0;
    let n = Message::decode(&bad, &DecodeCtx::default()).unwrap_err().notification().unwrap();
    assert_eq!((n.code, n.subcode), (1, 1));
    let mut bad = m.clone();
    bad[18] = 9;
    let n = Message::decode(&bad, &DecodeCtx::default()).unwrap_err().notification().unwrap();
    assert_eq!((n.code, n.subcode, &n.data[..]), (1, 3, &[9][..]));
    // KEEPALIVE with a body.
    let mut bad = m.clone();
    bad[17] = 20;
    bad.push(0);
    let n = Message::decode(&bad, &DecodeCtx::default()).unwrap_err().notification().unwrap();
    assert_eq!((n.code, n.subcode, &n.data[..]), (1, 2, &[0, 20][..]));
    // Length below 19 and above 4096.
    for len in [18u16, 4097] {
        let mut h = vec![0xff; 16];
        h.extend_from_slice(&len.to_be_bytes());
        h.push(4);
        let e = bgpd::packet::frame_len(&h).unwrap_err();
        assert_eq!(e, DecodeError::BadMessageLength(len));
    }
}

#[test]
fn open_errors() {
    use bgpd::packet::OpenMsg;
    let ok = [4, 0xfd, 0xe9, 0, 90, 10, 0, 0, 1, 0];
    assert!(OpenMsg::decode(&ok).is_ok());
    let n = |b: &[u8]| OpenMsg::decode(b).unwrap_err().notification().unwrap();
    let v3 = n(&[3, 0xfd, 0xe9, 0, 90, 10, 0, 0, 1, 0]);
    assert_eq!((v3.code, v3.subcode, &v3.data[..]), (2, 1, &[0, 4][..]));
    assert_eq!(n(&[4, 0xfd, 0xe9, 0, 2, 10, 0, 0, 1, 0]).subcode, 6);
    assert_eq!(n(&[4, 0xfd, 0xe9, 0, 90, 0, 0, 0, 0, 0]).subcode, 3);
    assert_eq!(n(&[4, 0xfd, 0xe9, 0, 90, 10, 0, 0, 1, 3, 1, 1, 0]).subcode, 4);
    // Optional parameters run past the message.
    assert_eq!(n(&[4, 0xfd, 0xe9, 0, 90, 10, 0, 0, 1, 9, 2, 1]).subcode, 0);
    // A 4-octet AS capability of 3 octets.
    let bad_cap = n(&[4, 0xfd, 0xe9, 0, 90, 10, 0, 0, 1, 7, 2, 5, 65, 3, 0, 0, 1]);
    assert_eq!((bad_cap.subcode, &bad_cap.data[..]), (0, &[65, 3, 0, 0, 1][..]));
}

#[test]
fn route_refresh_length_errors() {
    // BoRR with a trailing octet: ROUTE-REFRESH Message Error with the message.
    let mut m = vec![0xff; 16];
    m.extend_from_slice(&[0, 24, 5, 0, 1, 1, 1, 9]);
    let n = Message::decode(&m, &DecodeCtx::default()).unwrap_err().notification().unwrap();
    assert_eq!((n.code, n.subcode, &n.data[..]), (7, 1, &m[..]));
    // A plain request (subtype 0) of the wrong length: Bad Message Length.
    m[21] = 0;
    let n = Message::decode(&m, &DecodeCtx::default()).unwrap_err().notification().unwrap();
    assert_eq!((n.code, n.subcode, &n.data[..]), (1, 2, &[0, 24][..]));
}

#[test]
fn overrunning_mp_attribute_resets() {
    // MP_UNREACH_NLRI claiming 40 octets with 3 left: its NLRI cannot be
    // located, so treat-as-withdraw would leave routes behind.
    let r = decode(&valid_with(&[0x80, 15, 40, 0, 2, 1]), &ebgp());
    let e = r.unwrap_err();
    assert_eq!(e.notification().unwrap().subcode, update_sub::OPTIONAL_ATTRIBUTE_ERROR);
}

#[test]
fn next_hop_errors_without_ipv4_nlri_are_discarded() {
    // A broken NEXT_HOP next to IPv6 NLRI in MP_REACH_NLRI: NEXT_HOP is
    // ignored (RFC 4760 §3) and the IPv6 route stays.
    let mut mp = vec![0x80, 14, 24, 0, 2, 1, 16];
    mp.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    mp.extend_from_slice(&[0, 16, 0xfd, 0]);
    let attrs = [ORIGIN_IGP, AS_PATH_65001, &[0x40, 3, 4, 0, 0, 0, 0], &mp].concat();
    let mut b = vec![0, 0];
    b.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    b.extend_from_slice(&attrs);
    let u = UpdateMsg::decode(&b, &ebgp()).unwrap();
    assert!(u.treat_as_withdraw.is_none());
    assert_eq!(u.discarded[0].type_code, attr::NEXT_HOP);
    assert_eq!(u.announcements().len(), 1);
}

#[test]
fn unusable_mp_next_hop_withdraws() {
    let mut mp = vec![0x80, 14, 24, 0, 2, 1, 16];
    mp.extend_from_slice(&[0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]); // multicast
    mp.extend_from_slice(&[0, 16, 0xfd, 0]);
    let attrs = [ORIGIN_IGP, AS_PATH_65001, &mp].concat();
    let mut b = vec![0, 0];
    b.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    b.extend_from_slice(&attrs);
    let u = UpdateMsg::decode(&b, &ebgp()).unwrap();
    assert_eq!(u.treat_as_withdraw.unwrap().kind, AttrErrorKind::InvalidNextHop);
}

#[test]
fn add_path_with_a_bad_mode_is_ignored_not_fatal() {
    use bgpd::packet::{Capability, OpenMsg};
    // ADD-PATH (69) tuple with Send/Receive 7.
    let o = OpenMsg::decode(&[4, 0xfd, 0xe9, 0, 90, 10, 0, 0, 1, 8, 2, 6, 69, 4, 0, 1, 1, 7]).unwrap();
    assert!(matches!(o.capabilities().next(), Some(Capability::Unknown { code: 69, .. })));
}

#[test]
fn malformed_notification_gets_no_reply() {
    let mut m = vec![0xff; 16];
    m.extend_from_slice(&[0, 20, 3, 6]);
    // Length 20 is below the 21 minimum: a header error, answered.
    assert!(Message::decode(&m, &DecodeCtx::default()).unwrap_err().notification().is_some());
    assert_eq!(DecodeError::MalformedNotification.notification(), None);
}

#[test]
fn as4_path_and_as4_aggregator_from_a_two_octet_peer() {
    // AS_PATH 65001 AS_TRANS (2-octet), AS4_PATH 4200000001.
    let as_path = [0x40, 2, 6, 2, 2, 0xfd, 0xe9, 0x5b, 0xa0];
    let as4_path = [0xc0, 17, 6, 2, 1, 0xfa, 0x56, 0xea, 0x01];
    let ctx = DecodeCtx::default();
    let u = decode(&[ORIGIN_IGP, &as_path, NEXT_HOP, &as4_path].concat(), &ctx).unwrap();
    assert_eq!(u.effective_as_path(false).unwrap().flat(), vec![65001, 4_200_000_001]);
    // AGGREGATOR AS_TRANS with AS4_AGGREGATOR: the latter is the aggregator.
    let agg = [0xc0, 7, 6, 0x5b, 0xa0, 10, 0, 0, 9];
    let as4_agg = [0xc0, 18, 8, 0xfa, 0x56, 0xea, 0x01, 10, 0, 0, 9];
    let u = decode(&[ORIGIN_IGP, &as_path, NEXT_HOP, &as4_path, &agg, &as4_agg].concat(), &ctx).unwrap();
    assert_eq!(u.effective_aggregator(false).unwrap().asn, 4_200_000_001);
    assert_eq!(u.effective_as_path(false).unwrap().flat(), vec![65001, 4_200_000_001]);
    // AGGREGATOR with a real 2-octet AS: AS4_PATH and AS4_AGGREGATOR ignored.
    let agg = [0xc0, 7, 6, 0xfd, 0xe9, 10, 0, 0, 9];
    let u = decode(&[ORIGIN_IGP, &as_path, NEXT_HOP, &as4_path, &agg, &as4_agg].concat(), &ctx).unwrap();
    assert_eq!(u.effective_aggregator(false).unwrap().asn, 65001);
    assert_eq!(u.effective_as_path(false).unwrap().flat(), vec![65001, 23456]);
    // A 4-octet session ignores AS4_PATH.
    let ctx4 = DecodeCtx { four_octet_as: true, ..DecodeCtx::default() };
    let as_path4 = [0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xe9];
    let u = decode(&[ORIGIN_IGP, &as_path4, NEXT_HOP, &as4_path].concat(), &ctx4).unwrap();
    assert_eq!(u.effective_as_path(true).unwrap().flat(), vec![65001]);
}

#[test]
fn mp_reach_nlri_is_encoded_first() {
    // RFC 7606 §5.1: MP_REACH_NLRI / MP_UNREACH_NLRI go before every other
    // attribute, so that a receiver that finds an error further on still
    // knows which routes to withdraw.
    use bgpd::packet::{AsPath, EncodeCtx, Family, NextHop, Nlri, Origin, PathAttr};
    let ctx = EncodeCtx { four_octet_as: true, ..EncodeCtx::default() };
    let attrs = [
        PathAttr::new(bgpd::packet::AttrValue::Origin(Origin::Igp)),
        PathAttr::new(bgpd::packet::AttrValue::AsPath(AsPath::sequence(vec![65001]))),
    ];
    let nh = NextHop::V6 { global: "fd00::1".parse().unwrap(), link_local: None };
    let nlri = [Nlri::new("fd00:1::/32".parse().unwrap())];
    for u in UpdateMsg::pack(&attrs, Family::Ipv6Unicast, Some(nh), &nlri, &ctx) {
        let wire = Message::Update(u).encode(&ctx);
        // Header, Withdrawn Routes Length 0, Total Path Attribute Length,
        // then the first attribute's flags and type.
        assert_eq!(wire[19..21], [0, 0]);
        assert_eq!(wire[24], attr::MP_REACH_NLRI, "{wire:02x?}");
    }
    let eor = Message::Update(UpdateMsg::end_of_rib_marker(Family::Ipv6Unicast)).encode(&ctx);
    assert_eq!(eor[24], attr::MP_UNREACH_NLRI);
}
