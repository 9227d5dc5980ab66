//! Whether this kernel can run the datapath: the bpf(2) syscall for this
//! process, helpers of 5.10 (bpf_redirect_peer, bpf_redirect_neigh), and
//! TCX or clsact to attach with; and where the cgroup v2 hierarchy is
//! mounted, for the socket programs of services (unified at
//! /sys/fs/cgroup, or beside v1 controllers at /sys/fs/cgroup/unified on a
//! hybrid layout such as these machines').

use crate::datapath::AttachMode;
use crate::Error;

/// What the probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub attach: AttachMode,
    pub kernel: String,
}

/// `uname -r`.
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_owned()).unwrap_or_default()
}

/// The running kernel's (major, minor).
pub fn kernel_version() -> (u32, u32) {
    version_of(&kernel_release())
}

fn version_of(release: &str) -> (u32, u32) {
    let mut it = release.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).map(|s| s.parse().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// The mount point of the cgroup v2 hierarchy's root, from
/// /proc/self/mountinfo; `None` when no cgroup2 is mounted.
pub fn cgroup2_mount() -> Option<std::path::PathBuf> {
    cgroup2_in(&std::fs::read_to_string("/proc/self/mountinfo").ok()?)
}

/// The cgroup2 root mount in a mountinfo text (`ID PARENT MAJ:MIN ROOT
/// MOUNTPOINT OPTIONS [TAGS] - FSTYPE SOURCE SUPEROPTS`, proc(5)): the
/// first whose ROOT is `/`, /sys/fs/cgroup itself preferred. Mount points
/// come with octal escapes (`\040` for a space), undone here.
pub fn cgroup2_in(mountinfo: &str) -> Option<std::path::PathBuf> {
    let unescape = |s: &str| -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            let octal = b
                .get(i + 1..i + 4)
                .and_then(|d| std::str::from_utf8(d).ok())
                .and_then(|d| u8::from_str_radix(d, 8).ok());
            match (b[i], octal) {
                (b'\\', Some(c)) => {
                    out.push(c);
                    i += 4;
                }
                (c, _) => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    let mounts: Vec<String> = mountinfo
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let f: Vec<&str> = left.split(' ').collect();
            let mount = f.get(4)?;
            (right.split(' ').next() == Some("cgroup2") && f.get(3) == Some(&"/")).then(|| unescape(mount))
        })
        .collect();
    let pick = mounts.iter().find(|m| m.as_str() == "/sys/fs/cgroup").or_else(|| mounts.first())?;
    Some(std::path::PathBuf::from(pick))
}

pub fn probe() -> Result<Probe, Error> {
    let kernel = kernel_release();
    if version_of(&kernel) < (5, 10) {
        return Err(Error::Unsupported(format!(
            "kernel {kernel} is older than 5.10 (bpf_redirect_peer and bpf_redirect_neigh)"
        )));
    }
    crate::sys::has_bpf().map_err(|e| Error::Unsupported(format!("the bpf(2) syscall is not available: {e}")))?;
    Ok(Probe { attach: AttachMode::detect(), kernel })
}

#[cfg(test)]
mod tests {
    #[test]
    fn kernel_versions_parse() {
        assert_eq!(super::version_of("6.18.0-1-amd64"), (6, 18));
        assert_eq!(super::version_of("5.4.0"), (5, 4));
        assert_eq!(super::version_of(""), (0, 0));
    }

    #[test]
    fn cgroup2_is_found_on_hybrid_and_unified_layouts() {
        let hybrid = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
                      32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
                      41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(super::cgroup2_in(hybrid), Some("/sys/fs/cgroup/unified".into()));
        let unified = "25 30 0:22 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n\
                       90 25 0:22 /kubepods /run/x rw - cgroup2 cgroup2 rw\n";
        assert_eq!(super::cgroup2_in(unified), Some("/sys/fs/cgroup".into()));
        let bind = "90 25 0:22 /kubepods /run/x rw - cgroup2 cgroup2 rw\n\
                    91 25 0:22 / /run/my\\040cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            super::cgroup2_in(bind),
            Some("/run/my cgroup".into()),
            "a sub-tree is not the root; escapes undone"
        );
        assert_eq!(super::cgroup2_in("32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"), None);
        assert_eq!(super::cgroup2_in(""), None);
    }

    #[test]
    fn this_machines_cgroup2_mount_is_found() {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        if !info.contains(" - cgroup2 ") {
            eprintln!("SKIP this_machines_cgroup2_mount_is_found: no cgroup2 mounted here");
            return;
        }
        let p = super::cgroup2_mount();
        assert!(p.as_ref().is_some_and(|p| p.is_dir()), "cgroup2 is mounted, found {p:?}");
    }
}
