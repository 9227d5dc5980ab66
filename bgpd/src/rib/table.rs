//! The Loc-RIB's table: destinations in a dense vector, found by a hash
//! index of `u32` slots, as `indexmap` lays them out but smaller.
//!
//! `indexmap` keeps a `usize` index per bucket and the key's hash beside
//! each entry (8 + 8 bytes a prefix). Here the index holds `u32` slots and
//! no hash is stored: a lookup compares the key in the entry the slot
//! names, as `indexmap` does anyway, and a resize hashes the keys again,
//! which is cheap next to reading the entry. At a million prefixes that is
//! 16 MiB less. Slots are positions in the vector: [`Table::swap_remove`]
//! moves the last entry into the hole, as `IndexMap::swap_remove_index`.

use hashbrown::HashTable;
use ipnet::IpNet;
use std::hash::BuildHasher;

use crate::hash::RandomState;

#[derive(Debug, Default)]
pub struct Table<V> {
    entries: Vec<(IpNet, V)>,
    index: HashTable<u32>,
    hasher: RandomState,
}

impl<V> Table<V> {
    fn hash(hasher: &RandomState, key: &IpNet) -> u64 {
        hasher.hash_one(key)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The slot of `key`, if it is in the table.
    pub fn slot_of(&self, key: &IpNet) -> Option<usize> {
        let entries = &self.entries;
        self.index.find(Self::hash(&self.hasher, key), |&i| entries[i as usize].0 == *key).map(|&i| i as usize)
    }

    pub fn get(&self, key: &IpNet) -> Option<&V> {
        self.slot_of(key).map(|i| &self.entries[i].1)
    }

    pub fn get_full(&self, key: &IpNet) -> Option<(usize, &V)> {
        self.slot_of(key).map(|i| (i, &self.entries[i].1))
    }

    pub fn get_full_mut(&mut self, key: &IpNet) -> Option<(usize, &mut V)> {
        self.slot_of(key).map(|i| (i, &mut self.entries[i].1))
    }

    pub fn get_index(&self, slot: usize) -> Option<(&IpNet, &V)> {
        self.entries.get(slot).map(|(k, v)| (k, v))
    }

    pub fn get_index_mut(&mut self, slot: usize) -> Option<(&IpNet, &mut V)> {
        self.entries.get_mut(slot).map(|(k, v)| (&*k, v))
    }

    /// The slot of `key`, inserting `make()` at the end when it is not in
    /// the table; and whether it was there. Panics only past `u32::MAX`
    /// entries, which no table of prefixes reaches before memory runs out.
    pub fn slot_or_insert_with(&mut self, key: IpNet, make: impl FnOnce() -> V) -> (usize, bool) {
        let hash = Self::hash(&self.hasher, &key);
        let entries = &self.entries;
        if let Some(&i) = self.index.find(hash, |&i| entries[i as usize].0 == key) {
            return (i as usize, true);
        }
        let slot = u32::try_from(self.entries.len()).expect("fewer than 2^32 destinations");
        let (entries, hasher) = (&self.entries, &self.hasher);
        self.index.insert_unique(hash, slot, |&i| Self::hash(hasher, &entries[i as usize].0));
        self.entries.push((key, make()));
        (slot as usize, false)
    }

    /// Removes the entry in `slot`; the last entry takes its place.
    pub fn swap_remove(&mut self, slot: usize) -> Option<(IpNet, V)> {
        let last = self.entries.len().checked_sub(1)?;
        if slot > last {
            return None;
        }
        let hash = Self::hash(&self.hasher, &self.entries[slot].0);
        if let Ok(e) = self.index.find_entry(hash, |&i| i as usize == slot) {
            e.remove();
        }
        if slot != last {
            let moved = Self::hash(&self.hasher, &self.entries[last].0);
            if let Some(i) = self.index.find_mut(moved, |&i| i as usize == last) {
                *i = slot as u32;
            }
        }
        Some(self.entries.swap_remove(slot))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&IpNet, &V)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&IpNet, &mut V)> {
        self.entries.iter_mut().map(|(k, v)| (&*k, v))
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn net(i: u32) -> IpNet {
        IpNet::V4(ipnet::Ipv4Net::new(std::net::Ipv4Addr::from(i << 8), 24).unwrap())
    }

    /// Every key finds its own slot, every slot names its own key.
    fn consistent(t: &Table<u32>, model: &BTreeMap<IpNet, u32>) {
        assert_eq!(t.len(), model.len());
        for (slot, (k, v)) in t.iter().enumerate() {
            assert_eq!(t.slot_of(k), Some(slot), "{k}");
            assert_eq!(model.get(k), Some(v), "{k}");
        }
        for k in model.keys() {
            assert!(t.get(k).is_some(), "{k} lost");
        }
    }

    #[test]
    fn inserts_removals_and_moves_keep_every_slot_right() {
        let mut t = Table::default();
        let mut model = BTreeMap::new();
        for i in 0..5000u32 {
            let (slot, there) = t.slot_or_insert_with(net(i), || i);
            assert!(!there);
            assert_eq!(slot, i as usize);
            model.insert(net(i), i);
        }
        assert_eq!(t.slot_or_insert_with(net(7), || 0), (7, true), "found, not inserted again");
        consistent(&t, &model);
        // Removals from the front, the middle and the end, with the last
        // entry moving into each hole.
        let mut x = 12345u32;
        for _ in 0..3000 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let slot = (x as usize) % t.len();
            let last_key = *t.get_index(t.len() - 1).unwrap().0;
            let (k, v) = t.swap_remove(slot).unwrap();
            assert_eq!(model.remove(&k), Some(v));
            if slot < t.len() {
                assert_eq!(t.get_index(slot).unwrap().0, &last_key, "the last took the hole");
            }
        }
        consistent(&t, &model);
        assert_eq!(t.swap_remove(t.len()), None);
        // Removed keys come back at the end.
        for i in 0..5000u32 {
            if let std::collections::btree_map::Entry::Vacant(v) = model.entry(net(i)) {
                let (slot, there) = t.slot_or_insert_with(net(i), || i + 1);
                assert!(!there && slot == t.len() - 1);
                v.insert(i + 1);
            }
        }
        consistent(&t, &model);
        while t.len() > 0 {
            let (k, _) = t.swap_remove(0).unwrap();
            model.remove(&k);
        }
        consistent(&t, &model);
    }
}
