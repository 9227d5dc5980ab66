//! The NOTIFICATION message (RFC 4271 §4.5) and the BGP Shutdown
//! Communication carried in Cease/Administrative Shutdown and
//! Cease/Administrative Reset (RFC 8203, updated by RFC 9003).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | Error code    | Error subcode |   Data (variable)             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!
//! Shutdown Communication data (RFC 9003 §2):
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | Length        | Shutdown Communication (UTF-8, up to 255) ... |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use super::error::{cease_sub, code, DecodeError};

/// RFC 9003 §2: the communication is at most 255 octets.
pub const SHUTDOWN_COMMUNICATION_MAX: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationMsg {
    pub code: u8,
    pub subcode: u8,
    pub data: Bytes,
}

impl NotificationMsg {
    pub fn new(code: u8, subcode: u8, data: Bytes) -> Self {
        Self { code, subcode, data }
    }

    /// A Cease with a shutdown communication. The text is cut at a UTF-8
    /// character boundary so it fits in 255 octets.
    pub fn cease_with_communication(subcode: u8, text: &str) -> Self {
        let mut end = text.len().min(SHUTDOWN_COMMUNICATION_MAX);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let mut data = BytesMut::with_capacity(end + 1);
        if end > 0 {
            data.put_u8(end as u8);
            data.put_slice(&text.as_bytes()[..end]);
        }
        Self::new(code::CEASE, subcode, data.freeze())
    }

    /// The shutdown communication, when this is a Cease/Administrative
    /// Shutdown or Reset whose data is a well-formed RFC 9003 string.
    pub fn shutdown_communication(&self) -> Option<&str> {
        if self.code != code::CEASE
            || !matches!(self.subcode, cease_sub::ADMINISTRATIVE_SHUTDOWN | cease_sub::ADMINISTRATIVE_RESET)
        {
            return None;
        }
        let (&len, rest) = self.data.split_first()?;
        if len == 0 || rest.len() < usize::from(len) {
            return None;
        }
        std::str::from_utf8(&rest[..usize::from(len)]).ok()
    }

    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        match body {
            [code, subcode, data @ ..] => Ok(Self::new(*code, *subcode, Bytes::copy_from_slice(data))),
            _ => Err(DecodeError::MalformedNotification),
        }
    }

    pub fn encode_body(&self, buf: &mut BytesMut) {
        buf.put_u8(self.code);
        buf.put_u8(self.subcode);
        buf.put_slice(&self.data);
    }

    /// The RFC name of the code and subcode, for logs and `merlectl`.
    pub fn describe(&self) -> String {
        let (c, s) = names(self.code, self.subcode);
        match self.shutdown_communication() {
            Some(text) => format!("{c}/{s}: \"{text}\""),
            None => format!("{c}/{s}"),
        }
    }
}

impl fmt::Display for NotificationMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

fn names(c: u8, s: u8) -> (&'static str, String) {
    let code_name = match c {
        code::MESSAGE_HEADER => "Message Header Error",
        code::OPEN_MESSAGE => "OPEN Message Error",
        code::UPDATE_MESSAGE => "UPDATE Message Error",
        code::HOLD_TIMER_EXPIRED => "Hold Timer Expired",
        code::FSM => "Finite State Machine Error",
        code::CEASE => "Cease",
        code::ROUTE_REFRESH_MESSAGE => "ROUTE-REFRESH Message Error",
        _ => "Unknown Error",
    };
    let sub: Option<&str> = match (c, s) {
        (code::MESSAGE_HEADER, 1) => Some("Connection Not Synchronized"),
        (code::MESSAGE_HEADER, 2) => Some("Bad Message Length"),
        (code::MESSAGE_HEADER, 3) => Some("Bad Message Type"),
        (code::OPEN_MESSAGE, 1) => Some("Unsupported Version Number"),
        (code::OPEN_MESSAGE, 2) => Some("Bad Peer AS"),
        (code::OPEN_MESSAGE, 3) => Some("Bad BGP Identifier"),
        (code::OPEN_MESSAGE, 4) => Some("Unsupported Optional Parameter"),
        (code::OPEN_MESSAGE, 6) => Some("Unacceptable Hold Time"),
        (code::OPEN_MESSAGE, 7) => Some("Unsupported Capability"),
        (code::UPDATE_MESSAGE, 1) => Some("Malformed Attribute List"),
        (code::UPDATE_MESSAGE, 2) => Some("Unrecognized Well-known Attribute"),
        (code::UPDATE_MESSAGE, 3) => Some("Missing Well-known Attribute"),
        (code::UPDATE_MESSAGE, 4) => Some("Attribute Flags Error"),
        (code::UPDATE_MESSAGE, 5) => Some("Attribute Length Error"),
        (code::UPDATE_MESSAGE, 6) => Some("Invalid ORIGIN Attribute"),
        (code::UPDATE_MESSAGE, 8) => Some("Invalid NEXT_HOP Attribute"),
        (code::UPDATE_MESSAGE, 9) => Some("Optional Attribute Error"),
        (code::UPDATE_MESSAGE, 10) => Some("Invalid Network Field"),
        (code::UPDATE_MESSAGE, 11) => Some("Malformed AS_PATH"),
        (code::FSM, 1) => Some("Unexpected Message in OpenSent State"),
        (code::FSM, 2) => Some("Unexpected Message in OpenConfirm State"),
        (code::FSM, 3) => Some("Unexpected Message in Established State"),
        (code::CEASE, 1) => Some("Maximum Number of Prefixes Reached"),
        (code::CEASE, 2) => Some("Administrative Shutdown"),
        (code::CEASE, 3) => Some("Peer De-configured"),
        (code::CEASE, 4) => Some("Administrative Reset"),
        (code::CEASE, 5) => Some("Connection Rejected"),
        (code::CEASE, 6) => Some("Other Configuration Change"),
        (code::CEASE, 7) => Some("Connection Collision Resolution"),
        (code::CEASE, 8) => Some("Out of Resources"),
        (code::CEASE, 9) => Some("Hard Reset"),
        (code::ROUTE_REFRESH_MESSAGE, 1) => Some("Invalid Message Length"),
        _ => None,
    };
    (code_name, sub.map_or_else(|| format!("subcode {s}"), str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shutdown_communication_round_trip() {
        let n = NotificationMsg::cease_with_communication(cease_sub::ADMINISTRATIVE_SHUTDOWN, "maintenance: ToR swap");
        assert_eq!(n.shutdown_communication(), Some("maintenance: ToR swap"));
        assert_eq!(n.describe(), "Cease/Administrative Shutdown: \"maintenance: ToR swap\"");
        let mut b = BytesMut::new();
        n.encode_body(&mut b);
        assert_eq!(NotificationMsg::decode(&b).unwrap(), n);
    }

    #[test]
    fn long_communication_is_cut_on_a_char_boundary() {
        let text = "é".repeat(200); // 400 octets
        let n = NotificationMsg::cease_with_communication(cease_sub::ADMINISTRATIVE_RESET, &text);
        let got = n.shutdown_communication().unwrap();
        assert_eq!(got.len(), 254);
        assert!(text.starts_with(got));
    }

    #[test]
    fn bad_communication_is_opaque() {
        // Length says 10, only 3 octets follow.
        let n = NotificationMsg::new(code::CEASE, 2, Bytes::from_static(&[10, b'a', b'b', b'c']));
        assert_eq!(n.shutdown_communication(), None);
        // Invalid UTF-8.
        let n = NotificationMsg::new(code::CEASE, 2, Bytes::from_static(&[2, 0xff, 0xfe]));
        assert_eq!(n.shutdown_communication(), None);
        assert!(NotificationMsg::decode(&[6]).is_err());
    }
}
