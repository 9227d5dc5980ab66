//! The pods of a node as IPAM records them: each attachment's addresses,
//! keyed by the host end of its veth. The plugin names that veth from the
//! attachment ([`host_veth_name`]); merled finds the pod's veth the same
//! way when it rebuilds the datapath's endpoint map from IPAM alone.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use sha1::{Digest, Sha1};

use crate::Blocks;

const HOST_PREFIX: &str = "mrl";

/// The host end's name: `mrl` and 12 hex digits of a hash of the
/// attachment, stable across retries and within IFNAMSIZ.
pub fn host_veth_name(container_id: &str, ifname: &str) -> String {
    let mut h = Sha1::new();
    h.update(container_id.as_bytes());
    h.update(b"/");
    h.update(ifname.as_bytes());
    let d = h.finalize();
    let hex: String = d.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("{HOST_PREFIX}{hex}")
}

/// The addresses IPAM gives to attachments of `node`, by host veth name,
/// IPv4 first. Allocations without an attachment (a node's tunnel address)
/// are not pods and are left out.
pub fn attachments(blocks: &Blocks, node: &str) -> BTreeMap<String, Vec<IpAddr>> {
    let mut by_host: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
    for b in blocks.values() {
        for (ord, a) in &b.allocations {
            if a.node != node {
                continue;
            }
            let Some(x) = &a.attachment else { continue };
            by_host.entry(host_veth_name(&x.container_id, &x.ifname)).or_default().push(b.addr(*ord));
        }
    }
    for addrs in by_host.values_mut() {
        addrs.sort_by_key(|a| (a.is_ipv6(), *a));
    }
    by_host
}

/// Every address IPAM gives to `node`, with an attachment or not.
pub fn allocated(blocks: &Blocks, node: &str) -> BTreeSet<IpAddr> {
    blocks
        .values()
        .flat_map(|b| b.allocations.iter().filter(|(_, a)| a.node == node).map(|(o, _)| b.addr(*o)))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::alloc::{assign, Assign};
    use crate::{Attachment, Holder};

    fn pool(cidr: &str) -> conf::Pool {
        conf::Pool {
            nat_outgoing: false,
            cidr: cidr.parse().unwrap(),
            block_size: None,
            ipip_mode: conf::EncapMode::Never,
            vxlan_mode: conf::EncapMode::Never,
        }
    }

    fn pod(b: &mut Blocks, cid: &str, ifname: &str, node: &str, pools: &[conf::Pool]) -> Vec<IpAddr> {
        let holder = Holder::of(Attachment { network: "k8s".into(), container_id: cid.into(), ifname: ifname.into() });
        assign(b, &Assign { holder: &holder, node, pools, strict_affinity: false }).unwrap().0
    }

    #[test]
    fn host_names_fit_and_differ() {
        let a = host_veth_name("abc", "eth0");
        assert_eq!(a.len(), 15);
        assert!(a.starts_with("mrl"));
        assert_ne!(a, host_veth_name("abc", "eth1"));
        assert_ne!(a, host_veth_name("abd", "eth0"));
        assert_eq!(a, host_veth_name("abc", "eth0"));
    }

    #[test]
    fn attachments_are_this_nodes_pods_by_host_veth_ipv4_first() {
        let pools = [pool("fd00::/120"), pool("10.1.0.0/24")];
        let mut b = Blocks::new();
        let a = pod(&mut b, "a", "eth0", "n1", &pools);
        let a1 = pod(&mut b, "a", "net1", "n1", &pools);
        pod(&mut b, "c", "eth0", "n2", &pools);
        let tunnel = Holder::handle("ipip-tunnel-addr-n1");
        assign(&mut b, &Assign { holder: &tunnel, node: "n1", pools: &pools[1..], strict_affinity: false }).unwrap();
        let got = attachments(&b, "n1");
        assert_eq!(got.len(), 2, "{got:?}");
        let mut v4_first = a.clone();
        v4_first.sort_by_key(|x| (x.is_ipv6(), *x));
        assert!(v4_first[0].is_ipv4() && v4_first[1].is_ipv6());
        assert_eq!(got[&host_veth_name("a", "eth0")], v4_first);
        assert_eq!(got[&host_veth_name("a", "net1")].len(), a1.len());
        // The tunnel address is n1's but no pod's.
        let held = allocated(&b, "n1");
        assert_eq!(held.len(), 5);
        assert!(got.values().flatten().all(|ip| held.contains(ip)));
        assert!(attachments(&b, "n3").is_empty());
    }
}
