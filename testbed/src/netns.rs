//! Network namespaces and veth links, driven through iproute2.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{bail, Context};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A number unique within this process.
pub fn unique() -> u32 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// Runs a command and returns its stdout, or an error with its stderr.
pub fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A network namespace with a unique name, deleted on drop together with
/// any process still inside it.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates `mrl-<tag>-<pid>-<n>` with loopback up, IPv6 DAD off (so
    /// addresses are usable at once) and forwarding on.
    pub fn new(tag: &str) -> anyhow::Result<Self> {
        let name = format!("mrl-{tag}-{}-{}", std::process::id(), unique());
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        for (k, v) in [
            ("net.ipv6.conf.all.accept_dad", "0"),
            ("net.ipv6.conf.default.accept_dad", "0"),
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv6.conf.all.forwarding", "1"),
        ] {
            ns.exec(&["sysctl", "-qw", &format!("{k}={v}")])?;
        }
        Ok(ns)
    }

    /// A command that runs inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    pub fn exec(&self, argv: &[&str]) -> anyhow::Result<String> {
        let mut c = self.command(argv[0]);
        c.args(&argv[1..]);
        run(&mut c)
    }

    /// `ip -n <ns> ...`
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut c = Command::new("ip");
        c.args(["-n", &self.name]).args(args);
        run(&mut c)
    }

    pub fn add_addr(&self, dev: &str, cidr: &str) -> anyhow::Result<()> {
        if cidr.contains(':') {
            self.ip(&["addr", "add", cidr, "dev", dev, "nodad"])?;
        } else {
            self.ip(&["addr", "add", cidr, "dev", dev])?;
        }
        Ok(())
    }

    /// The routes of one protocol (`ip -j <family> route show proto
    /// <proto>`), each in `ip route` words — `[type ]dst[ via gw dev
    /// d][ onlink][ nexthop via gw dev d]…` — sorted.
    pub fn routes_of_proto(&self, family: &str, proto: &str) -> anyhow::Result<Vec<String>> {
        let v: serde_json::Value = serde_json::from_str(&self.ip(&[family, "-j", "route", "show", "proto", proto])?)?;
        let text = |r: &serde_json::Value, k: &str| r[k].as_str().unwrap_or_default().to_owned();
        let mut out: Vec<String> = v
            .as_array()
            .context("ip -j route: not an array")?
            .iter()
            .map(|r| {
                let mut s = String::new();
                if let Some(t) = r["type"].as_str() {
                    s += &format!("{t} ");
                }
                s += &text(r, "dst");
                if r["gateway"].is_string() {
                    s += &format!(" via {} dev {}", text(r, "gateway"), text(r, "dev"));
                }
                if r["flags"].as_array().is_some_and(|f| f.iter().any(|x| x == "onlink")) {
                    s += " onlink";
                }
                for h in r["nexthops"].as_array().into_iter().flatten() {
                    s += &format!(" nexthop via {} dev {}", text(h, "gateway"), text(h, "dev"));
                }
                s
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// Runs `f` on a new thread that has entered this namespace, so test
    /// code can open sockets inside it.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> anyhow::Result<std::thread::JoinHandle<anyhow::Result<T>>> {
        spawn_in(&self.name, f)
    }

    /// The namespace's file.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.name))
    }

    /// PIDs of processes inside the namespace.
    pub fn pids(&self) -> Vec<u32> {
        run(Command::new("ip").args(["netns", "pids", &self.name]))
            .map(|s| s.split_whitespace().filter_map(|p| p.parse().ok()).collect())
            .unwrap_or_default()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for pid in self.pids() {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).output();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

/// Links two namespaces with a veth pair and brings both ends up.
pub fn veth(a: &Netns, a_dev: &str, b: &Netns, b_dev: &str) -> anyhow::Result<()> {
    a.ip(&["link", "add", a_dev, "type", "veth", "peer", "name", b_dev, "netns", &b.name])?;
    a.ip(&["link", "set", a_dev, "up"])?;
    b.ip(&["link", "set", b_dev, "up"])?;
    Ok(())
}

/// A layer-2 segment: a "switch" namespace with a bridge, and hosts that
/// each get a veth into it. Hosts are addressed `<prefix>.<index>/24`.
#[derive(Debug)]
pub struct Lan {
    pub hosts: Vec<Netns>,
    pub switch: Netns,
}

impl Lan {
    /// `count` hosts on 10.0.0.0/24 (and fd00::/64): host i has 10.0.0.i
    /// and fd00::i, for i in 1..=count; the switch has 10.0.0.254, the
    /// hosts' default gateway.
    pub fn new(tag: &str, count: u8) -> anyhow::Result<Self> {
        Self::with_subnet(tag, count, "10.0.0", "fd00:")
    }

    /// Like [`Lan::new`] on `<v4>.0/24` and `<v6>:/64`, e.g. `"10.1.1"` and
    /// `"fd00:1:"`.
    pub fn with_subnet(tag: &str, count: u8, v4: &str, v6: &str) -> anyhow::Result<Self> {
        let switch = Netns::new(&format!("{tag}-sw"))?;
        switch.ip(&["link", "add", "br0", "type", "bridge"])?;
        // A bridge takes the lowest MAC of its ports unless given one, and
        // would change it when a port goes (a host namespace deleted, which
        // the kernel finishes asynchronously): hosts that had resolved the
        // gateway would then send to a MAC nobody owns until their ARP
        // entry is re-validated, some 30-45 s later.
        switch.ip(&["link", "set", "br0", "address", "02:00:00:00:00:fe"])?;
        switch.ip(&["link", "set", "br0", "up"])?;
        switch.add_addr("br0", &format!("{v4}.254/24"))?;
        switch.add_addr("br0", &format!("{v6}:254/64"))?;
        let mut hosts = Vec::new();
        for i in 1..=count {
            let h = Netns::new(&format!("{tag}-{i}"))?;
            let port = format!("p{i}");
            veth(&h, "eth0", &switch, &port)?;
            switch.ip(&["link", "set", &port, "master", "br0"])?;
            h.add_addr("eth0", &format!("{v4}.{i}/24"))?;
            h.add_addr("eth0", &format!("{v6}:{i}/64"))?;
            h.ip(&["route", "add", "default", "via", &format!("{v4}.254")])?;
            hosts.push(h);
        }
        Ok(Self { hosts, switch })
    }
}

impl Lan {
    /// `count` hosts behind one bridge, host `i` (from 0) with the address
    /// `addr(i)` on its eth0 and no default route: LANs larger than a /24.
    pub fn scale(tag: &str, count: usize, addr: impl Fn(usize) -> String) -> anyhow::Result<Self> {
        let switch = Netns::new(&format!("{tag}-sw"))?;
        switch.ip(&["link", "add", "br0", "type", "bridge"])?;
        switch.ip(&["link", "set", "br0", "address", "02:00:00:00:00:fe"])?;
        switch.ip(&["link", "set", "br0", "up"])?;
        let mut hosts = Vec::new();
        for i in 0..count {
            let h = Netns::new(&format!("{tag}-{i}"))?;
            let port = format!("p{i}");
            veth(&h, "eth0", &switch, &port)?;
            switch.ip(&["link", "set", &port, "master", "br0"])?;
            h.add_addr("eth0", &addr(i))?;
            hosts.push(h);
        }
        Ok(Self { hosts, switch })
    }
}

/// Runs `f` on a new thread inside the namespace called `name`.
pub fn spawn_in<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<std::thread::JoinHandle<anyhow::Result<T>>> {
    spawn_at(Path::new(&format!("/run/netns/{name}")), f)
}

/// Runs `f` on a new thread inside the namespace whose file is `path`:
/// `/run/netns/NAME`, `/proc/PID/ns/net`, or a namespace another mount
/// namespace holds (`/proc/PID/root/run/netns/NAME`).
pub fn spawn_at<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<std::thread::JoinHandle<anyhow::Result<T>>> {
    let fd = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(std::thread::spawn(move || {
        // setns(2) moves only the calling thread, which is ours alone.
        nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET).context("setns")?;
        Ok(f())
    }))
}

/// A network namespace a thread can enter: a [`Netns`] of the testbed's,
/// or any namespace file ([`NsPath`]), such as a pod's inside a topology
/// node.
pub trait Enter {
    fn netns_path(&self) -> PathBuf;

    /// Runs `f` on a new thread inside the namespace.
    fn enter<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> anyhow::Result<std::thread::JoinHandle<anyhow::Result<T>>> {
        spawn_at(&self.netns_path(), f)
    }
}

impl Enter for Netns {
    fn netns_path(&self) -> PathBuf {
        self.path()
    }
}

/// A namespace by its file.
#[derive(Debug, Clone)]
pub struct NsPath(pub PathBuf);

impl Enter for NsPath {
    fn netns_path(&self) -> PathBuf {
        self.0.clone()
    }
}
