//! VXLAN tunnel endpoints, derived rather than distributed.
//!
//! A node's VTEP IP is its node address, the address its BGP routes carry
//! as next hop, and its VTEP MAC is a function of that address. A node that
//! learns a block with next hop `N` therefore knows the VTEP (`N`,
//! `vtep_mac(N)`) without any other channel, and the node at `N` gives its
//! own VXLAN device the same MAC. The MAC is locally administered unicast
//! (`02:`): `02:6d:a:b:c:d` for IPv4 `a.b.c.d`; for IPv6, `06:` and 40 bits
//! of the address's 64-bit FNV-1a hash (`06` is also locally administered
//! unicast). A hash rather than a fold: structured addresses such as
//! `fd00:<rack>::<host>` collide under any xor of their words (`fd00:1::3`
//! and `fd00::2` did), while 40 hashed bits make a collision among 1,000
//! nodes a one-in-two-million chance.
//!
//! An IPv6 route cannot name the VTEP's underlay address as its gateway:
//! the kernel refuses an `onlink` IPv6 gateway that a route through another
//! device covers (the node subnet, say), with "Nexthop has invalid gateway
//! or device mismatch". IPv6 VXLAN routes therefore name the link-local
//! address that goes with the VTEP's MAC (its modified EUI-64, RFC 4291
//! appendix A), which needs no route at all; the permanent neighbour entry
//! maps it to the MAC and the FDB entry the MAC to the underlay address.

use std::net::{IpAddr, Ipv6Addr};

/// The VTEP MAC of the node whose address is `ip`.
pub fn vtep_mac(ip: IpAddr) -> [u8; 6] {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            [0x02, 0x6d, o[0], o[1], o[2], o[3]]
        }
        IpAddr::V6(a) => {
            let h = a
                .octets()
                .iter()
                .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3));
            let b = h.to_be_bytes();
            [0x06, b[3], b[4], b[5], b[6], b[7]]
        }
    }
}

/// The link-local address formed from `mac` by modified EUI-64:
/// `fe80::` + the MAC with the universal/local bit flipped and `ff:fe` in
/// the middle.
pub fn link_local(mac: [u8; 6]) -> Ipv6Addr {
    let m = mac;
    Ipv6Addr::from([0xfe, 0x80, 0, 0, 0, 0, 0, 0, m[0] ^ 0x02, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]])
}

/// The MAC a modified-EUI-64 link-local address was formed from, if it is
/// one.
pub fn mac_of_link_local(a: Ipv6Addr) -> Option<[u8; 6]> {
    let o = a.octets();
    (o[..8] == [0xfe, 0x80, 0, 0, 0, 0, 0, 0] && o[11] == 0xff && o[12] == 0xfe).then_some([
        o[8] ^ 0x02,
        o[9],
        o[10],
        o[13],
        o[14],
        o[15],
    ])
}

/// The gateway a route through the VTEP at `vtep` names: the VTEP itself
/// for IPv4, its link-local address for IPv6 (an address that already is
/// link-local, as read back from the kernel, is its own gateway).
pub fn route_gateway(vtep: IpAddr) -> IpAddr {
    match vtep {
        IpAddr::V4(_) => vtep,
        IpAddr::V6(a) if mac_of_link_local(a).is_some() => vtep,
        IpAddr::V6(_) => IpAddr::V6(link_local(vtep_mac(vtep))),
    }
}

/// The IPv6 VTEP MAC of merle before 2026-12-02: `02:6e:` and the
/// address's four 32-bit words xor-ed together. Only recognised, so that
/// the entries an older merle made are cleaned up.
fn legacy_vtep_mac_v6(a: Ipv6Addr) -> [u8; 6] {
    let mut w = [0u8; 4];
    for chunk in a.octets().chunks_exact(4) {
        for (x, y) in w.iter_mut().zip(chunk) {
            *x ^= y;
        }
    }
    [0x02, 0x6e, w[0], w[1], w[2], w[3]]
}

/// Whether a permanent neighbour or FDB entry pairing `ip` and `mac` is
/// one merle makes: the VTEP address (IPv4 neighbour, FDB destination) or
/// its link-local address (IPv6 neighbour) with the VTEP's MAC, or an
/// IPv6 VTEP with the MAC an older merle gave it.
pub fn is_vtep_entry(ip: IpAddr, mac: [u8; 6]) -> bool {
    match ip {
        IpAddr::V6(a) if mac_of_link_local(a) == Some(mac) => true,
        IpAddr::V6(a) if legacy_vtep_mac_v6(a) == mac => true,
        _ => vtep_mac(ip) == mac,
    }
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn mac_string(mac: [u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_are_local_unicast_and_distinct_per_node() {
        let a = vtep_mac("10.0.0.1".parse().unwrap_or(IpAddr::from([0u8; 4])));
        assert_eq!(mac_string(a), "02:6d:0a:00:00:01");
        assert_eq!(a[0] & 0x03, 0x02, "locally administered, unicast");
        let v6 = |s: &str| vtep_mac(s.parse().unwrap_or(IpAddr::from([0u8; 16])));
        let m = v6("fd00::1");
        assert_eq!((m[0], m[0] & 0x03), (0x06, 0x02), "locally administered, unicast");
        // A known answer: every node, of every version from now on, must
        // derive the same MAC for the same address.
        assert_eq!(mac_string(m), "06:9e:b8:bf:5b:8b");
        // Distinct across subnets and hosts laid out the way racks are
        // (an xor of the words made fd00:1::3 and fd00::2 one MAC).
        let mut seen = std::collections::HashSet::new();
        for rack in 0..40u32 {
            for host in 1..=50u32 {
                let a = format!("fd00:{rack:x}::{host:x}");
                assert!(seen.insert(v6(&a)), "{a} collides");
                let b = format!("2001:db8:{rack:x}:{host:x}::1");
                assert!(seen.insert(v6(&b)), "{b} collides");
            }
        }
        assert_ne!(v6("fd00:1::3"), v6("fd00::2"));
    }

    #[test]
    fn ipv6_routes_name_the_link_local_address_of_the_vtep_mac() {
        let vtep: IpAddr = "fd00::2".parse().unwrap_or(IpAddr::from([0u8; 16]));
        let mac = vtep_mac(vtep);
        // What the kernel itself derives for a device with the MAC
        // 06:12:34:56:78:9a.
        let ll: Ipv6Addr = "fe80::412:34ff:fe56:789a".parse().unwrap_or(Ipv6Addr::UNSPECIFIED);
        assert_eq!(link_local([0x06, 0x12, 0x34, 0x56, 0x78, 0x9a]), ll);
        let ll = link_local(mac);
        assert_eq!(mac_of_link_local(ll), Some(mac));
        assert_eq!(route_gateway(vtep), IpAddr::V6(ll));
        assert_eq!(route_gateway(IpAddr::V6(ll)), IpAddr::V6(ll), "already the kernel's form");
        let v4: IpAddr = "10.0.0.2".parse().unwrap_or(IpAddr::from([0u8; 4]));
        assert_eq!(route_gateway(v4), v4);
        assert!(is_vtep_entry(IpAddr::V6(ll), mac));
        assert!(is_vtep_entry(vtep, mac));
        assert!(is_vtep_entry(v4, vtep_mac(v4)));
        assert!(!is_vtep_entry(IpAddr::V6(ll), vtep_mac(v4)));
        assert!(!is_vtep_entry("fe80::1".parse().unwrap_or(v4), mac));
        // What an older merle made for fd00::2 is recognised, to be removed.
        assert!(is_vtep_entry(vtep, [0x02, 0x6e, 0xfd, 0x00, 0x00, 0x02]));
        assert_eq!(mac_of_link_local("fd00::2".parse().unwrap_or(Ipv6Addr::UNSPECIFIED)), None);
    }
}
