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
//!
//! The same slots carry each consumer's export queue (a session's, or the
//! FIB's): a change to a destination is queued, in arrival order, for every
//! consumer that wants its kind of route and has not queued it yet (a
//! second bit per destination per consumer), so a slow consumer costs at
//! most one entry (24 bytes) per prefix, and no hash index. A destination
//! stays while some consumer has it queued, so a queued removal is never
//! lost.

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

/// One consumer: a session (what it holds, what it has queued) or the
/// FIB (what it has queued).
#[derive(Debug, Default)]
struct Consumer {
    sent: SentMap,
    queued: SentMap,
    /// The [`super::PathSource::kind_bit`]s of best paths it can be sent;
    /// changes involving no such kind are not queued for it.
    interest: u8,
    /// Queued changes, oldest first: the prefix and its slot then (a hint).
    pending: Vec<(ipnet::IpNet, u32)>,
    /// Something was queued since [`AdjOut::woken`] last looked.
    woken: bool,
}

/// Every open consumer's bits and queue.
#[derive(Debug, Default)]
pub(super) struct AdjOut {
    /// Indexed by [`OutId`]; `None` where a consumer closed (reused).
    maps: Vec<Option<Consumer>>,
}

impl AdjOut {
    pub(super) fn open(&mut self, interest: u8) -> OutId {
        let i = match self.maps.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                self.maps.push(None);
                self.maps.len() - 1
            }
        };
        self.maps[i] = Some(Consumer { interest, ..Consumer::default() });
        OutId(u32::try_from(i).unwrap_or(u32::MAX))
    }

    /// Forgets a consumer's bits and queue; returns whether it held or
    /// queued anything.
    pub(super) fn close(&mut self, id: OutId) -> bool {
        self.maps.get_mut(id.0 as usize).and_then(Option::take).is_some_and(|m| m.sent.ones > 0 || m.queued.ones > 0)
    }

    fn map(&self, id: OutId) -> Option<&Consumer> {
        self.maps.get(id.0 as usize).and_then(Option::as_ref)
    }

    fn map_mut(&mut self, id: OutId) -> Option<&mut Consumer> {
        self.maps.get_mut(id.0 as usize).and_then(Option::as_mut)
    }

    pub(super) fn set_interest(&mut self, id: OutId, interest: u8) {
        if let Some(m) = self.map_mut(id) {
            m.interest = interest;
        }
    }

    pub(super) fn get(&self, id: OutId, slot: usize) -> bool {
        self.map(id).is_some_and(|m| m.sent.get(slot))
    }

    /// Records that session `id` holds (or no longer holds) slot `slot`;
    /// a closed session records nothing.
    pub(super) fn set(&mut self, id: OutId, slot: usize, v: bool) {
        if let Some(m) = self.map_mut(id) {
            m.sent.set(slot, v);
        }
    }

    /// Queues the change to the destination in `slot` (`prefix`, of a
    /// change involving `kinds`) for every consumer that wants it and has
    /// not queued it yet.
    pub(super) fn queue(&mut self, prefix: ipnet::IpNet, slot: usize, kinds: u8) {
        for m in self.maps.iter_mut().flatten() {
            if m.interest & kinds != 0 && m.queued.set(slot, true) {
                m.pending.push((prefix, u32::try_from(slot).unwrap_or(u32::MAX)));
                m.woken = true;
            }
        }
    }

    /// Takes consumer `id`'s queue, oldest first; the entries stay marked
    /// queued until [`AdjOut::dequeued`].
    pub(super) fn take(&mut self, id: OutId) -> Vec<(ipnet::IpNet, u32)> {
        self.map_mut(id).map(|m| std::mem::take(&mut m.pending)).unwrap_or_default()
    }

    /// Consumer `id` has dealt with the change to slot `slot`: a new
    /// change queues it again.
    pub(super) fn dequeued(&mut self, id: OutId, slot: usize) {
        if let Some(m) = self.map_mut(id) {
            m.queued.set(slot, false);
        }
    }

    /// The consumers something was queued for since the last call.
    pub(super) fn woken(&mut self) -> Vec<OutId> {
        let mut v = Vec::new();
        for (i, m) in self.maps.iter_mut().enumerate() {
            if let Some(m) = m.as_mut().filter(|m| m.woken) {
                m.woken = false;
                v.push(OutId(u32::try_from(i).unwrap_or(u32::MAX)));
            }
        }
        v
    }

    /// Some consumer holds or has queued slot `slot`: the destination must
    /// stay.
    pub(super) fn any(&self, slot: usize) -> bool {
        self.maps
            .iter()
            .flatten()
            .any(|m| (m.sent.ones > 0 && m.sent.get(slot)) || (m.queued.ones > 0 && m.queued.get(slot)))
    }

    /// The destination in slot `from` moved to slot `to` (the one there
    /// left the table): the bits follow it.
    pub(super) fn moved(&mut self, from: usize, to: usize) {
        for m in self.maps.iter_mut().flatten() {
            for bits in [&mut m.sent, &mut m.queued] {
                if bits.ones > 0 {
                    let v = bits.get(from);
                    bits.set(from, false);
                    bits.set(to, v);
                }
            }
        }
    }

    /// How many prefixes session `id` holds.
    pub(super) fn len(&self, id: OutId) -> usize {
        self.map(id).map_or(0, |m| m.sent.ones)
    }

    /// How many changes consumer `id` has queued and not dealt with.
    pub(super) fn queued(&self, id: OutId) -> usize {
        self.map(id).map_or(0, |m| m.queued.ones)
    }

    /// The bytes the bits take (the queues' entries are counted apart).
    pub(super) fn bytes(&self) -> usize {
        self.maps.iter().flatten().map(|m| (m.sent.words.capacity() + m.queued.words.capacity()) * 8).sum::<usize>()
            + self.maps.capacity() * std::mem::size_of::<Option<Consumer>>()
    }

    /// The bytes the queues' entries take.
    pub(super) fn queue_bytes(&self) -> usize {
        self.maps.iter().flatten().map(|m| m.pending.capacity() * std::mem::size_of::<(ipnet::IpNet, u32)>()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(i: u32) -> ipnet::IpNet {
        ipnet::IpNet::V4(ipnet::Ipv4Net::new(std::net::Ipv4Addr::from(0x0a00_0000 + (i << 8)), 24).unwrap())
    }

    #[test]
    fn bits_are_counted_grown_and_moved() {
        let mut a = AdjOut::default();
        let (x, y) = (a.open(u8::MAX), a.open(u8::MAX));
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
        assert_eq!(a.open(0), OutId(0), "closed ids are reused");
    }

    #[test]
    fn a_change_is_queued_once_per_consumer_that_wants_its_kind_in_arrival_order() {
        let mut a = AdjOut::default();
        let (local, all) = (a.open(1), a.open(u8::MAX));
        a.queue(net(1), 1, 1);
        a.queue(net(2), 2, 2);
        a.queue(net(1), 1, 1);
        a.queue(net(3), 3, 1 | 2);
        assert_eq!(a.woken(), [local, all]);
        assert!(a.woken().is_empty(), "woken once");
        assert_eq!(a.take(local), [(net(1), 1), (net(3), 3)]);
        assert_eq!(a.take(all), [(net(1), 1), (net(2), 2), (net(3), 3)]);
        assert!(a.any(2), "queued, not yet dealt with: the destination stays");
        // Taken but not dealt with: still queued, so not queued twice.
        a.queue(net(1), 1, 1);
        assert!(a.take(local).is_empty());
        a.dequeued(local, 1);
        a.queue(net(1), 1, 1);
        assert_eq!(a.take(local), [(net(1), 1)]);
        assert_eq!(a.queued(all), 3);
        a.moved(3, 9);
        a.dequeued(all, 9);
        assert_eq!(a.queued(all), 2, "the queued bit moved with its destination");
        a.set_interest(local, 0);
        a.dequeued(local, 1);
        a.queue(net(1), 1, u8::MAX);
        assert!(a.take(local).is_empty(), "no interest, nothing queued");
    }
}
