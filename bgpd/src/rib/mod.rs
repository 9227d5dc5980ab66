//! Route storage and best-path selection.
//!
//! [`Rib`] is the Loc-RIB: every path received from every peer after import
//! policy (so each peer's Adj-RIB-In is the set of paths with that source)
//! plus locally originated routes, keyed by prefix. For each prefix,
//! [`decision`] ranks the paths per RFC 4271 §9.1.2, records for every
//! losing path the step at which it lost, and marks the ECMP multipath set.
//! Attribute sets are interned by [`intern::AttrInterner`], so identical
//! ones are stored once.

pub mod decision;
pub mod intern;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use ipnet::IpNet;

use crate::hash::IndexMap;
use crate::packet::{AsPath, Community, ExtCommunity, Family, LargeCommunity, Nlri, Origin, PathAttr};

pub use decision::{compare, rank, DecisionOptions, LossReason};

/// Who a path came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathSource {
    /// Originated by this node.
    Local,
    /// Learned from a peer. Shared by all of that session's paths, so a
    /// path costs a pointer, not a copy of the peer's facts.
    Peer(Arc<PeerRef>),
}

/// The facts about a peer the decision process and export need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerRef {
    pub address: IpAddr,
    pub asn: u32,
    pub router_id: Ipv4Addr,
    pub ebgp: bool,
    /// The peer is a route-reflector client of this node (RFC 4456).
    pub rr_client: bool,
}

/// The attributes of a path that matter to routing, after AS4 merging.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteAttrs {
    pub origin: Origin,
    pub as_path: AsPath,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    pub communities: Vec<Community>,
    pub ext_communities: Vec<ExtCommunity>,
    pub large_communities: Vec<LargeCommunity>,
    pub originator_id: Option<Ipv4Addr>,
    pub cluster_list: Vec<Ipv4Addr>,
    pub atomic_aggregate: bool,
    /// Other attributes to pass on (unknown transitive ones, AGGREGATOR).
    pub other: Vec<PathAttr>,
}

impl RouteAttrs {
    /// ORIGIN IGP, this AS path, nothing else.
    pub fn with_path(as_path: AsPath) -> Self {
        Self {
            origin: Origin::Igp,
            as_path,
            med: None,
            local_pref: None,
            communities: vec![],
            ext_communities: vec![],
            large_communities: vec![],
            originator_id: None,
            cluster_list: vec![],
            atomic_aggregate: false,
            other: vec![],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    pub source: PathSource,
    /// ADD-PATH identifier as received (0 without ADD-PATH).
    pub path_id: u32,
    pub next_hop: IpAddr,
    pub attrs: Arc<RouteAttrs>,
    /// Kept through the peer's graceful restart (RFC 4724) and not yet
    /// refreshed.
    pub stale: bool,
    /// For a path that is not best: the decision step at which it lost to
    /// the path ranked just before it. (Fits in the struct's padding.)
    pub lost_at: Option<LossReason>,
    /// On the best path: how many leading paths form the ECMP set (at
    /// least 1); 0 on the others. Set by ranking. It lives here, in the
    /// struct's last spare byte, rather than beside the paths, where it
    /// cost every destination 8 bytes of padding.
    pub ecmp: u8,
}

/// One prefix's paths, best first after [`Rib::insert`]/[`Rib::withdraw`].
#[derive(Debug, Clone, Default)]
pub struct Destination {
    /// Inline for the common single-path case: no second allocation.
    pub paths: smallvec::SmallVec<[Path; 1]>,
}

impl Destination {
    pub fn best(&self) -> Option<&Path> {
        self.paths.first()
    }

    /// The ECMP set: the best path and those equal to it up to the
    /// router-ID step, with distinct next hops.
    pub fn multipath(&self) -> &[Path] {
        &self.paths[..usize::from(self.multipath_len()).min(self.paths.len())]
    }

    /// How many leading paths form the ECMP set (0 without paths).
    pub fn multipath_len(&self) -> u8 {
        self.paths.first().map_or(0, |p| p.ecmp)
    }

    /// What export and the FIB see: the best path's identity and a digest
    /// of the multipath next hops (no allocation: this runs per change).
    fn fingerprint(&self) -> Option<(usize, u32, IpAddr, *const RouteAttrs, u128)> {
        let b = self.paths.first()?;
        // A cheap order-sensitive digest of the ECMP next hops.
        let digest = self.multipath().iter().fold(u128::from(self.multipath_len()), |acc, p| {
            let v = match p.next_hop {
                IpAddr::V4(a) => u128::from(u32::from(a)),
                IpAddr::V6(a) => u128::from(a),
            };
            acc.rotate_left(7) ^ v
        });
        Some((b.source.identity(), b.path_id, b.next_hop, Arc::as_ptr(&b.attrs), digest))
    }

    /// The kind of the best path's source, for export fan-out.
    pub fn best_kind(&self) -> u8 {
        self.paths.first().map_or(0, |p| p.source.kind_bit())
    }
}

impl PathSource {
    pub const LOCAL: u8 = 1;
    pub const EBGP: u8 = 2;
    pub const IBGP_CLIENT: u8 = 4;
    pub const IBGP: u8 = 8;

    /// Which session a path came from, as a number (0 for local routes):
    /// one session's paths share one `PeerRef`.
    pub fn identity(&self) -> usize {
        match self {
            Self::Local => 0,
            Self::Peer(r) => Arc::as_ptr(r) as usize,
        }
    }

    /// One bit naming the kind of source: which peers export can send a
    /// path of this kind to depends only on it.
    pub fn kind_bit(&self) -> u8 {
        match self {
            Self::Local => Self::LOCAL,
            Self::Peer(r) if r.ebgp => Self::EBGP,
            Self::Peer(r) if r.rr_client => Self::IBGP_CLIENT,
            Self::Peer(_) => Self::IBGP,
        }
    }
}

/// A prefix whose best path changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Changed {
    pub prefix: IpNet,
    /// The kinds of source involved: [`PathSource::kind_bit`] of the old
    /// and the new best path, or-ed.
    pub kinds: u8,
    /// Where the destination sat in the table, for [`Rib::get_hinted`]
    /// ([`NO_SLOT`] if unknown).
    pub slot: u32,
}

/// A [`Changed::slot`] that tells nothing.
pub const NO_SLOT: u32 = u32::MAX;

/// What a RIB change did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    /// A new path (not a replacement) was added.
    pub added: bool,
    /// A path was removed.
    pub removed: bool,
    /// The best path or the multipath set changed: export and the FIB must
    /// look at this prefix again.
    pub best_changed: bool,
    /// [`PathSource::kind_bit`] of the best path before and after, or-ed.
    pub kinds: u8,
    /// The destination's place in the table ([`NO_SLOT`] once it is gone).
    pub slot: u32,
}

impl Outcome {
    /// The change to queue for export, if the best path changed.
    pub fn changed(&self, prefix: IpNet) -> Option<Changed> {
        self.best_changed.then_some(Changed { prefix, kinds: self.kinds, slot: self.slot })
    }
}

#[derive(Debug, Default)]
pub struct Rib {
    /// A hash table over a dense vector: one probe per lookup, and a compact
    /// layout (a 1M-prefix table is about the size of the B-tree it
    /// replaced, at a fraction of the lookup cost). Order is insertion
    /// order, perturbed by removals; callers that show routes sort them.
    dests: IndexMap<IpNet, Destination>,
    opts: DecisionOptions,
    interner: intern::AttrInterner,
}

impl Rib {
    pub fn new(opts: DecisionOptions) -> Self {
        Self { dests: IndexMap::default(), opts, interner: intern::AttrInterner::default() }
    }

    /// The shared copy of an attribute set (identical sets are stored once).
    pub fn intern(&mut self, attrs: RouteAttrs) -> Arc<RouteAttrs> {
        self.interner.intern(attrs)
    }

    /// [`Rib::intern`] of a set already in an `Arc`, which is stored as it
    /// is when no equal set is there (no copy).
    pub fn intern_arc(&mut self, attrs: Arc<RouteAttrs>) -> Arc<RouteAttrs> {
        self.interner.intern_arc(attrs)
    }

    /// How many distinct attribute sets are stored.
    pub fn attr_sets(&self) -> usize {
        self.interner.len()
    }

    /// Adds or replaces the path with the same source and path id.
    pub fn insert(&mut self, prefix: IpNet, path: Path) -> Outcome {
        let entry = self.dests.entry(prefix);
        let slot = u32::try_from(entry.index()).unwrap_or(NO_SLOT);
        let d = entry.or_default();
        let old = d.fingerprint();
        let old_kind = d.best_kind();
        let before = d.paths.len();
        d.paths.retain(|p| !(p.source == path.source && p.path_id == path.path_id));
        let added = d.paths.len() == before;
        d.paths.push(path);
        Self::rank(d, &self.opts);
        Outcome { added, removed: false, best_changed: d.fingerprint() != old, kinds: old_kind | d.best_kind(), slot }
    }

    /// Removes one path.
    pub fn withdraw(&mut self, prefix: &IpNet, source: &PathSource, path_id: u32) -> Outcome {
        let Some((slot, _, d)) = self.dests.get_full_mut(prefix) else { return Outcome::default() };
        let slot = u32::try_from(slot).unwrap_or(NO_SLOT);
        let old = d.fingerprint();
        let old_kind = d.best_kind();
        let before = d.paths.len();
        d.paths.retain(|p| !(&p.source == source && p.path_id == path_id));
        let removed = d.paths.len() != before;
        if d.paths.is_empty() {
            self.dests.swap_remove(prefix);
            return Outcome { added: false, removed, best_changed: removed, kinds: old_kind, slot: NO_SLOT };
        }
        if removed {
            Self::rank(d, &self.opts);
        }
        Outcome { added: false, removed, best_changed: d.fingerprint() != old, kinds: old_kind | d.best_kind(), slot }
    }

    /// Removes every path from `source`. Returns how many, and the prefixes
    /// whose best path or multipath set changed. Only the destinations that
    /// lost a path are ranked again.
    pub fn remove_source(&mut self, source: &PathSource) -> (usize, Vec<Changed>) {
        self.remove_where(None, |p| &p.source == source)
    }

    /// Removes the paths `gone` selects, in every destination (or those of
    /// one family), ranking again only where something went.
    fn remove_where(&mut self, family: Option<Family>, gone: impl Fn(&Path) -> bool) -> (usize, Vec<Changed>) {
        let mut n = 0;
        let mut changed = Vec::new();
        let opts = self.opts;
        self.dests.retain(|prefix, d| {
            if family.is_some_and(|f| Nlri::new(*prefix).family() != f) {
                return true;
            }
            let before = d.paths.len();
            let old = d.fingerprint();
            let old_kind = d.best_kind();
            d.paths.retain(|p| !gone(p));
            if d.paths.len() != before {
                n += before - d.paths.len();
                Self::rank(d, &opts);
                if d.fingerprint() != old {
                    // `retain` moves entries: no slot hint.
                    changed.push(Changed { prefix: *prefix, kinds: old_kind | d.best_kind(), slot: NO_SLOT });
                }
            }
            !d.paths.is_empty()
        });
        (n, changed)
    }

    fn rank(d: &mut Destination, opts: &DecisionOptions) {
        let (loss, multipath) = decision::rank(&mut d.paths, opts);
        let ecmp = u8::try_from(multipath).unwrap_or(u8::MAX);
        for (i, p) in d.paths.iter_mut().enumerate() {
            p.lost_at = i.checked_sub(1).and_then(|j| loss.get(j).copied());
            p.ecmp = if i == 0 { ecmp } else { 0 };
        }
    }

    /// Marks every path from the peer at `addr` stale (RFC 4724 §4.2, the
    /// receiving speaker). Returns how many.
    pub fn mark_stale(&mut self, addr: IpAddr) -> usize {
        let mut n = 0;
        for d in self.dests.values_mut() {
            for p in &mut d.paths {
                if matches!(&p.source, PathSource::Peer(r) if r.address == addr) {
                    p.stale = true;
                    n += 1;
                }
            }
        }
        n
    }

    /// Removes the stale paths from the peer at `addr` (of one family, or
    /// all). Returns how many, and the prefixes whose best path changed.
    pub fn purge_stale(&mut self, addr: IpAddr, family: Option<Family>) -> (usize, Vec<Changed>) {
        self.remove_where(family, |p| p.stale && matches!(&p.source, PathSource::Peer(r) if r.address == addr))
    }

    pub fn options(&self) -> &DecisionOptions {
        &self.opts
    }

    pub fn get(&self, prefix: &IpNet) -> Option<&Destination> {
        self.dests.get(prefix)
    }

    /// [`Rib::get`], trying the slot a [`Changed`] recorded first: when the
    /// destination has not moved since, that is one read of the entry in
    /// place of a hash-table probe.
    pub fn get_hinted(&self, prefix: &IpNet, slot: u32) -> Option<&Destination> {
        match self.dests.get_index(slot as usize) {
            Some((k, d)) if k == prefix => Some(d),
            _ => self.dests.get(prefix),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&IpNet, &Destination)> {
        self.dests.iter()
    }

    /// Number of paths from `source`.
    pub fn count_source(&self, source: &PathSource) -> usize {
        self.dests.values().map(|d| d.paths.iter().filter(|p| &p.source == source).count()).sum()
    }

    pub fn len(&self) -> usize {
        self.dests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.dests.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(addr: &str, stale: bool) -> Path {
        Path {
            source: PathSource::Peer(Arc::new(PeerRef {
                address: addr.parse().unwrap(),
                asn: 65001,
                router_id: Ipv4Addr::new(1, 1, 1, 1),
                ebgp: true,
                rr_client: false,
            })),
            path_id: 0,
            next_hop: addr.parse().unwrap(),
            attrs: Arc::new(RouteAttrs::with_path(AsPath::sequence(vec![65001]))),
            stale,
            lost_at: None,
            ecmp: 0,
        }
    }

    #[test]
    fn stale_paths_are_kept_refreshed_and_purged_per_family() {
        let mut rib = Rib::default();
        let v4: IpNet = "10.1.0.0/24".parse().unwrap();
        let v4b: IpNet = "10.2.0.0/24".parse().unwrap();
        let v6: IpNet = "fd00::/64".parse().unwrap();
        for p in [v4, v4b, v6] {
            assert!(rib.insert(p, path("10.0.0.2", false)).best_changed);
        }
        assert_eq!(rib.mark_stale("10.0.0.2".parse().unwrap()), 3);
        // A refresh replaces the stale path.
        let o = rib.insert(v4, path("10.0.0.2", false));
        assert!(!o.added);
        assert!(!rib.get(&v4).unwrap().paths[0].stale);
        // End-of-RIB for IPv4 purges what was not refreshed, in IPv4 only.
        let (n, changed) = rib.purge_stale("10.0.0.2".parse().unwrap(), Some(Family::Ipv4Unicast));
        assert_eq!((n, changed), (1, vec![Changed { prefix: v4b, kinds: PathSource::EBGP, slot: NO_SLOT }]));
        assert!(rib.get(&v6).unwrap().paths[0].stale);
        let (n, _) = rib.purge_stale("10.0.0.2".parse().unwrap(), None);
        assert_eq!(n, 1);
        assert_eq!(rib.len(), 1);
    }

    /// A destination is its one inline path and the vector's length: the
    /// ECMP count rides in the best path's spare byte (a million
    /// destinations are 8 MB smaller than with a field of its own).
    #[test]
    fn a_destination_costs_no_more_than_one_inline_path() {
        assert_eq!(std::mem::size_of::<Path>(), 40);
        assert_eq!(std::mem::size_of::<Destination>(), 48);
    }

    #[test]
    fn the_ecmp_count_follows_the_best_path_through_changes() {
        let mut rib = Rib::default();
        let p: IpNet = "10.1.0.0/24".parse().unwrap();
        for a in ["10.0.0.2", "10.0.0.3", "10.0.0.4"] {
            rib.insert(p, path(a, false));
        }
        let d = rib.get(&p).unwrap();
        assert_eq!(d.multipath_len(), 3, "equal eBGP paths from one AS form one ECMP set");
        assert_eq!(d.multipath().len(), 3);
        assert!(d.paths[1..].iter().all(|x| x.ecmp == 0));
        let first = d.paths[0].source.clone();
        rib.withdraw(&p, &first, 0);
        let d = rib.get(&p).unwrap();
        assert_eq!((d.multipath_len(), d.paths[0].ecmp, d.paths[1].ecmp), (2, 2, 0));
        let opts = DecisionOptions { max_paths: 1, ..DecisionOptions::default() };
        let mut one = Rib::new(opts);
        one.insert(p, path("10.0.0.2", false));
        one.insert(p, path("10.0.0.3", false));
        assert_eq!(one.get(&p).unwrap().multipath_len(), 1);
    }
}
