//! merle's eBPF datapath.
//!
//! - `bpf/` (C, compiled by clang in `build.rs`): `pod.bpf.c` on the host
//!   end of each pod veth, `node.bpf.c` on the uplinks and vxlan.merle, and
//!   header-only helpers in `bpf/lib/`.
//! - [`types`]: the map keys and values and the reasons, mirrored from
//!   `bpf/lib/types.h` and `bpf/lib/drop.h` (a test holds the layouts
//!   equal).
//! - [`objects`]: the embedded objects and their digest.
//! - [`pins`]: the pin directory layout in bpffs.
//! - [`datapath`]: loading or adopting the programs (merled), linking them
//!   to interfaces with TCX or clsact (merled and merle-cni).
//! - [`endpoints`], [`nets`], [`metrics`]: the maps, with the pure
//!   reconcile of the endpoint map.
//! - [`pods`]: the pod's side: linking the pinned pod program to a pod's
//!   host veth and its endpoint entries (merle-cni's ADD and DEL), and the
//!   reconcile of both against IPAM's pods (merled, and the plugin's GC).
//! - [`services`]: the service maps (frontends, Maglev tables, backends,
//!   rev-NAT, conntrack), written from a `merle_lb::plan::Plan` as a diff.
//! - [`ct_gc`]: the conntrack sweep that deletes expired flows, so the LRU
//!   evicts only when the table is full of live ones.
//! - [`sock`]: the cgroup socket programs (the host's own connections to
//!   services) on the cgroup v2 root.
//! - [`nat`]: outgoing NAT rules in nftables.
//! - [`probe`]: whether this kernel can run the datapath, and why not.
//! - [`sys`]: the bpf(2) commands aya does not wrap (BPF_PROG_TEST_RUN,
//!   link info and update, the TCX probe, batched map walks), and bpffs.
//! - [`report`]: what `merlectl dataplane` shows.
//! - [`stats`]: the kernel's run counts and run times of the programs.
//!
//! No tokio here: callers run these short syscalls where they like.

pub mod ct_gc;
pub mod datapath;
pub mod endpoints;
pub mod metrics;
pub mod nat;
pub mod nets;
pub mod objects;
pub mod pins;
pub mod pods;
pub mod probe;
pub mod report;
pub mod services;
pub mod sock;
pub mod stats;
pub mod sys;
pub mod types;

pub use datapath::{AttachMode, Datapath, Linker};
pub use pins::PinDir;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("program {program} was rejected by the verifier: {error}\nverifier log:\n{log}")]
    Verifier { program: String, error: String, log: String },
    #[error("cannot load {0}: {1}")]
    Load(String, String),
    #[error("{0}: {1}")]
    Pin(String, std::io::Error),
    #[error("no program {1} is pinned under {0}: merled has not loaded the datapath")]
    NotLoaded(String, String),
    #[error("no interface {0}")]
    NoInterface(String),
    #[error("cannot attach to {0}: {1}")]
    Attach(String, String),
    #[error("map {0}: {1}")]
    Map(String, String),
    #[error("outgoing NAT: {0}")]
    Nat(String),
    #[error("this kernel cannot run the eBPF datapath: {0}")]
    Unsupported(String),
}
