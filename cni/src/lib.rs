//! merle's CNI plugin, `merle-cni`: the first step of the pipeline
//! cni -> IPAM -> bgpd. An ADD takes the pod's addresses from IPAM (the
//! `merle-ipam` crate), plumbs the pod's veth, and tells merled, which
//! advertises the block; with the eBPF datapath loaded it also links the
//! pinned pod program (`merle_ebpf::pods`).
//!
//! - [`spec`], [`netconf`]: the CNI specification's environment, errors,
//!   results and network configuration, from the pure `merle-cni-spec`
//!   crate (which the fuzz targets use); [`netconf::attachment`] is the
//!   IPAM attachment a call makes.
//! - [`link`]: the pod's veth, addresses and routes, over the pipelined
//!   netlink socket of `merle-netlink`.
//! - [`plugin`]: the commands (ADD, DEL, CHECK, GC, STATUS, VERSION).
//! - [`notify`]: the `ipam-changed` nudge to merled's control socket.
//! - [`install`]: `merle-cni install`, the plugin and its network
//!   configuration list put in place on a node.
//!
//! The plugin is a short-lived blocking process: no runtime of its own
//! (the etcd store runs one inside `merle-ipam`).

pub mod install;
pub mod link;
pub mod notify;
pub mod plugin;
pub use merle_cni_spec::spec;

/// The network configuration ([`merle_cni_spec::netconf`]) and the IPAM
/// attachment a call makes of it.
pub mod netconf {
    pub use merle_cni_spec::netconf::*;

    /// The IPAM attachment of one plugin call.
    pub fn attachment(network: &str, container_id: &str, ifname: &str) -> merle_ipam::Holder {
        merle_ipam::Holder::of(merle_ipam::Attachment {
            network: network.to_owned(),
            container_id: container_id.to_owned(),
            ifname: ifname.to_owned(),
        })
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn attachments_have_handles_per_interface() {
            assert_eq!(super::attachment("k8s", "c1", "eth0").handle, "k8s.c1");
            assert_eq!(super::attachment("k8s", "c1", "net1").handle, "k8s.c1.net1");
        }
    }
}
