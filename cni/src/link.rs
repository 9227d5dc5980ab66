//! A pod's network plumbing, the way Calico does it: a veth pair whose host
//! end (MAC ee:ee:ee:ee:ee:ee, proxy ARP on) answers for the pod's gateway
//! 169.254.1.1, the pod's addresses as /32 and /128, and a host route to
//! each of them through the host end.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::path::Path;

use merle_netlink::{Netlink, NlError, Refusal, Request};
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteScope};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::{AddressMessageBuilder, LinkUnspec, RouteMessageBuilder};

pub use merle_ebpf::pods::HOST_MAC;
pub use merle_ipam::pods::host_veth_name;

/// The pod's IPv4 gateway, answered by proxy ARP on the host end.
pub const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// The pod's IPv6 gateway: the host end's link-local address (EUI-64 of
/// [`HOST_MAC`]).
pub const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0xecee, 0xeeff, 0xfeee, 0xeeee);
const ENODEV: i32 = libc::ENODEV;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("network namespace {0}: {1}")]
    Netns(String, String),
    #[error("{0}: {1}")]
    Kernel(String, Refusal),
    #[error(transparent)]
    Netlink(#[from] NlError),
    #[error("cannot set {0}: {1}")]
    Sysctl(String, std::io::Error),
    /// CHECK: the attachment is not as ADD left it.
    #[error("{0}")]
    Mismatch(String),
    /// ADD: the pod's interface name is taken by something else.
    #[error("{0}")]
    Busy(String),
}

/// One pod attachment.
#[derive(Debug, Clone, Copy)]
pub struct Attachment<'a> {
    pub host: &'a str,
    pub ifname: &'a str,
    pub netns: &'a Path,
    pub addrs: &'a [IpAddr],
    pub mtu: u32,
}

/// What ADD reports about the pod's interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Created {
    pub pod_mac: [u8; 6],
}

pub fn mac_string(m: &[u8]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

fn open_netns(path: &Path) -> Result<File, LinkError> {
    File::open(path).map_err(|e| LinkError::Netns(path.display().to_string(), e.to_string()))
}

/// A netlink socket inside the netns `ns`: opened by a thread that entered
/// it, and bound to it for good, whatever thread uses it later.
fn netlink_in(ns: &File, path: &Path) -> Result<Netlink, LinkError> {
    let ns = ns.try_clone().map_err(|e| LinkError::Netns(path.display().to_string(), e.to_string()))?;
    let shown = path.display().to_string();
    std::thread::scope(|s| {
        s.spawn(|| {
            // setns(2) moves only this thread, which ends right after.
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| LinkError::Netns(shown.clone(), format!("not a network namespace ({e})")))?;
            Ok(Netlink::open()?)
        })
        .join()
        .unwrap_or_else(|_| Err(LinkError::Netns(shown.clone(), "the netns thread panicked".into())))
    })
}

fn check(what: impl Into<String>, r: Result<(), Refusal>) -> Result<(), LinkError> {
    r.map_err(|e| LinkError::Kernel(what.into(), e))
}

/// The link called `name`, if there is one.
fn link_by_name(nl: &mut Netlink, name: &str) -> Result<Option<LinkMessage>, LinkError> {
    let m = LinkUnspec::new_with_name(name).build();
    match nl.get(RouteNetlinkMessage::GetLink(m))? {
        Ok(ms) => Ok(ms.into_iter().find_map(|m| if let RouteNetlinkMessage::NewLink(l) = m { Some(l) } else { None })),
        Err(r) if r.errno == ENODEV => Ok(None),
        Err(r) => Err(LinkError::Kernel(format!("looking up link {name}"), r)),
    }
}

fn link_mac(l: &LinkMessage) -> Option<[u8; 6]> {
    l.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(m) => m.as_slice().try_into().ok(),
        _ => None,
    })
}

fn sysctl(path: String, value: &str) -> Result<(), LinkError> {
    std::fs::write(&path, value).map_err(|e| LinkError::Sysctl(path, e))
}

fn host_sysctls(host: &str, v6: bool) -> Result<(), LinkError> {
    for (k, v) in [("proxy_arp", "1"), ("forwarding", "1"), ("route_localnet", "1")] {
        sysctl(format!("/proc/sys/net/ipv4/conf/{host}/{k}"), v)?;
    }
    // Answer ARP for the gateway at once, not after proxy_delay's jitter.
    sysctl(format!("/proc/sys/net/ipv4/neigh/{host}/proxy_delay"), "0")?;
    if v6 {
        // The pods' gateway is the EUI-64 link-local of HOST_MAC, whatever
        // the host's defaults for new links say (stable_privacy, none, or
        // IPv6 off).
        for (k, v) in [
            ("disable_ipv6", "0"),
            ("addr_gen_mode", "0"),
            ("proxy_ndp", "1"),
            ("accept_ra", "0"),
            ("forwarding", "1"),
            ("accept_dad", "0"),
        ] {
            sysctl(format!("/proc/sys/net/ipv6/conf/{host}/{k}"), v)?;
        }
    }
    Ok(())
}

fn address(index: u32, ip: IpAddr) -> AddressMessage {
    match ip {
        IpAddr::V4(a) => AddressMessageBuilder::<Ipv4Addr>::new().index(index).address(a, 32).build(),
        IpAddr::V6(a) => {
            let mut m = AddressMessageBuilder::<Ipv6Addr>::new().index(index).address(a, 128).build();
            // No duplicate detection: the address is this pod's alone, and
            // DAD would leave it unusable for a second or more.
            m.attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
            m
        }
    }
}

/// `<ip>/32 dev <index> scope link` (or /128).
fn device_route(ip: IpAddr, index: u32) -> RouteMessage {
    RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(ip, if ip.is_ipv4() { 32 } else { 128 })
        .map(|b| b.output_interface(index).scope(RouteScope::Link).build())
        .unwrap_or_default()
}

fn default_via(gw: IpAddr, index: u32) -> RouteMessage {
    let b = RouteMessageBuilder::<IpAddr>::new();
    let b = match gw {
        IpAddr::V4(_) => b.destination_prefix(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        IpAddr::V6(_) => b.destination_prefix(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    };
    b.and_then(|b| b.gateway(gw)).map(|b| b.output_interface(index).build()).unwrap_or_default()
}

fn new(m: RouteNetlinkMessage) -> Request {
    Request { message: m, flags: NLM_F_CREATE | NLM_F_EXCL }
}

/// A pod's network namespace, opened once for the whole command: a path
/// that is not a netns fails here, before IPAM is touched.
pub struct Sandbox {
    ns: File,
    nl: Netlink,
    path: String,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox").field("path", &self.path).finish()
    }
}

impl Sandbox {
    pub fn open(path: &Path) -> Result<Self, LinkError> {
        let ns = open_netns(path)?;
        let nl = netlink_in(&ns, path)?;
        Ok(Self { ns, nl, path: path.display().to_string() })
    }

    /// Refuses an `ifname` that something other than this attachment (whose
    /// host end is `host`) already holds in the pod.
    pub fn ensure_free(&mut self, ifname: &str, host: &str) -> Result<(), LinkError> {
        if link_by_name(&mut self.nl, ifname)?.is_some() && link_by_name(&mut Netlink::open()?, host)?.is_none() {
            return Err(LinkError::Busy(format!("{ifname} already exists in {}", self.path)));
        }
        Ok(())
    }
}

/// Creates the attachment. On error, whatever was created is removed.
pub fn setup(a: &Attachment<'_>, sb: &mut Sandbox) -> Result<Created, LinkError> {
    let mut host = Netlink::open()?;
    // A host end left by an earlier ADD of the same attachment goes first,
    // and the pod end with it.
    teardown_with(&mut host, a.host)?;
    let r = setup_in(&mut host, &mut sb.nl, &sb.ns, a);
    if r.is_err() {
        let _ = teardown_with(&mut host, a.host);
    }
    r
}

fn setup_in(host: &mut Netlink, pod: &mut Netlink, ns: &File, a: &Attachment<'_>) -> Result<Created, LinkError> {
    if link_by_name(pod, a.ifname)?.is_some() {
        return Err(LinkError::Mismatch(format!("{} already exists in {}", a.ifname, a.netns.display())));
    }
    // Both ends start down: veth refuses to open an end before its peer
    // exists (ENOTCONN), so each is brought up once created.
    let mut peer = LinkMessage::default();
    peer.attributes = vec![
        LinkAttribute::IfName(a.ifname.to_owned()),
        LinkAttribute::Address(merle_ebpf::pods::pod_mac(a.addrs).to_vec()),
        LinkAttribute::Mtu(a.mtu),
        LinkAttribute::NetNsFd(ns.as_raw_fd()),
    ];
    let mut veth = LinkMessage::default();
    veth.attributes = vec![
        LinkAttribute::IfName(a.host.to_owned()),
        LinkAttribute::Address(HOST_MAC.to_vec()),
        LinkAttribute::Mtu(a.mtu),
        LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]),
    ];
    check(
        format!("creating veth {} / {}", a.host, a.ifname),
        host.request(RouteNetlinkMessage::NewLink(veth), NLM_F_CREATE | NLM_F_EXCL)?,
    )?;
    let hl = link_by_name(host, a.host)?.ok_or_else(|| LinkError::Mismatch(format!("{} vanished", a.host)))?;
    let hi = hl.header.index;
    host_sysctls(a.host, a.addrs.iter().any(|ip| ip.is_ipv6()))?;

    let mut reqs =
        vec![Request { message: RouteNetlinkMessage::SetLink(LinkUnspec::new_with_index(hi).up().build()), flags: 0 }];
    // REPLACE: IPAM says the address is this pod's, so a host route left by
    // an attachment that is gone must not block it.
    reqs.extend(a.addrs.iter().map(|ip| Request {
        message: RouteNetlinkMessage::NewRoute(device_route(*ip, hi)),
        flags: NLM_F_CREATE | NLM_F_REPLACE,
    }));
    for (i, r) in host.execute(reqs)?.into_iter().enumerate() {
        check(if i == 0 { format!("bringing {} up", a.host) } else { format!("host route to {}", a.addrs[i - 1]) }, r)?;
    }

    let pl = link_by_name(pod, a.ifname)?
        .ok_or_else(|| LinkError::Mismatch(format!("{} did not appear in {}", a.ifname, a.netns.display())))?;
    let pi = pl.header.index;
    let mut reqs =
        vec![Request { message: RouteNetlinkMessage::SetLink(LinkUnspec::new_with_index(pi).up().build()), flags: 0 }];
    let mut what = vec![format!("bringing {} up", a.ifname)];
    for ip in a.addrs {
        reqs.push(new(RouteNetlinkMessage::NewAddress(address(pi, *ip))));
        what.push(format!("address {ip} on {}", a.ifname));
    }
    if a.addrs.iter().any(|ip| ip.is_ipv4()) {
        reqs.push(new(RouteNetlinkMessage::NewRoute(device_route(IpAddr::V4(GATEWAY_V4), pi))));
        what.push(format!("route to {GATEWAY_V4}"));
        reqs.push(new(RouteNetlinkMessage::NewRoute(default_via(IpAddr::V4(GATEWAY_V4), pi))));
        what.push("IPv4 default route".into());
    }
    if a.addrs.iter().any(|ip| ip.is_ipv6()) {
        reqs.push(new(RouteNetlinkMessage::NewRoute(default_via(IpAddr::V6(GATEWAY_V6), pi))));
        what.push("IPv6 default route".into());
    }
    for (r, w) in pod.execute(reqs)?.into_iter().zip(what) {
        check(w, r)?;
    }
    Ok(Created { pod_mac: link_mac(&pl).unwrap_or_default() })
}

fn teardown_with(nl: &mut Netlink, host: &str) -> Result<bool, LinkError> {
    let Some(l) = link_by_name(nl, host)? else { return Ok(false) };
    let mut m = LinkMessage::default();
    m.header.index = l.header.index;
    match nl.request(RouteNetlinkMessage::DelLink(m), 0)? {
        Ok(()) => Ok(true),
        Err(r) if r.errno == ENODEV => Ok(false),
        Err(r) => Err(LinkError::Kernel(format!("deleting {host}"), r)),
    }
}

/// Removes the attachment: deleting the host end takes the pod end, the
/// pod's addresses and every route through either with it. A missing link
/// is success.
pub fn teardown(host: &str) -> Result<bool, LinkError> {
    teardown_with(&mut Netlink::open()?, host)
}

fn dst_of(r: &RouteMessage) -> Option<IpAddr> {
    r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(x)) => Some(IpAddr::V4(*x)),
        RouteAttribute::Destination(RouteAddress::Inet6(x)) => Some(IpAddr::V6(*x)),
        _ => None,
    })
}

fn gw_of(r: &RouteMessage) -> Option<IpAddr> {
    r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Gateway(RouteAddress::Inet(x)) => Some(IpAddr::V4(*x)),
        RouteAttribute::Gateway(RouteAddress::Inet6(x)) => Some(IpAddr::V6(*x)),
        _ => None,
    })
}

fn oif_of(r: &RouteMessage) -> Option<u32> {
    r.attributes.iter().find_map(|a| if let RouteAttribute::Oif(i) = a { Some(*i) } else { None })
}

fn routes(nl: &mut Netlink, v6: bool) -> Result<Vec<RouteMessage>, LinkError> {
    let mut m = RouteMessage::default();
    m.header.address_family = if v6 { AddressFamily::Inet6 } else { AddressFamily::Inet };
    Ok(nl
        .dump(RouteNetlinkMessage::GetRoute(m))?
        .into_iter()
        .filter_map(|m| if let RouteNetlinkMessage::NewRoute(r) = m { Some(r) } else { None })
        .collect())
}

fn mismatch(s: String) -> LinkError {
    LinkError::Mismatch(s)
}

/// CHECK: the host end, the pod's interface, its addresses and routes and
/// the host routes are all as [`setup`] made them.
pub fn verify(a: &Attachment<'_>, sb: &mut Sandbox) -> Result<Created, LinkError> {
    let mut host = Netlink::open()?;
    let pod = &mut sb.nl;
    let hl =
        link_by_name(&mut host, a.host)?.ok_or_else(|| mismatch(format!("host interface {} is missing", a.host)))?;
    if link_mac(&hl) != Some(HOST_MAC) {
        return Err(mismatch(format!("{} does not have MAC {}", a.host, mac_string(&HOST_MAC))));
    }
    if !hl.header.flags.contains(LinkFlags::Up) {
        return Err(mismatch(format!("{} is down", a.host)));
    }
    let pl = link_by_name(pod, a.ifname)?
        .ok_or_else(|| mismatch(format!("{} is missing from {}", a.ifname, a.netns.display())))?;
    if !pl.header.flags.contains(LinkFlags::Up) {
        return Err(mismatch(format!("{} is down", a.ifname)));
    }
    let pi = pl.header.index;
    let addrs: Vec<(IpAddr, u8)> = pod
        .dump(RouteNetlinkMessage::GetAddress(AddressMessage::default()))?
        .into_iter()
        .filter_map(|m| if let RouteNetlinkMessage::NewAddress(a) = m { Some(a) } else { None })
        .filter(|m| m.header.index == pi)
        .filter_map(|m| {
            let plen = m.header.prefix_len;
            m.attributes.iter().find_map(|x| match x {
                AddressAttribute::Address(ip) if !ip.is_ipv6() || !is_link_local(*ip) => Some((*ip, plen)),
                _ => None,
            })
        })
        .collect();
    for ip in a.addrs {
        let want = if ip.is_ipv4() { 32 } else { 128 };
        if !addrs.contains(&(*ip, want)) {
            return Err(mismatch(format!("{} lacks {ip}/{want}", a.ifname)));
        }
    }
    if let Some((extra, _)) = addrs.iter().find(|(ip, _)| !a.addrs.contains(ip)) {
        return Err(mismatch(format!("{} has {extra}, which IPAM did not assign", a.ifname)));
    }
    for (v6, gw) in [(false, IpAddr::V4(GATEWAY_V4)), (true, IpAddr::V6(GATEWAY_V6))] {
        if !a.addrs.iter().any(|ip| ip.is_ipv6() == v6) {
            continue;
        }
        let ok = routes(pod, v6)?
            .iter()
            .any(|r| r.header.destination_prefix_length == 0 && gw_of(r) == Some(gw) && oif_of(r) == Some(pi));
        if !ok {
            return Err(mismatch(format!("{} has no default route via {gw} dev {}", a.netns.display(), a.ifname)));
        }
        let host_routes = routes(&mut host, v6)?;
        for ip in a.addrs.iter().filter(|ip| ip.is_ipv6() == v6) {
            let want = if v6 { 128 } else { 32 };
            let ok = host_routes.iter().any(|r| {
                r.header.destination_prefix_length == want
                    && dst_of(r) == Some(*ip)
                    && oif_of(r) == Some(hl.header.index)
            });
            if !ok {
                return Err(mismatch(format!("the host has no route {ip}/{want} dev {}", a.host)));
            }
        }
    }
    if a.addrs.iter().any(|ip| ip.is_ipv6())
        && !addresses_of(&mut host, hl.header.index)?.contains(&IpAddr::V6(GATEWAY_V6))
    {
        return Err(mismatch(format!("{} lacks the pods' IPv6 gateway {GATEWAY_V6}", a.host)));
    }
    Ok(Created { pod_mac: link_mac(&pl).unwrap_or_default() })
}

/// The addresses on link `index`.
fn addresses_of(nl: &mut Netlink, index: u32) -> Result<Vec<IpAddr>, LinkError> {
    Ok(nl
        .dump(RouteNetlinkMessage::GetAddress(AddressMessage::default()))?
        .into_iter()
        .filter_map(|m| if let RouteNetlinkMessage::NewAddress(a) = m { Some(a) } else { None })
        .filter(|m| m.header.index == index)
        .filter_map(|m| {
            m.attributes.iter().find_map(|x| if let AddressAttribute::Address(ip) = x { Some(*ip) } else { None })
        })
        .collect())
}

fn is_link_local(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V6(a) if (a.segments()[0] & 0xffc0) == 0xfe80)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_v6_is_the_eui64_of_the_host_mac() {
        let m = HOST_MAC;
        let eui = [m[0] ^ 2, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]];
        let seg = |i: usize| u16::from_be_bytes([eui[i], eui[i + 1]]);
        assert_eq!(GATEWAY_V6.segments()[4..], [seg(0), seg(2), seg(4), seg(6)]);
    }
}
