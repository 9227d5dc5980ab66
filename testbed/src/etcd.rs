//! A real etcd (Debian's etcd-server) for tests: one member, a temporary
//! data directory, stopped and removed on drop.

use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::netns::Netns;
use crate::process::Daemon;
use crate::{wait, TempDir};

pub const ETCD: &str = "/usr/bin/etcd";

#[derive(Debug)]
pub struct Etcd {
    pub daemon: Daemon,
    /// The client URL, `http://<ip>:<port>`.
    pub url: String,
    /// How it was started, for [`Etcd::restart`].
    ns: Option<String>,
    args: Vec<String>,
    ready: std::net::SocketAddr,
    tls: bool,
    dir: TempDir,
}

/// A free TCP port on the loopback of the current namespace.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Etcd {
    /// Whether etcd is installed; tests that need it fail without it, as
    /// the README test command installs it.
    pub fn installed() -> bool {
        std::path::Path::new(ETCD).is_file()
    }

    /// Stops the server (a test of what clients do when etcd is down).
    pub fn stop(&mut self) {
        self.daemon.stop(Duration::from_secs(5));
    }

    /// Starts etcd listening for clients on `ip` and loopback ports picked
    /// free in the current namespace (`ns` unset) or fixed ones inside a
    /// fresh `ns`, and waits until it accepts requests.
    pub fn start(ns: Option<&Netns>, ip: IpAddr) -> anyhow::Result<Self> {
        Self::start_with(ns, ip, None)
    }

    /// [`Etcd::start`] serving https:// with `pki`'s server certificate and
    /// requiring client certificates signed by its CA.
    pub fn start_tls(ns: &Netns, ip: IpAddr, pki: &crate::tls::Pki) -> anyhow::Result<Self> {
        Self::start_with(Some(ns), ip, Some(pki))
    }

    fn start_with(ns: Option<&Netns>, ip: IpAddr, tls: Option<&crate::tls::Pki>) -> anyhow::Result<Self> {
        let dir = TempDir::new("etcd")?;
        let (client, peer) = match ns {
            None => (free_port()?, free_port()?),
            Some(_) => (2379, 2380),
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{ip}:{client}");
        let peer_url = format!("http://{ip}:{peer}");
        let data: PathBuf = dir.path().join("data");
        let mut args: Vec<String> = vec![
            "--name".into(),
            "t".into(),
            "--data-dir".into(),
            data.to_string_lossy().into_owned(),
            "--listen-client-urls".into(),
            url.clone(),
            "--advertise-client-urls".into(),
            url.clone(),
            "--listen-peer-urls".into(),
            peer_url.clone(),
            "--initial-advertise-peer-urls".into(),
            peer_url.clone(),
            "--initial-cluster".into(),
            format!("t={peer_url}"),
            "--log-level".into(),
            "warn".into(),
        ];
        if let Some(p) = tls {
            for (k, v) in [("--cert-file", &p.server_cert), ("--key-file", &p.server_key), ("--trusted-ca-file", &p.ca)]
            {
                args.push(format!("{k}={}", v.display()));
            }
            args.push("--client-cert-auth".into());
        }
        let addr = std::net::SocketAddr::new(ip, client);
        let ns_name = ns.map(|n| n.name.clone());
        let daemon = Self::spawn(ns_name.as_deref(), &args, &dir, addr, tls.is_some())?;
        Ok(Self { daemon, url, ns: ns_name, args, ready: addr, tls: tls.is_some(), dir })
    }

    /// Starts the same member again on its data, after [`Etcd::stop`] (an
    /// etcd restart, or etcd coming back after an outage).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.daemon.stop(Duration::from_secs(5));
        self.daemon = Self::spawn(self.ns.as_deref(), &self.args, &self.dir, self.ready, self.tls)?;
        Ok(())
    }

    fn spawn(
        ns: Option<&str>,
        args: &[String],
        dir: &TempDir,
        addr: std::net::SocketAddr,
        with_tls: bool,
    ) -> anyhow::Result<Daemon> {
        let mut c = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, ETCD]);
                c
            }
            None => Command::new(ETCD),
        };
        c.args(args);
        let log = dir.path().join("etcd.log");
        // etcd 3.4 refuses to run on architectures other than amd64 and
        // ppc64le unless told this one is meant.
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        };
        let mut daemon = Daemon::spawn_command(c, "etcd", &log, &[("ETCD_UNSUPPORTED_ARCH", arch)])?;
        // Ready once GET /health says so, asked from inside `ns`.
        let probe = move || -> bool {
            let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(300)) else { return false };
            if with_tls {
                // Accepting connections; the caller's TLS client does the rest.
                return true;
            }
            let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
            let mut body = String::new();
            s.write_all(b"GET /health HTTP/1.0\r\n\r\n").is_ok()
                && s.read_to_string(&mut body).is_ok()
                && body.contains("\"health\":\"true\"")
        };
        let up = wait::poll("etcd to answer", Duration::from_secs(30), || {
            let ok = match ns {
                Some(ns) => crate::netns::spawn_in(ns, probe)
                    .ok()
                    .and_then(|h| h.join().ok())
                    .and_then(Result::ok)
                    .unwrap_or(false),
                None => probe(),
            };
            ok.then_some(())
        });
        if up.is_err() || !daemon.alive() {
            anyhow::bail!("etcd did not start:\n{}", daemon.log_tail(30));
        }
        Ok(daemon)
    }
}
