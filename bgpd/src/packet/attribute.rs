//! Path attributes (RFC 4271 §4.3 and §5) and their RFC 7606 error handling.
//!
//! ```text
//!  0                   1
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Attr. Flags  |Attr. Type Code|   then 1 or 2 octets of length
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+   (2 when Extended Length is set)
//!
//! Flags: O(ptional) T(ransitive) P(artial) E(xtended length) 0 0 0 0
//! ```
//!
//! The attribute table below is the one place that knows, per type code, the
//! expected Optional/Transitive flags, how to decode and encode the value,
//! and which RFC 7606 action a malformed value calls for.

use std::net::Ipv4Addr;

use bytes::{BufMut, Bytes, BytesMut};

use super::aspath::{AsPath, AsPathError};
use super::community::{Community, ExtCommunity, LargeCommunity};
use super::error::{AttrAction, AttrErrorKind};
use super::mp::{decode_reach, decode_unreach, MpOther, MpReach, MpUnreach};
use super::{DecodeCtx, EncodeCtx};

pub const FLAG_OPTIONAL: u8 = 0x80;
pub const FLAG_TRANSITIVE: u8 = 0x40;
pub const FLAG_PARTIAL: u8 = 0x20;
pub const FLAG_EXTENDED_LENGTH: u8 = 0x10;

pub const ORIGIN: u8 = 1;
pub const AS_PATH: u8 = 2;
pub const NEXT_HOP: u8 = 3;
pub const MULTI_EXIT_DISC: u8 = 4;
pub const LOCAL_PREF: u8 = 5;
pub const ATOMIC_AGGREGATE: u8 = 6;
pub const AGGREGATOR: u8 = 7;
pub const COMMUNITIES: u8 = 8;
pub const ORIGINATOR_ID: u8 = 9;
pub const CLUSTER_LIST: u8 = 10;
pub const MP_REACH_NLRI: u8 = 14;
pub const MP_UNREACH_NLRI: u8 = 15;
pub const EXTENDED_COMMUNITIES: u8 = 16;
pub const AS4_PATH: u8 = 17;
pub const AS4_AGGREGATOR: u8 = 18;
pub const LARGE_COMMUNITIES: u8 = 32;

/// ORIGIN values (RFC 4271 §4.3), ordered as the decision process prefers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Igp = 0,
    Egp = 1,
    Incomplete = 2,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Igp => "igp",
            Self::Egp => "egp",
            Self::Incomplete => "incomplete",
        }
    }
}

/// AGGREGATOR / AS4_AGGREGATOR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Aggregator {
    pub asn: u32,
    pub address: Ipv4Addr,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AttrValue {
    Origin(Origin),
    AsPath(AsPath),
    NextHop(Ipv4Addr),
    MultiExitDisc(u32),
    LocalPref(u32),
    AtomicAggregate,
    Aggregator(Aggregator),
    Communities(Vec<Community>),
    OriginatorId(Ipv4Addr),
    ClusterList(Vec<Ipv4Addr>),
    MpReachNlri(MpReach),
    MpUnreachNlri(MpUnreach),
    /// MP_REACH_NLRI of a family merle does not parse.
    MpReachOther(MpOther),
    /// MP_UNREACH_NLRI of a family merle does not parse.
    MpUnreachOther(MpOther),
    ExtendedCommunities(Vec<ExtCommunity>),
    As4Path(AsPath),
    As4Aggregator(Aggregator),
    LargeCommunities(Vec<LargeCommunity>),
    /// An attribute merle does not interpret, kept byte for byte.
    Unknown {
        type_code: u8,
        value: Bytes,
    },
}

/// One path attribute with its flags as received (or as defaulted).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PathAttr {
    pub flags: u8,
    pub value: AttrValue,
}

/// The per-type facts of the attribute table.
struct TypeInfo {
    /// Expected value of the Optional and Transitive bits.
    flags: u8,
    /// RFC 7606 action for a malformed value of this type.
    on_malformed: fn(ebgp: bool) -> AttrAction,
}

fn withdraw(_: bool) -> AttrAction {
    AttrAction::TreatAsWithdraw
}
fn discard(_: bool) -> AttrAction {
    AttrAction::AttributeDiscard
}
fn reset(_: bool) -> AttrAction {
    AttrAction::SessionReset
}
/// RFC 7606 §7.5: a malformed LOCAL_PREF from an external peer is discarded
/// (it is ignored there anyway); from an internal peer it withdraws.
fn local_pref_action(ebgp: bool) -> AttrAction {
    if ebgp {
        AttrAction::AttributeDiscard
    } else {
        AttrAction::TreatAsWithdraw
    }
}

const WELL_KNOWN: u8 = FLAG_TRANSITIVE;
const OPT_TRANS: u8 = FLAG_OPTIONAL | FLAG_TRANSITIVE;
const OPT_NON_TRANS: u8 = FLAG_OPTIONAL;

fn type_info(code: u8) -> Option<TypeInfo> {
    let (flags, on_malformed): (u8, fn(bool) -> AttrAction) = match code {
        ORIGIN | AS_PATH | NEXT_HOP => (WELL_KNOWN, withdraw),
        LOCAL_PREF => (WELL_KNOWN, local_pref_action),
        ATOMIC_AGGREGATE => (WELL_KNOWN, discard),
        MULTI_EXIT_DISC | ORIGINATOR_ID | CLUSTER_LIST => (OPT_NON_TRANS, withdraw),
        MP_REACH_NLRI | MP_UNREACH_NLRI => (OPT_NON_TRANS, reset),
        AGGREGATOR | AS4_PATH | AS4_AGGREGATOR => (OPT_TRANS, discard),
        COMMUNITIES | EXTENDED_COMMUNITIES | LARGE_COMMUNITIES => (OPT_TRANS, withdraw),
        _ => return None,
    };
    Some(TypeInfo { flags, on_malformed })
}

/// Whether `code` is an attribute merle interprets.
pub fn is_known(code: u8) -> bool {
    type_info(code).is_some()
}

/// The RFC 7606 action for a malformed attribute of this type.
pub fn malformed_action(code: u8, ebgp: bool) -> AttrAction {
    type_info(code).map_or(AttrAction::AttributeDiscard, |t| (t.on_malformed)(ebgp))
}

fn u32_of(v: &[u8]) -> Result<u32, AttrErrorKind> {
    <[u8; 4]>::try_from(v).map(u32::from_be_bytes).map_err(|_| AttrErrorKind::LengthError)
}

/// A non-empty list of fixed-size items (RFC 7606 §7: "a non-zero multiple").
fn list_of<const N: usize, T>(v: &[u8], f: impl Fn([u8; N]) -> T) -> Result<Vec<T>, AttrErrorKind> {
    if v.is_empty() || v.len() % N != 0 {
        return Err(AttrErrorKind::LengthError);
    }
    Ok(v.chunks_exact(N).filter_map(|c| <[u8; N]>::try_from(c).ok()).map(f).collect())
}

fn aggregator(v: &[u8], four_octet: bool) -> Result<Aggregator, AttrErrorKind> {
    let (asn, addr) = match (four_octet, v.len()) {
        (false, 6) => (u32::from(u16::from_be_bytes([v[0], v[1]])), &v[2..]),
        (true, 8) => (u32::from_be_bytes([v[0], v[1], v[2], v[3]]), &v[4..]),
        _ => return Err(AttrErrorKind::LengthError),
    };
    if asn == 0 {
        // RFC 7607 §2: AGGREGATOR with AS 0 is discarded.
        return Err(AttrErrorKind::OptionalAttributeError);
    }
    Ok(Aggregator { asn, address: Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]) })
}

fn as_path_err(_: AsPathError) -> AttrErrorKind {
    AttrErrorKind::MalformedAsPath
}

/// RFC 4271 §6.3: the NEXT_HOP must be a valid unicast host address.
pub(super) fn valid_next_hop(a: Ipv4Addr) -> bool {
    !(a.is_unspecified() || a.is_loopback() || a.is_multicast() || a.is_broadcast() || a.octets()[0] >= 240)
}

/// Decodes the value of a known attribute. Errors say what was wrong; the
/// caller turns them into an [`super::AttrError`] with the table's action.
pub(super) fn decode_value(code: u8, v: &[u8], ctx: &DecodeCtx) -> Result<AttrValue, AttrErrorKind> {
    use AttrValue as A;
    Ok(match code {
        ORIGIN => match v {
            [0] => A::Origin(Origin::Igp),
            [1] => A::Origin(Origin::Egp),
            [2] => A::Origin(Origin::Incomplete),
            [_] => return Err(AttrErrorKind::InvalidOrigin),
            _ => return Err(AttrErrorKind::LengthError),
        },
        AS_PATH => {
            let p = AsPath::decode(v, ctx.four_octet_as).map_err(as_path_err)?;
            // RFC 5065 / RFC 7606 §7.2: confederation segments from an
            // external peer are malformed (merle has no confederations).
            if ctx.ebgp && p.has_confed() {
                return Err(AttrErrorKind::MalformedAsPath);
            }
            // RFC 4271 §6.3: the leftmost AS must be the external peer's.
            if let Some(peer_as) = ctx.enforce_first_as {
                if p.neighbour_as() != Some(peer_as) {
                    return Err(AttrErrorKind::MalformedAsPath);
                }
            }
            A::AsPath(p)
        }
        NEXT_HOP => {
            let a = Ipv4Addr::from(u32_of(v)?);
            if !valid_next_hop(a) {
                return Err(AttrErrorKind::InvalidNextHop);
            }
            A::NextHop(a)
        }
        MULTI_EXIT_DISC => A::MultiExitDisc(u32_of(v)?),
        LOCAL_PREF => A::LocalPref(u32_of(v)?),
        ATOMIC_AGGREGATE => {
            if !v.is_empty() {
                return Err(AttrErrorKind::LengthError);
            }
            A::AtomicAggregate
        }
        AGGREGATOR => A::Aggregator(aggregator(v, ctx.four_octet_as)?),
        COMMUNITIES => A::Communities(list_of::<4, _>(v, |b| Community(u32::from_be_bytes(b)))?),
        ORIGINATOR_ID => A::OriginatorId(Ipv4Addr::from(u32_of(v)?)),
        CLUSTER_LIST => A::ClusterList(list_of::<4, _>(v, Ipv4Addr::from)?),
        MP_REACH_NLRI => match decode_reach(v, ctx)? {
            Ok(r) => A::MpReachNlri(r),
            Err(o) => A::MpReachOther(o),
        },
        MP_UNREACH_NLRI => match decode_unreach(v, ctx)? {
            Ok(u) => A::MpUnreachNlri(u),
            Err(o) => A::MpUnreachOther(o),
        },
        EXTENDED_COMMUNITIES => A::ExtendedCommunities(list_of::<8, _>(v, ExtCommunity)?),
        AS4_PATH => {
            let p = AsPath::decode(v, true).map_err(as_path_err)?;
            // RFC 6793 §6: confederation segments in AS4_PATH are malformed.
            if p.has_confed() {
                return Err(AttrErrorKind::MalformedAsPath);
            }
            A::As4Path(p)
        }
        AS4_AGGREGATOR => A::As4Aggregator(aggregator(v, true)?),
        LARGE_COMMUNITIES => A::LargeCommunities(list_of::<12, _>(v, |b| LargeCommunity {
            global_admin: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            local_data1: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            local_data2: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        })?),
        other => A::Unknown { type_code: other, value: Bytes::copy_from_slice(v) },
    })
}

/// Checks the Optional and Transitive bits against the table (RFC 4271
/// §6.3, RFC 7606 §3 c). Unknown types have nothing to check.
pub(super) fn flags_ok(code: u8, flags: u8) -> bool {
    type_info(code).is_none_or(|t| flags & (FLAG_OPTIONAL | FLAG_TRANSITIVE) == t.flags)
}

impl AttrValue {
    pub fn type_code(&self) -> u8 {
        use AttrValue as A;
        match self {
            A::Origin(_) => ORIGIN,
            A::AsPath(_) => AS_PATH,
            A::NextHop(_) => NEXT_HOP,
            A::MultiExitDisc(_) => MULTI_EXIT_DISC,
            A::LocalPref(_) => LOCAL_PREF,
            A::AtomicAggregate => ATOMIC_AGGREGATE,
            A::Aggregator(_) => AGGREGATOR,
            A::Communities(_) => COMMUNITIES,
            A::OriginatorId(_) => ORIGINATOR_ID,
            A::ClusterList(_) => CLUSTER_LIST,
            A::MpReachNlri(_) | A::MpReachOther(_) => MP_REACH_NLRI,
            A::MpUnreachNlri(_) | A::MpUnreachOther(_) => MP_UNREACH_NLRI,
            A::ExtendedCommunities(_) => EXTENDED_COMMUNITIES,
            A::As4Path(_) => AS4_PATH,
            A::As4Aggregator(_) => AS4_AGGREGATOR,
            A::LargeCommunities(_) => LARGE_COMMUNITIES,
            A::Unknown { type_code, .. } => *type_code,
        }
    }

    fn encode_value(&self, ctx: &EncodeCtx, buf: &mut BytesMut) {
        use AttrValue as A;
        match self {
            A::Origin(o) => buf.put_u8(*o as u8),
            A::AsPath(p) => p.encode(ctx.four_octet_as, buf),
            A::NextHop(a) | A::OriginatorId(a) => buf.put_slice(&a.octets()),
            A::MultiExitDisc(v) | A::LocalPref(v) => buf.put_u32(*v),
            A::AtomicAggregate => {}
            A::Aggregator(a) => {
                if ctx.four_octet_as {
                    buf.put_u32(a.asn);
                } else {
                    buf.put_u16(u16::try_from(a.asn).unwrap_or(super::open::AS_TRANS));
                }
                buf.put_slice(&a.address.octets());
            }
            A::As4Aggregator(a) => {
                buf.put_u32(a.asn);
                buf.put_slice(&a.address.octets());
            }
            A::Communities(c) => c.iter().for_each(|c| buf.put_u32(c.0)),
            A::ClusterList(l) => l.iter().for_each(|a| buf.put_slice(&a.octets())),
            A::MpReachNlri(r) => r.encode(ctx, buf),
            A::MpUnreachNlri(u) => u.encode(ctx, buf),
            A::MpReachOther(o) | A::MpUnreachOther(o) => o.encode(buf),
            A::ExtendedCommunities(c) => c.iter().for_each(|c| buf.put_slice(&c.0)),
            A::As4Path(p) => p.encode(true, buf),
            A::LargeCommunities(l) => l.iter().for_each(|c| {
                buf.put_u32(c.global_admin);
                buf.put_u32(c.local_data1);
                buf.put_u32(c.local_data2);
            }),
            A::Unknown { value, .. } => buf.put_slice(value),
        }
    }
}

impl PathAttr {
    /// An attribute with the flags its type calls for.
    pub fn new(value: AttrValue) -> Self {
        let flags = type_info(value.type_code()).map_or(OPT_TRANS, |t| t.flags);
        Self { flags, value }
    }

    pub fn type_code(&self) -> u8 {
        self.value.type_code()
    }

    pub fn is_optional(&self) -> bool {
        self.flags & FLAG_OPTIONAL != 0
    }
    pub fn is_transitive(&self) -> bool {
        self.flags & FLAG_TRANSITIVE != 0
    }
    pub fn is_partial(&self) -> bool {
        self.flags & FLAG_PARTIAL != 0
    }

    /// The attribute as it should be passed to another peer, or `None` when
    /// it must not be (RFC 4271 §5 and §9.1.4): an unrecognized optional
    /// transitive attribute is passed on with the Partial bit set, and an
    /// unrecognized optional non-transitive one is dropped.
    pub fn for_propagation(&self) -> Option<PathAttr> {
        match &self.value {
            AttrValue::Unknown { .. } if !self.is_transitive() => None,
            AttrValue::Unknown { .. } => Some(PathAttr { flags: self.flags | FLAG_PARTIAL, value: self.value.clone() }),
            _ => Some(self.clone()),
        }
    }

    /// Appends the attribute. The Extended Length bit is kept as received
    /// and set whenever the value needs it.
    pub fn encode(&self, ctx: &EncodeCtx, buf: &mut BytesMut) {
        let mut value = BytesMut::new();
        self.value.encode_value(ctx, &mut value);
        let mut flags = self.flags & 0xf0;
        if value.len() > 255 {
            flags |= FLAG_EXTENDED_LENGTH;
        }
        buf.put_u8(flags);
        buf.put_u8(self.type_code());
        if flags & FLAG_EXTENDED_LENGTH != 0 {
            buf.put_u16(u16::try_from(value.len()).unwrap_or(u16::MAX));
        } else {
            buf.put_u8(value.len() as u8);
        }
        buf.put_slice(&value);
    }
}
