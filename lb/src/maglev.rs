//! The Maglev lookup table (NSDI 2016, section 3.4).
//!
//! Each backend has a preference list, a permutation of the table's slots
//! `(offset + j * skip) mod M` with `offset` and `skip` from two hashes of
//! the backend's key; backends take turns claiming their next preferred
//! free slot until the table is full. Three properties follow, and the
//! tests hold them:
//!
//! - **Balance**: turns are round-robin, so every backend holds
//!   `floor(M/N)` or `ceil(M/N)` slots.
//! - **Minimal disruption**: removing one of N backends moves about 1/N of
//!   the slots (its own, and a few more), adding one takes about 1/(N+1).
//!   The "few more" grow as M/N shrinks: in this table of 16381, removing
//!   one of 10 backends moves 1.06/N, of 50 1.54/N, of 100 2.96/N, which is
//!   why M should stay above 100 N (below that, [`table`] refuses).
//! - **Agreement**: the table depends only on the set of backend keys and
//!   M, not on their order, so every node that knows the same backends
//!   builds the same table. Keys are the bytes the caller chooses (the
//!   backend's address and port); the hashes are fixed, never seeded per
//!   process.
//!
//! `M` must be prime (so every `skip` in `1..M` visits every slot); merle
//! uses 16381 by default, as Cilium does.

/// The default table size, a prime.
pub const DEFAULT_SIZE: u32 = 16381;

/// Why a table cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("the Maglev table size {0} is not a prime (try 251, 509, 1021, 2039, 4093, 8191, 16381, 32749 or 65521)")]
    NotPrime(u32),
    #[error(
        "the Maglev table size {size} is smaller than 100 times the {backends} backends: the shares would be uneven"
    )]
    TooSmall { size: u32, backends: usize },
    #[error("two backends have the same key {0:?}")]
    DuplicateKey(Vec<u8>),
}

/// Whether `n` is prime (trial division: table sizes are small).
pub fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    if n % 2 == 0 {
        return n == 2;
    }
    let mut d = 3u32;
    while d.saturating_mul(d) <= n {
        if n % d == 0 {
            return false;
        }
        d += 2;
    }
    true
}

/// FNV-1a over `bytes` from the basis `seed`, then MurmurHash3's 64-bit
/// finaliser, so that keys differing in one byte get unrelated offsets and
/// skips.
fn hash(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = seed;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

const OFFSET_SEED: u64 = 0xcbf2_9ce4_8422_2325;
const SKIP_SEED: u64 = 0x6c62_272e_07bb_0142;

/// The table of size `size` for backends with these keys: for each slot,
/// the index (into `keys`) of the backend that serves it. No backends, no
/// table.
pub fn table<K: AsRef<[u8]>>(keys: &[K], size: u32) -> Result<Vec<u32>, Error> {
    if !is_prime(size) {
        return Err(Error::NotPrime(size));
    }
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    if u64::from(size) < 100 * keys.len() as u64 {
        return Err(Error::TooSmall { size, backends: keys.len() });
    }
    // Turns go in key order, whatever order the caller gave.
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by(|a, b| keys[*a].as_ref().cmp(keys[*b].as_ref()));
    for w in order.windows(2) {
        if keys[w[0]].as_ref() == keys[w[1]].as_ref() {
            return Err(Error::DuplicateKey(keys[w[0]].as_ref().to_vec()));
        }
    }
    let m = u64::from(size);
    let prefs: Vec<(u64, u64)> = order
        .iter()
        .map(|i| {
            let k = keys[*i].as_ref();
            (hash(OFFSET_SEED, k) % m, hash(SKIP_SEED, k) % (m - 1) + 1)
        })
        .collect();
    let mut next = vec![0u64; order.len()];
    let mut slots = vec![u32::MAX; size as usize];
    let mut filled = 0u64;
    'fill: loop {
        for (turn, &backend) in order.iter().enumerate() {
            let (offset, skip) = prefs[turn];
            // A prime size and 1 <= skip < M: the preference list visits
            // every slot within M steps, so a free one is always found.
            let mut c = (offset + next[turn] * skip) % m;
            while slots[c as usize] != u32::MAX {
                next[turn] += 1;
                c = (offset + next[turn] * skip) % m;
            }
            slots[c as usize] = u32::try_from(backend).unwrap_or(u32::MAX);
            next[turn] += 1;
            filled += 1;
            if filled == m {
                break 'fill;
            }
        }
    }
    Ok(slots)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn keys(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| format!("10.244.{}.{}:8080", i / 200, i % 200 + 1).into_bytes()).collect()
    }

    fn shares(t: &[u32], n: usize) -> Vec<usize> {
        let mut s = vec![0; n];
        for b in t {
            s[*b as usize] += 1;
        }
        s
    }

    /// Slots whose backend (by key) differs between two tables.
    fn moved(a: &[u32], ka: &[Vec<u8>], b: &[u32], kb: &[Vec<u8>]) -> usize {
        a.iter().zip(b).filter(|(x, y)| ka[**x as usize] != kb[**y as usize]).count()
    }

    #[test]
    fn sizes_must_be_prime_and_large_enough() {
        assert!(is_prime(16381) && is_prime(251) && is_prime(65521) && is_prime(2));
        assert!(!is_prime(16383) && !is_prime(1) && !is_prime(0) && !is_prime(65536));
        assert_eq!(table(&keys(3), 16383), Err(Error::NotPrime(16383)));
        assert_eq!(table(&keys(3), 251), Err(Error::TooSmall { size: 251, backends: 3 }));
        assert_eq!(table(&keys(0), 16381), Ok(vec![]));
        let dup = vec![b"a".to_vec(), b"b".to_vec(), b"a".to_vec()];
        assert_eq!(table(&dup, 16381), Err(Error::DuplicateKey(b"a".to_vec())));
    }

    #[test]
    fn every_backend_gets_its_share_within_one_slot() {
        for n in [1, 2, 3, 7, 10, 100, 163] {
            let t = table(&keys(n), DEFAULT_SIZE).unwrap();
            assert_eq!(t.len(), DEFAULT_SIZE as usize);
            let s = shares(&t, n);
            let (lo, hi) = (*s.iter().min().unwrap(), *s.iter().max().unwrap());
            assert!(hi - lo <= 1, "{n} backends: shares {lo}..{hi}");
            let fair = f64::from(DEFAULT_SIZE) / n as f64;
            assert!((hi as f64 - fair).abs() / fair < 0.01, "{n} backends: within 1% of {fair}");
        }
    }

    #[test]
    fn the_table_does_not_depend_on_the_order_of_the_backends() {
        let k = keys(10);
        let t = table(&k, DEFAULT_SIZE).unwrap();
        let mut rev = k.clone();
        rev.reverse();
        let r = table(&rev, DEFAULT_SIZE).unwrap();
        assert_eq!(moved(&t, &k, &r, &rev), 0);
    }

    #[test]
    fn a_known_table_start() {
        // Every node of every version must build this same table: a change
        // of the hashes or the fill is a change of every flow's backend.
        let k = vec![b"10.0.0.1:80".to_vec(), b"10.0.0.2:80".to_vec(), b"10.0.0.3:80".to_vec()];
        let t = table(&k, 331).unwrap();
        assert_eq!(t.len(), 331);
        assert_eq!(&t[..24], KNOWN_331);
    }

    const KNOWN_331: &[u32] = &[2, 2, 1, 2, 0, 1, 1, 2, 2, 0, 1, 1, 1, 2, 2, 0, 1, 1, 1, 0, 2, 0, 1, 1];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Removing one of N backends moves its own slots and few more:
        /// at most twice 1/N of the table (the paper measures close to
        /// 1/N), and every slot that was not the removed backend's stays
        /// with probability well over 90%.
        #[test]
        fn removing_a_backend_moves_about_one_nth(n in 3usize..60, gone in 0usize..60) {
            let gone = gone % n;
            let k = keys(n);
            let t = table(&k, DEFAULT_SIZE).unwrap();
            let mut k2 = k.clone();
            k2.remove(gone);
            let t2 = table(&k2, DEFAULT_SIZE).unwrap();
            let m = DEFAULT_SIZE as usize;
            let own = t.iter().filter(|b| **b as usize == gone).count();
            let total = moved(&t, &k, &t2, &k2);
            prop_assert!(total >= own, "its own slots all move");
            prop_assert!(total <= 2 * m / n + 1, "{n} backends: {total} of {m} moved");
            let others = total - own;
            prop_assert!((others as f64) < 0.1 * m as f64, "{others} slots of other backends moved");
        }

        /// Adding a backend takes about 1/(N+1) of the table, from all.
        #[test]
        fn adding_a_backend_takes_about_its_share(n in 2usize..60) {
            let k = keys(n + 1);
            let before: Vec<Vec<u8>> = k[..n].to_vec();
            let t = table(&before, DEFAULT_SIZE).unwrap();
            let t2 = table(&k, DEFAULT_SIZE).unwrap();
            let m = DEFAULT_SIZE as usize;
            let total = moved(&t, &before, &t2, &k);
            let share = m / (n + 1);
            prop_assert!(total >= share, "the new backend's slots changed hands");
            prop_assert!(total <= 2 * share + 1, "{n}+1 backends: {total} of {m} moved");
        }
    }
}
