//! The README demo.
//!
//! ```text
//!                    +-----------------------+
//!                    |  tor  (FRR, AS 65001) |
//!                    |  br0 10.0.0.254/24    |
//!                    |      fd00::254/64     |
//!                    +----+-------------+----+
//!                    eth-a|             |eth-b
//!                         |             |
//!       +-----------------+--+       +--+-----------------+
//!       | node-a (merled)    |  iBGP | node-b (merled)    |
//!       | 10.0.0.1  fd00::1  |<----->| 10.0.0.2  fd00::2  |
//!       | AS 64512           |       | AS 64512           |
//!       | 10.244.1.0/26      |       | 10.244.2.0/26      |
//!       | fd00:244:1::/122   |       | fd00:244:2::/122   |
//!       +--------------------+       +--------------------+
//! ```
//!
//! Both nodes peer over eBGP with the ToR and over iBGP with each other. The
//! ToR originates a default route. The demo waits (bounded) until every
//! session is Established and the routes have spread, prints what each
//! speaker sees, and tears everything down unless asked to keep it.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use crate::frr::Frr;
use crate::merled::Merled;
use crate::netns::{veth, Netns};
use crate::wait;

pub const TOR_AS: u32 = 65001;

pub fn tor_config() -> String {
    format!(
        r#"hostname tor
log stdout informational
router bgp {TOR_AS}
 bgp router-id 10.0.0.254
 no bgp ebgp-requires-policy
 no bgp network import-check
 no bgp default ipv4-unicast
 neighbor 10.0.0.1 remote-as 64512
 neighbor 10.0.0.2 remote-as 64512
 address-family ipv4 unicast
  network 0.0.0.0/0
  neighbor 10.0.0.1 activate
  neighbor 10.0.0.2 activate
 exit-address-family
 address-family ipv6 unicast
  network ::/0
  neighbor 10.0.0.1 activate
  neighbor 10.0.0.2 activate
  neighbor 10.0.0.1 route-map V6-NH out
  neighbor 10.0.0.2 route-map V6-NH out
 exit-address-family
!
! bgpd runs without zebra and cannot see interface addresses: give IPv6
! routes sent over IPv4 sessions an explicit next hop.
route-map V6-NH permit 10
 set ipv6 next-hop global fd00::254
!
"#
    )
}

pub fn node_config(name: &str, me: u8, other: u8) -> String {
    format!(
        r#"[node]
name = "{name}"
address = "10.0.0.{me}/24"
address_v6 = "fd00::{me}/64"

[bgp]
hold_time = 30

[[bgp.peers]]
address = "10.0.0.254"
as_number = {TOR_AS}
description = "ToR"

[[bgp.peers]]
address = "10.0.0.{other}"
as_number = 64512
description = "node-to-node"

[[advertise]]
prefix = "10.244.{me}.0/26"

[[advertise]]
prefix = "fd00:244:{me}::/122"

[control]
socket = "{{socket}}"
"#
    )
}

/// The running demo. Dropping it tears everything down.
#[derive(Debug)]
pub struct Demo {
    pub nodes: Vec<Merled>,
    pub tor: Frr,
    // Namespaces last: they are removed after the daemons stop.
    pub ns_nodes: Vec<Netns>,
    pub ns_tor: Netns,
}

pub fn start(merled: &Path, merlectl: &Path) -> anyhow::Result<Demo> {
    let ns_tor = Netns::new("tor")?;
    ns_tor.ip(&["link", "add", "br0", "type", "bridge"])?;
    ns_tor.ip(&["link", "set", "br0", "up"])?;
    ns_tor.add_addr("br0", "10.0.0.254/24")?;
    ns_tor.add_addr("br0", "fd00::254/64")?;
    let mut ns_nodes = Vec::new();
    for (i, name) in ["a", "b"].iter().enumerate() {
        let ns = Netns::new(&format!("node-{name}"))?;
        let tor_dev = format!("eth-{name}");
        veth(&ns, "eth0", &ns_tor, &tor_dev)?;
        ns_tor.ip(&["link", "set", &tor_dev, "master", "br0"])?;
        ns.add_addr("eth0", &format!("10.0.0.{}/24", i + 1))?;
        ns.add_addr("eth0", &format!("fd00::{}/64", i + 1))?;
        ns.ip(&["route", "add", "default", "via", "10.0.0.254"])?;
        ns_nodes.push(ns);
    }
    let tor = Frr::start(&ns_tor, "tor", &tor_config())?;
    let mut nodes = Vec::new();
    for (i, ns) in ns_nodes.iter().enumerate() {
        let me = i as u8 + 1;
        let other = if me == 1 { 2 } else { 1 };
        nodes.push(Merled::start(
            ns,
            &format!("node-{}", ["a", "b"][i]),
            merled,
            merlectl,
            &node_config(&ns.name, me, other),
        )?);
    }
    Ok(Demo { nodes, tor, ns_nodes, ns_tor })
}

impl Demo {
    /// Waits until both nodes have both sessions up and see each other's
    /// block over iBGP and the ToR's default route.
    pub fn converge(&self, timeout: Duration) -> anyhow::Result<()> {
        let checks = [
            (0usize, "10.0.0.254", "0.0.0.0/0"),
            (0, "10.0.0.254", "::/0"),
            (0, "10.0.0.2", "10.244.2.0/26"),
            (0, "10.0.0.2", "fd00:244:2::/122"),
            (1, "10.0.0.254", "0.0.0.0/0"),
            (1, "10.0.0.254", "::/0"),
            (1, "10.0.0.1", "10.244.1.0/26"),
            (1, "10.0.0.1", "fd00:244:1::/122"),
        ];
        wait::poll("demo sessions Established and routes exchanged", timeout, || {
            let ok = checks.iter().all(|(n, peer, prefix)| {
                let m = &self.nodes[*n];
                m.peer_state(peer).as_deref() == Some("Established") && m.route(prefix, peer).is_some()
            }) && ["10.0.0.1", "10.0.0.2"]
                .iter()
                .all(|p| self.tor.neighbor_state(p).as_deref() == Some("Established"));
            ok.then_some(())
        })
        .with_context(|| {
            let logs: Vec<String> = self.nodes.iter().map(|m| m.daemon.log_tail(15)).collect();
            format!("merled logs:\n{}", logs.join("\n---\n"))
        })
    }

    pub fn print(&self) -> anyhow::Result<()> {
        for (i, m) in self.nodes.iter().enumerate() {
            let name = ["node-a", "node-b"][i];
            println!("==== {name}: merlectl status ====");
            print!("{}", m.merlectl(&["status"])?);
            println!("==== {name}: merlectl routes ====");
            println!("{}", m.merlectl(&["routes"])?);
            println!("==== {name}: kernel routes merle installed (ip route show proto 198) ====");
            let ns = &self.ns_nodes[i];
            print!("{}", ns.ip(&["route", "show", "proto", "198"])?);
            print!("{}", ns.ip(&["-6", "route", "show", "proto", "198"])?);
            println!();
        }
        println!("==== tor (FRR): show bgp ipv4 unicast ====");
        print!("{}", self.tor.vtysh(&["show bgp ipv4 unicast"])?);
        println!("==== tor (FRR): show bgp ipv6 unicast ====");
        print!("{}", self.tor.vtysh(&["show bgp ipv6 unicast"])?);
        println!("==== tor (FRR): show bgp summary ====");
        print!("{}", self.tor.vtysh(&["show bgp summary"])?);
        Ok(())
    }
}
