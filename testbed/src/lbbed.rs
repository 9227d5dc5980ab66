//! The services testbed: three merle nodes behind an FRR ToR that routes
//! (zebra installs its ECMP routes), a client behind the ToR.
//!
//! ```text
//!   client 192.168.100.2 ── tor (FRR, AS 65001) 192.168.100.1 / 10.0.0.254
//!          fd00:100::2          │ fd00:100::1 / fd00::254
//!                               │ the cluster's switch, routing
//!        ┌──────────────────────┼──────────────────────┐
//!   n1 10.0.0.1            n2 10.0.0.2            n3 10.0.0.3     merled, AS 64512,
//!                                                                 iBGP mesh, eBGP to the ToR
//! ```
//! Every node advertises the service ranges to the ToR, which spreads the
//! flows to a load-balancer IP over the nodes by ECMP (L4 hash). The
//! sessions are over IPv4 and carry both families (IPv6 with the nodes'
//! IPv6 addresses as next hops), as the demo's ToR does.

use std::time::Duration;

use crate::datapath::{Cluster, Encap, Mode};
use crate::frr::Frr;
use crate::netns::{veth, Netns};
use crate::wait;

pub const TOR: &str = "10.0.0.254";
pub const TOR_AS: u32 = 65001;
pub const CLIENT: &str = "192.168.100.2";
pub const CLIENT6: &str = "fd00:100::2";

#[derive(Debug)]
pub struct ServiceBed {
    pub cluster: Cluster,
    pub tor: Frr,
    pub client: Netns,
}

fn tor_config(n: usize) -> String {
    let mut s = format!(
        "hostname tor\nrouter bgp {TOR_AS}\n bgp router-id {TOR}\n no bgp ebgp-requires-policy\n \
         no bgp network import-check\n timers bgp 3 9\n"
    );
    for i in 1..=n {
        s += &format!(" neighbor 10.0.0.{i} remote-as 64512\n neighbor 10.0.0.{i} timers connect 2\n");
    }
    s += " address-family ipv4 unicast\n  maximum-paths 8\n exit-address-family\n address-family ipv6 unicast\n";
    for i in 1..=n {
        s += &format!("  neighbor 10.0.0.{i} activate\n");
    }
    s + "  maximum-paths 8\n exit-address-family\n!\n"
}

impl ServiceBed {
    pub fn new(tag: &str, n: usize) -> anyhow::Result<Self> {
        let peer = format!("\n[[bgp.peers]]\naddress = \"{TOR}\"\nas_number = {TOR_AS}\n");
        let cluster = Cluster::build(tag, n, Encap::Native, Mode::Ebpf, false, &peer)?;
        let sw = &cluster.lan.switch;
        sw.exec(&[
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
            "net.ipv4.fib_multipath_hash_policy=1",
            "net.ipv6.conf.all.forwarding=1",
            "net.ipv6.fib_multipath_hash_policy=1",
        ])?;
        for i in 0..n {
            cluster.ns(i).ip(&["-6", "route", "add", "default", "via", "fd00::254"])?;
        }
        let client = Netns::new(&format!("{tag}-client"))?;
        veth(&client, "eth0", sw, "cl0")?;
        client.add_addr("eth0", &format!("{CLIENT}/24"))?;
        sw.add_addr("cl0", "192.168.100.1/24")?;
        client.ip(&["route", "add", "default", "via", "192.168.100.1"])?;
        client.add_addr("eth0", &format!("{CLIENT6}/64"))?;
        sw.add_addr("cl0", "fd00:100::1/64")?;
        client.ip(&["-6", "route", "add", "default", "via", "fd00:100::1"])?;
        let tor = Frr::start_routing(sw, &format!("{tag}-tor"), &tor_config(n))?;
        let bed = Self { cluster, tor, client };
        for i in 1..=n {
            let a = format!("10.0.0.{i}");
            wait::poll(&format!("the ToR's session with {a}"), Duration::from_secs(60), || {
                (bed.tor.neighbor_state(&a).as_deref() == Some("Established")).then_some(())
            })
            .map_err(|e| anyhow::anyhow!("{e}\n{}", bed.cluster.logs()))?;
        }
        for i in 0..n {
            bed.cluster.wait_mode(i, Mode::Ebpf)?;
        }
        Ok(bed)
    }

    /// Waits until the ToR's kernel routes `prefix` over `paths` nodes.
    pub fn wait_ecmp(&self, prefix: &str, paths: usize) -> anyhow::Result<()> {
        wait::poll(&format!("{prefix} over {paths} paths at the ToR"), Duration::from_secs(30), || {
            let family = if prefix.contains(':') { "-6" } else { "-4" };
            let r = self.cluster.lan.switch.ip(&[family, "route", "show", prefix]).ok()?;
            let n = if r.contains("nexthop") { r.matches("nexthop").count() } else { usize::from(r.contains("via")) };
            (n == paths).then_some(())
        })
        .map_err(|e| {
            anyhow::anyhow!(
                "{e}: {:?}\n{:?}",
                self.cluster.lan.switch.ip(&["route"]),
                self.tor.vtysh(&["show bgp ipv4 unicast"])
            )
        })
    }

    /// The ToR stops (or resumes) its session with node `i` (0-based):
    /// its paths go at once.
    pub fn tor_shutdown(&self, node: usize, down: bool) -> anyhow::Result<()> {
        let n = format!("{}neighbor 10.0.0.{} shutdown", if down { "" } else { "no " }, node + 1);
        self.tor.vtysh(&["configure terminal", &format!("router bgp {TOR_AS}"), &n])?;
        Ok(())
    }
}
