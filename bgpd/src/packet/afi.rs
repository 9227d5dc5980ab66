//! Address families (RFC 4760 §3): the AFI/SAFI pairs merle speaks.

use std::fmt;

/// Address Family Identifier values from the IANA registry.
pub const AFI_IPV4: u16 = 1;
pub const AFI_IPV6: u16 = 2;
/// Subsequent Address Family Identifier: unicast.
pub const SAFI_UNICAST: u8 = 1;

/// An AFI/SAFI pair exactly as it appears on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct AfiSafi {
    pub afi: u16,
    pub safi: u8,
}

impl AfiSafi {
    pub const IPV4_UNICAST: AfiSafi = AfiSafi { afi: AFI_IPV4, safi: SAFI_UNICAST };
    pub const IPV6_UNICAST: AfiSafi = AfiSafi { afi: AFI_IPV6, safi: SAFI_UNICAST };

    pub const fn new(afi: u16, safi: u8) -> Self {
        Self { afi, safi }
    }

    /// The families whose NLRI this codec understands.
    pub fn family(self) -> Option<Family> {
        match self {
            Self::IPV4_UNICAST => Some(Family::Ipv4Unicast),
            Self::IPV6_UNICAST => Some(Family::Ipv6Unicast),
            _ => None,
        }
    }
}

impl fmt::Display for AfiSafi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.family() {
            Some(fam) => fam.fmt(f),
            None => write!(f, "afi {} safi {}", self.afi, self.safi),
        }
    }
}

/// A family whose prefixes merle parses and routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    Ipv4Unicast,
    Ipv6Unicast,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::Ipv4Unicast, Family::Ipv6Unicast];

    pub fn afi_safi(self) -> AfiSafi {
        match self {
            Self::Ipv4Unicast => AfiSafi::IPV4_UNICAST,
            Self::Ipv6Unicast => AfiSafi::IPV6_UNICAST,
        }
    }

    /// The longest prefix length of this family.
    pub fn max_len(self) -> u8 {
        match self {
            Self::Ipv4Unicast => 32,
            Self::Ipv6Unicast => 128,
        }
    }

    /// A small dense index, for per-family tables.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ipv4Unicast => "ipv4-unicast",
            Self::Ipv6Unicast => "ipv6-unicast",
        })
    }
}

/// A set of families, one bit each. Cheap to copy into codec contexts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct FamilySet(u8);

impl FamilySet {
    pub const EMPTY: FamilySet = FamilySet(0);

    pub fn all() -> Self {
        Family::ALL.into_iter().collect()
    }
    pub fn contains(self, f: Family) -> bool {
        self.0 & (1 << f.index()) != 0
    }
    pub fn insert(&mut self, f: Family) {
        self.0 |= 1 << f.index();
    }
    pub fn remove(&mut self, f: Family) {
        self.0 &= !(1 << f.index());
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn intersection(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }
    pub fn iter(self) -> impl Iterator<Item = Family> {
        Family::ALL.into_iter().filter(move |f| self.contains(*f))
    }
}

impl FromIterator<Family> for FamilySet {
    fn from_iter<I: IntoIterator<Item = Family>>(iter: I) -> Self {
        let mut s = FamilySet::EMPTY;
        for f in iter {
            s.insert(f);
        }
        s
    }
}
