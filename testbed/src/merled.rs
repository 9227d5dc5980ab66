//! merled in a namespace, with its config written from a string and
//! queried through merlectl.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

use crate::netns::{run, Netns};
use crate::process::Daemon;
use crate::{wait, TempDir};

/// Where merled and merlectl are: next to the running executable (the
/// testbed binary), or in its parent (integration tests live in deps/).
pub fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    for dir in exe.ancestors().skip(1).take(2) {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    anyhow::bail!("cannot find {name} next to {}; build the workspace first", exe.display())
}

/// A test that does not ask for the eBPF datapath runs the kernel path:
/// merled under `ip netns exec` would otherwise pin into a bpffs of its
/// private mount namespace, where the test cannot remove it. One that does
/// gets a cgroup v2 mount point in its own directory (`cgroup_root`), so
/// that nothing is left under /run.
fn with_dataplane(text: &str, dir: &Path) -> String {
    if text.contains("cgroup_root") {
        text.to_owned()
    } else if text.contains("[dataplane]\n") {
        text.replacen("[dataplane]\n", &format!("[dataplane]\ncgroup_root = \"{}\"\n", dir.join("cgroup").display()), 1)
    } else {
        format!("{text}\n[dataplane]\nmode = \"kernel\"\n")
    }
}

#[derive(Debug)]
pub struct Merled {
    pub daemon: Daemon,
    pub socket: PathBuf,
    pub config: PathBuf,
    pub merlectl: PathBuf,
    restarts: std::sync::atomic::AtomicU32,
    _dir: TempDir,
}

impl Merled {
    /// Writes `config` (with `{socket}` replaced by a private control
    /// socket path) and starts merled in `ns`.
    pub fn start(ns: &Netns, name: &str, merled: &Path, merlectl: &Path, config: &str) -> anyhow::Result<Self> {
        let dir = TempDir::new(&format!("merled-{name}"))?;
        let socket = dir.path().join("merled.sock");
        let conf = dir.path().join("merled.toml");
        std::fs::write(&conf, with_dataplane(&config.replace("{socket}", &socket.to_string_lossy()), dir.path()))?;
        let log = dir.path().join("merled.log");
        let bin = merled.to_str().context("non-UTF-8 path")?;
        let daemon = Daemon::spawn(
            ns,
            &format!("merled {name}"),
            &[bin, "--config", conf.to_str().context("path")?],
            &log,
            &[("MERLE_LOG", "debug")],
        )?;
        let mut m = Self {
            daemon,
            socket,
            config: conf,
            merlectl: merlectl.to_owned(),
            restarts: std::sync::atomic::AtomicU32::new(0),
            _dir: dir,
        };
        let sock = m.socket.clone();
        let started = wait::poll("merled control socket", Duration::from_secs(20), || sock.exists().then_some(()));
        if started.is_err() || !m.daemon.alive() {
            anyhow::bail!("merled {name} did not start:\n{}", m.daemon.log_tail(30));
        }
        Ok(m)
    }

    /// Stops merled (SIGTERM, as an upgrade or a pod restart would) and
    /// starts it again in `ns` with the same configuration and socket.
    pub fn restart(&mut self, ns: &Netns, merled: &Path) -> anyhow::Result<()> {
        self.daemon.stop(Duration::from_secs(10));
        let n = self.restarts.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let log = self._dir.path().join(format!("merled-{n}.log"));
        let bin = merled.to_str().context("non-UTF-8 path")?;
        self.daemon = Daemon::spawn(
            ns,
            "merled",
            &[bin, "--config", self.config.to_str().context("path")?],
            &log,
            &[("MERLE_LOG", "debug")],
        )?;
        let sock = self.socket.clone();
        let up = wait::poll("merled control socket", Duration::from_secs(20), || sock.exists().then_some(()));
        if up.is_err() || !self.daemon.alive() {
            anyhow::bail!("merled did not start again:\n{}", self.daemon.log_tail(30));
        }
        Ok(())
    }

    /// Replaces the configuration file (merled reloads it), keeping the
    /// kernel dataplane of [`Merled::start`] unless `text` says otherwise.
    pub fn write_config(&self, text: &str) -> anyhow::Result<()> {
        let text = text.replace("{socket}", &self.socket.to_string_lossy());
        std::fs::write(&self.config, with_dataplane(&text, self._dir.path()))?;
        Ok(())
    }

    pub fn merlectl(&self, args: &[&str]) -> anyhow::Result<String> {
        run(Command::new(&self.merlectl).arg("--socket").arg(&self.socket).args(args))
    }

    pub fn status(&self) -> anyhow::Result<Value> {
        Ok(serde_json::from_str(&self.merlectl(&["status", "--json"])?)?)
    }

    pub fn routes(&self) -> anyhow::Result<Vec<Value>> {
        let v: Value = serde_json::from_str(&self.merlectl(&["routes", "--json"])?)?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// The JSON status of one peer.
    pub fn peer(&self, addr: &str) -> Option<Value> {
        let s = self.status().ok()?;
        s["peers"].as_array()?.iter().find(|p| p["address"] == addr).cloned()
    }

    pub fn peer_state(&self, addr: &str) -> Option<String> {
        self.peer(addr)?["state"].as_str().map(str::to_owned)
    }

    /// Routes for `prefix` learned from `peer`.
    pub fn route(&self, prefix: &str, peer: &str) -> Option<Value> {
        self.routes().ok()?.into_iter().find(|r| r["prefix"] == prefix && r["peer"] == peer)
    }
}
