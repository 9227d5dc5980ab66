//! NLRI encoding (RFC 4271 §4.3, RFC 4760 §5) with optional ADD-PATH path
//! identifiers (RFC 7911 §3).
//!
//! ```text
//! +---------------------------+
//! |   Path Identifier (4 octets, only with ADD-PATH)
//! +---------------------------+
//! |   Length (1 octet)        |
//! +---------------------------+
//! |   Prefix (variable)       |
//! +---------------------------+
//! ```

use std::net::{Ipv4Addr, Ipv6Addr};

use bytes::{BufMut, BytesMut};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::afi::Family;

/// One prefix, with its path identifier when ADD-PATH is in use for its family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Nlri {
    pub path_id: Option<u32>,
    pub prefix: IpNet,
}

impl Nlri {
    pub fn new(prefix: IpNet) -> Self {
        Self { path_id: None, prefix }
    }

    pub fn family(&self) -> Family {
        match self.prefix {
            IpNet::V4(_) => Family::Ipv4Unicast,
            IpNet::V6(_) => Family::Ipv6Unicast,
        }
    }

    /// Appends the wire form. `add_path` says whether to write the path id
    /// (0 when the NLRI has none).
    pub fn encode(&self, add_path: bool, buf: &mut BytesMut) {
        if add_path {
            buf.put_u32(self.path_id.unwrap_or(0));
        }
        let len = self.prefix.prefix_len();
        buf.put_u8(len);
        let nbytes = usize::from(len).div_ceil(8);
        match self.prefix {
            IpNet::V4(n) => buf.put_slice(&n.network().octets()[..nbytes]),
            IpNet::V6(n) => buf.put_slice(&n.network().octets()[..nbytes]),
        }
    }

    /// The encoded length in bytes.
    pub fn encoded_len(&self, add_path: bool) -> usize {
        (if add_path { 4 } else { 0 }) + 1 + usize::from(self.prefix.prefix_len()).div_ceil(8)
    }
}

/// Why an NLRI list failed to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NlriError {
    /// The prefix length is longer than the family allows.
    PrefixTooLong,
    /// The prefix runs past the end of its field.
    Truncated,
}

impl NlriError {
    pub fn reason(self) -> &'static str {
        match self {
            Self::PrefixTooLong => "prefix length exceeds the address family's maximum",
            Self::Truncated => "prefix runs past the end of the NLRI field",
        }
    }
}

/// Parses a whole NLRI field of one family. Host bits past the prefix length
/// are cleared, as every implementation does.
pub fn decode_nlri(mut input: &[u8], family: Family, add_path: bool) -> Result<Vec<Nlri>, NlriError> {
    let mut out = Vec::new();
    while !input.is_empty() {
        let path_id = if add_path {
            let (id, rest) = input.split_first_chunk::<4>().ok_or(NlriError::Truncated)?;
            input = rest;
            Some(u32::from_be_bytes(*id))
        } else {
            None
        };
        let (&len, rest) = input.split_first().ok_or(NlriError::Truncated)?;
        if len > family.max_len() {
            return Err(NlriError::PrefixTooLong);
        }
        let nbytes = usize::from(len).div_ceil(8);
        if rest.len() < nbytes {
            return Err(NlriError::Truncated);
        }
        let (bits, rest) = rest.split_at(nbytes);
        input = rest;
        let prefix = match family {
            Family::Ipv4Unicast => {
                let mut o = [0u8; 4];
                o[..nbytes].copy_from_slice(bits);
                IpNet::V4(Ipv4Net::new(Ipv4Addr::from(o), len).map_err(|_| NlriError::PrefixTooLong)?.trunc())
            }
            Family::Ipv6Unicast => {
                let mut o = [0u8; 16];
                o[..nbytes].copy_from_slice(bits);
                IpNet::V6(Ipv6Net::new(Ipv6Addr::from(o), len).map_err(|_| NlriError::PrefixTooLong)?.trunc())
            }
        };
        out.push(Nlri { path_id, prefix });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_masks_host_bits() {
        // 10.1.2.0/23 with the host bit of the third octet set.
        let v = decode_nlri(&[23, 10, 1, 3], Family::Ipv4Unicast, false).unwrap();
        assert_eq!(v, vec![Nlri::new("10.1.2.0/23".parse().unwrap())]);
    }

    #[test]
    fn default_route_and_add_path() {
        let v = decode_nlri(&[0, 0, 0, 7, 0], Family::Ipv4Unicast, true).unwrap();
        assert_eq!(v[0].path_id, Some(7));
        assert_eq!(v[0].prefix, "0.0.0.0/0".parse::<IpNet>().unwrap());
    }

    #[test]
    fn rejects_long_and_truncated() {
        assert_eq!(decode_nlri(&[33, 1, 2, 3, 4, 5], Family::Ipv4Unicast, false), Err(NlriError::PrefixTooLong));
        assert_eq!(decode_nlri(&[129], Family::Ipv6Unicast, false), Err(NlriError::PrefixTooLong));
        assert_eq!(decode_nlri(&[24, 10, 1], Family::Ipv4Unicast, false), Err(NlriError::Truncated));
        assert_eq!(decode_nlri(&[0, 0, 1], Family::Ipv4Unicast, true), Err(NlriError::Truncated));
    }

    #[test]
    fn encode_round_trip() {
        let n = Nlri { path_id: Some(3), prefix: "fd00:244:1::/122".parse().unwrap() };
        let mut b = BytesMut::new();
        n.encode(true, &mut b);
        assert_eq!(b.len(), n.encoded_len(true));
        assert_eq!(decode_nlri(&b, Family::Ipv6Unicast, true).unwrap(), vec![n]);
    }
}
