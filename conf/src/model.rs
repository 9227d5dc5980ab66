//! The configuration schema. Field names are the TOML keys.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Calico's default AS for cluster nodes.
pub const DEFAULT_AS: u32 = 64512;
pub const DEFAULT_PORT: u16 = 179;
pub const DEFAULT_HOLD_TIME: u16 = 90;
pub const DEFAULT_SOCKET: &str = "/run/merle/merled.sock";

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub node: Node,
    #[serde(default)]
    pub bgp: Bgp,
    #[serde(default)]
    pub advertise: Vec<Advertise>,
    #[serde(default)]
    pub control: Control,
    #[serde(default)]
    pub log: Log,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub name: String,
    /// The node IP with its subnet, as in `10.0.0.1/24`.
    pub address: IpNet,
    /// An IPv6 address of the node, used as the next hop of IPv6 routes sent
    /// over IPv4 sessions.
    #[serde(default)]
    pub address_v6: Option<IpNet>,
    /// Defaults to the node IP when that is IPv4.
    #[serde(default)]
    pub router_id: Option<Ipv4Addr>,
    #[serde(default = "default_as")]
    pub as_number: u32,
}

impl Node {
    /// The BGP identifier: `router_id`, or the IPv4 node address.
    /// Validation guarantees one of them exists.
    pub fn router_id(&self) -> Ipv4Addr {
        match (self.router_id, self.address.addr()) {
            (Some(id), _) => id,
            (None, IpAddr::V4(a)) => a,
            (None, IpAddr::V6(_)) => Ipv4Addr::UNSPECIFIED,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Bgp {
    /// Address to accept BGP connections on; unset means all addresses,
    /// IPv4 and IPv6.
    #[serde(default)]
    pub listen_address: Option<IpAddr>,
    #[serde(default = "default_port")]
    pub listen_port: u16,
    /// Proposed hold time in seconds: 0 (no keepalives) or at least 3.
    #[serde(default = "default_hold_time")]
    pub hold_time: u16,
    /// Base ConnectRetry time in seconds; retries back off up to
    /// `connect_retry_max`.
    #[serde(default = "default_connect_retry")]
    pub connect_retry_time: u16,
    #[serde(default = "default_connect_retry_max")]
    pub connect_retry_max: u16,
    #[serde(default)]
    pub peers: Vec<Peer>,
}

impl Default for Bgp {
    fn default() -> Self {
        Self {
            listen_address: None,
            listen_port: DEFAULT_PORT,
            hold_time: DEFAULT_HOLD_TIME,
            connect_retry_time: default_connect_retry(),
            connect_retry_max: default_connect_retry_max(),
            peers: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    pub address: IpAddr,
    pub as_number: u32,
    #[serde(default = "default_port")]
    pub port: u16,
    /// Wait for the peer to connect; never connect out.
    #[serde(default)]
    pub passive: bool,
    /// Overrides `bgp.hold_time` for this peer.
    #[serde(default)]
    pub hold_time: Option<u16>,
    /// Free text shown by `merlectl status`.
    #[serde(default)]
    pub description: Option<String>,
    /// eBGP only: treat routes whose AS_PATH does not start with the peer's
    /// AS as withdrawn (RFC 4271 §6.3). Turn off for route servers.
    #[serde(default = "default_true")]
    pub enforce_first_as: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Advertise {
    pub prefix: IpNet,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Control {
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
}

impl Default for Control {
    fn default() -> Self {
        Self { socket: default_socket() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    /// trace, debug, info, warn or error. `MERLE_LOG` overrides it with any
    /// tracing filter directive.
    #[serde(default = "default_log_level")]
    pub level: String,
}

impl Default for Log {
    fn default() -> Self {
        Self { level: default_log_level() }
    }
}

fn default_true() -> bool {
    true
}
fn default_as() -> u32 {
    DEFAULT_AS
}
fn default_port() -> u16 {
    DEFAULT_PORT
}
fn default_hold_time() -> u16 {
    DEFAULT_HOLD_TIME
}
fn default_connect_retry() -> u16 {
    5
}
fn default_connect_retry_max() -> u16 {
    60
}
fn default_socket() -> PathBuf {
    PathBuf::from(DEFAULT_SOCKET)
}
fn default_log_level() -> String {
    "info".into()
}
