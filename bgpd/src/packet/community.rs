//! Communities (RFC 1997), extended communities (RFC 4360) and large
//! communities (RFC 8092), with their textual forms.

use std::fmt;
use std::str::FromStr;

/// A standard community, `aa:nn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Community(pub u32);

impl Community {
    pub const NO_EXPORT: Community = Community(0xFFFF_FF01);
    pub const NO_ADVERTISE: Community = Community(0xFFFF_FF02);
    pub const NO_EXPORT_SUBCONFED: Community = Community(0xFFFF_FF03);

    pub fn new(asn: u16, value: u16) -> Self {
        Self((u32::from(asn) << 16) | u32::from(value))
    }
}

impl fmt::Display for Community {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.0 >> 16, self.0 & 0xffff)
    }
}

/// Why a community string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid community {0:?}: expected aa:nn (16-bit parts) or aa:nn:mm (32-bit parts)")]
pub struct CommunityParseError(pub String);

impl FromStr for Community {
    type Err = CommunityParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || CommunityParseError(s.to_owned());
        let (a, b) = s.split_once(':').ok_or_else(err)?;
        Ok(Community::new(a.parse().map_err(|_| err())?, b.parse().map_err(|_| err())?))
    }
}

/// An extended community, eight octets (RFC 4360 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExtCommunity(pub [u8; 8]);

impl fmt::Display for ExtCommunity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        match (b[0] & 0x3f, b[1]) {
            // Two-octet AS specific: route target (2) and route origin (3).
            (0x00, sub @ (2 | 3)) => write!(
                f,
                "{}:{}:{}",
                if sub == 2 { "rt" } else { "ro" },
                u16::from_be_bytes([b[2], b[3]]),
                u32::from_be_bytes([b[4], b[5], b[6], b[7]])
            ),
            _ => write!(f, "0x{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>()),
        }
    }
}

/// A large community, `global:local1:local2` (RFC 8092).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LargeCommunity {
    pub global_admin: u32,
    pub local_data1: u32,
    pub local_data2: u32,
}

impl fmt::Display for LargeCommunity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.global_admin, self.local_data1, self.local_data2)
    }
}

impl FromStr for LargeCommunity {
    type Err = CommunityParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || CommunityParseError(s.to_owned());
        let mut it = s.split(':').map(|p| p.parse::<u32>().map_err(|_| err()));
        let (Some(a), Some(b), Some(c), None) = (it.next(), it.next(), it.next(), it.next()) else {
            return Err(err());
        };
        Ok(Self { global_admin: a?, local_data1: b?, local_data2: c? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms() {
        assert_eq!("65001:200".parse::<Community>().unwrap(), Community::new(65001, 200));
        assert_eq!(Community::new(65001, 200).to_string(), "65001:200");
        assert!("65536:1".parse::<Community>().is_err());
        let l: LargeCommunity = "4200000000:1:2".parse().unwrap();
        assert_eq!(l.to_string(), "4200000000:1:2");
        assert!("1:2".parse::<LargeCommunity>().is_err());
        assert!("1:2:3:4".parse::<LargeCommunity>().is_err());
        assert_eq!(ExtCommunity([0, 2, 0xfd, 0xea, 0, 0, 0, 7]).to_string(), "rt:65002:7");
    }
}
