//! Services as merled programs them: the plan for this node, the check
//! that every backend is a pod IPAM knows on the node the service says,
//! and what `merlectl service` shows. Pure; the dataplane thread writes
//! the maps (`merle_ebpf::services`).

use std::collections::HashMap;
use std::net::IpAddr;

use merle_ebpf::report::{FrontendReport, ServiceReport};
use merle_lb::plan::{plan, Plan};
use merle_lb::service::Service;

/// This node's addresses, where its NodePorts listen.
pub fn node_addresses(cfg: &conf::Config) -> Vec<IpAddr> {
    std::iter::once(cfg.node.address.addr()).chain(cfg.node.address_v6.map(|a| a.addr())).collect()
}

/// The frontends and tables of this node.
pub fn node_plan(cfg: &conf::Config) -> Plan {
    let mut p = plan(&cfg.services, &cfg.node.name, &node_addresses(cfg));
    p.maglev_size = cfg.dataplane.maglev_table_size;
    p
}

/// Every address IPAM gave to a pod, with the node that holds it.
pub fn pods(blocks: &merle_ipam::alloc::Blocks) -> HashMap<IpAddr, String> {
    let mut out = HashMap::new();
    for b in blocks.values() {
        for (ord, a) in &b.allocations {
            if a.attachment.is_some() {
                out.insert(b.addr(*ord), a.node.clone());
            }
        }
    }
    out
}

/// The first backend that is not a pod of the node it names, by its place
/// in the configuration.
pub fn check_backends(services: &[Service], pods: &HashMap<IpAddr, String>) -> Result<(), String> {
    for (i, s) in services.iter().enumerate() {
        for (j, b) in s.backends.iter().enumerate() {
            let key = format!("services[{i}].backends[{j}]");
            match pods.get(&b.address) {
                None => return Err(format!("{key}: {} is not the address of any pod IPAM knows", b.address)),
                Some(n) if *n != b.node => {
                    return Err(format!("{key}: {} is a pod of node {n}, not of {}", b.address, b.node))
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}

/// What `merlectl service` shows for each configured service.
pub fn report(cfg: &conf::Config, programmed: Option<&[merle_ebpf::services::Programmed]>) -> Vec<ServiceReport> {
    let p = node_plan(cfg);
    cfg.services
        .iter()
        .map(|s| {
            let frontends = p
                .frontends
                .iter()
                .filter(|(_, f)| f.table.service == s.name)
                .map(|(fe, f)| {
                    let held = programmed.and_then(|list| list.iter().find(|x| x.frontend == *fe));
                    FrontendReport {
                        frontend: fe.to_string(),
                        kind: f.kind,
                        local: f.local,
                        dsr: f.dsr,
                        backends: p.tables.get(&f.table).map_or(0, Vec::len),
                        lb_id: held.map(|h| h.lb_id),
                        programmed_backends: held.map(|h| h.backends.len()),
                    }
                })
                .collect();
            ServiceReport { service: s.clone(), node: cfg.node.name.clone(), frontends }
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use merle_lb::service::{Backend, Mode, Protocol, TrafficPolicy};

    fn svc(backends: Vec<Backend>) -> Service {
        Service {
            name: "web".into(),
            protocol: Protocol::Tcp,
            cluster_ip: "10.96.0.10".parse().unwrap(),
            port: 80,
            node_port: None,
            external_ips: vec![],
            load_balancer_ips: vec![],
            external_traffic_policy: TrafficPolicy::Cluster,
            mode: Mode::Snat,
            backends,
        }
    }

    #[test]
    fn a_backend_must_be_a_pod_of_the_node_it_names() {
        let pods: HashMap<IpAddr, String> = [("10.244.0.5".parse().unwrap(), "n1".to_string())].into();
        let b = |a: &str, n: &str| Backend { address: a.parse().unwrap(), port: 80, node: n.into() };
        assert!(check_backends(&[svc(vec![b("10.244.0.5", "n1")])], &pods).is_ok());
        let e = check_backends(&[svc(vec![b("10.244.0.5", "n1"), b("10.244.0.6", "n1")])], &pods).unwrap_err();
        assert_eq!(e, "services[0].backends[1]: 10.244.0.6 is not the address of any pod IPAM knows");
        let e = check_backends(&[svc(vec![b("10.244.0.5", "n2")])], &pods).unwrap_err();
        assert!(e.contains("is a pod of node n1, not of n2"), "{e}");
    }
}
