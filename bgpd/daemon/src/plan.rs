//! Which BGP sessions this node runs, from the config: the explicit peers
//! for this node, plus — from the `[[nodes]]` list — the node-to-node mesh
//! or the route-reflector sessions, as Calico builds them. Pure.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use bgpd::policy::{Action, AnyCommunity, MatchOperator, PeerType, Rule};

use crate::export::NextHopMode;

/// What kind of session this is, as `calicoctl node status` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerKind {
    /// iBGP full mesh between nodes.
    Mesh,
    /// We are a client of this route reflector.
    RouteReflector,
    /// We reflect to this client.
    RrClient,
    /// Another route reflector (a non-client iBGP peer of ours).
    RrPeer,
    /// A `[[bgp.peers]]` entry for every node.
    Global,
    /// A `[[bgp.peers]]` entry for this node only.
    NodeSpecific,
}

impl PeerKind {
    pub fn label(self) -> &'static str {
        match self {
            Self::Mesh => "node-to-node mesh",
            Self::RouteReflector => "route reflector",
            Self::RrClient => "route reflector client",
            Self::RrPeer => "route reflector peer",
            Self::Global => "global",
            Self::NodeSpecific => "node specific",
        }
    }
}

/// One session to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    pub address: IpAddr,
    pub port: u16,
    pub as_number: u32,
    pub passive: bool,
    pub hold_time: u16,
    pub description: Option<String>,
    pub enforce_first_as: bool,
    pub connect_retry: Duration,
    pub connect_retry_max: Duration,
    /// Damping: the first wait after an error (zero: off), its ceiling,
    /// and how long a session must stay up to start from the first again.
    pub error_wait: Duration,
    pub error_wait_max: Duration,
    pub error_forget: Duration,
    pub kind: PeerKind,
    pub export_learned: bool,
    pub next_hop_mode: NextHopMode,
    pub allow_local_as: u8,
    /// TCP MD5 key.
    pub password: Option<String>,
    /// GTSM hop count.
    pub ttl_security: Option<u8>,
    pub max_prefixes: Option<u32>,
    pub max_prefixes_restart: Duration,
    /// Import and export filters, per family.
    pub rules: Arc<PeerRules>,
    /// Graceful restart time we advertise (RFC 4724); 0 turns it off.
    pub graceful_restart_time: u16,
}

/// A peer's filter rules, indexed by [`bgpd::packet::Family::index`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerRules {
    pub import: [Vec<Rule>; 2],
    pub export: [Vec<Rule>; 2],
}

fn community(c: &str) -> Option<AnyCommunity> {
    c.parse().map(AnyCommunity::Standard).or_else(|_| c.parse().map(AnyCommunity::Large)).ok()
}

/// Turns a validated config rule into a policy rule.
fn compile(r: &conf::FilterRule, v6: bool) -> Rule {
    let op = match r.match_operator.as_deref() {
        Some("Equal") => MatchOperator::Equal,
        Some("NotEqual") => MatchOperator::NotEqual,
        Some("NotIn") => MatchOperator::NotIn,
        _ => MatchOperator::In,
    };
    Rule {
        cidr: r.cidr.map(|c| (c, op)),
        prefix_length: r.prefix_length.map(|p| (p.min.unwrap_or(0), p.max.unwrap_or(if v6 { 128 } else { 32 }))),
        remote_peers_only: r.source.is_some(),
        peer_type: match r.peer_type.as_deref() {
            Some("iBGP") => Some(PeerType::Ibgp),
            Some("eBGP") => Some(PeerType::Ebgp),
            _ => None,
        },
        community: r.community.as_deref().and_then(community),
        as_path_prefix: r.as_path_prefix.clone(),
        action: if r.action == "Reject" {
            Action::Reject
        } else {
            Action::Accept {
                add_community: r.add_community.as_deref().and_then(community),
                prepend_as_path: r.prepend_as_path.clone(),
            }
        },
    }
}

/// The rules of the named filters, in order.
fn rules(cfg: &conf::Config, names: &[String]) -> PeerRules {
    let mut out = PeerRules::default();
    for name in names {
        if let Some(f) = cfg.filters.iter().find(|f| &f.name == name) {
            out.import[0].extend(f.import_v4.iter().map(|r| compile(r, false)));
            out.import[1].extend(f.import_v6.iter().map(|r| compile(r, true)));
            out.export[0].extend(f.export_v4.iter().map(|r| compile(r, false)));
            out.export[1].extend(f.export_v6.iter().map(|r| compile(r, true)));
        }
    }
    out
}

impl PeerConfig {
    /// We reflect routes to this peer as to a client.
    pub fn rr_client(&self) -> bool {
        self.kind == PeerKind::RrClient
    }
}

fn key(ip: IpAddr) -> (u8, u128) {
    match ip {
        IpAddr::V4(a) => (4, u128::from(u32::from(a))),
        IpAddr::V6(a) => (6, u128::from(a)),
    }
}

/// The sessions of this node.
pub fn plan(cfg: &conf::Config) -> Vec<PeerConfig> {
    let me = &cfg.node;
    let my_ip = me.address.addr();
    let retry = Duration::from_secs(u64::from(cfg.bgp.connect_retry_time));
    let retry_max = Duration::from_secs(u64::from(cfg.bgp.connect_retry_max));
    let secs = |s: u16| Duration::from_secs(u64::from(s));
    let b = &cfg.bgp;
    let base = |address: IpAddr, as_number: u32, kind: PeerKind, description: Option<String>| PeerConfig {
        address,
        port: conf::DEFAULT_PORT,
        as_number,
        // One TCP session per node pair: the higher address waits.
        passive: key(my_ip) > key(address),
        hold_time: cfg.bgp.hold_time,
        description,
        enforce_first_as: true,
        connect_retry: retry,
        connect_retry_max: retry_max,
        error_wait: secs(b.error_wait_time_min),
        error_wait_max: secs(b.error_wait_time_max),
        error_forget: secs(b.error_forget_time),
        kind,
        export_learned: false,
        next_hop_mode: NextHopMode::Auto,
        allow_local_as: 0,
        password: None,
        ttl_security: None,
        max_prefixes: None,
        max_prefixes_restart: Duration::from_secs(60),
        rules: Arc::new(PeerRules::default()),
        graceful_restart_time: cfg.bgp.graceful_restart_time,
    };
    let others: Vec<&conf::NodeEntry> =
        cfg.nodes.iter().filter(|e| e.name != me.name && e.address.addr() != my_ip).collect();
    let mut out = Vec::new();
    let node_session = |e: &conf::NodeEntry, kind: PeerKind| {
        base(e.address.addr(), e.as_number.unwrap_or(me.as_number), kind, Some(e.name.clone()))
    };
    if cfg.bgp.route_reflector_cluster_id.is_some() {
        for e in &others {
            let kind = if e.route_reflector_cluster_id.is_some() { PeerKind::RrPeer } else { PeerKind::RrClient };
            out.push(node_session(e, kind));
        }
    } else if cfg.bgp.node_mesh {
        let reflectors: Vec<&&conf::NodeEntry> =
            others.iter().filter(|e| e.route_reflector_cluster_id.is_some()).collect();
        if reflectors.is_empty() {
            out.extend(others.iter().map(|e| node_session(e, PeerKind::Mesh)));
        } else {
            out.extend(reflectors.iter().map(|e| node_session(e, PeerKind::RouteReflector)));
        }
    }
    for p in &cfg.bgp.peers {
        let kind = match p.node.as_deref() {
            _ if p.node.as_deref().is_some_and(|n| n != me.name) => continue,
            _ if p.route_reflector_client => PeerKind::RrClient,
            None => PeerKind::Global,
            Some(_) => PeerKind::NodeSpecific,
        };
        if out.iter().any(|o| o.address == p.address) {
            continue;
        }
        out.push(PeerConfig {
            address: p.address,
            port: p.port,
            as_number: p.as_number,
            passive: p.passive,
            hold_time: p.hold_time.unwrap_or(cfg.bgp.hold_time),
            description: p.description.clone(),
            enforce_first_as: p.enforce_first_as,
            connect_retry: retry,
            connect_retry_max: retry_max,
            error_wait: secs(p.error_wait_time_min.unwrap_or(b.error_wait_time_min)),
            error_wait_max: secs(p.error_wait_time_max.unwrap_or(b.error_wait_time_max)),
            error_forget: secs(p.error_forget_time.unwrap_or(b.error_forget_time)),
            kind,
            export_learned: p.export_learned,
            next_hop_mode: match p.next_hop_mode {
                conf::NextHopMode::Auto => NextHopMode::Auto,
                conf::NextHopMode::SelfAddr => NextHopMode::SelfAddr,
                conf::NextHopMode::Keep => NextHopMode::Keep,
            },
            allow_local_as: p.allow_local_as,
            password: p.password.clone(),
            ttl_security: p.ttl_security,
            max_prefixes: p.max_prefixes,
            max_prefixes_restart: Duration::from_secs(u64::from(p.max_prefixes_restart)),
            rules: Arc::new(rules(cfg, &p.filters)),
            graceful_restart_time: p.graceful_restart_time.unwrap_or(cfg.bgp.graceful_restart_time),
        });
    }
    out
}

/// The cluster ID this node reflects with, if it is a route reflector.
pub fn cluster_id(cfg: &conf::Config) -> Option<Ipv4Addr> {
    cfg.bgp.route_reflector_cluster_id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str, me: u8) -> conf::Config {
        let text = format!(
            "[node]\nname = \"n{me}\"\naddress = \"10.0.0.{me}/24\"\n{extra}\n\
             [[nodes]]\nname = \"n1\"\naddress = \"10.0.0.1/24\"\n\
             [[nodes]]\nname = \"n2\"\naddress = \"10.0.0.2/24\"\n\
             [[nodes]]\nname = \"n3\"\naddress = \"10.0.0.3/24\"\n"
        );
        conf::from_str(&text, std::path::Path::new("test.toml")).unwrap()
    }

    #[test]
    fn full_mesh_skips_self_and_the_higher_address_is_passive() {
        let p = plan(&cfg("", 2));
        let got: Vec<(String, bool, PeerKind)> = p.iter().map(|p| (p.address.to_string(), p.passive, p.kind)).collect();
        assert_eq!(got, vec![("10.0.0.1".into(), true, PeerKind::Mesh), ("10.0.0.3".into(), false, PeerKind::Mesh)]);
        assert!(p.iter().all(|p| p.as_number == 64512));
        assert!(plan(&cfg("[bgp]\nnode_mesh = false\n", 2)).is_empty());
    }

    #[test]
    fn route_reflectors_replace_the_mesh() {
        let rr = "[bgp]\nroute_reflector_cluster_id = \"1.0.0.1\"\n";
        // n1 is a reflector: it peers with every node as a client.
        let mut c = cfg(rr, 1);
        c.nodes[0].route_reflector_cluster_id = Some("1.0.0.1".parse().unwrap());
        let p = plan(&c);
        assert_eq!(p.len(), 2);
        assert!(p.iter().all(|p| p.kind == PeerKind::RrClient && p.rr_client()));
        // n2 is a client: it peers only with the reflector.
        let mut c = cfg("", 2);
        c.nodes[0].route_reflector_cluster_id = Some("1.0.0.1".parse().unwrap());
        let p = plan(&c);
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].address.to_string(), p[0].kind), ("10.0.0.1".into(), PeerKind::RouteReflector));
        // Two reflectors peer with each other as non-clients.
        let mut c = cfg(rr, 1);
        c.nodes[0].route_reflector_cluster_id = Some("1.0.0.1".parse().unwrap());
        c.nodes[1].route_reflector_cluster_id = Some("1.0.0.1".parse().unwrap());
        let kinds: Vec<PeerKind> = plan(&c).iter().map(|p| p.kind).collect();
        assert_eq!(kinds, vec![PeerKind::RrPeer, PeerKind::RrClient]);
    }

    #[test]
    fn global_and_node_specific_peers() {
        let extra = "[[bgp.peers]]\naddress = \"10.0.0.254\"\nas_number = 65001\n\
                     [[bgp.peers]]\naddress = \"10.0.0.253\"\nas_number = 65002\nnode = \"n2\"\nnext_hop_mode = \"self\"\n\
                     [[bgp.peers]]\naddress = \"10.0.0.252\"\nas_number = 65003\nnode = \"n3\"\n";
        let p = plan(&cfg(extra, 2));
        let ext: Vec<(String, PeerKind)> =
            p.iter().filter(|p| p.as_number != 64512).map(|p| (p.address.to_string(), p.kind)).collect();
        assert_eq!(ext, vec![("10.0.0.254".into(), PeerKind::Global), ("10.0.0.253".into(), PeerKind::NodeSpecific)]);
        assert_eq!(p.iter().find(|p| p.as_number == 65002).unwrap().next_hop_mode, NextHopMode::SelfAddr);
    }

    #[test]
    fn explicit_route_reflector_clients() {
        let extra = "[bgp]\nnode_mesh = false\nroute_reflector_cluster_id = \"1.0.0.1\"\n\
                     [[bgp.peers]]\naddress = \"10.9.0.1\"\nas_number = 64512\nroute_reflector_client = true\n";
        let p = plan(&cfg(extra, 2));
        let c = p.iter().find(|p| p.address.to_string() == "10.9.0.1").unwrap();
        assert!(c.rr_client());
        assert_eq!(c.kind.label(), "route reflector client");
    }
}
