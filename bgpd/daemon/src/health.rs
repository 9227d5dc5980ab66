//! merled's health endpoint, for the DaemonSet's probes (calico-node's
//! port 9099): `GET /healthz` and `GET /readyz` over HTTP/1.1 on
//! `[health] listen`.
//!
//! - **Live**: the shared state answers. The check takes the RIB's and the
//!   status table's locks on a blocking thread within two seconds; a
//!   deadlocked or wedged merled fails it, and the kubelet restarts it.
//! - **Ready**: the configuration is loaded and every configured session
//!   is set up (merled has started them), and the FIB has converged once
//!   (the stale routes of an earlier merled swept) when fib-sync runs.
//!   Sessions need not be Established: a ToR that is down must not stall a
//!   rolling update of every node. The body says what is still missing.
//!
//! The decision is pure ([`readiness`]); [`serve`] is the I/O.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::{Method, StatusCode};

use crate::api::NodeStatus;
use crate::http::{reply, Reply};
use crate::shared::Shared;

/// How long the liveness check waits for the shared state.
const LIVE_WITHIN: Duration = Duration::from_secs(2);

/// Whether merled is ready, and the reason when it is not.
pub fn readiness(started: bool, status: &NodeStatus) -> Result<String, String> {
    if !started {
        return Err("starting: the sessions are not set up yet".into());
    }
    if let Some(f) = &status.fib {
        if !f.converged {
            return Err(format!(
                "the FIB has not converged yet: {} routes installed, waiting for the peers' End-of-RIB",
                f.installed
            ));
        }
    }
    let up = status.peers.iter().filter(|p| p.state == "Established").count();
    Ok(format!("ready: {} sessions set up, {up} Established", status.peers.len()))
}

async fn live(shared: Arc<Shared>) -> Result<String, String> {
    let check = tokio::task::spawn_blocking(move || {
        let routes = shared.rib().len();
        let peers = shared.status().peers.len();
        format!("live: {routes} prefixes, {peers} sessions")
    });
    match tokio::time::timeout(LIVE_WITHIN, check).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(format!("the check failed: {e}")),
        Err(_) => Err(format!("the shared state did not answer within {LIVE_WITHIN:?}")),
    }
}

async fn handle(method: Method, path: String, shared: Arc<Shared>) -> Reply {
    let text = |code, body: String| reply(code, "text/plain", body + "\n");
    if method != Method::GET && method != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET /healthz or /readyz".into());
    }
    let verdict = match path.as_str() {
        "/healthz" | "/livez" => live(shared).await,
        "/readyz" => readiness(shared.started(), &shared.status()),
        p => return text(StatusCode::NOT_FOUND, format!("{p}: no such page; /healthz and /readyz are")),
    };
    match verdict {
        Ok(s) => text(StatusCode::OK, s),
        Err(s) => text(StatusCode::SERVICE_UNAVAILABLE, s),
    }
}

/// Binds `[health] listen`: an error names the address.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    crate::http::bind("health.listen", addr).await
}

/// Answers the probes until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    crate::http::serve(listener, "health endpoint", move |m, p| handle(m, p, shared.clone())).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::FibSummary;

    fn status(fib_converged: Option<bool>, peers: usize) -> NodeStatus {
        NodeStatus {
            name: "n1".into(),
            router_id: "10.0.0.1".into(),
            as_number: 64512,
            listen: "*:179".into(),
            peers: (0..peers)
                .map(|i| crate::api::PeerStatus {
                    address: format!("10.0.0.{}", i + 2),
                    state: if i == 0 { "Established".into() } else { "Connect".into() },
                    ..Default::default()
                })
                .collect(),
            config_error: None,
            fib: fib_converged.map(|c| FibSummary {
                table: 254,
                protocol: 200,
                ipip: String::new(),
                devices: vec![],
                converged: c,
                installed: 3,
                failed: 0,
            }),
            dataplane: None,
            rib: Default::default(),
        }
    }

    #[test]
    fn ready_once_started_and_the_fib_converged_whatever_the_sessions_state() {
        assert!(readiness(false, &status(Some(true), 2)).unwrap_err().contains("starting"));
        let e = readiness(true, &status(Some(false), 2)).unwrap_err();
        assert!(e.contains("FIB has not converged") && e.contains("3 routes"), "{e}");
        assert_eq!(readiness(true, &status(Some(true), 2)).unwrap(), "ready: 2 sessions set up, 1 Established");
        assert!(readiness(true, &status(None, 0)).is_ok(), "without fib-sync, ready once started");
    }
}
