//! containerlab topology files (`*.clab.yml`) brought up in plain network
//! namespaces: `testbed up FILE`, `status`, `exec NODE -- CMD`, `down`.
//!
//! What a file may hold is the part of containerlab's format merle's
//! topologies use, read strictly (an unknown key is an error, not
//! ignored): `name`; `topology.defaults` and `topology.kinds.linux`
//! (`image`, `binds`, `exec`, `cmd`, `env`); `topology.nodes` with `kind:
//! linux`; `topology.links` with `endpoints: ["a:eth1", "b:eth1"]`.
//!
//! Each node is a namespace `clab-<lab>-<node>` (containerlab's container
//! name) whose interfaces have the file's names. Its process runs in a
//! mount namespace of its own, as in a container: `/etc` and `/var/lib`
//! are overlays whose writes stay in the lab's state directory, `/run` is
//! a fresh tmpfs and `/sys/fs/bpf` a fresh bpffs, and the binds are
//! mounted where the file says. The `exec` commands run first (in
//! containerlab they run once the container is up; here before `cmd`, so
//! addresses are there when the daemon starts), then `cmd` (or `sleep
//! infinity`). `merled`, `merlectl` and `merle-cni` resolve to the
//! workspace's builds; in containerlab they are the image's.
//!
//! The state of the labs that are up is kept under [`STATE_ROOT`], so the
//! commands work from separate invocations.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// Where the labs that are up keep their state.
pub const STATE_ROOT: &str = "/run/merle-testbed";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeDef {
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub binds: Vec<String>,
    #[serde(default)]
    pub exec: Vec<String>,
    #[serde(default)]
    pub cmd: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    pub endpoints: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopologyDef {
    #[serde(default)]
    pub defaults: Option<NodeDef>,
    #[serde(default)]
    pub kinds: BTreeMap<String, NodeDef>,
    pub nodes: BTreeMap<String, NodeDef>,
    #[serde(default)]
    pub links: Vec<Link>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Clab {
    pub name: String,
    pub topology: TopologyDef,
}

/// A bind: a file or directory of the host (relative to the topology
/// file) mounted at a path of the node's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bind {
    pub host: PathBuf,
    pub node: PathBuf,
    pub read_only: bool,
}

/// One node, its settings merged (node over kind over defaults).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    pub image: Option<String>,
    pub binds: Vec<Bind>,
    pub exec: Vec<String>,
    pub cmd: Option<String>,
    pub env: BTreeMap<String, String>,
}

/// A link's two ends, (node, interface) each.
pub type Ends = [(String, String); 2];

/// A topology file, read and checked.
#[derive(Debug, Clone)]
pub struct Topology {
    pub name: String,
    pub dir: PathBuf,
    pub nodes: Vec<Node>,
    pub links: Vec<Ends>,
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 40 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn endpoint(e: &str, nodes: &BTreeMap<String, NodeDef>) -> Result<(String, String), String> {
    let (n, i) = e.split_once(':').ok_or_else(|| format!("endpoint {e:?} is not NODE:INTERFACE"))?;
    if !nodes.contains_key(n) {
        return Err(format!("endpoint {e:?} names no node of the topology"));
    }
    // IFNAMSIZ: 15 characters and the NUL.
    if i.is_empty() || i.len() > 15 || i.contains('/') || i.contains(char::is_whitespace) {
        return Err(format!("endpoint {e:?}: {i:?} is not an interface name (1 to 15 characters)"));
    }
    Ok((n.to_owned(), i.to_owned()))
}

fn bind(b: &str, dir: &Path) -> Result<Bind, String> {
    let parts: Vec<&str> = b.split(':').collect();
    let (host, node, mode) = match parts.as_slice() {
        [h, n] => (*h, *n, "rw"),
        [h, n, m] => (*h, *n, *m),
        _ => return Err(format!("bind {b:?} is not HOST:NODE[:ro|rw]")),
    };
    if !["ro", "rw"].contains(&mode) {
        return Err(format!("bind {b:?}: mode {mode:?} is not ro or rw"));
    }
    if !node.starts_with('/') {
        return Err(format!("bind {b:?}: {node:?} is not an absolute path in the node"));
    }
    let host = if Path::new(host).is_absolute() { PathBuf::from(host) } else { dir.join(host) };
    if !host.exists() {
        return Err(format!("bind {b:?}: {} does not exist", host.display()));
    }
    Ok(Bind { host, node: PathBuf::from(node), read_only: mode == "ro" })
}

impl Topology {
    /// Parses and checks a file's text; `dir` is where relative binds
    /// start (the file's directory).
    pub fn parse(text: &str, dir: &Path) -> Result<Self, String> {
        let c: Clab = serde_yaml_ng::from_str(text).map_err(|e| format!("not a topology this runner reads: {e}"))?;
        if !valid_name(&c.name) {
            return Err(format!("name {:?}: letters, digits, '-' and '_', at most 40", c.name));
        }
        let t = &c.topology;
        if let Some(k) = t.kinds.keys().find(|k| *k != "linux") {
            return Err(format!("topology.kinds.{k}: only linux nodes run in namespaces"));
        }
        let mut nodes = Vec::new();
        for (name, n) in &t.nodes {
            if !valid_name(name) {
                return Err(format!("node {name:?}: letters, digits, '-' and '_', at most 40"));
            }
            let d = t.defaults.clone().unwrap_or_default();
            let kind = n.kind.clone().or(d.kind.clone()).unwrap_or_else(|| "linux".into());
            if kind != "linux" {
                return Err(format!("node {name}: kind {kind:?}: only linux nodes run in namespaces"));
            }
            let k = t.kinds.get(&kind).cloned().unwrap_or_default();
            let pick = |f: fn(&NodeDef) -> Option<String>| f(n).or_else(|| f(&k)).or_else(|| f(&d));
            let pick_list = |f: fn(&NodeDef) -> &Vec<String>| {
                [f(n), f(&k), f(&d)].into_iter().find(|l| !l.is_empty()).cloned().unwrap_or_default()
            };
            let mut env = d.env.clone();
            env.extend(k.env.clone());
            env.extend(n.env.clone());
            let binds = pick_list(|x| &x.binds)
                .iter()
                .map(|b| bind(b, dir).map_err(|e| format!("node {name}: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            nodes.push(Node {
                name: name.clone(),
                image: pick(|x| x.image.clone()),
                binds,
                exec: pick_list(|x| &x.exec),
                cmd: pick(|x| x.cmd.clone()),
                env,
            });
        }
        let mut links = Vec::new();
        let mut used = std::collections::BTreeSet::new();
        for (i, l) in t.links.iter().enumerate() {
            let [a, b] = l.endpoints.as_slice() else {
                return Err(format!("topology.links[{i}]: a link has two endpoints"));
            };
            let ends = [endpoint(a, &t.nodes)?, endpoint(b, &t.nodes)?];
            for e in &ends {
                if !used.insert(e.clone()) {
                    return Err(format!("topology.links[{i}]: {}:{} is on two links", e.0, e.1));
                }
            }
            links.push(ends);
        }
        Ok(Self { name: c.name, dir: dir.to_owned(), nodes, links })
    }

    pub fn load(file: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
        let dir = file.parent().map(Path::to_owned).unwrap_or_default();
        let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
        Self::parse(&text, &dir).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))
    }

    pub fn netns(&self, node: &str) -> String {
        format!("clab-{}-{node}", self.name)
    }
}

/// Quotes a word for sh.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The shell a node's process starts with: its mounts, its exec
/// commands, then its command.
pub fn prologue(node: &Node, state: &Path, bin_dir: &Path) -> String {
    let s = state.display();
    let mut o = String::from("set -e\n");
    for (d, tag) in [("/etc", "etc"), ("/var/lib", "varlib")] {
        o += &format!(
            "mkdir -p {s}/{tag}/up {s}/{tag}/work\n\
             mount -t overlay overlay -o lowerdir={d},upperdir={s}/{tag}/up,workdir={s}/{tag}/work {d}\n"
        );
    }
    o += "mount -t tmpfs -o mode=0755 tmpfs /run\nmount -t bpf bpf /sys/fs/bpf 2>/dev/null || true\n";
    for b in &node.binds {
        let (h, n) = (sh_quote(&b.host.display().to_string()), sh_quote(&b.node.display().to_string()));
        if b.host.is_dir() {
            o += &format!("mkdir -p {n}\n");
        } else {
            o += &format!("mkdir -p \"$(dirname {n})\"\n[ -e {n} ] || : > {n}\n");
        }
        o += &format!("mount --bind {h} {n}\n");
        if b.read_only {
            o += &format!("mount -o remount,bind,ro {n}\n");
        }
    }
    o += &format!("export PATH={}:$PATH\n", sh_quote(&bin_dir.display().to_string()));
    for (k, v) in &node.env {
        o += &format!("export {k}={}\n", sh_quote(v));
    }
    for e in &node.exec {
        o += &format!("{e}\n");
    }
    o += &format!("exec {}\n", node.cmd.as_deref().unwrap_or("sleep infinity"));
    o
}

/// A lab that is up, as its state file records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lab {
    pub name: String,
    pub file: PathBuf,
    /// node → (namespace, pid of its process).
    pub nodes: BTreeMap<String, (String, u32)>,
    pub merled: Vec<String>,
}

fn state_dir(name: &str) -> PathBuf {
    Path::new(STATE_ROOT).join(name)
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    crate::netns::run(Command::new("ip").args(args)).map(|_| ())
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.rsplit_once(')').is_some_and(|(_, r)| r.trim_start().starts_with('Z')))
            .unwrap_or(false)
}

/// Brings a topology up in namespaces; `bin_dir` holds merled & co.
pub fn up(file: &Path, bin_dir: &Path) -> anyhow::Result<Lab> {
    up_named(file, bin_dir, None)
}

/// [`up`] under another lab name (tests: names of their own).
pub fn up_named(file: &Path, bin_dir: &Path, name: Option<&str>) -> anyhow::Result<Lab> {
    let mut t = Topology::load(file)?;
    if let Some(n) = name {
        t.name = n.to_owned();
    }
    let dir = state_dir(&t.name);
    if dir.join("lab.json").exists() {
        bail!("lab {} is already up: `testbed down {}` first", t.name, t.name);
    }
    std::fs::create_dir_all(&dir)?;
    let mut lab = Lab {
        name: t.name.clone(),
        file: std::fs::canonicalize(file)?,
        nodes: BTreeMap::new(),
        merled: t
            .nodes
            .iter()
            .filter(|n| n.cmd.as_deref().is_some_and(|c| c.contains("merled")))
            .map(|n| n.name.clone())
            .collect(),
    };
    let result = (|| -> anyhow::Result<()> {
        for n in &t.nodes {
            let ns = t.netns(&n.name);
            ip(&["netns", "add", &ns]).with_context(|| format!("node {}", n.name))?;
            lab.nodes.insert(n.name.clone(), (ns.clone(), 0));
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        for [(a, ai), (b, bi)] in &t.links {
            let (na, nb) = (t.netns(a), t.netns(b));
            ip(&["-n", &na, "link", "add", ai, "type", "veth", "peer", "name", bi, "netns", &nb])
                .with_context(|| format!("link {a}:{ai} - {b}:{bi}"))?;
            ip(&["-n", &na, "link", "set", ai, "up"])?;
            ip(&["-n", &nb, "link", "set", bi, "up"])?;
        }
        for n in &t.nodes {
            let ns = t.netns(&n.name);
            let state = dir.join(&n.name);
            std::fs::create_dir_all(&state)?;
            let script = prologue(n, &state, bin_dir);
            std::fs::write(state.join("start.sh"), &script)?;
            let log = std::fs::File::create(state.join("log"))?;
            use std::os::unix::process::CommandExt;
            let child = Command::new("ip")
                .args(["netns", "exec", &ns, "sh", "-c", &script])
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .process_group(0)
                .spawn()
                .with_context(|| format!("starting node {}", n.name))?;
            lab.nodes.insert(n.name.clone(), (ns, child.id()));
        }
        Ok(())
    })();
    std::fs::write(dir.join("lab.json"), serde_json::to_vec_pretty(&lab)?)?;
    if let Err(e) = result {
        let _ = down(&lab.name);
        return Err(e);
    }
    // A node whose start failed (a mount, an exec line) ends at once.
    std::thread::sleep(Duration::from_millis(300));
    for (n, (_, pid)) in &lab.nodes {
        if !alive(*pid) {
            let log = std::fs::read_to_string(dir.join(n).join("log")).unwrap_or_default();
            let _ = down(&lab.name);
            bail!("node {n} did not start:\n{log}");
        }
    }
    Ok(lab)
}

/// The labs that are up.
pub fn labs() -> Vec<Lab> {
    let Ok(d) = std::fs::read_dir(STATE_ROOT) else { return Vec::new() };
    let mut v: Vec<Lab> = d
        .flatten()
        .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path().join("lab.json")).ok()?).ok())
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

fn find_lab(name: Option<&str>) -> anyhow::Result<Lab> {
    let all = labs();
    match (name, all.as_slice()) {
        (Some(n), _) => all.into_iter().find(|l| l.name == n).with_context(|| format!("no lab {n} is up")),
        (None, [one]) => Ok(one.clone()),
        (None, []) => bail!("no lab is up"),
        (None, _) => bail!(
            "several labs are up: name one ({})",
            all.iter().map(|l| l.name.as_str()).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// A command inside a node: its network and mount namespaces.
pub fn node_command(lab: &Lab, node: &str, argv: &[String]) -> anyhow::Result<Command> {
    let (_, pid) = lab.nodes.get(node).with_context(|| format!("lab {} has no node {node}", lab.name))?;
    if !alive(*pid) {
        bail!(
            "node {node}'s process ({pid}) is not running; see {}",
            state_dir(&lab.name).join(node).join("log").display()
        );
    }
    let mut c = Command::new("nsenter");
    c.args(["-t", &pid.to_string(), "-m", "-n", "--"]).args(argv);
    Ok(c)
}

/// `NODE` or `LAB/NODE`.
pub fn resolve_node(spec: &str) -> anyhow::Result<(Lab, String)> {
    if let Some((l, n)) = spec.split_once('/') {
        return Ok((find_lab(Some(l))?, n.to_owned()));
    }
    let hits: Vec<Lab> = labs().into_iter().filter(|l| l.nodes.contains_key(spec)).collect();
    match hits.as_slice() {
        [one] => Ok((one.clone(), spec.to_owned())),
        [] => bail!("no lab that is up has a node {spec}"),
        _ => bail!("several labs have a node {spec}: say LAB/{spec}"),
    }
}

/// One line per node: its process, and for merled nodes their sessions.
pub fn status(name: Option<&str>, bin_dir: &Path) -> anyhow::Result<String> {
    let lab = find_lab(name)?;
    let mut o = format!("lab {} ({})\n", lab.name, lab.file.display());
    for (n, (ns, pid)) in &lab.nodes {
        let state = if alive(*pid) { "running" } else { "STOPPED" };
        let mut line = format!("  {n:<10} {ns:<28} pid {pid:<8} {state}");
        if lab.merled.contains(n) && alive(*pid) {
            let ctl = bin_dir.join("merlectl").display().to_string();
            let out = node_command(&lab, n, &[ctl, "--json".into(), "status".into()])?.output()?;
            match serde_json::from_slice::<serde_json::Value>(&out.stdout) {
                Ok(v) => {
                    let peers = v["peers"].as_array().cloned().unwrap_or_default();
                    let up = peers.iter().filter(|p| p["state"] == "Established").count();
                    line += &format!("  BGP {up}/{} Established", peers.len());
                }
                Err(_) => line += "  merled not answering yet",
            }
        }
        o += &line;
        o.push('\n');
    }
    Ok(o)
}

/// The processes of a node besides its own: those in its mount
/// namespace (what it started, what `testbed exec` ran) and those in the
/// network namespaces it holds in its `/run/netns` (its pods, entered by
/// `ip netns exec`, which makes a mount namespace of its own).
fn inside_node(pid: u32) -> Vec<u32> {
    use std::os::unix::fs::MetadataExt;
    let Ok(mnt) = std::fs::read_link(format!("/proc/{pid}/ns/mnt")) else { return Vec::new() };
    let nets: Vec<PathBuf> = std::fs::read_dir(format!("/proc/{pid}/root/run/netns"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::metadata(e.path()).ok())
                .map(|m| PathBuf::from(format!("net:[{}]", m.ino())))
                .collect()
        })
        .unwrap_or_default();
    let Ok(d) = std::fs::read_dir("/proc") else { return Vec::new() };
    d.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| *p != pid)
        .filter(|p| {
            std::fs::read_link(format!("/proc/{p}/ns/mnt")).is_ok_and(|m| m == mnt)
                || std::fs::read_link(format!("/proc/{p}/ns/net")).is_ok_and(|n| nets.contains(&n))
        })
        .collect()
}

/// Stops every node's process and removes its namespace and state.
pub fn down(name: &str) -> anyhow::Result<()> {
    let lab = find_lab(Some(name))?;
    let mut inside: Vec<u32> = Vec::new();
    for (_, pid) in lab.nodes.values() {
        if *pid > 0 && alive(*pid) {
            inside.extend(inside_node(*pid));
            // The process group: the node's process and what it started.
            let _ = Command::new("kill").args(["-TERM", "--", &format!("-{pid}")]).output();
        }
    }
    // As a container's end ends everything in it.
    for p in inside {
        let _ = Command::new("kill").args(["-KILL", &p.to_string()]).output();
    }
    let _ = crate::wait::poll("the nodes to stop", Duration::from_secs(5), || {
        lab.nodes.values().all(|(_, p)| !alive(*p)).then_some(())
    });
    for (ns, pid) in lab.nodes.values() {
        if *pid > 0 && alive(*pid) {
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{pid}")]).output();
        }
        // Anything else left inside.
        if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
            for p in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-KILL", p]).output();
            }
        }
        let _ = Command::new("ip").args(["netns", "del", ns]).output();
    }
    std::fs::remove_dir_all(state_dir(name)).with_context(|| format!("removing {}", state_dir(name).display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const MESH: &str = r#"
name: t1
topology:
  defaults:
    kind: linux
    image: merle:dev
  nodes:
    sw:
      image: alpine:3
      exec: ["ip link add br0 type bridge"]
    n1:
      cmd: merled --config /etc/merle/merled.toml
      binds: ["n1.toml:/etc/merle/merled.toml:ro"]
      env: { MERLE_LOG: debug }
  links:
    - endpoints: ["n1:eth1", "sw:eth1"]
"#;

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("merle-topo-unit-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("n1.toml"), "").unwrap();
        d
    }

    #[test]
    fn a_file_is_read_with_defaults_merged_and_its_binds_resolved() {
        let d = dir();
        let t = Topology::parse(MESH, &d).unwrap();
        assert_eq!(t.netns("n1"), "clab-t1-n1");
        let n1 = t.nodes.iter().find(|n| n.name == "n1").unwrap();
        assert_eq!(n1.image.as_deref(), Some("merle:dev"));
        assert_eq!(
            n1.binds,
            [Bind { host: d.join("n1.toml"), node: "/etc/merle/merled.toml".into(), read_only: true }]
        );
        assert_eq!(t.links, [[("n1".into(), "eth1".into()), ("sw".into(), "eth1".into())]]);
        let p = prologue(n1, Path::new("/run/x/n1"), Path::new("/w/target/debug"));
        assert!(
            p.contains("mount --bind")
                && p.contains("remount,bind,ro")
                && p.ends_with("exec merled --config /etc/merle/merled.toml\n"),
            "{p}"
        );
        assert!(p.contains("export MERLE_LOG='debug'"), "{p}");
        let sw = t.nodes.iter().find(|n| n.name == "sw").unwrap();
        assert!(prologue(sw, Path::new("/s"), Path::new("/b"))
            .ends_with("ip link add br0 type bridge\nexec sleep infinity\n"));
    }

    #[test]
    fn mistakes_are_named() {
        let d = dir();
        for (bad, want) in [
            (MESH.replace("n1:eth1\", \"sw", "n9:eth1\", \"sw"), "names no node"),
            (MESH.replace("n1:eth1", "n1:averyveryverylongname"), "is not an interface name"),
            (MESH.replace("n1.toml:", "missing.toml:"), "does not exist"),
            (MESH.replace("    kind: linux", "    kind: nokia_srlinux"), "only linux nodes"),
            (MESH.replace("  links:", "  mgmt: {}\n  links:"), "unknown field `mgmt`"),
            (MESH.replace("sw:eth1\"]", "sw:eth1\", \"n1:eth2\"]"), "two endpoints"),
            (format!("{MESH}    - endpoints: [\"n1:eth1\", \"sw:eth2\"]\n"), "n1:eth1 is on two links"),
        ] {
            let e = Topology::parse(&bad, &d).unwrap_err();
            assert!(e.contains(want), "{want}: {e}");
        }
    }
}
