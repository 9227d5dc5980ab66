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
    send_line(socket_path, IPAM_CHANGED);
}

/// One call's command, result (`ok` or `code_N`) and duration, for
/// merled's metrics; best effort, as [`ipam_changed`].
pub fn cni_call(socket_path: &Path, command: &str, result: &str, seconds: f64, ipam_seconds: Option<f64>) {
    let line = serde_json::json!({
        "command": "cni-report",
        "op": command,
        "result": result,
        "seconds": seconds,
        "ipam_seconds": ipam_seconds,
    });
    send_line(socket_path, format!("{line}\n").as_bytes());
}

fn send_line(socket_path: &Path, line: &[u8]) {
    let Ok(addr) = UnixAddr::new(socket_path) else { return };
    let Ok(fd) = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC, None)
    else {
        return;
    };
    if connect(fd.as_raw_fd(), &addr).is_ok() {
        let _ = send(fd.as_raw_fd(), line, MsgFlags::MSG_NOSIGNAL);
    }
}
