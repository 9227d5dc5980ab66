//! Capabilities Advertisement (RFC 5492) and the capabilities merle speaks.
//!
//! ```text
//! +------------------------------+
//! | Capability Code (1 octet)    |
//! +------------------------------+
//! | Capability Length (1 octet)  |
//! +------------------------------+
//! | Capability Value (variable)  |
//! +------------------------------+
//! ```

use bytes::{BufMut, Bytes, BytesMut};
use nom::bytes::complete::take;
use nom::number::complete::{be_u16, be_u32, be_u8};
use nom::IResult;

use super::afi::AfiSafi;
use super::error::DecodeError;

pub const CAP_MULTIPROTOCOL: u8 = 1;
pub const CAP_ROUTE_REFRESH: u8 = 2;
pub const CAP_EXTENDED_NEXT_HOP: u8 = 5;
pub const CAP_GRACEFUL_RESTART: u8 = 64;
pub const CAP_FOUR_OCTET_AS: u8 = 65;
pub const CAP_ADD_PATH: u8 = 69;
pub const CAP_ENHANCED_ROUTE_REFRESH: u8 = 70;

/// RFC 7911 §4 Send/Receive field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AddPathMode {
    Receive = 1,
    Send = 2,
    Both = 3,
}

impl AddPathMode {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Receive),
            2 => Some(Self::Send),
            3 => Some(Self::Both),
            _ => None,
        }
    }
    pub fn can_send(self) -> bool {
        matches!(self, Self::Send | Self::Both)
    }
    pub fn can_receive(self) -> bool {
        matches!(self, Self::Receive | Self::Both)
    }
}

/// One ADD-PATH tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddPathFamily {
    pub afi_safi: AfiSafi,
    pub mode: AddPathMode,
}

/// One RFC 8950 tuple: NLRI of `nlri` may carry a next hop of `next_hop_afi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExtendedNextHop {
    pub nlri: AfiSafi,
    pub next_hop_afi: u16,
}

/// The per-family part of the graceful restart capability (RFC 4724 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GracefulRestartFamily {
    pub afi_safi: AfiSafi,
    /// The F bit: forwarding state was preserved across the restart.
    pub forwarding_preserved: bool,
}

/// The graceful restart capability (RFC 4724 §3, RFC 8538 N bit).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GracefulRestart {
    /// The R bit: the sender has restarted.
    pub restart_state: bool,
    /// The N bit: the sender supports RFC 8538 notification handling.
    pub notification: bool,
    /// Restart Time in seconds, 12 bits.
    pub restart_time: u16,
    pub families: Vec<GracefulRestartFamily>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Capability {
    Multiprotocol(AfiSafi),
    RouteRefresh,
    EnhancedRouteRefresh,
    ExtendedNextHop(Vec<ExtendedNextHop>),
    GracefulRestart(GracefulRestart),
    FourOctetAs(u32),
    AddPath(Vec<AddPathFamily>),
    /// A capability merle does not interpret, kept byte for byte.
    Unknown {
        code: u8,
        value: Bytes,
    },
}

fn malformed(code: u8, reason: &'static str, whole: &[u8]) -> DecodeError {
    DecodeError::MalformedCapability { code, reason, data: Bytes::copy_from_slice(whole) }
}

fn afi_safi(i: &[u8]) -> IResult<&[u8], AfiSafi> {
    let (i, afi) = be_u16(i)?;
    let (i, safi) = be_u8(i)?;
    Ok((i, AfiSafi::new(afi, safi)))
}

fn exact<T>(r: IResult<&[u8], T>) -> Option<T> {
    match r {
        Ok(([], v)) => Some(v),
        _ => None,
    }
}

fn tuples<'a, T>(mut i: &'a [u8], size: usize, f: impl Fn(&'a [u8]) -> IResult<&'a [u8], T>) -> Option<Vec<T>> {
    if i.len() % size != 0 {
        return None;
    }
    let mut v = Vec::with_capacity(i.len() / size);
    while !i.is_empty() {
        let (rest, t) = f(i).ok()?;
        i = rest;
        v.push(t);
    }
    Some(v)
}

impl Capability {
    /// Parses one capability TLV. `whole` is the TLV, used as error data.
    fn decode_value(code: u8, v: &[u8], whole: &[u8]) -> Result<Self, DecodeError> {
        let bad = |reason| malformed(code, reason, whole);
        Ok(match code {
            CAP_MULTIPROTOCOL => {
                let r = exact((|i| {
                    let (i, afi) = be_u16(i)?;
                    let (i, _reserved) = be_u8(i)?;
                    let (i, safi) = be_u8(i)?;
                    Ok((i, AfiSafi::new(afi, safi)))
                })(v));
                Capability::Multiprotocol(r.ok_or_else(|| bad("multiprotocol capability must be 4 octets"))?)
            }
            CAP_ROUTE_REFRESH | CAP_ENHANCED_ROUTE_REFRESH => {
                if !v.is_empty() {
                    return Err(bad("route refresh capability must be empty"));
                }
                if code == CAP_ROUTE_REFRESH {
                    Capability::RouteRefresh
                } else {
                    Capability::EnhancedRouteRefresh
                }
            }
            CAP_EXTENDED_NEXT_HOP => Capability::ExtendedNextHop(
                tuples(v, 6, |i| {
                    let (i, afi) = be_u16(i)?;
                    let (i, safi) = be_u16(i)?;
                    let (i, nh) = be_u16(i)?;
                    // SAFI is 16 bits in this capability; only 8 are meaningful.
                    Ok((i, ExtendedNextHop { nlri: AfiSafi::new(afi, safi as u8), next_hop_afi: nh }))
                })
                .ok_or_else(|| bad("extended next hop capability length is not a multiple of 6"))?,
            ),
            CAP_GRACEFUL_RESTART => {
                if v.len() < 2 || (v.len() - 2) % 4 != 0 {
                    return Err(bad("graceful restart capability length must be 2 + 4n"));
                }
                let hdr = u16::from_be_bytes([v[0], v[1]]);
                let families = tuples(&v[2..], 4, |i| {
                    let (i, a) = afi_safi(i)?;
                    let (i, flags) = be_u8(i)?;
                    Ok((i, GracefulRestartFamily { afi_safi: a, forwarding_preserved: flags & 0x80 != 0 }))
                })
                .ok_or_else(|| bad("graceful restart capability is truncated"))?;
                Capability::GracefulRestart(GracefulRestart {
                    restart_state: hdr & 0x8000 != 0,
                    notification: hdr & 0x4000 != 0,
                    restart_time: hdr & 0x0fff,
                    families,
                })
            }
            CAP_FOUR_OCTET_AS => {
                Capability::FourOctetAs(exact(be_u32(v)).ok_or_else(|| bad("4-octet AS capability must be 4 octets"))?)
            }
            // RFC 7911 §4: a Send/Receive value other than 1-3 makes the
            // capability "not understood": keep it as unknown, do not fail.
            CAP_ADD_PATH => {
                let parsed = tuples(v, 4, |i| {
                    let (i, a) = afi_safi(i)?;
                    let (i, m) = be_u8(i)?;
                    match AddPathMode::from_u8(m) {
                        Some(mode) => Ok((i, AddPathFamily { afi_safi: a, mode })),
                        None => Err(nom::Err::Error(nom::error::Error::new(i, nom::error::ErrorKind::Verify))),
                    }
                });
                match parsed {
                    Some(t) => Capability::AddPath(t),
                    None if v.len() % 4 == 0 => Capability::Unknown { code, value: Bytes::copy_from_slice(v) },
                    None => return Err(bad("ADD-PATH capability length is not a multiple of 4")),
                }
            }
            _ => Capability::Unknown { code, value: Bytes::copy_from_slice(v) },
        })
    }

    /// Parses the capabilities inside one Capabilities optional parameter.
    pub fn decode_list(mut i: &[u8]) -> Result<Vec<Capability>, DecodeError> {
        let mut caps = Vec::new();
        while !i.is_empty() {
            let whole = i;
            let r: IResult<&[u8], (u8, &[u8])> = (|i| {
                let (i, code) = be_u8(i)?;
                let (i, len) = be_u8(i)?;
                let (i, v) = take(len)(i)?;
                Ok((i, (code, v)))
            })(i);
            let (rest, (code, v)) = r.map_err(|_| malformed(whole[0], "capability runs past its parameter", whole))?;
            let tlv = &whole[..whole.len() - rest.len()];
            caps.push(Self::decode_value(code, v, tlv)?);
            i = rest;
        }
        Ok(caps)
    }

    pub fn code(&self) -> u8 {
        match self {
            Self::Multiprotocol(_) => CAP_MULTIPROTOCOL,
            Self::RouteRefresh => CAP_ROUTE_REFRESH,
            Self::EnhancedRouteRefresh => CAP_ENHANCED_ROUTE_REFRESH,
            Self::ExtendedNextHop(_) => CAP_EXTENDED_NEXT_HOP,
            Self::GracefulRestart(_) => CAP_GRACEFUL_RESTART,
            Self::FourOctetAs(_) => CAP_FOUR_OCTET_AS,
            Self::AddPath(_) => CAP_ADD_PATH,
            Self::Unknown { code, .. } => *code,
        }
    }

    /// Appends the TLV.
    pub fn encode(&self, buf: &mut BytesMut) {
        buf.put_u8(self.code());
        let len_at = buf.len();
        buf.put_u8(0);
        match self {
            Self::Multiprotocol(a) => {
                buf.put_u16(a.afi);
                buf.put_u8(0);
                buf.put_u8(a.safi);
            }
            Self::RouteRefresh | Self::EnhancedRouteRefresh => {}
            Self::ExtendedNextHop(v) => {
                for t in v {
                    buf.put_u16(t.nlri.afi);
                    buf.put_u16(u16::from(t.nlri.safi));
                    buf.put_u16(t.next_hop_afi);
                }
            }
            Self::GracefulRestart(gr) => {
                let mut hdr = gr.restart_time & 0x0fff;
                if gr.restart_state {
                    hdr |= 0x8000;
                }
                if gr.notification {
                    hdr |= 0x4000;
                }
                buf.put_u16(hdr);
                for f in &gr.families {
                    buf.put_u16(f.afi_safi.afi);
                    buf.put_u8(f.afi_safi.safi);
                    buf.put_u8(if f.forwarding_preserved { 0x80 } else { 0 });
                }
            }
            Self::FourOctetAs(asn) => buf.put_u32(*asn),
            Self::AddPath(v) => {
                for t in v {
                    buf.put_u16(t.afi_safi.afi);
                    buf.put_u8(t.afi_safi.safi);
                    buf.put_u8(t.mode as u8);
                }
            }
            Self::Unknown { value, .. } => buf.put_slice(value),
        }
        // A capability value is at most 255 octets; the builders in this
        // crate never get near that, and the decoder cannot produce more.
        let len = buf.len() - len_at - 1;
        buf[len_at] = u8::try_from(len).unwrap_or(u8::MAX);
    }
}
