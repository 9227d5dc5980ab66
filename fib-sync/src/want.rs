//! The desired kernel state, kept prefix by prefix: what the engine runs
//! and what [`crate::desired::desired`] folds a whole table through, so
//! the tests of the rules test the path merled takes.
//!
//! [`Want`] holds the learned routes and, for each prefix, the route the
//! rules of [`crate::desired::route`] give it (or why it is refused), and
//! how many wanted routes use each VTEP, from which the neighbour and FDB
//! entries follow. A change to one prefix costs one rule evaluation.

use std::net::IpAddr;

use foldhash::HashMap;
use ipnet::IpNet;

use crate::desired::{self, FdbEntry, Hop, Inputs, Neighbour, Outcome, RouteSpec, VxlanDevice};

/// What one recompute changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changed {
    /// The wanted route of the prefix is another one (or none now).
    pub route: bool,
    /// The set of VTEPs in use changed: the neighbour and FDB entries
    /// need a look.
    pub vteps: bool,
    /// The prefix is refused, for a reason it was not refused for before.
    pub newly_refused: bool,
}

#[derive(Debug, Default, Clone)]
pub struct Want {
    learned: HashMap<IpNet, Vec<IpAddr>>,
    routes: HashMap<IpNet, RouteSpec>,
    refused: HashMap<IpNet, String>,
    /// VTEP IP → how many wanted routes use it.
    vteps: HashMap<IpAddr, usize>,
}

impl Want {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the learned next hops of `prefix` (none: withdrawn) and
    /// recomputes its route.
    pub fn learn(&mut self, i: &Inputs<'_>, devices: &[VxlanDevice], prefix: IpNet, hops: Vec<IpAddr>) -> Changed {
        if hops.is_empty() {
            self.learned.remove(&prefix);
        } else {
            self.learned.insert(prefix, hops);
        }
        self.recompute(i, devices, prefix)
    }

    /// Recomputes the wanted route of `prefix` from what was learned and
    /// the inputs.
    pub fn recompute(&mut self, i: &Inputs<'_>, devices: &[VxlanDevice], prefix: IpNet) -> Changed {
        let mut out = Changed::default();
        let new = match desired::route(i, devices, prefix, self.learned.get(&prefix).map(Vec::as_slice)) {
            Outcome::Route(spec) => {
                self.refused.remove(&prefix);
                Some(spec)
            }
            Outcome::Refused(reason) => {
                out.newly_refused = self.refused.get(&prefix) != Some(&reason);
                self.refused.insert(prefix, reason);
                None
            }
            Outcome::Nothing => {
                self.refused.remove(&prefix);
                None
            }
        };
        let old = match &new {
            Some(spec) => self.routes.insert(prefix, spec.clone()),
            None => self.routes.remove(&prefix),
        };
        if old == new {
            return out;
        }
        out.route = true;
        for (spec, delta) in [(&old, -1isize), (&new, 1)] {
            let Some(RouteSpec::Via(hops)) = spec else { continue };
            for h in hops {
                if let Hop::Vxlan(ip) = h {
                    let n = self.vteps.entry(*ip).or_default();
                    *n = n.saturating_add_signed(delta);
                    if *n == 0 {
                        self.vteps.remove(ip);
                    }
                    out.vteps = true;
                }
            }
        }
        out
    }

    /// Every prefix whose route may depend on the inputs: the learned ones
    /// and the wanted ones (a blackhole of a block no longer ours).
    pub fn prefixes(&self) -> Vec<IpNet> {
        let mut v: Vec<IpNet> = self.learned.keys().chain(self.routes.keys()).copied().collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The learned prefixes inside `net` (or equal to it).
    pub fn learned_within(&self, net: &IpNet) -> Vec<IpNet> {
        self.learned.keys().filter(|p| net.contains(*p)).copied().collect()
    }

    pub fn route(&self, prefix: &IpNet) -> Option<&RouteSpec> {
        self.routes.get(prefix)
    }

    pub fn routes(&self) -> &HashMap<IpNet, RouteSpec> {
        &self.routes
    }

    pub fn refused(&self, prefix: &IpNet) -> Option<&str> {
        self.refused.get(prefix).map(String::as_str)
    }

    pub fn refusals(&self) -> impl Iterator<Item = (&IpNet, &String)> {
        self.refused.iter()
    }

    /// The VTEPs the wanted routes use.
    pub fn vteps(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.vteps.keys().copied()
    }

    /// The permanent neighbour and FDB entries of every VTEP in use.
    pub fn l2_entries(&self) -> impl Iterator<Item = (Neighbour, FdbEntry)> + '_ {
        self.vteps().filter_map(|ip| desired::vtep_entries(&Hop::Vxlan(ip)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::desired::{desired, LearnedRoute, NodeNet};
    use conf::{EncapMode, Pool};

    fn pools() -> Vec<Pool> {
        let pool = |cidr: &str, vxlan| Pool {
            cidr: cidr.parse().unwrap(),
            block_size: None,
            ipip_mode: EncapMode::Never,
            vxlan_mode: vxlan,
            nat_outgoing: false,
        };
        vec![pool("10.244.0.0/16", EncapMode::CrossSubnet), pool("fd00:244::/56", EncapMode::Always)]
    }

    /// A small deterministic generator, so the sequence is the same on
    /// every run and a failure can be replayed.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (self.0 >> 33) % n
        }
    }

    /// Any sequence of learn and withdraw, applied one prefix at a time as
    /// the engine does, ends in the state `desired()` computes from the
    /// final table at once: routes, refusals, and neighbour and FDB
    /// entries.
    #[test]
    fn incremental_changes_end_where_the_whole_table_computation_does() {
        let pools = pools();
        let node = NodeNet { v4: Some("10.0.0.1/24".parse().unwrap()), v6: Some("fd00::1/64".parse().unwrap()) };
        let own: Vec<IpNet> = vec!["10.244.1.0/26".parse().unwrap(), "fd00:244:0:1::/122".parse().unwrap()];
        fn with<'a>(base: &Inputs<'a>, routes: &'a [LearnedRoute]) -> Inputs<'a> {
            Inputs { routes, ..*base }
        }
        let base =
            Inputs { routes: &[], own_blocks: &own, pools: &pools, node, ipip_supported: false, underlay_mtu: 1500 };
        let devices = desired::devices(&pools, node, 1500);
        let prefixes: Vec<IpNet> = [
            "10.244.1.0/26",
            "10.244.1.7/32",
            "10.244.2.0/26",
            "10.244.3.0/26",
            "10.96.0.10/32",
            "fd00:244:0:1::/122",
            "fd00:244:0:2::/122",
            "fd00:244:0:3::/122",
            "2001:db8::/64",
        ]
        .iter()
        .map(|p| p.parse().unwrap())
        .collect();
        let hops: Vec<Vec<IpAddr>> = [
            vec!["10.0.0.2"],
            vec!["10.0.9.3"],
            vec!["10.0.0.2", "10.0.9.3"],
            vec!["10.0.0.1"],
            vec!["fd00::2"],
            vec!["fd00:9::3", "fd00::2"],
            vec!["10.0.0.2", "fd00::2"],
            vec![],
        ]
        .iter()
        .map(|v| v.iter().map(|h| h.parse().unwrap()).collect())
        .collect();
        let mut rng = Lcg(7);
        let mut w = Want::new();
        for b in &own {
            w.recompute(&base, &devices, *b);
        }
        let mut table: std::collections::BTreeMap<IpNet, Vec<IpAddr>> = Default::default();
        for step in 0..2000 {
            let p = prefixes[rng.next(prefixes.len() as u64) as usize];
            let family: Vec<IpAddr> = hops[rng.next(hops.len() as u64) as usize].clone();
            if family.is_empty() {
                table.remove(&p);
            } else {
                table.insert(p, family.clone());
            }
            w.learn(&base, &devices, p, family);
            if step % 97 == 0 || step == 1999 {
                let routes: Vec<LearnedRoute> =
                    table.iter().map(|(p, h)| LearnedRoute { prefix: *p, next_hops: h.clone() }).collect();
                let d = desired(&with(&base, &routes));
                let got: std::collections::BTreeMap<IpNet, RouteSpec> =
                    w.routes().iter().map(|(p, s)| (*p, s.clone())).collect();
                assert_eq!(got, d.routes, "step {step}");
                let refused: std::collections::BTreeMap<IpNet, String> =
                    w.refusals().map(|(p, r)| (*p, r.clone())).collect();
                let want_refused: std::collections::BTreeMap<IpNet, String> =
                    d.refused.iter().map(|r| (r.prefix, r.reason.clone())).collect();
                assert_eq!(refused, want_refused, "step {step}");
                let (n, f): (std::collections::BTreeSet<_>, std::collections::BTreeSet<_>) = w.l2_entries().unzip();
                assert_eq!((n, f), (d.neighbours.clone(), d.fdb.clone()), "step {step}");
            }
        }
        // The run covered the cases it is about.
        let routes: Vec<LearnedRoute> =
            table.iter().map(|(p, h)| LearnedRoute { prefix: *p, next_hops: h.clone() }).collect();
        let d = desired(&with(&base, &routes));
        assert!(d.routes.values().any(|s| *s == RouteSpec::Blackhole));
        assert!(d.routes.values().any(|s| matches!(s, RouteSpec::Via(h) if h.len() > 1)), "{:?}", d.routes);
    }

    #[test]
    fn a_change_reports_what_it_changed() {
        let pools = pools();
        let node = NodeNet { v4: Some("10.0.0.1/24".parse().unwrap()), v6: None };
        let i = Inputs { routes: &[], own_blocks: &[], pools: &pools, node, ipip_supported: false, underlay_mtu: 1500 };
        let devices = desired::devices(&pools, node, 1500);
        let mut w = Want::new();
        let p: IpNet = "10.244.2.0/26".parse().unwrap();
        let off_subnet: IpAddr = "10.0.9.3".parse().unwrap();
        let c = w.learn(&i, &devices, p, vec![off_subnet]);
        assert_eq!(c, Changed { route: true, vteps: true, newly_refused: false });
        assert_eq!(w.learn(&i, &devices, p, vec![off_subnet]), Changed::default(), "the same route again");
        let c = w.learn(&i, &devices, p, vec!["10.0.0.2".parse().unwrap()]);
        assert_eq!(c, Changed { route: true, vteps: true, newly_refused: false }, "native now: the VTEP goes");
        assert_eq!(w.vteps().count(), 0);
        // An IPv6 pool always tunnels, and this node has no IPv6 address.
        let q: IpNet = "fd00:244:0:2::/122".parse().unwrap();
        let c = w.learn(&i, &devices, q, vec!["fd00::2".parse().unwrap()]);
        assert_eq!(c, Changed { route: false, vteps: false, newly_refused: true });
        assert!(w.refused(&q).unwrap().contains("node.address_v6"));
        assert!(!w.learn(&i, &devices, q, vec!["fd00::2".parse().unwrap()]).newly_refused);
        w.learn(&i, &devices, q, vec![]);
        assert_eq!(w.refused(&q), None);
        assert_eq!(w.prefixes(), vec![p]);
    }
}
