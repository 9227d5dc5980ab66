//! A cluster of merle nodes with pods, for the datapath tests, the
//! benchmark and the demo.
//!
//! ```text
//!            switch (bridge) 10.0.0.254, fd00::254
//!        ┌───────────┴───────────┐
//!   n1 eth0 10.0.0.1         n2 eth0 10.0.0.2       merled on each, iBGP mesh
//!     pods from 10.244.0.0/16 (/26 blocks) and fd00:244::/56 (/122 blocks),
//!     wired by merle-cni; with Encap::Vxlan both pools are tunnelled
//!     (vxlan_mode Always), IPv4 through vxlan.merle and IPv6 through
//!     vxlan-v6.merle
//! ```
//! The nodes share one file IPAM store (as they would share etcd). Each
//! node pins under its own private bpffs, so clusters (and tests) run
//! side by side.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use crate::bpf::BpfFs;
use crate::cni::Runtime;
use crate::merled::{sibling_binary, Merled};
use crate::netns::{Lan, Netns};
use crate::{wait, TempDir};

/// How pod traffic crosses nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encap {
    Native,
    Vxlan,
}

/// `[dataplane] mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Ebpf,
    Kernel,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Ebpf => "ebpf",
            Mode::Kernel => "kernel",
        }
    }
}

#[derive(Debug)]
pub struct Node {
    pub name: String,
    pub merled: Merled,
    pub bpffs: BpfFs,
    pub runtime: Runtime,
    _data: std::sync::Arc<TempDir>,
}

#[derive(Debug)]
pub struct Pod {
    pub ns: Netns,
    pub node: usize,
    pub id: String,
    pub v4: String,
    pub v6: Option<String>,
}

/// Where each node's merled serves metrics, on its own loopback.
pub const METRICS: &str = "127.0.0.1:9091";

#[derive(Debug)]
pub struct Cluster {
    pub lan: Lan,
    pub nodes: Vec<Node>,
    pub encap: Encap,
    merled_bin: std::path::PathBuf,
    /// The datastore, when the cluster keeps IPAM and services in etcd
    /// (on the switch, 10.0.0.254).
    pub etcd: Option<crate::etcd::Etcd>,
}

pub const T: Duration = Duration::from_secs(40);

/// The configuration of node `i` (1-based) of `n`.
pub fn config(i: usize, n: usize, encap: Encap, mode: Mode, data: &Path, pin_dir: &Path, nat: bool) -> String {
    let vx = match encap {
        Encap::Native => "Never",
        Encap::Vxlan => "Always",
    };
    let mut s = format!(
        "[node]\nname = \"n{i}\"\naddress = \"10.0.0.{i}/24\"\naddress_v6 = \"fd00::{i}/64\"\n\n\
         [bgp]\nhold_time = 9\nconnect_retry_time = 1\nconnect_retry_max = 2\n\n"
    );
    for j in 1..=n {
        s += &format!("[[nodes]]\nname = \"n{j}\"\naddress = \"10.0.0.{j}/24\"\n\n");
    }
    s += &format!(
        "[[pools]]\ncidr = \"10.244.0.0/16\"\nblock_size = 26\nvxlan_mode = \"{vx}\"\nnat_outgoing = {nat}\n\n\
         [[pools]]\ncidr = \"fd00:244::/56\"\nblock_size = 122\nvxlan_mode = \"{vx}\"\n\n\
         [datastore]\npath = \"{}\"\n\n[dataplane]\nmode = \"{}\"\npin_dir = \"{}\"\n\n[metrics]\nlisten = \"{METRICS}\"\n\n\
         [control]\nsocket = \"{{socket}}\"\n",
        data.display(),
        mode.name(),
        pin_dir.display()
    );
    s
}

impl Cluster {
    pub fn new(tag: &str, n: usize, encap: Encap, mode: Mode) -> anyhow::Result<Self> {
        Self::with_nat(tag, n, encap, mode, false)
    }

    pub fn with_nat(tag: &str, n: usize, encap: Encap, mode: Mode, nat: bool) -> anyhow::Result<Self> {
        Self::build(tag, n, encap, mode, nat, "")
    }

    /// A cluster whose nodes' configurations end with `extra` (peers, for
    /// one).
    pub fn build(tag: &str, n: usize, encap: Encap, mode: Mode, nat: bool, extra: &str) -> anyhow::Result<Self> {
        Self::build_with(tag, n, encap, mode, nat, extra, false)
    }

    /// A cluster whose datastore is etcd, on the switch.
    pub fn with_etcd(tag: &str, n: usize, mode: Mode) -> anyhow::Result<Self> {
        Self::build_with(tag, n, Encap::Native, mode, false, "", true)
    }

    fn build_with(
        tag: &str,
        n: usize,
        encap: Encap,
        mode: Mode,
        nat: bool,
        extra: &str,
        etcd: bool,
    ) -> anyhow::Result<Self> {
        let lan = Lan::with_subnet(tag, n as u8, "10.0.0", "fd00:")?;
        let etcd = if etcd { Some(crate::etcd::Etcd::start(Some(&lan.switch), "10.0.0.254".parse()?)?) } else { None };
        let merled_bin = sibling_binary("merled")?;
        let merlectl = sibling_binary("merlectl")?;
        let cni = sibling_binary("merle-cni")?;
        let mut nodes = Vec::new();
        // One IPAM store for the cluster, as etcd would be: the nodes all
        // run on this machine, and the file store's lock serialises them.
        let data = std::sync::Arc::new(TempDir::new(&format!("{tag}-ipam"))?);
        for i in 1..=n {
            let ns = &lan.hosts[i - 1];
            let data = data.clone();
            let bpffs = BpfFs::new(&format!("{tag}{i}"))?;
            let mut cfg = config(i, n, encap, mode, data.path(), &bpffs.pin_dir(), nat) + extra;
            if let Some(e) = &etcd {
                // Each node its own lock directory; the blocks in etcd.
                let lock = data.path().join(format!("n{i}"));
                cfg = cfg.replace(
                    &format!("[datastore]\npath = \"{}\"\n", data.path().display()),
                    &format!(
                        "[datastore]\ntype = \"etcd\"\nendpoints = [\"{}\"]\npath = \"{}\"\n",
                        e.url,
                        lock.display()
                    ),
                );
            }
            let merled = Merled::start(ns, &format!("n{i}"), &merled_bin, &merlectl, &cfg)?;
            let runtime = Runtime::new(&cni, &merled.config)?;
            nodes.push(Node { name: format!("n{i}"), merled, bpffs, runtime, _data: data });
        }
        let c = Self { lan, nodes, encap, merled_bin, etcd };
        c.wait_mesh()?;
        Ok(c)
    }

    pub fn ns(&self, node: usize) -> &Netns {
        &self.lan.hosts[node]
    }

    /// Every session of the mesh Established.
    pub fn wait_mesh(&self) -> anyhow::Result<()> {
        let n = self.nodes.len();
        wait::poll("the iBGP mesh", T, || {
            self.nodes
                .iter()
                .enumerate()
                .all(|(i, node)| {
                    (1..=n)
                        .filter(|j| *j != i + 1)
                        .all(|j| node.merled.peer_state(&format!("10.0.0.{j}")).as_deref() == Some("Established"))
                })
                .then_some(())
        })
        .map_err(|e| anyhow::anyhow!("{e}\n{}", self.logs()))
    }

    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| {
                let all = n.merled.daemon.log_tail(100_000);
                let dp: Vec<&str> = all.lines().filter(|l| l.contains("dataplane") || l.contains("WARN")).collect();
                format!("{}:\n{}\n...\n{}\n", n.name, dp.join("\n"), n.merled.daemon.log_tail(15))
            })
            .collect()
    }

    /// A pod on `node` (0-based) wired by the conflist.
    pub fn add_pod(&self, node: usize, id: &str) -> anyhow::Result<Pod> {
        let ns = Netns::new(&format!("pod-{id}"))?;
        let r = self.nodes[node].runtime.add(self.ns(node), &ns, id)?;
        let addrs = crate::cni::addresses(&r);
        let v4 = addrs.iter().find(|a| !a.contains(':')).cloned().context("no IPv4 address")?;
        let v6 = addrs.iter().find(|a| a.contains(':')).cloned();
        Ok(Pod { ns, node, id: id.to_owned(), v4, v6 })
    }

    pub fn del_pod(&self, pod: &Pod) -> anyhow::Result<()> {
        self.nodes[pod.node].runtime.del(self.ns(pod.node), &pod.ns, &pod.id)
    }

    /// Waits until `from` reaches `to` (one ping answered).
    pub fn wait_ping(&self, from: &Pod, to: &str) -> anyhow::Result<()> {
        let ping = if to.contains(':') { "ping6" } else { "ping" };
        wait::poll(&format!("ping {to}"), T, || from.ns.exec(&[ping, "-c", "1", "-W", "1", to]).ok())
            .map(|_| ())
            .map_err(|e| anyhow::anyhow!("{e}\n{}", self.logs()))
    }

    pub fn dataplane(&self, node: usize) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::from_str(&self.nodes[node].merled.merlectl(&["--json", "dataplane"])?)?)
    }

    /// The packets counted for (hook, reason) on `node`.
    /// One scrape of a node's `/metrics`.
    pub fn metrics(&self, node: usize) -> anyhow::Result<String> {
        match crate::prometheus::http_get_in(&self.ns(node).name, METRICS.parse()?, "/metrics") {
            Some((200, body)) => Ok(body),
            other => anyhow::bail!("n{}'s metrics: {other:?}", node + 1),
        }
    }

    pub fn counter(&self, node: usize, hook: &str, reason: &str) -> u64 {
        self.dataplane(node)
            .ok()
            .and_then(|d| {
                d["counters"]
                    .as_array()?
                    .iter()
                    .find(|c| c["hook"] == hook && c["reason"] == reason)
                    .and_then(|c| c["packets"].as_u64())
            })
            .unwrap_or(0)
    }

    /// Waits until `node`'s merled reports `mode` in effect.
    pub fn wait_mode(&self, node: usize, mode: Mode) -> anyhow::Result<()> {
        wait::poll(&format!("{} in {} mode", self.nodes[node].name, mode.name()), T, || {
            self.dataplane(node).ok().filter(|d| d["mode"] == mode.name()).map(|_| ())
        })
        .map_err(|e| anyhow::anyhow!("{e}\n{}", self.logs()))
    }

    /// Waits until the node programs are on the uplink (and the VXLAN
    /// devices for VXLAN pools).
    pub fn wait_node_links(&self, node: usize) -> anyhow::Result<()> {
        let want: &[&str] = match self.encap {
            Encap::Native => &["eth0"],
            Encap::Vxlan => &["eth0", "vxlan.merle", "vxlan-v6.merle"],
        };
        wait::poll("the node programs attached", T, || {
            let d = self.dataplane(node).ok()?;
            let ifs = d["interfaces"].as_array()?.clone();
            want.iter().all(|w| ifs.iter().any(|i| i["ifname"] == *w && i["hook"] == "node-ingress")).then_some(())
        })
        .map_err(|e| anyhow::anyhow!("{e}\n{}", self.logs()))
    }

    /// Rewrites node `i`'s configuration with `mode`; merled applies it
    /// within a second or two.
    pub fn set_mode(&self, node: usize, mode: Mode) -> anyhow::Result<()> {
        let path = &self.nodes[node].merled.config;
        let text = std::fs::read_to_string(path)?;
        let out: Vec<String> = text
            .lines()
            .map(|l| if l.starts_with("mode = ") { format!("mode = \"{}\"", mode.name()) } else { l.to_owned() })
            .collect();
        std::fs::write(path, out.join("\n") + "\n")?;
        self.wait_mode(node, mode)
    }

    /// Replaces the services section of node `i`'s configuration (what an
    /// earlier call appended) with `toml`; merled applies it live.
    pub fn set_services(&self, node: usize, toml: &str) -> anyhow::Result<()> {
        const MARK: &str = "\n# testbed: services\n";
        let path = &self.nodes[node].merled.config;
        let text = std::fs::read_to_string(path)?;
        let base = text.split(MARK).next().unwrap_or(&text);
        std::fs::write(path, format!("{base}{MARK}{toml}"))?;
        Ok(())
    }

    /// `merlectl service list --json` of node `i`.
    pub fn services(&self, node: usize) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::from_str(&self.nodes[node].merled.merlectl(&["--json", "service", "list"])?)?)
    }

    /// Waits until node `i` has programmed every frontend of every
    /// configured service, `n` of them.
    pub fn wait_services(&self, node: usize, n: usize) -> anyhow::Result<()> {
        wait::poll(&format!("{} services programmed on {}", n, self.nodes[node].name), T, || {
            let v = self.services(node).ok()?;
            let list = v.as_array()?;
            (list.len() == n
                && list
                    .iter()
                    .all(|s| s["frontends"].as_array().is_some_and(|f| f.iter().all(|f| !f["lb_id"].is_null()))))
            .then_some(())
        })
        .map_err(|e| anyhow::anyhow!("{e}\n{}", self.logs()))
    }

    pub fn restart(&mut self, node: usize) -> anyhow::Result<()> {
        let ns = &self.lan.hosts[node];
        self.nodes[node].merled.restart(ns, &self.merled_bin)
    }
}
