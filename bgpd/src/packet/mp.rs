//! MP_REACH_NLRI and MP_UNREACH_NLRI (RFC 4760 §3–4), with IPv6 next hops
//! (RFC 2545) and IPv6 next hops for IPv4 NLRI (RFC 8950).
//!
//! ```text
//! MP_REACH_NLRI:                          MP_UNREACH_NLRI:
//! +---------------------------------+     +---------------------------------+
//! | AFI (2) | SAFI (1)              |     | AFI (2) | SAFI (1)              |
//! | Length of Next Hop (1)          |     | Withdrawn Routes (variable)     |
//! | Network Address of Next Hop     |     +---------------------------------+
//! | Reserved (1)                    |
//! | NLRI (variable)                 |
//! +---------------------------------+
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::{BufMut, Bytes, BytesMut};

use super::afi::{AfiSafi, Family, AFI_IPV4, AFI_IPV6};
use super::error::AttrErrorKind;
use super::nlri::{decode_nlri, Nlri};
use super::{DecodeCtx, EncodeCtx};

/// A next hop as carried in MP_REACH_NLRI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NextHop {
    V4(Ipv4Addr),
    /// A global address, optionally followed by a link-local one (RFC 2545 §3).
    V6 {
        global: Ipv6Addr,
        link_local: Option<Ipv6Addr>,
    },
}

impl NextHop {
    /// The address to route through: the global one for IPv6.
    pub fn addr(&self) -> IpAddr {
        match *self {
            Self::V4(a) => IpAddr::V4(a),
            Self::V6 { global, .. } => IpAddr::V6(global),
        }
    }

    fn decode(afi: u16, b: &[u8], ctx: &DecodeCtx) -> Option<Self> {
        let v6 = |b: &[u8]| -> Option<Ipv6Addr> { Some(Ipv6Addr::from(<[u8; 16]>::try_from(b).ok()?)) };
        match (afi, b.len()) {
            (AFI_IPV4, 4) => Some(Self::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
            (AFI_IPV6, 16) => Some(Self::V6 { global: v6(b)?, link_local: None }),
            (AFI_IPV6, 32) => Some(Self::V6 { global: v6(&b[..16])?, link_local: Some(v6(&b[16..])?) }),
            // RFC 8950: only when the extended next hop capability was
            // exchanged for IPv4 NLRI.
            (AFI_IPV4, 16) if ctx.extended_next_hop.contains(Family::Ipv4Unicast) => {
                Some(Self::V6 { global: v6(b)?, link_local: None })
            }
            (AFI_IPV4, 32) if ctx.extended_next_hop.contains(Family::Ipv4Unicast) => {
                Some(Self::V6 { global: v6(&b[..16])?, link_local: Some(v6(&b[16..])?) })
            }
            _ => None,
        }
    }

    fn encode(&self, buf: &mut BytesMut) {
        match self {
            Self::V4(a) => {
                buf.put_u8(4);
                buf.put_slice(&a.octets());
            }
            Self::V6 { global, link_local } => {
                buf.put_u8(if link_local.is_some() { 32 } else { 16 });
                buf.put_slice(&global.octets());
                if let Some(ll) = link_local {
                    buf.put_slice(&ll.octets());
                }
            }
        }
    }
}

/// MP_REACH_NLRI for a family merle parses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MpReach {
    pub family: Family,
    pub next_hop: NextHop,
    pub nlri: Vec<Nlri>,
}

/// MP_UNREACH_NLRI for a family merle parses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MpUnreach {
    pub family: Family,
    pub withdrawn: Vec<Nlri>,
}

/// MP attributes of other families, kept as bytes and otherwise ignored.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MpOther {
    pub afi_safi: AfiSafi,
    /// The attribute value after AFI and SAFI.
    pub rest: Bytes,
}

fn split_afi_safi(v: &[u8]) -> Result<(AfiSafi, &[u8]), AttrErrorKind> {
    match v {
        [a0, a1, safi, rest @ ..] => Ok((AfiSafi::new(u16::from_be_bytes([*a0, *a1]), *safi), rest)),
        _ => Err(AttrErrorKind::LengthError),
    }
}

pub(super) fn decode_reach(v: &[u8], ctx: &DecodeCtx) -> Result<Result<MpReach, MpOther>, AttrErrorKind> {
    let (afi_safi, rest) = split_afi_safi(v)?;
    let Some(family) = afi_safi.family() else {
        return Ok(Err(MpOther { afi_safi, rest: Bytes::copy_from_slice(rest) }));
    };
    let (&nh_len, rest) = rest.split_first().ok_or(AttrErrorKind::LengthError)?;
    let nh_len = usize::from(nh_len);
    // Next hop plus the reserved octet.
    if rest.len() < nh_len + 1 {
        return Err(AttrErrorKind::LengthError);
    }
    let next_hop = NextHop::decode(afi_safi.afi, &rest[..nh_len], ctx).ok_or(AttrErrorKind::InvalidNextHop)?;
    let nlri = decode_nlri(&rest[nh_len + 1..], family, ctx.add_path_rx.contains(family))
        .map_err(|_| AttrErrorKind::InvalidNetworkField)?;
    Ok(Ok(MpReach { family, next_hop, nlri }))
}

pub(super) fn decode_unreach(v: &[u8], ctx: &DecodeCtx) -> Result<Result<MpUnreach, MpOther>, AttrErrorKind> {
    let (afi_safi, rest) = split_afi_safi(v)?;
    let Some(family) = afi_safi.family() else {
        return Ok(Err(MpOther { afi_safi, rest: Bytes::copy_from_slice(rest) }));
    };
    let withdrawn =
        decode_nlri(rest, family, ctx.add_path_rx.contains(family)).map_err(|_| AttrErrorKind::InvalidNetworkField)?;
    Ok(Ok(MpUnreach { family, withdrawn }))
}

impl MpReach {
    pub(super) fn encode(&self, ctx: &EncodeCtx, buf: &mut BytesMut) {
        let a = self.family.afi_safi();
        buf.put_u16(a.afi);
        buf.put_u8(a.safi);
        self.next_hop.encode(buf);
        buf.put_u8(0);
        let ap = ctx.add_path_tx.contains(self.family);
        for n in &self.nlri {
            n.encode(ap, buf);
        }
    }
}

impl MpUnreach {
    pub(super) fn encode(&self, ctx: &EncodeCtx, buf: &mut BytesMut) {
        let a = self.family.afi_safi();
        buf.put_u16(a.afi);
        buf.put_u8(a.safi);
        let ap = ctx.add_path_tx.contains(self.family);
        for n in &self.withdrawn {
            n.encode(ap, buf);
        }
    }
}

impl MpOther {
    pub(super) fn encode(&self, buf: &mut BytesMut) {
        buf.put_u16(self.afi_safi.afi);
        buf.put_u8(self.afi_safi.safi);
        buf.put_slice(&self.rest);
    }
}
