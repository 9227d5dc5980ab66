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
    /// The cluster's nodes, for a static cluster without a datastore. The
    /// node-to-node mesh and the route-reflector sessions come from here.
    #[serde(default)]
    pub nodes: Vec<NodeEntry>,
    /// The services this node load-balances (`[[services]]`). The older
    /// `[services]` table of ranges is still read, as `service_ranges`.
    #[serde(default)]
    pub services: ServiceList,
    /// The service address ranges (Calico's serviceClusterIPs,
    /// serviceExternalIPs, serviceLoadBalancerIPs).
    #[serde(default)]
    pub service_ranges: Services,
    /// The cluster's IP pools (Calico IPPool): block size and encapsulation.
    #[serde(default)]
    pub pools: Vec<Pool>,
    /// How learned routes are programmed into the kernel.
    #[serde(default)]
    pub fib: Fib,
    /// Address assignment from the pools (Calico IPAM).
    #[serde(default)]
    pub ipam: Ipam,
    /// Where IPAM blocks (and, with etcd, the node registry) are kept.
    #[serde(default)]
    pub datastore: Datastore,
    /// Named route filters (Calico BGPFilter), used by peers' `filters`.
    #[serde(default)]
    pub filters: Vec<Filter>,
    #[serde(default)]
    pub control: Control,
    #[serde(default)]
    pub log: Log,
    /// How pod traffic is forwarded: eBPF programs or the kernel's stack.
    #[serde(default)]
    pub dataplane: Dataplane,
    /// The health endpoint for liveness and readiness probes.
    #[serde(default)]
    pub health: Health,
    /// Prometheus metrics.
    #[serde(default)]
    pub metrics: Metrics,
}

/// `[metrics]`: Prometheus's text exposition on `GET /metrics` at
/// `listen` (off when unset; the DaemonSet uses `0.0.0.0:9091`, as
/// calico-node's Felix).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    #[serde(default)]
    pub listen: Option<std::net::SocketAddr>,
}

/// `[health]`: `GET /healthz` and `GET /readyz` over HTTP on `listen`
/// (off when unset; the DaemonSet uses `127.0.0.1:9099`, as calico-node).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    #[serde(default)]
    pub listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// The node's name; left out, it comes from `MERLE_NODE_NAME` or the
    /// node-name file (`conf::identity`).
    pub name: String,
    /// The node IP with its subnet, as in `10.0.0.1/24`; left out, it is
    /// found by `address_autodetect` (`conf::identity`).
    pub address: IpNet,
    /// How to find `address` when it is not given: `first-found`,
    /// `can-reach=IP`, `interface=REGEX,...` or `cidr=CIDR,...`.
    #[serde(default)]
    pub address_autodetect: Option<String>,
    /// An IPv6 address of the node, used as the next hop of IPv6 routes sent
    /// over IPv4 sessions.
    #[serde(default)]
    pub address_v6: Option<IpNet>,
    /// How to find `address_v6` when it is not given.
    #[serde(default)]
    pub address_v6_autodetect: Option<String>,
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
    /// Damping of a session that keeps failing (DampPeerOscillations, as
    /// BIRD's `error wait time`): after an error the session waits this
    /// many seconds before it tries again, the wait doubling per error up
    /// to `error_wait_time_max`. 0 turns the damping off.
    #[serde(default = "default_error_wait_time_min")]
    pub error_wait_time_min: u16,
    #[serde(default = "default_error_wait_time_max")]
    pub error_wait_time_max: u16,
    /// Seconds a session must stay Established for its wait to start from
    /// `error_wait_time_min` again (BIRD's `error forget time`).
    #[serde(default = "default_error_forget_time")]
    pub error_forget_time: u16,
    /// Build an iBGP full mesh with the other `[[nodes]]` (Calico's
    /// node-to-node mesh). With route reflectors in the node list, nodes
    /// peer with the reflectors instead.
    #[serde(default = "default_true")]
    pub node_mesh: bool,
    /// Set: this node is a route reflector with this cluster ID (RFC 4456).
    #[serde(default)]
    pub route_reflector_cluster_id: Option<Ipv4Addr>,
    /// Largest ECMP set per prefix; 1 turns multipath off.
    #[serde(default = "default_max_paths")]
    pub max_paths: u16,
    /// Compare MED between routes from different neighbour ASes.
    #[serde(default)]
    pub always_compare_med: bool,
    /// Graceful restart time (RFC 4724) advertised to peers, in seconds;
    /// 0 turns graceful restart off.
    #[serde(default = "default_graceful_restart_time")]
    pub graceful_restart_time: u16,
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
            error_wait_time_min: default_error_wait_time_min(),
            error_wait_time_max: default_error_wait_time_max(),
            error_forget_time: default_error_forget_time(),
            node_mesh: true,
            route_reflector_cluster_id: None,
            max_paths: default_max_paths(),
            always_compare_med: false,
            graceful_restart_time: default_graceful_restart_time(),
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
    /// Only the node with this name uses the peer (Calico's node-specific
    /// BGPPeer); unset means every node (a global peer).
    #[serde(default)]
    pub node: Option<String>,
    /// How the next hop of exported routes is chosen.
    #[serde(default)]
    pub next_hop_mode: NextHopMode,
    /// Accept routes whose AS path holds our own AS up to this many times.
    #[serde(default)]
    pub allow_local_as: u8,
    /// Send routes learned from other peers to this eBGP peer too (by
    /// default an eBGP peer only gets this node's own prefixes).
    #[serde(default)]
    pub export_learned: bool,
    /// TCP MD5 signature key (RFC 2385), at most 80 characters.
    #[serde(default)]
    pub password: Option<String>,
    /// GTSM (RFC 5082): the peer is at most this many hops away (1-254).
    #[serde(default)]
    pub ttl_security: Option<u8>,
    /// Tear the session down (Cease, subcode 1) when the peer sends more
    /// prefixes than this.
    #[serde(default)]
    pub max_prefixes: Option<u32>,
    /// Seconds before a session torn down by `max_prefixes` restarts.
    #[serde(default = "default_max_prefixes_restart")]
    pub max_prefixes_restart: u16,
    /// Override `bgp.error_wait_time_min`, `_max` and
    /// `bgp.error_forget_time` for this peer.
    #[serde(default)]
    pub error_wait_time_min: Option<u16>,
    #[serde(default)]
    pub error_wait_time_max: Option<u16>,
    #[serde(default)]
    pub error_forget_time: Option<u16>,
    /// Names of `[[filters]]` applied to this peer, in order.
    #[serde(default)]
    pub filters: Vec<String>,
    /// Overrides `bgp.graceful_restart_time` for this peer; 0 turns it off.
    #[serde(default)]
    pub graceful_restart_time: Option<u16>,
    /// This node reflects routes to the peer as to a route-reflector client
    /// (needs `bgp.route_reflector_cluster_id` and an iBGP peer).
    #[serde(default)]
    pub route_reflector_client: bool,
}

/// A named filter with Calico BGPFilter's four rule lists.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    pub name: String,
    #[serde(default)]
    pub import_v4: Vec<FilterRule>,
    #[serde(default)]
    pub import_v6: Vec<FilterRule>,
    #[serde(default)]
    pub export_v4: Vec<FilterRule>,
    #[serde(default)]
    pub export_v6: Vec<FilterRule>,
}

/// One rule: every field given must match; the first matching rule decides.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FilterRule {
    #[serde(default)]
    pub cidr: Option<IpNet>,
    /// Equal, NotEqual, In or NotIn; required with `cidr`.
    #[serde(default)]
    pub match_operator: Option<String>,
    #[serde(default)]
    pub prefix_length: Option<PrefixLength>,
    /// "RemotePeers": only routes learned from BGP peers.
    #[serde(default)]
    pub source: Option<String>,
    /// "iBGP" or "eBGP": the type of the session the filter is attached to.
    #[serde(default)]
    pub peer_type: Option<String>,
    /// `aa:nn` or `aa:nn:mm`.
    #[serde(default)]
    pub community: Option<String>,
    #[serde(default)]
    pub as_path_prefix: Vec<u32>,
    /// Accept or Reject.
    pub action: String,
    /// Accept only: a community to add.
    #[serde(default)]
    pub add_community: Option<String>,
    /// Accept only: AS numbers to prepend.
    #[serde(default)]
    pub prepend_as_path: Vec<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixLength {
    #[serde(default)]
    pub min: Option<u8>,
    #[serde(default)]
    pub max: Option<u8>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum NextHopMode {
    /// eBGP: this node; iBGP: unchanged (ourselves for our own routes).
    #[default]
    Auto,
    /// Always this node.
    #[serde(rename = "self")]
    SelfAddr,
    /// Always the route's next hop.
    Keep,
}

impl TryFrom<String> for NextHopMode {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "auto" => Ok(Self::Auto),
            "self" => Ok(Self::SelfAddr),
            "keep" => Ok(Self::Keep),
            other => Err(format!("unknown next hop mode {other:?}: use auto, self or keep")),
        }
    }
}

/// One entry of the cluster's node list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NodeEntry {
    pub name: String,
    /// The node IP with its subnet.
    pub address: IpNet,
    /// Defaults to this node's `node.as_number`.
    #[serde(default)]
    pub as_number: Option<u32>,
    /// Set: that node is a route reflector.
    #[serde(default)]
    pub route_reflector_cluster_id: Option<Ipv4Addr>,
}

/// `[[services]]`: Kubernetes Services as merle programs them. For the
/// files of earlier versions, `services` may also be the table of ranges
/// that is now `[service_ranges]`; loading moves it there.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ServiceList {
    pub list: Vec<merle_lb::service::Service>,
    /// The `[services]` table of an older file, until loading moves it.
    #[serde(skip)]
    pub legacy_ranges: Option<Services>,
}

impl std::ops::Deref for ServiceList {
    type Target = [merle_lb::service::Service];
    fn deref(&self) -> &Self::Target {
        &self.list
    }
}

impl From<Vec<merle_lb::service::Service>> for ServiceList {
    fn from(list: Vec<merle_lb::service::Service>) -> Self {
        Self { list, legacy_ranges: None }
    }
}

impl<'de> Deserialize<'de> for ServiceList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ServiceList;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of services ([[services]]) or the older table of ranges ([services])")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, a: A) -> Result<ServiceList, A::Error> {
                let list = Vec::deserialize(serde::de::value::SeqAccessDeserializer::new(a))?;
                Ok(ServiceList { list, legacy_ranges: None })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, a: A) -> Result<ServiceList, A::Error> {
                let r = Services::deserialize(serde::de::value::MapAccessDeserializer::new(a))?;
                Ok(ServiceList { list: Vec::new(), legacy_ranges: Some(r) })
            }
        }
        d.deserialize_any(V)
    }
}

/// Service address ranges every node advertises.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Services {
    #[serde(default)]
    pub cluster_ips: Vec<IpNet>,
    #[serde(default)]
    pub external_ips: Vec<IpNet>,
    #[serde(default)]
    pub load_balancer_ips: Vec<IpNet>,
}

impl Services {
    pub fn all(&self) -> impl Iterator<Item = &IpNet> {
        self.cluster_ips.iter().chain(&self.external_ips).chain(&self.load_balancer_ips)
    }
}

/// Calico's default block sizes.
pub const DEFAULT_BLOCK_SIZE_V4: u8 = 26;
pub const DEFAULT_BLOCK_SIZE_V6: u8 = 122;

/// An IP pool, as Calico's IPPool: pods get addresses from its blocks, and
/// routes to its blocks on other nodes may be encapsulated.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    pub cidr: IpNet,
    /// Prefix length of the per-node blocks: default 26 (IPv4), 122 (IPv6).
    #[serde(default)]
    pub block_size: Option<u8>,
    #[serde(default)]
    pub ipip_mode: EncapMode,
    #[serde(default)]
    pub vxlan_mode: EncapMode,
    /// Masquerade traffic from this pool's pods to addresses outside every
    /// pool, service range and node subnet (Calico's `natOutgoing`).
    #[serde(default)]
    pub nat_outgoing: bool,
}

impl Pool {
    pub fn block_size(&self) -> u8 {
        self.block_size.unwrap_or(if self.cidr.addr().is_ipv4() {
            DEFAULT_BLOCK_SIZE_V4
        } else {
            DEFAULT_BLOCK_SIZE_V6
        })
    }
}

/// When routes to a pool's blocks are encapsulated (Calico's `ipipMode` and
/// `vxlanMode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String")]
pub enum EncapMode {
    /// Never: plain routes to the next hop.
    #[default]
    Never,
    /// For every remote block.
    Always,
    /// Only when the next hop is outside this node's subnet.
    CrossSubnet,
}

impl TryFrom<String> for EncapMode {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "Never" => Ok(Self::Never),
            "Always" => Ok(Self::Always),
            "CrossSubnet" => Ok(Self::CrossSubnet),
            other => Err(format!("unknown mode {other:?}: use Never, Always or CrossSubnet")),
        }
    }
}

/// merle's own `rtm_protocol` for the routes it installs, so it can tell
/// them from everyone else's (`ip route show proto 198`).
pub const DEFAULT_RT_PROTOCOL: u8 = 198;
/// The main routing table.
pub const RT_TABLE_MAIN: u32 = 254;
/// Calico's VXLAN defaults.
pub const DEFAULT_VXLAN_VNI: u32 = 4096;
pub const DEFAULT_VXLAN_PORT: u16 = 4789;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Fib {
    /// Program the kernel at all; default true.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Routing table for merle's routes; default 254 (main).
    #[serde(default = "default_rt_table")]
    pub table: u32,
    /// `rtm_protocol` of merle's routes; default 198. merle only ever
    /// changes or removes routes carrying it.
    #[serde(default = "default_rt_protocol")]
    pub protocol: u8,
    #[serde(default = "default_vxlan_vni")]
    pub vxlan_vni: u32,
    #[serde(default = "default_vxlan_port")]
    pub vxlan_port: u16,
    /// MTU of the underlay interface; the VXLAN device gets this minus the
    /// encapsulation overhead (50 octets over IPv4, 70 over IPv6).
    #[serde(default = "default_underlay_mtu")]
    pub underlay_mtu: u16,
}

impl Default for Fib {
    fn default() -> Self {
        Self {
            enabled: true,
            table: RT_TABLE_MAIN,
            protocol: DEFAULT_RT_PROTOCOL,
            vxlan_vni: DEFAULT_VXLAN_VNI,
            vxlan_port: DEFAULT_VXLAN_PORT,
            underlay_mtu: 1500,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Ipam {
    /// Never borrow an address from another node's block (Calico's
    /// StrictAffinity); a node whose blocks are full and finds no free block
    /// then fails the ADD.
    #[serde(default)]
    pub strict_affinity: bool,
    /// Give up a block affine to this node once it has been empty this many
    /// seconds; unset keeps empty blocks (Calico's default).
    #[serde(default)]
    pub release_empty_blocks_after: Option<u64>,
    /// Interface MTU of pods; defaults to `fib.underlay_mtu`. The pool's
    /// encapsulation overhead is taken off either way.
    #[serde(default)]
    pub pod_mtu: Option<u16>,
}

pub const DEFAULT_DATA_DIR: &str = "/var/lib/merle";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DatastoreKind {
    /// A file under `path`, for this node alone.
    #[default]
    File,
    /// etcd v3, shared by the cluster.
    Etcd,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Datastore {
    #[serde(default, rename = "type")]
    pub kind: DatastoreKind,
    /// The file store's directory; with etcd it holds only the lock that
    /// serialises this node's plugin processes.
    #[serde(default = "default_data_dir")]
    pub path: PathBuf,
    /// etcd client URLs, as `http://127.0.0.1:2379`.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// Key prefix of everything merle keeps in etcd.
    #[serde(default = "default_etcd_prefix")]
    pub prefix: String,
    /// Per-request timeout towards etcd, in milliseconds.
    #[serde(default = "default_etcd_timeout_ms")]
    pub timeout_ms: u64,
    /// The CA that signed etcd's server certificates (PEM); needed with
    /// https:// endpoints.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// This node's client certificate and key (PEM), for etcd's
    /// `--client-cert-auth`; both or neither.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// etcd's own authentication: the user, and a file holding its
    /// password (a mounted Secret; never the password itself here).
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

impl Default for Datastore {
    fn default() -> Self {
        Self {
            kind: DatastoreKind::File,
            path: default_data_dir(),
            endpoints: Vec::new(),
            prefix: default_etcd_prefix(),
            timeout_ms: default_etcd_timeout_ms(),
            ca_file: None,
            cert_file: None,
            key_file: None,
            username: None,
            password_file: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Advertise {
    pub prefix: IpNet,
    /// Communities to attach: `aa:nn` (RFC 1997) or `aa:nn:mm` (RFC 8092).
    #[serde(default)]
    pub communities: Vec<String>,
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
    /// `text` (the default) or `json`: one JSON object per line, with
    /// the time, level, target, message and fields.
    #[serde(default)]
    pub format: LogFormat,
}

impl Default for Log {
    fn default() -> Self {
        Self { level: default_log_level(), format: LogFormat::default() }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl TryFrom<String> for LogFormat {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err(format!("unknown format {s:?}: text or json")),
        }
    }
}

/// `[dataplane] mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String")]
pub enum DataplaneMode {
    /// eBPF when the kernel can, else the kernel's stack; the log and
    /// `merlectl status` say which and why.
    #[default]
    Auto,
    /// eBPF or refuse to start.
    Ebpf,
    /// The kernel's stack only: no program attached, nothing pinned.
    Kernel,
}

impl DataplaneMode {
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Ebpf => "ebpf",
            Self::Kernel => "kernel",
        }
    }
}

impl TryFrom<String> for DataplaneMode {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "auto" => Ok(Self::Auto),
            "ebpf" => Ok(Self::Ebpf),
            "kernel" => Ok(Self::Kernel),
            other => Err(format!("unknown dataplane mode {other:?}: use auto, ebpf or kernel")),
        }
    }
}

/// `[dataplane] attach`: how programs are attached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String")]
pub enum AttachKind {
    /// TCX where the kernel has it (6.6 and later), else clsact.
    #[default]
    Auto,
    Tcx,
    Clsact,
}

impl TryFrom<String> for AttachKind {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "auto" => Ok(Self::Auto),
            "tcx" => Ok(Self::Tcx),
            "clsact" => Ok(Self::Clsact),
            other => Err(format!("unknown attach type {other:?}: use auto, tcx or clsact")),
        }
    }
}

pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/merle";

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Dataplane {
    #[serde(default)]
    pub mode: DataplaneMode,
    #[serde(default)]
    pub attach: AttachKind,
    /// Where programs, maps and links are pinned; on a bpffs (mounted on
    /// /sys/fs/bpf when missing and the directory is under it).
    #[serde(default = "default_pin_dir")]
    pub pin_dir: PathBuf,
    /// The interfaces whose ingress gets the node program; by default the
    /// ones holding `node.address` and `node.address_v6`. vxlan.merle is
    /// added whenever it exists.
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// Balance the host's own connections to services (kubelet, hostNetwork
    /// pods) with cgroup socket programs, as Cilium's socket LB. Off: leave
    /// ClusterIPs from the host to kube-proxy; NodePorts, external and
    /// load-balancer IPs stay in eBPF.
    #[serde(default = "default_true")]
    pub socket_lb: bool,
    /// Where cgroup v2 is mounted, or is mounted by merled when it is not
    /// (a cgroup2 mount found elsewhere is used as it is).
    #[serde(default = "default_cgroup_root")]
    pub cgroup_root: PathBuf,
    /// Slots of each service's Maglev table: a prime, at least 100 times
    /// a service's backends (Cilium's `bpf-lb-maglev-table-size`).
    #[serde(default = "default_maglev_table_size")]
    pub maglev_table_size: u32,
    /// Seconds between sweeps of the conntrack table for expired flows;
    /// 0: adaptive, from 1 to 60 s by how fast flows expire (Cilium's
    /// `conntrack-gc-interval`).
    #[serde(default)]
    pub conntrack_gc_interval: u64,
}

fn default_maglev_table_size() -> u32 {
    merle_lb::maglev::DEFAULT_SIZE
}

pub const DEFAULT_CGROUP_ROOT: &str = "/run/merle/cgroupv2";

impl Default for Dataplane {
    fn default() -> Self {
        Self {
            mode: DataplaneMode::Auto,
            attach: AttachKind::Auto,
            pin_dir: default_pin_dir(),
            interfaces: Vec::new(),
            socket_lb: true,
            cgroup_root: default_cgroup_root(),
            maglev_table_size: default_maglev_table_size(),
            conntrack_gc_interval: 0,
        }
    }
}

fn default_cgroup_root() -> PathBuf {
    PathBuf::from(DEFAULT_CGROUP_ROOT)
}

fn default_pin_dir() -> PathBuf {
    PathBuf::from(DEFAULT_PIN_DIR)
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
fn default_error_wait_time_min() -> u16 {
    1
}

fn default_error_wait_time_max() -> u16 {
    120
}

fn default_error_forget_time() -> u16 {
    60
}

fn default_max_prefixes_restart() -> u16 {
    60
}
fn default_graceful_restart_time() -> u16 {
    120
}
fn default_max_paths() -> u16 {
    8
}
fn default_rt_table() -> u32 {
    RT_TABLE_MAIN
}
fn default_rt_protocol() -> u8 {
    DEFAULT_RT_PROTOCOL
}
fn default_vxlan_vni() -> u32 {
    DEFAULT_VXLAN_VNI
}
fn default_vxlan_port() -> u16 {
    DEFAULT_VXLAN_PORT
}
fn default_underlay_mtu() -> u16 {
    1500
}
fn default_data_dir() -> PathBuf {
    PathBuf::from(DEFAULT_DATA_DIR)
}
fn default_etcd_prefix() -> String {
    "/merle".into()
}
fn default_etcd_timeout_ms() -> u64 {
    5000
}
fn default_socket() -> PathBuf {
    PathBuf::from(DEFAULT_SOCKET)
}
fn default_log_level() -> String {
    "info".into()
}
