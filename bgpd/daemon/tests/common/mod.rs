//! Shared set-up for the namespace tests.
//!
//! ```text
//!   +--------------------+   veth   +--------------------+
//!   | merle ns (merled)  |----------| peer ns (BIRD/FRR) |
//!   | 10.1.0.1/24        |          | 10.1.0.2/24        |
//!   | fd01::1/64         |          | fd01::2/64         |
//!   +--------------------+          +--------------------+
//! ```
#![allow(dead_code, clippy::unwrap_used)]

pub mod speaker;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use testbed::merled::Merled;
use testbed::netns::{veth, Netns};
use testbed::wait;

pub const MERLE_V4: &str = "10.1.0.1";
pub const MERLE_V6: &str = "fd01::1";
pub const PEER_V4: &str = "10.1.0.2";
pub const PEER_V6: &str = "fd01::2";

pub fn merled_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_merled"))
}
pub fn merlectl_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_merlectl"))
}

/// Fails (not skips) when a peer daemon is missing: the README test
/// command installs them.
pub fn require(tool: &str) {
    let found = std::path::Path::new(tool).is_file()
        || std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
    assert!(found, "{tool} is not installed; run the README test command, which installs bird2 and frr");
}

/// Two namespaces joined by a veth, IPv4 and IPv6 addressed.
pub struct Pair {
    pub merle: Netns,
    pub peer: Netns,
}

pub fn pair(tag: &str) -> Pair {
    let merle = Netns::new(&format!("{tag}-m")).unwrap();
    let peer = Netns::new(&format!("{tag}-p")).unwrap();
    // No link-local addresses on the peer side, so BIRD sends a 16-octet
    // global next hop; the merle side keeps its own.
    peer.exec(&["sysctl", "-qw", "net.ipv6.conf.default.addr_gen_mode=1"]).unwrap();
    veth(&merle, "eth0", &peer, "eth0").unwrap();
    merle.add_addr("eth0", &format!("{MERLE_V4}/24")).unwrap();
    merle.add_addr("eth0", &format!("{MERLE_V6}/64")).unwrap();
    peer.add_addr("eth0", &format!("{PEER_V4}/24")).unwrap();
    peer.add_addr("eth0", &format!("{PEER_V6}/64")).unwrap();
    wait::poll("veth up", Duration::from_secs(10), || merle.exec(&["ping", "-c1", "-W1", PEER_V4]).ok()).unwrap();
    Pair { merle, peer }
}

/// A [`pair`] whose peer side also has `extra` IPv4 addresses (/24), for
/// tests with more than one session from the peer side.
pub fn pair_with(tag: &str, extra: &[&str]) -> Pair {
    let p = pair(tag);
    for a in extra {
        p.peer.add_addr("eth0", &format!("{a}/24")).unwrap();
    }
    p
}

/// A merled config for the merle side of a [`Pair`].
pub fn merled_config(peers: &[(&str, u32)], hold_time: u16) -> String {
    let mut s = format!(
        "[node]\nname = \"merle\"\naddress = \"{MERLE_V4}/24\"\naddress_v6 = \"{MERLE_V6}/64\"\n\n\
         [bgp]\nhold_time = {hold_time}\nconnect_retry_time = 1\nconnect_retry_max = 3\n\n"
    );
    for (addr, asn) in peers {
        s += &format!("[[bgp.peers]]\naddress = \"{addr}\"\nas_number = {asn}\n\n");
    }
    s += "[[advertise]]\nprefix = \"10.244.1.0/26\"\n\n[[advertise]]\nprefix = \"fd00:244:1::/122\"\n\n";
    s += "[control]\nsocket = \"{socket}\"\n";
    s
}

pub fn start_merled(p: &Pair, config: &str) -> Merled {
    Merled::start(&p.merle, "merle", &merled_bin(), &merlectl_bin(), config).unwrap()
}

pub fn wait_established(m: &Merled, peer: &str, timeout: Duration) {
    if let Err(e) = wait::poll(&format!("session with {peer} Established"), timeout, || {
        (m.peer_state(peer).as_deref() == Some("Established")).then_some(())
    }) {
        panic!("{e}\nstatus: {:?}\nmerled log:\n{}", m.peer(peer), m.daemon.log_tail(30));
    }
}

pub fn wait_route(m: &Merled, prefix: &str, peer: &str, timeout: Duration) -> Value {
    match wait::poll(&format!("route {prefix} from {peer}"), timeout, || m.route(prefix, peer)) {
        Ok(r) => r,
        Err(e) => panic!("{e}\nroutes: {:?}\nmerled log:\n{}", m.routes(), m.daemon.log_tail(30)),
    }
}

pub fn as_path(r: &Value) -> Vec<u64> {
    r["as_path"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect()
}

/// Waits until the session with `peer` is not Established and `prefix`
/// from it is gone.
pub fn wait_down_and_withdrawn(m: &Merled, peer: &str, prefix: &str, timeout: Duration) {
    wait::until(&format!("{prefix} from {peer} withdrawn"), timeout, Duration::from_millis(100), || {
        (m.peer_state(peer).as_deref() != Some("Established") && m.route(prefix, peer).is_none()).then_some(())
    })
    .unwrap();
}
