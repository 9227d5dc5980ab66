//! VXLAN tunnel endpoints, derived rather than distributed.
//!
//! A node's VTEP IP is its node address, the address its BGP routes carry
//! as next hop, and its VTEP MAC is a function of that address. A node that
//! learns a block with next hop `N` therefore knows the VTEP (`N`,
//! `vtep_mac(N)`) without any other channel, and the node at `N` gives its
//! own VXLAN device the same MAC. The MAC is locally administered unicast
//! (`02:`): `02:6d:a:b:c:d` for IPv4 `a.b.c.d`; for IPv6, `02:6e:` and the
//! four 32-bit words of the address xor-ed together (IPv6 node addresses
//! differing only in a way that cancels out would collide; addresses in one
//! subnet differing in their last word never do).

use std::net::IpAddr;

/// The VTEP MAC of the node whose address is `ip`.
pub fn vtep_mac(ip: IpAddr) -> [u8; 6] {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            [0x02, 0x6d, o[0], o[1], o[2], o[3]]
        }
        IpAddr::V6(a) => {
            let o = a.octets();
            let mut w = [0u8; 4];
            for chunk in o.chunks_exact(4) {
                for (x, y) in w.iter_mut().zip(chunk) {
                    *x ^= y;
                }
            }
            [0x02, 0x6e, w[0], w[1], w[2], w[3]]
        }
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
        assert_eq!(mac_string(v6("fd00::1")), "02:6e:fd:00:00:01");
        let mut seen = std::collections::HashSet::new();
        for i in 1..=1000u32 {
            assert!(seen.insert(v6(&format!("fd00:10::{:x}:{:x}", i >> 16, i & 0xffff))));
        }
    }
}
