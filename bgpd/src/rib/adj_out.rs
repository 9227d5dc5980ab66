//! The Adj-RIB-Out (RFC 4271 §3.2): which prefixes each session has been
//! sent, so that a session is sent a withdrawal only for a prefix it holds.
//!
//! What a session was sent is not stored as routes: its attributes follow
//! from the Loc-RIB and the session's export policy whenever they are
//! needed. Only the fact that the session holds the prefix is stored, as
//! one bit per destination per session, indexed by the destination's slot
//! in the table, as BIRD keeps one bit per route per channel (its export
//! map). A million prefixes cost 122 KiB per session.
//!
//! The slots are the table's: when a destination leaves the table and the
//! last one takes its slot, every session's bit moves with it
//! ([`AdjOut::moved`]). A destination that loses its last path while some
//! session still holds it stays in the table without paths (a tombstone,
//! invisible to everything but export) until every such session has been
//! sent the withdrawal or has gone.

/// One session's share of the Adj-RIB-Out, from [`crate::rib::Rib::open_adj_out`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OutId(u32);

/// The bits of one session: bit `i` is set when the session holds the
/// destination in slot `i`.
#[derive(Debug, Default)]
struct SentMap {
    words: Vec<u64>,
    /// How many bits are set: the prefixes the session holds.
    ones: usize,
}

impl SentMap {
    fn get(&self, i: usize) -> bool {
        self.words.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// Sets bit `i` to `v`; returns whether it changed.
    fn set(&mut self, i: usize, v: bool) -> bool {
        let (w, bit) = (i / 64, 1u64 << (i % 64));
        if w >= self.words.len() {
            if !v {
                return false;
            }
            // Grow by half again, as a vector does, so a table filling up
            // does not reallocate the map per word.
            self.words.resize((w + 1).max(self.words.len() * 3 / 2), 0);
        }
        let was = self.words[w] & bit != 0;
        if was == v {
            return false;
        }
        self.words[w] ^= bit;
        if v {
            self.ones += 1;
        } else {
            self.ones -= 1;
        }
        true
    }
}

/// Every open session's bits.
#[derive(Debug, Default)]
pub(super) struct AdjOut {
    /// Indexed by [`OutId`]; `None` where a session closed (reused).
    maps: Vec<Option<SentMap>>,
}

impl AdjOut {
    pub(super) fn open(&mut self) -> OutId {
        let i = match self.maps.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                self.maps.push(None);
                self.maps.len() - 1
            }
        };
        self.maps[i] = Some(SentMap::default());
        OutId(u32::try_from(i).unwrap_or(u32::MAX))
    }

    /// Forgets a session's bits; returns whether it held anything.
    pub(super) fn close(&mut self, id: OutId) -> bool {
        self.maps.get_mut(id.0 as usize).and_then(Option::take).is_some_and(|m| m.ones > 0)
    }

    fn map(&self, id: OutId) -> Option<&SentMap> {
        self.maps.get(id.0 as usize).and_then(Option::as_ref)
    }

    fn open_maps(&mut self) -> impl Iterator<Item = &mut SentMap> {
        self.maps.iter_mut().flatten().filter(|m| m.ones > 0)
    }

    pub(super) fn get(&self, id: OutId, slot: usize) -> bool {
        self.map(id).is_some_and(|m| m.get(slot))
    }

    /// Records that session `id` holds (or no longer holds) slot `slot`;
    /// a closed session records nothing.
    pub(super) fn set(&mut self, id: OutId, slot: usize, v: bool) {
        if let Some(m) = self.maps.get_mut(id.0 as usize).and_then(Option::as_mut) {
            m.set(slot, v);
        }
    }

    /// Some session holds slot `slot`.
    pub(super) fn any(&self, slot: usize) -> bool {
        self.maps.iter().flatten().any(|m| m.ones > 0 && m.get(slot))
    }

    /// The destination in slot `from` moved to slot `to` (the one there
    /// left the table): the bits follow it.
    pub(super) fn moved(&mut self, from: usize, to: usize) {
        for m in self.open_maps() {
            let v = m.get(from);
            m.set(from, false);
            m.set(to, v);
        }
    }

    /// How many prefixes session `id` holds.
    pub(super) fn len(&self, id: OutId) -> usize {
        self.map(id).map_or(0, |m| m.ones)
    }

    /// The bytes the maps take.
    pub(super) fn bytes(&self) -> usize {
        self.maps.iter().flatten().map(|m| m.words.capacity() * 8).sum::<usize>()
            + self.maps.capacity() * std::mem::size_of::<Option<SentMap>>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_are_counted_grown_and_moved() {
        let mut a = AdjOut::default();
        let (x, y) = (a.open(), a.open());
        assert_ne!(x, y);
        a.set(x, 3, true);
        a.set(x, 3, true);
        a.set(x, 1000, true);
        a.set(y, 5, false);
        assert_eq!((a.len(x), a.len(y)), (2, 0));
        assert!(a.get(x, 1000) && a.any(1000) && !a.any(5));
        a.moved(1000, 5);
        assert!(a.get(x, 5) && !a.get(x, 1000));
        assert_eq!(a.len(x), 2);
        assert!(a.close(x));
        assert!(!a.any(5), "a closed session holds nothing");
        a.set(x, 7, true);
        assert_eq!(a.len(x), 0, "nor records anything");
        assert!(!a.close(y));
        assert_eq!(a.open(), OutId(0), "closed ids are reused");
    }
}
