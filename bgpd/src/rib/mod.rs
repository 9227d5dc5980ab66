//! Route storage and best-path selection.
//!
//! [`Rib`] is the Loc-RIB: every path received from every peer after import
//! policy (so each peer's Adj-RIB-In is the set of paths with that source)
//! plus locally originated routes, keyed by prefix. For each prefix,
//! [`decision`] ranks the paths per RFC 4271 §9.1.2, records for every
//! losing path the step at which it lost, and marks the ECMP multipath set.
//! Attribute sets are interned by [`intern::AttrInterner`], so identical
//! ones are stored once. [`adj_out`] records which prefixes each session
//! has been sent (the Adj-RIB-Out, one bit per prefix per session).

pub mod adj_out;
pub mod decision;
pub mod intern;
mod table;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use ipnet::IpNet;

use crate::packet::{AsPath, Community, ExtCommunity, Family, LargeCommunity, Nlri, Origin, PathAttr};

pub use adj_out::OutId;
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
    /// A hash index over a dense vector ([`table`]): one probe per
    /// lookup, and 72 bytes a single-path prefix plus 5 of index. Order is
    /// insertion order, perturbed by removals; callers that show routes
    /// sort them.
    dests: table::Table<Destination>,
    opts: DecisionOptions,
    interner: intern::AttrInterner,
    adj_out: adj_out::AdjOut,
    /// Destinations without paths kept for a session that still holds
    /// them ([`adj_out`]).
    tombstones: usize,
}

impl Rib {
    pub fn new(opts: DecisionOptions) -> Self {
        Self {
            dests: table::Table::default(),
            opts,
            interner: intern::AttrInterner::default(),
            adj_out: adj_out::AdjOut::default(),
            tombstones: 0,
        }
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
        let (index, there) = self.dests.slot_or_insert_with(prefix, Destination::default);
        let slot = u32::try_from(index).unwrap_or(NO_SLOT);
        let Some((_, d)) = self.dests.get_index_mut(index) else { return Outcome::default() };
        if there && d.paths.is_empty() {
            // A tombstone comes back to life.
            self.tombstones -= 1;
        }
        let old = d.fingerprint();
        let old_kind = d.best_kind();
        let before = d.paths.len();
        d.paths.retain(|p| !(p.source == path.source && p.path_id == path.path_id));
        let added = d.paths.len() == before;
        d.paths.push(path);
        Self::rank(d, &self.opts);
        let (best_changed, kinds) = (d.fingerprint() != old, old_kind | d.best_kind());
        if best_changed {
            self.adj_out.queue(prefix, index, kinds);
        }
        Outcome { added, removed: false, best_changed, kinds, slot }
    }

    /// Removes one path.
    pub fn withdraw(&mut self, prefix: &IpNet, source: &PathSource, path_id: u32) -> Outcome {
        let Some((index, d)) = self.dests.get_full_mut(prefix) else { return Outcome::default() };
        let slot = u32::try_from(index).unwrap_or(NO_SLOT);
        let old = d.fingerprint();
        let old_kind = d.best_kind();
        let before = d.paths.len();
        d.paths.retain(|p| !(&p.source == source && p.path_id == path_id));
        let removed = d.paths.len() != before;
        if d.paths.is_empty() {
            if !removed {
                // Already a tombstone.
                return Outcome::default();
            }
            // Queued first: a consumer that wants the removal keeps the
            // destination until it has dealt with it.
            self.adj_out.queue(*prefix, index, old_kind);
            let slot = if self.emptied(index) { slot } else { NO_SLOT };
            return Outcome { added: false, removed, best_changed: true, kinds: old_kind, slot };
        }
        if removed {
            Self::rank(d, &self.opts);
        }
        let (best_changed, kinds) = (d.fingerprint() != old, old_kind | d.best_kind());
        if best_changed {
            self.adj_out.queue(*prefix, index, kinds);
        }
        Outcome { added: false, removed, best_changed, kinds, slot }
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
        let mut emptied = Vec::new();
        let opts = self.opts;
        let adj_out = &mut self.adj_out;
        for (slot, (prefix, d)) in self.dests.iter_mut().enumerate() {
            if family.is_some_and(|f| Nlri::new(*prefix).family() != f) {
                continue;
            }
            let before = d.paths.len();
            if before == 0 {
                continue;
            }
            let old = d.fingerprint();
            let old_kind = d.best_kind();
            d.paths.retain(|p| !gone(p));
            if d.paths.len() != before {
                n += before - d.paths.len();
                Self::rank(d, &opts);
                if d.fingerprint() != old {
                    let kinds = old_kind | d.best_kind();
                    adj_out.queue(*prefix, slot, kinds);
                    // Slots move as emptied destinations go: no hint.
                    changed.push(Changed { prefix: *prefix, kinds, slot: NO_SLOT });
                }
                if d.paths.is_empty() {
                    emptied.push(slot);
                }
            }
        }
        // Highest slot first, so the destination that moves into a freed
        // slot is never one still to be removed.
        for slot in emptied.into_iter().rev() {
            self.emptied(slot);
        }
        (n, changed)
    }

    /// The destination in `slot` has just lost its last path: it stays as
    /// a tombstone while a consumer holds or has queued it (returns true),
    /// and leaves the table otherwise.
    fn emptied(&mut self, slot: usize) -> bool {
        if self.adj_out.any(slot) {
            self.tombstones += 1;
            return true;
        }
        self.remove_slot(slot);
        false
    }

    /// Removes the destination in `slot`, which no session holds: the last
    /// one takes its place, with its Adj-RIB-Out bits.
    fn remove_slot(&mut self, slot: usize) {
        let last = self.dests.len() - 1;
        self.dests.swap_remove(slot);
        if slot != last {
            self.adj_out.moved(last, slot);
        }
    }

    /// Drops the tombstones in `slots` that no session holds any more,
    /// highest slot first (see [`Rib::remove_where`]).
    fn sweep(&mut self, mut slots: Vec<usize>) {
        slots.sort_unstable_by(|a, b| b.cmp(a));
        slots.dedup();
        for slot in slots {
            let empty = self.dests.get_index(slot).is_some_and(|(_, d)| d.paths.is_empty());
            if empty && !self.adj_out.any(slot) {
                self.tombstones -= 1;
                self.remove_slot(slot);
            }
        }
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
    /// receiving speaker). Returns how many, and their families.
    pub fn mark_stale(&mut self, addr: IpAddr) -> (usize, crate::packet::FamilySet) {
        let mut n = 0;
        let mut families = crate::packet::FamilySet::default();
        for (prefix, d) in self.dests.iter_mut() {
            for p in &mut d.paths {
                if matches!(&p.source, PathSource::Peer(r) if r.address == addr) {
                    p.stale = true;
                    n += 1;
                    families.insert(Nlri::new(*prefix).family());
                }
            }
        }
        (n, families)
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
        self.dests.get(prefix).filter(|d| !d.paths.is_empty())
    }

    /// [`Rib::get`], trying the slot a [`Changed`] recorded first: when the
    /// destination has not moved since, that is one read of the entry in
    /// place of a hash-table probe.
    pub fn get_hinted(&self, prefix: &IpNet, slot: u32) -> Option<&Destination> {
        self.get_any(prefix, slot).map(|(_, d)| d).filter(|d| !d.paths.is_empty())
    }

    /// The destination and its slot, tombstones included.
    fn get_any(&self, prefix: &IpNet, hint: u32) -> Option<(usize, &Destination)> {
        match self.dests.get_index(hint as usize) {
            Some((k, d)) if k == prefix => Some((hint as usize, d)),
            _ => self.dests.get_full(prefix),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&IpNet, &Destination)> {
        self.dests.iter().filter(|(_, d)| !d.paths.is_empty())
    }

    /// Number of paths from `source`.
    pub fn count_source(&self, source: &PathSource) -> usize {
        self.dests.values().map(|d| d.paths.iter().filter(|p| &p.source == source).count()).sum()
    }

    pub fn len(&self) -> usize {
        self.dests.len() - self.tombstones
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Opens a consumer of the RIB's changes: a session's Adj-RIB-Out and
    /// export queue (it holds nothing yet), or the FIB's queue. From now
    /// on every best-path change involving a kind in `interest` (the
    /// [`PathSource::kind_bit`]s it can be sent) is queued for it.
    pub fn open_adj_out(&mut self, interest: u8) -> OutId {
        self.adj_out.open(interest)
    }

    /// Changes the kinds of route consumer `id` can be sent.
    pub fn set_interest(&mut self, id: OutId, interest: u8) {
        self.adj_out.set_interest(id, interest);
    }

    /// Takes consumer `id`'s queued changes, oldest first: each prefix
    /// once, with its slot when queued (a hint). Each stays queued (a new
    /// change to it is not queued again) until the consumer deals with it:
    /// [`Rib::record_sent`] for a session, [`Rib::dequeue`] for the FIB.
    pub fn take_queue(&mut self, id: OutId) -> Vec<(IpNet, u32)> {
        self.adj_out.take(id)
    }

    /// The consumers something was queued for since the last call (to be
    /// woken).
    pub fn take_woken(&mut self) -> Vec<OutId> {
        self.adj_out.woken()
    }

    /// How many changes consumer `id` has queued and not dealt with.
    pub fn queued(&self, id: OutId) -> usize {
        self.adj_out.queued(id)
    }

    /// Consumer `id` (the FIB) deals with queued changes: `f` sees each
    /// prefix's destination (`None` once it has no paths), and the changes
    /// are no longer queued.
    pub fn dequeue<T>(
        &mut self,
        id: OutId,
        items: impl IntoIterator<Item = (IpNet, u32)>,
        mut f: impl FnMut(&IpNet, Option<&Destination>) -> T,
    ) -> Vec<T> {
        let mut out = Vec::new();
        let mut slots = Vec::new();
        for (prefix, hint) in items {
            let found = self.get_any(&prefix, hint);
            out.push(f(&prefix, found.map(|(_, d)| d).filter(|d| !d.paths.is_empty())));
            if let Some((slot, _)) = found {
                slots.push(slot);
            }
        }
        self.finish(id, &[], &slots);
        out
    }

    /// Closes a session's Adj-RIB-Out (the session went down): tombstones
    /// kept only for it go.
    pub fn close_adj_out(&mut self, id: OutId) {
        if self.adj_out.close(id) && self.tombstones > 0 {
            let slots = self.dests.values().enumerate().filter(|(_, d)| d.paths.is_empty()).map(|(i, _)| i).collect();
            self.sweep(slots);
        }
    }

    /// The destination of `prefix` as export to session `id` sees it: its
    /// slot, its paths (none for a tombstone), and whether the session
    /// holds it. `hint` is a [`Changed::slot`] or [`NO_SLOT`].
    pub fn out_view(&self, id: OutId, prefix: &IpNet, hint: u32) -> Option<(u32, &Destination, bool)> {
        let (slot, d) = self.get_any(prefix, hint)?;
        Some((u32::try_from(slot).unwrap_or(NO_SLOT), d, self.adj_out.get(id, slot)))
    }

    /// Records what session `id` was sent: `(slot, true)` for an
    /// announcement, `(slot, false)` for a withdrawal, with the slots
    /// [`Rib::out_view`] gave under this same borrow of the RIB. Tombstones
    /// no session holds any more leave the table.
    /// `dequeued` are the slots of queued changes this dealt with.
    pub fn record_sent(&mut self, id: OutId, marks: &[(u32, bool)], dequeued: &[u32]) {
        let dequeued: Vec<usize> = dequeued.iter().map(|s| *s as usize).collect();
        self.finish(id, marks, &dequeued);
    }

    fn finish(&mut self, id: OutId, marks: &[(u32, bool)], dequeued: &[usize]) {
        let mut gone = Vec::new();
        let is_tombstone = |dests: &table::Table<Destination>, slot: usize| {
            dests.get_index(slot).is_some_and(|(_, d)| d.paths.is_empty())
        };
        for &(slot, sent) in marks {
            let slot = slot as usize;
            self.adj_out.set(id, slot, sent);
            if !sent && is_tombstone(&self.dests, slot) {
                gone.push(slot);
            }
        }
        for &slot in dequeued {
            self.adj_out.dequeued(id, slot);
            if is_tombstone(&self.dests, slot) {
                gone.push(slot);
            }
        }
        if !gone.is_empty() {
            self.sweep(gone);
        }
    }

    /// How many prefixes session `id` holds.
    pub fn adj_out_len(&self, id: OutId) -> usize {
        self.adj_out.len(id)
    }

    /// The memory the Adj-RIB-Out and the queues take, in bytes, and the
    /// tombstones they keep.
    pub fn adj_out_cost(&self) -> (usize, usize) {
        (
            self.adj_out.bytes()
                + self.adj_out.queue_bytes()
                + self.tombstones * std::mem::size_of::<(IpNet, Destination)>(),
            self.tombstones,
        )
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
        let (n, families) = rib.mark_stale("10.0.0.2".parse().unwrap());
        assert_eq!(n, 3);
        assert!(families.contains(Family::Ipv4Unicast) && families.contains(Family::Ipv6Unicast));
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
        // And with its prefix, its table entry (the index adds 5 bytes a
        // bucket).
        assert_eq!(std::mem::size_of::<(IpNet, Destination)>(), 72);
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

    fn net(i: u32) -> IpNet {
        IpNet::V4(ipnet::Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + (i << 8)), 24).unwrap())
    }

    /// A session is sent a prefix, the prefix's last path goes: the
    /// destination stays for export only, until the withdrawal is recorded.
    #[test]
    fn a_prefix_a_session_holds_outlives_its_last_path_until_withdrawn() {
        let mut rib = Rib::default();
        let (a, b) = (rib.open_adj_out(0), rib.open_adj_out(0));
        let src = path("10.0.0.2", false).source;
        for i in 0..3 {
            rib.insert(net(i), path("10.0.0.2", false));
        }
        let (slot, _, sent) = rib.out_view(a, &net(1), NO_SLOT).unwrap();
        assert!(!sent);
        rib.record_sent(a, &[(slot, true)], &[]);
        assert_eq!((rib.adj_out_len(a), rib.adj_out_len(b)), (1, 0));
        let o = rib.withdraw(&net(1), &src, 0);
        assert!(o.best_changed && o.removed);
        assert_eq!(o.slot, slot, "the tombstone keeps its slot, and the hint says so");
        assert_eq!(rib.len(), 2);
        assert!(rib.get(&net(1)).is_none() && rib.iter().all(|(p, _)| *p != net(1)));
        let (s2, d, sent) = rib.out_view(a, &net(1), o.slot).unwrap();
        assert!(sent && d.paths.is_empty() && s2 == slot);
        assert!(!rib.out_view(b, &net(1), NO_SLOT).unwrap().2, "b was never sent it");
        // Withdrawing again changes nothing.
        assert_eq!(rib.withdraw(&net(1), &src, 0), Outcome::default());
        rib.record_sent(a, &[(slot, false)], &[]);
        assert!(rib.out_view(a, &net(1), NO_SLOT).is_none(), "withdrawn from the last holder: gone");
        assert_eq!((rib.adj_out_len(a), rib.adj_out_cost().1), (0, 0));
        // A path coming back to a tombstone revives it.
        let (slot, _, _) = rib.out_view(a, &net(2), NO_SLOT).unwrap();
        rib.record_sent(a, &[(slot, true)], &[]);
        rib.withdraw(&net(2), &src, 0);
        assert_eq!(rib.adj_out_cost().1, 1);
        rib.insert(net(2), path("10.0.0.3", false));
        assert_eq!((rib.adj_out_cost().1, rib.len()), (0, 2));
        assert!(rib.out_view(a, &net(2), NO_SLOT).unwrap().2, "still held: the next export replaces it");
        // A session going down drops the tombstones only it held.
        let other = path("10.0.0.3", false).source;
        assert!(rib.withdraw(&net(2), &other, 0).removed);
        assert_eq!(rib.adj_out_cost().1, 1);
        rib.close_adj_out(a);
        assert_eq!((rib.adj_out_cost().1, rib.len()), (0, 1));
        assert!(rib.out_view(b, &net(2), NO_SLOT).is_none());
    }

    /// Random inserts, withdrawals, whole-source removals, exports and
    /// session closes against a model: every session's bits stay on the
    /// prefixes it was sent while slots move, and nothing else is kept.
    #[test]
    fn the_adj_rib_out_follows_its_prefixes_through_random_changes() {
        use std::collections::{BTreeMap, BTreeSet};
        let mut rib = Rib::default();
        let sources: Vec<Path> = ["10.0.0.2", "10.0.0.3", "10.0.0.4"].iter().map(|a| path(a, false)).collect();
        let mut ids = [rib.open_adj_out(0), rib.open_adj_out(0)];
        let mut model_paths: BTreeMap<u32, BTreeSet<usize>> = BTreeMap::new();
        let mut model_sent: [BTreeSet<u32>; 2] = [BTreeSet::new(), BTreeSet::new()];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: u64| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % n
        };
        for step in 0..20_000 {
            let p = next(64) as u32;
            let s = next(3) as usize;
            let who = next(2) as usize;
            match next(10) {
                0..=3 => {
                    rib.insert(net(p), sources[s].clone());
                    model_paths.entry(p).or_default().insert(s);
                }
                4..=5 => {
                    rib.withdraw(&net(p), &sources[s].source, 0);
                    if let Some(x) = model_paths.get_mut(&p) {
                        x.remove(&s);
                    }
                }
                6 if step % 50 == 0 => {
                    rib.remove_source(&sources[s].source);
                    model_paths.values_mut().for_each(|x| {
                        x.remove(&s);
                    });
                }
                6 if step % 97 == 0 => {
                    rib.close_adj_out(ids[who]);
                    ids[who] = rib.open_adj_out(0);
                    model_sent[who].clear();
                }
                _ => {
                    // Export a run of prefixes to one session, as the
                    // export driver does: announce what has a path,
                    // withdraw what it holds and has none.
                    let mut marks = Vec::new();
                    for q in (0..64).filter(|_| next(4) == 0) {
                        if let Some((slot, d, sent)) = rib.out_view(ids[who], &net(q), NO_SLOT) {
                            assert_eq!(sent, model_sent[who].contains(&q), "step {step}: bit of {q}");
                            if !d.paths.is_empty() {
                                marks.push((slot, true));
                                model_sent[who].insert(q);
                            } else if sent {
                                marks.push((slot, false));
                                model_sent[who].remove(&q);
                            }
                        }
                    }
                    rib.record_sent(ids[who], &marks, &[]);
                }
            }
            model_paths.retain(|_, x| !x.is_empty());
            let live: BTreeSet<u32> = model_paths.keys().copied().collect();
            assert_eq!(rib.len(), live.len(), "step {step}");
            for (w, id) in ids.iter().enumerate() {
                assert_eq!(rib.adj_out_len(*id), model_sent[w].len(), "step {step}");
            }
            let held: BTreeSet<u32> = model_sent.iter().flatten().copied().collect();
            let tombs = held.difference(&live).count();
            assert_eq!(rib.adj_out_cost().1, tombs, "step {step}: only held prefixes are kept");
            assert_eq!(rib.dests.len(), live.len() + tombs);
        }
    }

    /// Changes are queued for a consumer once per prefix, in arrival order;
    /// a removal it has queued keeps the destination until it deals with
    /// it, so no removal is lost and nothing is left behind.
    #[test]
    fn changes_queue_once_per_prefix_and_a_queued_removal_is_kept_until_dealt_with() {
        let mut rib = Rib::default();
        let fib = rib.open_adj_out(u8::MAX);
        let ebgp_only = rib.open_adj_out(PathSource::LOCAL);
        let src = path("10.0.0.2", false).source;
        for i in 0..3 {
            rib.insert(net(i), path("10.0.0.2", false));
        }
        rib.insert(net(1), path("10.0.0.3", false));
        assert_eq!(rib.take_woken(), [fib], "a consumer that wants none of it is not woken");
        assert!(rib.take_woken().is_empty());
        let q = rib.take_queue(fib);
        assert_eq!(q.iter().map(|(p, _)| *p).collect::<Vec<_>>(), [net(0), net(1), net(2)]);
        assert!(rib.take_queue(ebgp_only).is_empty());
        // Removed while queued: kept, invisible, until the FIB deals with it.
        rib.withdraw(&net(2), &src, 0);
        assert_eq!((rib.len(), rib.adj_out_cost().1), (2, 1));
        assert!(rib.take_queue(fib).is_empty(), "still queued from before: not twice");
        let seen = rib.dequeue(fib, q, |p, d| (*p, d.map(|d| d.paths.len())));
        assert_eq!(seen, [(net(0), Some(1)), (net(1), Some(2)), (net(2), None)]);
        assert_eq!((rib.adj_out_cost().1, rib.queued(fib)), (0, 0), "dealt with: the tombstone went");
        // Dealt with, a prefix queues again.
        rib.withdraw(&net(0), &src, 0);
        assert_eq!(rib.take_queue(fib).len(), 1);
        assert_eq!(rib.adj_out_cost().1, 1);
        rib.close_adj_out(fib);
        assert_eq!(rib.adj_out_cost().1, 0, "a closed consumer keeps nothing");
    }
}
