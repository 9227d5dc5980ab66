//! The control socket: a unix stream socket, mode 0600, that answers one
//! JSON request per line with one JSON response per line.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tracing::{debug, warn};

use tokio::sync::oneshot;

use crate::api::{Request, Response, RouteCounts};
use crate::ipam::Cmd;
use crate::routes::{self, Query};
use crate::shared::Shared;

/// Longest request line accepted.
const MAX_REQUEST: usize = 64 * 1024;

/// Creates the socket, refusing to steal one a live merled still serves.
pub async fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            bail!("{} is in use by a running merled", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("cannot remove stale socket {}", path.display()))?;
    }
    // Create the socket with no group/other access from the start, so it is
    // never reachable by others, then make the mode exact.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let l = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let l = l.with_context(|| format!("cannot bind control socket {}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

pub async fn run(listener: UnixListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((s, _)) => {
                let shared = shared.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve(s, shared).await {
                        debug!("control connection: {e}");
                    }
                });
            }
            Err(e) => {
                warn!("control accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve(s: UnixStream, shared: Arc<Shared>) -> anyhow::Result<()> {
    let (rd, mut wr) = s.into_split();
    let mut rd = BufReader::new(rd).take(MAX_REQUEST as u64);
    let mut line = String::new();
    loop {
        line.clear();
        if rd.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        // Parsed and checked as far as no state is needed (merle_control).
        let resp = match merle_control::parse(&line) {
            Ok(Request::Routes(q)) => match Query::parse(&q) {
                Ok(query) if q.count => count_routes(query, &shared).await,
                Ok(query) => {
                    stream_routes(query, &shared, &mut wr).await?;
                    continue;
                }
                Err(e) => Response::error(e),
            },
            Ok(Request::Fib) => match shared.fib_status() {
                Some(st) => {
                    stream(&mut wr, "fib", move |emit| {
                        routes::walk_fib(&st, |slice| emit(json_items(&slice)));
                    })
                    .await?;
                    continue;
                }
                None => Response::error("fib-sync is not running ([fib] enabled = false)"),
            },
            Ok(req) => answer(req, &shared).await,
            Err(e) => Response::error(e),
        };
        let mut out = serde_json::to_vec(&resp)?;
        out.push(b'\n');
        wr.write_all(&out).await?;
    }
}

/// Serialises a slice of items as the inside of a JSON array, each item
/// with a leading comma (the first one's is dropped by [`stream`]).
fn json_items<T: serde::Serialize>(items: &[T]) -> Vec<u8> {
    let mut out = Vec::with_capacity(items.len() * 256);
    for i in items {
        out.push(b',');
        // Serialising these plain structs into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, i);
    }
    out
}

/// Answers `{"ok":true,"<field>":[...]}` with the items a walk produces on
/// a blocking thread, each batch written as soon as it is ready. The walk
/// is handed a sink that returns false once the client has gone, so it
/// stops early; the event-loop thread only copies bytes to the socket.
async fn stream<W, F>(wr: &mut W, field: &str, walk: F) -> anyhow::Result<()>
where
    W: tokio::io::AsyncWrite + Unpin,
    F: FnOnce(&mut dyn FnMut(Vec<u8>) -> bool) + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let walker = tokio::task::spawn_blocking(move || walk(&mut |b| tx.blocking_send(b).is_ok()));
    wr.write_all(format!("{{\"ok\":true,\"{field}\":[").as_bytes()).await?;
    let mut first = true;
    while let Some(b) = rx.recv().await {
        let b = if first { &b[1..] } else { &b[..] };
        first = false;
        wr.write_all(b).await?;
    }
    walker.await.context("route walk failed")?;
    wr.write_all(b"]}\n").await?;
    Ok(())
}

async fn stream_routes<W: tokio::io::AsyncWrite + Unpin>(
    q: Query,
    shared: &Arc<Shared>,
    wr: &mut W,
) -> anyhow::Result<()> {
    let shared = shared.clone();
    stream(wr, "routes", move |emit| {
        routes::walk(&shared, &q, |slice| {
            let rows: Vec<_> = slice.iter().flat_map(routes::entries).collect();
            emit(json_items(&rows))
        });
    })
    .await
}

async fn count_routes(q: Query, shared: &Arc<Shared>) -> Response {
    let shared = shared.clone();
    let counted = tokio::task::spawn_blocking(move || {
        let mut c = RouteCounts::default();
        routes::walk(&shared, &q, |slice| {
            routes::count(&mut c, &slice);
            true
        });
        c
    })
    .await;
    match counted {
        Ok(c) => Response { route_counts: Some(c), ..Response::ok() },
        Err(e) => Response::error(format!("route count failed: {e}")),
    }
}

/// How long an IPAM request may take (etcd's own timeout is shorter).
const IPAM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

pub(crate) async fn ipam<T>(
    shared: &Shared,
    make: impl FnOnce(oneshot::Sender<Result<T, String>>) -> Cmd,
) -> Result<T, String> {
    let (tx, rx) = oneshot::channel();
    if !shared.ipam(make(tx)) {
        return Err("IPAM is not running".into());
    }
    match tokio::time::timeout(IPAM_TIMEOUT, rx).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err("IPAM stopped".into()),
        Err(_) => Err("IPAM did not answer in time".into()),
    }
}

async fn answer(req: Request, shared: &Shared) -> Response {
    let mut r = Response::ok();
    match req {
        Request::IpamChanged => {
            shared.ipam(Cmd::Changed);
        }
        Request::IpamShow => match ipam(shared, Cmd::Show).await {
            Ok(rep) => r.ipam = Some(rep),
            Err(e) => return Response::error(e),
        },
        Request::IpamRelease { handle } => match ipam(shared, |tx| Cmd::Release(handle, tx)).await {
            Ok(freed) => r.released = Some(freed),
            Err(e) => return Response::error(e),
        },
        Request::Status => r.status = Some(shared.status()),
        Request::Dataplane => {
            let (tx, rx) = oneshot::channel();
            if !shared.dataplane(crate::dataplane::Cmd::Report(tx)) {
                return Response::error("the dataplane thread is not running");
            }
            match tokio::time::timeout(IPAM_TIMEOUT, rx).await {
                Ok(Ok(mut rep)) => {
                    rep.datastore_errors = shared.service_errors();
                    r.dataplane = Some(rep)
                }
                _ => return Response::error("the dataplane thread did not answer in time"),
            }
        }
        Request::ServicePut { service } => {
            if let Err(e) = ipam(shared, |tx| Cmd::PutService(service, tx)).await {
                return Response::error(e);
            }
        }
        Request::ServiceDelete { name } => match ipam(shared, |tx| Cmd::DeleteService(name.clone(), tx)).await {
            Ok(true) => {}
            Ok(false) => return Response::error(format!("no service {name:?} in the datastore")),
            Err(e) => return Response::error(e),
        },
        Request::CniReport { op, result, seconds, ipam_seconds } => {
            let call = crate::metrics::CniCall { command: op, result, seconds, ipam_seconds };
            if let Err(e) = call.check() {
                return Response::error(e);
            }
            shared.metrics.record_cni(&call);
        }
        Request::ShowPeer { address } => {
            let Ok(addr) = address.parse::<std::net::IpAddr>() else {
                return Response::error(format!("show peer: {address:?} is not an IP address"));
            };
            let Some(mut p) = shared.status().peers.into_iter().find(|p| p.address == addr.to_string()) else {
                return Response::error(format!("no peer {addr} is configured"));
            };
            let (rise, window) = match crate::peer_detail::read_md5() {
                Some(now) => shared.md5_rise(now),
                None => (crate::peer_detail::Md5Counters::default(), 0),
            };
            p.detail.likely_cause = crate::peer_detail::likely_cause(&p, shared.as_number, rise, window);
            r.peer = Some(p);
        }
        Request::ShowConfig => match shared.config() {
            Some(c) => match serde_json::to_value(&*c) {
                Ok(mut v) => {
                    redact(&mut v);
                    r.config = Some(v);
                }
                Err(e) => return Response::error(format!("cannot render the configuration: {e}")),
            },
            None => return Response::error("merled is still starting"),
        },
        // Streamed by `serve`.
        Request::Routes(_) | Request::Fib => return Response::error("internal: streamed request"),
    }
    r
}

/// Secrets in the configuration (BGP passwords, etcd credentials) are
/// shown as set, never as they are.
pub fn redact(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if ["password", "key", "private_key"].contains(&k.as_str()) && !x.is_null() {
                    *x = serde_json::Value::String("(set)".into());
                } else {
                    redact(x);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(redact),
        _ => {}
    }
}

/// Removes the socket file on shutdown.
#[derive(Debug)]
pub struct SocketGuard(pub PathBuf);

impl Drop for SocketGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
