//! One allocation block (Calico's AllocationBlock): a CIDR carved from a
//! pool, the node it is affine to, and which of its addresses are taken.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The CNI attachment an address was given to. Handles are for people;
/// this is what the plugin matches on, since `<network>.<container id>`
/// alone can be ambiguous (network names and container IDs may hold dots).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Attachment {
    pub network: String,
    pub container_id: String,
    pub ifname: String,
}

/// Who holds one address of a block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    /// `<network>.<container id>[.<ifname>]`.
    pub handle: String,
    /// The node that made the allocation; differs from the block's affinity
    /// when the address was borrowed.
    pub node: String,
    /// Set for allocations made by merle-cni.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<Attachment>,
}

/// Whom an operation is for: a CNI attachment, or (by hand) a handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub handle: String,
    pub attachment: Option<Attachment>,
}

impl Holder {
    /// The holder of `attachment`, whose handle is `<network>.<container
    /// id>`, with `.<ifname>` when the interface is not `eth0`.
    pub fn of(attachment: Attachment) -> Self {
        let handle = if attachment.ifname == "eth0" {
            format!("{}.{}", attachment.network, attachment.container_id)
        } else {
            format!("{}.{}.{}", attachment.network, attachment.container_id, attachment.ifname)
        };
        Self { handle, attachment: Some(attachment) }
    }

    /// Every allocation with this handle (`merlectl ipam release`).
    pub fn handle(handle: &str) -> Self {
        Self { handle: handle.to_owned(), attachment: None }
    }

    pub fn holds(&self, a: &Allocation) -> bool {
        match &self.attachment {
            Some(x) => a.attachment.as_ref() == Some(x),
            None => a.handle == self.handle,
        }
    }

    pub fn allocation(&self, node: &str) -> Allocation {
        Allocation { handle: self.handle.clone(), node: node.to_owned(), attachment: self.attachment.clone() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    pub cidr: IpNet,
    /// The node the block is affine to.
    pub affinity: Option<String>,
    /// Taken addresses, by ordinal (offset from the block's first address).
    #[serde(default)]
    pub allocations: BTreeMap<u32, Allocation>,
    /// Unix time (seconds) at which the block last became empty; unset while
    /// any address is taken, and for a block that was never used.
    #[serde(default)]
    pub empty_since: Option<u64>,
}

impl Block {
    pub fn new(cidr: IpNet, affinity: Option<String>) -> Self {
        Self { cidr: cidr.trunc(), affinity, allocations: BTreeMap::new(), empty_since: None }
    }

    /// Number of addresses. Block sizes are validated to hold at most 4096.
    pub fn size(&self) -> u32 {
        let host_bits = u32::from(self.cidr.max_prefix_len() - self.cidr.prefix_len());
        1u32.checked_shl(host_bits).unwrap_or(u32::MAX)
    }

    pub fn used(&self) -> u32 {
        self.allocations.len() as u32
    }

    pub fn is_full(&self) -> bool {
        self.used() >= self.size()
    }

    pub fn is_affine_to(&self, node: &str) -> bool {
        self.affinity.as_deref() == Some(node)
    }

    /// The address at `ordinal`.
    pub fn addr(&self, ordinal: u32) -> IpAddr {
        match self.cidr.network() {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a).wrapping_add(ordinal))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a).wrapping_add(u128::from(ordinal)))),
        }
    }

    /// The ordinal of `ip`, when it lies in the block.
    pub fn ordinal(&self, ip: IpAddr) -> Option<u32> {
        if !self.cidr.contains(&ip) {
            return None;
        }
        let off = match (self.cidr.network(), ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => u128::from(u32::from(a) - u32::from(n)),
            (IpAddr::V6(n), IpAddr::V6(a)) => u128::from(a) - u128::from(n),
            _ => return None,
        };
        u32::try_from(off).ok()
    }

    /// Takes the lowest free address for `a`.
    pub fn allocate(&mut self, a: Allocation) -> Option<IpAddr> {
        let ordinal = (0..self.size()).find(|o| !self.allocations.contains_key(o))?;
        self.allocations.insert(ordinal, a);
        self.empty_since = None;
        Some(self.addr(ordinal))
    }

    /// Frees every address `who` holds here; returns them.
    pub fn release(&mut self, who: &Holder, now: u64) -> Vec<IpAddr> {
        let gone: Vec<u32> = self.allocations.iter().filter(|(_, a)| who.holds(a)).map(|(o, _)| *o).collect();
        for o in &gone {
            self.allocations.remove(o);
        }
        if !gone.is_empty() && self.allocations.is_empty() {
            self.empty_since = Some(now);
        }
        gone.into_iter().map(|o| self.addr(o)).collect()
    }

    /// The host prefix (/32 or /128) of an address.
    pub fn host(ip: IpAddr) -> IpNet {
        IpNet::from(ip)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn allocates_lowest_free_and_reuses_freed() {
        let mut b = Block::new("10.0.0.64/30".parse().unwrap(), Some("a".into()));
        assert_eq!(b.size(), 4);
        let h = |i: u32| Holder::handle(&format!("h{i}"));
        let got: Vec<_> = (0..4).map(|i| b.allocate(h(i).allocation("a")).unwrap()).collect();
        assert_eq!(got[0], "10.0.0.64".parse::<IpAddr>().unwrap());
        assert_eq!(got[3], "10.0.0.67".parse::<IpAddr>().unwrap());
        assert!(b.allocate(h(5).allocation("a")).is_none());
        assert_eq!(b.release(&h(2), 7), vec!["10.0.0.66".parse::<IpAddr>().unwrap()]);
        assert_eq!(b.empty_since, None);
        assert_eq!(b.allocate(h(6).allocation("a")), Some("10.0.0.66".parse().unwrap()));
    }

    #[test]
    fn empty_since_set_when_last_address_goes() {
        let mut b = Block::new("fd00::/126".parse().unwrap(), None);
        let x = Holder::handle("x");
        b.allocate(x.allocation("n")).unwrap();
        b.allocate(x.allocation("n")).unwrap();
        assert_eq!(b.release(&x, 42).len(), 2);
        assert_eq!(b.empty_since, Some(42));
        assert!(b.release(&x, 43).is_empty());
        assert_eq!(b.empty_since, Some(42));
    }

    #[test]
    fn attachments_are_told_apart_even_when_handles_collide() {
        let att =
            |n: &str, c: &str, i: &str| Attachment { network: n.into(), container_id: c.into(), ifname: i.into() };
        let one = Holder::of(att("a", "b.c", "eth0"));
        let two = Holder::of(att("a.b", "c", "eth0"));
        assert_eq!(one.handle, two.handle);
        assert!(!two.holds(&one.allocation("n")));
        assert!(Holder::handle("a.b.c").holds(&one.allocation("n")));
        assert_eq!(Holder::of(att("k8s", "c1", "net1")).handle, "k8s.c1.net1");
    }

    #[test]
    fn ordinal_round_trips() {
        let b = Block::new("fd00::40/122".parse().unwrap(), None);
        assert_eq!(b.size(), 64);
        for o in [0, 1, 63] {
            assert_eq!(b.ordinal(b.addr(o)), Some(o));
        }
        assert_eq!(b.ordinal("fd00::80".parse().unwrap()), None);
        assert_eq!(b.ordinal("10.0.0.1".parse().unwrap()), None);
    }
}
