//! The ROUTE-REFRESH message (RFC 2918 §3) with the RFC 7313 message
//! subtypes for enhanced route refresh.
//!
//! ```text
//!  0       7      15      23      31
//! +-------+-------+-------+-------+
//! |      AFI      | Subtyp|  SAFI |
//! +-------+-------+-------+-------+
//! ```

use bytes::{BufMut, Bytes, BytesMut};

use super::afi::AfiSafi;
use super::error::DecodeError;

/// RFC 7313 §3.2 subtypes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefreshSubtype {
    /// A plain request to re-send the Adj-RIB-Out.
    Request,
    /// Beginning of Route Refresh.
    BoRR,
    /// End of Route Refresh.
    EoRR,
    /// A reserved value, which RFC 7313 says to ignore.
    Reserved(u8),
}

impl RefreshSubtype {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Request,
            1 => Self::BoRR,
            2 => Self::EoRR,
            other => Self::Reserved(other),
        }
    }
    fn to_u8(self) -> u8 {
        match self {
            Self::Request => 0,
            Self::BoRR => 1,
            Self::EoRR => 2,
            Self::Reserved(v) => v,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RouteRefreshMsg {
    pub afi_safi: AfiSafi,
    pub subtype: RefreshSubtype,
}

impl RouteRefreshMsg {
    pub fn request(afi_safi: AfiSafi) -> Self {
        Self { afi_safi, subtype: RefreshSubtype::Request }
    }

    /// `whole` is the complete message, which RFC 7313 §5 puts in the
    /// NOTIFICATION data when the length is wrong.
    pub fn decode(body: &[u8], whole: &[u8]) -> Result<Self, DecodeError> {
        match body {
            [a0, a1, sub, safi] => Ok(Self {
                afi_safi: AfiSafi::new(u16::from_be_bytes([*a0, *a1]), *safi),
                subtype: RefreshSubtype::from_u8(*sub),
            }),
            // RFC 7313 §5: the ROUTE-REFRESH error applies to the BoRR and
            // EoRR subtypes; otherwise a wrong length is a header error.
            [_, _, 1 | 2, ..] => Err(DecodeError::RouteRefreshLength {
                len: u16::try_from(whole.len()).unwrap_or(u16::MAX),
                data: Bytes::copy_from_slice(whole),
            }),
            _ => Err(DecodeError::BadMessageLength(u16::try_from(whole.len()).unwrap_or(u16::MAX))),
        }
    }

    pub fn encode_body(&self, buf: &mut BytesMut) {
        buf.put_u16(self.afi_safi.afi);
        buf.put_u8(self.subtype.to_u8());
        buf.put_u8(self.afi_safi.safi);
    }
}
