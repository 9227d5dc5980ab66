//! merle's CNI plugin and IPAM.
//!
//! - [`spec`]: the CNI specification's environment, errors and results.
//! - [`netconf`]: the network configuration on stdin.
//! - [`ipam`]: block-affinity address management and its stores.
//! - [`link`]: the pod's veth, addresses and routes.
//! - [`dataplane`]: the pod's side of the eBPF datapath: linking the pinned
//!   pod program and the endpoint map entries.
//! - [`plugin`]: the commands.
//! - [`install`]: `merle-cni install`, the plugin and its network
//!   configuration list put in place on a node.

pub mod dataplane;
pub mod install;
pub mod ipam;
pub mod link;
pub mod netconf;
pub mod notify;
pub mod plugin;
pub mod spec;
