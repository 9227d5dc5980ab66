//! The OPEN message (RFC 4271 §4.2) and its Capabilities optional
//! parameter (RFC 5492).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+
//! |    Version    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     My Autonomous System      |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           Hold Time           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                         BGP Identifier                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | Opt Parm Len  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |             Optional Parameters (variable)                    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use std::net::Ipv4Addr;

use bytes::{BufMut, BytesMut};
use nom::bytes::complete::take;
use nom::number::complete::{be_u16, be_u32, be_u8};
use nom::IResult;

use super::capability::Capability;
use super::error::DecodeError;

/// AS_TRANS (RFC 6793 §9): what a 4-octet AS shows to a 2-octet world.
pub const AS_TRANS: u16 = 23456;
/// Optional parameter type: Capabilities (RFC 5492).
pub const PARAM_CAPABILITIES: u8 = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenMsg {
    pub version: u8,
    /// My Autonomous System: the 2-octet AS, or AS_TRANS.
    pub my_as: u16,
    pub hold_time: u16,
    pub bgp_id: Ipv4Addr,
    /// One entry per Capabilities optional parameter, in wire order. Some
    /// speakers send all capabilities in one parameter, others one each.
    pub params: Vec<Vec<Capability>>,
}

impl OpenMsg {
    /// Builds an OPEN with all capabilities in one parameter, filling My AS
    /// with AS_TRANS when the AS does not fit in 16 bits.
    pub fn new(asn: u32, hold_time: u16, bgp_id: Ipv4Addr, capabilities: Vec<Capability>) -> Self {
        Self {
            version: 4,
            my_as: u16::try_from(asn).unwrap_or(AS_TRANS),
            hold_time,
            bgp_id,
            params: if capabilities.is_empty() { vec![] } else { vec![capabilities] },
        }
    }

    pub fn capabilities(&self) -> impl Iterator<Item = &Capability> {
        self.params.iter().flatten()
    }

    /// The sender's AS: the 4-octet AS capability if present (RFC 6793 §4.1),
    /// else My Autonomous System.
    pub fn asn(&self) -> u32 {
        self.capabilities()
            .find_map(|c| match c {
                Capability::FourOctetAs(a) => Some(*a),
                _ => None,
            })
            .unwrap_or(u32::from(self.my_as))
    }

    /// Decodes the body (after the 19-octet header).
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        type Fixed<'a> = (u8, u16, u16, u32, &'a [u8]);
        let fixed: IResult<&[u8], Fixed<'_>> = (|i| {
            let (i, version) = be_u8(i)?;
            let (i, my_as) = be_u16(i)?;
            let (i, hold) = be_u16(i)?;
            let (i, id) = be_u32(i)?;
            let (i, plen) = be_u8(i)?;
            let (i, params) = take(plen)(i)?;
            Ok((i, (version, my_as, hold, id, params)))
        })(body);
        let (rest, (version, my_as, hold_time, id, mut params)) =
            fixed.map_err(|_| DecodeError::MalformedOpen("optional parameters run past the message"))?;
        if version != 4 {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        if !rest.is_empty() {
            return Err(DecodeError::MalformedOpen("bytes after the optional parameters"));
        }
        // RFC 4271 §6.2: a Hold Time of one or two seconds MUST be rejected.
        if hold_time == 1 || hold_time == 2 {
            return Err(DecodeError::UnacceptableHoldTime(hold_time));
        }
        let bgp_id = Ipv4Addr::from(id);
        if id == 0 {
            return Err(DecodeError::BadBgpIdentifier(bgp_id));
        }
        let mut groups = Vec::new();
        while !params.is_empty() {
            let r: IResult<&[u8], (u8, &[u8])> = (|i| {
                let (i, t) = be_u8(i)?;
                let (i, l) = be_u8(i)?;
                let (i, v) = take(l)(i)?;
                Ok((i, (t, v)))
            })(params);
            let (next, (ptype, value)) =
                r.map_err(|_| DecodeError::MalformedOpen("optional parameter runs past its field"))?;
            if ptype != PARAM_CAPABILITIES {
                return Err(DecodeError::UnsupportedOptionalParameter(ptype));
            }
            groups.push(Capability::decode_list(value)?);
            params = next;
        }
        Ok(Self { version, my_as, hold_time, bgp_id, params: groups })
    }

    pub fn encode_body(&self, buf: &mut BytesMut) {
        buf.put_u8(self.version);
        buf.put_u16(self.my_as);
        buf.put_u16(self.hold_time);
        buf.put_slice(&self.bgp_id.octets());
        let plen_at = buf.len();
        buf.put_u8(0);
        for group in &self.params {
            buf.put_u8(PARAM_CAPABILITIES);
            let at = buf.len();
            buf.put_u8(0);
            for c in group {
                c.encode(buf);
            }
            buf[at] = u8::try_from(buf.len() - at - 1).unwrap_or(u8::MAX);
        }
        buf[plen_at] = u8::try_from(buf.len() - plen_at - 1).unwrap_or(u8::MAX);
    }
}
