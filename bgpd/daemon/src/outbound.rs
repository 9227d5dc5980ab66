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
//!
//! What each session holds is exact: [`decide`] records every announcement
//! and withdrawal in the session's Adj-RIB-Out ([`bgpd::rib::adj_out`]), and
//! withdraws only what the session holds.

use std::time::Instant;

use bgpd::fsm::{ConnId, Negotiated};
use bgpd::packet::Family;
use bgpd::rib::{OutId, Rib};
use ipnet::IpNet;

use crate::export::{self, Grouper, NodeExport, OutRoute, SessionAddrs, Skipped, Target};

/// Prefixes of a whole-table job handled per turn of the task loop: a few
/// milliseconds of work in a release build.
pub const JOB_SLICE: usize = 16_384;

/// How a run of prefixes is exported.
#[derive(Debug, Clone, Copy)]
pub enum Mode<'a> {
    /// Each prefix's route if the peer gets it (a full export, or best
    /// paths changed), and a withdrawal where the peer holds a prefix it no
    /// longer gets.
    Announce,
    /// The export policy changed from `old`: each prefix's route where it
    /// differs from what the old policy sent, a withdrawal where the peer
    /// holds a prefix the new one does not send, nothing where they agree.
    Diff { old: &'a Target, old_node: &'a NodeExport },
}

/// What to send for a run of prefixes, per family (IPv4, IPv6).
#[derive(Debug, Default)]
pub struct Decided {
    pub groups: [Vec<(OutRoute, Vec<IpNet>)>; 2],
    pub withdrawn: [Vec<IpNet>; 2],
    /// Routes the peer gets but that cannot go on this session (no next
    /// hop of the family's kind), and why.
    pub skipped: Vec<Skipped>,
    /// How many prefixes the session holds once this is sent.
    pub held: usize,
}

impl Decided {
    pub fn announced(&self) -> usize {
        self.groups.iter().flatten().map(|(_, v)| v.len()).sum()
    }
}

/// One export session: whom to (the target, this node) and on what
/// (the negotiated session, our addresses on it, its Adj-RIB-Out).
#[derive(Debug, Clone, Copy)]
pub struct To<'a> {
    pub target: &'a Target,
    pub node: &'a NodeExport,
    pub n: &'a Negotiated,
    pub addrs: &'a SessionAddrs,
    pub out: OutId,
}

/// Decides a run of prefixes (each with the RIB slot a change recorded,
/// or [`bgpd::rib::NO_SLOT`]) for one session under mode `m`, and records
/// in the session's Adj-RIB-Out what it is to be sent: withdrawals go only
/// to a session that holds the prefix. `queued`: the prefixes came from the
/// session's queue, and are dealt with.
pub fn decide(
    rib: &mut Rib,
    items: impl IntoIterator<Item = (IpNet, u32)>,
    m: Mode<'_>,
    to: &To<'_>,
    queued: bool,
) -> Decided {
    let (t, node, n) = (to.target, to.node, to.n);
    let mut groups: [Grouper; 2] = Default::default();
    let mut withdrawn: [Vec<IpNet>; 2] = Default::default();
    // Per family: (group, slot, held, prefix) of each prefix filed in a
    // group, to be marked once the group is known to be sendable.
    let mut filed: [Vec<(usize, u32, bool, IpNet)>; 2] = Default::default();
    let mut marks: Vec<(u32, bool)> = Vec::new();
    let mut dequeued: Vec<u32> = Vec::new();
    for (prefix, hint) in items {
        // No destination at all: neither held nor queued (a held or queued
        // one stays until dealt with).
        let Some((slot, dest, held)) = rib.out_view(to.out, &prefix, hint) else { continue };
        if queued {
            dequeued.push(slot);
        }
        let f = export::family_of(&prefix);
        if !n.families.contains(f) {
            continue;
        }
        let best = dest.best();
        let g = &mut groups[f.index()];
        let group = match m {
            Mode::Announce => best.and_then(|b| g.add(&prefix, b, t, node, n)),
            Mode::Diff { old, old_node } => match best.and_then(|b| export::export_path(&prefix, b, t, node, n)) {
                None => None,
                Some(after) => {
                    let before = best.and_then(|b| export::export_path(&prefix, b, old, old_node, n));
                    if held && before.as_ref() == Some(&after) {
                        continue;
                    }
                    Some(g.push(after, prefix))
                }
            },
        };
        match group {
            Some(i) => filed[f.index()].push((i, slot, held, prefix)),
            None if held => {
                withdrawn[f.index()].push(prefix);
                marks.push((slot, false));
            }
            None => {}
        }
    }
    let mut skipped = Vec::new();
    let [g4, g6] = groups;
    let mut out: [Vec<(OutRoute, Vec<IpNet>)>; 2] = Default::default();
    for (fi, (f, g)) in Family::ALL.into_iter().zip([g4, g6]).enumerate() {
        let g = g.into_groups();
        let ok: Vec<Result<(), &'static str>> = g.iter().map(|(r, _)| export::placeable(f, r, to.addrs, n)).collect();
        // A prefix that cannot go out is withdrawn where the session holds
        // it (under an older route), and not marked.
        for &(i, slot, held, prefix) in &filed[fi] {
            match ok[i] {
                Ok(()) => marks.push((slot, true)),
                Err(reason) => {
                    skipped.push(Skipped { prefix, reason });
                    if held {
                        withdrawn[fi].push(prefix);
                        marks.push((slot, false));
                    }
                }
            }
        }
        out[fi] = g.into_iter().zip(ok).filter(|((_, v), ok)| ok.is_ok() && !v.is_empty()).map(|(g, _)| g).collect();
    }
    rib.record_sent(to.out, &marks, &dequeued);
    Decided { groups: out, withdrawn, skipped, held: rib.adj_out_len(to.out) }
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

    fn decide_all(rib: &mut Rib, m: Mode<'_>, to: &To<'_>) -> Decided {
        let items = all(rib);
        decide(rib, items, m, to, false)
    }

    /// One session's export: the ToR's target, this node, the session,
    /// our address on it (IPv4 only unless `v6`).
    struct Session {
        target: Target,
        node: NodeExport,
        n: Negotiated,
        addrs: SessionAddrs,
        out: OutId,
    }

    impl Session {
        fn new(rib: &mut Rib, export_learned: bool) -> Self {
            Self {
                target: tor(export_learned),
                node: node(),
                n: ebgp_session(),
                addrs: SessionAddrs { local_addr: "10.0.0.1".parse().unwrap(), node_v4: None, node_v6: None },
                out: rib.open_adj_out(0),
            }
        }

        fn to(&self) -> To<'_> {
            To { target: &self.target, node: &self.node, n: &self.n, addrs: &self.addrs, out: self.out }
        }
    }

    #[test]
    fn a_full_export_announces_what_the_peer_gets_and_withdraws_nothing() {
        let mut rib = rib();
        let s = Session::new(&mut rib, false);
        let d = decide_all(&mut rib, Mode::Announce, &s.to());
        assert_eq!(prefixes(&d), ["10.244.0.0/26", "10.244.0.64/26"], "an eBGP peer gets this node's own blocks");
        assert_eq!(d.groups[0].len(), 1, "both share one attribute set, so one group");
        assert!(d.withdrawn.iter().all(Vec::is_empty));
        assert_eq!(rib.adj_out_len(s.out), 2);
        let s = Session::new(&mut rib, true);
        let d = decide_all(&mut rib, Mode::Announce, &s.to());
        assert_eq!((d.announced(), rib.adj_out_len(s.out)), (4, 4));
    }

    #[test]
    fn changes_withdraw_only_what_the_peer_holds() {
        let mut rib = rib();
        let s = Session::new(&mut rib, false);
        decide_all(&mut rib, Mode::Announce, &s.to());
        rib.withdraw(&net("10.244.0.64/26"), &PathSource::Local, 0);
        let items =
            [(net("10.244.0.0/26"), NO_SLOT), (net("10.244.0.64/26"), NO_SLOT), (net("10.244.1.0/26"), NO_SLOT)];
        let d = decide(&mut rib, items, Mode::Announce, &s.to(), false);
        assert_eq!(prefixes(&d), ["10.244.0.0/26"]);
        assert_eq!(
            d.withdrawn[0],
            [net("10.244.0.64/26")],
            "10.244.1.0/26 was never sent to this peer: no withdrawal for it"
        );
        assert_eq!(rib.adj_out_len(s.out), 1);
        assert!(rib.out_view(s.out, &net("10.244.0.64/26"), NO_SLOT).is_none(), "withdrawn: the tombstone went");
        // The same change again sends no second withdrawal.
        let d = decide(&mut rib, items, Mode::Announce, &s.to(), false);
        assert!(d.withdrawn[0].is_empty());
    }

    #[test]
    fn a_policy_edit_sends_only_the_difference() {
        let mut rib = rib();
        let s = Session::new(&mut rib, true);
        decide_all(&mut rib, Mode::Announce, &s.to());
        // Learned routes were sent and no longer are: withdrawn; the own
        // blocks are unchanged: not sent again.
        let (old, old_node) = (tor(true), node());
        let mut s = s;
        s.target = tor(false);
        let d = decide_all(&mut rib, Mode::Diff { old: &old, old_node: &old_node }, &s.to());
        assert_eq!(d.announced(), 0, "{:?}", d.groups);
        assert_eq!(d.withdrawn[0], [net("10.244.1.0/26"), net("10.244.2.0/26")]);
        assert_eq!(rib.adj_out_len(s.out), 2);
        // The other way: the learned routes are announced, nothing withdrawn.
        let (old, old_node) = (tor(false), node());
        s.target = tor(true);
        let d = decide_all(&mut rib, Mode::Diff { old: &old, old_node: &old_node }, &s.to());
        assert_eq!(prefixes(&d), ["10.244.1.0/26", "10.244.2.0/26"]);
        assert!(d.withdrawn.iter().all(Vec::is_empty));
        // No edit, no traffic.
        let (old, old_node) = (tor(true), node());
        let d = decide_all(&mut rib, Mode::Diff { old: &old, old_node: &old_node }, &s.to());
        assert_eq!((d.announced(), d.withdrawn[0].len()), (0, 0));
        assert_eq!(rib.adj_out_len(s.out), 4);
    }

    #[test]
    fn a_route_without_a_next_hop_for_its_family_is_skipped_and_not_held() {
        let mut rib = rib();
        let mut attrs = export::local_attrs(vec![], vec![]);
        attrs.as_path = AsPath::default();
        let v6 = Path {
            source: PathSource::Local,
            path_id: 0,
            next_hop: "fd00::1".parse().unwrap(),
            attrs: rib.intern(attrs),
            stale: false,
            lost_at: None,
            ecmp: 0,
        };
        rib.insert(net("fd00:244::/80"), v6);
        let s = Session::new(&mut rib, false);
        let d = decide_all(&mut rib, Mode::Announce, &s.to());
        assert_eq!(d.groups[1].len(), 0, "no IPv6 next hop on this IPv4 session");
        assert_eq!(d.skipped.len(), 1);
        assert_eq!(d.skipped[0].prefix, net("fd00:244::/80"));
        assert_eq!(rib.adj_out_len(s.out), 2, "the skipped route is not counted as sent");
        // With an IPv6 address it goes, and is held.
        let mut s = s;
        s.addrs.node_v6 = Some("fd00::1".parse().unwrap());
        let d = decide_all(&mut rib, Mode::Announce, &s.to());
        assert!(d.skipped.is_empty());
        assert_eq!((d.groups[1].len(), rib.adj_out_len(s.out)), (1, 3));
        // Losing it again withdraws it, since the session holds it.
        s.addrs.node_v6 = None;
        let d = decide(&mut rib, [(net("fd00:244::/80"), NO_SLOT)], Mode::Announce, &s.to(), false);
        assert_eq!((d.withdrawn[1].clone(), rib.adj_out_len(s.out)), (vec![net("fd00:244::/80")], 2));
    }

    #[test]
    fn queued_changes_are_dealt_with_once_and_a_removal_reaches_only_holders() {
        let mut rib = rib();
        let mut s = Session::new(&mut rib, false);
        s.out = rib.open_adj_out(export::interest(&s.target, &s.node));
        decide_all(&mut rib, Mode::Announce, &s.to());
        // The two local blocks change, one goes; a learned route goes too
        // (not of this peer's kinds: not queued at all).
        rib.withdraw(&net("10.244.0.64/26"), &PathSource::Local, 0);
        let mut x = path(&mut rib, false);
        x.next_hop = "10.0.0.9".parse().unwrap();
        rib.insert(net("10.244.0.0/26"), x);
        let learned = rib.get(&net("10.244.1.0/26")).unwrap().paths[0].source.clone();
        rib.withdraw(&net("10.244.1.0/26"), &learned, 0);
        let q = rib.take_queue(s.out);
        assert_eq!(q.len(), 2, "{q:?}");
        assert_eq!(rib.adj_out_cost().1, 1, "the held block's removal is kept until sent");
        let d = decide(&mut rib, q, Mode::Announce, &s.to(), true);
        assert_eq!(d.withdrawn[0], [net("10.244.0.64/26")]);
        assert_eq!((rib.queued(s.out), rib.adj_out_cost().1, rib.adj_out_len(s.out)), (0, 0, 1));
        let x = path(&mut rib, false);
        rib.insert(net("10.244.0.0/26"), x);
        assert_eq!(rib.take_queue(s.out).len(), 1, "dealt with, it queues again");
        let x = path(&mut rib, false);
        rib.insert(net("10.244.0.0/26"), x);
        assert!(rib.take_queue(s.out).is_empty(), "the same path again changes nothing");
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
