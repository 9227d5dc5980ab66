//! The decision process (RFC 4271 §9.1.2.2, RFC 4456 §9), as a pure
//! comparison of two paths that also says which step decided.

use std::cmp::Ordering;
use std::net::IpAddr;

use super::{Path, PathSource};

/// The default LOCAL_PREF for paths without one (as BIRD and FRR use).
pub const DEFAULT_LOCAL_PREF: u32 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecisionOptions {
    /// Compare MED between paths from different neighbour ASes.
    pub always_compare_med: bool,
    /// The largest ECMP set (1 = no multipath).
    pub max_paths: usize,
}

impl Default for DecisionOptions {
    fn default() -> Self {
        Self { always_compare_med: false, max_paths: 8 }
    }
}

/// The step at which a path lost, in decision order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LossReason {
    /// Locally originated routes are preferred over learned ones.
    LocalOrigin,
    LocalPref,
    AsPathLength,
    Origin,
    Med,
    /// eBGP paths are preferred over iBGP paths.
    PeerType,
    RouterId,
    ClusterListLength,
    PeerAddress,
    /// Same peer and path id: a duplicate; not expected in a RIB.
    Identical,
}

impl LossReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LocalOrigin => "local-origin",
            Self::LocalPref => "local-pref",
            Self::AsPathLength => "as-path-length",
            Self::Origin => "origin",
            Self::Med => "med",
            Self::PeerType => "peer-type",
            Self::RouterId => "router-id",
            Self::ClusterListLength => "cluster-list-length",
            Self::PeerAddress => "peer-address",
            Self::Identical => "identical",
        }
    }
}

fn addr_key(a: &IpAddr) -> (u8, u128) {
    match a {
        IpAddr::V4(v) => (4, u128::from(u32::from(*v))),
        IpAddr::V6(v) => (6, u128::from(*v)),
    }
}

/// The per-path sort key. Every step of the decision process is a field, in
/// order, so ranking is a plain lexicographic (total) order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    local: bool,
    local_pref: u32,
    path_len: usize,
    origin: crate::packet::Origin,
    /// Loses on MED to another path of the same neighbour AS (or to any
    /// path with `always_compare_med`) that ties on the steps before.
    med_loser: bool,
    ebgp: bool,
    router_id: u32,
    cluster_len: usize,
    addr: (u8, u128),
    path_id: u32,
}

fn tie_before_med(a: &Path, b: &Path) -> bool {
    let lp = |p: &Path| p.attrs.local_pref.unwrap_or(DEFAULT_LOCAL_PREF);
    matches!((&a.source, &b.source), (PathSource::Peer(_), PathSource::Peer(_)))
        && lp(a) == lp(b)
        && a.attrs.as_path.path_len() == b.attrs.as_path.path_len()
        && a.attrs.origin == b.attrs.origin
}

/// RFC 4271 §9.1.2.2 (c): `p` is removed from consideration if another path
/// that ties on the earlier steps, from the same neighbour AS, has a lower
/// MED. A missing MED counts as 0.
fn med_loser(p: &Path, all: &[&Path], opts: &DecisionOptions) -> bool {
    let med = |x: &Path| x.attrs.med.unwrap_or(0);
    all.iter().any(|q| {
        tie_before_med(p, q)
            && (opts.always_compare_med || p.attrs.as_path.neighbour_as() == q.attrs.as_path.neighbour_as())
            && med(q) < med(p)
    })
}

fn key(p: &Path, all: &[&Path], opts: &DecisionOptions) -> Key {
    let (local, ebgp, rid, addr) = match &p.source {
        PathSource::Local => (true, false, 0, (0, 0)),
        PathSource::Peer(r) => (
            false,
            r.ebgp,
            // RFC 4456 §9: ORIGINATOR_ID stands in for the router ID.
            u32::from(p.attrs.originator_id.unwrap_or(r.router_id)),
            addr_key(&r.address),
        ),
    };
    Key {
        local,
        local_pref: p.attrs.local_pref.unwrap_or(DEFAULT_LOCAL_PREF),
        path_len: p.attrs.as_path.path_len(),
        origin: p.attrs.origin,
        med_loser: med_loser(p, all, opts),
        ebgp,
        router_id: rid,
        cluster_len: p.attrs.cluster_list.len(),
        addr,
        path_id: p.path_id,
    }
}

/// Orders two keys (`Less` = `a` preferred) and names the deciding step.
fn compare_keys(a: &Key, b: &Key) -> (Ordering, LossReason) {
    let steps = [
        (LossReason::LocalOrigin, b.local.cmp(&a.local)),
        (LossReason::LocalPref, b.local_pref.cmp(&a.local_pref)),
        (LossReason::AsPathLength, a.path_len.cmp(&b.path_len)),
        (LossReason::Origin, a.origin.cmp(&b.origin)),
        (LossReason::Med, a.med_loser.cmp(&b.med_loser)),
        (LossReason::PeerType, b.ebgp.cmp(&a.ebgp)),
        (LossReason::RouterId, a.router_id.cmp(&b.router_id)),
        (LossReason::ClusterListLength, a.cluster_len.cmp(&b.cluster_len)),
        (LossReason::PeerAddress, a.addr.cmp(&b.addr)),
        (LossReason::PeerAddress, a.path_id.cmp(&b.path_id)),
    ];
    steps
        .into_iter()
        .find(|(_, o)| *o != Ordering::Equal)
        .map_or((Ordering::Equal, LossReason::Identical), |(r, o)| (o, r))
}

/// Ranks the paths of one destination, best first. Returns, for each path
/// after the first, the step at which it lost to the path before it, and the
/// size of the ECMP set: the leading paths that tie with the best up to the
/// router-ID step, from peers, with distinct next hops, at most
/// `max_paths`.
pub fn rank(paths: &mut [Path], opts: &DecisionOptions) -> (Vec<LossReason>, usize) {
    // Most prefixes have one path: nothing to rank.
    if paths.len() <= 1 {
        return (Vec::new(), paths.len());
    }
    let keys: Vec<Key> = {
        let all: Vec<&Path> = paths.iter().collect();
        paths.iter().map(|p| key(p, &all, opts)).collect()
    };
    let mut order: Vec<usize> = (0..paths.len()).collect();
    order.sort_by(|&i, &j| compare_keys(&keys[i], &keys[j]).0);
    let loss: Vec<LossReason> = order.windows(2).map(|w| compare_keys(&keys[w[0]], &keys[w[1]]).1).collect();
    let mut multipath = usize::from(!paths.is_empty());
    if let Some(best) = order.first().map(|&i| keys[i]) {
        let mut hops = vec![paths[order[0]].next_hop];
        for &i in order.iter().skip(1) {
            let k = keys[i];
            let ties = !best.local
                && (k.local, k.local_pref, k.path_len, k.origin, k.med_loser, k.ebgp)
                    == (best.local, best.local_pref, best.path_len, best.origin, best.med_loser, best.ebgp);
            if !ties || multipath >= opts.max_paths.max(1) {
                break;
            }
            let nh = paths[i].next_hop;
            if !hops.contains(&nh) {
                hops.push(nh);
                multipath += 1;
            } else {
                break;
            }
        }
    }
    // Apply the permutation.
    let mut sorted: Vec<Option<Path>> = paths.iter().cloned().map(Some).collect();
    for (dst, src) in order.into_iter().enumerate() {
        if let Some(p) = sorted[src].take() {
            paths[dst] = p;
        }
    }
    (loss, multipath)
}

/// Compares two paths as if they were a destination's only paths:
/// `Less` when `a` is preferred, with the deciding step.
pub fn compare(a: &Path, b: &Path, opts: &DecisionOptions) -> (Ordering, LossReason) {
    let all = [a, b];
    compare_keys(&key(a, &all, opts), &key(b, &all, opts))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    use super::*;
    use crate::packet::{AsPath, Origin};
    use crate::rib::{PeerRef, RouteAttrs};

    fn attrs() -> RouteAttrs {
        RouteAttrs::with_path(AsPath::sequence(vec![65001]))
    }

    fn path(last: u8, ebgp: bool, f: impl FnOnce(&mut RouteAttrs)) -> Path {
        let mut a = attrs();
        f(&mut a);
        Path {
            source: PathSource::Peer(Arc::new(PeerRef {
                address: IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)),
                asn: 65001,
                router_id: Ipv4Addr::new(1, 1, 1, last),
                ebgp,
                rr_client: false,
            })),
            path_id: 0,
            next_hop: IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)),
            attrs: Arc::new(a),
            stale: false,
            lost_at: None,
            ecmp: 0,
        }
    }

    fn wins(a: &Path, b: &Path) -> LossReason {
        let o = DecisionOptions::default();
        let (ord, r) = compare(a, b, &o);
        assert_eq!(ord, Ordering::Less, "expected a to win at {r:?}");
        assert_eq!(compare(b, a, &o), (Ordering::Greater, r), "comparison must be antisymmetric");
        r
    }

    #[test]
    fn each_step_in_order() {
        let base = |l| path(l, true, |_| {});
        assert_eq!(wins(&path(9, true, |a| a.local_pref = Some(200)), &base(1)), LossReason::LocalPref);
        assert_eq!(
            wins(&base(9), &path(1, true, |a| a.as_path = AsPath::sequence(vec![65001, 1]))),
            LossReason::AsPathLength
        );
        assert_eq!(wins(&base(9), &path(1, true, |a| a.origin = Origin::Incomplete)), LossReason::Origin);
        assert_eq!(wins(&path(9, true, |a| a.med = Some(5)), &path(1, true, |a| a.med = Some(10))), LossReason::Med);
        assert_eq!(wins(&base(9), &path(1, false, |_| {})), LossReason::PeerType);
        assert_eq!(wins(&base(1), &base(9)), LossReason::RouterId);
        assert_eq!(
            wins(&path(9, false, |a| a.originator_id = Some(Ipv4Addr::new(1, 1, 1, 0))), &path(1, false, |_| {})),
            LossReason::RouterId
        );
        let mut same_rid = path(9, false, |_| {});
        if let PathSource::Peer(p) = &mut same_rid.source {
            Arc::make_mut(p).router_id = Ipv4Addr::new(1, 1, 1, 1);
        }
        assert_eq!(
            wins(&path(1, false, |_| {}), &{
                let mut p = same_rid.clone();
                Arc::make_mut(&mut p.attrs).cluster_list = vec![Ipv4Addr::new(9, 9, 9, 9)];
                p
            }),
            LossReason::ClusterListLength
        );
        assert_eq!(wins(&path(1, false, |_| {}), &same_rid), LossReason::PeerAddress);
    }

    /// Three paths where pairwise MED comparison would be cyclic: A beats
    /// B on MED (same neighbour AS), B beats C and C beats A on router ID
    /// (C has another neighbour AS). RFC 4271 removes B on MED first, then C
    /// beats A on router ID, whatever order the paths arrived in.
    #[test]
    fn med_is_a_group_step_so_ranking_is_order_independent() {
        let a = path(3, true, |x| x.med = Some(10));
        let b = path(1, true, |x| x.med = Some(20));
        let c = path(2, true, |x| x.as_path = AsPath::sequence(vec![65002]));
        let opts = DecisionOptions::default();
        let perms = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];
        let mut results = Vec::new();
        for perm in perms {
            let src = [a.clone(), b.clone(), c.clone()];
            let mut v: Vec<Path> = perm.iter().map(|&i| src[i].clone()).collect();
            let (loss, _) = rank(&mut v, &opts);
            results.push((v.iter().map(|p| p.next_hop).collect::<Vec<_>>(), loss));
        }
        assert!(results.windows(2).all(|w| w[0] == w[1]), "{results:?}");
        // B is out on MED; C (router id .2) then beats A (router id .3).
        let (order, loss) = &results[0];
        assert_eq!(order, &vec![c.next_hop, a.next_hop, b.next_hop]);
        assert_eq!(loss, &vec![LossReason::RouterId, LossReason::Med]);
    }

    #[test]
    fn multipath_is_the_tie_up_to_router_id() {
        let opts = DecisionOptions::default();
        // Two eBGP paths that differ only in router ID: ECMP of two.
        let mut v = vec![path(1, true, |_| {}), path(2, true, |_| {})];
        assert_eq!(rank(&mut v, &opts).1, 2);
        // A third with a longer AS path is not part of it.
        let mut v = vec![
            path(1, true, |_| {}),
            path(2, true, |_| {}),
            path(3, true, |x| x.as_path = AsPath::sequence(vec![65001, 1])),
        ];
        assert_eq!(rank(&mut v, &opts).1, 2);
        // iBGP loses to eBGP before the router-ID step: no multipath.
        let mut v = vec![path(1, true, |_| {}), path(2, false, |_| {})];
        assert_eq!(rank(&mut v, &opts).1, 1);
        // The maximum caps it.
        let mut v: Vec<Path> = (1..=5).map(|i| path(i, true, |_| {})).collect();
        assert_eq!(rank(&mut v, &DecisionOptions { max_paths: 3, ..opts }).1, 3);
        assert_eq!(rank(&mut v, &DecisionOptions { max_paths: 1, ..opts }).1, 1);
    }

    /// More than 20 paths exercise the full sort. The best is the one RFC
    /// 4271 §9.1.2.2 elimination gives (computed here independently: MED
    /// within each neighbour AS, then eBGP over iBGP, then the lowest
    /// router ID), and the whole order is the same whatever order the
    /// paths came in.
    #[test]
    fn many_paths_rank_to_the_rfc_best_in_any_input_order() {
        let paths: Vec<Path> = (1..=60u8)
            .map(|i| {
                path(i, i % 2 == 0, |x| {
                    x.med = Some(u32::from(i % 7));
                    x.as_path = AsPath::sequence(vec![65000 + u32::from(i % 3)]);
                })
            })
            .collect();
        let neighbour = |p: &Path| p.attrs.as_path.segments[0].asns[0];
        let med = |p: &Path| p.attrs.med.unwrap_or(0);
        let rid = |p: &Path| match &p.source {
            PathSource::Peer(r) => r.router_id,
            _ => Ipv4Addr::UNSPECIFIED,
        };
        let ebgp = |p: &Path| matches!(&p.source, PathSource::Peer(r) if r.ebgp);
        let mut left: Vec<&Path> = paths.iter().collect();
        let survivors: Vec<&Path> = left
            .iter()
            .copied()
            .filter(|p| !left.iter().any(|q| neighbour(q) == neighbour(p) && med(q) < med(p)))
            .collect();
        left = survivors;
        if left.iter().any(|p| ebgp(p)) {
            left.retain(|p| ebgp(p));
        }
        let best = left.iter().map(|p| rid(p)).min().unwrap();

        let order = |mut v: Vec<Path>| {
            let (loss, n) = rank(&mut v, &DecisionOptions::default());
            assert_eq!(loss.len(), 59);
            assert!(n >= 1);
            v.iter().map(rid).collect::<Vec<_>>()
        };
        let first = order(paths.clone());
        assert_eq!(first[0], best, "{first:?}");
        let mut reversed = paths.clone();
        reversed.reverse();
        let mut rotated = paths.clone();
        rotated.rotate_left(17);
        let interleaved: Vec<Path> = paths.iter().step_by(2).chain(paths.iter().skip(1).step_by(2)).cloned().collect();
        for v in [reversed, rotated, interleaved] {
            assert_eq!(order(v), first);
        }
    }

    #[test]
    fn as_set_counts_one_and_med_only_within_a_neighbour_as() {
        use crate::packet::{AsSegment, SegmentType};
        let set = path(9, true, |a| {
            a.as_path = AsPath {
                segments: vec![
                    AsSegment { kind: SegmentType::AsSequence, asns: vec![65001] },
                    AsSegment { kind: SegmentType::AsSet, asns: vec![1, 2, 3] },
                ],
            }
        });
        let seq = path(1, true, |a| a.as_path = AsPath::sequence(vec![65001, 1, 2]));
        assert_eq!(wins(&set, &seq), LossReason::AsPathLength);
        // Different neighbour AS: MED is skipped, router id decides.
        let a = path(1, true, |a| {
            a.med = Some(100);
            a.as_path = AsPath::sequence(vec![65002]);
        });
        let b = path(9, true, |a| a.med = Some(1));
        assert_eq!(wins(&a, &b), LossReason::RouterId);
        let o = DecisionOptions { always_compare_med: true, ..DecisionOptions::default() };
        assert_eq!(compare(&b, &a, &o), (Ordering::Less, LossReason::Med));
    }
}
