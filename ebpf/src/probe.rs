//! Whether this kernel can run the datapath: the bpf(2) syscall for this
//! process, helpers of 5.10 (bpf_redirect_peer, bpf_redirect_neigh), and
//! TCX or clsact to attach with.

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
}
