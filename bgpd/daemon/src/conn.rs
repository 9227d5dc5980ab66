//! Per-connection I/O tasks: a connector for outbound attempts, a reader
//! that frames the byte stream into BGP messages, and a writer that drains a
//! queue of encoded messages. They never decode or decide anything: frames go to the
//! peer task, which decodes them with the session's negotiated context.

use std::net::SocketAddr;
use std::time::Duration;

use bgpd::fsm::ConnId;
use bgpd::packet::{frame_len, DecodeError};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// How long one write may block on a peer that does not read (a send hold
/// timer, in the spirit of RFC 9687) before the connection is failed. The
/// queue in front of the writer holds encoded UPDATEs; it is bounded by what
/// the peer's Adj-RIB-Out can produce (changes to one prefix coalesce before
/// they are encoded), and a peer that stops reading loses its connection
/// after this long.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(60);
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
