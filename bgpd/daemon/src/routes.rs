//! Answers that walk the RIB (`merlectl routes`, its filters and counts) or
//! fib-sync's table (`merlectl fib`), built without holding up the sessions.
//!
//! Every peer task runs on merled's one event-loop thread and takes the RIB
//! lock for each UPDATE it applies or sends, so an answer must neither run
//! on that thread for long nor keep the lock. A walk runs on a blocking
//! thread: it copies the table's keys under the lock (a dense array walk,
//! milliseconds for a million prefixes), sorts them without it, then visits
//! them [`SLICE`] at a time, taking the lock for each slice only to clone
//! what it needs (paths share their attributes through `Arc`s, so a clone is
//! a few reference counts). Formatting and serialising happen outside the
//! lock. The answer is streamed, so memory stays at a few slices whatever
//! the table's size. A prefix withdrawn during the walk is skipped; a
//! prefix added after the keys were copied is not shown.

use std::net::IpAddr;
use std::sync::Mutex;

use bgpd::rib::{Destination, Path, PathSource, Rib};
use ipnet::IpNet;

use crate::api::{FibRoute, PeerCount, RouteCounts, RouteEntry};
use crate::shared::{lock, Shared};
pub use merle_control::{PeerMatch, PrefixMatch, Query};

/// Prefixes visited per lock hold: about 0.2 ms of copying in a release
/// build.
pub const SLICE: usize = 1024;

/// Whether the query selects the path of rank `rank` (0 = best).
fn selects(q: &Query, rank: usize, p: &Path) -> bool {
    if q.best_only && rank != 0 {
        return false;
    }
    match (q.peer, &p.source) {
        (PeerMatch::Any, _) | (PeerMatch::Local, PathSource::Local) => true,
        (PeerMatch::Addr(a), PathSource::Peer(r)) => r.address == a,
        _ => false,
    }
}

/// One prefix's selected paths, copied out of the RIB.
#[derive(Debug, Clone)]
pub struct Selected {
    pub prefix: IpNet,
    /// Each selected path with its rank (0 = best).
    pub paths: Vec<(usize, Path)>,
    /// How many leading paths form the ECMP set.
    pub multipath: u8,
    /// The kernel state of the best path, when fib-sync handles the prefix.
    pub fib: Option<String>,
}

fn select(q: &Query, prefix: IpNet, d: &Destination, fib: Option<&fib_sync::FibStatus>) -> Option<Selected> {
    let paths: Vec<(usize, Path)> =
        d.paths.iter().enumerate().filter(|(i, p)| selects(q, *i, p)).map(|(i, p)| (i, p.clone())).collect();
    if paths.is_empty() {
        return None;
    }
    let fib = if paths[0].0 == 0 { fib.and_then(|f| f.routes.get(&prefix)).map(|r| r.state.to_string()) } else { None };
    Some(Selected { prefix, paths, multipath: d.multipath_len(), fib })
}

/// The prefix `PrefixMatch::Longest` names: the longest one in the RIB
/// that holds the address.
fn longest(rib: &Rib, addr: IpAddr) -> Option<IpNet> {
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (0..=max).rev().filter_map(|len| IpNet::new(addr, len).ok().map(|n| n.trunc())).find(|n| rib.get(n).is_some())
}

/// Visits what `q` selects in prefix order, a slice at a time; `emit`
/// returns false to stop (the client went away). Holds the RIB lock only
/// while one slice is copied: call it off the event-loop thread.
pub fn walk(src: &Shared, q: &Query, mut emit: impl FnMut(Vec<Selected>) -> bool) {
    let fib = src.fib_status();
    let keys: Vec<IpNet> = match q.prefix {
        PrefixMatch::Exact(p) => vec![p],
        PrefixMatch::Longest(a) => longest(&src.rib(), a).into_iter().collect(),
        PrefixMatch::All => {
            let t = std::time::Instant::now();
            let mut keys: Vec<IpNet> = src.rib().iter().map(|(p, _)| *p).collect();
            tracing::trace!(prefixes = keys.len(), took = ?t.elapsed(), "route walk: keys copied");
            keys.sort_unstable();
            keys
        }
    };
    for chunk in keys.chunks(SLICE) {
        let out: Vec<Selected> = {
            let f = fib.as_ref().map(|f| lock(f));
            let rib = src.rib();
            chunk.iter().filter_map(|p| select(q, *p, rib.get(p)?, f.as_deref())).collect()
        };
        if !out.is_empty() && !emit(out) {
            return;
        }
    }
}

/// The control-socket rows of one prefix.
pub fn entries(s: &Selected) -> impl Iterator<Item = RouteEntry> + '_ {
    s.paths.iter().map(move |(rank, p)| {
        let a = &p.attrs;
        RouteEntry {
            prefix: s.prefix.to_string(),
            next_hop: p.next_hop.to_string(),
            as_path: a.as_path.flat(),
            as_path_text: a.as_path.to_string(),
            origin: a.origin.as_str().to_owned(),
            peer: peer_name(&p.source),
            path_id: p.path_id,
            best: *rank == 0,
            lost_at: p.lost_at.map(|l| l.as_str().to_owned()),
            local_pref: a.local_pref,
            med: a.med,
            communities: a.communities.iter().map(ToString::to_string).collect(),
            large_communities: a.large_communities.iter().map(ToString::to_string).collect(),
            ext_communities: a.ext_communities.iter().map(ToString::to_string).collect(),
            originator_id: a.originator_id.map(|o| o.to_string()),
            cluster_list: a.cluster_list.iter().map(ToString::to_string).collect(),
            multipath: *rank < usize::from(s.multipath),
            stale: p.stale,
            fib: if *rank == 0 { s.fib.clone() } else { None },
        }
    })
}

fn peer_name(src: &PathSource) -> String {
    match src {
        PathSource::Local => "local".to_owned(),
        PathSource::Peer(r) => r.address.to_string(),
    }
}

/// Adds one slice to running counts.
pub fn count(c: &mut RouteCounts, slice: &[Selected]) {
    for s in slice {
        c.prefixes += 1;
        for (rank, p) in &s.paths {
            c.paths += 1;
            let name = peer_name(&p.source);
            let i = match c.peers.binary_search_by(|x| x.peer.as_str().cmp(&name)) {
                Ok(i) => i,
                Err(i) => {
                    c.peers.insert(i, PeerCount { peer: name, paths: 0, best: 0 });
                    i
                }
            };
            c.peers[i].paths += 1;
            if *rank == 0 {
                c.best += 1;
                c.peers[i].best += 1;
            }
        }
    }
}

/// fib-sync's view of each prefix it handles, in prefix order, a slice at
/// a time, holding its lock only while a slice is copied.
pub fn walk_fib(status: &Mutex<fib_sync::FibStatus>, mut emit: impl FnMut(Vec<FibRoute>) -> bool) {
    let mut keys: Vec<IpNet> = lock(status).routes.keys().copied().collect();
    keys.sort_unstable();
    for chunk in keys.chunks(SLICE) {
        let copied: Vec<(IpNet, fib_sync::RouteStatus)> = {
            let st = lock(status);
            chunk.iter().filter_map(|p| Some((*p, st.routes.get(p)?.clone()))).collect()
        };
        let out: Vec<FibRoute> = copied
            .into_iter()
            .map(|(p, r)| FibRoute {
                prefix: p.to_string(),
                kernel: r.spec.as_ref().map(fib_sync::status::describe).unwrap_or_default(),
                state: r.state,
            })
            .collect();
        if !out.is_empty() && !emit(out) {
            return;
        }
    }
}
