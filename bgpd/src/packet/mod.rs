//! The BGP-4 wire codec.
//!
//! ```text
//! Message header (RFC 4271 §4.1):
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                                                               |
//! +                           Marker (16 octets of 0xff)          +
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          Length               |      Type     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Use [`frame_len`] to cut a byte stream into messages, [`Message::decode`]
//! to parse one, and [`Message::encode`] to write one. Both take a context
//! holding what the session negotiated.

pub mod afi;
pub mod aspath;
pub mod attribute;
pub mod capability;
pub mod community;
pub mod error;
pub mod mp;
pub mod nlri;
pub mod notification;
pub mod open;
pub mod route_refresh;
pub mod update;

use bytes::{BufMut, Bytes, BytesMut};

pub use afi::{AfiSafi, Family, FamilySet};
pub use aspath::{AsPath, AsSegment, SegmentType};
pub use attribute::{Aggregator, AttrValue, Origin, PathAttr};
pub use capability::{AddPathFamily, AddPathMode, Capability, ExtendedNextHop, GracefulRestart, GracefulRestartFamily};
pub use community::{Community, ExtCommunity, LargeCommunity};
pub use error::{AttrAction, AttrError, AttrErrorKind, DecodeError};
pub use mp::{MpReach, MpUnreach, NextHop};
pub use nlri::Nlri;
pub use notification::NotificationMsg;
pub use open::OpenMsg;
pub use route_refresh::{RefreshSubtype, RouteRefreshMsg};
pub use update::UpdateMsg;

pub const HEADER_LEN: usize = 19;
/// RFC 4271 §4: the largest message without RFC 8654 extended messages.
pub const MAX_MESSAGE_LEN: usize = 4096;

pub const MSG_OPEN: u8 = 1;
pub const MSG_UPDATE: u8 = 2;
pub const MSG_NOTIFICATION: u8 = 3;
pub const MSG_KEEPALIVE: u8 = 4;
pub const MSG_ROUTE_REFRESH: u8 = 5;

/// What the decoder needs to know about the session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecodeCtx {
    /// Both sides advertised the 4-octet AS capability (RFC 6793).
    pub four_octet_as: bool,
    /// Families where the peer sends path identifiers (RFC 7911).
    pub add_path_rx: FamilySet,
    /// Families whose NLRI may come with a next hop of the other address
    /// family (RFC 8950).
    pub extended_next_hop: FamilySet,
    /// The session is external: LOCAL_PREF errors are discarded and
    /// confederation segments are malformed.
    pub ebgp: bool,
    /// RFC 4271 §6.3: require the leftmost AS_PATH AS to be this one.
    pub enforce_first_as: Option<u32>,
}

/// What the encoder needs to know about the session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EncodeCtx {
    pub four_octet_as: bool,
    /// Families where we send path identifiers (RFC 7911).
    pub add_path_tx: FamilySet,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Open(OpenMsg),
    Update(UpdateMsg),
    Notification(NotificationMsg),
    Keepalive,
    RouteRefresh(RouteRefreshMsg),
}

/// Looks at the start of a byte stream. Returns the length of the first
/// message once all of it is buffered, `Ok(None)` while more bytes are needed,
/// and an error when the header is bad (RFC 4271 §6.1).
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, DecodeError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    if buf[..16].iter().any(|&b| b != 0xff) {
        return Err(DecodeError::ConnectionNotSynchronized);
    }
    let len = u16::from_be_bytes([buf[16], buf[17]]);
    if usize::from(len) < HEADER_LEN || usize::from(len) > MAX_MESSAGE_LEN {
        return Err(DecodeError::BadMessageLength(len));
    }
    Ok((buf.len() >= usize::from(len)).then_some(usize::from(len)))
}

impl Message {
    /// Decodes one complete message, header included.
    pub fn decode(msg: &[u8], ctx: &DecodeCtx) -> Result<Message, DecodeError> {
        let len = match frame_len(msg)? {
            Some(l) if l == msg.len() => l as u16,
            _ => return Err(DecodeError::BadMessageLength(msg.len().min(usize::from(u16::MAX)) as u16)),
        };
        let body = &msg[HEADER_LEN..];
        let typ = msg[18];
        // RFC 4271 §6.1: per-type length limits.
        let len_ok = match typ {
            MSG_OPEN => len >= 29,
            MSG_UPDATE => len >= 23,
            MSG_NOTIFICATION => len >= 21,
            MSG_KEEPALIVE => len == 19,
            // RFC 7313 §5 reports a wrong ROUTE-REFRESH length with its own code.
            MSG_ROUTE_REFRESH => true,
            other => return Err(DecodeError::BadMessageType(other)),
        };
        if !len_ok {
            return Err(DecodeError::BadMessageLength(len));
        }
        Ok(match typ {
            MSG_OPEN => Message::Open(OpenMsg::decode(body)?),
            MSG_UPDATE => Message::Update(UpdateMsg::decode(body, ctx)?),
            MSG_NOTIFICATION => Message::Notification(NotificationMsg::decode(body)?),
            MSG_KEEPALIVE => Message::Keepalive,
            _ => Message::RouteRefresh(RouteRefreshMsg::decode(body, msg)?),
        })
    }

    pub fn msg_type(&self) -> u8 {
        match self {
            Self::Open(_) => MSG_OPEN,
            Self::Update(_) => MSG_UPDATE,
            Self::Notification(_) => MSG_NOTIFICATION,
            Self::Keepalive => MSG_KEEPALIVE,
            Self::RouteRefresh(_) => MSG_ROUTE_REFRESH,
        }
    }

    /// The RFC name of the message type.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Open(_) => "OPEN",
            Self::Update(_) => "UPDATE",
            Self::Notification(_) => "NOTIFICATION",
            Self::Keepalive => "KEEPALIVE",
            Self::RouteRefresh(_) => "ROUTE-REFRESH",
        }
    }

    /// Appends the message, header included, to `buf`.
    pub fn encode_into(&self, ctx: &EncodeCtx, buf: &mut BytesMut) {
        let start = buf.len();
        buf.put_slice(&[0xff; 16]);
        buf.put_u16(0);
        buf.put_u8(self.msg_type());
        match self {
            Self::Open(m) => m.encode_body(buf),
            Self::Update(m) => m.encode_body(ctx, buf),
            Self::Notification(m) => m.encode_body(buf),
            Self::Keepalive => {}
            Self::RouteRefresh(m) => m.encode_body(buf),
        }
        let len = u16::try_from(buf.len() - start).unwrap_or(u16::MAX);
        buf[start + 16..start + 18].copy_from_slice(&len.to_be_bytes());
    }

    pub fn encode(&self, ctx: &EncodeCtx) -> Bytes {
        let mut buf = BytesMut::with_capacity(64);
        self.encode_into(ctx, &mut buf);
        buf.freeze()
    }
}
