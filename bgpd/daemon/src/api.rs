//! The control protocol between `merlectl` and `merled`: one JSON request
//! line, one JSON response line, over the unix control socket.

use serde::{Deserialize, Serialize};

pub use merle_control::{Request, RouteQuery};

/// `merlectl routes --count`: how many of what the query selects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteCounts {
    pub prefixes: usize,
    pub paths: usize,
    /// Selected paths that are their prefix's best path.
    pub best: usize,
    /// Per source, in address order ("local" for originated routes).
    pub peers: Vec<PeerCount>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerCount {
    pub peer: String,
    pub paths: usize,
    pub best: usize,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<NodeStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes: Option<Vec<RouteEntry>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_counts: Option<RouteCounts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fib: Option<Vec<FibRoute>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam: Option<merle_ipam::report::Report>,
    /// `ipam release`: the addresses freed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released: Option<Vec<std::net::IpAddr>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataplane: Option<merle_ebpf::report::Report>,
    /// `show peer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<PeerStatus>,
    /// `show config`: the effective configuration, as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Value>,
}

impl Response {
    pub fn ok() -> Self {
        Self { ok: true, ..Self::default() }
    }
    pub fn error(msg: impl Into<String>) -> Self {
        Self { ok: false, error: Some(msg.into()), ..Self::default() }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub name: String,
    pub router_id: String,
    pub as_number: u32,
    pub listen: String,
    pub peers: Vec<PeerStatus>,
    /// Why the last configuration edit was rejected (the previous
    /// configuration is still running), if it was.
    #[serde(default)]
    pub config_error: Option<String>,
    /// fib-sync's state; absent when `[fib] enabled = false`.
    #[serde(default)]
    pub fib: Option<FibSummary>,
    /// The datapath in effect and why.
    #[serde(default)]
    pub dataplane: Option<DataplaneSummary>,
    #[serde(default)]
    pub rib: RibSummary,
}

/// The Loc-RIB and the Adj-RIB-Out in numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RibSummary {
    pub prefixes: usize,
    /// Distinct path attribute sets, interned.
    pub attribute_sets: usize,
    /// What recording each session's sent prefixes costs (a bit per prefix
    /// per session, plus the prefixes kept until their withdrawal is sent).
    pub adj_rib_out_bytes: usize,
    /// Prefixes gone from the Loc-RIB whose withdrawal some session has
    /// not been sent yet.
    pub withdrawals_pending: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataplaneSummary {
    /// `ebpf` or `kernel`.
    pub mode: String,
    /// `auto`, `ebpf` or `kernel`, as configured.
    pub requested: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FibSummary {
    pub table: u32,
    pub protocol: u8,
    /// "available", "not needed (no IPIP pool)" or "UNAVAILABLE: why".
    pub ipip: String,
    pub devices: Vec<String>,
    /// Whether stale routes from before the start have been swept.
    pub converged: bool,
    pub installed: usize,
    pub failed: usize,
}

/// One prefix as fib-sync handles it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FibRoute {
    pub prefix: String,
    /// The kernel route in `ip route` words.
    pub kernel: String,
    #[serde(flatten)]
    pub state: fib_sync::RouteState,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    pub address: String,
    pub port: u16,
    pub as_number: u32,
    /// As in `calicoctl node status`: "global" for configured peers.
    pub peer_type: String,
    /// "ebgp" or "ibgp".
    pub session: String,
    /// The RFC 4271 state name, such as "Established".
    pub state: String,
    /// When the session last changed state, RFC 3339.
    pub since: String,
    pub since_unix: u64,
    /// The state plus the last error, as in BIRD's and Calico's Info column.
    pub info: String,
    pub passive: bool,
    pub description: Option<String>,
    pub remote_id: Option<String>,
    pub hold_time: Option<u16>,
    pub keepalive: Option<u16>,
    pub families: Vec<String>,
    pub four_octet_as: Option<bool>,
    pub prefixes_received: usize,
    pub prefixes_advertised: usize,
    pub updates_received: u64,
    pub updates_sent: u64,
    /// Encoded messages handed to the session's writer and not yet
    /// written to the socket (FRR's OutQ, in bytes).
    #[serde(default)]
    pub out_queue_bytes: usize,
    pub last_error: Option<String>,
    /// What `merlectl show peer` adds.
    #[serde(default)]
    pub detail: PeerDetail,
}

/// Messages by type (RFC 4271 §4, RFC 2918).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MessageCounts {
    pub open: u64,
    pub update: u64,
    pub notification: u64,
    pub keepalive: u64,
    pub route_refresh: u64,
}

impl MessageCounts {
    pub fn total(&self) -> u64 {
        self.open + self.update + self.notification + self.keepalive + self.route_refresh
    }

    /// (type label, count), for tables and metrics.
    pub fn by_type(&self) -> [(&'static str, u64); 5] {
        [
            ("open", self.open),
            ("update", self.update),
            ("notification", self.notification),
            ("keepalive", self.keepalive),
            ("route_refresh", self.route_refresh),
        ]
    }
}

/// A NOTIFICATION, as sent or received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub code: u8,
    pub subcode: u8,
    /// The RFC's words for the code and subcode, and the shutdown
    /// communication if there is one.
    pub text: String,
    pub at_unix: u64,
}

/// What the last session negotiated (kept after it goes down).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Capabilities {
    pub families: Vec<String>,
    pub four_octet_as: bool,
    pub route_refresh: bool,
    pub enhanced_route_refresh: bool,
    /// Both sides sent graceful restart.
    pub graceful_restart: bool,
    /// The peer's restart time, if it sent the capability.
    pub peer_restart_time: Option<u16>,
    pub add_path_receive: Vec<String>,
    pub add_path_send: Vec<String>,
    pub extended_next_hop_receive: Vec<String>,
    pub extended_next_hop_send: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PeerDetail {
    pub messages_received: MessageCounts,
    pub messages_sent: MessageCounts,
    /// Announcements the import policy let in, and those it (or the
    /// RFC 4271 checks: AS loop, own next hop) turned away.
    pub prefixes_accepted: u64,
    pub prefixes_rejected: u64,
    pub withdrawals_received: u64,
    /// Times an Established session went down.
    pub flaps: u64,
    pub established_unix: Option<u64>,
    pub last_notification_sent: Option<Notice>,
    pub last_notification_received: Option<Notice>,
    pub capabilities: Option<Capabilities>,
    /// Configured: the hold time offered, the connect retry (seconds),
    /// TCP MD5, GTSM hops.
    pub hold_time_configured: u16,
    pub connect_retry: u64,
    pub password: bool,
    pub ttl_security: Option<u8>,
    pub graceful_restart_time: u16,
    /// What most likely keeps the session down, when it can be known
    /// (`merlectl show peer` fills it in).
    pub likely_cause: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteEntry {
    pub prefix: String,
    pub next_hop: String,
    pub as_path: Vec<u32>,
    /// The AS path with sets in braces, as BIRD prints it.
    pub as_path_text: String,
    pub origin: String,
    /// The peer address, or "local" for routes this node originates.
    pub peer: String,
    pub path_id: u32,
    pub best: bool,
    /// For a losing path, the decision step at which it lost.
    pub lost_at: Option<String>,
    pub local_pref: Option<u32>,
    pub med: Option<u32>,
    pub communities: Vec<String>,
    pub large_communities: Vec<String>,
    pub ext_communities: Vec<String>,
    /// RFC 4456 attributes, when the route was reflected.
    pub originator_id: Option<String>,
    pub cluster_list: Vec<String>,
    /// Part of the ECMP set of the prefix.
    pub multipath: bool,
    /// Kept through the peer's graceful restart, not yet refreshed.
    pub stale: bool,
    /// For the best path: the kernel route's state ("installed", "failed
    /// …: reason"), when fib-sync handles the prefix.
    #[serde(default)]
    pub fib: Option<String>,
}
