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
    /// The socket programs: where they are linked, or why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_lb: Option<String>,
    /// The configured services and what of them is programmed.
    #[serde(default)]
    pub services: Vec<ServiceReport>,
    /// Why the services are not programmed as configured (the previous
    /// set stays in the maps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services_error: Option<String>,
    /// Services in the datastore left out, each with its key and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub datastore_errors: Vec<String>,
    /// The conntrack table and its sweep, in eBPF mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conntrack: Option<Conntrack>,
}

/// The conntrack table as the last sweep found it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conntrack {
    /// Entries at the last sweep, and the table's capacity.
    pub entries: usize,
    pub capacity: usize,
    /// Sweeps run, and expired entries they deleted, since merled started.
    pub sweeps: u64,
    pub deleted: u64,
    /// How long the last sweep took, in milliseconds.
    pub last_sweep_ms: u64,
    /// Seconds until the next sweep is due after the last one.
    pub interval_seconds: u64,
    /// The last sweep's error, if it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One service: as configured, and its frontends on this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceReport {
    pub service: merle_lb::service::Service,
    /// The node reporting.
    pub node: String,
    pub frontends: Vec<FrontendReport>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrontendReport {
    /// `10.96.0.10:80/tcp`.
    pub frontend: String,
    pub kind: merle_lb::plan::Kind,
    /// `externalTrafficPolicy: Local`: only this node's backends.
    pub local: bool,
    /// Remote backends by DSR.
    pub dsr: bool,
    /// Backends of its table, as planned.
    pub backends: usize,
    /// The table id in the maps, when programmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lb_id: Option<u32>,
    /// Backends the maps hold for it, when programmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub programmed_backends: Option<usize>,
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
