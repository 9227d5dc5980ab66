//! eBPF test helpers: a private bpf filesystem per test, so tests pin in
//! parallel without seeing each other's objects, and crafted packets for
//! BPF_PROG_TEST_RUN.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::TempDir;

/// A fresh bpffs instance mounted on a scratch directory; unmounted and
/// removed on drop, which unpins (and so detaches) whatever was pinned in
/// it. Each mount of bpffs is its own instance.
#[derive(Debug)]
pub struct BpfFs {
    dir: TempDir,
}

impl BpfFs {
    pub fn new(tag: &str) -> anyhow::Result<Self> {
        let dir = TempDir::new(&format!("bpffs-{tag}"))?;
        let out = std::process::Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(dir.path())
            .output()
            .context("running mount")?;
        if !out.status.success() {
            anyhow::bail!("cannot mount bpffs on {}: {}", dir.path().display(), String::from_utf8_lossy(&out.stderr));
        }
        Ok(Self { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The pin directory to configure: `<mount>/merle`.
    pub fn pin_dir(&self) -> PathBuf {
        self.dir.path().join("merle")
    }
}

impl Drop for BpfFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(self.dir.path()).output();
    }
}

/// Whether this kernel and process can load BPF programs at all; tests
/// that need it skip with the reason when not.
pub fn skip_unless_bpf(test: &str) -> bool {
    if crate::skip_unless_root(test) {
        return true;
    }
    if merle_ebpf::probe::kernel_version() < (5, 10) {
        eprintln!("SKIP {test}: kernel {} is older than 5.10 (bpf_redirect_peer)", merle_ebpf::probe::kernel_release());
        return true;
    }
    false
}

/// The MAC of `dev` in `ns`.
pub fn mac_of(ns: &crate::netns::Netns, dev: &str) -> anyhow::Result<[u8; 6]> {
    let out = ns.ip(&["-j", "link", "show", dev])?;
    let v: serde_json::Value = serde_json::from_str(&out).with_context(|| format!("ip -j link: {out}"))?;
    let s = v[0]["address"].as_str().with_context(|| format!("no address for {dev}: {out}"))?;
    let b: Vec<u8> = s.split(':').map(|x| u8::from_str_radix(x, 16)).collect::<Result<_, _>>()?;
    b.try_into().map_err(|_| anyhow::anyhow!("{dev}: not a MAC: {s}"))
}

/// The namespace BPF_PROG_TEST_RUN runs the programs in, so that the FIB
/// lookup has routes and neighbours:
///
/// ```text
///   pod0, pod1 (host ends, ee:ee:ee:ee:ee:ee)   up0 192.0.2.1/24, fd00:2::1/64
///   10.1.0.5/32 dev pod0, 10.1.0.6/32 dev pod1   10.99.0.0/24 via 192.0.2.2 (neighbour known)
///                                                10.98.0.0/24 via 192.0.2.3 (no neighbour)
///                                                10.97.0.0/24 blackhole, 10.96.0.0/24 unreachable
///                                                fd00:99::/64 via fd00:2::2 (neighbour known)
/// ```
pub fn prog_net(ns: &crate::netns::Netns) -> anyhow::Result<()> {
    for (a, b) in [("pod0", "pod0p"), ("pod1", "pod1p"), ("up0", "up0p")] {
        ns.ip(&["link", "add", a, "type", "veth", "peer", "name", b])?;
        ns.ip(&["link", "set", a, "up"])?;
        ns.ip(&["link", "set", b, "up"])?;
    }
    for d in ["pod0", "pod1"] {
        ns.ip(&["link", "set", d, "address", "ee:ee:ee:ee:ee:ee"])?;
    }
    ns.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"])?;
    ns.ip(&["addr", "add", "192.0.2.1/24", "dev", "up0"])?;
    ns.ip(&["addr", "add", "fd00:2::1/64", "dev", "up0", "nodad"])?;
    ns.ip(&["neigh", "add", "192.0.2.2", "lladdr", "02:00:00:00:00:02", "dev", "up0", "nud", "permanent"])?;
    ns.ip(&["neigh", "add", "fd00:2::2", "lladdr", "02:00:00:00:00:02", "dev", "up0", "nud", "permanent"])?;
    ns.ip(&["route", "add", "10.99.0.0/24", "via", "192.0.2.2"])?;
    ns.ip(&["route", "add", "10.98.0.0/24", "via", "192.0.2.3"])?;
    ns.ip(&["route", "add", "blackhole", "10.97.0.0/24"])?;
    ns.ip(&["route", "add", "unreachable", "10.96.0.0/24"])?;
    ns.ip(&["-6", "route", "add", "fd00:99::/64", "via", "fd00:2::2"])?;
    ns.ip(&["route", "add", "10.1.0.5/32", "dev", "pod0"])?;
    ns.ip(&["route", "add", "10.1.0.6/32", "dev", "pod1"])?;
    Ok(())
}

/// Crafted frames: Ethernet + IPv4/IPv6 + a small UDP or ICMP payload.
pub mod packet {
    use std::net::{Ipv4Addr, Ipv6Addr};

    pub const ETH_P_IP: u16 = 0x0800;
    pub const ETH_P_IPV6: u16 = 0x86dd;
    pub const ETH_P_ARP: u16 = 0x0806;

    pub fn eth(dst: [u8; 6], src: [u8; 6], proto: u16) -> Vec<u8> {
        let mut v = Vec::with_capacity(64);
        v.extend_from_slice(&dst);
        v.extend_from_slice(&src);
        v.extend_from_slice(&proto.to_be_bytes());
        v
    }

    /// RFC 1071 checksum of `b`.
    pub fn csum(b: &[u8]) -> u16 {
        let mut s: u32 = 0;
        for c in b.chunks(2) {
            s += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }

    /// Fields of an IPv4 header the tests vary.
    #[derive(Debug, Clone, Copy)]
    pub struct V4 {
        pub src: Ipv4Addr,
        pub dst: Ipv4Addr,
        pub ttl: u8,
        /// Header length in 32-bit words (5 = no options).
        pub ihl: u8,
        pub frag: u16,
        pub proto: u8,
        pub payload: usize,
    }

    impl V4 {
        pub fn udp(src: Ipv4Addr, dst: Ipv4Addr) -> Self {
            Self { src, dst, ttl: 64, ihl: 5, frag: 0, proto: 17, payload: 32 }
        }
    }

    pub fn ipv4(dst_mac: [u8; 6], src_mac: [u8; 6], h: V4) -> Vec<u8> {
        let mut v = eth(dst_mac, src_mac, ETH_P_IP);
        let hl = usize::from(h.ihl) * 4;
        let total = (hl.max(20) + h.payload) as u16;
        let mut ip = vec![0u8; hl.max(20)];
        ip[0] = 0x40 | (h.ihl & 0x0f);
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
        ip[6..8].copy_from_slice(&h.frag.to_be_bytes());
        ip[8] = h.ttl;
        ip[9] = h.proto;
        ip[12..16].copy_from_slice(&h.src.octets());
        ip[16..20].copy_from_slice(&h.dst.octets());
        for (i, b) in ip.iter_mut().enumerate().skip(20) {
            *b = if i == 20 { 1 } else { 0 }; // NOP options
        }
        let c = csum(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        v.extend_from_slice(&ip);
        v.extend((0..h.payload).map(|i| i as u8));
        v
    }

    pub fn ipv6(dst_mac: [u8; 6], src_mac: [u8; 6], src: Ipv6Addr, dst: Ipv6Addr, hop_limit: u8, next: u8) -> Vec<u8> {
        let mut v = eth(dst_mac, src_mac, ETH_P_IPV6);
        let payload = 32u16;
        v.extend_from_slice(&[0x60, 0, 0, 0]);
        v.extend_from_slice(&payload.to_be_bytes());
        v.push(next);
        v.push(hop_limit);
        v.extend_from_slice(&src.octets());
        v.extend_from_slice(&dst.octets());
        v.extend((0..payload).map(|i| i as u8));
        v
    }

    pub fn arp(src_mac: [u8; 6]) -> Vec<u8> {
        let mut v = eth([0xff; 6], src_mac, ETH_P_ARP);
        v.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
        v.extend_from_slice(&src_mac);
        v.extend_from_slice(&[10, 1, 0, 5, 0, 0, 0, 0, 0, 0, 169, 254, 1, 1]);
        v
    }

    /// A TCP segment or UDP datagram with a valid checksum: Ethernet,
    /// IPv4 or IPv6 (no options or extension headers), the L4 header and
    /// `payload` bytes. `tcp_flags` is 0 for UDP.
    #[derive(Debug, Clone, Copy)]
    pub struct L4 {
        pub src: std::net::IpAddr,
        pub sport: u16,
        pub dst: std::net::IpAddr,
        pub dport: u16,
        pub proto: u8,
        pub tcp_flags: u8,
        pub payload: usize,
    }

    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const SYN: u8 = 0x02;
    pub const ACK: u8 = 0x10;

    impl L4 {
        pub fn tcp(src: std::net::IpAddr, sport: u16, dst: std::net::IpAddr, dport: u16, flags: u8) -> Self {
            Self { src, sport, dst, dport, proto: TCP, tcp_flags: flags, payload: 16 }
        }
        pub fn udp(src: std::net::IpAddr, sport: u16, dst: std::net::IpAddr, dport: u16) -> Self {
            Self { src, sport, dst, dport, proto: UDP, tcp_flags: 0, payload: 16 }
        }
    }

    fn pseudo(src: &[u8], dst: &[u8], proto: u8, len: usize) -> Vec<u8> {
        let mut p = Vec::with_capacity(40);
        p.extend_from_slice(src);
        p.extend_from_slice(dst);
        if src.len() == 4 {
            p.extend_from_slice(&[0, proto]);
            p.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            p.extend_from_slice(&(len as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, proto]);
        }
        p
    }

    fn octets(a: std::net::IpAddr) -> Vec<u8> {
        match a {
            std::net::IpAddr::V4(a) => a.octets().to_vec(),
            std::net::IpAddr::V6(a) => a.octets().to_vec(),
        }
    }

    pub fn l4(dst_mac: [u8; 6], src_mac: [u8; 6], p: L4) -> Vec<u8> {
        let hl = if p.proto == TCP { 20 } else { 8 };
        let mut seg = vec![0u8; hl];
        seg[0..2].copy_from_slice(&p.sport.to_be_bytes());
        seg[2..4].copy_from_slice(&p.dport.to_be_bytes());
        if p.proto == TCP {
            seg[4..8].copy_from_slice(&0x0102_0304u32.to_be_bytes());
            seg[12] = 5 << 4;
            seg[13] = p.tcp_flags;
            seg[14..16].copy_from_slice(&64240u16.to_be_bytes());
        } else {
            seg[4..6].copy_from_slice(&((hl + p.payload) as u16).to_be_bytes());
        }
        seg.extend((0..p.payload).map(|i| (i * 7) as u8));
        let (s, d) = (octets(p.src), octets(p.dst));
        let mut sum = pseudo(&s, &d, p.proto, seg.len());
        sum.extend_from_slice(&seg);
        let c = csum(&sum);
        let at = if p.proto == TCP { 16 } else { 6 };
        seg[at..at + 2].copy_from_slice(&c.to_be_bytes());
        if s.len() == 4 {
            let mut v = ipv4(
                dst_mac,
                src_mac,
                V4 {
                    src: Ipv4Addr::new(s[0], s[1], s[2], s[3]),
                    dst: Ipv4Addr::new(d[0], d[1], d[2], d[3]),
                    ttl: 64,
                    ihl: 5,
                    frag: 0,
                    proto: p.proto,
                    payload: seg.len(),
                },
            );
            v.truncate(34);
            v.extend_from_slice(&seg);
            v
        } else {
            let mut v = eth(dst_mac, src_mac, ETH_P_IPV6);
            v.extend_from_slice(&[0x60, 0, 0, 0]);
            v.extend_from_slice(&(seg.len() as u16).to_be_bytes());
            v.push(p.proto);
            v.push(64);
            v.extend_from_slice(&s);
            v.extend_from_slice(&d);
            v.extend_from_slice(&seg);
            v
        }
    }

    /// The addresses and ports of a frame `l4` made (after any rewrite).
    pub fn l4_tuple(frame: &[u8]) -> (std::net::IpAddr, u16, std::net::IpAddr, u16) {
        let (s, d, off) = if frame[12..14] == ETH_P_IP.to_be_bytes() {
            let a = |o: usize| std::net::IpAddr::from([frame[o], frame[o + 1], frame[o + 2], frame[o + 3]]);
            (a(26), a(30), 34)
        } else {
            let a = |o: usize| {
                let mut b = [0u8; 16];
                b.copy_from_slice(&frame[o..o + 16]);
                std::net::IpAddr::from(b)
            };
            (a(22), a(38), 54)
        };
        let port = |o: usize| u16::from_be_bytes([frame[o], frame[o + 1]]);
        (s, port(off), d, port(off + 2))
    }

    /// Whether the TCP or UDP checksum of a frame `l4` made is valid (a
    /// UDP checksum of 0 over IPv4 means none, and is not valid here).
    pub fn l4_csum_ok(frame: &[u8]) -> bool {
        let (s, d, proto, off) = if frame[12..14] == ETH_P_IP.to_be_bytes() {
            (&frame[26..30], &frame[30..34], frame[23], 34)
        } else {
            (&frame[22..38], &frame[38..54], frame[20], 54)
        };
        let seg = &frame[off..];
        let mut sum = pseudo(s, d, proto, seg.len());
        sum.extend_from_slice(seg);
        csum(&sum) == 0
    }

    /// Whether the IPv4 header at offset 14 has a valid checksum.
    pub fn ipv4_csum_ok(frame: &[u8]) -> bool {
        let hl = usize::from(frame[14] & 0x0f) * 4;
        csum(&frame[14..14 + hl]) == 0
    }
}
