//! merle's CNI plugin, `merle-cni`: the first step of the pipeline
//! cni -> IPAM -> bgpd. An ADD takes the pod's addresses from IPAM (the
//! `merle-ipam` crate), plumbs the pod's veth, and tells merled, which
//! advertises the block; with the eBPF datapath loaded it also links the
//! pinned pod program (`merle_ebpf::pods`).
//!
//! - [`spec`]: the CNI specification's environment, errors and results.
//! - [`netconf`]: the network configuration on stdin.
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
pub mod netconf;
pub mod notify;
pub mod plugin;
pub mod spec;
