//! What one node programs for a set of services: its frontends and the
//! backend tables they use. Pure, so that every source of services and
//! every test gets the same answer; `merle-ebpf` writes the result into
//! the maps and assigns the ids.
//!
//! - Every service's ClusterIP, external IPs and load-balancer IPs are
//!   frontends, as is its NodePort on each of this node's addresses.
//! - The ClusterIP uses the table of all backends. With
//!   `externalTrafficPolicy: Local` the outside frontends (NodePort,
//!   external, load-balancer) use a table of this node's backends only;
//!   with `Cluster` they share the ClusterIP's.
//! - Remote backends are reached by DSR when the mode says so for the
//!   protocol (`dsr`, or `hybrid` for TCP), else by SNAT.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::service::{Mode, Protocol, Service, TrafficPolicy};

/// What a packet is matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Frontend {
    pub address: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
}

impl Frontend {
    pub fn protocol_number(&self) -> u8 {
        self.protocol.number()
    }
}

impl std::fmt::Display for Frontend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = self.protocol.name();
        match self.address {
            IpAddr::V4(a) => write!(f, "{a}:{}/{p}", self.port),
            IpAddr::V6(a) => write!(f, "[{a}]:{}/{p}", self.port),
        }
    }
}

/// Which kind of address a frontend is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    ClusterIp,
    NodePort,
    External,
    LoadBalancer,
}

/// One table of backends: a service's all, or its local ones.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct TableKey {
    pub service: String,
    pub local: bool,
}

/// A backend as a table holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Target {
    pub address: IpAddr,
    pub port: u16,
}

impl Target {
    /// The key Maglev hashes, the same as `Backend::maglev_key`.
    pub fn maglev_key(&self) -> Vec<u8> {
        format!("{}:{}", self.address, self.port).into_bytes()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FrontendPlan {
    pub kind: Kind,
    pub table: TableKey,
    /// `externalTrafficPolicy: Local` on an outside frontend.
    pub local: bool,
    /// Remote backends by DSR (else SNAT).
    pub dsr: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub frontends: BTreeMap<Frontend, FrontendPlan>,
    /// Each table's backends, sorted (the Maglev table does not depend on
    /// the order; the maps' diff is easier on a sorted list).
    pub tables: BTreeMap<TableKey, Vec<Target>>,
    /// This node's addresses: where its NodePorts are, and the source of
    /// SNAT towards remote backends.
    pub node_addresses: Vec<IpAddr>,
    /// The size of every Maglev table, a prime.
    pub maglev_size: u32,
}

impl Protocol {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }

    pub fn from_number(n: u8) -> Option<Self> {
        match n {
            6 => Some(Protocol::Tcp),
            17 => Some(Protocol::Udp),
            _ => None,
        }
    }
}

impl Mode {
    /// Whether a remote backend of a flow of `p` is reached by DSR.
    pub fn dsr(self, p: Protocol) -> bool {
        match self {
            Mode::Snat => false,
            Mode::Dsr => true,
            Mode::Hybrid => p == Protocol::Tcp,
        }
    }
}

impl Default for Plan {
    fn default() -> Self {
        Self {
            frontends: BTreeMap::new(),
            tables: BTreeMap::new(),
            node_addresses: Vec::new(),
            maglev_size: crate::maglev::DEFAULT_SIZE,
        }
    }
}

/// The frontends and tables of `node` (its name and addresses) for a set
/// of services that passed `validate`, with tables of the default size
/// (see [`Plan::maglev_size`]).
pub fn plan(services: &[Service], node: &str, node_addresses: &[IpAddr]) -> Plan {
    let mut out = Plan { node_addresses: node_addresses.to_vec(), ..Plan::default() };
    for s in services {
        let all: Vec<Target> = sorted(s.backends.iter().map(|b| Target { address: b.address, port: b.port }));
        let local_policy = s.external_traffic_policy == TrafficPolicy::Local;
        let cluster = TableKey { service: s.name.clone(), local: false };
        let outside = if local_policy {
            let mine = sorted(
                s.backends.iter().filter(|b| b.node == node).map(|b| Target { address: b.address, port: b.port }),
            );
            let key = TableKey { service: s.name.clone(), local: true };
            out.tables.insert(key.clone(), mine);
            key
        } else {
            cluster.clone()
        };
        out.tables.insert(cluster.clone(), all);
        let dsr = s.mode.dsr(s.protocol);
        let mut add = |address: IpAddr, port: u16, kind: Kind, table: &TableKey, local: bool| {
            out.frontends.insert(
                Frontend { address, port, protocol: s.protocol },
                FrontendPlan { kind, table: table.clone(), local, dsr },
            );
        };
        add(s.cluster_ip, s.port, Kind::ClusterIp, &cluster, false);
        for ip in &s.external_ips {
            add(*ip, s.port, Kind::External, &outside, local_policy);
        }
        for ip in &s.load_balancer_ips {
            add(*ip, s.port, Kind::LoadBalancer, &outside, local_policy);
        }
        if let Some(np) = s.node_port {
            for a in node_addresses.iter().filter(|a| a.is_ipv6() == s.cluster_ip.is_ipv6()) {
                add(*a, np, Kind::NodePort, &outside, local_policy);
            }
        }
    }
    out
}

fn sorted(t: impl Iterator<Item = Target>) -> Vec<Target> {
    let mut v: Vec<Target> = t.collect();
    v.sort();
    v.dedup();
    v
}

impl Plan {
    /// The addresses this node advertises for its services, beyond the
    /// service ranges every node advertises: with `Local` policy, the
    /// external and load-balancer IPs of services that have a backend on
    /// this node (Calico's per-service /32 and /128 routes).
    pub fn local_vips(&self) -> Vec<IpAddr> {
        let mut v: Vec<IpAddr> = self
            .frontends
            .iter()
            .filter(|(_, p)| p.local && p.kind != Kind::NodePort)
            .filter(|(_, p)| self.tables.get(&p.table).is_some_and(|t| !t.is_empty()))
            .map(|(f, _)| f.address)
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::service::Backend;

    fn svc(name: &str, policy: TrafficPolicy, mode: Mode, protocol: Protocol) -> Service {
        Service {
            name: name.into(),
            protocol,
            cluster_ip: "10.96.0.10".parse().unwrap(),
            port: 80,
            node_port: Some(30080),
            external_ips: vec![],
            load_balancer_ips: vec!["192.0.2.10".parse().unwrap()],
            external_traffic_policy: policy,
            mode,
            backends: vec![
                Backend { address: "10.244.1.5".parse().unwrap(), port: 8080, node: "n2".into() },
                Backend { address: "10.244.0.5".parse().unwrap(), port: 8080, node: "n1".into() },
            ],
        }
    }

    fn addrs() -> Vec<IpAddr> {
        vec!["10.0.0.1".parse().unwrap(), "fd00::1".parse().unwrap()]
    }

    #[test]
    fn cluster_policy_uses_one_table_for_every_frontend() {
        let p = plan(&[svc("web", TrafficPolicy::Cluster, Mode::Dsr, Protocol::Tcp)], "n1", &addrs());
        assert_eq!(p.tables.len(), 1);
        let t = &p.tables[&TableKey { service: "web".into(), local: false }];
        assert_eq!(t[0].address.to_string(), "10.244.0.5", "sorted");
        let kinds: Vec<(String, Kind)> = p.frontends.iter().map(|(f, v)| (f.to_string(), v.kind)).collect();
        assert_eq!(
            kinds,
            vec![
                ("10.0.0.1:30080/tcp".to_string(), Kind::NodePort),
                ("10.96.0.10:80/tcp".to_string(), Kind::ClusterIp),
                ("192.0.2.10:80/tcp".to_string(), Kind::LoadBalancer),
            ],
            "the NodePort on the node's IPv4 address only"
        );
        assert!(p.frontends.values().all(|f| f.dsr && !f.local));
        assert!(p.local_vips().is_empty());
    }

    #[test]
    fn local_policy_gives_outside_frontends_this_nodes_backends() {
        let s = svc("web", TrafficPolicy::Local, Mode::Snat, Protocol::Tcp);
        let p = plan(std::slice::from_ref(&s), "n1", &addrs());
        let local = &p.tables[&TableKey { service: "web".into(), local: true }];
        assert_eq!(local.len(), 1);
        assert_eq!(local[0].address.to_string(), "10.244.0.5");
        let lb = p.frontends.iter().find(|(_, v)| v.kind == Kind::LoadBalancer).unwrap().1;
        assert!(lb.local && lb.table.local);
        let cip = p.frontends.iter().find(|(_, v)| v.kind == Kind::ClusterIp).unwrap().1;
        assert!(!cip.local && !cip.table.local, "the ClusterIP keeps every backend");
        assert_eq!(p.local_vips(), vec!["192.0.2.10".parse::<IpAddr>().unwrap()]);
        // A node without a backend of it does not advertise the VIP.
        assert!(plan(&[s], "n3", &addrs()).local_vips().is_empty());
    }

    #[test]
    fn hybrid_is_dsr_for_tcp_and_snat_for_udp() {
        assert!(Mode::Hybrid.dsr(Protocol::Tcp));
        assert!(!Mode::Hybrid.dsr(Protocol::Udp));
        assert!(Mode::Dsr.dsr(Protocol::Udp));
        assert!(!Mode::Snat.dsr(Protocol::Tcp));
        let p = plan(&[svc("dns", TrafficPolicy::Cluster, Mode::Hybrid, Protocol::Udp)], "n1", &addrs());
        assert!(p.frontends.values().all(|f| !f.dsr));
    }
}
