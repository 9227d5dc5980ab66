//! The flow hash the datapath uses to pick a Maglev slot
//! (`ebpf/bpf/lib/hash.h`): lookup3's final mix over the tuple, with the
//! same seed on every node. Kept here so that a test can tell which
//! backend the C side must have chosen for a flow.

use std::net::IpAddr;

const SEED: u32 = 0x6d65_726c;

fn final_mix(mut a: u32, mut b: u32, mut c: u32) -> u32 {
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(14));
    a ^= c;
    a = a.wrapping_sub(c.rotate_left(11));
    b ^= a;
    b = b.wrapping_sub(a.rotate_left(25));
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(16));
    a ^= c;
    a = a.wrapping_sub(c.rotate_left(4));
    b ^= a;
    b = b.wrapping_sub(a.rotate_left(14));
    c ^= b;
    c.wrapping_sub(b.rotate_left(24))
}

fn three(a: u32, b: u32, c: u32, h: u32) -> u32 {
    let h = h.wrapping_add(0xdead_beef).wrapping_add(3 << 2);
    final_mix(a.wrapping_add(h), b.wrapping_add(h), c.wrapping_add(h))
}

/// A 32-bit word as the BPF program loads it from the packet: the bytes
/// in network order read by a little-endian machine.
fn word(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// The ports as the program combines them: each 16-bit network-order
/// value as a little-endian machine reads it.
fn ports(sport: u16, dport: u16) -> u32 {
    let s = u32::from(u16::from_le_bytes(sport.to_be_bytes()));
    let d = u32::from(u16::from_le_bytes(dport.to_be_bytes()));
    (s << 16) | d
}

/// The hash of a flow from `src:sport` to `dst:dport` with IP protocol
/// `proto`, as a little-endian BPF target computes it. Both addresses of
/// one family.
pub fn flow_hash(src: IpAddr, sport: u16, dst: IpAddr, dport: u16, proto: u8) -> u32 {
    let seed = SEED ^ u32::from(proto);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => three(word(&s.octets()), word(&d.octets()), ports(sport, dport), seed),
        (s, d) => {
            let s = match s {
                IpAddr::V6(a) => a.octets(),
                IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            };
            let d = match d {
                IpAddr::V6(a) => a.octets(),
                IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            };
            let h = three(word(&s[0..]), word(&s[4..]), word(&s[8..]), seed);
            let h = three(word(&s[12..]), word(&d[0..]), word(&d[4..]), h);
            three(word(&d[8..]), word(&d[12..]), ports(sport, dport), h)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIN_V4: u32 = 2_362_795_239;
    const PIN_V6: u32 = 4_264_964_250;

    #[test]
    fn known_answers_pin_the_hash_across_versions() {
        // A change here moves flows between backends during an upgrade:
        // the values were taken once from this function and must stay.
        let c: IpAddr = "10.1.0.5".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let v: IpAddr = "10.96.0.10".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let c6: IpAddr = "fd00:244::5".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let v6: IpAddr = "fd00:96::a".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        assert_eq!(flow_hash(c, 40000, v, 80, 6), PIN_V4);
        assert_eq!(flow_hash(c6, 40000, v6, 80, 17), PIN_V6);
    }

    #[test]
    fn the_hash_depends_on_every_field() {
        let a: IpAddr = "10.1.0.5".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let b: IpAddr = "10.96.0.10".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let h = flow_hash(a, 40000, b, 80, 6);
        assert_ne!(h, flow_hash(a, 40001, b, 80, 6));
        assert_ne!(h, flow_hash(a, 40000, b, 81, 6));
        assert_ne!(h, flow_hash(a, 40000, b, 80, 17));
        assert_ne!(h, flow_hash(b, 40000, a, 80, 6));
    }
}
