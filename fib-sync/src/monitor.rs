//! The netlink watch: a thread that listens to the kernel's route, link and
//! neighbour notifications and hands the ones that matter to the engine.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use netlink_packet_core::NetlinkPayload;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::engine::Input;
use crate::kernel::table_of;
use merle_netlink::{grow_rcvbuf, parse_all};

/// What the watch reports.
#[derive(Debug, Clone)]
pub enum KernelEvent {
    /// A route in merle's table changed (`true`) or went away (`false`).
    Route(bool, netlink_packet_route::route::RouteMessage),
    Link(bool, netlink_packet_route::link::LinkMessage),
    /// A neighbour or FDB entry changed on this interface.
    Neighbour(u32),
}

/// A subscribed socket, opened before the first dump so that nothing
/// between the dump and the watch is missed.
#[derive(Debug)]
pub struct Watch {
    sock: Socket,
}

impl Watch {
    pub fn open() -> std::io::Result<Self> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind(&SocketAddr::new(0, 0))?;
        for g in [libc::RTNLGRP_IPV4_ROUTE, libc::RTNLGRP_IPV6_ROUTE, libc::RTNLGRP_LINK, libc::RTNLGRP_NEIGH] {
            sock.add_membership(g)?;
        }
        grow_rcvbuf(&sock, 32 * 1024 * 1024);
        // A receive timeout lets the thread notice that the engine stopped.
        let _ = nix::sys::socket::setsockopt(
            &sock,
            nix::sys::socket::sockopt::ReceiveTimeout,
            &nix::sys::time::TimeVal::new(0, 200_000),
        );
        Ok(Self { sock })
    }

    /// Runs the watch on its own thread until `stop` is set or the engine
    /// goes away. `own_port`'s notifications are the echo of merle's own
    /// requests and are dropped: the engine already knows.
    pub fn spawn(self, table: u32, own_port: u32, tx: Sender<Input>, stop: Arc<AtomicBool>) -> std::io::Result<()> {
        std::thread::Builder::new().name("fib-watch".into()).spawn(move || self.run(table, own_port, &tx, &stop))?;
        Ok(())
    }

    fn run(self, table: u32, own_port: u32, tx: &Sender<Input>, stop: &AtomicBool) {
        let mut buf: Vec<u8> = Vec::with_capacity(256 * 1024);
        while !stop.load(Ordering::Relaxed) {
            buf.clear();
            match self.sock.recv(&mut buf, 0) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    if tx.send(Input::Resync("the netlink watch overran its buffer")).is_err() {
                        return;
                    }
                    continue;
                }
                Err(e)
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted)
                        || e.raw_os_error() == Some(libc::EAGAIN) =>
                {
                    continue
                }
                Err(e) => {
                    tracing::error!("the netlink watch failed: {e}; falling back to periodic resyncs");
                    return;
                }
            }
            // The echo of merle's own requests is most of the traffic when
            // it installs many routes: drop it before decoding anything.
            let foreign = strip_own(&buf, own_port);
            let Ok(msgs) = parse_all(&foreign) else { continue };
            let mut events = Vec::new();
            for (_, m) in msgs {
                let NetlinkPayload::InnerMessage(m) = m.payload else { continue };
                match m {
                    RouteNetlinkMessage::NewRoute(r) if table_of(&r) == table => {
                        events.push(KernelEvent::Route(true, r))
                    }
                    RouteNetlinkMessage::DelRoute(r) if table_of(&r) == table => {
                        events.push(KernelEvent::Route(false, r))
                    }
                    RouteNetlinkMessage::NewLink(l) => events.push(KernelEvent::Link(true, l)),
                    RouteNetlinkMessage::DelLink(l) => events.push(KernelEvent::Link(false, l)),
                    RouteNetlinkMessage::NewNeighbour(n) | RouteNetlinkMessage::DelNeighbour(n) => {
                        events.push(KernelEvent::Neighbour(n.header.ifindex))
                    }
                    _ => {}
                }
            }
            if !events.is_empty() && tx.send(Input::Kernel(events)).is_err() {
                return;
            }
        }
    }
}

/// How often the engine re-reads the whole table even without events, as
/// Felix's route refresh does: the kernel drops IPv4 routes silently when a
/// device goes down.
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(90);

/// The messages of a datagram not sent on behalf of `own_port`, found from
/// their headers alone.
fn strip_own(buf: &[u8], own_port: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for m in merle_netlink::messages(buf).map_while(Result::ok) {
        if own_port == 0 || m.port_number() != own_port {
            out.extend_from_slice(m.into_inner());
            out.resize(out.len().next_multiple_of(4), 0);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn own_messages_are_dropped_by_header() {
        let msg = |port: u32| {
            let mut m = vec![0u8; 20];
            m[..4].copy_from_slice(&20u32.to_ne_bytes());
            m[12..16].copy_from_slice(&port.to_ne_bytes());
            m
        };
        let buf = [msg(7), msg(9), msg(7)].concat();
        assert_eq!(super::strip_own(&buf, 7), msg(9));
        assert_eq!(super::strip_own(&buf, 0).len(), 60);
        assert!(super::strip_own(&buf[..10], 7).is_empty());
    }
}
