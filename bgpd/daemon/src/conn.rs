//! Per-connection I/O tasks: a connector for outbound attempts, a reader
//! that frames the byte stream into BGP messages, and a writer that drains a
//! queue of encoded messages, whose length in bytes ([`WriterLoad`]) the
//! peer task's export waits on. They never decode or decide anything: frames go to the
//! peer task, which decodes them with the session's negotiated context.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bgpd::fsm::ConnId;
use bgpd::packet::{frame_len, DecodeError};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// How long one write may block on a peer that does not read (a send hold
/// timer, in the spirit of RFC 9687) before the connection is failed.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// Encoded bytes queued in front of a writer above which the peer task
/// stops exporting to that peer, and below which it starts again: a peer
/// that reads slowly, or not at all, holds at most this (plus one export
/// slice) of encoded UPDATEs here; what changes meanwhile waits in its
/// change queue as prefixes, one entry each, so memory is bounded by the
/// RIB and not by how slow the peer is. The socket's own send buffer keeps
/// a fast peer busy between the two marks.
pub const HIGH_WATER: usize = 256 * 1024;
pub const LOW_WATER: usize = 64 * 1024;

/// What a connection's writer has been handed and not yet written.
#[derive(Debug, Default)]
pub struct WriterLoad {
    queued: AtomicUsize,
    /// Notified when the writer drains below LOW_WATER.
    pub drained: tokio::sync::Notify,
}

impl WriterLoad {
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Whether the export to this peer must wait for the writer.
    pub fn over(&self) -> bool {
        self.queued() >= HIGH_WATER
    }

    pub fn add(&self, n: usize) {
        self.queued.fetch_add(n, Ordering::Relaxed);
    }

    fn written(&self, n: usize) {
        let before = self.queued.fetch_sub(n, Ordering::Relaxed);
        if before >= LOW_WATER && before - n < LOW_WATER {
            self.drained.notify_one();
        }
    }
}
/// How long a closing connection may take to flush what is queued.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub enum ConnEvent {
    Connected(TcpStream),
    ConnectFailed(String),
    Frame(Bytes),
    HeaderError(DecodeError),
    Closed(String),
}

/// Everything a peer task reacts to.
#[derive(Debug)]
pub enum PeerInput {
    Inbound(TcpStream),
    Conn(ConnId, ConnEvent),
    /// Stop the session with a Cease and end the task; reply when done.
    Shutdown(Option<String>, tokio::sync::oneshot::Sender<()>),
    /// The peer was removed from the configuration: Cease (Peer
    /// De-configured, as a Hard Reset where RFC 8538 applies) and end.
    Deconfigure(tokio::sync::oneshot::Sender<()>),
    /// A new configuration for this peer, or new node facts.
    Reconfigure(Box<crate::plan::PeerConfig>, std::sync::Arc<crate::peer::NodeCtx>),
    /// New node facts alone (IPAM claimed or released a block, so the own
    /// prefixes changed): nothing to re-plan or re-send.
    Node(std::sync::Arc<crate::peer::NodeCtx>),
}

#[derive(Debug)]
pub enum WriterCmd {
    Send(Bytes),
    /// Flush what is queued, then close.
    Close,
}

/// Session-security settings for a connection.
#[derive(Debug, Clone, Default)]
pub struct Security {
    pub password: Option<String>,
    pub ttl_security: Option<u8>,
}

/// A socket for connecting to `addr`, with the MD5 key and GTSM set before
/// the SYN goes out.
fn outbound_socket(addr: SocketAddr, sec: &Security) -> std::io::Result<tokio::net::TcpSocket> {
    let s = if addr.is_ipv6() { tokio::net::TcpSocket::new_v6()? } else { tokio::net::TcpSocket::new_v4()? };
    if let Some(pw) = &sec.password {
        crate::sockopt::set_md5(&s, addr.is_ipv6(), addr.ip(), Some(pw))?;
    }
    if let Some(hops) = sec.ttl_security {
        crate::sockopt::set_gtsm(&s, addr.is_ipv6(), hops)?;
    }
    Ok(s)
}

pub fn spawn_connect(id: ConnId, addr: SocketAddr, timeout: Duration, sec: Security, tx: mpsc::Sender<PeerInput>) {
    tokio::spawn(async move {
        let ev = match outbound_socket(addr, &sec) {
            Err(e) => ConnEvent::ConnectFailed(format!("socket setup: {e}")),
            Ok(s) => match tokio::time::timeout(timeout, s.connect(addr)).await {
                Ok(Ok(s)) => ConnEvent::Connected(s),
                Ok(Err(e)) => ConnEvent::ConnectFailed(e.to_string()),
                Err(_) => ConnEvent::ConnectFailed("connect timed out".into()),
            },
        };
        let _ = tx.send(PeerInput::Conn(id, ev)).await;
    });
}

/// How much one read asks for: a peer sending a full table fills many
/// messages per system call.
const READ_CHUNK: usize = 64 * 1024;

/// How many queued bytes one write gathers at most.
const WRITE_COALESCE: usize = 256 * 1024;

pub fn spawn_reader(id: ConnId, mut rd: OwnedReadHalf, tx: mpsc::Sender<PeerInput>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = BytesMut::with_capacity(16 * 1024);
        loop {
            // Hand over every complete message already buffered.
            loop {
                match frame_len(&buf) {
                    Ok(Some(len)) => {
                        let frame = buf.split_to(len).freeze();
                        if tx.send(PeerInput::Conn(id, ConnEvent::Frame(frame))).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let _ = tx.send(PeerInput::Conn(id, ConnEvent::HeaderError(e))).await;
                        return;
                    }
                }
            }
            buf.reserve(READ_CHUNK);
            let ev = match rd.read_buf(&mut buf).await {
                Ok(0) => ConnEvent::Closed("connection closed by peer".into()),
                Ok(_) => continue,
                Err(e) => ConnEvent::Closed(e.to_string()),
            };
            let _ = tx.send(PeerInput::Conn(id, ev)).await;
            return;
        }
    })
}

pub fn spawn_writer(
    id: ConnId,
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<WriterCmd>,
    load: Arc<WriterLoad>,
    tx: mpsc::Sender<PeerInput>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut out = BytesMut::new();
        let mut closing = false;
        while !closing {
            let Some(cmd) = rx.recv().await else { break };
            // Gather what else is already queued into one write: a table
            // export is hundreds of 4 KiB messages, and one system call per
            // message would cost more than building them.
            let mut next = Some(cmd);
            while let Some(cmd) = next {
                match cmd {
                    WriterCmd::Send(b) => out.extend_from_slice(&b),
                    WriterCmd::Close => {
                        closing = true;
                        break;
                    }
                }
                next = if out.len() < WRITE_COALESCE { rx.try_recv().ok() } else { None };
            }
            if out.is_empty() {
                continue;
            }
            let err = match tokio::time::timeout(SEND_TIMEOUT, wr.write_all(&out)).await {
                Ok(Ok(())) => {
                    load.written(out.len());
                    out.clear();
                    continue;
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("peer accepted no data for {}s", SEND_TIMEOUT.as_secs()),
            };
            let _ = tx.send(PeerInput::Conn(id, ConnEvent::Closed(err))).await;
            return;
        }
        // Bound the flush of a final NOTIFICATION to a peer that stopped reading.
        let _ = tokio::time::timeout(Duration::from_secs(2), wr.shutdown()).await;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_export_waits_above_high_water_and_is_woken_below_low_water() {
        let l = WriterLoad::default();
        l.add(HIGH_WATER - 1);
        assert!(!l.over(), "under the mark");
        l.add(1);
        assert!(l.over(), "at the mark");
        // Written down to LOW_WATER: under the mark, and no wake yet.
        l.written(HIGH_WATER - LOW_WATER);
        assert!(!l.over());
        assert_eq!(l.queued(), LOW_WATER);
        let woken = tokio::time::timeout(Duration::from_millis(20), l.drained.notified()).await;
        assert!(woken.is_err(), "no wake before the queue is below LOW_WATER");
        l.written(1);
        let woken = tokio::time::timeout(Duration::from_secs(1), l.drained.notified()).await;
        assert!(woken.is_ok(), "woken once below LOW_WATER");
        assert_eq!(l.queued(), LOW_WATER - 1);
    }
}
