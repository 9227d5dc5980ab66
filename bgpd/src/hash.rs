//! Hash maps for the hot paths (the Loc-RIB, export queues, attribute
//! interning). Their keys are prefixes and attributes a peer chooses, so the
//! hasher must be seeded per process; foldhash's `fast` hasher is, and it is
//! several times cheaper than the standard SipHash on these small keys.

pub type RandomState = foldhash::fast::RandomState;
pub type HashMap<K, V> = std::collections::HashMap<K, V, RandomState>;
pub type HashSet<T> = std::collections::HashSet<T, RandomState>;
pub type IndexMap<K, V> = indexmap::IndexMap<K, V, RandomState>;
pub type IndexSet<T> = indexmap::IndexSet<T, RandomState>;
