//! The compiled programs, embedded at build time (build.rs), and the
//! digest that tells a merled whether the programs it finds pinned are the
//! ones it carries.

/// `bpf/pod.bpf.c`: `pod_ingress`.
pub static POD: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/pod.bpf.o"));
/// `bpf/node.bpf.c`: `node_ingress`.
pub static NODE: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/node.bpf.o"));

/// `bpf/sock.bpf.c`: the cgroup socket programs (`sock4_connect`, ...).
pub static SOCK: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sock.bpf.o"));

/// `bpf/test/reject.bpf.c`: a program the verifier rejects, for the
/// loader's tests.
#[doc(hidden)]
pub static TEST_REJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/test_reject.bpf.o"));

/// `bpf/test/minimal.bpf.c`: the minimal datapath the benchmark's goals
/// come from (`minimal_pod`, `minimal_node`), measured next to merle's.
#[doc(hidden)]
pub static TEST_MINIMAL: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/test_minimal.bpf.o"));

/// One program of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Program {
    /// The function name, which is also its pin name.
    pub name: &'static str,
    pub object: &'static [u8],
    pub hook: crate::types::Hook,
}

pub const POD_INGRESS: Program = Program { name: "pod_ingress", object: POD, hook: crate::types::Hook::PodIngress };
pub const NODE_INGRESS: Program = Program { name: "node_ingress", object: NODE, hook: crate::types::Hook::NodeIngress };
pub const PROGRAMS: [Program; 2] = [POD_INGRESS, NODE_INGRESS];

/// FNV-1a over the objects, as 16 hex digits: the version of the
/// datapath, kept in the pin directory's name for the programs.
pub fn digest() -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for o in [POD, NODE, SOCK] {
        for b in o {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}
