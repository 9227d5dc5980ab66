//! Telling merled that IPAM changed, over its control socket, so it
//! re-reads the store and advertises the node's blocks without polling.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// The control request line merled answers by re-reading IPAM.
pub const IPAM_CHANGED: &[u8] = b"{\"command\":\"ipam-changed\"}\n";

/// Best effort: a node without a running merled still gets pods, and merled
/// re-reads the store on start and on a timer anyway.
pub fn ipam_changed(socket: &Path) {
    let Ok(mut s) = UnixStream::connect(socket) else { return };
    let _ = s.set_write_timeout(Some(Duration::from_millis(100)));
    let _ = s.write_all(IPAM_CHANGED);
}
