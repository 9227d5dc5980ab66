//! FRR's bgpd in a namespace, started directly without zebra, queried with
//! vtysh over its own vty socket directory.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;

use crate::netns::{run, Netns};
use crate::process::Daemon;
use crate::{wait, TempDir};

pub const BGPD: &str = "/usr/lib/frr/bgpd";

#[derive(Debug)]
pub struct Frr {
    pub daemon: Daemon,
    pub vty_dir: PathBuf,
    /// bgpd's pid, for its /var/tmp/frr/bgpd.<pid> directory.
    pid: Option<u32>,
    _dir: TempDir,
}

impl Frr {
    pub fn start(ns: &Netns, name: &str, config: &str) -> anyhow::Result<Self> {
        let dir = TempDir::new(&format!("frr-{name}"))?;
        let conf = dir.path().join("bgpd.conf");
        std::fs::write(&conf, config)?;
        let p = |f: &str| dir.path().join(f).to_string_lossy().into_owned();
        let log = dir.path().join("bgpd.log");
        let (conf_s, pid, zserv, vty, logarg) =
            (p("bgpd.conf"), p("bgpd.pid"), p("zserv.api"), p(""), format!("file:{}", p("bgpd.file.log")));
        let daemon = Daemon::spawn(
            ns,
            &format!("frr {name}"),
            &[
                BGPD,
                "-f",
                &conf_s,
                "-i",
                &pid,
                "-z",
                &zserv,
                "--vty_socket",
                &vty,
                "-Z",
                "-n",
                "-S",
                "-P",
                "0",
                "--limit-fds",
                "1024",
                "--log",
                &logarg,
                "--log-level",
                "info",
            ],
            &log,
            &[],
        )?;
        let vty_dir = dir.path().to_owned();
        let pid = daemon.pid();
        let mut f = Self { daemon, vty_dir, pid, _dir: dir };
        let sock = f.vty_dir.join("bgpd.vty");
        wait::poll("FRR bgpd vty socket", Duration::from_secs(20), || sock.exists().then_some(()))
            .with_context(|| format!("FRR bgpd did not start:\n{}", f.daemon.log_tail(20)))?;
        if !f.daemon.alive() {
            anyhow::bail!("FRR bgpd exited:\n{}", f.daemon.log_tail(20));
        }
        Ok(f)
    }

    pub fn vtysh(&self, cmds: &[&str]) -> anyhow::Result<String> {
        let mut c = Command::new("vtysh");
        c.arg("--vty_socket").arg(&self.vty_dir).args(["-d", "bgpd"]);
        for cmd in cmds {
            c.args(["-c", cmd]);
        }
        run(&mut c)
    }

    pub fn json(&self, cmd: &str) -> anyhow::Result<serde_json::Value> {
        let out = self.vtysh(&[cmd])?;
        serde_json::from_str(&out).with_context(|| format!("vtysh {cmd:?} did not return JSON: {out}"))
    }

    /// The `bgpState` of a neighbour.
    pub fn neighbor_state(&self, addr: &str) -> Option<String> {
        let v = self.json(&format!("show bgp neighbors {addr} json")).ok()?;
        v.get(addr)?.get("bgpState")?.as_str().map(str::to_owned)
    }
}

impl Drop for Frr {
    fn drop(&mut self) {
        self.daemon.stop(Duration::from_secs(3));
        if let Some(pid) = self.pid {
            let _ = std::fs::remove_dir_all(format!("/var/tmp/frr/bgpd.{pid}"));
        }
    }
}
