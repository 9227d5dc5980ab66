//! Loading, adopting and linking the programs.
//!
//! merled loads each program once, pins it under `progs/<digest>/`, and
//! links it: node programs to the uplinks and vxlan.merle itself, pod
//! programs to pod veths that exist. merle-cni only links: it opens the
//! pinned pod program and pins the link it makes, since a TCX link dies
//! with its last file descriptor and the plugin exits at once.
//!
//! A merled that finds programs of its own digest pinned adopts them and
//! their links: nothing is replaced, no packet takes another path. One that
//! finds another digest (an upgrade) loads its programs and moves each TCX
//! link to them with BPF_LINK_UPDATE, which is atomic. The maps are pinned
//! by name and reused by every load.

use std::collections::HashMap;
use std::os::fd::AsFd;

use aya::programs::links::{FdLink, LinkOrder};
use aya::programs::tc::{NlOptions, SchedClassifier, TcAttachOptions};
use aya::programs::{ProgramError, TcAttachType};
use aya::EbpfLoader;

use crate::objects::{self, Program};
use crate::pins::PinDir;
use crate::sys;
use crate::types::Hook;
use crate::Error;

/// How programs are attached to interfaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    /// TCX links (kernel 6.6 and later), pinned.
    Tcx,
    /// A clsact qdisc and a direct-action filter, which outlives its loader.
    Clsact,
}

impl AttachMode {
    /// TCX where the kernel has it, else clsact.
    pub fn detect() -> Self {
        if sys::has_tcx() {
            Self::Tcx
        } else {
            Self::Clsact
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Tcx => "tcx",
            Self::Clsact => "clsact",
        }
    }
}

/// The priority and handle of merle's clsact filters, so a later process
/// can find and replace them.
const CLSACT_PRIORITY: u16 = 16;
const CLSACT_HANDLE: u32 = 0x6d72;

/// One pinned program that can be linked to interfaces.
#[derive(Debug)]
pub struct Linker {
    pins: PinDir,
    attach: AttachMode,
    hook: Hook,
    name: &'static str,
    prog: SchedClassifier,
    prog_id: u32,
}

/// What is attached to one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Linked {
    pub ifname: String,
    pub ifindex: u32,
    pub attach: AttachMode,
    /// The program the link runs; for clsact, the pinned program's.
    pub prog_id: u32,
    /// The link already existed and was kept.
    pub kept: bool,
}

fn load_error(name: &str, e: ProgramError) -> Error {
    match e {
        ProgramError::LoadError { io_error, verifier_log } => {
            Error::Verifier { program: name.to_owned(), error: io_error.to_string(), log: verifier_log.to_string() }
        }
        other => Error::Load(name.to_owned(), other.to_string()),
    }
}

impl Linker {
    /// Opens the pinned program `prog` of the version in use.
    pub fn open(pins: &PinDir, attach: AttachMode, prog: &Program) -> Result<Self, Error> {
        let path = pins
            .current_prog(prog.name)
            .ok_or_else(|| Error::NotLoaded(pins.root().display().to_string(), prog.name.to_owned()))?;
        let p = SchedClassifier::from_pin(&path).map_err(|e| Error::Load(prog.name.to_owned(), e.to_string()))?;
        let prog_id = p.info().map_err(|e| Error::Load(prog.name.to_owned(), e.to_string()))?.id();
        Ok(Self { pins: pins.clone(), attach, hook: prog.hook, name: prog.name, prog: p, prog_id })
    }

    pub fn prog_id(&self) -> u32 {
        self.prog_id
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Runs the program on `packet` with BPF_PROG_TEST_RUN, as if it came
    /// in on `ifindex` of the calling thread's namespace.
    pub fn test_run(&self, packet: &[u8], ifindex: u32, repeat: u32) -> Result<sys::TestRun, Error> {
        let fd = self.prog.fd().map_err(|e| Error::Load(self.name.into(), e.to_string()))?;
        sys::prog_test_run(fd.as_fd(), packet, ifindex, repeat)
            .map_err(|e| Error::Load(self.name.into(), format!("test run: {e}")))
    }

    /// Links the program to `ifname`'s ingress, unless it already is: a
    /// pinned link of a vanished interface is replaced, one running an
    /// older program is moved to this one.
    pub fn link(&mut self, ifname: &str) -> Result<Linked, Error> {
        let ifindex = sys::ifindex(ifname);
        if ifindex == 0 {
            return Err(Error::NoInterface(ifname.to_owned()));
        }
        let linked =
            |kept| Linked { ifname: ifname.to_owned(), ifindex, attach: self.attach, prog_id: self.prog_id, kept };
        match self.attach {
            AttachMode::Tcx => {
                let pin = self.pins.link(self.hook, ifname);
                if let Ok(fd) = sys::obj_get(&pin) {
                    let info = sys::link_info(fd.as_fd()).map_err(|e| Error::Pin(pin.display().to_string(), e))?;
                    if info.ifindex == ifindex {
                        if info.prog_id != self.prog_id {
                            let pfd = self.prog.fd().map_err(|e| Error::Load(self.name.into(), e.to_string()))?;
                            sys::link_update(fd.as_fd(), pfd.as_fd())
                                .map_err(|e| Error::Attach(ifname.to_owned(), format!("updating the link: {e}")))?;
                        }
                        return Ok(linked(true));
                    }
                    // The interface it was made for is gone (or renamed).
                    std::fs::remove_file(&pin).map_err(|e| Error::Pin(pin.display().to_string(), e))?;
                }
                let attached = self.prog.attach_with_options(
                    ifname,
                    TcAttachType::Ingress,
                    TcAttachOptions::TcxOrder(LinkOrder::default()),
                );
                let id = match attached {
                    Ok(id) => id,
                    // Another process (merled and a plugin) linked the same
                    // program a moment ago: TCX refuses a second copy, and
                    // the other one's pin is about to appear.
                    Err(e) => {
                        return if self.pinned_by_another(&pin, ifindex) {
                            Ok(linked(true))
                        } else {
                            Err(Error::Attach(ifname.to_owned(), e.to_string()))
                        }
                    }
                };
                let link = self.prog.take_link(id).map_err(|e| Error::Attach(ifname.to_owned(), e.to_string()))?;
                let fd_link = FdLink::try_from(link).map_err(|e| Error::Attach(ifname.to_owned(), e.to_string()))?;
                match fd_link.pin(&pin) {
                    Ok(_) => Ok(linked(false)),
                    // Pinned by the other process: ours is dropped (and
                    // detached) here, theirs stays.
                    Err(_) if self.pinned_by_another(&pin, ifindex) => Ok(linked(true)),
                    Err(e) => Err(Error::Attach(ifname.to_owned(), format!("pinning the link: {e}"))),
                }
            }
            AttachMode::Clsact => {
                let mark = self.pins.clsact_mark(self.hook, ifname);
                if let Err(e) = aya::programs::tc::qdisc_add_clsact(ifname) {
                    if e.kind() != std::io::ErrorKind::AlreadyExists {
                        return Err(Error::Attach(ifname.to_owned(), format!("adding the clsact qdisc: {e}")));
                    }
                }
                // Replace merle's filter (of any version) with this one.
                let _ = aya::programs::tc::qdisc_detach_program(ifname, TcAttachType::Ingress, self.name);
                let opts = NlOptions { priority: CLSACT_PRIORITY, handle: CLSACT_HANDLE };
                let id = self
                    .prog
                    .attach_with_options(ifname, TcAttachType::Ingress, TcAttachOptions::Netlink(opts))
                    .map_err(|e| Error::Attach(ifname.to_owned(), e.to_string()))?;
                let link = self.prog.take_link(id).map_err(|e| Error::Attach(ifname.to_owned(), e.to_string()))?;
                // A tc filter lives in the qdisc, not in a descriptor: keep
                // it attached when this process is done with it.
                std::mem::forget(link);
                std::fs::create_dir_all(&mark).map_err(|e| Error::Pin(mark.display().to_string(), e))?;
                Ok(linked(false))
            }
        }
    }

    /// Waits up to 100 ms for a pinned link of this program on `ifindex`.
    fn pinned_by_another(&self, pin: &std::path::Path, ifindex: u32) -> bool {
        let until = std::time::Instant::now() + std::time::Duration::from_millis(100);
        loop {
            if let Ok(fd) = sys::obj_get(pin) {
                if let Ok(i) = sys::link_info(fd.as_fd()) {
                    return i.ifindex == ifindex && i.prog_id == self.prog_id;
                }
            }
            if std::time::Instant::now() >= until {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Detaches the program from `ifname` (see [`unlink`]).
    pub fn unlink(&self, ifname: &str) -> Result<(), Error> {
        unlink(&self.pins, self.hook, ifname)
    }
}

/// Detaches what merle attached to `ifname` for `hook`: the pinned TCX link
/// (removing its pin releases it) or the clsact filter. Nothing attached is
/// fine.
pub fn unlink(pins: &PinDir, hook: Hook, ifname: &str) -> Result<(), Error> {
    let pin = pins.link(hook, ifname);
    match std::fs::remove_file(&pin) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::Pin(pin.display().to_string(), e)),
    }
    let mark = pins.clsact_mark(hook, ifname);
    if mark.exists() {
        if sys::ifindex(ifname) != 0 {
            let name = objects::PROGRAMS.iter().find(|p| p.hook == hook).map_or("", |p| p.name);
            let _ = aya::programs::tc::qdisc_detach_program(ifname, TcAttachType::Ingress, name);
        }
        std::fs::remove_dir(&mark).map_err(|e| Error::Pin(mark.display().to_string(), e))?;
    }
    Ok(())
}

/// merled's datapath: both programs, loaded or adopted.
#[derive(Debug)]
pub struct Datapath {
    pub pins: PinDir,
    pub attach: AttachMode,
    pub digest: String,
    /// The programs were found pinned and kept.
    pub adopted: bool,
    pub pod: Linker,
    pub node: Linker,
}

impl Datapath {
    /// Loads and pins merle's programs, or adopts the pinned ones of the
    /// same version.
    pub fn open(pins: &PinDir, attach: AttachMode) -> Result<Self, Error> {
        let adopted = load(pins, &objects::PROGRAMS, &objects::digest())?;
        Ok(Self {
            pins: pins.clone(),
            attach,
            digest: objects::digest(),
            adopted,
            pod: Linker::open(pins, attach, &objects::POD_INGRESS)?,
            node: Linker::open(pins, attach, &objects::NODE_INGRESS)?,
        })
    }

    pub fn linker(&mut self, hook: Hook) -> &mut Linker {
        match hook {
            Hook::PodIngress => &mut self.pod,
            Hook::NodeIngress => &mut self.node,
        }
    }
}

/// Loads `programs` as version `digest` unless they are pinned already;
/// `Ok(true)` when they were (adopted). On a load or verifier failure
/// nothing new stays pinned and nothing is attached.
pub fn load(pins: &PinDir, programs: &[Program], digest: &str) -> Result<bool, Error> {
    pins.ensure()?;
    let previous = pins.current();
    if previous.as_deref() == Some(digest) && programs.iter().all(|p| pins.prog(digest, p.name).exists()) {
        return Ok(true);
    }
    let fresh_maps = std::fs::read_dir(pins.maps()).map(|mut d| d.next().is_none()).unwrap_or(true);
    let result = load_all(pins, programs, digest);
    if let Err(e) = result {
        let _ = crate::pins::remove_tree(&pins.progs().join(digest));
        if previous.is_none() && fresh_maps {
            let _ = pins.remove_all();
        }
        return Err(e);
    }
    // A version that did not keep merle_pod_ifaces (an older one, after a
    // downgrade) may have left it behind the endpoints: brought in line
    // before any link runs a program that reads it.
    if previous.is_some() {
        crate::endpoints::Endpoints::open(pins)?.sync_ifaces(true, &Default::default())?;
    }
    // Existing links move to the new programs; then the new version is
    // the current one and the old programs are unpinned (they stay loaded
    // as long as anything still runs them).
    let mut new_ids: HashMap<Hook, (u32, aya::programs::ProgramFd)> = HashMap::new();
    for p in programs {
        let prog = SchedClassifier::from_pin(pins.prog(digest, p.name))
            .map_err(|e| Error::Load(p.name.into(), e.to_string()))?;
        let id = prog.info().map_err(|e| Error::Load(p.name.into(), e.to_string()))?.id();
        let fd = prog
            .fd()
            .map_err(|e| Error::Load(p.name.into(), e.to_string()))?
            .try_clone()
            .map_err(|e| Error::Load(p.name.into(), e.to_string()))?;
        new_ids.insert(p.hook, (id, fd));
    }
    for (hook, (_, fd)) in &new_ids {
        for (ifname, clsact) in pins.linked(*hook) {
            if clsact {
                continue;
            }
            let pin = pins.link(*hook, &ifname);
            if let Ok(link) = sys::obj_get(&pin) {
                if let Err(e) = sys::link_update(link.as_fd(), fd.as_fd()) {
                    tracing::warn!("cannot move the link of {ifname} to the new program: {e}");
                }
            }
        }
    }
    pins.set_current(digest)?;
    if let Some(old) = previous.filter(|o| o != digest) {
        let dir = pins.progs().join(&old);
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let _ = std::fs::remove_dir(&dir);
    }
    Ok(false)
}

fn load_all(pins: &PinDir, programs: &[Program], digest: &str) -> Result<(), Error> {
    for p in programs {
        let mut ebpf = EbpfLoader::new()
            .map_pin_path(pins.maps())
            .load(p.object)
            .map_err(|e| Error::Load(p.name.to_owned(), e.to_string()))?;
        let prog: &mut SchedClassifier = ebpf
            .program_mut(p.name)
            .ok_or_else(|| Error::Load(p.name.to_owned(), "not in the object".into()))?
            .try_into()
            .map_err(|e: ProgramError| Error::Load(p.name.to_owned(), e.to_string()))?;
        prog.load().map_err(|e| load_error(p.name, e))?;
        let path = pins.prog(digest, p.name);
        let dir = pins.progs().join(digest);
        std::fs::create_dir_all(&dir).map_err(|e| Error::Pin(dir.display().to_string(), e))?;
        if path.exists() {
            std::fs::remove_file(&path).map_err(|e| Error::Pin(path.display().to_string(), e))?;
        }
        prog.pin(&path).map_err(|e| Error::Load(p.name.to_owned(), format!("pinning: {e}")))?;
    }
    Ok(())
}
