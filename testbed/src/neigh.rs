//! Room in the kernel's neighbour tables for a big testbed.
//!
//! The ARP and NDISC tables are one table each for the whole kernel, not
//! one per network namespace, and `gc_thresh3` (1024 by default, settable
//! only from the initial namespace) bounds the entries of all namespaces
//! together. Past it the kernel refuses new entries (`sendmsg` fails with
//! ENOBUFS, TCP connects time out): 50 speakers in a full mesh on one LAN
//! need 2450 entries. A real node needs one entry per neighbour; only the
//! testbed, with every node in one kernel, needs this.

use std::path::PathBuf;

use anyhow::Context;

const FAMILIES: [&str; 2] = ["ipv4", "ipv6"];

fn knob(family: &str, n: u8) -> PathBuf {
    PathBuf::from(format!("/proc/sys/net/{family}/neigh/default/gc_thresh{n}"))
}

fn read(family: &str, n: u8) -> anyhow::Result<u64> {
    let p = knob(family, n);
    let s = std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
    s.trim().parse().with_context(|| format!("{}: {s:?} is not a number", p.display()))
}

fn write(family: &str, n: u8, v: u64) -> anyhow::Result<()> {
    let p = knob(family, n);
    std::fs::write(&p, v.to_string()).with_context(|| format!("cannot write {v} to {}", p.display()))
}

/// Raises the thresholds while held, and puts the old values back when
/// dropped. Thresholds already high enough are left alone.
#[derive(Debug)]
pub struct NeighRoom {
    saved: Vec<(&'static str, [u64; 3])>,
}

impl NeighRoom {
    /// Room for `entries` neighbours in each family.
    pub fn reserve(entries: u64) -> anyhow::Result<Self> {
        let mut saved = Vec::new();
        for family in FAMILIES {
            let old = [read(family, 1)?, read(family, 2)?, read(family, 3)?];
            if old[2] >= entries {
                continue;
            }
            // The garbage collector starts at thresh2; keep it above the
            // need, so that live entries are never collected mid-run.
            saved.push((family, old));
            write(family, 3, entries * 2)?;
            write(family, 2, entries.max(old[1]))?;
        }
        Ok(Self { saved })
    }

    /// Room for `hosts` nodes on one LAN that all talk to each other.
    pub fn for_mesh(hosts: usize) -> anyhow::Result<Self> {
        let h = hosts as u64;
        // Each pair both ways, and each host's entry for the switch.
        Self::reserve(h * h.saturating_sub(1) + h + 1024)
    }
}

impl Drop for NeighRoom {
    fn drop(&mut self) {
        for (family, old) in &self.saved {
            // thresh2 first: it must never exceed thresh3.
            let _ = write(family, 2, old[1]);
            let _ = write(family, 3, old[2]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[ignore = "needs root to write /proc/sys: the test command runs it with --include-ignored"]
    fn a_reservation_raises_and_restores_the_thresholds() {
        if !crate::is_root() {
            eprintln!("skipped: needs root to write /proc/sys");
            return;
        }
        let before = read("ipv4", 3).unwrap();
        {
            let _room = NeighRoom::reserve(before + 1).unwrap();
            assert!(read("ipv4", 3).unwrap() > before);
            assert!(read("ipv4", 2).unwrap() <= read("ipv4", 3).unwrap());
        }
        assert_eq!(read("ipv4", 3).unwrap(), before);
        let _none = NeighRoom::reserve(1).unwrap();
        assert_eq!(read("ipv4", 3).unwrap(), before, "a small need changes nothing");
    }
}
