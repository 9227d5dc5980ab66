//! The pin directory: everything merle keeps in bpffs, so forwarding goes
//! on while merled restarts and the next merled (or merle-cni) finds it.
//!
//! ```text
//! <pin_dir>/maps/merle_endpoints       pinned by name by the loader
//! <pin_dir>/maps/merle_nets4, ..._nets6, merle_metrics
//! <pin_dir>/progs/<digest>/pod_ingress  the loaded programs, per version
//! <pin_dir>/progs/<digest>/node_ingress
//! <pin_dir>/progs/current               a directory whose one entry names
//!                                       the digest in use
//! <pin_dir>/links/pod/<ifname>          TCX links of pod veths
//! <pin_dir>/links/node/<ifname>         TCX links of uplinks / vxlan.merle
//! <pin_dir>/links/*/<ifname>:clsact     a directory: a clsact filter is
//!                                       attached there (no link object)
//! ```
//! bpffs holds only bpf objects and directories, so marks are directories;
//! it refuses dots in names, so a `.` of an interface name is pinned as `:`.

use std::io;
use std::path::{Path, PathBuf};

use crate::types::Hook;
use crate::Error;

/// The default pin directory.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/merle";
/// Where bpffs is mounted when it is missing and the pin directory is
/// under it.
pub const BPFFS: &str = "/sys/fs/bpf";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinDir {
    root: PathBuf,
}

impl PinDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn maps(&self) -> PathBuf {
        self.root.join("maps")
    }

    pub fn map(&self, name: &str) -> PathBuf {
        self.maps().join(name)
    }

    pub fn progs(&self) -> PathBuf {
        self.root.join("progs")
    }

    pub fn prog(&self, digest: &str, name: &str) -> PathBuf {
        self.progs().join(digest).join(name)
    }

    fn current_dir(&self) -> PathBuf {
        self.progs().join("current")
    }

    /// The digest of the programs in use, if any.
    pub fn current(&self) -> Option<String> {
        let mut it = std::fs::read_dir(self.current_dir()).ok()?;
        let e = it.next()?.ok()?;
        Some(e.file_name().to_string_lossy().into_owned())
    }

    pub fn set_current(&self, digest: &str) -> Result<(), Error> {
        let dir = self.current_dir();
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                if e.file_name() != digest {
                    let _ = std::fs::remove_dir(e.path());
                }
            }
        }
        std::fs::create_dir_all(dir.join(digest)).map_err(|e| Error::Pin(dir.display().to_string(), e))
    }

    /// The pinned program `name` in use: what merle-cni links pods to.
    pub fn current_prog(&self, name: &str) -> Option<PathBuf> {
        let p = self.prog(&self.current()?, name);
        p.exists().then_some(p)
    }

    pub fn links(&self, hook: Hook) -> PathBuf {
        self.root.join("links").join(match hook {
            Hook::PodIngress => "pod",
            Hook::NodeIngress => "node",
        })
    }

    /// bpffs refuses names with a dot (`vxlan.merle`), and no interface
    /// name has a colon: dots are written as colons.
    pub fn link(&self, hook: Hook, ifname: &str) -> PathBuf {
        self.links(hook).join(ifname.replace('.', ":"))
    }

    pub fn clsact_mark(&self, hook: Hook, ifname: &str) -> PathBuf {
        self.links(hook).join(format!("{}:clsact", ifname.replace('.', ":")))
    }

    /// The interfaces with a pinned link or clsact mark for `hook`, and
    /// whether each is a clsact mark.
    pub fn linked(&self, hook: Hook) -> Vec<(String, bool)> {
        let mut out: Vec<(String, bool)> = std::fs::read_dir(self.links(hook))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                match n.strip_suffix(":clsact") {
                    Some(i) => (i.replace(':', "."), true),
                    None => (n.replace(':', "."), false),
                }
            })
            .collect();
        out.sort();
        out
    }

    /// Makes sure the pin directory exists on a bpffs: mounts bpffs on
    /// /sys/fs/bpf when the directory is under it and nothing is mounted
    /// there; anywhere else a missing bpffs is an error that says what to
    /// mount.
    pub fn ensure(&self) -> Result<(), Error> {
        let bpffs = Path::new(BPFFS);
        if self.root.starts_with(bpffs) && !crate::sys::is_bpffs(bpffs) {
            std::fs::create_dir_all(bpffs).map_err(|e| Error::Pin(BPFFS.into(), e))?;
            crate::sys::mount_bpffs(bpffs).map_err(|e| Error::Pin(format!("mounting bpffs on {BPFFS}"), e))?;
            tracing::info!("mounted bpffs on {BPFFS}");
        }
        let parent = self.root.ancestors().skip(1).find(|p| p.exists()).unwrap_or(Path::new("/"));
        if !crate::sys::is_bpffs(parent) && !crate::sys::is_bpffs(&self.root) {
            return Err(Error::Pin(
                self.root.display().to_string(),
                io::Error::other(format!(
                    "not on a bpf filesystem: mount one (mount -t bpf bpf {}) or pick a pin directory under {BPFFS}",
                    parent.display()
                )),
            ));
        }
        for d in [self.maps(), self.progs(), self.links(Hook::PodIngress), self.links(Hook::NodeIngress)] {
            std::fs::create_dir_all(&d).map_err(|e| Error::Pin(d.display().to_string(), e))?;
        }
        Ok(())
    }

    /// Removes everything merle pinned (which detaches every TCX link
    /// whose only holder was its pin) and the directory itself.
    pub fn remove_all(&self) -> io::Result<()> {
        if self.root.exists() {
            remove_tree(&self.root)?;
        }
        Ok(())
    }
}

/// bpffs has no recursive remove: pins are unlinked, directories removed
/// bottom-up.
pub(crate) fn remove_tree(p: &Path) -> io::Result<()> {
    let md = std::fs::symlink_metadata(p)?;
    if md.is_dir() {
        for e in std::fs::read_dir(p)? {
            remove_tree(&e?.path())?;
        }
        std::fs::remove_dir(p)
    } else {
        std::fs::remove_file(p)
    }
}
