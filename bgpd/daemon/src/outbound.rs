//! The one export driver's decisions, pure: for a run of prefixes and the
//! kind of pass, which routes go out (grouped by their exported
//! attributes, so each group packs into few UPDATEs) and which prefixes
//! are withdrawn. The peer task only encodes and sends what this decides.
//!
//! Every whole-table job of a peer is a [`Job`] worked a slice at a time
//! ([`JOB_SLICE`] prefixes per turn of the task loop, under the writer's
//! backpressure): the full export when the session comes up, a
//! ROUTE-REFRESH, and the re-export after an export-policy edit. Best-path
//! changes go through the same [`decide`] in batches.

use std::time::Instant;

use bgpd::fsm::{ConnId, Negotiated};
use bgpd::packet::Family;
use bgpd::rib::{Destination, Rib};
use ipnet::IpNet;

use crate::export::{self, Grouper, NodeExport, OutRoute, Target};

/// Prefixes of a whole-table job handled per turn of the task loop: a few
/// milliseconds of work in a release build.
pub const JOB_SLICE: usize = 16_384;

/// How a run of prefixes is exported.
#[derive(Debug, Clone, Copy)]
pub enum Mode<'a> {
    /// Each prefix's route if the peer gets it; nothing otherwise (a full
    /// export: the peer holds nothing of this session yet, or asked for
    /// everything again).
    Announce,
    /// Best paths changed: each prefix's route, or a withdrawal when the
    /// peer no longer gets one.
    Change,
    /// The export policy changed from `old`: for each prefix, the
    /// difference between what the old policy sent and what the new one
    /// sends: a withdrawal, the new route, or nothing when they agree.
    Diff { old: &'a Target, old_node: &'a NodeExport },
}

/// What to send for a run of prefixes, per family (IPv4, IPv6).
#[derive(Debug, Default)]
pub struct Decided {
    pub groups: [Vec<(OutRoute, Vec<IpNet>)>; 2],
    pub withdrawn: [Vec<IpNet>; 2],
}

impl Decided {
    pub fn announced(&self) -> usize {
        self.groups.iter().flatten().map(|(_, v)| v.len()).sum()
    }
}

/// Decides a run of prefixes (each with the RIB slot a change recorded,
/// or [`bgpd::rib::NO_SLOT`]) for target `t` under mode `m`.
pub fn decide(
    rib: &Rib,
    items: impl IntoIterator<Item = (IpNet, u32)>,
    m: Mode<'_>,
    t: &Target,
    node: &NodeExport,
    n: &Negotiated,
) -> Decided {
    let mut groups: [Grouper; 2] = Default::default();
    let mut withdrawn: [Vec<IpNet>; 2] = Default::default();
    for (prefix, slot) in items {
        let f = export::family_of(&prefix);
        if !n.families.contains(f) {
            continue;
        }
        let best = rib.get_hinted(&prefix, slot).and_then(Destination::best);
        let g = &mut groups[f.index()];
        match m {
            Mode::Announce => {
                if let Some(b) = best {
                    g.add(&prefix, b, t, node, n);
                }
            }
            Mode::Change => {
                if !best.is_some_and(|b| g.add(&prefix, b, t, node, n)) {
                    withdrawn[f.index()].push(prefix);
                }
            }
            Mode::Diff { old, old_node } => {
                let Some(b) = best else { continue };
                let before = export::export_path(&prefix, b, old, old_node, n);
                let after = export::export_path(&prefix, b, t, node, n);
                match (before, after) {
                    (Some(_), None) => withdrawn[f.index()].push(prefix),
                    (b, Some(a)) if b.as_ref() != Some(&a) => g.push(a, prefix),
                    _ => {}
                }
            }
        }
    }
    let [g4, g6] = groups;
    Decided { groups: [g4.into_groups(), g6.into_groups()], withdrawn }
}

/// What a whole-table job is for.
#[derive(Debug)]
pub enum Pass {
    /// The Adj-RIB-Out of one family or all, then End-of-RIB.
    Full { family: Option<Family> },
    /// An export-policy edit: the difference from the old policy.
    Reexport { old: Box<Target>, old_node: NodeExport },
}

/// A whole-table job in progress. The prefixes are noted when it starts
/// (one pass over the table); each slice reads their best paths as they
/// are then, and changes meanwhile go out through the change queue as
/// usual (at worst a route is sent twice, never stale).
#[derive(Debug)]
pub struct Job {
    pub id: ConnId,
    pub pass: Pass,
    pub prefixes: Vec<IpNet>,
    pub next: usize,
    pub sent: usize,
    pub started: Instant,
}

impl Job {
    pub fn new(id: ConnId, pass: Pass, prefixes: Vec<IpNet>) -> Self {
        Self { id, pass, prefixes, next: 0, sent: 0, started: Instant::now() }
    }

    /// The next slice, and the mode it is exported in.
    pub fn slice(&mut self) -> (&[IpNet], Mode<'_>) {
        let start = self.next;
        self.next = (start + JOB_SLICE).min(self.prefixes.len());
        let mode = match &self.pass {
            Pass::Full { .. } => Mode::Announce,
            Pass::Reexport { old, old_node } => Mode::Diff { old, old_node },
        };
        (&self.prefixes[start..self.next], mode)
    }

    pub fn done(&self) -> bool {
        self.next >= self.prefixes.len()
    }
}

/// The prefixes a pass over `rib` visits for a peer whose session
/// negotiated `families`: those with a best path of a kind the peer can
/// get (`interest`, a bit test before any per-route work), in `family` if
/// one is given.
pub fn job_prefixes(rib: &Rib, interest: u8, families: bgpd::packet::FamilySet, family: Option<Family>) -> Vec<IpNet> {
    rib.iter()
        .filter(|(prefix, dest)| {
            let f = export::family_of(prefix);
            dest.best_kind() & interest != 0 && families.contains(f) && family.is_none_or(|x| x == f)
        })
        .map(|(p, _)| *p)
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    use super::*;
    use crate::export::NextHopMode;
    use bgpd::fsm::negotiate;
    use bgpd::packet::{AfiSafi, AsPath, Capability, OpenMsg};
    use bgpd::rib::{DecisionOptions, Path, PathSource, PeerRef, NO_SLOT};

    const LOCAL_AS: u32 = 64512;

    fn ebgp_session() -> Negotiated {
        let caps = vec![
            Capability::Multiprotocol(AfiSafi::IPV4_UNICAST),
            Capability::Multiprotocol(AfiSafi::IPV6_UNICAST),
            Capability::FourOctetAs(65001),
        ];
        let local = vec![
            Capability::Multiprotocol(AfiSafi::IPV4_UNICAST),
            Capability::Multiprotocol(AfiSafi::IPV6_UNICAST),
            Capability::FourOctetAs(LOCAL_AS),
        ];
        negotiate(LOCAL_AS, 90, &local, &OpenMsg::new(65001, 90, Ipv4Addr::new(10, 0, 0, 254), caps))
    }

    fn node() -> NodeExport {
        NodeExport { local_as: LOCAL_AS, router_id: Ipv4Addr::new(10, 0, 0, 1), cluster_id: None }
    }

    fn tor(export_learned: bool) -> Target {
        Target {
            address: "10.0.0.254".parse().unwrap(),
            ebgp: true,
            rr_client: false,
            export_learned,
            next_hop_mode: NextHopMode::Auto,
            rules: Default::default(),
        }
    }

    fn path(rib: &mut Rib, learned: bool) -> Path {
        let mut a = export::local_attrs(vec![], vec![]);
        let source = if learned {
            a.local_pref = Some(100);
            PathSource::Peer(Arc::new(PeerRef {
                address: "10.0.0.2".parse().unwrap(),
                asn: LOCAL_AS,
                router_id: "10.0.0.2".parse().unwrap(),
                ebgp: false,
                rr_client: false,
            }))
        } else {
            a.as_path = AsPath::default();
            PathSource::Local
        };
        let next_hop = if learned { "10.0.0.2" } else { "10.0.0.1" }.parse().unwrap();
        Path { source, path_id: 0, next_hop, attrs: rib.intern(a), stale: false, lost_at: None, ecmp: 0 }
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    /// A RIB with two local blocks, two learned prefixes, and one IPv6
    /// learned prefix.
    fn rib() -> Rib {
        let mut rib = Rib::new(DecisionOptions::default());
        for p in ["10.244.0.0/26", "10.244.0.64/26"] {
            let x = path(&mut rib, false);
            rib.insert(net(p), x);
        }
        for p in ["10.244.1.0/26", "10.244.2.0/26"] {
            let x = path(&mut rib, true);
            rib.insert(net(p), x);
        }
        rib
    }

    fn prefixes(d: &Decided) -> Vec<String> {
        let mut v: Vec<String> = d.groups[0].iter().flat_map(|(_, ps)| ps.iter().map(|p| p.to_string())).collect();
        v.sort();
        v
    }

    fn all(rib: &Rib) -> Vec<(IpNet, u32)> {
        rib.iter().map(|(p, _)| (*p, NO_SLOT)).collect()
    }

    #[test]
    fn a_full_export_announces_what_the_peer_gets_and_withdraws_nothing() {
        let (rib, n) = (rib(), ebgp_session());
        let d = decide(&rib, all(&rib), Mode::Announce, &tor(false), &node(), &n);
        assert_eq!(prefixes(&d), ["10.244.0.0/26", "10.244.0.64/26"], "an eBGP peer gets this node's own blocks");
        assert_eq!(d.groups[0].len(), 1, "both share one attribute set, so one group");
        assert!(d.withdrawn.iter().all(Vec::is_empty));
        let d = decide(&rib, all(&rib), Mode::Announce, &tor(true), &node(), &n);
        assert_eq!(d.announced(), 4);
    }

    #[test]
    fn changes_withdraw_what_the_peer_no_longer_gets() {
        let (mut rib, n) = (rib(), ebgp_session());
        rib.withdraw(&net("10.244.0.64/26"), &PathSource::Local, 0);
        let items =
            [(net("10.244.0.0/26"), NO_SLOT), (net("10.244.0.64/26"), NO_SLOT), (net("10.244.1.0/26"), NO_SLOT)];
        let d = decide(&rib, items, Mode::Change, &tor(false), &node(), &n);
        assert_eq!(prefixes(&d), ["10.244.0.0/26"]);
        assert_eq!(d.withdrawn[0], [net("10.244.0.64/26"), net("10.244.1.0/26")]);
    }

    #[test]
    fn a_policy_edit_sends_only_the_difference() {
        let (rib, n) = (rib(), ebgp_session());
        // Learned routes were sent and no longer are: withdrawn; the own
        // blocks are unchanged: not sent again.
        let (old, old_node) = (tor(true), node());
        let d = decide(&rib, all(&rib), Mode::Diff { old: &old, old_node: &old_node }, &tor(false), &node(), &n);
        assert_eq!(d.announced(), 0, "{:?}", d.groups);
        assert_eq!(d.withdrawn[0], [net("10.244.1.0/26"), net("10.244.2.0/26")]);
        // The other way: the learned routes are announced, nothing withdrawn.
        let (old, old_node) = (tor(false), node());
        let d = decide(&rib, all(&rib), Mode::Diff { old: &old, old_node: &old_node }, &tor(true), &node(), &n);
        assert_eq!(prefixes(&d), ["10.244.1.0/26", "10.244.2.0/26"]);
        assert!(d.withdrawn.iter().all(Vec::is_empty));
        // No edit, no traffic.
        let (old, old_node) = (tor(true), node());
        let d = decide(&rib, all(&rib), Mode::Diff { old: &old, old_node: &old_node }, &tor(true), &node(), &n);
        assert_eq!((d.announced(), d.withdrawn[0].len()), (0, 0));
    }

    #[test]
    fn a_job_walks_its_prefixes_a_slice_at_a_time() {
        let prefixes: Vec<IpNet> = (0..(JOB_SLICE * 2 + 5) as u32)
            .map(|i| IpNet::V4(ipnet::Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + (i << 8)), 24).unwrap()))
            .collect();
        let mut job = Job::new(ConnId(1), Pass::Full { family: None }, prefixes.clone());
        let mut seen = Vec::new();
        let mut turns = 0;
        while !job.done() {
            let (slice, mode) = job.slice();
            assert!(matches!(mode, Mode::Announce));
            assert!(slice.len() <= JOB_SLICE);
            seen.extend_from_slice(slice);
            turns += 1;
        }
        assert_eq!((seen, turns), (prefixes, 3));
    }

    #[test]
    fn a_job_visits_what_the_peer_can_get_in_its_families() {
        let rib = rib();
        let t = tor(false);
        let interest = export::interest(&t, &node());
        let fams = ebgp_session().families;
        assert_eq!(job_prefixes(&rib, interest, fams, None).len(), 2, "only the local blocks");
        assert_eq!(job_prefixes(&rib, u8::MAX, fams, None).len(), 4);
        assert!(job_prefixes(&rib, u8::MAX, fams, Some(Family::Ipv6Unicast)).is_empty());
    }
}
