//! Two racks, each with an FRR ToR in its own AS and two merled nodes; the
//! ToRs peer with each other.
//!
//! ```text
//!        AS 65001                         AS 65002
//!   +--------------+  172.16.0.0/30  +--------------+
//!   |  tor1 (FRR)  |-----------------|  tor2 (FRR)  |
//!   | 10.1.1.254   |                 | 10.1.2.254   |
//!   +--+--------+--+                 +--+--------+--+
//!      |        |                       |        |
//!   r1n1      r1n2                   r2n1      r2n2     merled, AS 64512
//!   .1.1      .1.2                   .2.1      .2.2     blocks 10.244.{11,12,21,22}.0/26
//!   (r1n1 and r1n2 both advertise the service CIDR 10.96.0.0/12)
//! ```
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use testbed::frr::Frr;
use testbed::merled::Merled;
use testbed::netns::{veth, Lan};
use testbed::wait;

const T: Duration = Duration::from_secs(60);

fn tor_config(asn: u32, id: &str, nodes: [&str; 2], other_tor: (&str, u32)) -> String {
    format!(
        r#"hostname tor{asn}
router bgp {asn}
 bgp router-id {id}
 no bgp ebgp-requires-policy
 no bgp network import-check
 timers bgp 3 9
 neighbor {n0} remote-as 64512
 neighbor {n1} remote-as 64512
 neighbor {t} remote-as {tas}
 neighbor {n0} timers connect 2
 neighbor {n1} timers connect 2
 neighbor {t} timers connect 2
 address-family ipv4 unicast
  maximum-paths 4
 exit-address-family
!
"#,
        n0 = nodes[0],
        n1 = nodes[1],
        t = other_tor.0,
        tas = other_tor.1
    )
}

fn node_config(name: &str, addr: &str, tor: &str, tor_as: u32, block: &str) -> String {
    format!(
        r#"[node]
name = "{name}"
address = "{addr}/24"

[bgp]
node_mesh = false
hold_time = 9
connect_retry_time = 1
connect_retry_max = 2

[[bgp.peers]]
address = "{tor}"
as_number = {tor_as}
allow_local_as = 1

[[advertise]]
prefix = "{block}"

[services]
cluster_ips = [{svc}]

[control]
socket = "{{socket}}"
"#,
        svc = if name.starts_with("r1") { "\"10.96.0.0/12\"" } else { "" }
    )
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn two_racks_with_frr_tors() {
    if testbed::skip_unless_root("two_racks_with_frr_tors") {
        return;
    }
    require(testbed::frr::BGPD);
    let rack1 = Lan::with_subnet("k1", 2, "10.1.1", "fd00:1:").unwrap();
    let rack2 = Lan::with_subnet("k2", 2, "10.1.2", "fd00:2:").unwrap();
    veth(&rack1.switch, "inter", &rack2.switch, "inter").unwrap();
    rack1.switch.add_addr("inter", "172.16.0.1/30").unwrap();
    rack2.switch.add_addr("inter", "172.16.0.2/30").unwrap();
    let tor1 = Frr::start(
        &rack1.switch,
        "tor1",
        &tor_config(65001, "10.1.1.254", ["10.1.1.1", "10.1.1.2"], ("172.16.0.2", 65002)),
    )
    .unwrap();
    let tor2 = Frr::start(
        &rack2.switch,
        "tor2",
        &tor_config(65002, "10.1.2.254", ["10.1.2.1", "10.1.2.2"], ("172.16.0.1", 65001)),
    )
    .unwrap();

    let mut nodes: Vec<Merled> = Vec::new();
    for (rack, tor, tor_as, r) in [(&rack1, "10.1.1.254", 65001, 1), (&rack2, "10.1.2.254", 65002, 2)] {
        for n in 1..=2 {
            let name = format!("r{r}n{n}");
            let addr = format!("10.1.{r}.{n}");
            let block = format!("10.244.{r}{n}.0/26");
            let cfg = node_config(&name, &addr, tor, tor_as, &block);
            nodes.push(Merled::start(&rack.hosts[n - 1], &name, &merled_bin(), &merlectl_bin(), &cfg).unwrap());
        }
    }
    let blocks = ["10.244.11.0/26", "10.244.12.0/26", "10.244.21.0/26", "10.244.22.0/26"];
    // Every node learns every other block, through its ToR.
    for (i, m) in nodes.iter().enumerate() {
        for (j, b) in blocks.iter().enumerate() {
            if i == j {
                continue;
            }
            let tor = if i < 2 { "10.1.1.254" } else { "10.1.2.254" };
            let r = wait::poll(&format!("{b} on node {i}"), T, || m.route(b, tor))
                .unwrap_or_else(|e| panic!("{e}\nroutes: {:?}\nlog:\n{}", m.routes(), m.daemon.log_tail(20)));
            assert_eq!(r["best"], true);
            let path: Vec<u64> = as_path(&r);
            if (i < 2) == (j < 2) {
                assert_eq!(path, vec![if i < 2 { 65001 } else { 65002 }, 64512]);
            } else {
                assert_eq!(path.len(), 3, "{r}");
            }
        }
    }
    // The service CIDR from both rack-1 nodes is a two-way multipath at tor1.
    let v = wait::poll("two-way multipath for 10.96.0.0/12 at tor1", T, || {
        let v = tor1.json("show bgp ipv4 unicast 10.96.0.0/12 json").ok()?;
        let paths = v["paths"].as_array()?;
        let multi = paths.iter().filter(|p| p["multipath"] == true || p["bestpath"]["overall"] == true).count();
        (paths.len() == 2 && multi == 2).then_some(v)
    })
    .unwrap();
    let hops: Vec<&str> =
        v["paths"].as_array().unwrap().iter().map(|p| p["nexthops"][0]["ip"].as_str().unwrap()).collect();
    assert!(hops.contains(&"10.1.1.1") && hops.contains(&"10.1.1.2"), "{v}");
    // tor2 reaches it through tor1.
    wait::poll("10.96.0.0/12 at tor2", T, || {
        tor2.json("show bgp ipv4 unicast 10.96.0.0/12 json").ok()?["paths"].as_array().map(|_| ())
    })
    .unwrap();
    // Rack-2 nodes see it from tor2.
    wait::poll("10.96.0.0/12 on r2n1", T, || nodes[2].route("10.96.0.0/12", "10.1.2.254")).unwrap();
}
