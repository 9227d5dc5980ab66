//! The README demo.
//!
//! ```text
//!                    +-------------------------------+
//!                    |  tor  (FRR, AS 65001; etcd)   |
//!                    |  br0 10.0.0.254/24 fd00::254  |
//!                    +----+---------------------+----+
//!                    eth-a|                     |eth-b
//!       +-----------------+--+               +--+-----------------+
//!       | node-a (merled)    |  iBGP mesh    | node-b (merled)    |
//!       | 10.0.0.1  fd00::1  |<------------->| 10.0.0.2  fd00::2  |
//!       | pods a0, a1        |               | pod b0             |
//!       +--------------------+               +--------------------+
//!   pools 10.244.0.0/16 (/26 blocks), fd00:244::/56 (/122 blocks)
//! ```
//!
//! Both nodes peer over eBGP with the ToR; they find each other in etcd's
//! node registry and mesh over iBGP. merle-cni wires three pods and gives
//! them addresses from per-node blocks, which the nodes advertise. The ToR
//! originates a default route and routes (zebra installs its BGP routes,
//! ECMP over the nodes). The demo waits (bounded) until every session is
//! Established and every block has spread, prints what each speaker sees
//! and a pod-to-pod ping across the nodes; then it programs a service
//! (`default/web`: ClusterIP, NodePort 30080 and load-balancer IP
//! 192.0.2.80, by DSR, backends a1 and b0) and a client behind the ToR
//! (192.168.100.2) reaches it: each backend answers with the address it
//! saw, the client's own. Everything is torn down unless asked to keep it.
//!
//! ```text
//!   client 192.168.100.2 ── tor ── node-a, node-b
//! ```

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use crate::etcd::Etcd;
use crate::frr::Frr;
use crate::merled::Merled;
use crate::netns::{veth, Netns};
use crate::{wait, TempDir};

pub const TOR_AS: u32 = 65001;
/// The client behind the ToR.
pub const CLIENT: &str = "192.168.100.2";
pub const VIP: &str = "192.0.2.80";
const SERVICE_PORT: u16 = 8080;

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
  maximum-paths 4
 exit-address-family
 address-family ipv6 unicast
  network ::/0
  neighbor 10.0.0.1 activate
  neighbor 10.0.0.2 activate
  neighbor 10.0.0.1 route-map V6-NH out
  neighbor 10.0.0.2 route-map V6-NH out
 exit-address-family
!
! Give IPv6 routes sent over IPv4 sessions an explicit next hop (bgpd
! would otherwise send an IPv4-mapped one).
route-map V6-NH permit 10
 set ipv6 next-hop global fd00::254
!
"#
    )
}

/// A node's configuration: the ToR as its only configured peer; the other
/// node comes from the registry in etcd.
pub fn node_config(name: &str, me: u8, etcd: &str, lock_dir: &Path, pin_dir: &Path) -> String {
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

[[pools]]
cidr = "10.244.0.0/16"

[[pools]]
cidr = "fd00:244::/56"

[datastore]
type = "etcd"
endpoints = ["{etcd}"]
path = "{}"

# eBPF where the kernel allows (merlectl dataplane says which and why).
# The node runs under `ip netns exec`, whose /sys is private: its pins go
# to a bpffs of its own.
[dataplane]
mode = "auto"
pin_dir = "{}"

[control]
socket = "{{socket}}"
"#,
        lock_dir.display(),
        pin_dir.display()
    )
}

/// A pod: its node, namespace and addresses.
#[derive(Debug)]
pub struct Pod {
    pub name: String,
    pub node: usize,
    pub ns: Netns,
    pub addrs: Vec<String>,
}

/// The running demo. Dropping it tears everything down.
#[derive(Debug)]
pub struct Demo {
    pub nodes: Vec<Merled>,
    pub tor: Frr,
    pub etcd: Etcd,
    pub pods: Vec<Pod>,
    /// The echo servers of the service's backends.
    pub servers: Vec<crate::echo::Echo>,
    // Namespaces last: they are removed after the daemons stop.
    pub ns_nodes: Vec<Netns>,
    pub ns_tor: Netns,
    /// A client behind the ToR.
    pub ns_client: Netns,
    /// The nodes' bpf filesystems, unmounted after the daemons stop.
    pub bpffs: Vec<crate::bpf::BpfFs>,
    _dir: TempDir,
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
        // No static default route: the nodes take theirs from the ToR over
        // BGP, as racks peered with their ToR do. (A static one would
        // collide with the learned default, which merle then refuses to
        // replace.)
        ns_nodes.push(ns);
    }
    let ns_client = Netns::new("client")?;
    veth(&ns_client, "eth0", &ns_tor, "eth-client")?;
    ns_client.add_addr("eth0", &format!("{CLIENT}/24"))?;
    ns_tor.add_addr("eth-client", "192.168.100.1/24")?;
    ns_client.ip(&["route", "add", "default", "via", "192.168.100.1"])?;
    ns_tor.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.fib_multipath_hash_policy=1"])?;
    let tor = Frr::start_routing(&ns_tor, "tor", &tor_config())?;
    let etcd = Etcd::start(Some(&ns_tor), "10.0.0.254".parse()?).context("starting etcd on the ToR")?;
    let dir = TempDir::new("demo")?;
    let mut nodes = Vec::new();
    let mut bpffs = Vec::new();
    for (i, ns) in ns_nodes.iter().enumerate() {
        let name = format!("node-{}", ["a", "b"][i]);
        let lock = dir.path().join(&name);
        let fs = crate::bpf::BpfFs::new(&name)?;
        let cfg = node_config(&name, i as u8 + 1, &etcd.url, &lock, &fs.pin_dir());
        nodes.push(Merled::start(ns, &name, merled, merlectl, &cfg)?);
        bpffs.push(fs);
    }
    Ok(Demo { nodes, tor, etcd, pods: Vec::new(), servers: Vec::new(), ns_nodes, ns_tor, ns_client, bpffs, _dir: dir })
}

/// The block (/26 or /122) an address of the demo's pools lies in.
fn block_of(addr: &str) -> anyhow::Result<String> {
    let ip: std::net::IpAddr = addr.parse()?;
    let len = if ip.is_ipv4() { 26 } else { 122 };
    Ok(ipnet::IpNet::new(ip, len)?.trunc().to_string())
}

impl Demo {
    /// Creates pods a0 and a1 on node-a and b0 on node-b with merle-cni.
    pub fn add_pods(&mut self, cni: &Path) -> anyhow::Result<()> {
        for (name, node) in [("a0", 0usize), ("a1", 0), ("b0", 1)] {
            let ns = Netns::new(&format!("pod-{name}"))?;
            let rt = crate::cni::Runtime::new(cni, &self.nodes[node].config)?;
            let r = rt.add(&self.ns_nodes[node], &ns, name)?;
            self.pods.push(Pod { name: name.into(), node, ns, addrs: crate::cni::addresses(&r) });
        }
        Ok(())
    }

    /// The service `default/web` in both nodes' configurations, with echo
    /// servers in its backends (a1, b0) that answer with the client address
    /// they saw; returns once both nodes have programmed it.
    pub fn add_service(&mut self) -> anyhow::Result<()> {
        let pod = |n: &str| self.pods.iter().find(|p| p.name == n).context("no such pod");
        let (a1, b0) = (pod("a1")?, pod("b0")?);
        let v4 = |p: &Pod| p.addrs.iter().find(|a| !a.contains(':')).cloned().context("no IPv4 address");
        let toml = format!(
            "\n[service_ranges]\ncluster_ips = [\"10.96.0.0/12\"]\nload_balancer_ips = [\"192.0.2.0/24\"]\n\n\
             [[services]]\nname = \"default/web\"\nprotocol = \"tcp\"\ncluster_ip = \"10.96.0.80\"\nport = 80\n\
             node_port = 30080\nload_balancer_ips = [\"{VIP}\"]\nmode = \"dsr\"\nbackends = [\n  \
             {{ address = \"{}\", port = {SERVICE_PORT}, node = \"node-a\" }},\n  \
             {{ address = \"{}\", port = {SERVICE_PORT}, node = \"node-b\" }},\n]\n",
            v4(a1)?,
            v4(b0)?
        );
        let bind: std::net::SocketAddr = format!("0.0.0.0:{SERVICE_PORT}").parse()?;
        self.servers.push(crate::echo::Echo::tcp(&a1.ns, bind, "a1")?);
        self.servers.push(crate::echo::Echo::tcp(&b0.ns, bind, "b0")?);
        for m in &self.nodes {
            let text = std::fs::read_to_string(&m.config)?;
            std::fs::write(&m.config, text + &toml)?;
        }
        for m in &self.nodes {
            wait::poll("the service programmed", Duration::from_secs(30), || {
                let v: serde_json::Value =
                    serde_json::from_str(&m.merlectl(&["--json", "service", "list"]).ok()?).ok()?;
                let s = v.as_array()?.first()?.clone();
                s["frontends"].as_array()?.iter().all(|f| !f["lb_id"].is_null()).then_some(())
            })
            .with_context(|| m.daemon.log_tail(20))?;
        }
        wait::poll("the ToR routes the load-balancer range", Duration::from_secs(30), || {
            self.ns_tor.ip(&["route", "show", "192.0.2.0/24"]).ok().filter(|r| r.contains("10.0.0.")).map(|_| ())
        })?;
        Ok(())
    }

    /// Connections from the client behind the ToR to the service: who
    /// answered and the address they saw, per frontend.
    pub fn service_answers(&self, n: usize) -> anyhow::Result<Vec<(String, crate::echo::Answer)>> {
        let mut out = Vec::new();
        for to in [format!("{VIP}:80"), "10.0.0.1:30080".into(), "10.0.0.2:30080".into()] {
            let sa: std::net::SocketAddr = to.parse()?;
            for _ in 0..n {
                out.push((to.clone(), crate::echo::ask_tcp(&self.ns_client, sa)?));
            }
        }
        Ok(out)
    }

    /// Waits until both nodes have both sessions up (the iBGP one from the
    /// node registry), the ToR's default routes, and every other node's
    /// pod blocks.
    pub fn converge(&self, timeout: Duration) -> anyhow::Result<()> {
        let mut checks: Vec<(usize, String, String)> = Vec::new();
        for n in 0..2 {
            checks.push((n, "10.0.0.254".into(), "0.0.0.0/0".into()));
            checks.push((n, "10.0.0.254".into(), "::/0".into()));
        }
        for p in &self.pods {
            let other = 1 - p.node;
            for a in &p.addrs {
                checks.push((other, format!("10.0.0.{}", p.node + 1), block_of(a)?));
            }
        }
        wait::poll("demo sessions Established and routes exchanged", timeout, || {
            let mesh = self.nodes[0].peer_state("10.0.0.2").as_deref() == Some("Established")
                && self.nodes[1].peer_state("10.0.0.1").as_deref() == Some("Established");
            let ok =
                mesh && checks.iter().all(|(n, peer, prefix)| {
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

    /// What is not as it should be once the demo has converged: a kernel
    /// route fib-sync could not install, a rejected configuration. Empty
    /// when all is well.
    pub fn problems(&self) -> anyhow::Result<Vec<String>> {
        let mut out = Vec::new();
        for (i, m) in self.nodes.iter().enumerate() {
            let name = ["node-a", "node-b"][i];
            let fib: serde_json::Value = serde_json::from_str(&m.merlectl(&["fib", "--json"])?)?;
            for r in fib.as_array().into_iter().flatten() {
                if r["state"] != "installed" {
                    out.push(format!("{name}: {} is {}", r["prefix"], r));
                }
            }
            if let Some(e) = m.status()?["config_error"].as_str() {
                out.push(format!("{name}: configuration rejected: {e}"));
            }
        }
        Ok(out)
    }

    /// Waits (bounded) until [`Demo::problems`] is empty.
    pub fn settle(&self, timeout: Duration) -> anyhow::Result<()> {
        match wait::poll("every kernel route installed", timeout, || self.problems().ok().filter(Vec::is_empty)) {
            Ok(_) => Ok(()),
            Err(e) => anyhow::bail!("{e}: {:?}", self.problems()?),
        }
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
            println!("==== {name}: merlectl ipam show ====");
            print!("{}", m.merlectl(&["ipam", "show"])?);
            println!();
        }
        println!("==== pods (merle-cni) ====");
        for p in &self.pods {
            println!("  {} on node-{}: {}", p.name, ["a", "b"][p.node], p.addrs.join(", "));
        }
        if let (Some(a0), Some(b0)) =
            (self.pods.iter().find(|p| p.name == "a0"), self.pods.iter().find(|p| p.name == "b0"))
        {
            for (src, dst) in a0.addrs.iter().zip(&b0.addrs) {
                let out = a0.ns.exec(&["ping", "-c", "3", "-i", "0.2", "-W", "2", dst]);
                let summary = match &out {
                    Ok(o) => o.lines().find(|l| l.contains("packets transmitted")).unwrap_or("").to_owned(),
                    Err(e) => format!("FAILED: {e}"),
                };
                println!("==== ping from pod a0 ({src}) to pod b0 ({dst}): {summary}");
            }
        }
        if !self.servers.is_empty() {
            println!("==== node-a: merlectl service list ====");
            print!("{}", self.nodes[0].merlectl(&["service", "list"])?);
            println!("==== service default/web from the client behind the ToR ({CLIENT}) ====");
            for (to, a) in self.service_answers(3)? {
                let kept =
                    if a.peer.ip().to_string() == CLIENT { "the client's own address" } else { "NOT the client's" };
                println!("  {to:<16} answered by {} from {}, which saw {} ({kept})", a.server, a.from, a.peer);
            }
        }
        for (i, m) in self.nodes.iter().enumerate() {
            println!("==== {}: merlectl dataplane ====", ["node-a", "node-b"][i]);
            print!("{}", m.merlectl(&["dataplane"])?);
        }
        println!();
        println!("==== tor (FRR): show bgp ipv4 unicast ====");
        print!("{}", self.tor.vtysh(&["show bgp ipv4 unicast"])?);
        println!("==== tor (FRR): show bgp ipv6 unicast ====");
        print!("{}", self.tor.vtysh(&["show bgp ipv6 unicast"])?);
        println!("==== tor (FRR): show bgp summary ====");
        print!("{}", self.tor.vtysh(&["show bgp summary"])?);
        Ok(())
    }
}
