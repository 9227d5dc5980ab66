//! The kernel brought in line, decided without a kernel: given what merle
//! wants and what the kernel holds, the operations the engine executes.
//!
//! [`route`] decides one prefix, [`routes`] a set of them (the engine
//! passes the prefixes that changed, a resync every prefix it found
//! different), and [`l2`] the neighbour and FDB entries of merle's VXLAN
//! devices. The engine only turns the operations into netlink requests and
//! records the kernel's answers.

use std::net::IpAddr;

use foldhash::{HashMap, HashSet};
use ipnet::IpNet;

use crate::desired::RouteSpec;
use crate::kernel::{KernelNeighbour, KernelRoute};

/// The kernel's default route priority for a prefix: 0 for IPv4, 1024 for
/// IPv6. merle installs at the default and treats a route of another
/// protocol at the default as in its way.
pub fn default_priority(p: &IpNet) -> u32 {
    match p {
        IpNet::V4(_) => 0,
        IpNet::V6(_) => 1024,
    }
}

/// What one prefix needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteOp {
    /// The kernel already holds the wanted route, or neither side has one.
    InSync,
    /// Install `spec`, replacing merle's route there if there is one
    /// (`NLM_F_REPLACE`), else exclusively (`NLM_F_EXCL`).
    Install { spec: RouteSpec, replace: bool },
    /// Delete merle's route; `priority` when it is not the default (a
    /// route of an older merle, or one added by hand with merle's
    /// protocol).
    Delete { priority: Option<u32> },
    /// Another protocol's route holds the prefix: merle leaves it alone
    /// and reports it.
    Blocked { protocol: u8 },
    /// A route found at start that nothing wants, kept until the routing
    /// converges so forwarding survives a restart.
    Held,
}

/// The kernel's side of one prefix.
#[derive(Debug, Clone, Copy, Default)]
pub struct Kernel<'a> {
    /// merle's route (its protocol, its table).
    pub have: Option<&'a KernelRoute>,
    /// The protocol of another route at the default priority, if any.
    pub foreign: Option<u8>,
}

/// Decides one prefix. `hold` says the prefix is stale (found at start)
/// and the routing has not converged yet.
pub fn route(prefix: IpNet, want: Option<&RouteSpec>, k: Kernel<'_>, hold: bool) -> RouteOp {
    match (want, k.have) {
        // `have` is as the kernel holds it: an IPv6 VXLAN route of an
        // older merle, through the VTEP itself, does not match and is
        // replaced.
        (Some(w), Some(h)) if h.spec == *w.kernel_form() && h.priority == default_priority(&prefix) => RouteOp::InSync,
        (Some(w), Some(_)) => RouteOp::Install { spec: w.clone(), replace: true },
        (Some(w), None) => match k.foreign {
            Some(protocol) => RouteOp::Blocked { protocol },
            None => RouteOp::Install { spec: w.clone(), replace: false },
        },
        (None, Some(_)) if hold => RouteOp::Held,
        (None, Some(h)) => {
            RouteOp::Delete { priority: (h.priority != default_priority(&prefix)).then_some(h.priority) }
        }
        (None, None) => RouteOp::InSync,
    }
}

/// Decides every prefix of `prefixes`.
pub fn routes<'a>(
    prefixes: impl IntoIterator<Item = IpNet>,
    want: impl Fn(&IpNet) -> Option<&'a RouteSpec>,
    have: &'a HashMap<IpNet, KernelRoute>,
    foreign: &HashMap<IpNet, u8>,
    hold: impl Fn(&IpNet) -> bool,
) -> Vec<(IpNet, RouteOp)> {
    prefixes
        .into_iter()
        .map(|p| {
            let k = Kernel { have: have.get(&p), foreign: foreign.get(&p).copied() };
            (p, route(p, want(&p), k, hold(&p)))
        })
        .collect()
}

/// A permanent neighbour entry merle wants: device index, IP, MAC.
pub type NeighbourKey = (u32, IpAddr, [u8; 6]);
/// A permanent FDB entry merle wants: device index, MAC, destination.
pub type FdbKey = (u32, [u8; 6], IpAddr);

/// What the neighbour and FDB tables of merle's devices need.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct L2Ops {
    /// Indexes into the dumped entries: merle's entries nothing wants.
    pub delete: Vec<usize>,
    pub add_neighbours: Vec<NeighbourKey>,
    pub add_fdb: Vec<FdbKey>,
}

/// Decides the L2 entries. `dumped` is what the kernel reported for every
/// family; `devices` merle's VXLAN device indexes; `held` the VTEPs of
/// stale routes still held before convergence, whose entries stay as the
/// routes do. Only entries that look like merle's (permanent, on merle's
/// device, pairing a VTEP address with the MAC merle derives from it) are
/// ever deleted: a flood entry added by hand stays.
pub fn l2(
    dumped: &[KernelNeighbour],
    devices: &[u32],
    mut want_neigh: HashSet<NeighbourKey>,
    mut want_fdb: HashSet<FdbKey>,
    held: &HashSet<IpAddr>,
) -> L2Ops {
    let mut out = L2Ops::default();
    for (i, k) in dumped.iter().enumerate() {
        if !devices.contains(&k.ifindex) {
            continue;
        }
        let (Some(ip), Some(mac)) = (k.ip, k.mac) else { continue };
        if !k.permanent || !crate::vtep::is_vtep_entry(ip, mac) {
            continue;
        }
        let kept =
            if k.fdb { want_fdb.remove(&(k.ifindex, mac, ip)) } else { want_neigh.remove(&(k.ifindex, ip, mac)) };
        // An IPv6 route names the VTEP's link-local address; its FDB entry
        // is found by the MAC that address comes from.
        let stale = held.contains(&ip) || held.contains(&IpAddr::V6(crate::vtep::link_local(mac)));
        if !kept && !stale {
            out.delete.push(i);
        }
    }
    out.add_neighbours = want_neigh.into_iter().collect();
    out.add_neighbours.sort_unstable();
    out.add_fdb = want_fdb.into_iter().collect();
    out.add_fdb.sort_unstable();
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::desired::Hop;
    use crate::vtep::{route_gateway, vtep_mac};

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn kroute(p: &str, priority: u32, spec: RouteSpec) -> KernelRoute {
        KernelRoute { prefix: net(p), table: 254, protocol: 196, priority, spec }
    }

    fn via(h: &str) -> RouteSpec {
        RouteSpec::Via(vec![Hop::Direct(ip(h))])
    }

    #[test]
    fn one_prefix_each_case() {
        let p = net("10.244.2.0/26");
        let want = via("10.0.0.2");
        let same = kroute("10.244.2.0/26", 0, via("10.0.0.2"));
        let other = kroute("10.244.2.0/26", 0, via("10.0.0.3"));
        let odd_prio = kroute("10.244.2.0/26", 20, via("10.0.0.2"));
        let k = |have, foreign| Kernel { have, foreign };
        assert_eq!(route(p, Some(&want), k(Some(&same), None), false), RouteOp::InSync);
        assert_eq!(route(p, None, k(None, Some(4)), false), RouteOp::InSync, "a foreign route nobody wants");
        assert_eq!(
            route(p, Some(&want), k(None, None), false),
            RouteOp::Install { spec: want.clone(), replace: false }
        );
        assert_eq!(
            route(p, Some(&want), k(Some(&other), None), false),
            RouteOp::Install { spec: want.clone(), replace: true }
        );
        assert_eq!(
            route(p, Some(&want), k(Some(&odd_prio), None), false),
            RouteOp::Install { spec: want.clone(), replace: true },
            "the same route at another priority is replaced"
        );
        assert_eq!(route(p, Some(&want), k(None, Some(4)), false), RouteOp::Blocked { protocol: 4 });
        assert_eq!(
            route(p, Some(&want), k(Some(&other), Some(4)), false),
            RouteOp::Install { spec: want.clone(), replace: true },
            "merle's own route there is merle's to replace"
        );
        assert_eq!(route(p, None, k(Some(&same), None), true), RouteOp::Held);
        assert_eq!(route(p, None, k(Some(&same), None), false), RouteOp::Delete { priority: None });
        assert_eq!(route(p, None, k(Some(&odd_prio), None), false), RouteOp::Delete { priority: Some(20) });
        let p6 = net("fd00:244::/122");
        let six = kroute("fd00:244::/122", 1024, RouteSpec::Blackhole);
        assert_eq!(route(p6, Some(&RouteSpec::Blackhole), k(Some(&six), None), false), RouteOp::InSync);
        assert_eq!(route(p6, None, k(Some(&six), None), false), RouteOp::Delete { priority: None });
    }

    #[test]
    fn an_ipv6_vxlan_route_compares_in_its_kernel_form() {
        let vtep = ip("fd00:1::3");
        let want = RouteSpec::Via(vec![Hop::Vxlan(vtep)]);
        let p = net("fd00:244:0:2::/122");
        // The kernel holds it through the VTEP's link-local address.
        let current = kroute("fd00:244:0:2::/122", 1024, RouteSpec::Via(vec![Hop::Vxlan(route_gateway(vtep))]));
        assert_eq!(route(p, Some(&want), Kernel { have: Some(&current), foreign: None }, false), RouteOp::InSync);
        // An older merle's, through the VTEP itself, is replaced.
        let legacy = kroute("fd00:244:0:2::/122", 1024, want.clone());
        assert_eq!(
            route(p, Some(&want), Kernel { have: Some(&legacy), foreign: None }, false),
            RouteOp::Install { spec: want, replace: true }
        );
    }

    #[test]
    fn a_whole_table_pass_decides_every_prefix_it_is_given() {
        let mut have = HashMap::default();
        let mut foreign = HashMap::default();
        have.insert(net("10.1.0.0/26"), kroute("10.1.0.0/26", 0, via("10.0.0.2")));
        have.insert(net("10.1.0.64/26"), kroute("10.1.0.64/26", 0, via("10.0.0.2")));
        have.insert(net("10.1.0.128/26"), kroute("10.1.0.128/26", 0, via("10.0.0.2")));
        foreign.insert(net("10.1.1.0/26"), 186u8);
        let wanted: std::collections::BTreeMap<IpNet, RouteSpec> = [
            (net("10.1.0.0/26"), via("10.0.0.2")),
            (net("10.1.0.64/26"), via("10.0.0.9")),
            (net("10.1.1.0/26"), via("10.0.0.2")),
            (net("10.1.2.0/26"), RouteSpec::Blackhole),
        ]
        .into();
        let all: std::collections::BTreeSet<IpNet> = wanted.keys().chain(have.keys()).copied().collect();
        let stale = net("10.1.0.128/26");
        let ops = routes(all.iter().copied(), |p| wanted.get(p), &have, &foreign, |p| *p == stale);
        let got: Vec<(String, RouteOp)> = ops.into_iter().map(|(p, o)| (p.to_string(), o)).collect();
        assert_eq!(
            got,
            vec![
                ("10.1.0.0/26".into(), RouteOp::InSync),
                ("10.1.0.64/26".into(), RouteOp::Install { spec: via("10.0.0.9"), replace: true }),
                ("10.1.0.128/26".into(), RouteOp::Held),
                ("10.1.1.0/26".into(), RouteOp::Blocked { protocol: 186 }),
                ("10.1.2.0/26".into(), RouteOp::Install { spec: RouteSpec::Blackhole, replace: false }),
            ]
        );
        // Once converged, the stale route goes.
        let ops = routes([stale], |p| wanted.get(p), &have, &foreign, |_| false);
        assert_eq!(ops, vec![(stale, RouteOp::Delete { priority: None })]);
    }

    #[test]
    fn l2_keeps_what_is_wanted_adds_what_is_missing_and_deletes_only_merles_leftovers() {
        let dev = 7;
        let (a, b, c) = (ip("10.0.9.3"), ip("10.0.9.4"), ip("10.0.9.5"));
        let entry = |fdb: bool, ip: IpAddr, mac: [u8; 6], permanent: bool, ifindex: u32| KernelNeighbour {
            ifindex,
            fdb,
            ip: Some(ip),
            mac: Some(mac),
            permanent,
        };
        let dumped = vec![
            entry(false, a, vtep_mac(a), true, dev),        // 0: wanted
            entry(true, a, vtep_mac(a), true, dev),         // 1: wanted
            entry(false, b, vtep_mac(b), true, dev),        // 2: merle's, unwanted
            entry(true, b, vtep_mac(b), true, dev),         // 3: merle's, unwanted
            entry(true, ip("10.0.9.6"), [0; 6], true, dev), // 4: a flood entry by hand
            entry(false, c, vtep_mac(c), false, dev),       // 5: learned, not permanent
            entry(false, b, vtep_mac(b), true, 99),         // 6: another device
            entry(false, c, vtep_mac(c), true, dev),        // 7: a held stale route's VTEP
        ];
        let want_n: HashSet<NeighbourKey> =
            [(dev, a, vtep_mac(a)), (dev, ip("10.0.9.8"), vtep_mac(ip("10.0.9.8")))].into_iter().collect();
        let want_f: HashSet<FdbKey> = [(dev, vtep_mac(a), a)].into_iter().collect();
        let held: HashSet<IpAddr> = [c].into_iter().collect();
        let ops = l2(&dumped, &[dev], want_n, want_f, &held);
        assert_eq!(ops.delete, vec![2, 3]);
        assert_eq!(ops.add_neighbours, vec![(dev, ip("10.0.9.8"), vtep_mac(ip("10.0.9.8")))]);
        assert!(ops.add_fdb.is_empty());
        // After convergence nothing is held.
        let ops = l2(&dumped, &[dev], HashSet::default(), HashSet::default(), &HashSet::default());
        assert_eq!(ops.delete, vec![0, 1, 2, 3, 7]);
    }
}
