//! FRR's bgpd in a namespace, started directly (without zebra, or with it
//! when the routes must reach the namespace's kernel, as a ToR's must),
//! queried with vtysh over its own vty socket directory.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;

use crate::netns::{run, Netns};
use crate::process::Daemon;
use crate::{wait, TempDir};

pub const BGPD: &str = "/usr/lib/frr/bgpd";
pub const ZEBRA: &str = "/usr/lib/frr/zebra";

#[derive(Debug)]
pub struct Frr {
    pub daemon: Daemon,
    /// zebra, when bgpd's routes go into the kernel.
    zebra: Option<Daemon>,
    pub vty_dir: PathBuf,
    /// bgpd's pid, for its /var/tmp/frr/bgpd.<pid> directory.
    pid: Option<u32>,
    _dir: TempDir,
}

impl Frr {
    pub fn start(ns: &Netns, name: &str, config: &str) -> anyhow::Result<Self> {
        Self::launch(ns, name, config, false)
    }

    /// bgpd with zebra: the best paths (ECMP with `maximum-paths`) are
    /// installed in the namespace's kernel, so the namespace routes by
    /// them.
    pub fn start_routing(ns: &Netns, name: &str, config: &str) -> anyhow::Result<Self> {
        Self::launch(ns, name, config, true)
    }

    fn launch(ns: &Netns, name: &str, config: &str, routing: bool) -> anyhow::Result<Self> {
        let dir = TempDir::new(&format!("frr-{name}"))?;
        let conf = dir.path().join("bgpd.conf");
        std::fs::write(&conf, config)?;
        let p = |f: &str| dir.path().join(f).to_string_lossy().into_owned();
        let log = dir.path().join("bgpd.log");
        let (conf_s, pid, zserv, vty, logarg) =
            (p("bgpd.conf"), p("bgpd.pid"), p("zserv.api"), p(""), format!("file:{}", p("bgpd.file.log")));
        let zebra = if routing {
            std::fs::write(dir.path().join("zebra.conf"), format!("hostname {name}\n"))?;
            // zebra drops to the frr user (it has no -S, and root is not
            // in the frrvty group): the directory must be frr's.
            run(Command::new("chown").args(["frr:frr"]).arg(dir.path()))?;
            let (zconf, zpid, zlog) = (p("zebra.conf"), p("zebra.pid"), format!("file:{}", p("zebra.file.log")));
            let z = Daemon::spawn(
                ns,
                &format!("zebra {name}"),
                &[
                    ZEBRA,
                    "-f",
                    &zconf,
                    "-i",
                    &zpid,
                    "-z",
                    &zserv,
                    "--vty_socket",
                    &vty,
                    "-P",
                    "0",
                    "--limit-fds",
                    "1024",
                    "--log",
                    &zlog,
                ],
                &dir.path().join("zebra.log"),
                &[],
            )?;
            let api = dir.path().join("zserv.api");
            wait::poll("zebra's zserv socket", Duration::from_secs(20), || api.exists().then_some(()))
                .with_context(|| format!("zebra did not start:\n{}", z.log_tail(20)))?;
            Some(z)
        } else {
            None
        };
        let mut argv = vec![BGPD, "-f", &conf_s, "-i", &pid, "-z", &zserv, "--vty_socket", &vty];
        if !routing {
            argv.extend(["-Z", "-n"]);
        }
        argv.extend(["-S", "-P", "0", "--limit-fds", "1024", "--log", &logarg, "--log-level", "info"]);
        let daemon = Daemon::spawn(ns, &format!("frr {name}"), &argv, &log, &[])?;
        let vty_dir = dir.path().to_owned();
        let pid = daemon.pid();
        let mut f = Self { daemon, zebra, vty_dir, pid, _dir: dir };
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
        if let Some(z) = self.zebra.as_mut() {
            z.stop(Duration::from_secs(3));
        }
        if let Some(pid) = self.pid {
            let _ = std::fs::remove_dir_all(format!("/var/tmp/frr/bgpd.{pid}"));
        }
    }
}
