//! The Rust side of `bpf/lib/types.h` and `bpf/lib/drop.h`: the map keys
//! and values, `#[repr(C)]` with the same fields in the same order, and the
//! reasons with their names. The test at the end compares both with what
//! the C compiler laid out (build.rs prints it from `bpf/layout.c`).

use std::net::IpAddr;

pub const AF_INET: u8 = 2;
pub const AF_INET6: u8 = 10;

/// `struct endpoint_key`: a pod address; IPv4 in `addr[0]`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointKey {
    pub family: u8,
    pub pad: [u8; 3],
    /// Network order, as the bytes are on the wire.
    pub addr: [u8; 16],
}

impl EndpointKey {
    pub fn new(ip: IpAddr) -> Self {
        let mut addr = [0u8; 16];
        let family = match ip {
            IpAddr::V4(a) => {
                addr[..4].copy_from_slice(&a.octets());
                AF_INET
            }
            IpAddr::V6(a) => {
                addr = a.octets();
                AF_INET6
            }
        };
        Self { family, pad: [0; 3], addr }
    }

    pub fn ip(&self) -> Option<IpAddr> {
        match self.family {
            AF_INET => Some(IpAddr::from([self.addr[0], self.addr[1], self.addr[2], self.addr[3]])),
            AF_INET6 => Some(IpAddr::from(self.addr)),
            _ => None,
        }
    }
}

/// `struct endpoint_info`: where a pod address is delivered.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EndpointInfo {
    pub ifindex: u32,
    pub pod_mac: [u8; 6],
    pub node_mac: [u8; 6],
    pub flags: u32,
    pub pad: u32,
}

/// `struct pod_iface`: one pod veth's usual source addresses, at slot
/// `ifindex % POD_IFACES_MAX` of `merle_pod_ifaces`. Addresses in network
/// order, as octets.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PodIface {
    pub ifindex: u32,
    pub flags: u32,
    pub v4: [u8; 4],
    pub v6: [u8; 16],
    pub pad: u32,
}

pub const POD_IFACE_F_V4: u32 = 1;
pub const POD_IFACE_F_V6: u32 = 2;
pub const POD_IFACE_F_NAT_OUTGOING_V4: u32 = 4;
pub const POD_IFACE_F_NAT_OUTGOING_V6: u32 = 8;

/// `struct net_key4`, the same layout as aya's `lpm_trie::Key<u32>`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetKey4 {
    pub prefixlen: u32,
    pub addr: [u8; 4],
}

/// `struct net_key6`, the same layout as aya's `lpm_trie::Key<[u8; 16]>`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetKey6 {
    pub prefixlen: u32,
    pub addr: [u8; 16],
}

/// `struct net_info`: what a cluster range is (`NET_F_*`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NetInfo {
    pub flags: u32,
}

pub const NET_F_POOL: u32 = 1;
pub const NET_F_NAT_OUTGOING: u32 = 2;
pub const NET_F_SERVICE: u32 = 4;
pub const NET_F_NODE: u32 = 8;

/// `ENDPOINT_F_NAT_OUTGOING`: the address is from a `nat_outgoing` pool.
pub const ENDPOINT_F_NAT_OUTGOING: u32 = 1;

/// `struct metrics_value`: one CPU's counters of one (hook, reason).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetricsValue {
    pub packets: u64,
    pub bytes: u64,
}

/// `struct service_key`: a frontend. Address and port in network order,
/// as octets (IPv4 in the first four).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    pub addr: [u8; 16],
    pub port: [u8; 2],
    pub proto: u8,
    pub family: u8,
}

/// `struct service_info`: the table a frontend uses, its rev-NAT index.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ServiceInfo {
    pub lb_id: u32,
    pub rev_nat: u32,
    pub count: u32,
    pub flags: u32,
    /// The size of the table, a prime.
    pub maglev_m: u32,
    /// `SVC_F_LOCAL`: the table of every backend, for traffic from pods.
    pub cluster_lb_id: u32,
    pub cluster_count: u32,
}

pub const SVC_F_CLUSTER_IP: u32 = 1;
pub const SVC_F_NODE_PORT: u32 = 2;
pub const SVC_F_EXTERNAL: u32 = 4;
pub const SVC_F_LOCAL: u32 = 8;
pub const SVC_F_DSR: u32 = 16;

/// `struct backend_info`: where a backend id sends to.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct BackendInfo {
    pub addr: [u8; 16],
    pub port: [u8; 2],
    pub family: u8,
    pub pad: u8,
    pub lb_id: u32,
}

/// `struct rev_nat_info`: the frontend replies are rewritten to.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct RevNatInfo {
    pub addr: [u8; 16],
    pub port: [u8; 2],
    pub family: u8,
    pub pad: u8,
}

/// `MAGLEV_CHUNK`: slots per entry of `merle_maglev`.
pub const MAGLEV_CHUNK: u32 = 1024;
/// `MAGLEV_M_MAX`: the largest table size the programs accept.
pub const MAGLEV_M_MAX: u32 = 131_071;
pub const MAGLEV_CHUNKS_MAX: u32 = 1 << 20;

/// `struct maglev_key`: one chunk of one table.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MaglevKey {
    pub lb_id: u32,
    pub chunk: u32,
}

/// `struct maglev_chunk`: `MAGLEV_CHUNK` slots' backend ids.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaglevChunk {
    pub backend: [u32; MAGLEV_CHUNK as usize],
}

/// `struct ct_key`: a conntrack key (`CT_SERVICE` or `CT_REPLY`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CtKey {
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub sport: [u8; 2],
    pub dport: [u8; 2],
    pub proto: u8,
    pub family: u8,
    pub dir: u8,
    pub pad: u8,
}

pub const CT_SERVICE: u8 = 1;
pub const CT_REPLY: u8 = 2;

/// `struct ct_entry`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct CtEntry {
    pub backend_id: u32,
    pub rev_nat: u32,
    pub lb_id: u32,
    pub flags: u32,
    pub addr: [u8; 16],
    pub port: [u8; 2],
    pub pad: u16,
    /// CT_REPLY: the tick (2^30 ns of CLOCK_MONOTONIC) of the last packet.
    pub seen: u32,
}

pub const CT_F_DSR: u32 = 1;
pub const CT_F_SNAT: u32 = 2;
pub const CT_F_HAIRPIN: u32 = 4;
pub const CT_F_CLOSING: u32 = 8;
pub const CT_TICK_SHIFT: u32 = 30;
pub const CT_LIFE_TCP: u32 = 20116;
pub const CT_LIFE_CLOSING: u32 = 10;
pub const CT_LIFE_UDP: u32 = 56;
/// `HAIRPIN_V4`: the source of a pod's flow to a service it backs itself.
pub const HAIRPIN_V4: std::net::Ipv4Addr = std::net::Ipv4Addr::new(169, 254, 42, 1);

/// `struct lb_config`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct LbConfig {
    pub services: u32,
    pub flags: u32,
    pub addr4: [u8; 4],
    pub addr6: [u8; 16],
    pub pad: u32,
    /// The host's network namespace, where the socket programs balance.
    pub netns_cookie: u64,
    /// The next ids to hand out, never lowered.
    pub next_lb: u32,
    pub next_backend: u32,
    pub next_rev_nat: u32,
    /// A sync is under way (1); one that finds it set rebuilds every table.
    pub syncing: u32,
}

/// `struct sock_rev_key`: a translated socket and the backend it was
/// sent to.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SockRevKey {
    pub cookie: u64,
    pub addr: [u8; 16],
    pub port: [u8; 2],
    pub family: u8,
    pub pad: [u8; 5],
}

pub const SOCK_REV_MAX: u32 = 65536;

pub const LB_F_ADDR4: u32 = 1;
pub const LB_F_ADDR6: u32 = 2;
pub const DSR_IPV4_OPT_TYPE: u8 = 0x9a;
pub const DSR_IPV4_OPT_LEN: u8 = 8;
pub const DSR_IPV6_OPT_TYPE: u8 = 0x1b;
pub const DSR_IPV6_OPT_LEN: u8 = 20;
pub const DSR_IPV6_EXT_LEN: u8 = 24;

pub const SERVICES_MAX: u32 = 65536;
pub const BACKENDS_MAX: u32 = 262144;
pub const CT_MAX: u32 = 262144;

/// An address as a map holds it: network order, IPv4 in the first four
/// octets, with its family.
pub fn addr_octets(ip: IpAddr) -> ([u8; 16], u8) {
    match ip {
        IpAddr::V4(a) => {
            let mut o = [0u8; 16];
            o[..4].copy_from_slice(&a.octets());
            (o, AF_INET)
        }
        IpAddr::V6(a) => (a.octets(), AF_INET6),
    }
}

/// The address of `addr_octets`' form, or `None` for an unknown family.
pub fn octets_addr(o: &[u8; 16], family: u8) -> Option<IpAddr> {
    match family {
        AF_INET => Some(IpAddr::from([o[0], o[1], o[2], o[3]])),
        AF_INET6 => Some(IpAddr::from(*o)),
        _ => None,
    }
}

// SAFETY: each type is #[repr(C)], Copy, made of integers and byte arrays
// with explicit padding fields, so every bit pattern is a valid value and
// no byte is uninitialised: what aya's Pod requires to copy them to and
// from the kernel.
#[allow(unsafe_code)]
mod pod {
    unsafe impl aya::Pod for super::EndpointKey {}
    unsafe impl aya::Pod for super::EndpointInfo {}
    unsafe impl aya::Pod for super::PodIface {}
    unsafe impl aya::Pod for super::NetInfo {}
    unsafe impl aya::Pod for super::MetricsValue {}
    unsafe impl aya::Pod for super::ServiceKey {}
    unsafe impl aya::Pod for super::ServiceInfo {}
    unsafe impl aya::Pod for super::BackendInfo {}
    unsafe impl aya::Pod for super::RevNatInfo {}
    unsafe impl aya::Pod for super::MaglevKey {}
    unsafe impl aya::Pod for super::MaglevChunk {}
    unsafe impl aya::Pod for super::CtKey {}
    unsafe impl aya::Pod for super::CtEntry {}
    unsafe impl aya::Pod for super::LbConfig {}
    unsafe impl aya::Pod for super::SockRevKey {}
}

/// Where a program runs (`HOOK_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Hook {
    /// The host end of a pod's veth, ingress: what pods send.
    PodIngress = 0,
    /// An uplink or vxlan.merle, ingress: what arrives for the node.
    NodeIngress = 1,
}

impl Hook {
    pub const ALL: [Hook; 2] = [Hook::PodIngress, Hook::NodeIngress];

    pub fn name(self) -> &'static str {
        match self {
            Hook::PodIngress => "pod-ingress",
            Hook::NodeIngress => "node-ingress",
        }
    }
}

pub const HOOKS_MAX: u32 = 4;
pub const REASONS_MAX: u32 = 64;
pub const METRICS_MAX: u32 = HOOKS_MAX * REASONS_MAX;
pub const ENDPOINTS_MAX: u32 = 65536;
pub const POD_IFACES_MAX: u32 = 65536;
pub const NETS_MAX: u32 = 1024;

pub fn metric_index(hook: Hook, reason: Reason) -> u32 {
    hook as u32 * REASONS_MAX + reason as u32
}

/// What a verdict was: a redirect, a pass to the stack, or a drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Redirect,
    Pass,
    Drop,
}

macro_rules! reasons {
    ($($(#[$m:meta])* $v:ident = $n:literal, $c:literal, $name:literal;)*) => {
        /// `enum reason` of `bpf/lib/drop.h`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Reason { $($(#[$m])* $v = $n,)* }

        impl Reason {
            pub const ALL: &'static [Reason] = &[$(Reason::$v,)*];

            /// The C name (`DROP_SOURCE_SPOOFED`).
            pub fn c_name(self) -> &'static str {
                match self { $(Reason::$v => $c,)* }
            }

            /// The name operators see (`source-spoofed`).
            pub fn name(self) -> &'static str {
                match self { $(Reason::$v => $name,)* }
            }

            pub fn from_code(n: u32) -> Option<Reason> {
                match n { $($n => Some(Reason::$v),)* _ => None }
            }
        }
    };
}

reasons! {
    /// `bpf_redirect_peer` into a pod of this node.
    RedirectPeer = 1, "REASON_REDIRECT_PEER", "redirect-peer";
    /// `bpf_fib_lookup`, then `bpf_redirect`.
    RedirectFib = 2, "REASON_REDIRECT_FIB", "redirect-fib";
    /// `bpf_redirect_neigh` after NO_NEIGH.
    RedirectNeigh = 3, "REASON_REDIRECT_NEIGH", "redirect-neigh";
    /// The DSR option would exceed the MTU: ICMP Frag Needed / Packet Too
    /// Big sent back to the client.
    IcmpTooBig = 4, "REASON_ICMP_TOO_BIG", "icmp-too-big";
    PassNotIp = 8, "PASS_NOT_IP", "pass-not-ip";
    PassLocal = 9, "PASS_LOCAL", "pass-local";
    PassTtl = 10, "PASS_TTL", "pass-ttl";
    PassFragment = 11, "PASS_FRAGMENT", "pass-fragment";
    PassIpOptions = 12, "PASS_IP_OPTIONS", "pass-ip-options";
    PassNatOutgoing = 13, "PASS_NAT_OUTGOING", "pass-nat-outgoing";
    PassFib = 14, "PASS_FIB", "pass-fib";
    PassNoEndpoint = 15, "PASS_NO_ENDPOINT", "pass-no-endpoint";
    PassLinkLocal = 16, "PASS_LINK_LOCAL", "pass-link-local";
    PassHairpin = 17, "PASS_HAIRPIN", "pass-hairpin";
    PassUnknownSource = 18, "PASS_UNKNOWN_SOURCE", "pass-unknown-source";
    PassOtherHost = 19, "PASS_OTHER_HOST", "pass-other-host";
    DropInvalidIpv4 = 32, "DROP_INVALID_IPV4", "drop-invalid-ipv4";
    DropInvalidIpv6 = 33, "DROP_INVALID_IPV6", "drop-invalid-ipv6";
    DropSourceSpoofed = 34, "DROP_SOURCE_SPOOFED", "drop-source-spoofed";
    DropFibBlackhole = 37, "DROP_FIB_BLACKHOLE", "drop-fib-blackhole";
    DropRedirect = 38, "DROP_REDIRECT", "drop-redirect";
    /// To a service frontend whose table has no backend.
    DropNoBackend = 39, "DROP_NO_BACKEND", "drop-no-backend";
    /// A service translation's rewrite helper failed.
    DropNat = 40, "DROP_NAT", "drop-nat";
    /// IPv6: a pod to a service whose chosen backend is that pod.
    DropServiceLoopback = 41, "DROP_SERVICE_LOOPBACK", "drop-service-loopback";
    /// The DSR option could not be inserted.
    DropDsr = 42, "DROP_DSR", "drop-dsr";
    /// SNAT found no free source port for the flow.
    DropNatNoPort = 43, "DROP_NAT_NO_PORT", "drop-nat-no-port";
    /// The ICMP error could not be built.
    DropIcmp = 44, "DROP_ICMP", "drop-icmp";
}

impl Reason {
    pub fn kind(self) -> Kind {
        match self as u32 {
            0..=7 => Kind::Redirect,
            8..=31 => Kind::Pass,
            _ => Kind::Drop,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::mem::{offset_of, size_of};

    /// What `bpf/layout.c` printed, compiled by clang from the C headers.
    fn c_layout() -> HashMap<String, i64> {
        include_str!(concat!(env!("OUT_DIR"), "/layout.txt"))
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (format!("{} {}", f[0], f[1]), f[2].parse().unwrap())
            })
            .collect()
    }

    #[test]
    fn rust_types_have_the_layout_of_the_c_types() {
        let c = c_layout();
        let check = |what: &str, rust: usize| {
            let want = *c.get(what).unwrap_or_else(|| panic!("layout.c does not print {what}"));
            assert_eq!(rust as i64, want, "{what}: Rust {rust}, C {want}");
        };
        check("size endpoint_key", size_of::<EndpointKey>());
        check("offset endpoint_key.family", offset_of!(EndpointKey, family));
        check("offset endpoint_key.addr", offset_of!(EndpointKey, addr));
        check("size endpoint_info", size_of::<EndpointInfo>());
        check("offset endpoint_info.ifindex", offset_of!(EndpointInfo, ifindex));
        check("offset endpoint_info.pod_mac", offset_of!(EndpointInfo, pod_mac));
        check("offset endpoint_info.node_mac", offset_of!(EndpointInfo, node_mac));
        check("offset endpoint_info.flags", offset_of!(EndpointInfo, flags));
        check("size pod_iface", size_of::<PodIface>());
        check("offset pod_iface.ifindex", offset_of!(PodIface, ifindex));
        check("offset pod_iface.flags", offset_of!(PodIface, flags));
        check("offset pod_iface.v4", offset_of!(PodIface, v4));
        check("offset pod_iface.v6", offset_of!(PodIface, v6));
        check("size net_key4", size_of::<NetKey4>());
        check("offset net_key4.prefixlen", offset_of!(NetKey4, prefixlen));
        check("offset net_key4.addr", offset_of!(NetKey4, addr));
        check("size net_key6", size_of::<NetKey6>());
        check("offset net_key6.prefixlen", offset_of!(NetKey6, prefixlen));
        check("offset net_key6.addr", offset_of!(NetKey6, addr));
        check("size net_info", size_of::<NetInfo>());
        check("offset net_info.flags", offset_of!(NetInfo, flags));
        check("size metrics_value", size_of::<MetricsValue>());
        check("offset metrics_value.packets", offset_of!(MetricsValue, packets));
        check("offset metrics_value.bytes", offset_of!(MetricsValue, bytes));
        check("size service_key", size_of::<ServiceKey>());
        check("offset service_key.addr", offset_of!(ServiceKey, addr));
        check("offset service_key.port", offset_of!(ServiceKey, port));
        check("offset service_key.proto", offset_of!(ServiceKey, proto));
        check("offset service_key.family", offset_of!(ServiceKey, family));
        check("size service_info", size_of::<ServiceInfo>());
        check("offset service_info.lb_id", offset_of!(ServiceInfo, lb_id));
        check("offset service_info.rev_nat", offset_of!(ServiceInfo, rev_nat));
        check("offset service_info.count", offset_of!(ServiceInfo, count));
        check("offset service_info.flags", offset_of!(ServiceInfo, flags));
        check("offset service_info.maglev_m", offset_of!(ServiceInfo, maglev_m));
        check("offset service_info.cluster_lb_id", offset_of!(ServiceInfo, cluster_lb_id));
        check("offset service_info.cluster_count", offset_of!(ServiceInfo, cluster_count));
        check("size backend_info", size_of::<BackendInfo>());
        check("offset backend_info.addr", offset_of!(BackendInfo, addr));
        check("offset backend_info.port", offset_of!(BackendInfo, port));
        check("offset backend_info.family", offset_of!(BackendInfo, family));
        check("offset backend_info.lb_id", offset_of!(BackendInfo, lb_id));
        check("size rev_nat_info", size_of::<RevNatInfo>());
        check("offset rev_nat_info.addr", offset_of!(RevNatInfo, addr));
        check("offset rev_nat_info.port", offset_of!(RevNatInfo, port));
        check("offset rev_nat_info.family", offset_of!(RevNatInfo, family));
        check("size maglev_key", size_of::<MaglevKey>());
        check("offset maglev_key.chunk", offset_of!(MaglevKey, chunk));
        check("size maglev_chunk", size_of::<MaglevChunk>());
        check("size ct_key", size_of::<CtKey>());
        check("offset ct_key.saddr", offset_of!(CtKey, saddr));
        check("offset ct_key.daddr", offset_of!(CtKey, daddr));
        check("offset ct_key.sport", offset_of!(CtKey, sport));
        check("offset ct_key.dport", offset_of!(CtKey, dport));
        check("offset ct_key.proto", offset_of!(CtKey, proto));
        check("offset ct_key.family", offset_of!(CtKey, family));
        check("offset ct_key.dir", offset_of!(CtKey, dir));
        check("size ct_entry", size_of::<CtEntry>());
        check("offset ct_entry.backend_id", offset_of!(CtEntry, backend_id));
        check("offset ct_entry.rev_nat", offset_of!(CtEntry, rev_nat));
        check("offset ct_entry.lb_id", offset_of!(CtEntry, lb_id));
        check("offset ct_entry.flags", offset_of!(CtEntry, flags));
        check("offset ct_entry.addr", offset_of!(CtEntry, addr));
        check("offset ct_entry.port", offset_of!(CtEntry, port));
        check("offset ct_entry.seen", offset_of!(CtEntry, seen));
        check("size lb_config", size_of::<LbConfig>());
        check("offset lb_config.services", offset_of!(LbConfig, services));
        check("offset lb_config.flags", offset_of!(LbConfig, flags));
        check("offset lb_config.addr4", offset_of!(LbConfig, addr4));
        check("offset lb_config.addr6", offset_of!(LbConfig, addr6));
        check("offset lb_config.netns_cookie", offset_of!(LbConfig, netns_cookie));
        check("offset lb_config.next_lb", offset_of!(LbConfig, next_lb));
        check("offset lb_config.next_backend", offset_of!(LbConfig, next_backend));
        check("offset lb_config.next_rev_nat", offset_of!(LbConfig, next_rev_nat));
        check("offset lb_config.syncing", offset_of!(LbConfig, syncing));
        check("size sock_rev_key", size_of::<SockRevKey>());
        check("offset sock_rev_key.cookie", offset_of!(SockRevKey, cookie));
        check("offset sock_rev_key.addr", offset_of!(SockRevKey, addr));
        check("offset sock_rev_key.port", offset_of!(SockRevKey, port));
        check("offset sock_rev_key.family", offset_of!(SockRevKey, family));
        check("size dsr_opt_v4", 8);
        check("size dsr_opt_v6", usize::from(DSR_IPV6_EXT_LEN));
        // aya's LPM key is what the C side calls net_key4 / net_key6.
        assert_eq!(size_of::<aya::maps::lpm_trie::Key<[u8; 4]>>(), size_of::<NetKey4>());
        assert_eq!(size_of::<aya::maps::lpm_trie::Key<[u8; 16]>>(), size_of::<NetKey6>());
    }

    #[test]
    fn constants_and_reasons_match_the_c_headers() {
        let c = c_layout();
        for (name, v) in [
            ("HOOK_POD_INGRESS", Hook::PodIngress as u32),
            ("HOOK_NODE_INGRESS", Hook::NodeIngress as u32),
            ("HOOKS_MAX", HOOKS_MAX),
            ("REASONS_MAX", REASONS_MAX),
            ("METRICS_MAX", METRICS_MAX),
            ("ENDPOINTS_MAX", ENDPOINTS_MAX),
            ("POD_IFACES_MAX", POD_IFACES_MAX),
            ("POD_IFACE_F_V4", POD_IFACE_F_V4),
            ("POD_IFACE_F_V6", POD_IFACE_F_V6),
            ("POD_IFACE_F_NAT_OUTGOING_V4", POD_IFACE_F_NAT_OUTGOING_V4),
            ("POD_IFACE_F_NAT_OUTGOING_V6", POD_IFACE_F_NAT_OUTGOING_V6),
            ("NETS_MAX", NETS_MAX),
            ("NET_F_POOL", NET_F_POOL),
            ("NET_F_NAT_OUTGOING", NET_F_NAT_OUTGOING),
            ("NET_F_SERVICE", NET_F_SERVICE),
            ("NET_F_NODE", NET_F_NODE),
            ("ENDPOINT_F_NAT_OUTGOING", ENDPOINT_F_NAT_OUTGOING),
            ("SVC_F_CLUSTER_IP", SVC_F_CLUSTER_IP),
            ("SVC_F_NODE_PORT", SVC_F_NODE_PORT),
            ("SVC_F_EXTERNAL", SVC_F_EXTERNAL),
            ("SVC_F_LOCAL", SVC_F_LOCAL),
            ("SVC_F_DSR", SVC_F_DSR),
            ("MAGLEV_CHUNK", MAGLEV_CHUNK),
            ("MAGLEV_M_MAX", MAGLEV_M_MAX),
            ("MAGLEV_CHUNKS_MAX", MAGLEV_CHUNKS_MAX),
            ("CT_SERVICE", u32::from(CT_SERVICE)),
            ("CT_REPLY", u32::from(CT_REPLY)),
            ("SERVICES_MAX", SERVICES_MAX),
            ("BACKENDS_MAX", BACKENDS_MAX),
            ("CT_MAX", CT_MAX),
            ("SOCK_REV_MAX", SOCK_REV_MAX),
            ("CT_F_DSR", CT_F_DSR),
            ("CT_F_SNAT", CT_F_SNAT),
            ("CT_F_HAIRPIN", CT_F_HAIRPIN),
            ("CT_F_CLOSING", CT_F_CLOSING),
            ("CT_TICK_SHIFT", CT_TICK_SHIFT),
            ("CT_LIFE_TCP", CT_LIFE_TCP),
            ("CT_LIFE_CLOSING", CT_LIFE_CLOSING),
            ("CT_LIFE_UDP", CT_LIFE_UDP),
            ("LB_F_ADDR4", LB_F_ADDR4),
            ("LB_F_ADDR6", LB_F_ADDR6),
            ("DSR_IPV4_OPT_TYPE", u32::from(DSR_IPV4_OPT_TYPE)),
            ("DSR_IPV4_OPT_LEN", u32::from(DSR_IPV4_OPT_LEN)),
            ("DSR_IPV6_OPT_TYPE", u32::from(DSR_IPV6_OPT_TYPE)),
            ("DSR_IPV6_OPT_LEN", u32::from(DSR_IPV6_OPT_LEN)),
            ("DSR_IPV6_EXT_LEN", u32::from(DSR_IPV6_EXT_LEN)),
        ] {
            assert_eq!(c[&format!("const {name}")], i64::from(v), "{name}");
        }
        let in_c: Vec<(&String, &i64)> = c.iter().filter(|(k, _)| k.starts_with("reason ")).collect();
        assert_eq!(in_c.len(), Reason::ALL.len(), "drop.h and types.rs list different reasons");
        for r in Reason::ALL {
            assert_eq!(c[&format!("reason {}", r.c_name())], *r as i64, "{}", r.c_name());
            assert_eq!(Reason::from_code(*r as u32), Some(*r));
            assert!((*r as u32) < REASONS_MAX);
        }
        assert_eq!(Reason::DropSourceSpoofed.kind(), Kind::Drop);
        assert_eq!(Reason::PassLocal.kind(), Kind::Pass);
        assert_eq!(Reason::RedirectNeigh.kind(), Kind::Redirect);
        // As the program compares it: the address's bytes read as a
        // little-endian word.
        assert_eq!(c["const HAIRPIN_V4"] as u32, u32::from_le_bytes(HAIRPIN_V4.octets()));
    }

    #[test]
    fn endpoint_keys_hold_addresses_in_network_order() {
        let k = EndpointKey::new("10.1.2.3".parse().unwrap());
        assert_eq!((k.family, &k.addr[..5]), (AF_INET, &[10, 1, 2, 3, 0][..]));
        assert_eq!(k.ip(), Some("10.1.2.3".parse().unwrap()));
        let k = EndpointKey::new("fd00::1".parse().unwrap());
        assert_eq!((k.family, k.addr[0], k.addr[15]), (AF_INET6, 0xfd, 1));
        assert_eq!(k.ip(), Some("fd00::1".parse().unwrap()));
    }
}
