//! ExaBGP (Debian's `exabgp`, 4.2) in a namespace, driven through its
//! process API the way FRR's topotests drive it: the test hands it API
//! commands (`announce route … attribute [ 0x08 0xc0 0x010203 ]`) one
//! step at a time, and ExaBGP sends each as an UPDATE of its own
//! (`group-updates false`), so a malformed message comes from a third
//! implementation, byte for byte as the command says.
//!
//! The driver is a shell script ExaBGP runs: it prints the file `step<N>`
//! of the temporary directory once it exists, then waits for `step<N+1>`.
//! [`ExaBgp::send`] writes the next step (whole, by rename).

use std::path::PathBuf;

use anyhow::Context;

use crate::netns::Netns;
use crate::process::Daemon;
use crate::TempDir;

pub const EXABGP: &str = "exabgp";

/// One neighbor of ExaBGP's: it connects from `local` (in AS `local_as`)
/// to `peer` (AS `peer_as`), IPv4 unicast.
#[derive(Debug, Clone)]
pub struct Neighbor {
    pub local: String,
    pub local_as: u32,
    pub peer: String,
    pub peer_as: u32,
}

#[derive(Debug)]
pub struct ExaBgp {
    pub daemon: Daemon,
    steps: std::cell::Cell<u32>,
    dir: TempDir,
}

fn config(driver: &str, neighbors: &[Neighbor]) -> String {
    let mut s = format!("process driver {{\n  run /bin/sh {driver};\n  encoder text;\n}}\n");
    for n in neighbors {
        s += &format!(
            "neighbor {peer} {{\n  router-id {local};\n  local-address {local};\n  local-as {las};\n  \
             peer-as {pas};\n  hold-time 90;\n  group-updates false;\n  family {{\n    ipv4 unicast;\n  }}\n  \
             api {{\n    processes [ driver ];\n  }}\n}}\n",
            peer = n.peer,
            local = n.local,
            las = n.local_as,
            pas = n.peer_as,
        );
    }
    s
}

impl ExaBgp {
    pub fn start(ns: &Netns, name: &str, neighbors: &[Neighbor]) -> anyhow::Result<Self> {
        let dir = TempDir::new(&format!("exabgp-{name}"))?;
        let driver = dir.path().join("driver.sh");
        let d = dir.path().display();
        std::fs::write(
            &driver,
            format!(
                "i=1\nwhile :; do\n  if [ -e {d}/step$i ]; then cat {d}/step$i; i=$((i+1)); else sleep 0.05; fi\ndone\n"
            ),
        )?;
        let conf = dir.path().join("exabgp.conf");
        std::fs::write(&conf, config(&driver.to_string_lossy(), neighbors))?;
        let log = dir.path().join("exabgp.log");
        let conf_s = conf.to_string_lossy().into_owned();
        let daemon = Daemon::spawn(
            ns,
            &format!("exabgp {name}"),
            &[EXABGP, &conf_s],
            &log,
            &[
                // Root in a test namespace: no privilege to drop, no
                // named pipes for exabgpcli, no answers to the driver.
                ("exabgp_daemon_user", "root"),
                ("exabgp_daemon_drop", "false"),
                ("exabgp_daemon_daemonize", "false"),
                ("exabgp_api_cli", "false"),
                ("exabgp_api_ack", "false"),
                ("exabgp_log_destination", "stdout"),
                ("exabgp_tcp_bind", ""),
            ],
        )?;
        Ok(Self { daemon, steps: std::cell::Cell::new(0), dir })
    }

    /// Hands ExaBGP the next step of API commands, one per line.
    pub fn send(&self, commands: &[String]) -> anyhow::Result<()> {
        let n = self.steps.get() + 1;
        let tmp: PathBuf = self.dir.path().join(format!(".step{n}"));
        std::fs::write(&tmp, commands.iter().map(|c| format!("{c}\n")).collect::<String>())?;
        std::fs::rename(&tmp, self.dir.path().join(format!("step{n}"))).context("handing over a step")?;
        self.steps.set(n);
        Ok(())
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.daemon.log_tail(lines)
    }
}
