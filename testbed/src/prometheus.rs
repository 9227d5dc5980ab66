//! A real Prometheus server (Debian's `prometheus`) in a namespace,
//! scraping targets inside it every second, asked through its own query
//! API (`/api/v1/query`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;

use crate::netns::Netns;
use crate::process::Daemon;
use crate::{wait, TempDir};

pub const PROMETHEUS: &str = "/usr/bin/prometheus";

/// One HTTP/1.1 GET, from the calling thread's namespace: the status
/// code and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let out = String::from_utf8_lossy(&out);
    let code = out.split_whitespace().nth(1)?.parse().ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    // Chunked bodies (Prometheus's API): join the chunks.
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        let mut rest = body;
        let mut joined = String::new();
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            if n == 0 || tail.len() < n {
                break;
            }
            joined.push_str(&tail[..n]);
            rest = tail[n..].strip_prefix("\r\n").unwrap_or(&tail[n..]);
        }
        joined
    } else {
        body.to_owned()
    };
    Some((code, body))
}

/// [`http_get`] from inside the namespace `ns`.
pub fn http_get_in(ns: &str, addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let path = path.to_owned();
    crate::netns::spawn_in(ns, move || http_get(addr, &path)).ok()?.join().ok()?.ok()?
}

/// Percent-encodes a query string value.
fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[derive(Debug)]
pub struct Prometheus {
    pub daemon: Daemon,
    ns: String,
    pub addr: SocketAddr,
    _dir: TempDir,
}

impl Prometheus {
    pub fn installed() -> bool {
        std::path::Path::new(PROMETHEUS).exists()
    }

    /// Starts Prometheus in `ns` on 127.0.0.1:9090, scraping `targets`
    /// (host:port, /metrics) every second.
    pub fn start(ns: &Netns, targets: &[SocketAddr]) -> anyhow::Result<Self> {
        let dir = TempDir::new("prometheus")?;
        let list: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let cfg = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: merled\n    static_configs:\n      - targets: [{}]\n",
            list.join(", ")
        );
        let cfg_path = dir.path().join("prometheus.yml");
        std::fs::write(&cfg_path, cfg)?;
        let data = dir.path().join("data");
        let addr: SocketAddr = "127.0.0.1:9090".parse()?;
        let args = [
            format!("--config.file={}", cfg_path.display()),
            format!("--storage.tsdb.path={}", data.display()),
            format!("--web.listen-address={addr}"),
            "--log.level=warn".into(),
        ];
        let argv: Vec<&str> = std::iter::once(PROMETHEUS).chain(args.iter().map(String::as_str)).collect();
        let mut daemon = Daemon::spawn(ns, "prometheus", &argv, &dir.path().join("prometheus.log"), &[])?;
        let ready = wait::poll("Prometheus to be ready", Duration::from_secs(30), || {
            http_get_in(&ns.name, addr, "/-/ready").filter(|(c, _)| *c == 200).map(|_| ())
        });
        if ready.is_err() || !daemon.alive() {
            bail!("Prometheus did not start:\n{}", daemon.log_tail(30));
        }
        Ok(Self { daemon, ns: ns.name.clone(), addr, _dir: dir })
    }

    /// An instant query: each series' labels and value.
    pub fn query(&self, expr: &str) -> anyhow::Result<Vec<(Value, f64)>> {
        let (code, body) = http_get_in(&self.ns, self.addr, &format!("/api/v1/query?query={}", encode(expr)))
            .context("Prometheus did not answer")?;
        let v: Value = serde_json::from_str(&body).with_context(|| format!("Prometheus answered {code}: {body}"))?;
        if v["status"] != "success" {
            bail!("query {expr:?} failed: {body}");
        }
        let rows = v["data"]["result"].as_array().cloned().unwrap_or_default();
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let val = r["value"][1].as_str()?.parse().ok()?;
                Some((r["metric"].clone(), val))
            })
            .collect())
    }

    /// The value of a query that selects one series, if it does.
    pub fn value(&self, expr: &str) -> Option<f64> {
        match self.query(expr).ok()?.as_slice() {
            [(_, v)] => Some(*v),
            _ => None,
        }
    }
}
