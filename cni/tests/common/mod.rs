//! Shared helpers of merle-cni's integration tests: a node namespace with an
//! upstream router, merle's configuration for it, pod namespaces in bulk,
//! and CNI plugins run inside the node with bounded, polling waits.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::IpAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use merle_ipam::{Blocks, Store};
use serde_json::{json, Value};
use testbed::netns::{self, Netns};
use testbed::TempDir;

/// The plugin under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_merle-cni");
/// The reference plugins (Debian's containernetworking-plugins).
pub const CNI_PATH: &str = "/usr/lib/cni";
/// The netconf's network name: handles are `merlenet.<container id>`.
pub const NETWORK: &str = "merlenet";
/// Longest a single plugin process may take.
pub const PLUGIN_TIMEOUT: Duration = Duration::from_secs(20);
pub const SUPPORTED: [&str; 4] = ["0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// `CNI_NETNS` of a namespace made with `ip netns add`.
pub fn netns_path(name: &str) -> String {
    format!("/var/run/netns/{name}")
}

/// What one plugin process did.
#[derive(Debug)]
pub struct Out {
    /// Exit code; `None` when a signal ended the process.
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    fn from(status: ExitStatus, stdout: String, stderr: String) -> Self {
        Self { code: status.code(), signal: status.signal(), stdout, stderr }
    }

    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    /// Exit 0 with a JSON result (ADD, VERSION).
    pub fn result(&self, what: &str) -> Value {
        assert!(self.ok(), "{what} failed: {self:?}");
        self.json()
    }

    /// Exit 0 and nothing on stdout (DEL, CHECK, STATUS, GC).
    pub fn empty(&self, what: &str) {
        assert!(self.ok(), "{what} failed: {self:?}");
        assert!(self.stdout.trim().is_empty(), "{what} printed something: {self:?}");
    }

    /// A non-zero exit with the spec's error JSON: `code`, and a `msg`
    /// holding every one of `needles`. Returns the error object.
    pub fn error(&self, what: &str, code: u64, needles: &[&str]) -> Value {
        assert!(!self.ok() && self.code.is_some(), "{what}: expected a failure exit, got {self:?}");
        let v = self.json();
        assert_eq!(v["code"].as_u64(), Some(code), "{what}: wrong error code in {v}");
        let msg = v["msg"].as_str().unwrap_or_else(|| panic!("{what}: no msg in {v}"));
        for n in needles {
            assert!(msg.contains(n), "{what}: msg {msg:?} does not mention {n:?}");
        }
        assert!(v["cniVersion"].is_string(), "{what}: error without cniVersion: {v}");
        v
    }
}

/// Starts `program` inside `ns` with exactly the `CNI_*` variables of `env`
/// and `stdin` on its standard input.
pub fn spawn(ns: &Netns, program: &str, env: &[(&str, String)], stdin: &[u8]) -> Child {
    let mut c = ns.command(program);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CNI_") {
            c.env_remove(k);
        }
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap_or_else(|e| panic!("cannot start {program} in {}: {e}", ns.name));
    if let Some(mut w) = child.stdin.take() {
        // A process killed before reading makes this EPIPE: fine.
        let _ = w.write_all(stdin);
    }
    child
}

/// Waits for every child, polling, for at most `timeout`; kills the rest
/// and panics when that runs out.
pub fn wait_all(mut children: Vec<Child>, timeout: Duration) -> Vec<Out> {
    let end = Instant::now() + timeout;
    let mut status: Vec<Option<ExitStatus>> = vec![None; children.len()];
    loop {
        for (c, s) in children.iter_mut().zip(status.iter_mut()) {
            if s.is_none() {
                *s = c.try_wait().unwrap_or_else(|e| panic!("cannot wait for a plugin: {e}"));
            }
        }
        let running = status.iter().filter(|s| s.is_none()).count();
        if running == 0 {
            break;
        }
        if Instant::now() >= end {
            for (c, s) in children.iter_mut().zip(&status) {
                if s.is_none() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
            }
            panic!("{running} of {} plugin processes still ran after {timeout:?}", children.len());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    children
        .into_iter()
        .zip(status)
        .map(|(mut c, s)| {
            let mut stdout = String::new();
            let mut stderr = String::new();
            if let Some(mut o) = c.stdout.take() {
                let _ = o.read_to_string(&mut stdout);
            }
            if let Some(mut e) = c.stderr.take() {
                let _ = e.read_to_string(&mut stderr);
            }
            Out::from(s.unwrap_or_default(), stdout, stderr)
        })
        .collect()
}

pub fn wait_one(child: Child) -> Out {
    wait_all(vec![child], PLUGIN_TIMEOUT).pop().unwrap()
}

/// The names of the links in namespace `ns`.
pub fn link_names(ns: &str) -> Vec<String> {
    let text = netns::run(Command::new("ip").args(["-n", ns, "-j", "link", "show"])).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let mut names: Vec<String> =
        v.as_array().unwrap().iter().filter_map(|l| l["ifname"].as_str().map(str::to_owned)).collect();
    names.sort();
    names
}

/// The addresses a result lists, without their prefix lengths.
pub fn result_ips(r: &Value) -> Vec<IpNet> {
    r["ips"]
        .as_array()
        .unwrap_or_else(|| panic!("result without ips: {r}"))
        .iter()
        .map(|i| i["address"].as_str().unwrap().parse().unwrap())
        .collect()
}

/// One taken address of a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    pub ip: IpAddr,
    pub block: IpNet,
    pub handle: String,
    pub node: String,
    pub affinity: Option<String>,
}

impl Taken {
    pub fn borrowed(&self) -> bool {
        self.affinity.as_deref() != Some(self.node.as_str())
    }
}

pub fn taken(blocks: &Blocks) -> Vec<Taken> {
    blocks
        .values()
        .flat_map(|b| {
            b.allocations.iter().map(|(o, a)| Taken {
                ip: b.addr(*o),
                block: b.cidr,
                handle: a.handle.clone(),
                node: a.node.clone(),
                affinity: b.affinity.clone(),
            })
        })
        .collect()
}

/// Asserts the blocks are consistent: no two overlap, every block's key is
/// its CIDR, no address is taken twice and no handle holds more than one
/// address of a family. Returns each handle's addresses.
pub fn assert_consistent(blocks: &Blocks) -> BTreeMap<String, Vec<IpAddr>> {
    let cidrs: Vec<&IpNet> = blocks.keys().collect();
    for (i, a) in cidrs.iter().enumerate() {
        assert_eq!(**a, blocks[*a].cidr, "block stored under the wrong key");
        for b in &cidrs[i + 1..] {
            assert!(!a.contains(*b) && !b.contains(*a), "blocks {a} and {b} overlap");
        }
    }
    let mut by_ip: HashMap<IpAddr, String> = HashMap::new();
    let mut by_handle: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
    for t in taken(blocks) {
        assert!(t.block.contains(&t.ip), "{} outside its block {}", t.ip, t.block);
        if let Some(other) = by_ip.insert(t.ip, t.handle.clone()) {
            panic!("{} is held by both {other} and {}", t.ip, t.handle);
        }
        by_handle.entry(t.handle).or_default().push(t.ip);
    }
    for (h, ips) in &by_handle {
        assert!(ips.iter().filter(|i| i.is_ipv4()).count() <= 1, "{h} holds several IPv4 addresses: {ips:?}");
        assert!(ips.iter().filter(|i| i.is_ipv6()).count() <= 1, "{h} holds several IPv6 addresses: {ips:?}");
    }
    by_handle
}

/// `[[pools]]` tables.
pub fn pools_toml(pools: &[(&str, Option<u8>)]) -> String {
    pools
        .iter()
        .map(|(cidr, bs)| match bs {
            Some(b) => format!("[[pools]]\ncidr = \"{cidr}\"\nblock_size = {b}\n\n"),
            None => format!("[[pools]]\ncidr = \"{cidr}\"\n\n"),
        })
        .collect()
}

pub const DUAL_STACK: &[(&str, Option<u8>)] = &[("10.244.0.0/16", None), ("fd00:244::/64", None)];
pub const V4_ONLY: &[(&str, Option<u8>)] = &[("10.244.0.0/16", None)];

/// An etcd datastore: client endpoint and key prefix.
#[derive(Debug, Clone)]
pub struct EtcdDs {
    pub endpoint: String,
    pub prefix: String,
}

/// A simulated node: a namespace whose `eth0` leads to an upstream
/// namespace (its default route, IPv4 and IPv6), and a scratch directory
/// with merle's configuration and the datastore directory.
#[derive(Debug)]
pub struct Node {
    pub name: String,
    pub index: u8,
    pub ns: Netns,
    pub dir: TempDir,
}

impl Node {
    /// The node has 10.0.<index>.1/24 and fd00:<index>::1/64; `up`'s end,
    /// `n<index>`, has .254 and ::254 and is the node's default gateway.
    pub fn new(tag: &str, name: &str, up: &Netns, index: u8) -> Self {
        let ns = Netns::new(tag).unwrap();
        let dir = TempDir::new(tag).unwrap();
        let up_dev = format!("n{index}");
        netns::veth(&ns, "eth0", up, &up_dev).unwrap();
        ns.add_addr("eth0", &format!("10.0.{index}.1/24")).unwrap();
        ns.add_addr("eth0", &format!("fd00:{index}::1/64")).unwrap();
        up.add_addr(&up_dev, &format!("10.0.{index}.254/24")).unwrap();
        up.add_addr(&up_dev, &format!("fd00:{index}::254/64")).unwrap();
        ns.ip(&["route", "add", "default", "via", &format!("10.0.{index}.254")]).unwrap();
        ns.ip(&["-6", "route", "add", "default", "via", &format!("fd00:{index}::254")]).unwrap();
        Self { name: name.to_owned(), index, ns, dir }
    }

    pub fn addr4(&self) -> String {
        format!("10.0.{}.1", self.index)
    }

    pub fn addr6(&self) -> String {
        format!("fd00:{}::1", self.index)
    }

    /// `datastore.path`: the file store, or etcd's lock directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("ipam")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("merle.toml")
    }

    /// merle's configuration for this node.
    pub fn config_text(&self, pools: &[(&str, Option<u8>)], strict: bool, etcd: Option<&EtcdDs>) -> String {
        let ds = match etcd {
            None => format!("type = \"file\"\npath = \"{}\"\n", self.data_dir().display()),
            Some(e) => format!(
                "type = \"etcd\"\npath = \"{}\"\nendpoints = [\"{}\"]\nprefix = \"{}\"\ntimeout_ms = 2000\n",
                self.data_dir().display(),
                e.endpoint,
                e.prefix
            ),
        };
        format!(
            "[node]\nname = \"{}\"\naddress = \"{}/24\"\n\n[ipam]\nstrict_affinity = {strict}\n\n\
             [datastore]\n{ds}\n[control]\nsocket = \"{}\"\n\n\
             # No eBPF datapath here: the plugin must not link pods to programs\n\
             # a merled on this machine pinned.\n[dataplane]\nmode = \"kernel\"\npin_dir = \"{}\"\n\n{}",
            self.name,
            self.addr4(),
            self.dir.path().join("merled.sock").display(),
            self.dir.path().join("pins").display(),
            pools_toml(pools)
        )
    }

    /// Writes [`Node::config_text`] to [`Node::config_path`].
    pub fn configure(&self, pools: &[(&str, Option<u8>)], strict: bool, etcd: Option<&EtcdDs>) {
        std::fs::write(self.config_path(), self.config_text(pools, strict, etcd)).unwrap();
    }

    /// The parsed configuration, as the plugin reads it.
    pub fn config(&self) -> conf::Config {
        conf::load(&self.config_path()).unwrap()
    }

    /// A netconf naming this node's configuration.
    pub fn netconf(&self, version: &str) -> Value {
        json!({
            "cniVersion": version,
            "name": NETWORK,
            "type": "merle-cni",
            "merle_config": self.config_path(),
        })
    }

    /// Starts `program` with `CNI_COMMAND=cmd` for container `cid` on
    /// `eth0` of the pod namespace `netns`.
    pub fn spawn_plugin(&self, program: &str, cmd: &str, cid: &str, netns: &str, conf: &Value) -> Child {
        let env = [
            ("CNI_COMMAND", cmd.to_owned()),
            ("CNI_CONTAINERID", cid.to_owned()),
            ("CNI_NETNS", netns.to_owned()),
            ("CNI_IFNAME", "eth0".to_owned()),
            ("CNI_PATH", CNI_PATH.to_owned()),
        ];
        spawn(&self.ns, program, &env, conf.to_string().as_bytes())
    }

    pub fn spawn_cni(&self, cmd: &str, cid: &str, netns: &str, conf: &Value) -> Child {
        self.spawn_plugin(BIN, cmd, cid, netns, conf)
    }

    /// Runs merle-cni to completion.
    pub fn cni(&self, cmd: &str, cid: &str, netns: &str, conf: &Value) -> Out {
        wait_one(self.spawn_cni(cmd, cid, netns, conf))
    }

    /// Runs merle-cni with exactly `env` and `stdin`.
    pub fn cni_raw(&self, env: &[(&str, String)], stdin: &[u8]) -> Out {
        wait_one(spawn(&self.ns, BIN, env, stdin))
    }

    pub fn links(&self) -> Vec<String> {
        link_names(&self.ns.name)
    }

    /// The host ends of pod veths.
    pub fn host_links(&self) -> Vec<String> {
        self.links().into_iter().filter(|l| l.starts_with("mrl")).collect()
    }

    /// Whether the node routes `ip` (a /32 or /128) anywhere.
    pub fn routes_to(&self, ip: IpAddr) -> bool {
        let fam = if ip.is_ipv4() { "-4" } else { "-6" };
        let plen = if ip.is_ipv4() { 32 } else { 128 };
        !self.ns.ip(&[fam, "route", "show", "exact", &format!("{ip}/{plen}")]).unwrap().trim().is_empty()
    }

    /// The file store's state file, if any.
    pub fn ipam_file(&self) -> Option<Vec<u8>> {
        std::fs::read(self.data_dir().join("ipam.json")).ok()
    }

    /// The state file's inode: a new one means the store rewrote it.
    pub fn ipam_inode(&self) -> Option<u64> {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(self.data_dir().join("ipam.json")).ok().map(|m| m.ino())
    }

    /// The file store's blocks.
    pub fn file_blocks(&self) -> Blocks {
        merle_ipam::file::FileStore::open(&self.data_dir()).unwrap().load().unwrap()
    }
}

/// The IPAM handle of container `cid` on `eth0`.
pub fn handle(cid: &str) -> String {
    merle_cni::netconf::attachment(NETWORK, cid, "eth0").handle
}

/// Many pod namespaces made with one `ip -batch` (fast), deleted the same
/// way on drop, also when a test fails.
#[derive(Debug)]
pub struct PodSet {
    names: Vec<String>,
    live: Vec<bool>,
}

/// Runs `ip -batch` over `lines`; with `force`, going on past errors.
fn ip_batch(lines: &str, force: bool) -> Result<(), String> {
    let mut c = Command::new("ip");
    if force {
        c.arg("-force");
    }
    c.args(["-batch", "-"]).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = c.spawn().map_err(|e| format!("cannot run ip: {e}"))?;
    if let Some(mut w) = child.stdin.take() {
        w.write_all(lines.as_bytes()).map_err(|e| format!("cannot feed ip -batch: {e}"))?;
    }
    let out = wait_all(vec![child], Duration::from_secs(60)).pop().ok_or("ip -batch vanished")?;
    if !out.ok() && !force {
        return Err(format!("ip -batch failed: {}", out.stderr.trim()));
    }
    Ok(())
}

impl PodSet {
    pub fn new(tag: &str, n: usize) -> Self {
        let base = format!("mrl-{tag}-{}-{}", std::process::id(), netns::unique());
        let names: Vec<String> = (0..n).map(|i| format!("{base}-{i}")).collect();
        let set = Self { live: vec![true; n], names };
        let lines: String = set.names.iter().map(|n| format!("netns add {n}\n")).collect();
        ip_batch(&lines, false).unwrap();
        set
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn name(&self, i: usize) -> &str {
        &self.names[i]
    }

    pub fn path(&self, i: usize) -> String {
        netns_path(&self.names[i])
    }

    /// Deletes some of the namespaces now.
    pub fn remove(&mut self, which: &[usize]) {
        let mut lines = String::new();
        for &i in which {
            if std::mem::replace(&mut self.live[i], false) {
                lines += &format!("netns del {}\n", self.names[i]);
            }
        }
        if !lines.is_empty() {
            let _ = ip_batch(&lines, true);
        }
    }
}

impl Drop for PodSet {
    fn drop(&mut self) {
        let all: Vec<usize> = (0..self.names.len()).collect();
        self.remove(&all);
    }
}
