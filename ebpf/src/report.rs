//! What `merlectl dataplane` shows: the mode and why, each interface with
//! its program and attachment, the endpoints, and the counters.

use serde::{Deserialize, Serialize};

use crate::metrics::Counter;
use crate::types::Hook;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// `ebpf` or `kernel`: what is in effect.
    pub mode: String,
    /// What the configuration asks: `auto`, `ebpf` or `kernel`.
    pub requested: String,
    /// Why this mode: the probe's findings, or the error that kept eBPF out.
    pub reason: String,
    /// `tcx` or `clsact`, in eBPF mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attach: Option<String>,
    pub pin_dir: String,
    /// The programs' version (digest of the objects), and whether this
    /// merled adopted them from a previous one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub adopted: bool,
    pub interfaces: Vec<Interface>,
    pub endpoints: Vec<Endpoint>,
    pub counters: Vec<Counter>,
    /// Outgoing NAT: whether merle's nftables table is in place.
    pub nat_outgoing: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub ifname: String,
    pub ifindex: u32,
    pub hook: Hook,
    pub program: String,
    pub attach: String,
    pub program_id: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub ip: String,
    pub ifindex: u32,
    pub ifname: String,
    pub pod_mac: String,
}
