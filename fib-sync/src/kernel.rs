//! Translation between fib-sync's model and rtnetlink messages: the route,
//! neighbour, FDB and link messages merle sends, and the reading of what the
//! kernel reports back.

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_route::link::{InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteNextHop, RouteNextHopFlags,
    RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::AddressFamily;
use rtnetlink::{LinkVxlan, RouteMessageBuilder, RouteNextHopBuilder};

use crate::desired::{Hop, RouteSpec, VxlanDevice};

/// Where merle's routes live and how they are marked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub table: u32,
    pub protocol: u8,
}

/// The interface indexes of the devices merle's routes name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Devices {
    pub vxlan_v4: Option<u32>,
    pub vxlan_v6: Option<u32>,
    pub tunl0: Option<u32>,
}

impl Devices {
    fn index(&self, hop: &Hop) -> Option<u32> {
        match hop {
            Hop::Direct(_) => None,
            Hop::Vxlan(IpAddr::V4(_)) => self.vxlan_v4,
            Hop::Vxlan(IpAddr::V6(_)) => self.vxlan_v6,
            Hop::Ipip(_) => self.tunl0,
        }
    }
}

/// Why a route cannot be expressed as a message right now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("the device {0} does not exist")]
    MissingDevice(&'static str),
    #[error("next hop {0} is not of the prefix's address family")]
    FamilyMismatch(IpAddr),
}

fn base(prefix: IpNet, owner: Owner) -> RouteMessageBuilder<IpAddr> {
    // `destination_prefix` fails only for a family other than IPv4/IPv6.
    let b = RouteMessageBuilder::<IpAddr>::new();
    let b = match b.destination_prefix(prefix.addr(), prefix.prefix_len()) {
        Ok(b) => b,
        Err(_) => RouteMessageBuilder::<IpAddr>::new(),
    };
    b.table_id(owner.table).protocol(RouteProtocol::from(owner.protocol))
}

/// The `RTM_NEWROUTE` for a route.
pub fn route_message(
    prefix: IpNet,
    spec: &RouteSpec,
    owner: Owner,
    devs: &Devices,
) -> Result<RouteMessage, BuildError> {
    let b = base(prefix, owner);
    // In the kernel's form: hops that name the same gateway (two VTEPs
    // whose MACs collide) become one next hop rather than a refused route.
    let spec = spec.kernel_form();
    let hops = match spec.as_ref() {
        RouteSpec::Blackhole => return Ok(b.kind(RouteType::BlackHole).build()),
        RouteSpec::Via(h) => h,
    };
    for h in hops {
        if h.gateway().is_ipv4() != prefix.addr().is_ipv4() {
            return Err(BuildError::FamilyMismatch(h.gateway()));
        }
    }
    let device = |h: &Hop| -> Result<Option<u32>, BuildError> {
        match (h.device(), devs.index(h)) {
            (None, _) => Ok(None),
            (Some(_), Some(i)) => Ok(Some(i)),
            (Some(name), None) => Err(BuildError::MissingDevice(name)),
        }
    };
    if let [h] = hops.as_slice() {
        let mut b = b.gateway(h.kernel_gateway()).map_err(|_| BuildError::FamilyMismatch(h.gateway()))?;
        if let Some(i) = device(h)? {
            b = b.output_interface(i).onlink();
        }
        return Ok(b.build());
    }
    let mut nhs = Vec::with_capacity(hops.len());
    for h in hops {
        let mut nb =
            if prefix.addr().is_ipv4() { RouteNextHopBuilder::new_ipv4() } else { RouteNextHopBuilder::new_ipv6() };
        nb = nb.via(h.kernel_gateway()).map_err(|_| BuildError::FamilyMismatch(h.gateway()))?;
        if let Some(i) = device(h)? {
            nb = nb.interface(i).onlink();
        }
        nhs.push(nb.build());
    }
    Ok(b.multipath(nhs).build())
}

/// The `RTM_DELROUTE` for merle's route at `prefix`: it names the protocol,
/// so the kernel never deletes a route of someone else's in its place.
pub fn route_delete(prefix: IpNet, owner: Owner, priority: Option<u32>) -> RouteMessage {
    let mut m = base(prefix, owner).build();
    // The builder fills scope and type for an add; a delete matches on
    // them, so leave them open.
    m.header.scope = RouteScope::NoWhere;
    m.header.kind = RouteType::Unspec;
    if let Some(p) = priority {
        m.attributes.push(RouteAttribute::Priority(p));
    }
    m
}

/// The dump request for every route of one family.
pub fn route_dump(v6: bool) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header.address_family = if v6 { AddressFamily::Inet6 } else { AddressFamily::Inet };
    m
}

/// A route in the kernel, as far as merle cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelRoute {
    pub prefix: IpNet,
    pub table: u32,
    pub protocol: u8,
    pub priority: u32,
    /// What the route is, read back into merle's terms.
    pub spec: RouteSpec,
}

fn ip_of(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

fn read_hop(gw: Option<IpAddr>, oif: Option<u32>, onlink: bool, devs: &Devices) -> Option<Hop> {
    let gw = gw?;
    let on = |d: Option<u32>| onlink && d.is_some() && d == oif;
    Some(match gw {
        IpAddr::V4(a) if on(devs.tunl0) => Hop::Ipip(a),
        _ if on(devs.vxlan_v4) || on(devs.vxlan_v6) => Hop::Vxlan(gw),
        _ => Hop::Direct(gw),
    })
}

/// The table a route message is in (the attribute wins over the header's
/// 8-bit field).
pub fn table_of(m: &RouteMessage) -> u32 {
    m.attributes
        .iter()
        .find_map(|a| if let RouteAttribute::Table(t) = a { Some(*t) } else { None })
        .unwrap_or(u32::from(m.header.table))
}

/// Reads a kernel route. `None` for what merle never programs: cloned
/// cache entries, non-IP families, local/broadcast/multicast routes and
/// source-specific routes.
pub fn read_route(m: &RouteMessage, devs: &Devices) -> Option<KernelRoute> {
    let h: &RouteHeader = &m.header;
    if h.flags.contains(RouteFlags::Cloned) || h.source_prefix_length != 0 || h.tos != 0 {
        return None;
    }
    let mut dst = None;
    let (mut gw, mut oif, mut priority, mut multipath) = (None, None, 0, None);
    for a in &m.attributes {
        match a {
            RouteAttribute::Destination(d) => dst = ip_of(d),
            RouteAttribute::Gateway(g) => gw = ip_of(g),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Priority(p) => priority = *p,
            RouteAttribute::MultiPath(nhs) => multipath = Some(nhs),
            _ => {}
        }
    }
    let (addr, max) = match h.address_family {
        AddressFamily::Inet => (dst.unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)), 32),
        AddressFamily::Inet6 => (dst.unwrap_or(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)), 128),
        _ => return None,
    };
    if h.destination_prefix_length > max {
        return None;
    }
    let prefix = IpNet::new(addr, h.destination_prefix_length).ok()?;
    let spec = match h.kind {
        RouteType::BlackHole => RouteSpec::Blackhole,
        RouteType::Unicast => {
            let mut hops: Vec<Hop> = match multipath {
                Some(nhs) => nhs.iter().filter_map(|nh| read_next_hop(nh, devs)).collect(),
                None => read_hop(gw, oif, h.flags.contains(RouteFlags::Onlink), devs).into_iter().collect(),
            };
            hops.sort_unstable();
            hops.dedup();
            RouteSpec::Via(hops)
        }
        _ => return None,
    };
    Some(KernelRoute { prefix, table: table_of(m), protocol: u8::from(h.protocol), priority, spec })
}

fn read_next_hop(nh: &RouteNextHop, devs: &Devices) -> Option<Hop> {
    let gw = nh.attributes.iter().find_map(|a| if let RouteAttribute::Gateway(g) = a { ip_of(g) } else { None });
    read_hop(gw, Some(nh.interface_index), nh.flags.contains(RouteNextHopFlags::Onlink), devs)
}

/// A permanent neighbour entry, `ip neigh replace <ip> lladdr <mac> dev
/// <ifindex> nud permanent`.
pub fn neighbour_message(ifindex: u32, ip: IpAddr, mac: [u8; 6]) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header.family = if ip.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
    m.header.ifindex = ifindex;
    m.header.state = NeighbourState::Permanent;
    m.attributes.push(NeighbourAttribute::Destination(match ip {
        IpAddr::V4(a) => NeighbourAddress::Inet(a),
        IpAddr::V6(a) => NeighbourAddress::Inet6(a),
    }));
    m.attributes.push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    m
}

/// A permanent FDB entry on a VXLAN device, `bridge fdb replace <mac> dev
/// <ifindex> dst <ip> self permanent`.
pub fn fdb_message(ifindex: u32, mac: [u8; 6], dst: IpAddr) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header.family = AddressFamily::Bridge;
    m.header.ifindex = ifindex;
    m.header.state = NeighbourState::Permanent;
    m.header.flags = NeighbourFlags::Own;
    m.attributes.push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    m.attributes.push(NeighbourAttribute::Destination(match dst {
        IpAddr::V4(a) => NeighbourAddress::Inet(a),
        IpAddr::V6(a) => NeighbourAddress::Inet6(a),
    }));
    m
}

/// The dump request for the neighbour entries of one family.
pub fn neighbour_dump(family: AddressFamily) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header.family = family;
    m
}

/// A neighbour or FDB entry as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelNeighbour {
    pub ifindex: u32,
    /// FDB (`AF_BRIDGE`) rather than neighbour table.
    pub fdb: bool,
    pub ip: Option<IpAddr>,
    pub mac: Option<[u8; 6]>,
    pub permanent: bool,
}

pub fn read_neighbour(m: &NeighbourMessage) -> Option<KernelNeighbour> {
    let fdb = match m.header.family {
        AddressFamily::Bridge => true,
        AddressFamily::Inet | AddressFamily::Inet6 => false,
        _ => return None,
    };
    let mut ip = None;
    let mut mac = None;
    for a in &m.attributes {
        match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => ip = Some(IpAddr::V4(*v4)),
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => ip = Some(IpAddr::V6(*v6)),
            // An FDB entry's NDA_DST comes in an AF_BRIDGE message, whose
            // family says nothing of the address's: the crate hands back
            // the raw bytes, and their length tells the family.
            NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => ip = raw_ip(b),
            NeighbourAttribute::LinkLayerAddress(l) => mac = <[u8; 6]>::try_from(l.as_slice()).ok(),
            _ => {}
        }
    }
    Some(KernelNeighbour { ifindex: m.header.ifindex, fdb, ip, mac, permanent: is_permanent(m.header.state) })
}

fn raw_ip(b: &[u8]) -> Option<IpAddr> {
    if let Ok(a) = <[u8; 4]>::try_from(b) {
        Some(IpAddr::from(a))
    } else {
        <[u8; 16]>::try_from(b).ok().map(IpAddr::from)
    }
}

/// NUD states are bits: the kernel reports a static entry on a VXLAN
/// device as `NOARP|PERMANENT`, which the crate cannot name.
fn is_permanent(state: NeighbourState) -> bool {
    const NUD_PERMANENT: u16 = 0x80;
    u16::from(state) & NUD_PERMANENT != 0
}

/// The `RTM_NEWLINK` that creates a VXLAN device, up: learning off (every
/// FDB entry is merle's), the given VNI and port, sourced from the node's
/// address, with its derived MAC and overlay MTU.
pub fn vxlan_create(dev: &VxlanDevice, vni: u32, port: u16) -> LinkMessage {
    let mut b = LinkVxlan::new(dev.name, vni).port(port).learning(false);
    b = match dev.local {
        IpAddr::V4(a) => b.local(a),
        IpAddr::V6(a) => b.local6(a),
    };
    b.address(dev.mac.to_vec()).mtu(u32::from(dev.mtu)).up().build()
}

/// The `RTM_NEWLINK` that brings an existing device to the MAC, MTU and up
/// state merle wants.
pub fn link_set(index: u32, mac: [u8; 6], mtu: u16) -> LinkMessage {
    rtnetlink::LinkUnspec::new_with_index(index).address(mac.to_vec()).mtu(u32::from(mtu)).up().build()
}

pub fn link_delete(index: u32) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = index;
    m
}

/// The dump request for every link.
pub fn link_dump() -> LinkMessage {
    LinkMessage::default()
}

/// A link as far as fib-sync cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelLink {
    pub index: u32,
    pub name: String,
    pub up: bool,
    pub mac: Option<[u8; 6]>,
    pub mtu: Option<u32>,
    pub kind: Option<String>,
    pub vxlan: Option<VxlanInfo>,
}

/// The settings of a VXLAN device that merle cares about.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VxlanInfo {
    pub vni: Option<u32>,
    pub port: Option<u16>,
    pub local: Option<IpAddr>,
    pub learning: Option<bool>,
}

pub fn read_link(m: &LinkMessage) -> KernelLink {
    let mut l = KernelLink {
        index: m.header.index,
        name: String::new(),
        up: m.header.flags.contains(LinkFlags::Up),
        mac: None,
        mtu: None,
        kind: None,
        vxlan: None,
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => l.name.clone_from(n),
            LinkAttribute::Address(mac) => l.mac = <[u8; 6]>::try_from(mac.as_slice()).ok(),
            LinkAttribute::Mtu(mtu) => l.mtu = Some(*mtu),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    match i {
                        LinkInfo::Kind(k) => {
                            l.kind = Some(match k {
                                InfoKind::Vxlan => "vxlan".to_owned(),
                                InfoKind::IpIp => "ipip".to_owned(),
                                other => format!("{other:?}").to_lowercase(),
                            })
                        }
                        LinkInfo::Data(InfoData::Vxlan(v)) => {
                            let mut x = VxlanInfo::default();
                            for a in v {
                                match a {
                                    InfoVxlan::Id(id) => x.vni = Some(*id),
                                    InfoVxlan::Port(p) => x.port = Some(*p),
                                    InfoVxlan::Local(a) => x.local = Some(IpAddr::V4(*a)),
                                    InfoVxlan::Local6(a) => x.local = Some(IpAddr::V6(*a)),
                                    InfoVxlan::Learning(b) => x.learning = Some(*b),
                                    _ => {}
                                }
                            }
                            l.vxlan = Some(x);
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    l
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const OWNER: Owner = Owner { table: 254, protocol: 198 };

    fn devs() -> Devices {
        Devices { vxlan_v4: Some(7), vxlan_v6: Some(8), tunl0: None }
    }

    fn round_trip(prefix: &str, spec: RouteSpec) {
        let p: IpNet = prefix.parse().unwrap();
        let m = route_message(p, &spec, OWNER, &devs()).unwrap();
        let k = read_route(&m, &devs()).unwrap();
        assert_eq!((k.prefix, k.table, k.protocol, k.spec.kernel_form()), (p, 254, 198, spec.kernel_form()));
    }

    #[test]
    fn an_ipv6_vxlan_route_names_the_vtep_link_local_address() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let vtep = ip("fd00::2");
        let spec = RouteSpec::Via(vec![Hop::Vxlan(vtep)]);
        let m = route_message("fd00:244::/122".parse().unwrap(), &spec, OWNER, &devs()).unwrap();
        let ll = crate::vtep::link_local(crate::vtep::vtep_mac(vtep));
        assert!(m.attributes.contains(&RouteAttribute::Gateway(RouteAddress::Inet6(ll))), "{m:?}");
        assert!(m.attributes.contains(&RouteAttribute::Oif(8)));
        let k = read_route(&m, &devs()).unwrap();
        assert_eq!(k.spec, RouteSpec::Via(vec![Hop::Vxlan(std::net::IpAddr::V6(ll))]));
        assert_eq!(k.spec.kernel_form(), spec.kernel_form());
        assert_ne!(k.spec.kernel_form(), RouteSpec::Via(vec![Hop::Vxlan(ip("fd00::3"))]).kernel_form());
    }

    /// What the kernel sends back for an entry merle wrote: the bytes of
    /// the message, parsed as a dump reply is.
    fn as_dumped(m: &NeighbourMessage, state: u16) -> NeighbourMessage {
        use netlink_packet_core::{Emitable, Parseable};
        let mut m = m.clone();
        m.header.state = NeighbourState::from(state);
        let mut buf = vec![0u8; m.buffer_len()];
        m.emit(&mut buf);
        NeighbourMessage::parse(&buf[..]).unwrap()
    }

    #[test]
    fn fdb_and_neighbour_entries_read_back_with_their_address_and_as_permanent() {
        const NOARP_PERMANENT: u16 = 0x40 | 0x80;
        let mac = [0x02, 0x6d, 10, 1, 0, 3];
        for dst in ["10.1.0.3", "fd00:1::3"] {
            let dst: IpAddr = dst.parse().unwrap();
            for state in [0x80, NOARP_PERMANENT] {
                let k = read_neighbour(&as_dumped(&fdb_message(7, mac, dst), state)).unwrap();
                assert_eq!(
                    k,
                    KernelNeighbour { ifindex: 7, fdb: true, ip: Some(dst), mac: Some(mac), permanent: true }
                );
                let k = read_neighbour(&as_dumped(&neighbour_message(7, dst, mac), state)).unwrap();
                assert_eq!(
                    k,
                    KernelNeighbour { ifindex: 7, fdb: false, ip: Some(dst), mac: Some(mac), permanent: true }
                );
            }
            // A learned (reachable) entry is not merle's.
            let k = read_neighbour(&as_dumped(&fdb_message(7, mac, dst), 0x02)).unwrap();
            assert!(!k.permanent);
        }
    }

    #[test]
    /// Builder and reader agree with each other; that they agree with the
    /// kernel is `route_messages_are_what_the_kernel_reports` in
    /// tests/kernel.rs, which sends these messages to a real kernel.
    fn every_route_kind_reads_back_as_what_was_built() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        round_trip("10.244.1.0/26", RouteSpec::Blackhole);
        round_trip("10.244.2.0/26", RouteSpec::Via(vec![Hop::Direct(ip("10.0.0.2"))]));
        round_trip("10.244.3.0/26", RouteSpec::Via(vec![Hop::Vxlan(ip("10.1.0.3"))]));
        round_trip("fd00:244::/122", RouteSpec::Via(vec![Hop::Vxlan(ip("fd00:1::3"))]));
        round_trip("10.96.0.0/12", RouteSpec::Via(vec![Hop::Direct(ip("10.0.0.2")), Hop::Direct(ip("10.0.0.3"))]));
        round_trip("fd00:96::/108", RouteSpec::Via(vec![Hop::Direct(ip("fd00::2")), Hop::Vxlan(ip("fd00:1::3"))]));
    }

    #[test]
    fn a_tunnel_route_without_its_device_is_an_error_and_families_must_match() {
        let p: IpNet = "10.244.3.0/26".parse().unwrap();
        let ipip = RouteSpec::Via(vec![Hop::Ipip("10.1.0.3".parse().unwrap())]);
        assert_eq!(route_message(p, &ipip, OWNER, &devs()), Err(BuildError::MissingDevice("tunl0")));
        let v6 = RouteSpec::Via(vec![Hop::Direct("fd00::2".parse().unwrap())]);
        assert!(matches!(route_message(p, &v6, OWNER, &devs()), Err(BuildError::FamilyMismatch(_))));
    }

    #[test]
    fn a_delete_names_merles_protocol_and_table() {
        let m = route_delete("10.244.3.0/26".parse().unwrap(), Owner { table: 1000, protocol: 198 }, None);
        assert_eq!(u8::from(m.header.protocol), 198);
        assert_eq!(table_of(&m), 1000);
    }
}
