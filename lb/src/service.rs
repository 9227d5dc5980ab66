//! A service as merle programs it, and the checks it must pass first.
//!
//! The shape follows Kubernetes' Service and EndpointSlice: a ClusterIP and
//! port, an optional NodePort, external and load-balancer IPs,
//! `externalTrafficPolicy`, and the backends (pod address, port, node).
//! merle adds the forwarding mode of remote backends (Cilium's
//! `bpf-lb-mode`): `snat`, `dsr`, or `hybrid` (DSR for TCP, SNAT for UDP).
//!
//! [`validate`] checks a whole set at once and names the first thing
//! wrong by its place (`services[2].backends[0].address`), so a source can
//! refuse the set and change nothing. What it knows is the configuration:
//! a backend must be inside a pool; that IPAM has really given the address
//! to a pod is for whoever programs the service to check against IPAM.

use std::collections::HashSet;
use std::net::IpAddr;
use std::ops::RangeInclusive;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum Protocol {
    Tcp,
    Udp,
}

/// How a node forwards to a backend on another node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum Mode {
    /// DNAT and SNAT to the node's address; replies come back through it.
    #[default]
    Snat,
    /// DNAT keeping the client's address, the service in an IP option;
    /// replies go from the backend's node straight to the client.
    Dsr,
    /// DSR for TCP, SNAT for UDP.
    Hybrid,
}

/// Kubernetes' `externalTrafficPolicy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String")]
pub enum TrafficPolicy {
    /// Any backend, on any node.
    #[default]
    Cluster,
    /// Only this node's backends; the client's address is kept, and a node
    /// without one does not advertise the service.
    Local,
}

// Named errors for the enums, as the rest of the configuration gives them.
impl TryFrom<String> for Protocol {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "tcp" => Ok(Self::Tcp),
            "udp" => Ok(Self::Udp),
            other => Err(format!("unknown protocol {other:?}: use tcp or udp")),
        }
    }
}

impl TryFrom<String> for Mode {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "snat" => Ok(Self::Snat),
            "dsr" => Ok(Self::Dsr),
            "hybrid" => Ok(Self::Hybrid),
            other => Err(format!("unknown mode {other:?}: use snat, dsr or hybrid")),
        }
    }
}

impl TryFrom<String> for TrafficPolicy {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "Cluster" => Ok(Self::Cluster),
            "Local" => Ok(Self::Local),
            other => Err(format!("unknown external_traffic_policy {other:?}: use Cluster or Local")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    pub address: IpAddr,
    pub port: u16,
    /// The node the pod runs on.
    pub node: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub name: String,
    pub protocol: Protocol,
    pub cluster_ip: IpAddr,
    pub port: u16,
    #[serde(default)]
    pub node_port: Option<u16>,
    #[serde(default)]
    pub external_ips: Vec<IpAddr>,
    #[serde(default)]
    pub load_balancer_ips: Vec<IpAddr>,
    #[serde(default)]
    pub external_traffic_policy: TrafficPolicy,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub backends: Vec<Backend>,
}

/// Where services may live: the cluster's service ranges, its pools (every
/// backend is a pod address) and the NodePort range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ranges {
    pub cluster_ips: Vec<IpNet>,
    pub external_ips: Vec<IpNet>,
    pub load_balancer_ips: Vec<IpNet>,
    pub pools: Vec<IpNet>,
    pub node_ports: RangeInclusive<u16>,
    /// The size of the Maglev tables, which bounds the backends of one
    /// service.
    pub maglev_size: u32,
}

/// The most backends one service may have with tables of `size` slots:
/// Maglev needs a table at least 100 times larger than its backends to
/// balance them within 1%.
pub fn max_backends(size: u32) -> usize {
    (size / 100) as usize
}

/// Kubernetes' default `--service-node-port-range`.
pub const NODE_PORTS: RangeInclusive<u16> = 30000..=32767;

/// The first thing wrong with a set of services: where, and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct Invalid {
    pub key: String,
    pub message: String,
}

fn invalid(key: String, message: String) -> Invalid {
    Invalid { key, message }
}

fn inside(ip: IpAddr, nets: &[IpNet]) -> bool {
    nets.iter().any(|n| n.contains(&ip))
}

fn list(nets: &[IpNet]) -> String {
    if nets.is_empty() {
        return "none is configured".into();
    }
    nets.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// Checks every service of a set and the set as a whole.
pub fn validate(services: &[Service], r: &Ranges) -> Result<(), Invalid> {
    let mut names = HashSet::new();
    let mut frontends: HashSet<(IpAddr, u16, Protocol)> = HashSet::new();
    let mut node_ports: HashSet<(u16, Protocol)> = HashSet::new();
    for (i, s) in services.iter().enumerate() {
        let key = |k: &str| format!("services[{i}].{k}");
        let name = s.name.trim();
        if name.is_empty() || name.len() > 253 || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid(
                key("name"),
                format!("{:?} is not a service name (1 to 253 characters, no spaces)", s.name),
            ));
        }
        if !names.insert(name) {
            return Err(invalid(key("name"), format!("duplicate service {name:?}")));
        }
        if s.port == 0 {
            return Err(invalid(key("port"), "port 0 is not a port: use 1 to 65535".into()));
        }
        if !inside(s.cluster_ip, &r.cluster_ips) {
            return Err(invalid(
                key("cluster_ip"),
                format!("{} is outside every cluster IP range ({})", s.cluster_ip, list(&r.cluster_ips)),
            ));
        }
        let v6 = s.cluster_ip.is_ipv6();
        let mut vips = vec![(key("cluster_ip"), s.cluster_ip)];
        for (field, ips, nets) in [
            ("external_ips", &s.external_ips, &r.external_ips),
            ("load_balancer_ips", &s.load_balancer_ips, &r.load_balancer_ips),
        ] {
            for (j, ip) in ips.iter().enumerate() {
                let k = key(&format!("{field}[{j}]"));
                if !inside(*ip, nets) {
                    return Err(invalid(k, format!("{ip} is outside every {field} range ({})", list(nets))));
                }
                vips.push((k, *ip));
            }
        }
        for (k, vip) in vips {
            if vip.is_ipv6() != v6 {
                return Err(invalid(k, format!("{vip} is not of the cluster IP's family")));
            }
            if !frontends.insert((vip, s.port, s.protocol)) {
                return Err(invalid(k, format!("another service already has {vip} port {} {:?}", s.port, s.protocol)));
            }
        }
        if let Some(np) = s.node_port {
            if !r.node_ports.contains(&np) {
                return Err(invalid(
                    key("node_port"),
                    format!("{np} is outside the NodePort range {}-{}", r.node_ports.start(), r.node_ports.end()),
                ));
            }
            if !node_ports.insert((np, s.protocol)) {
                return Err(invalid(
                    key("node_port"),
                    format!("another service already has NodePort {np} {:?}", s.protocol),
                ));
            }
        }
        let most = max_backends(r.maglev_size);
        if s.backends.len() > most {
            return Err(invalid(
                key("backends"),
                format!(
                    "{} backends: a Maglev table of {} slots balances at most {most} \
                     (a larger dataplane.maglev_table_size takes more)",
                    s.backends.len(),
                    r.maglev_size
                ),
            ));
        }
        let mut seen = HashSet::new();
        for (j, b) in s.backends.iter().enumerate() {
            let k = |f: &str| key(&format!("backends[{j}].{f}"));
            if !inside(b.address, &r.pools) {
                return Err(invalid(
                    k("address"),
                    format!("{} is not a pod address: it is in no pool ({})", b.address, list(&r.pools)),
                ));
            }
            if b.address.is_ipv6() != v6 {
                return Err(invalid(k("address"), format!("{} is not of the cluster IP's family", b.address)));
            }
            if b.port == 0 {
                return Err(invalid(k("port"), "port 0 is not a port: use 1 to 65535".into()));
            }
            if b.node.trim().is_empty() {
                return Err(invalid(k("node"), "must name the node the pod runs on".into()));
            }
            if !seen.insert((b.address, b.port)) {
                return Err(invalid(k("address"), format!("duplicate backend {} port {}", b.address, b.port)));
            }
        }
    }
    Ok(())
}

impl Backend {
    /// The key Maglev hashes: the same bytes on every node.
    pub fn maglev_key(&self) -> Vec<u8> {
        format!("{}:{}", self.address, self.port).into_bytes()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ranges() -> Ranges {
        Ranges {
            cluster_ips: vec!["10.96.0.0/12".parse().unwrap(), "fd00:96::/108".parse().unwrap()],
            external_ips: vec!["192.0.2.0/24".parse().unwrap()],
            load_balancer_ips: vec!["198.51.100.0/24".parse().unwrap()],
            pools: vec!["10.244.0.0/16".parse().unwrap(), "fd00:244::/56".parse().unwrap()],
            node_ports: NODE_PORTS,
            maglev_size: crate::maglev::DEFAULT_SIZE,
        }
    }

    fn web() -> Service {
        Service {
            name: "default/web".into(),
            protocol: Protocol::Tcp,
            cluster_ip: "10.96.0.10".parse().unwrap(),
            port: 80,
            node_port: Some(30080),
            external_ips: vec!["192.0.2.10".parse().unwrap()],
            load_balancer_ips: vec!["198.51.100.10".parse().unwrap()],
            external_traffic_policy: TrafficPolicy::Cluster,
            mode: Mode::Dsr,
            backends: vec![
                Backend { address: "10.244.1.5".parse().unwrap(), port: 8080, node: "n1".into() },
                Backend { address: "10.244.2.7".parse().unwrap(), port: 8080, node: "n2".into() },
            ],
        }
    }

    fn err(services: &[Service]) -> String {
        validate(services, &ranges()).unwrap_err().to_string()
    }

    #[test]
    fn a_sound_set_passes() {
        let mut udp = web();
        udp.protocol = Protocol::Udp;
        udp.name = "default/dns".into();
        // The same VIP and port over UDP is another service.
        assert_eq!(validate(&[web(), udp], &ranges()), Ok(()));
    }

    #[test]
    fn each_mistake_is_named_by_its_place() {
        let mut s = web();
        s.port = 0;
        assert_eq!(err(&[s]), "services[0].port: port 0 is not a port: use 1 to 65535");
        let mut s = web();
        s.cluster_ip = "10.0.0.1".parse().unwrap();
        assert!(err(&[s]).starts_with("services[0].cluster_ip: 10.0.0.1 is outside every cluster IP range"));
        let mut s = web();
        s.load_balancer_ips = vec!["203.0.113.1".parse().unwrap()];
        assert!(err(&[s]).starts_with("services[0].load_balancer_ips[0]: 203.0.113.1 is outside"));
        let mut s = web();
        s.node_port = Some(8080);
        assert_eq!(err(&[s]), "services[0].node_port: 8080 is outside the NodePort range 30000-32767");
        let mut s = web();
        s.backends[1].address = "10.1.0.7".parse().unwrap();
        assert!(err(&[s]).starts_with("services[0].backends[1].address: 10.1.0.7 is not a pod address"));
        let mut s = web();
        s.backends[0].address = "fd00:244::5".parse().unwrap();
        assert!(err(&[s]).contains("not of the cluster IP's family"));
        let mut s = web();
        s.backends.push(s.backends[0].clone());
        assert!(err(&[s]).starts_with("services[0].backends[2].address: duplicate backend"));
        let mut s = web();
        s.backends[0].node = " ".into();
        assert!(err(&[s]).starts_with("services[0].backends[0].node"));
        let mut s = web();
        s.name = "has space".into();
        assert!(err(&[s]).starts_with("services[0].name"));
    }

    #[test]
    fn duplicates_across_services_are_refused() {
        let mut twin = web();
        assert!(err(&[web(), twin.clone()]).starts_with("services[1].name: duplicate service"));
        twin.name = "other".into();
        twin.node_port = None;
        twin.external_ips.clear();
        twin.load_balancer_ips.clear();
        assert!(err(&[web(), twin.clone()])
            .starts_with("services[1].cluster_ip: another service already has 10.96.0.10 port 80"));
        twin.cluster_ip = "10.96.0.11".parse().unwrap();
        twin.node_port = Some(30080);
        assert!(err(&[web(), twin]).starts_with("services[1].node_port: another service already has NodePort 30080"));
    }

    #[test]
    fn services_deserialize_with_defaults_and_refuse_what_merle_does_not_serve() {
        let s: Service = serde_json::from_str(
            r#"{"name":"a","protocol":"udp","cluster_ip":"fd00:96::a","port":53,
                "backends":[{"address":"fd00:244::9","port":5353,"node":"n1"}]}"#,
        )
        .unwrap();
        assert_eq!((s.mode, s.external_traffic_policy, s.node_port), (Mode::Snat, TrafficPolicy::Cluster, None));
        assert_eq!(validate(std::slice::from_ref(&s), &ranges()), Ok(()));
        assert_eq!(s.backends[0].maglev_key(), b"fd00:244::9:5353".to_vec());
        let sctp = r#"{"name":"a","protocol":"sctp","cluster_ip":"10.96.0.1","port":1}"#;
        assert!(serde_json::from_str::<Service>(sctp).is_err(), "sctp is not a protocol merle serves");
        let typo = r#"{"name":"a","protocol":"tcp","cluster_ip":"10.96.0.1","port":1,"nodeport":30000}"#;
        assert!(serde_json::from_str::<Service>(typo).is_err(), "an unknown field is an error");
        let port = r#"{"name":"a","protocol":"tcp","cluster_ip":"10.96.0.1","port":70000}"#;
        assert!(serde_json::from_str::<Service>(port).is_err(), "a port over 65535 does not read");
    }
}
