//! The decision process (RFC 4271 §9.1.2.2, RFC 4456 §9), as a pure
//! comparison of two paths that also says which step decided.

use std::cmp::Ordering;
use std::net::IpAddr;

use super::{Path, PathSource};

/// The default LOCAL_PREF for paths without one (as BIRD and FRR use).
pub const DEFAULT_LOCAL_PREF: u32 = 100;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecisionOptions {
    /// Compare MED between paths from different neighbour ASes.
    pub always_compare_med: bool,
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

/// Orders `a` before `b` (`Less`) when `a` is preferred, and says which step
/// decided.
pub fn compare(a: &Path, b: &Path, opts: &DecisionOptions) -> (Ordering, LossReason) {
    macro_rules! step {
        ($reason:expr, $ord:expr) => {
            let o: Ordering = $ord;
            if o != Ordering::Equal {
                return (o, $reason);
            }
        };
    }
    let (pa, pb) = match (&a.source, &b.source) {
        (PathSource::Local, PathSource::Local) => return (Ordering::Equal, LossReason::Identical),
        (PathSource::Local, _) => return (Ordering::Less, LossReason::LocalOrigin),
        (_, PathSource::Local) => return (Ordering::Greater, LossReason::LocalOrigin),
        (PathSource::Peer(x), PathSource::Peer(y)) => (x, y),
    };
    let (xa, xb) = (&a.attrs, &b.attrs);
    // 1. Highest LOCAL_PREF.
    let lp = |p: &Path| p.attrs.local_pref.unwrap_or(DEFAULT_LOCAL_PREF);
    step!(LossReason::LocalPref, lp(b).cmp(&lp(a)));
    // 2. Shortest AS_PATH (an AS_SET counts as one).
    step!(LossReason::AsPathLength, xa.as_path.path_len().cmp(&xb.as_path.path_len()));
    // 3. Lowest ORIGIN.
    step!(LossReason::Origin, xa.origin.cmp(&xb.origin));
    // 4. Lowest MED, among paths from the same neighbour AS unless told to
    //    always compare. A missing MED counts as 0 (RFC 4271 §9.1.2.2 c).
    let same_neighbour = xa.as_path.first_asn() == xb.as_path.first_asn();
    if same_neighbour || opts.always_compare_med {
        step!(LossReason::Med, xa.med.unwrap_or(0).cmp(&xb.med.unwrap_or(0)));
    }
    // 5. eBGP over iBGP.
    step!(LossReason::PeerType, pb.ebgp.cmp(&pa.ebgp));
    // 6. Lowest router ID, or ORIGINATOR_ID when present (RFC 4456 §9).
    let rid = |p: &Path, peer: &super::PeerRef| u32::from(p.attrs.originator_id.unwrap_or(peer.router_id));
    step!(LossReason::RouterId, rid(a, pa).cmp(&rid(b, pb)));
    // 7. Shortest CLUSTER_LIST.
    step!(LossReason::ClusterListLength, xa.cluster_list.len().cmp(&xb.cluster_list.len()));
    // 8. Lowest peer address, then lowest path id (ADD-PATH).
    step!(LossReason::PeerAddress, addr_key(&pa.address).cmp(&addr_key(&pb.address)));
    step!(LossReason::PeerAddress, a.path_id.cmp(&b.path_id));
    (Ordering::Equal, LossReason::Identical)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    use super::*;
    use crate::packet::{AsPath, Origin};
    use crate::rib::{PeerRef, RouteAttrs};

    fn attrs() -> RouteAttrs {
        RouteAttrs {
            origin: Origin::Igp,
            as_path: AsPath::sequence(vec![65001]),
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

    fn path(last: u8, ebgp: bool, f: impl FnOnce(&mut RouteAttrs)) -> Path {
        let mut a = attrs();
        f(&mut a);
        Path {
            source: PathSource::Peer(PeerRef {
                address: IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)),
                asn: 65001,
                router_id: Ipv4Addr::new(1, 1, 1, last),
                ebgp,
            }),
            path_id: 0,
            next_hop: IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)),
            attrs: Arc::new(a),
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
            p.router_id = Ipv4Addr::new(1, 1, 1, 1);
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
        let o = DecisionOptions { always_compare_med: true };
        assert_eq!(compare(&b, &a, &o), (Ordering::Less, LossReason::Med));
    }
}
