//! The pod's side of the eBPF datapath. merled loads and pins the
//! programs; the plugin (merle-cni) links the pinned pod program to the host end of
//! each veth it makes (and pins that link, since the plugin exits at once)
//! and writes the pod's addresses into the endpoint map, so the pod's
//! first packet takes the fast path. DEL undoes both. [`reconcile`] makes
//! the map and the links match the pods that exist: merled runs it in full
//! at start and on a switch to eBPF mode, and for stale entries only when
//! IPAM changes and every few seconds (a full one could race a plugin's
//! ADD); the plugin's GC removes stale entries too.
//!
//! In kernel mode, or before any merled loaded the datapath, there is no
//! pinned program and all of this is skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::datapath::{self, AttachMode, Linker};
use crate::endpoints::{self, EndpointOp, Endpoints};
use crate::objects;
use crate::types::{EndpointInfo, Hook, ENDPOINT_F_NAT_OUTGOING};
use crate::{Error, PinDir};

/// The host end's MAC, as Calico's: pods see one gateway MAC everywhere,
/// and the datapath writes it as the source of what it hands a pod.
pub const HOST_MAC: [u8; 6] = [0xee; 6];

/// The pods of a node, from IPAM: each host veth name and the pod's
/// addresses, IPv4 first (`merle_ipam::pods::attachments`).
pub type PodAddrs = BTreeMap<String, Vec<IpAddr>>;

pub fn pins(cfg: &conf::Config) -> PinDir {
    PinDir::new(&cfg.dataplane.pin_dir)
}

pub fn attach_mode(cfg: &conf::Config) -> AttachMode {
    match cfg.dataplane.attach {
        conf::AttachKind::Auto => AttachMode::detect(),
        conf::AttachKind::Tcx => AttachMode::Tcx,
        conf::AttachKind::Clsact => AttachMode::Clsact,
    }
}

/// Whether the eBPF datapath is loaded for this node's configuration.
pub fn active(cfg: &conf::Config) -> bool {
    cfg.dataplane.mode != conf::DataplaneMode::Kernel && pins(cfg).current_prog(objects::POD_INGRESS.name).is_some()
}

/// The pod end's MAC, derived from its first IPv4 address (or the last
/// four bytes of its first IPv6 one) as OVN-Kubernetes does: `0a:58:` and
/// the address. merled can then rebuild an endpoint entry from IPAM alone.
pub fn pod_mac(addrs: &[IpAddr]) -> [u8; 6] {
    let tail = addrs
        .iter()
        .find_map(|a| match a {
            IpAddr::V4(v) => Some(v.octets()),
            IpAddr::V6(_) => None,
        })
        .or_else(|| {
            addrs.iter().find_map(|a| match a {
                IpAddr::V6(v) => {
                    let o = v.octets();
                    Some([o[12], o[13], o[14], o[15]])
                }
                IpAddr::V4(_) => None,
            })
        })
        .unwrap_or([0, 0, 0, 1]);
    [0x0a, 0x58, tail[0], tail[1], tail[2], tail[3]]
}

/// The endpoint flags of `ip`: NAT_OUTGOING when its pool asks for it.
pub fn flags(cfg: &conf::Config, ip: IpAddr) -> u32 {
    let nat = cfg.pools.iter().any(|p| p.nat_outgoing && p.cidr.contains(&ip));
    if nat {
        ENDPOINT_F_NAT_OUTGOING
    } else {
        0
    }
}

fn entry(cfg: &conf::Config, ip: IpAddr, ifindex: u32, pod_mac: [u8; 6]) -> EndpointInfo {
    EndpointInfo { ifindex, pod_mac, node_mac: HOST_MAC, flags: flags(cfg, ip), pad: 0 }
}

/// ADD: links the pod program to `host` and puts the pod's addresses in
/// the endpoint map. `Ok(false)`: no datapath is loaded, nothing to do.
pub fn attach(cfg: &conf::Config, host: &str, addrs: &[IpAddr], pod_mac: [u8; 6]) -> Result<bool, Error> {
    if !active(cfg) {
        return Ok(false);
    }
    let pins = pins(cfg);
    let mut linker = Linker::open(&pins, attach_mode(cfg), &objects::POD_INGRESS)?;
    let ifindex = crate::sys::ifindex(host);
    if ifindex == 0 {
        return Err(Error::NoInterface(host.to_owned()));
    }
    // The entries first: the program reads the veth's entry from its first
    // packet, and finds it whole.
    let entries: Vec<(IpAddr, EndpointInfo)> =
        addrs.iter().map(|ip| (*ip, entry(cfg, *ip, ifindex, pod_mac))).collect();
    Endpoints::open(&pins)?.put_pod(ifindex, &entries)?;
    let linked = linker.link(host)?;
    if linked.ifindex != ifindex {
        return Err(Error::Attach(host.to_owned(), "the interface changed while it was linked".into()));
    }
    Ok(true)
}

/// DEL: removes the pod's entries and its link. Nothing there is fine.
pub fn detach(cfg: &conf::Config, host: &str, addrs: &[IpAddr]) -> Result<(), Error> {
    let pins = pins(cfg);
    if !pins.root().exists() {
        return Ok(());
    }
    // Unlinked first: no program reads the entries while they go.
    let unlinked = datapath::unlink(&pins, Hook::PodIngress, host);
    if let Ok(mut eps) = Endpoints::open(&pins) {
        for ip in addrs {
            eps.remove(*ip)?;
        }
    }
    unlinked
}

/// The pods that exist: those whose host veth is there, with its ifindex.
fn present(pods: &PodAddrs) -> BTreeMap<&str, (u32, &[IpAddr])> {
    pods.iter()
        .filter_map(|(host, addrs)| {
            let ifindex = crate::sys::ifindex(host);
            (ifindex != 0).then_some((host.as_str(), (ifindex, addrs.as_slice())))
        })
        .collect()
}

/// What a reconcile changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciled {
    pub endpoints_put: usize,
    pub endpoints_removed: usize,
    /// merle_pod_ifaces entries corrected.
    pub ifaces_fixed: usize,
    pub links_added: usize,
    pub links_removed: usize,
    pub errors: Vec<String>,
}

/// How much a reconcile may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Remove what is stale (its veth is gone, or IPAM no longer gives its
    /// address to this node) and nothing else: safe while plugins run
    /// ADDs, since a pod being added already holds its address and veth.
    Stale,
    /// Also put missing entries and links of pods that exist: at merled's
    /// start and on a switch to eBPF mode, when no plugin made them.
    Full,
}

/// Makes the endpoint map and the pod links match the pods that exist:
/// stale entries and links go, and with [`Scope::Full`] missing ones are
/// made. `pods` are this node's attachments and `held` every address IPAM
/// gives this node (`merle_ipam::pods`).
pub fn reconcile(
    cfg: &conf::Config,
    pods: &PodAddrs,
    held: &BTreeSet<IpAddr>,
    scope: Scope,
) -> Result<Reconciled, Error> {
    let mut out = Reconciled::default();
    if !active(cfg) {
        return Ok(out);
    }
    let pins = pins(cfg);
    let pods = present(pods);
    let mut desired = BTreeMap::new();
    for (ifindex, addrs) in pods.values() {
        for ip in addrs.iter() {
            desired.insert(*ip, entry(cfg, *ip, *ifindex, pod_mac(addrs)));
        }
    }
    let mut eps = Endpoints::open(&pins)?;
    let current = eps.list();
    let mut ops = endpoints::reconcile(&desired, &current);
    if scope == Scope::Stale {
        ops.retain(|op| match op {
            EndpointOp::Remove(ip) => {
                let e = &current[ip];
                !held.contains(ip) || crate::sys::ifname(e.ifindex).is_none()
            }
            EndpointOp::Put(..) => false,
        });
    }
    for op in &ops {
        match op {
            EndpointOp::Put(..) => out.endpoints_put += 1,
            EndpointOp::Remove(_) => out.endpoints_removed += 1,
        }
    }
    eps.apply(&ops)?;
    // The veths of removed entries, and with Full every index: no entry of
    // merle_pod_ifaces outlives its endpoints.
    let removed: BTreeSet<u32> = ops
        .iter()
        .filter_map(|op| if let EndpointOp::Remove(ip) = op { Some(current[ip].ifindex) } else { None })
        .collect();
    out.ifaces_fixed = eps.sync_ifaces(scope == Scope::Full, &removed)?;
    let linked: BTreeSet<String> = pins.linked(Hook::PodIngress).into_iter().map(|(i, _)| i).collect();
    for stale in linked.iter().filter(|i| crate::sys::ifindex(i) == 0) {
        match datapath::unlink(&pins, Hook::PodIngress, stale) {
            Ok(()) => out.links_removed += 1,
            Err(e) => out.errors.push(e.to_string()),
        }
    }
    if scope == Scope::Full {
        let mut linker = Linker::open(&pins, attach_mode(cfg), &objects::POD_INGRESS)?;
        for host in pods.keys() {
            match linker.link(host) {
                Ok(l) if !l.kept => out.links_added += 1,
                Ok(_) => {}
                Err(e) => out.errors.push(e.to_string()),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_macs_come_from_the_first_ipv4_address_else_the_ipv6_tail() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        assert_eq!(pod_mac(&[ip("fd00::1:2"), ip("10.244.1.7")]), [0x0a, 0x58, 10, 244, 1, 7]);
        assert_eq!(pod_mac(&[ip("fd00::a0b:c0d")]), [0x0a, 0x58, 0x0a, 0x0b, 0x0c, 0x0d]);
        // Locally administered, unicast.
        assert_eq!(pod_mac(&[ip("10.0.0.1")])[0] & 0x03, 0x02);
    }
}
