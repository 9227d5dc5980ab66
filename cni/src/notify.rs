//! Telling merled that IPAM changed, over its control socket, so it
//! re-reads the store and advertises the node's blocks without polling.

use std::os::fd::AsRawFd;
use std::path::Path;

use nix::sys::socket::{connect, send, socket, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr};

/// The control request line merled answers by re-reading IPAM.
pub const IPAM_CHANGED: &[u8] = b"{\"command\":\"ipam-changed\"}\n";

/// Best effort, and never waits: the socket is non-blocking, so a merled
/// that is down, stuck or has a full backlog costs the plugin nothing. A
/// node without a running merled still gets pods, and merled re-reads the
/// store on start and on a timer anyway.
pub fn ipam_changed(socket_path: &Path) {
    let Ok(addr) = UnixAddr::new(socket_path) else { return };
    let Ok(fd) = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC, None)
    else {
        return;
    };
    if connect(fd.as_raw_fd(), &addr).is_ok() {
        let _ = send(fd.as_raw_fd(), IPAM_CHANGED, MsgFlags::MSG_NOSIGNAL);
    }
}
