//! Socket options for session security: TCP MD5 signatures (RFC 2385) and
//! the Generalized TTL Security Mechanism (RFC 5082).
//!
//! libc has the option numbers but not `struct tcp_md5sig`, so it is
//! declared here as in `<linux/tcp.h>`. These are the only `unsafe` calls
//! in merled: plain `setsockopt(2)` on a file descriptor we own.
#![allow(unsafe_code)]

use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;

/// RFC 2385 / Linux: keys are at most 80 octets.
pub const MD5_MAX_KEY: usize = 80;

/// `struct tcp_md5sig` from `<linux/tcp.h>`.
#[repr(C)]
struct TcpMd5Sig {
    addr: libc::sockaddr_storage,
    flags: u8,
    prefixlen: u8,
    keylen: u16,
    ifindex: libc::c_int,
    key: [u8; MD5_MAX_KEY],
}

fn setsockopt<T>(fd: &impl AsRawFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    let len = libc::socklen_t::try_from(std::mem::size_of::<T>()).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: `value` points to a live, initialised `T` of exactly `len`
    // bytes for the duration of the call, and the kernel only reads it.
    // `fd` is a valid descriptor borrowed from its owner.
    let rc = unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, (value as *const T).cast(), len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Fills a `sockaddr_storage` with `ip`. An IPv4 peer on an IPv6 socket
/// (a dual-stack listener) must be given as an IPv4-mapped address.
fn storage(ip: IpAddr, socket_is_v6: bool) -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let ip = match (ip, socket_is_v6) {
        (IpAddr::V4(a), true) => IpAddr::V6(a.to_ipv6_mapped()),
        (ip, _) => ip,
    };
    match ip {
        IpAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for any
            // sockaddr type, which is what it exists for.
            let sin = unsafe { &mut *(&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.octets());
        }
        IpAddr::V6(a) => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_addr.s6_addr = a.octets();
        }
    }
    ss
}

/// Sets (or, with `None`, removes) the TCP MD5 key for `peer` on a socket:
/// a listening socket (before the peer connects) or an unconnected one
/// (before connecting). `socket_is_v6` is the socket's own family.
pub fn set_md5(fd: &impl AsRawFd, socket_is_v6: bool, peer: IpAddr, key: Option<&str>) -> io::Result<()> {
    let key = key.unwrap_or("").as_bytes();
    if key.len() > MD5_MAX_KEY {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "TCP MD5 key longer than 80 octets"));
    }
    let mut sig = TcpMd5Sig {
        addr: storage(peer, socket_is_v6),
        flags: 0,
        prefixlen: 0,
        keylen: key.len() as u16,
        ifindex: 0,
        key: [0; MD5_MAX_KEY],
    };
    sig.key[..key.len()].copy_from_slice(key);
    match setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_MD5SIG, &sig) {
        // Removing a key that was never set is fine.
        Err(e) if key.is_empty() && e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        r => r,
    }
}

/// GTSM (RFC 5082): send with TTL 255 and accept only packets that arrive
/// with at least 256 - `hops` (the peer is at most `hops` hops away).
pub fn set_gtsm(fd: &impl AsRawFd, v6: bool, hops: u8) -> io::Result<()> {
    let min: libc::c_int = 256 - libc::c_int::from(hops.max(1));
    let ttl: libc::c_int = 255;
    if v6 {
        setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, &ttl)?;
        setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_MINHOPCOUNT, &min)?;
    }
    // A dual-stack IPv6 socket talks IPv4 to IPv4-mapped peers; set the IPv4
    // options too (they fail harmlessly on a v6-only socket).
    let v4 = setsockopt(fd, libc::IPPROTO_IP, libc::IP_TTL, &ttl)
        .and_then(|()| setsockopt(fd, libc::IPPROTO_IP, libc::IP_MINTTL, &min));
    if v6 {
        Ok(())
    } else {
        v4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads an int option back, as the kernel holds it.
    fn getsockopt_int(fd: &impl AsRawFd, level: libc::c_int, name: libc::c_int) -> libc::c_int {
        let mut v: libc::c_int = -1;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `v` and `len` are live locals the kernel writes at most
        // `len` bytes into; `fd` is a valid descriptor.
        let rc =
            unsafe { libc::getsockopt(fd.as_raw_fd(), level, name, (&mut v as *mut libc::c_int).cast(), &mut len) };
        assert_eq!(rc, 0, "getsockopt: {}", io::Error::last_os_error());
        v
    }

    /// Connects from 127.0.0.2 to `to`, optionally signing with `key`.
    fn connect_from_2(to: std::net::SocketAddr, key: Option<&str>) -> io::Result<std::net::TcpStream> {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        s.bind(&std::net::SocketAddr::from(([127, 0, 0, 2], 0)).into())?;
        if let Some(k) = key {
            set_md5(&s, false, to.ip(), Some(k))?;
        }
        s.connect_timeout(&to.into(), std::time::Duration::from_millis(400))?;
        Ok(s.into())
    }

    /// The kernel holds what was set: the GTSM options read back, and an
    /// MD5 key is enforced on real connections over loopback (Linux has no
    /// getsockopt for TCP_MD5SIG): an unsigned or wrongly signed SYN is
    /// dropped, a rightly signed one connects, and removing the key lets
    /// unsigned ones in again.
    #[test]
    fn options_apply_to_real_sockets() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let at = l.local_addr().unwrap();
        set_md5(&l, false, "127.0.0.2".parse().unwrap(), Some("secret")).unwrap();
        assert!(connect_from_2(at, None).is_err(), "an unsigned SYN got through");
        assert!(connect_from_2(at, Some("wrong")).is_err(), "a wrongly signed SYN got through");
        let ok = connect_from_2(at, Some("secret")).expect("a rightly signed SYN connects");
        drop(ok);
        set_md5(&l, false, "127.0.0.2".parse().unwrap(), None).unwrap();
        connect_from_2(at, None).expect("without the key, unsigned SYNs connect");
        assert!(set_md5(&l, false, "127.0.0.2".parse().unwrap(), Some(&"x".repeat(81))).is_err());

        set_gtsm(&l, false, 1).unwrap();
        assert_eq!(getsockopt_int(&l, libc::IPPROTO_IP, libc::IP_TTL), 255);
        assert_eq!(getsockopt_int(&l, libc::IPPROTO_IP, libc::IP_MINTTL), 255);
        set_gtsm(&l, false, 3).unwrap();
        assert_eq!(getsockopt_int(&l, libc::IPPROTO_IP, libc::IP_MINTTL), 253);
        let l6 = match std::net::TcpListener::bind("[::1]:0") {
            Ok(l) => l,
            Err(e) => {
                eprintln!("skipping the IPv6 half: no IPv6 loopback here ({e})");
                return;
            }
        };
        set_md5(&l6, true, "::1".parse().unwrap(), Some("secret")).unwrap();
        // An IPv4 peer on a dual-stack socket goes in as IPv4-mapped.
        set_md5(&l6, true, "127.0.0.2".parse().unwrap(), Some("secret")).unwrap();
        set_gtsm(&l6, true, 2).unwrap();
        assert_eq!(getsockopt_int(&l6, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS), 255);
        assert_eq!(getsockopt_int(&l6, libc::IPPROTO_IPV6, libc::IPV6_MINHOPCOUNT), 254);
        // And the IPv4 options for IPv4-mapped peers on the same socket.
        assert_eq!(getsockopt_int(&l6, libc::IPPROTO_IP, libc::IP_MINTTL), 254);
    }
}
