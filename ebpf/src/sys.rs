//! The few bpf(2) commands aya 0.13 does not offer: BPF_PROG_TEST_RUN,
//! BPF_OBJ_GET on a pin, BPF_OBJ_GET_INFO_BY_FD for a link, BPF_LINK_UPDATE,
//! a TCX BPF_PROG_QUERY (the feature probe), BPF_MAP_LOOKUP_BATCH and
//! BPF_MAP_DELETE_BATCH (the conntrack sweep); and statfs/mount for
//! bpffs. Each is one syscall over a `#[repr(C)]` prefix of `union
//! bpf_attr`; the kernel accepts a shorter attr than its own as long as
//! the bytes it does not get would be zero.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_LINK_UPDATE: libc::c_long = 29;
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;

/// `BPF_TCX_INGRESS`; the uapi headers on these machines predate it.
pub const BPF_TCX_INGRESS: u32 = 46;
/// `BPF_LINK_TYPE_TCX`.
pub const BPF_LINK_TYPE_TCX: u32 = 11;
/// `BPF_FS_MAGIC` of statfs(2).
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: attr is a live, exclusively borrowed #[repr(C)] struct laid
    // out as the prefix of union bpf_attr that `cmd` reads, and its size is
    // passed along so the kernel reads and writes no further.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T as *mut libc::c_void, std::mem::size_of::<T>()) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Opens a pinned object (program, map or link).
pub fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    #[repr(C)]
    struct Attr {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
    }
    let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| io::ErrorKind::InvalidInput)?;
    let mut a = Attr { pathname: c.as_ptr() as u64, bpf_fd: 0, file_flags: 0 };
    let fd = bpf(BPF_OBJ_GET, &mut a)?;
    // SAFETY: BPF_OBJ_GET returned a new file descriptor that nothing else
    // owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Pins an object (a link) at `path` on a bpffs.
pub fn obj_pin(fd: BorrowedFd<'_>, path: &Path) -> io::Result<()> {
    #[repr(C)]
    struct Attr {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
    }
    let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| io::ErrorKind::InvalidInput)?;
    let mut a = Attr { pathname: c.as_ptr() as u64, bpf_fd: fd.as_raw_fd() as u32, file_flags: 0 };
    bpf(BPF_OBJ_PIN, &mut a).map(|_| ())
}

/// Links `prog` to the object `target` (a cgroup directory) for
/// `attach_type`; the link lives while its descriptor or a pin does.
pub fn link_create(prog: BorrowedFd<'_>, target: BorrowedFd<'_>, attach_type: u32) -> io::Result<OwnedFd> {
    #[repr(C)]
    struct Attr {
        prog_fd: u32,
        target_fd: u32,
        attach_type: u32,
        flags: u32,
        // The union that follows; zeroes for a cgroup link.
        rest: [u64; 4],
    }
    let mut a = Attr {
        prog_fd: prog.as_raw_fd() as u32,
        target_fd: target.as_raw_fd() as u32,
        attach_type,
        flags: 0,
        rest: [0; 4],
    };
    let fd = bpf(BPF_LINK_CREATE, &mut a)?;
    // SAFETY: BPF_LINK_CREATE returned a new file descriptor that nothing
    // else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// The cookie of the calling thread's network namespace
/// (`SO_NETNS_COOKIE`, Linux 5.14), as `bpf_get_netns_cookie` sees it.
pub fn netns_cookie() -> io::Result<u64> {
    const SO_NETNS_COOKIE: libc::c_int = 71;
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").or_else(|_| std::net::UdpSocket::bind("[::1]:0"))?;
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: the socket is open for the duration of the call, and the
    // kernel writes at most `len` bytes into `cookie`, which is that big.
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            &mut cookie as *mut u64 as *mut libc::c_void,
            &mut len,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cookie)
}

/// `CGROUP2_SUPER_MAGIC` of statfs(2).
const CGROUP2_MAGIC: i64 = 0x6367_7270;

/// Whether `path` is on a cgroup v2 filesystem.
pub fn is_cgroup2(path: &Path) -> bool {
    fs_magic(path) == Some(CGROUP2_MAGIC)
}

/// Mounts the cgroup v2 hierarchy (its root) at `dir`, created if missing.
pub fn mount_cgroup2(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    mount_fs(c"none", dir, c"cgroup2")
}

/// statfs(2)'s filesystem type of `path`.
fn fs_magic(path: &Path) -> Option<i64> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: statfs writes into the zeroed struct we own; c is a valid
    // NUL-terminated path for the duration of the call.
    unsafe {
        let mut s: libc::statfs = std::mem::zeroed();
        (libc::statfs(c.as_ptr(), &mut s) == 0).then_some(s.f_type as i64)
    }
}

/// mount(2) of a filesystem of type `fstype` from `source` on `dir`.
fn mount_fs(source: &std::ffi::CStr, dir: &Path, fstype: &std::ffi::CStr) -> io::Result<()> {
    let target = CString::new(dir.as_os_str().as_encoded_bytes()).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: all three strings are valid NUL-terminated C strings that
    // outlive the call; no data argument is passed.
    let r = unsafe { libc::mount(source.as_ptr(), target.as_ptr(), fstype.as_ptr(), 0, std::ptr::null()) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// What `struct bpf_link_info` says of a TCX link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkInfo {
    pub link_type: u32,
    pub id: u32,
    pub prog_id: u32,
    /// TCX: the interface; 0 once the interface is gone.
    pub ifindex: u32,
    pub attach_type: u32,
}

pub fn link_info(fd: BorrowedFd<'_>) -> io::Result<LinkInfo> {
    #[repr(C)]
    #[derive(Default)]
    struct Info {
        type_: u32,
        id: u32,
        prog_id: u32,
        pad: u32,
        // The union: for TCX, ifindex then attach_type.
        u: [u32; 8],
    }
    #[repr(C)]
    struct Attr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    let mut info = Info::default();
    let mut a = Attr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of::<Info>() as u32,
        info: &mut info as *mut Info as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut a)?;
    Ok(LinkInfo {
        link_type: info.type_,
        id: info.id,
        prog_id: info.prog_id,
        ifindex: info.u[0],
        attach_type: info.u[1],
    })
}

/// Points a link at another program, atomically: packets see the old
/// program or the new one, never none.
pub fn link_update(link: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> io::Result<()> {
    #[repr(C)]
    struct Attr {
        link_fd: u32,
        new_prog_fd: u32,
        flags: u32,
        old_prog_fd: u32,
    }
    let mut a =
        Attr { link_fd: link.as_raw_fd() as u32, new_prog_fd: prog.as_raw_fd() as u32, flags: 0, old_prog_fd: 0 };
    bpf(BPF_LINK_UPDATE, &mut a).map(|_| ())
}

/// Whether the kernel has TCX: a BPF_PROG_QUERY of the loopback's TCX
/// ingress succeeds there and fails with EINVAL on kernels without it.
pub fn has_tcx() -> bool {
    #[repr(C)]
    struct Attr {
        target_ifindex: u32,
        attach_type: u32,
        query_flags: u32,
        attach_flags: u32,
        prog_ids: u64,
        prog_cnt: u32,
        pad: u32,
        prog_attach_flags: u64,
        link_ids: u64,
        link_attach_flags: u64,
        revision: u64,
    }
    let mut a = Attr {
        target_ifindex: 1,
        attach_type: BPF_TCX_INGRESS,
        query_flags: 0,
        attach_flags: 0,
        prog_ids: 0,
        prog_cnt: 0,
        pad: 0,
        prog_attach_flags: 0,
        link_ids: 0,
        link_attach_flags: 0,
        revision: 0,
    };
    bpf(BPF_PROG_QUERY, &mut a).is_ok()
}

/// Whether the bpf(2) syscall is there and allowed to this process.
pub fn has_bpf() -> io::Result<()> {
    // An invalid BPF_OBJ_GET: ENOENT or EINVAL means the syscall answered;
    // ENOSYS or EPERM mean no eBPF for us.
    match obj_get(Path::new("/nonexistent-merle-probe")) {
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EPERM)) => Err(e),
        _ => Ok(()),
    }
}

/// The outcome of one BPF_PROG_TEST_RUN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRun {
    /// The program's return value: the tc verdict.
    pub retval: u32,
    /// The packet as the program left it.
    pub data: Vec<u8>,
    /// Average run time in ns over the repeats.
    pub duration_ns: u32,
    /// `__sk_buff.cb[0]` after the run: the programs store their redirect
    /// target there.
    pub cb0: u32,
}

/// `sizeof(struct __sk_buff)` in 6.1 uapi; the kernel accepts the context
/// of any size up to its own.
const SK_BUFF_SIZE: usize = 192;
const SK_BUFF_IFINDEX: usize = 40;
const SK_BUFF_CB0: usize = 48;

/// Runs a sched_cls program on `packet` as if it arrived on `ifindex` (in
/// the calling thread's network namespace), `repeat` times.
pub fn prog_test_run(prog: BorrowedFd<'_>, packet: &[u8], ifindex: u32, repeat: u32) -> io::Result<TestRun> {
    #[repr(C)]
    struct Attr {
        prog_fd: u32,
        retval: u32,
        data_size_in: u32,
        data_size_out: u32,
        data_in: u64,
        data_out: u64,
        repeat: u32,
        duration: u32,
        ctx_size_in: u32,
        ctx_size_out: u32,
        ctx_in: u64,
        ctx_out: u64,
        flags: u32,
        cpu: u32,
        batch_size: u32,
        // Explicit: the kernel refuses an attr whose bytes past the last
        // field it knows are not zero, and padding is not initialised.
        pad: u32,
    }
    let mut out = vec![0u8; packet.len() + 256];
    let mut ctx_in = [0u8; SK_BUFF_SIZE];
    ctx_in[SK_BUFF_IFINDEX..SK_BUFF_IFINDEX + 4].copy_from_slice(&ifindex.to_ne_bytes());
    let mut ctx_out = [0u8; SK_BUFF_SIZE];
    let mut a = Attr {
        prog_fd: prog.as_raw_fd() as u32,
        retval: 0,
        data_size_in: packet.len() as u32,
        data_size_out: out.len() as u32,
        data_in: packet.as_ptr() as u64,
        data_out: out.as_mut_ptr() as u64,
        repeat,
        duration: 0,
        ctx_size_in: SK_BUFF_SIZE as u32,
        ctx_size_out: SK_BUFF_SIZE as u32,
        ctx_in: ctx_in.as_ptr() as u64,
        ctx_out: ctx_out.as_mut_ptr() as u64,
        flags: 0,
        cpu: 0,
        batch_size: 0,
        pad: 0,
    };
    bpf(BPF_PROG_TEST_RUN, &mut a)?;
    out.truncate((a.data_size_out as usize).min(out.len()));
    let cb0 = u32::from_ne_bytes([
        ctx_out[SK_BUFF_CB0],
        ctx_out[SK_BUFF_CB0 + 1],
        ctx_out[SK_BUFF_CB0 + 2],
        ctx_out[SK_BUFF_CB0 + 3],
    ]);
    Ok(TestRun { retval: a.retval, data: out, duration_ns: a.duration, cb0 })
}

/// Whether `path` is on a bpf filesystem.
pub fn is_bpffs(path: &Path) -> bool {
    fs_magic(path) == Some(BPF_FS_MAGIC)
}

/// Mounts a new bpf filesystem on `dir`.
pub fn mount_bpffs(dir: &Path) -> io::Result<()> {
    mount_fs(c"bpf", dir, c"bpf")
}

/// `if_nametoindex`, 0 when there is no such interface.
pub fn ifindex(name: &str) -> u32 {
    let Ok(c) = CString::new(name) else { return 0 };
    // SAFETY: c is a valid NUL-terminated string for the call.
    unsafe { libc::if_nametoindex(c.as_ptr()) }
}

/// `if_indextoname`.
pub fn ifname(index: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf has IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: on success buf holds a NUL-terminated name.
    let s = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Some(s.to_string_lossy().into_owned())
}

/// `union bpf_attr`'s `batch` member.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Where a batched walk of a hash map is: the kernel's bucket cursor.
#[derive(Debug, Clone, Copy, Default)]
pub struct BatchCursor {
    token: Option<u64>,
}

/// One BPF_MAP_LOOKUP_BATCH of a hash map from `cursor` (a default cursor:
/// the start): fills the front of `keys` and `values` (as many of each,
/// whose types are the map's key and value) and moves the cursor. The
/// number filled, and whether the walk reached the end.
pub fn map_lookup_batch<K: aya::Pod, V: aya::Pod>(
    map: BorrowedFd<'_>,
    cursor: &mut BatchCursor,
    keys: &mut [K],
    values: &mut [V],
) -> io::Result<(usize, bool)> {
    let want = keys.len().min(values.len());
    let mut in_token = cursor.token.unwrap_or(0);
    let mut out_token = 0u64;
    let mut a = BatchAttr {
        in_batch: if cursor.token.is_some() { &mut in_token as *mut u64 as u64 } else { 0 },
        out_batch: &mut out_token as *mut u64 as u64,
        keys: keys.as_mut_ptr() as u64,
        values: values.as_mut_ptr() as u64,
        count: u32::try_from(want).map_err(|_| io::ErrorKind::InvalidInput)?,
        map_fd: map.as_raw_fd() as u32,
        ..Default::default()
    };
    // The kernel writes at most `count` keys and values into buffers that
    // hold `want` of each (K and V are plain data: any bytes are valid),
    // and 4 bytes of cursor into a u64; then `count` says how many it wrote.
    let r = bpf(BPF_MAP_LOOKUP_BATCH, &mut a);
    let n = (a.count as usize).min(want);
    match r {
        Ok(_) => {
            cursor.token = Some(out_token);
            Ok((n, false))
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok((n, true)),
        Err(e) => Err(e),
    }
}

/// BPF_MAP_DELETE_BATCH of `keys`; a key already gone is skipped. The
/// number deleted.
pub fn map_delete_batch<K: aya::Pod>(map: BorrowedFd<'_>, keys: &[K]) -> io::Result<usize> {
    let (mut at, mut deleted) = (0, 0);
    while at < keys.len() {
        let rest = &keys[at..];
        let mut a = BatchAttr {
            keys: rest.as_ptr() as u64,
            count: u32::try_from(rest.len()).map_err(|_| io::ErrorKind::InvalidInput)?,
            map_fd: map.as_raw_fd() as u32,
            ..Default::default()
        };
        // The kernel reads `count` keys from `rest`, and writes back in
        // `count` how many it deleted before it stopped.
        let r = bpf(BPF_MAP_DELETE_BATCH, &mut a);
        let done = (a.count as usize).min(rest.len());
        deleted += done;
        at += done;
        match r {
            Ok(_) => break,
            // Evicted by the LRU, or deleted, since the walk read it.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => at += 1,
            Err(e) => return Err(e),
        }
    }
    Ok(deleted)
}
