//! Decode errors and their mapping onto NOTIFICATION messages.
//!
//! Every error the decoder can return knows the NOTIFICATION (code, subcode,
//! data) it calls for (RFC 4271 §6). Path-attribute errors additionally carry
//! the RFC 7606 action — attribute discard, treat-as-withdraw or session reset —
//! and only the session-reset ones ever surface as an `Err`: the milder ones are
//! recorded on the decoded [`super::UpdateMsg`].

use bytes::Bytes;
use thiserror::Error;

use super::notification::NotificationMsg;

/// NOTIFICATION error codes (RFC 4271 §4.5, RFC 7313).
pub mod code {
    pub const MESSAGE_HEADER: u8 = 1;
    pub const OPEN_MESSAGE: u8 = 2;
    pub const UPDATE_MESSAGE: u8 = 3;
    pub const HOLD_TIMER_EXPIRED: u8 = 4;
    pub const FSM: u8 = 5;
    pub const CEASE: u8 = 6;
    pub const ROUTE_REFRESH_MESSAGE: u8 = 7;
}

/// Message Header Error subcodes (RFC 4271 §6.1).
pub mod header_sub {
    pub const CONNECTION_NOT_SYNCHRONIZED: u8 = 1;
    pub const BAD_MESSAGE_LENGTH: u8 = 2;
    pub const BAD_MESSAGE_TYPE: u8 = 3;
}

/// OPEN Message Error subcodes (RFC 4271 §6.2, RFC 5492).
pub mod open_sub {
    pub const UNSPECIFIC: u8 = 0;
    pub const UNSUPPORTED_VERSION_NUMBER: u8 = 1;
    pub const BAD_PEER_AS: u8 = 2;
    pub const BAD_BGP_IDENTIFIER: u8 = 3;
    pub const UNSUPPORTED_OPTIONAL_PARAMETER: u8 = 4;
    pub const UNACCEPTABLE_HOLD_TIME: u8 = 6;
    pub const UNSUPPORTED_CAPABILITY: u8 = 7;
}

/// UPDATE Message Error subcodes (RFC 4271 §6.3).
pub mod update_sub {
    pub const MALFORMED_ATTRIBUTE_LIST: u8 = 1;
    pub const UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE: u8 = 2;
    pub const MISSING_WELL_KNOWN_ATTRIBUTE: u8 = 3;
    pub const ATTRIBUTE_FLAGS_ERROR: u8 = 4;
    pub const ATTRIBUTE_LENGTH_ERROR: u8 = 5;
    pub const INVALID_ORIGIN_ATTRIBUTE: u8 = 6;
    pub const INVALID_NEXT_HOP_ATTRIBUTE: u8 = 8;
    pub const OPTIONAL_ATTRIBUTE_ERROR: u8 = 9;
    pub const INVALID_NETWORK_FIELD: u8 = 10;
    pub const MALFORMED_AS_PATH: u8 = 11;
}

/// Finite State Machine Error subcodes (RFC 6608).
pub mod fsm_sub {
    pub const UNSPECIFIED: u8 = 0;
    pub const UNEXPECTED_MESSAGE_IN_OPEN_SENT: u8 = 1;
    pub const UNEXPECTED_MESSAGE_IN_OPEN_CONFIRM: u8 = 2;
    pub const UNEXPECTED_MESSAGE_IN_ESTABLISHED: u8 = 3;
}

/// Cease subcodes (RFC 4486, RFC 8538).
pub mod cease_sub {
    pub const MAXIMUM_PREFIXES_REACHED: u8 = 1;
    pub const ADMINISTRATIVE_SHUTDOWN: u8 = 2;
    pub const PEER_DECONFIGURED: u8 = 3;
    pub const ADMINISTRATIVE_RESET: u8 = 4;
    pub const CONNECTION_REJECTED: u8 = 5;
    pub const OTHER_CONFIGURATION_CHANGE: u8 = 6;
    pub const CONNECTION_COLLISION_RESOLUTION: u8 = 7;
    pub const OUT_OF_RESOURCES: u8 = 8;
    pub const HARD_RESET: u8 = 9;
}

/// ROUTE-REFRESH Message Error subcodes (RFC 7313).
pub mod route_refresh_sub {
    pub const INVALID_MESSAGE_LENGTH: u8 = 1;
}

/// The RFC 7606 §2 approaches, ordered from mildest to most severe so that
/// `max()` picks the one to apply when an UPDATE has several errors (§3 k).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttrAction {
    /// Drop the attribute, keep processing the UPDATE.
    AttributeDiscard,
    /// Treat every NLRI of the UPDATE as withdrawn.
    TreatAsWithdraw,
    /// Send a NOTIFICATION and reset the session.
    SessionReset,
}

/// What was wrong with one path attribute. Each kind names the RFC 4271 §6.3
/// subcode it corresponds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttrErrorKind {
    /// The Optional/Transitive flags conflict with the type code.
    FlagsError,
    /// The length is wrong for the attribute type.
    LengthError,
    /// The attribute length runs past the Total Path Attribute Length, or
    /// fewer bytes remain than an attribute header needs (RFC 7606 §4).
    Overrun,
    /// ORIGIN holds an undefined value.
    InvalidOrigin,
    /// NEXT_HOP is not a usable unicast address.
    InvalidNextHop,
    /// AS_PATH (or AS4_PATH) segments do not parse or break a rule.
    MalformedAsPath,
    /// An optional attribute's value does not parse.
    OptionalAttributeError,
    /// An attribute appears more than once.
    Duplicate,
    /// A well-known mandatory attribute is missing.
    MissingWellKnown,
    /// An unknown attribute claims to be well-known.
    UnrecognizedWellKnown,
    /// The NLRI inside MP_REACH_NLRI / MP_UNREACH_NLRI does not parse.
    InvalidNetworkField,
    /// An attribute only internal peers may send, from an external one
    /// (ORIGINATOR_ID, CLUSTER_LIST: RFC 7606 §7.9, §7.10).
    FromExternalPeer,
}

impl AttrErrorKind {
    /// The UPDATE Message Error subcode for this kind.
    pub fn subcode(self) -> u8 {
        use update_sub::*;
        match self {
            Self::FlagsError => ATTRIBUTE_FLAGS_ERROR,
            Self::LengthError => ATTRIBUTE_LENGTH_ERROR,
            Self::Overrun | Self::Duplicate => MALFORMED_ATTRIBUTE_LIST,
            Self::InvalidOrigin => INVALID_ORIGIN_ATTRIBUTE,
            Self::InvalidNextHop => INVALID_NEXT_HOP_ATTRIBUTE,
            Self::MalformedAsPath => MALFORMED_AS_PATH,
            Self::OptionalAttributeError | Self::InvalidNetworkField | Self::FromExternalPeer => {
                OPTIONAL_ATTRIBUTE_ERROR
            }
            Self::MissingWellKnown => MISSING_WELL_KNOWN_ATTRIBUTE,
            Self::UnrecognizedWellKnown => UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE,
        }
    }
}

impl AttrError {
    /// The UPDATE Message Error subcode. Errors inside MP_REACH_NLRI and
    /// MP_UNREACH_NLRI other than flag errors are Optional Attribute Errors.
    pub fn subcode(&self) -> u8 {
        const MP_REACH_NLRI: u8 = 14;
        const MP_UNREACH_NLRI: u8 = 15;
        match (self.type_code, self.kind) {
            (_, AttrErrorKind::FlagsError) => update_sub::ATTRIBUTE_FLAGS_ERROR,
            (MP_REACH_NLRI | MP_UNREACH_NLRI, _) => update_sub::OPTIONAL_ATTRIBUTE_ERROR,
            (_, k) => k.subcode(),
        }
    }
}

/// One malformed path attribute and what RFC 7606 says to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("path attribute {type_code}: {kind:?}, action {action:?}")]
pub struct AttrError {
    pub type_code: u8,
    pub kind: AttrErrorKind,
    pub action: AttrAction,
    /// The NOTIFICATION data: the erroneous attribute (type, length, value) for
    /// most kinds, the missing type code for `MissingWellKnown`.
    pub data: Bytes,
}

/// A decode failure that resets the session. [`DecodeError::notification`]
/// gives the NOTIFICATION to send before closing, if any.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("connection not synchronized: the header marker is not all ones")]
    ConnectionNotSynchronized,
    #[error("bad message length {0}")]
    BadMessageLength(u16),
    #[error("bad message type {0}")]
    BadMessageType(u8),
    #[error("unsupported BGP version {0}")]
    UnsupportedVersion(u8),
    #[error("bad peer AS {0}")]
    BadPeerAs(u32),
    #[error("bad BGP identifier {0}")]
    BadBgpIdentifier(std::net::Ipv4Addr),
    #[error("unacceptable hold time {0}")]
    UnacceptableHoldTime(u16),
    #[error("unsupported optional parameter type {0}")]
    UnsupportedOptionalParameter(u8),
    #[error("malformed OPEN message: {0}")]
    MalformedOpen(&'static str),
    #[error("malformed capability {code}: {reason}")]
    MalformedCapability { code: u8, reason: &'static str, data: Bytes },
    #[error("malformed attribute list: {0}")]
    MalformedAttributeList(&'static str),
    #[error("invalid network field: {0}")]
    InvalidNetworkField(&'static str),
    #[error(transparent)]
    Attribute(AttrError),
    #[error("malformed NOTIFICATION message")]
    MalformedNotification,
    #[error("ROUTE-REFRESH message has invalid length {len}")]
    RouteRefreshLength { len: u16, data: Bytes },
}

impl DecodeError {
    /// The NOTIFICATION to send for this error. A malformed NOTIFICATION is
    /// never answered with another one (RFC 4271 §6.4), so that returns `None`.
    pub fn notification(&self) -> Option<NotificationMsg> {
        use DecodeError::*;
        let (code, sub, data): (u8, u8, Bytes) = match self {
            ConnectionNotSynchronized => (code::MESSAGE_HEADER, header_sub::CONNECTION_NOT_SYNCHRONIZED, Bytes::new()),
            BadMessageLength(l) => {
                (code::MESSAGE_HEADER, header_sub::BAD_MESSAGE_LENGTH, Bytes::copy_from_slice(&l.to_be_bytes()))
            }
            BadMessageType(t) => (code::MESSAGE_HEADER, header_sub::BAD_MESSAGE_TYPE, Bytes::copy_from_slice(&[*t])),
            // Data: the largest locally supported version number.
            UnsupportedVersion(_) => {
                (code::OPEN_MESSAGE, open_sub::UNSUPPORTED_VERSION_NUMBER, Bytes::from_static(&[0, 4]))
            }
            BadPeerAs(_) => (code::OPEN_MESSAGE, open_sub::BAD_PEER_AS, Bytes::new()),
            BadBgpIdentifier(_) => (code::OPEN_MESSAGE, open_sub::BAD_BGP_IDENTIFIER, Bytes::new()),
            UnacceptableHoldTime(_) => (code::OPEN_MESSAGE, open_sub::UNACCEPTABLE_HOLD_TIME, Bytes::new()),
            UnsupportedOptionalParameter(_) => {
                (code::OPEN_MESSAGE, open_sub::UNSUPPORTED_OPTIONAL_PARAMETER, Bytes::new())
            }
            MalformedOpen(_) => (code::OPEN_MESSAGE, open_sub::UNSPECIFIC, Bytes::new()),
            MalformedCapability { data, .. } => (code::OPEN_MESSAGE, open_sub::UNSPECIFIC, data.clone()),
            MalformedAttributeList(_) => (code::UPDATE_MESSAGE, update_sub::MALFORMED_ATTRIBUTE_LIST, Bytes::new()),
            InvalidNetworkField(_) => (code::UPDATE_MESSAGE, update_sub::INVALID_NETWORK_FIELD, Bytes::new()),
            Attribute(e) => (code::UPDATE_MESSAGE, e.subcode(), e.data.clone()),
            MalformedNotification => return None,
            RouteRefreshLength { data, .. } => {
                (code::ROUTE_REFRESH_MESSAGE, route_refresh_sub::INVALID_MESSAGE_LENGTH, data.clone())
            }
        };
        Some(NotificationMsg::new(code, sub, data))
    }
}
