//! The conntrack sweep: merled walks `merle_ct` and deletes the entries
//! the programs already treat as gone (`ct_expired` in lib/lb.h: no packet
//! for the flow's lifetime), as Cilium's conntrack GC does.
//!
//! Without it the LRU fills with dead flows, and then every new flow's
//! first packet evicts one on its way (the costliest step on the NodePort
//! path), and a live flow idle for a while is evicted as soon as enough
//! new flows came after it, though its lifetime (6 h for TCP) is not over.
//! With it, a new entry takes a free one, and only a table full of live
//! flows evicts.
//!
//! The walk reads the table in batches and deletes in batches. How often
//! it runs follows what it finds ([`next_interval`]): every minute for a
//! quiet table, down to every second while flows come and go fast enough
//! to fill half of it between two sweeps. An entry a packet renews between the walk's read and its
//! delete is lost; the flow's next packet makes it again (Maglev picks the
//! same backend), and the window is a syscall long against an idle
//! lifetime of at least ten seconds.

use std::os::fd::AsFd;
use std::time::Duration;

use crate::pins::PinDir;
use crate::services::CT;
use crate::sys::{self, BatchCursor};
use crate::types::{CtEntry, CtKey, CT_F_CLOSING, CT_LIFE_CLOSING, CT_LIFE_TCP, CT_LIFE_UDP, CT_MAX};
use crate::Error;

const IPPROTO_TCP: u8 = 6;
/// Entries read per syscall; more than any bucket of the table holds.
const BATCH: usize = 4096;

/// The shortest and longest wait between two sweeps, and the first.
pub const INTERVAL_MIN: Duration = Duration::from_secs(1);
pub const INTERVAL_MAX: Duration = Duration::from_secs(60);
pub const INTERVAL_START: Duration = Duration::from_secs(10);

/// Whether the entry's flow is over, as `ct_expired` says at tick `now`.
/// An entry stamped after `now` (a packet renewed it while the walk ran,
/// past a tick) is alive.
pub fn expired(k: &CtKey, e: &CtEntry, now: u32) -> bool {
    let life = if k.proto != IPPROTO_TCP {
        CT_LIFE_UDP
    } else if e.flags & CT_F_CLOSING != 0 {
        CT_LIFE_CLOSING
    } else {
        CT_LIFE_TCP
    };
    // The age as the programs' u32 arithmetic has it, read as signed.
    (now.wrapping_sub(e.seen) as i32) > life as i32
}

/// What one sweep found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Entries in the table when it was read.
    pub entries: usize,
    /// Expired ones deleted.
    pub deleted: usize,
}

/// The wait before the next sweep, after one that waited `prev` and found
/// `swept` in a table of `capacity`: as long as the dead entries, coming at
/// the rate this sweep found them, take to fill the table with the live
/// ones to half its size, and at most twice `prev`.
pub fn next_interval(prev: Duration, swept: Swept, capacity: usize) -> Duration {
    let live = swept.entries.saturating_sub(swept.deleted) as f64;
    let room = capacity as f64 / 2.0 - live;
    let longer = prev.saturating_mul(2);
    let next = if room <= 0.0 {
        INTERVAL_MIN
    } else if swept.deleted == 0 {
        longer
    } else {
        let per_second = swept.deleted as f64 / prev.as_secs_f64().max(0.001);
        Duration::from_secs_f64(room / per_second).min(longer)
    };
    next.clamp(INTERVAL_MIN, INTERVAL_MAX)
}

/// The table's capacity.
pub fn capacity() -> usize {
    CT_MAX as usize
}

/// Walks the pinned conntrack table once at tick `now` and deletes what
/// has expired.
pub fn sweep(pins: &PinDir, now: u32) -> Result<Swept, Error> {
    let path = pins.map(CT);
    let fd = sys::obj_get(&path).map_err(|e| Error::Map(CT.into(), format!("opening {}: {e}", path.display())))?;
    let zero_key =
        CtKey { saddr: [0; 16], daddr: [0; 16], sport: [0; 2], dport: [0; 2], proto: 0, family: 0, dir: 0, pad: 0 };
    let mut keys = vec![zero_key; BATCH];
    let mut values = vec![CtEntry::default(); BATCH];
    let (mut cursor, mut swept) = (BatchCursor::default(), Swept::default());
    let mut dead = Vec::new();
    loop {
        let (n, done) = sys::map_lookup_batch(fd.as_fd(), &mut cursor, &mut keys, &mut values)
            .map_err(|e| Error::Map(CT.into(), format!("reading in batches: {e}")))?;
        swept.entries += n;
        dead.extend(keys[..n].iter().zip(&values[..n]).filter(|(k, e)| expired(k, e, now)).map(|(k, _)| *k));
        if done {
            break;
        }
    }
    for chunk in dead.chunks(BATCH) {
        swept.deleted += sys::map_delete_batch(fd.as_fd(), chunk)
            .map_err(|e| Error::Map(CT.into(), format!("deleting in batches: {e}")))?;
    }
    Ok(swept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::ct_key;
    use crate::types::CT_SERVICE;

    fn entry(seen: u32, flags: u32) -> CtEntry {
        CtEntry { seen, flags, ..Default::default() }
    }

    #[test]
    fn lifetimes_are_the_programs_own() {
        let tcp = ct_key("10.0.0.1".parse().unwrap(), 1000, "10.96.0.1".parse().unwrap(), 80, 6, CT_SERVICE);
        let udp = CtKey { proto: 17, ..tcp };
        // Alive through the last tick of its life, gone the tick after.
        assert!(!expired(&tcp, &entry(100, 0), 100 + CT_LIFE_TCP));
        assert!(expired(&tcp, &entry(100, 0), 101 + CT_LIFE_TCP));
        assert!(!expired(&tcp, &entry(100, CT_F_CLOSING), 100 + CT_LIFE_CLOSING));
        assert!(expired(&tcp, &entry(100, CT_F_CLOSING), 101 + CT_LIFE_CLOSING));
        assert!(!expired(&udp, &entry(100, CT_F_CLOSING), 100 + CT_LIFE_UDP));
        assert!(expired(&udp, &entry(100, 0), 101 + CT_LIFE_UDP));
        // The clock wraps as the programs' u32 arithmetic does.
        assert!(!expired(&tcp, &entry(u32::MAX - 2, CT_F_CLOSING), 5));
        assert!(expired(&tcp, &entry(u32::MAX - 2, CT_F_CLOSING), 9));
        // An entry stamped after `now` was read (a packet renewed it) lives.
        assert!(!expired(&tcp, &entry(101, 0), 100));
    }

    #[test]
    fn the_interval_follows_what_the_sweeps_find() {
        let cap = 262_144;
        let s = |entries, deleted| Swept { entries, deleted };
        let t = Duration::from_secs(8);
        // Nothing died: twice as long, up to the longest.
        assert_eq!(next_interval(t, s(100, 0), cap), Duration::from_secs(16));
        assert_eq!(next_interval(INTERVAL_MAX, s(0, 0), cap), INTERVAL_MAX);
        // A trickle: the table would take ages to fill, so twice as long.
        assert_eq!(next_interval(t, s(1_000, 80), cap), Duration::from_secs(16));
        // 10,000 dead a second with 31,072 live: half the table (131,072)
        // fills in 10 s.
        assert_eq!(next_interval(t, s(111_072, 80_000), cap), Duration::from_secs(10));
        // Live flows fill half the table already: as often as it may.
        assert_eq!(next_interval(t, s(140_000, 0), cap), INTERVAL_MIN);
        assert_eq!(next_interval(INTERVAL_MIN, s(262_144, 200_000), cap), INTERVAL_MIN);
    }
}
