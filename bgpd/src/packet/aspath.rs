//! AS_PATH and AS4_PATH (RFC 4271 §4.3, RFC 6793 §3–4).
//!
//! ```text
//! AS_PATH is a sequence of segments:
//! +-----------------+-----------------+------------------------------+
//! | segment type(1) | segment len (1) | len ASNs, 2 or 4 octets each |
//! +-----------------+-----------------+------------------------------+
//! ```
//!
//! The width of an AS number depends on whether both speakers advertised the
//! 4-octet AS capability. AS4_PATH always uses 4 octets. A new speaker that
//! talks to an old one reconstructs the real path with [`AsPath::merge_as4`].

use std::fmt;

use bytes::{BufMut, BytesMut};

use super::open::AS_TRANS;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SegmentType {
    AsSet = 1,
    AsSequence = 2,
    /// RFC 5065 confederation segments.
    AsConfedSequence = 3,
    AsConfedSet = 4,
}

impl SegmentType {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::AsSet,
            2 => Self::AsSequence,
            3 => Self::AsConfedSequence,
            4 => Self::AsConfedSet,
            _ => return None,
        })
    }
    pub fn is_confed(self) -> bool {
        matches!(self, Self::AsConfedSequence | Self::AsConfedSet)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AsSegment {
    pub kind: SegmentType,
    pub asns: Vec<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct AsPath {
    pub segments: Vec<AsSegment>,
}

/// Why an AS_PATH did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsPathError {
    Truncated,
    UnknownSegmentType,
    EmptySegment,
    /// RFC 7607: AS 0 must not appear.
    AsZero,
}

impl AsPath {
    /// A path of one AS_SEQUENCE.
    pub fn sequence(asns: Vec<u32>) -> Self {
        if asns.is_empty() {
            return Self::default();
        }
        Self { segments: vec![AsSegment { kind: SegmentType::AsSequence, asns }] }
    }

    pub fn decode(mut i: &[u8], four_octet: bool) -> Result<Self, AsPathError> {
        let width = if four_octet { 4 } else { 2 };
        let mut segments = Vec::new();
        while !i.is_empty() {
            let [t, n, rest @ ..] = i else {
                return Err(AsPathError::Truncated);
            };
            let kind = SegmentType::from_u8(*t).ok_or(AsPathError::UnknownSegmentType)?;
            if *n == 0 {
                return Err(AsPathError::EmptySegment);
            }
            let need = usize::from(*n) * width;
            if rest.len() < need {
                return Err(AsPathError::Truncated);
            }
            let asns: Vec<u32> = rest[..need]
                .chunks_exact(width)
                .map(|c| match *c {
                    [a, b] => u32::from(u16::from_be_bytes([a, b])),
                    [a, b, c, d] => u32::from_be_bytes([a, b, c, d]),
                    _ => 0,
                })
                .collect();
            if asns.contains(&0) {
                return Err(AsPathError::AsZero);
            }
            segments.push(AsSegment { kind, asns });
            i = &rest[need..];
        }
        Ok(Self { segments })
    }

    /// Encodes with 2- or 4-octet AS numbers. In 2-octet form, an AS that
    /// does not fit becomes AS_TRANS. Segments longer than 255 are split.
    pub fn encode(&self, four_octet: bool, buf: &mut BytesMut) {
        for seg in &self.segments {
            for chunk in seg.asns.chunks(255) {
                buf.put_u8(seg.kind as u8);
                buf.put_u8(chunk.len() as u8);
                for &asn in chunk {
                    if four_octet {
                        buf.put_u32(asn);
                    } else {
                        buf.put_u16(u16::try_from(asn).unwrap_or(AS_TRANS));
                    }
                }
            }
        }
    }

    /// The path length used by the decision process (RFC 4271 §9.1.2.2 a):
    /// each AS_SEQUENCE member counts 1, an AS_SET counts 1 in all, and
    /// confederation segments do not count (RFC 5065 §5.3).
    pub fn path_len(&self) -> usize {
        self.segments
            .iter()
            .map(|s| match s.kind {
                SegmentType::AsSequence => s.asns.len(),
                SegmentType::AsSet => 1,
                _ => 0,
            })
            .sum()
    }

    pub fn contains(&self, asn: u32) -> bool {
        self.segments.iter().any(|s| s.asns.contains(&asn))
    }

    pub fn has_confed(&self) -> bool {
        self.segments.iter().any(|s| s.kind.is_confed())
    }

    /// The neighbouring AS (RFC 4271 §9.1.2.2 c, RFC 5065 §5.3): the first
    /// AS of the first AS_SEQUENCE after any confederation segments. `None`
    /// when the path is empty or starts with an AS_SET, which means the
    /// route originated in the local AS.
    pub fn neighbour_as(&self) -> Option<u32> {
        match self.segments.iter().find(|s| !s.kind.is_confed()) {
            Some(s) if s.kind == SegmentType::AsSequence => s.asns.first().copied(),
            _ => None,
        }
    }

    /// All AS numbers in order, sets flattened (for display and JSON).
    pub fn flat(&self) -> Vec<u32> {
        self.segments.iter().flat_map(|s| s.asns.iter().copied()).collect()
    }

    /// Prepends `asn` `count` times, as an eBGP speaker does (RFC 4271 §5.1.2).
    pub fn prepend(&self, asn: u32, count: usize) -> Self {
        let mut segments = self.segments.clone();
        let lead = std::iter::repeat_n(asn, count);
        match segments.first_mut() {
            Some(s) if s.kind == SegmentType::AsSequence && s.asns.len() + count <= 255 => {
                s.asns.splice(0..0, lead);
            }
            _ => segments.insert(0, AsSegment { kind: SegmentType::AsSequence, asns: lead.collect() }),
        }
        Self { segments }
    }

    /// Whether any AS needs four octets, so a 2-octet peer needs AS4_PATH.
    pub fn needs_as4(&self) -> bool {
        self.segments.iter().any(|s| s.asns.iter().any(|&a| a > u32::from(u16::MAX)))
    }

    /// RFC 6793 §4.2.3: rebuilds the real path from the AS_PATH (with
    /// AS_TRANS in it) and AS4_PATH received from a 2-octet speaker.
    pub fn merge_as4(&self, as4: &AsPath) -> AsPath {
        let n = self.path_len();
        let n4 = as4.path_len();
        if n < n4 {
            return self.clone();
        }
        // Take the leading (n - n4) path-length units of AS_PATH.
        let mut need = n - n4;
        let mut lead: Vec<AsSegment> = Vec::new();
        for seg in &self.segments {
            // Confederation segments in the leading part are kept even when
            // no more AS numbers are needed (they count 0).
            if seg.kind.is_confed() {
                lead.push(seg.clone());
                continue;
            }
            if need == 0 {
                break;
            }
            match seg.kind {
                SegmentType::AsSequence => {
                    let take = need.min(seg.asns.len());
                    lead.push(AsSegment { kind: seg.kind, asns: seg.asns[..take].to_vec() });
                    need -= take;
                }
                _ => {
                    lead.push(seg.clone());
                    need -= 1;
                }
            }
        }
        let mut segments = lead;
        for seg in &as4.segments {
            match (segments.last_mut(), seg.kind) {
                (Some(last), SegmentType::AsSequence)
                    if last.kind == SegmentType::AsSequence && last.asns.len() + seg.asns.len() <= 255 =>
                {
                    last.asns.extend_from_slice(&seg.asns);
                }
                _ => segments.push(seg.clone()),
            }
        }
        AsPath { segments }
    }
}

impl fmt::Display for AsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for s in &self.segments {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            let inner = s.asns.iter().map(u32::to_string).collect::<Vec<_>>().join(" ");
            match s.kind {
                SegmentType::AsSequence => f.write_str(&inner)?,
                SegmentType::AsSet => write!(f, "{{{inner}}}")?,
                SegmentType::AsConfedSequence => write!(f, "({inner})")?,
                SegmentType::AsConfedSet => write!(f, "[{inner}]")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(kind: SegmentType, asns: &[u32]) -> AsSegment {
        AsSegment { kind, asns: asns.to_vec() }
    }

    #[test]
    fn two_and_four_octet_round_trip() {
        let p =
            AsPath { segments: vec![seg(SegmentType::AsSequence, &[65001, 64512]), seg(SegmentType::AsSet, &[1, 2])] };
        for four in [false, true] {
            let mut b = BytesMut::new();
            p.encode(four, &mut b);
            assert_eq!(AsPath::decode(&b, four).unwrap(), p);
        }
        assert_eq!(p.path_len(), 3);
        assert_eq!(p.to_string(), "65001 64512 {1 2}");
    }

    #[test]
    fn malformed_paths() {
        assert_eq!(AsPath::decode(&[2, 0], false), Err(AsPathError::EmptySegment));
        assert_eq!(AsPath::decode(&[9, 1, 0, 1], false), Err(AsPathError::UnknownSegmentType));
        assert_eq!(AsPath::decode(&[2, 2, 0, 1], false), Err(AsPathError::Truncated));
        assert_eq!(AsPath::decode(&[2], false), Err(AsPathError::Truncated));
        assert_eq!(AsPath::decode(&[2, 1, 0, 0], false), Err(AsPathError::AsZero));
    }

    #[test]
    fn as4_merge_rfc6793() {
        // A 2-octet speaker 65001 prepended itself to a path that went
        // through 4200000001, seen as AS_TRANS.
        let as_path = AsPath::sequence(vec![65001, u32::from(AS_TRANS), 65002]);
        let as4 = AsPath::sequence(vec![4_200_000_001, 65002]);
        assert_eq!(as_path.merge_as4(&as4), AsPath::sequence(vec![65001, 4_200_000_001, 65002]));
        // AS4_PATH longer than AS_PATH: ignore it.
        let long = AsPath::sequence(vec![1, 2, 3, 4]);
        assert_eq!(as_path.merge_as4(&long), as_path);
    }

    #[test]
    fn prepend_and_as_trans() {
        let p = AsPath::default().prepend(4_200_000_001, 2);
        assert_eq!(p.flat(), vec![4_200_000_001, 4_200_000_001]);
        assert!(p.needs_as4());
        let mut b = BytesMut::new();
        p.encode(false, &mut b);
        assert_eq!(&b[..], &[2, 2, 0x5b, 0xa0, 0x5b, 0xa0]);
    }
}
