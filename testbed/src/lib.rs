//! Testbeds in network namespaces.
//!
//! - [`netns`]: uniquely named namespaces, veth links and addresses, removed
//!   on drop (also when a test panics).
//! - [`process`]: daemons started inside a namespace, killed on drop.
//! - [`bpf`]: a private bpffs per test, crafted packets for BPF_PROG_TEST_RUN.
//! - [`wait`]: bounded polling — tests never sleep for a fixed time.
//! - [`bird`], [`frr`], [`merled`]: start BIRD 2, FRR's bgpd (without
//!   zebra) and merled with generated configs, and query them.
//! - [`bench`]: benchmarks against BIRD 2 (bgperf-style ingest).
//! - [`demo`]: the README demo: two merled nodes, meshed over iBGP, each
//!   peered over eBGP with an FRR ToR.

pub mod bench;
pub mod bench_cni;
pub mod bench_datapath;
pub mod bench_fib;
pub mod bench_minimal;
pub mod bench_rr;
pub mod bench_scale;
pub mod bench_services;
pub mod bird;
pub mod bpf;
pub mod capture;
pub mod cni;
pub mod datapath;
pub mod demo;
pub mod echo;
pub mod etcd;
pub mod exabgp;
pub mod frr;
pub mod lbbed;
pub mod merled;
pub mod neigh;
pub mod netns;
pub mod process;
pub mod prometheus;
pub mod sessions;
pub mod tls;
pub mod topology;
pub mod wait;

use std::path::PathBuf;

/// Whether we run as root. Namespace tests call this and skip, with a
/// printed reason, when not.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

/// Skips the calling test (returns true) when not root, printing why.
pub fn skip_unless_root(test: &str) -> bool {
    if is_root() {
        return false;
    }
    eprintln!("SKIP {test}: needs root for network namespaces");
    true
}

/// A fresh scratch directory, removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> anyhow::Result<Self> {
        let p = std::env::temp_dir().join(format!("merle-{tag}-{}-{}", std::process::id(), netns::unique()));
        std::fs::create_dir_all(&p)?;
        Ok(Self(p))
    }
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
