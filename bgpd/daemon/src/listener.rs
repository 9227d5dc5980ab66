//! Accepts BGP connections and hands each to the task of the peer it comes
//! from. Connections from addresses that are not configured peers are
//! closed at once.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, RwLock};

use anyhow::Context;
use socket2::{Domain, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::conn::PeerInput;

/// The peer tasks by peer address.
pub type PeerDirectory = Arc<RwLock<HashMap<IpAddr, mpsc::Sender<PeerInput>>>>;

/// Binds the BGP listener. With no address, listens on all IPv4 and IPv6
/// addresses (a dual-stack `[::]` socket), or on `0.0.0.0` where IPv6 is off.
pub fn bind(address: Option<IpAddr>, port: u16) -> anyhow::Result<TcpListener> {
    let try_bind = |addr: SocketAddr, dual: bool| -> std::io::Result<TcpListener> {
        let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        s.set_reuse_address(true)?;
        if dual {
            s.set_only_v6(false)?;
        }
        s.set_nonblocking(true)?;
        s.bind(&addr.into())?;
        s.listen(1024)?;
        TcpListener::from_std(s.into())
    };
    match address {
        Some(a) => {
            let addr = SocketAddr::new(a, port);
            try_bind(addr, false).with_context(|| format!("cannot listen on {addr}"))
        }
        None => try_bind(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port), true)
            .or_else(|_| try_bind(SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), port), false))
            .with_context(|| format!("cannot listen on port {port}")),
    }
}

/// IPv4 peers reach a dual-stack socket as IPv4-mapped IPv6 addresses.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

pub async fn run(listener: TcpListener, peers: PeerDirectory) {
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let ip = canonical(from.ip());
        let tx = peers.read().unwrap_or_else(|p| p.into_inner()).get(&ip).cloned();
        match tx {
            Some(tx) => {
                debug!(peer = %ip, "inbound connection");
                if tx.try_send(PeerInput::Inbound(stream)).is_err() {
                    warn!(peer = %ip, "peer task busy; inbound connection dropped");
                }
            }
            None => {
                warn!(from = %from, "connection from an address that is not a configured peer; closed");
                drop(stream);
            }
        }
    }
}
