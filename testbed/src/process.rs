//! Daemons running in a namespace, stopped on drop.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;

use crate::netns::Netns;

/// A child process with its log file. Dropping it sends SIGTERM, waits a
/// little, then SIGKILLs.
#[derive(Debug)]
pub struct Daemon {
    pub name: String,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    /// Starts `argv` in `ns`, with stdout and stderr in `log`.
    pub fn spawn(ns: &Netns, name: &str, argv: &[&str], log: &Path, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut c = ns.command(argv[0]);
        c.args(&argv[1..]);
        Self::spawn_command(c, name, log, env)
    }

    /// Starts a prepared command (in whatever namespace it enters).
    pub fn spawn_command(mut c: Command, name: &str, log: &Path, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let f = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        c.stdin(Stdio::null()).stdout(f.try_clone()?).stderr(f);
        for (k, v) in env {
            c.env(k, v);
        }
        let child = c.spawn().with_context(|| format!("cannot start {name}"))?;
        Ok(Self { name: name.to_owned(), log: log.to_owned(), child: Some(child) })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The exit status, waiting up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let c = self.child.as_mut()?;
        crate::wait::poll(&format!("{} to exit", self.name), timeout, || c.try_wait().ok().flatten()).ok()
    }

    /// The last lines of the log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let v: Vec<&str> = s.lines().collect();
        v[v.len().saturating_sub(lines)..].join("\n")
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        let Some(mut c) = self.child.take() else { return };
        // `ip netns exec` execs the program, so the child is the daemon.
        let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).output();
        if crate::wait::poll("exit", grace, || c.try_wait().ok().flatten()).is_err() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGKILL at once: a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(3));
    }
}
