//! The socket programs of `bpf/sock.bpf.c` on the cgroup v2 root: load,
//! link, adopt, move to a new version, unlink.
//!
//! Each program is pinned with the others of its version under
//! `progs/<version>/`, and its cgroup link under `links/sock/<program>`
//! (a link lives while a pin holds it). A merled that finds the links
//! pinned keeps them, moving each to its own version's program with
//! BPF_LINK_UPDATE when the version differs. Leaving eBPF mode removes the
//! pins, which detaches the links.
//!
//! The cgroup v2 root: the configured directory when it is a cgroup2
//! mount, else the one /proc/self/mountinfo names, else cgroup2 mounted on
//! the configured directory (as Cilium mounts /run/cilium/cgroupv2). A
//! merled under `ip netns exec` has a fresh /sys and no cgroup mount at
//! all: it mounts its own, which is the same hierarchy.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use aya::programs::cgroup_sock_addr::CgroupSockAddrAttachType;
use aya::programs::{CgroupSockAddr, ProgramError};
use aya::EbpfLoader;

use crate::pins::PinDir;
use crate::{objects, sys, Error};

/// One socket program and where it attaches (`enum bpf_attach_type`).
#[derive(Debug, Clone, Copy)]
pub struct SockProgram {
    pub name: &'static str,
    pub attach: CgroupSockAddrAttachType,
    pub attach_type: u32,
}

pub const SOCK_PROGRAMS: [SockProgram; 8] = [
    SockProgram { name: "sock4_connect", attach: CgroupSockAddrAttachType::Connect4, attach_type: 10 },
    SockProgram { name: "sock6_connect", attach: CgroupSockAddrAttachType::Connect6, attach_type: 11 },
    SockProgram { name: "sock4_sendmsg", attach: CgroupSockAddrAttachType::UDPSendMsg4, attach_type: 14 },
    SockProgram { name: "sock6_sendmsg", attach: CgroupSockAddrAttachType::UDPSendMsg6, attach_type: 15 },
    SockProgram { name: "sock4_recvmsg", attach: CgroupSockAddrAttachType::UDPRecvMsg4, attach_type: 19 },
    SockProgram { name: "sock6_recvmsg", attach: CgroupSockAddrAttachType::UDPRecvMsg6, attach_type: 20 },
    SockProgram { name: "sock4_getpeername", attach: CgroupSockAddrAttachType::GetPeerName4, attach_type: 29 },
    SockProgram { name: "sock6_getpeername", attach: CgroupSockAddrAttachType::GetPeerName6, attach_type: 30 },
];

/// The cgroup v2 root to link to (see the module's text).
pub fn cgroup_root(configured: &Path) -> Result<PathBuf, Error> {
    if sys::is_cgroup2(configured) {
        return Ok(configured.to_owned());
    }
    if let Some(m) = crate::probe::cgroup2_mount() {
        if sys::is_cgroup2(&m) {
            return Ok(m);
        }
    }
    sys::mount_cgroup2(configured).map_err(|e| {
        Error::Unsupported(format!("no cgroup v2 is mounted and mounting one on {}: {e}", configured.display()))
    })?;
    Ok(configured.to_owned())
}

fn link_pin(pins: &PinDir, name: &str) -> PathBuf {
    pins.root().join("links").join("sock").join(name)
}

/// Loads and pins the socket programs of version `digest`, unless they
/// are pinned already.
pub fn load(pins: &PinDir, digest: &str) -> Result<(), Error> {
    if SOCK_PROGRAMS.iter().all(|p| pins.prog(digest, p.name).exists()) {
        return Ok(());
    }
    let mut ebpf = EbpfLoader::new()
        .map_pin_path(pins.maps())
        .load(objects::SOCK)
        .map_err(|e| Error::Load("sock.bpf.o".into(), e.to_string()))?;
    let dir = pins.progs().join(digest);
    std::fs::create_dir_all(&dir).map_err(|e| Error::Pin(dir.display().to_string(), e))?;
    for p in SOCK_PROGRAMS {
        let prog: &mut CgroupSockAddr = ebpf
            .program_mut(p.name)
            .ok_or_else(|| Error::Load(p.name.into(), "not in the object".into()))?
            .try_into()
            .map_err(|e: ProgramError| Error::Load(p.name.into(), e.to_string()))?;
        prog.load().map_err(|e| match e {
            ProgramError::LoadError { io_error, verifier_log } => {
                Error::Verifier { program: p.name.into(), error: io_error.to_string(), log: verifier_log.to_string() }
            }
            other => Error::Load(p.name.into(), other.to_string()),
        })?;
        let path = pins.prog(digest, p.name);
        if path.exists() {
            std::fs::remove_file(&path).map_err(|e| Error::Pin(path.display().to_string(), e))?;
        }
        prog.pin(&path).map_err(|e| Error::Load(p.name.into(), format!("pinning: {e}")))?;
    }
    Ok(())
}

/// What one socket program's link is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SockLink {
    pub program: String,
    pub program_id: u32,
    /// The link was pinned already and kept (or moved to this version).
    pub kept: bool,
}

/// Links every socket program of version `digest` to `cgroup`, keeping
/// (or moving) pinned links.
pub fn link(pins: &PinDir, digest: &str, cgroup: &Path) -> Result<Vec<SockLink>, Error> {
    let cg = std::fs::File::open(cgroup).map_err(|e| Error::Attach(cgroup.display().to_string(), e.to_string()))?;
    let dir = pins.root().join("links").join("sock");
    std::fs::create_dir_all(&dir).map_err(|e| Error::Pin(dir.display().to_string(), e))?;
    let mut out = Vec::new();
    for p in SOCK_PROGRAMS {
        let prog = CgroupSockAddr::from_pin(pins.prog(digest, p.name), p.attach)
            .map_err(|e| Error::Load(p.name.into(), e.to_string()))?;
        let id = prog.info().map_err(|e| Error::Load(p.name.into(), e.to_string()))?.id();
        let pfd = prog.fd().map_err(|e| Error::Load(p.name.into(), e.to_string()))?;
        let pin = link_pin(pins, p.name);
        if let Ok(l) = sys::obj_get(&pin) {
            let info = sys::link_info(l.as_fd()).map_err(|e| Error::Pin(pin.display().to_string(), e))?;
            if info.prog_id != id {
                sys::link_update(l.as_fd(), pfd.as_fd())
                    .map_err(|e| Error::Attach(p.name.into(), format!("moving the link: {e}")))?;
            }
            out.push(SockLink { program: p.name.into(), program_id: id, kept: true });
            continue;
        }
        let l = sys::link_create(pfd.as_fd(), cg.as_fd(), p.attach_type)
            .map_err(|e| Error::Attach(format!("{} ({})", cgroup.display(), p.name), e.to_string()))?;
        sys::obj_pin(l.as_fd(), &pin).map_err(|e| Error::Pin(pin.display().to_string(), e))?;
        out.push(SockLink { program: p.name.into(), program_id: id, kept: false });
    }
    Ok(out)
}

/// Removes the socket programs' links (their pins): the host's sockets
/// are no longer balanced.
pub fn unlink(pins: &PinDir) -> Result<(), Error> {
    let dir = pins.root().join("links").join("sock");
    if dir.exists() {
        crate::pins::remove_tree(&dir).map_err(|e| Error::Pin(dir.display().to_string(), e))?;
    }
    Ok(())
}

/// The socket programs linked now, by name.
pub fn linked(pins: &PinDir) -> Vec<String> {
    SOCK_PROGRAMS.iter().filter(|p| link_pin(pins, p.name).exists()).map(|p| p.name.to_owned()).collect()
}
