//! BIRD 2 in a namespace, configured from a string, queried with birdc.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;

use crate::netns::{run, Netns};
use crate::process::Daemon;
use crate::{wait, TempDir};

#[derive(Debug)]
pub struct Bird {
    pub daemon: Daemon,
    pub ctl: PathBuf,
    pub config: PathBuf,
    _dir: TempDir,
}

impl Bird {
    pub fn start(ns: &Netns, name: &str, config: &str) -> anyhow::Result<Self> {
        let dir = TempDir::new(&format!("bird-{name}"))?;
        let conf = dir.path().join("bird.conf");
        std::fs::write(&conf, config)?;
        let ctl = dir.path().join("bird.ctl");
        let pid = dir.path().join("bird.pid");
        let log = dir.path().join("bird.log");
        let daemon = Daemon::spawn(
            ns,
            &format!("bird {name}"),
            &["bird", "-f", "-c", path(&conf)?, "-s", path(&ctl)?, "-P", path(&pid)?],
            &log,
            &[],
        )?;
        let mut b = Self { daemon, ctl, config: conf, _dir: dir };
        let ctl = b.ctl.clone();
        wait::poll("BIRD control socket", Duration::from_secs(20), || ctl.exists().then_some(()))
            .with_context(|| format!("BIRD did not start:\n{}", b.daemon.log_tail(20)))?;
        if !b.daemon.alive() {
            anyhow::bail!("BIRD exited:\n{}", b.daemon.log_tail(20));
        }
        Ok(b)
    }

    pub fn birdc(&self, args: &[&str]) -> anyhow::Result<String> {
        run(Command::new("birdc").arg("-s").arg(&self.ctl).args(args))
    }

    /// Runs the CLI commands of `script` (one per line) in one birdc call.
    pub fn birdc_script(&self, script: &str) -> anyhow::Result<String> {
        use std::io::Write as _;
        let mut child = Command::new("birdc")
            .arg("-s")
            .arg(&self.ctl)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("cannot run birdc")?;
        child.stdin.take().context("birdc stdin")?.write_all(script.as_bytes())?;
        let out = child.wait_with_output()?;
        anyhow::ensure!(out.status.success(), "birdc failed: {}", String::from_utf8_lossy(&out.stderr));
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Whether protocol `proto` shows Established.
    pub fn established(&self, proto: &str) -> bool {
        self.birdc(&["show", "protocols", proto]).is_ok_and(|s| s.contains("Established"))
    }
}

fn path(p: &std::path::Path) -> anyhow::Result<&str> {
    p.to_str().context("non-UTF-8 path")
}
