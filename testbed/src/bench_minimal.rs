//! The minimal datapath of `ebpf/bpf/test/minimal.bpf.c` inside the
//! datapath benchmark: the programs REFERENCE.md's goals come from,
//! measured in the same run as merle's, on the same links. The benchmark
//! points every pinned TCX link of both nodes at the minimal programs
//! (BPF_LINK_UPDATE, so no packet sees no program) and back to merle's.

use std::os::fd::{AsFd, BorrowedFd};

use anyhow::Context;
use aya::programs::SchedClassifier;
use aya::Ebpf;
use merle_ebpf::objects;
use merle_ebpf::sys::{link_update, obj_get};
use merle_ebpf::types::Hook;
use merle_ebpf::PinDir;

use crate::datapath::{Cluster, Pod};

pub const POD: &str = "minimal_pod";
pub const NODE: &str = "minimal_node";

/// The two minimal programs, loaded (not pinned) for the benchmark's run.
#[derive(Debug)]
pub struct Minimal {
    bpf: Ebpf,
}

impl Minimal {
    pub fn load() -> anyhow::Result<Self> {
        let mut bpf = Ebpf::load(objects::TEST_MINIMAL).context("loading bpf/test/minimal.bpf.c")?;
        for name in [POD, NODE] {
            let p: &mut SchedClassifier = bpf
                .program_mut(name)
                .with_context(|| format!("no {name} in the minimal object"))?
                .try_into()
                .with_context(|| format!("{name} is not a classifier"))?;
            p.load().with_context(|| format!("loading {name}"))?;
        }
        Ok(Self { bpf })
    }

    fn prog(&self, name: &str) -> anyhow::Result<&SchedClassifier> {
        self.bpf
            .program(name)
            .with_context(|| format!("no {name}"))?
            .try_into()
            .with_context(|| format!("{name} is not a classifier"))
    }

    pub fn fd(&self, name: &str) -> anyhow::Result<BorrowedFd<'_>> {
        Ok(self.prog(name)?.fd().with_context(|| format!("{name} has no descriptor"))?.as_fd())
    }

    pub fn id(&self, name: &str) -> anyhow::Result<u32> {
        Ok(self.prog(name)?.info().with_context(|| format!("{name}: program info"))?.id())
    }
}

/// Points every pinned link of both nodes at the minimal programs, or with
/// `None` back at each node's own merle programs. Returns how many links
/// moved.
pub fn relink(c: &Cluster, to: Option<&Minimal>) -> anyhow::Result<usize> {
    let r = relink_all(c, to);
    if r.is_err() && to.is_some() {
        // Half moved: put every link back on merle's programs.
        let _ = relink_all(c, None);
    }
    r
}

fn relink_all(c: &Cluster, to: Option<&Minimal>) -> anyhow::Result<usize> {
    let mut n = 0;
    for node in &c.nodes {
        let pins = PinDir::new(node.bpffs.pin_dir());
        for (hook, merle, minimal) in
            [(Hook::PodIngress, "pod_ingress", POD), (Hook::NodeIngress, "node_ingress", NODE)]
        {
            let own;
            let prog = match to {
                Some(m) => m.fd(minimal)?,
                None => {
                    let path = pins.current_prog(merle).with_context(|| format!("{merle} is not pinned"))?;
                    own = obj_get(&path).with_context(|| format!("opening {}", path.display()))?;
                    own.as_fd()
                }
            };
            for (ifname, clsact) in pins.linked(hook) {
                anyhow::ensure!(!clsact, "{ifname}: a clsact filter, not a TCX link: the benchmark needs TCX");
                let path = pins.link(hook, &ifname);
                let link = obj_get(&path).with_context(|| format!("opening {}", path.display()))?;
                link_update(link.as_fd(), prog).with_context(|| format!("pointing {ifname}'s link at {minimal}"))?;
                n += 1;
            }
        }
    }
    Ok(n)
}

/// The proof that traffic between `a` and `b` takes the programs on the
/// links: with `iptables -I FORWARD -j DROP` on both nodes, the kernel path
/// cannot forward, so a ping that passes went around it.
pub fn prove_fast_path(c: &Cluster, a: &Pod, b: &Pod) -> anyhow::Result<()> {
    let mut added = Vec::new();
    let mut r = Ok(());
    for i in 0..c.nodes.len() {
        match c.ns(i).exec(&["iptables", "-I", "FORWARD", "-j", "DROP"]) {
            Ok(_) => added.push(i),
            Err(e) => {
                r = Err(e);
                break;
            }
        }
    }
    if r.is_ok() {
        r = c.wait_ping(a, &b.v4).and_then(|_| c.wait_ping(b, &a.v4));
    }
    // Every rule that went in comes out, whatever happened.
    for i in added {
        if let Err(e) = c.ns(i).exec(&["iptables", "-D", "FORWARD", "-j", "DROP"]) {
            r = r.and(Err(e));
        }
    }
    r.context("with FORWARD DROP the minimal programs must still forward")
}
