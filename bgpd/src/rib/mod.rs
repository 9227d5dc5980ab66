//! Route storage and best-path selection.
//!
//! [`Rib`] holds every path received from every peer (the union of the
//! Adj-RIBs-In) plus locally originated routes, keyed by prefix. For each
//! prefix, [`decision`] ranks the paths per RFC 4271 §9.1.2 and records, for
//! every losing path, the step at which it lost.

pub mod decision;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use ipnet::IpNet;

use crate::packet::{AsPath, Community, ExtCommunity, LargeCommunity, Origin, PathAttr};

pub use decision::{compare, rank, DecisionOptions, LossReason};

/// Who a path came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathSource {
    /// Originated by this node.
    Local,
    Peer(PeerRef),
}

/// The facts about a peer the decision process needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerRef {
    pub address: IpAddr,
    pub asn: u32,
    pub router_id: Ipv4Addr,
    pub ebgp: bool,
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    pub source: PathSource,
    /// ADD-PATH identifier as received (0 without ADD-PATH).
    pub path_id: u32,
    pub next_hop: IpAddr,
    pub attrs: Arc<RouteAttrs>,
}

/// One prefix's paths, best first after [`Rib::insert`]/[`Rib::withdraw`].
#[derive(Debug, Clone, Default)]
pub struct Destination {
    pub paths: Vec<Path>,
    /// For each path after the first, why it lost to the one before it.
    pub loss: Vec<LossReason>,
}

#[derive(Debug, Default)]
pub struct Rib {
    dests: BTreeMap<IpNet, Destination>,
    opts: DecisionOptions,
}

impl Rib {
    pub fn new(opts: DecisionOptions) -> Self {
        Self { dests: BTreeMap::new(), opts }
    }

    /// Adds or replaces the path with the same source and path id. Returns
    /// true when the path is new rather than a replacement.
    pub fn insert(&mut self, prefix: IpNet, path: Path) -> bool {
        let d = self.dests.entry(prefix).or_default();
        let before = d.paths.len();
        d.paths.retain(|p| !(p.source == path.source && p.path_id == path.path_id));
        let new = d.paths.len() == before;
        d.paths.push(path);
        Self::rank(d, &self.opts);
        new
    }

    /// Removes one path. Returns whether it existed.
    pub fn withdraw(&mut self, prefix: &IpNet, source: &PathSource, path_id: u32) -> bool {
        let Some(d) = self.dests.get_mut(prefix) else { return false };
        let before = d.paths.len();
        d.paths.retain(|p| !(&p.source == source && p.path_id == path_id));
        let removed = d.paths.len() != before;
        if d.paths.is_empty() {
            self.dests.remove(prefix);
        } else if removed {
            Self::rank(d, &self.opts);
        }
        removed
    }

    /// Removes every path from `source`; returns how many. Only the
    /// destinations that lost a path are ranked again.
    pub fn remove_source(&mut self, source: &PathSource) -> usize {
        let mut n = 0;
        let opts = self.opts;
        self.dests.retain(|_, d| {
            let before = d.paths.len();
            d.paths.retain(|p| &p.source != source);
            if d.paths.len() != before {
                n += before - d.paths.len();
                Self::rank(d, &opts);
            }
            !d.paths.is_empty()
        });
        n
    }

    fn rank(d: &mut Destination, opts: &DecisionOptions) {
        d.loss = decision::rank(&mut d.paths, opts);
    }

    pub fn get(&self, prefix: &IpNet) -> Option<&Destination> {
        self.dests.get(prefix)
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
