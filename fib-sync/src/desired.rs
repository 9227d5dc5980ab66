//! The kernel state merle wants, computed without touching the kernel.
//!
//! For each learned prefix (the Loc-RIB best path and its ECMP set):
//! - outside every pool (service ranges, ToR routes): a plain route to the
//!   next hops;
//! - inside a pool, per next hop, as Calico's IPPool modes say:
//!   - VXLAN when `vxlan_mode` is Always, or CrossSubnet and the next hop is
//!     outside this node's subnet: `via <VTEP IP> dev vxlan.merle onlink`,
//!     plus a permanent neighbour entry VTEP IP → VTEP MAC and a permanent
//!     FDB entry VTEP MAC → node IP ([`crate::vtep`]); for IPv6, `via
//!     <VTEP link-local> dev vxlan-v6.merle onlink` with the neighbour entry
//!     on the link-local address (the kernel refuses the underlay address
//!     as an IPv6 onlink gateway when another device's route covers it);
//!   - IPIP under the same rules with `ipip_mode`: `via <node IP> dev tunl0
//!     onlink`, IPv4 only, and only where the kernel has IPIP;
//!   - otherwise a plain route to the next hop.
//!
//! This node's own blocks become blackhole routes, so traffic to an
//! unallocated address in them is dropped here rather than sent back out.
//! Several next hops make one multipath route.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use conf::{EncapMode, Pool};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::vtep::vtep_mac;

pub const VXLAN_DEV_V4: &str = "vxlan.merle";
pub const VXLAN_DEV_V6: &str = "vxlan-v6.merle";
pub const IPIP_DEV: &str = "tunl0";
/// Outer IPv4 + UDP + VXLAN + inner Ethernet headers.
pub const VXLAN_OVERHEAD_V4: u16 = 50;
/// The same over IPv6.
pub const VXLAN_OVERHEAD_V6: u16 = 70;

/// A Loc-RIB best path as fib-sync sees it: the prefix and the next hops of
/// its ECMP set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnedRoute {
    pub prefix: IpNet,
    pub next_hops: Vec<IpAddr>,
}

/// This node's addresses with their subnets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeNet {
    pub v4: Option<Ipv4Net>,
    pub v6: Option<Ipv6Net>,
}

impl NodeNet {
    /// Whether `ip` is on this node's subnet (same family only).
    pub fn on_subnet(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => self.v4.is_some_and(|n| n.contains(&a)),
            IpAddr::V6(a) => self.v6.is_some_and(|n| n.contains(&a)),
        }
    }

    fn is_own(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => self.v4.is_some_and(|n| n.addr() == a),
            IpAddr::V6(a) => self.v6.is_some_and(|n| n.addr() == a),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub routes: &'a [LearnedRoute],
    /// This node's blocks (its `[[advertise]]` prefixes inside a pool, until
    /// IPAM supplies them).
    pub own_blocks: &'a [IpNet],
    pub pools: &'a [Pool],
    pub node: NodeNet,
    /// Whether this kernel can do IPIP (`tunl0`).
    pub ipip_supported: bool,
    /// The underlay MTU, for the VXLAN devices' MTU.
    pub underlay_mtu: u16,
}

/// One next hop of a kernel route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Hop {
    /// `via <gateway>`; the kernel picks the device.
    Direct(IpAddr),
    /// `via <VTEP IP> dev vxlan.merle onlink`, or for IPv6 `via <the VTEP's
    /// link-local address> dev vxlan-v6.merle onlink` ([`crate::vtep`]).
    /// Read back from the kernel, an IPv6 hop carries the link-local
    /// address; [`RouteSpec::kernel_form`] compares the two.
    Vxlan(IpAddr),
    /// `via <node IP> dev tunl0 onlink`.
    Ipip(Ipv4Addr),
}

impl Hop {
    pub fn gateway(&self) -> IpAddr {
        match *self {
            Self::Direct(a) | Self::Vxlan(a) => a,
            Self::Ipip(a) => IpAddr::V4(a),
        }
    }

    /// The gateway address the kernel route names.
    pub fn kernel_gateway(&self) -> IpAddr {
        match *self {
            Self::Vxlan(a) => crate::vtep::route_gateway(a),
            _ => self.gateway(),
        }
    }

    /// The hop as the kernel holds it (and as it reads back).
    pub fn kernel_form(&self) -> Hop {
        match *self {
            Self::Vxlan(a) => Self::Vxlan(crate::vtep::route_gateway(a)),
            h => h,
        }
    }

    /// The device the route names, with `onlink`; `None` for a direct hop.
    pub fn device(&self) -> Option<&'static str> {
        match self {
            Self::Direct(_) => None,
            Self::Vxlan(IpAddr::V4(_)) => Some(VXLAN_DEV_V4),
            Self::Vxlan(IpAddr::V6(_)) => Some(VXLAN_DEV_V6),
            Self::Ipip(_) => Some(IPIP_DEV),
        }
    }
}

/// What one kernel route is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteSpec {
    Blackhole,
    /// One hop, or several for a multipath route; sorted, no duplicates.
    Via(Vec<Hop>),
}

impl RouteSpec {
    /// The route as the kernel holds it: what a wanted route is compared
    /// with when it is read back. Borrowed when nothing changes (every
    /// route but an IPv6 VXLAN one), so the comparison costs no allocation.
    pub fn kernel_form(&self) -> std::borrow::Cow<'_, RouteSpec> {
        match self {
            Self::Via(hops) if hops.iter().any(|h| h.kernel_form() != *h) => {
                let mut h: Vec<Hop> = hops.iter().map(Hop::kernel_form).collect();
                h.sort_unstable();
                h.dedup();
                std::borrow::Cow::Owned(Self::Via(h))
            }
            _ => std::borrow::Cow::Borrowed(self),
        }
    }
}

/// A VXLAN device merle manages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanDevice {
    pub name: &'static str,
    /// The local underlay address (this node's address).
    pub local: IpAddr,
    pub mac: [u8; 6],
    pub mtu: u16,
}

/// A permanent neighbour entry on a VXLAN device: VTEP IP → VTEP MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Neighbour {
    pub device: &'static str,
    pub ip: IpAddr,
    pub mac: [u8; 6],
}

/// A permanent FDB entry on a VXLAN device: VTEP MAC → the remote node's
/// underlay address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FdbEntry {
    pub device: &'static str,
    pub mac: [u8; 6],
    pub dst: IpAddr,
}

/// A learned route that cannot be installed as its pool asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub prefix: IpNet,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    pub routes: BTreeMap<IpNet, RouteSpec>,
    pub devices: Vec<VxlanDevice>,
    pub neighbours: BTreeSet<Neighbour>,
    pub fdb: BTreeSet<FdbEntry>,
    pub refused: Vec<Refused>,
}

/// The pool `prefix` lies in, if any.
fn pool_of<'p>(pools: &'p [Pool], prefix: &IpNet) -> Option<&'p Pool> {
    pools.iter().find(|p| p.cidr.contains(prefix))
}

fn wants(mode: EncapMode, on_subnet: bool) -> bool {
    match mode {
        EncapMode::Never => false,
        EncapMode::Always => true,
        EncapMode::CrossSubnet => !on_subnet,
    }
}

/// What one learned prefix becomes in the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Route(RouteSpec),
    /// The pool's mode cannot be honoured for any next hop; why.
    Refused(String),
    /// Nothing: the prefix is inside one of this node's blocks, or every
    /// next hop is this node itself.
    Nothing,
}

/// The VXLAN devices these pools call for: one per underlay family that
/// some VXLAN pool of that family needs and this node has an address in.
pub fn devices(pools: &[Pool], node: NodeNet, underlay_mtu: u16) -> Vec<VxlanDevice> {
    let vxlan_family =
        |v6: bool| pools.iter().any(|p| p.vxlan_mode != EncapMode::Never && p.cidr.addr().is_ipv6() == v6);
    let mut out = Vec::new();
    if let (true, Some(n)) = (vxlan_family(false), node.v4) {
        let local = IpAddr::V4(n.addr());
        let mtu = underlay_mtu.saturating_sub(VXLAN_OVERHEAD_V4);
        out.push(VxlanDevice { name: VXLAN_DEV_V4, local, mac: vtep_mac(local), mtu });
    }
    if let (true, Some(n)) = (vxlan_family(true), node.v6) {
        let local = IpAddr::V6(n.addr());
        let mtu = underlay_mtu.saturating_sub(VXLAN_OVERHEAD_V6);
        out.push(VxlanDevice { name: VXLAN_DEV_V6, local, mac: vtep_mac(local), mtu });
    }
    out
}

/// The kernel route for one learned prefix and its ECMP next hops. `i`'s
/// `routes` are not read.
pub fn route_for(i: &Inputs<'_>, devices: &[VxlanDevice], prefix: IpNet, next_hops: &[IpAddr]) -> Outcome {
    // Our own blocks are blackholed, and nothing learned inside them counts,
    // except a single address another node borrowed from one of them: that
    // pod lives there, so its host route must beat our blackhole.
    let borrowed = prefix.prefix_len() == prefix.max_prefix_len();
    if i.own_blocks.iter().any(|b| b.contains(&prefix) && (b == &prefix || !borrowed)) {
        return Outcome::Nothing;
    }
    let has_device = |name: &str| devices.iter().any(|x| x.name == name);
    let pool = pool_of(i.pools, &prefix);
    let mut hops = BTreeSet::new();
    let mut refusal = None;
    for &nh in next_hops {
        if nh.is_unspecified() || i.node.is_own(nh) {
            continue;
        }
        if nh.is_ipv4() != prefix.addr().is_ipv4() {
            refusal = Some(format!("next hop {nh} is of the other address family than {prefix}"));
            continue;
        }
        let on_subnet = i.node.on_subnet(nh);
        let hop = match pool {
            Some(p) if wants(p.vxlan_mode, on_subnet) => {
                if !has_device(if nh.is_ipv4() { VXLAN_DEV_V4 } else { VXLAN_DEV_V6 }) {
                    refusal = Some(format!(
                        "VXLAN to {nh} needs this node's IPv{} address (node.address{})",
                        if nh.is_ipv4() { 4 } else { 6 },
                        if nh.is_ipv4() { "" } else { "_v6" }
                    ));
                    continue;
                }
                Hop::Vxlan(nh)
            }
            Some(p) if wants(p.ipip_mode, on_subnet) => match nh {
                IpAddr::V4(a) if i.ipip_supported => Hop::Ipip(a),
                IpAddr::V4(_) => {
                    refusal = Some(format!("pool {} uses IPIP, which this kernel does not have", p.cidr));
                    continue;
                }
                IpAddr::V6(_) => {
                    refusal = Some(format!("IPIP cannot reach the IPv6 next hop {nh}"));
                    continue;
                }
            },
            _ => Hop::Direct(nh),
        };
        hops.insert(hop);
    }
    match (hops.is_empty(), refusal) {
        (false, _) => Outcome::Route(RouteSpec::Via(hops.into_iter().collect())),
        (true, Some(reason)) => Outcome::Refused(reason),
        (true, None) => Outcome::Nothing,
    }
}

/// The permanent neighbour and FDB entries a VXLAN hop needs.
pub fn vtep_entries(hop: &Hop) -> Option<(Neighbour, FdbEntry)> {
    let Hop::Vxlan(vtep) = *hop else { return None };
    let device = hop.device().unwrap_or(VXLAN_DEV_V4);
    let mac = vtep_mac(vtep);
    let ip = crate::vtep::route_gateway(vtep);
    Some((Neighbour { device, ip, mac }, FdbEntry { device, mac, dst: vtep }))
}

/// The route one prefix gets: a blackhole for one of this node's blocks,
/// else the route of what was learned for it ([`route_for`]), else
/// nothing. The one rule the engine evaluates per changed prefix
/// ([`crate::want::Want`]).
pub fn route(i: &Inputs<'_>, devices: &[VxlanDevice], prefix: IpNet, learned: Option<&[IpAddr]>) -> Outcome {
    if i.own_blocks.contains(&prefix) {
        return Outcome::Route(RouteSpec::Blackhole);
    }
    match learned {
        Some(hops) => route_for(i, devices, prefix, hops),
        None => Outcome::Nothing,
    }
}

/// The kernel state for these inputs, the whole table at once: the
/// routes folded through [`crate::want::Want`] one by one, as the engine
/// receives them.
pub fn desired(i: &Inputs<'_>) -> Desired {
    let devices = devices(i.pools, i.node, i.underlay_mtu);
    let mut w = crate::want::Want::new();
    for r in i.routes {
        w.learn(i, &devices, r.prefix, r.next_hops.clone());
    }
    for b in i.own_blocks {
        w.recompute(i, &devices, *b);
    }
    let mut d =
        Desired { routes: w.routes().iter().map(|(p, s)| (*p, s.clone())).collect(), devices, ..Desired::default() };
    for (n, f) in w.l2_entries() {
        d.neighbours.insert(n);
        d.fdb.insert(f);
    }
    d.refused = w.refusals().map(|(p, r)| Refused { prefix: *p, reason: r.clone() }).collect();
    d.refused.sort_by_key(|r| r.prefix);
    d
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pool(cidr: &str, ipip: EncapMode, vxlan: EncapMode) -> Pool {
        Pool { cidr: cidr.parse().unwrap(), block_size: None, ipip_mode: ipip, vxlan_mode: vxlan, nat_outgoing: false }
    }

    fn route(prefix: &str, hops: &[&str]) -> LearnedRoute {
        LearnedRoute { prefix: prefix.parse().unwrap(), next_hops: hops.iter().map(|h| h.parse().unwrap()).collect() }
    }

    fn node() -> NodeNet {
        NodeNet { v4: Some("10.0.0.1/24".parse().unwrap()), v6: Some("fd00::1/64".parse().unwrap()) }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn run(routes: &[LearnedRoute], own: &[&str], pools: &[Pool], ipip: bool) -> Desired {
        let own: Vec<IpNet> = own.iter().map(|p| p.parse().unwrap()).collect();
        desired(&Inputs { routes, own_blocks: &own, pools, node: node(), ipip_supported: ipip, underlay_mtu: 1500 })
    }

    fn spec(d: &Desired, p: &str) -> Option<RouteSpec> {
        d.routes.get(&p.parse().unwrap()).cloned()
    }

    #[test]
    fn cross_subnet_vxlan_goes_native_on_subnet_and_tunnelled_off_it() {
        let pools = [pool("10.244.0.0/16", EncapMode::Never, EncapMode::CrossSubnet)];
        let routes = [route("10.244.2.0/26", &["10.0.0.2"]), route("10.244.3.0/26", &["10.1.0.3"])];
        let d = run(&routes, &["10.244.1.0/26"], &pools, false);
        assert_eq!(spec(&d, "10.244.2.0/26"), Some(RouteSpec::Via(vec![Hop::Direct(ip("10.0.0.2"))])));
        assert_eq!(spec(&d, "10.244.3.0/26"), Some(RouteSpec::Via(vec![Hop::Vxlan(ip("10.1.0.3"))])));
        assert_eq!(spec(&d, "10.244.1.0/26"), Some(RouteSpec::Blackhole));
        let mac = vtep_mac(ip("10.1.0.3"));
        assert_eq!(
            d.neighbours.iter().copied().collect::<Vec<_>>(),
            vec![Neighbour { device: VXLAN_DEV_V4, ip: ip("10.1.0.3"), mac }]
        );
        assert_eq!(
            d.fdb.iter().copied().collect::<Vec<_>>(),
            vec![FdbEntry { device: VXLAN_DEV_V4, mac, dst: ip("10.1.0.3") }]
        );
        assert_eq!(d.devices.len(), 1);
        assert_eq!(
            (d.devices[0].mtu, d.devices[0].local, d.devices[0].mac),
            (1450, ip("10.0.0.1"), vtep_mac(ip("10.0.0.1")))
        );
        assert!(d.refused.is_empty());
    }

    #[test]
    fn always_tunnels_even_on_subnet_and_never_does_not() {
        let pools = [
            pool("10.244.0.0/16", EncapMode::Never, EncapMode::Always),
            pool("10.245.0.0/16", EncapMode::Never, EncapMode::Never),
        ];
        let routes = [route("10.244.2.0/26", &["10.0.0.2"]), route("10.245.3.0/26", &["10.1.0.3"])];
        let d = run(&routes, &[], &pools, false);
        assert_eq!(spec(&d, "10.244.2.0/26"), Some(RouteSpec::Via(vec![Hop::Vxlan(ip("10.0.0.2"))])));
        assert_eq!(spec(&d, "10.245.3.0/26"), Some(RouteSpec::Via(vec![Hop::Direct(ip("10.1.0.3"))])));
    }

    #[test]
    fn routes_outside_pools_are_plain_and_ecmp_is_one_sorted_multipath_route() {
        let pools = [pool("10.244.0.0/16", EncapMode::Never, EncapMode::Always)];
        let routes = [route("10.96.0.0/12", &["10.0.0.3", "10.0.0.2", "10.0.0.3"])];
        let d = run(&routes, &[], &pools, false);
        assert_eq!(
            spec(&d, "10.96.0.0/12"),
            Some(RouteSpec::Via(vec![Hop::Direct(ip("10.0.0.2")), Hop::Direct(ip("10.0.0.3"))]))
        );
        assert!(d.neighbours.is_empty() && d.fdb.is_empty());
    }

    #[test]
    fn ipip_is_used_where_the_kernel_has_it_and_refused_where_not() {
        let pools = [pool("10.244.0.0/16", EncapMode::CrossSubnet, EncapMode::Never)];
        let routes = [route("10.244.2.0/26", &["10.0.0.2"]), route("10.244.3.0/26", &["10.1.0.3"])];
        let d = run(&routes, &[], &pools, true);
        assert_eq!(spec(&d, "10.244.3.0/26"), Some(RouteSpec::Via(vec![Hop::Ipip("10.1.0.3".parse().unwrap())])));
        assert_eq!(Hop::Ipip("10.1.0.3".parse().unwrap()).device(), Some(IPIP_DEV));
        let d = run(&routes, &[], &pools, false);
        // The on-subnet hop needs no tunnel and is still installed.
        assert_eq!(spec(&d, "10.244.2.0/26"), Some(RouteSpec::Via(vec![Hop::Direct(ip("10.0.0.2"))])));
        assert_eq!(spec(&d, "10.244.3.0/26"), None);
        assert_eq!(d.refused.len(), 1);
        assert!(d.refused[0].reason.contains("does not have"), "{:?}", d.refused);
    }

    #[test]
    fn ipv6_pools_use_the_v6_device_and_need_a_v6_node_address() {
        let pools = [pool("fd00:244::/56", EncapMode::Never, EncapMode::CrossSubnet)];
        let routes = [route("fd00:244:0:2::/122", &["fd00:1::3"]), route("fd00:244:0:3::/122", &["fd00::2"])];
        let d = run(&routes, &[], &pools, false);
        assert_eq!(spec(&d, "fd00:244:0:2::/122"), Some(RouteSpec::Via(vec![Hop::Vxlan(ip("fd00:1::3"))])));
        assert_eq!(Hop::Vxlan(ip("fd00:1::3")).device(), Some(VXLAN_DEV_V6));
        let mac = vtep_mac(ip("fd00:1::3"));
        let ll = IpAddr::V6(crate::vtep::link_local(mac));
        assert_eq!(Hop::Vxlan(ip("fd00:1::3")).kernel_gateway(), ll);
        assert_eq!(
            d.neighbours.iter().map(|n| (n.device, n.ip, n.mac)).collect::<Vec<_>>(),
            vec![(VXLAN_DEV_V6, ll, mac)],
            "the neighbour entry is on the link-local gateway"
        );
        assert_eq!(
            d.fdb.iter().map(|f| (f.device, f.mac, f.dst)).collect::<Vec<_>>(),
            vec![(VXLAN_DEV_V6, mac, ip("fd00:1::3"))],
            "the FDB entry sends to the underlay address"
        );
        assert_eq!(spec(&d, "fd00:244:0:3::/122"), Some(RouteSpec::Via(vec![Hop::Direct(ip("fd00::2"))])));
        assert_eq!(d.devices.iter().map(|x| (x.name, x.mtu)).collect::<Vec<_>>(), vec![(VXLAN_DEV_V6, 1430)]);
        // Without an IPv6 node address there is no IPv6 VTEP.
        let d = desired(&Inputs {
            routes: &routes,
            own_blocks: &[],
            pools: &pools,
            node: NodeNet { v4: node().v4, v6: None },
            ipip_supported: false,
            underlay_mtu: 1500,
        });
        assert!(d.devices.is_empty());
        assert_eq!(d.refused.len(), 2, "{:?}", d.refused);
        assert!(d.refused[0].reason.contains("node.address_v6"));
    }

    #[test]
    fn own_blocks_win_and_own_next_hops_are_skipped() {
        let pools = [pool("10.244.0.0/16", EncapMode::Never, EncapMode::Never)];
        let routes = [
            route("10.244.1.0/26", &["10.0.0.2"]),
            route("10.244.1.32/27", &["10.0.0.2"]),
            route("10.244.4.0/26", &["10.0.0.1"]),
            route("10.244.5.0/26", &["10.0.0.1", "10.0.0.5"]),
            route("10.244.1.7/32", &["10.0.0.3"]),
        ];
        let d = run(&routes, &["10.244.1.0/26"], &pools, false);
        // An address borrowed from our block by another node is routed there.
        assert_eq!(spec(&d, "10.244.1.7/32"), Some(RouteSpec::Via(vec![Hop::Direct(ip("10.0.0.3"))])));
        assert_eq!(spec(&d, "10.244.1.0/26"), Some(RouteSpec::Blackhole));
        assert_eq!(spec(&d, "10.244.1.32/27"), None);
        assert_eq!(spec(&d, "10.244.4.0/26"), None);
        assert_eq!(spec(&d, "10.244.5.0/26"), Some(RouteSpec::Via(vec![Hop::Direct(ip("10.0.0.5"))])));
        assert!(d.refused.is_empty());
    }

    #[test]
    fn no_vxlan_pool_means_no_device() {
        let d = run(&[], &[], &[pool("10.244.0.0/16", EncapMode::Never, EncapMode::Never)], false);
        assert!(d.devices.is_empty() && d.routes.is_empty());
    }
}
