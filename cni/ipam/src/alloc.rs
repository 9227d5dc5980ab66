//! Calico's allocation rules, as pure functions over the set of blocks:
//! affine blocks first, then a newly claimed block, then (unless strict
//! affinity) one address borrowed from another node's block.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use conf::Pool;
use ipnet::IpNet;

use crate::block::{Attachment, Block, Holder};
use crate::IpamError;

/// Every block in the store, by CIDR.
pub type Blocks = BTreeMap<IpNet, Block>;

/// One ADD's request for addresses.
#[derive(Debug, Clone, Copy)]
pub struct Assign<'a> {
    pub holder: &'a Holder,
    pub node: &'a str,
    pub pools: &'a [Pool],
    pub strict_affinity: bool,
}

/// The addresses `who` holds, IPv4 first.
pub fn addresses_of(blocks: &Blocks, who: &Holder) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = blocks
        .values()
        .flat_map(|b| b.allocations.iter().filter(|(_, a)| who.holds(a)).map(|(o, _)| b.addr(*o)))
        .collect();
    out.sort_by_key(|a| (a.is_ipv6(), *a));
    out
}

/// Gives the holder one address of each family the pools offer, and says
/// whether they are new: a holder that already has addresses gets them
/// back unchanged. On error nothing in `blocks` has changed.
pub fn assign(blocks: &mut Blocks, r: &Assign<'_>) -> Result<(Vec<IpAddr>, bool), IpamError> {
    let held = addresses_of(blocks, r.holder);
    if !held.is_empty() {
        return Ok((held, false));
    }
    if r.pools.is_empty() {
        return Err(IpamError::NoPools);
    }
    let mut out = Vec::new();
    let mut touched: Vec<IpNet> = Vec::new();
    for v6 in [false, true] {
        let pools: Vec<&Pool> = r.pools.iter().filter(|p| p.cidr.addr().is_ipv6() == v6).collect();
        if pools.is_empty() {
            continue;
        }
        match assign_family(blocks, r, &pools) {
            Some((ip, block, claimed)) => {
                out.push(ip);
                touched.push(block);
                if claimed {
                    // Remember to drop the claim too if the other family fails.
                    touched.push(block);
                }
            }
            None => {
                undo(blocks, r.holder, &touched);
                return Err(IpamError::Exhausted {
                    family: if v6 { "IPv6" } else { "IPv4" },
                    strict: r.strict_affinity,
                });
            }
        }
    }
    Ok((out, true))
}

/// Rolls back a half-done dual-stack assignment.
fn undo(blocks: &mut Blocks, who: &Holder, touched: &[IpNet]) {
    for cidr in touched {
        let claimed = touched.iter().filter(|c| *c == cidr).count() > 1;
        if claimed {
            blocks.remove(cidr);
        } else if let Some(b) = blocks.get_mut(cidr) {
            b.allocations.retain(|_, a| !who.holds(a));
        }
    }
}

fn in_pools(pools: &[&Pool], cidr: &IpNet) -> bool {
    pools.iter().any(|p| p.cidr.contains(cidr))
}

/// One address from `pools`: the block it came from and whether that block
/// was claimed for it.
fn assign_family(blocks: &mut Blocks, r: &Assign<'_>, pools: &[&Pool]) -> Option<(IpAddr, IpNet, bool)> {
    // 1. This node's blocks.
    let affine = blocks.values().find(|b| b.is_affine_to(r.node) && !b.is_full() && in_pools(pools, &b.cidr));
    if let Some(cidr) = affine.map(|b| b.cidr) {
        let ip = blocks.get_mut(&cidr)?.allocate(r.holder.allocation(r.node))?;
        return Some((ip, cidr, false));
    }
    // 2. A free block, claimed for this node.
    if let Some(cidr) = free_block(blocks, pools) {
        let mut b = Block::new(cidr, Some(r.node.to_owned()));
        let ip = b.allocate(r.holder.allocation(r.node))?;
        blocks.insert(cidr, b);
        return Some((ip, cidr, true));
    }
    // 3. An address borrowed from another node's block.
    if r.strict_affinity {
        return None;
    }
    let other = blocks.values().find(|b| !b.is_affine_to(r.node) && !b.is_full() && in_pools(pools, &b.cidr))?;
    let cidr = other.cidr;
    let ip = blocks.get_mut(&cidr)?.allocate(r.holder.allocation(r.node))?;
    Some((ip, cidr, false))
}

/// The first block-sized CIDR of the pools that no block covers or overlaps.
fn free_block(blocks: &Blocks, pools: &[&Pool]) -> Option<IpNet> {
    for pool in pools {
        let size = pool.block_size();
        let existing: Vec<IpNet> =
            blocks.keys().filter(|c| pool.cidr.contains(*c) || c.contains(&pool.cidr)).copied().collect();
        let exact: HashSet<IpNet> = existing.iter().filter(|c| c.prefix_len() == size).copied().collect();
        let odd: Vec<IpNet> = existing.iter().filter(|c| c.prefix_len() != size).copied().collect();
        let candidates = pool.cidr.subnets(size).ok()?;
        for c in candidates {
            if exact.contains(&c) || odd.iter().any(|o| o.contains(&c) || c.contains(o)) {
                continue;
            }
            return Some(c);
        }
    }
    None
}

/// Frees every address of `who`; returns them. An unknown holder frees
/// nothing, which is success.
pub fn release(blocks: &mut Blocks, who: &Holder, now: u64) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = blocks.values_mut().flat_map(|b| b.release(who, now)).collect();
    out.sort_by_key(|a| (a.is_ipv6(), *a));
    out
}

/// CNI GC: the attachments of `network` allocated by `node` that are not
/// in `valid`, each once, in order. The plugin unwires and then releases
/// them.
pub fn stale(blocks: &Blocks, node: &str, network: &str, valid: &HashSet<Attachment>) -> Vec<Attachment> {
    let mut stale: Vec<Attachment> = blocks
        .values()
        .flat_map(|b| b.allocations.values())
        .filter(|a| a.node == node)
        .filter_map(|a| a.attachment.as_ref())
        .filter(|x| x.network == network && !valid.contains(*x))
        .cloned()
        .collect();
    stale.sort();
    stale.dedup();
    stale
}

/// Gives up this node's blocks that have been empty for `grace` seconds.
pub fn release_empty(blocks: &mut Blocks, node: &str, grace: u64, now: u64) -> Vec<IpNet> {
    let gone: Vec<IpNet> = blocks
        .values()
        .filter(|b| {
            b.is_affine_to(node)
                && b.allocations.is_empty()
                && b.empty_since.is_some_and(|t| now.saturating_sub(t) >= grace)
        })
        .map(|b| b.cidr)
        .collect();
    for c in &gone {
        blocks.remove(c);
    }
    gone
}

/// What a node routes for: the blocks affine to it and the addresses it
/// borrowed from other nodes' blocks (as host prefixes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeBlocks {
    pub affine: Vec<IpNet>,
    pub borrowed: Vec<IpNet>,
}

pub fn node_blocks(blocks: &Blocks, node: &str, pools: &[Pool]) -> NodeBlocks {
    let mut out = NodeBlocks::default();
    for b in blocks.values().filter(|b| pools.iter().any(|p| p.cidr.contains(&b.cidr))) {
        if b.is_affine_to(node) {
            out.affine.push(b.cidr);
        } else {
            out.borrowed
                .extend(b.allocations.iter().filter(|(_, a)| a.node == node).map(|(o, _)| IpNet::from(b.addr(*o))));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pool(cidr: &str, bs: u8) -> Pool {
        Pool {
            nat_outgoing: false,
            cidr: cidr.parse().unwrap(),
            block_size: Some(bs),
            ipip_mode: conf::EncapMode::Never,
            vxlan_mode: conf::EncapMode::Never,
        }
    }

    /// "net.cid" as the attachment (net, cid, eth0); the last dot splits.
    fn holder(s: &str) -> Holder {
        let (network, cid) = s.rsplit_once('.').unwrap();
        Holder::of(Attachment { network: network.into(), container_id: cid.into(), ifname: "eth0".into() })
    }

    fn go(b: &mut Blocks, h: &str, node: &str, pools: &[Pool], strict: bool) -> Result<Vec<IpAddr>, IpamError> {
        let holder = holder(h);
        assign(b, &Assign { holder: &holder, node, pools, strict_affinity: strict }).map(|(a, _)| a)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn affine_then_claim_then_borrow() {
        let pools = [pool("10.1.0.0/29", 30)];
        let mut b = Blocks::new();
        let a1 = go(&mut b, "n.a1", "a", &pools, false).unwrap();
        assert_eq!(a1, vec![ip("10.1.0.0")]);
        assert!(b[&"10.1.0.0/30".parse().unwrap()].is_affine_to("a"));
        let b1 = go(&mut b, "n.b1", "b", &pools, false).unwrap();
        assert_eq!(b1, vec![ip("10.1.0.4")]);
        for i in 2..=4 {
            go(&mut b, &format!("n.a{i}"), "a", &pools, false).unwrap();
        }
        // a's block is full and no block is free: a borrows from b's.
        let a5 = go(&mut b, "n.a5", "a", &pools, false).unwrap();
        assert_eq!(a5, vec![ip("10.1.0.5")]);
        let nb = node_blocks(&b, "a", &pools);
        assert_eq!(nb.affine, vec!["10.1.0.0/30".parse::<IpNet>().unwrap()]);
        assert_eq!(nb.borrowed, vec!["10.1.0.5/32".parse::<IpNet>().unwrap()]);
        // Strict affinity refuses to borrow.
        let before = b.clone();
        let e = go(&mut b, "n.a6", "a", &pools, true).unwrap_err();
        assert!(matches!(e, IpamError::Exhausted { strict: true, .. }), "{e}");
        assert_eq!(b, before);
    }

    #[test]
    fn same_handle_same_address_and_release() {
        let pools = [pool("10.1.0.0/24", 26), pool("fd00::/120", 122)];
        let mut b = Blocks::new();
        let first = go(&mut b, "k8s.c1", "a", &pools, false).unwrap();
        assert_eq!(first, vec![ip("10.1.0.0"), ip("fd00::")]);
        assert_eq!(go(&mut b, "k8s.c1", "a", &pools, false).unwrap(), first);
        assert_eq!(release(&mut b, &holder("k8s.c1"), 9), first);
        assert!(release(&mut b, &holder("k8s.c1"), 9).is_empty());
        assert_eq!(b.values().filter_map(|x| x.empty_since).collect::<Vec<_>>(), vec![9, 9]);
    }

    #[test]
    fn dual_stack_failure_rolls_back_both() {
        let pools = [pool("10.1.0.0/24", 26), pool("fd00::/127", 127)];
        let mut b = Blocks::new();
        go(&mut b, "x.1", "a", &pools, true).unwrap();
        go(&mut b, "x.2", "a", &pools, true).unwrap();
        let before = b.clone();
        assert!(go(&mut b, "x.3", "a", &pools, true).is_err());
        assert_eq!(b, before);
        // A claim made for the failed request is dropped too.
        let mut fresh = Blocks::new();
        let v6_full = [pool("10.1.0.0/24", 26), pool("fd00::/128", 128)];
        go(&mut fresh, "y.1", "b", &v6_full, true).unwrap();
        let before = fresh.clone();
        assert!(go(&mut fresh, "y.2", "a", &v6_full, true).is_err());
        assert_eq!(fresh, before);
    }

    #[test]
    fn gc_finds_only_this_nodes_stale_attachments_of_the_network() {
        let pools = [pool("10.1.0.0/24", 26)];
        let mut b = Blocks::new();
        for h in ["net.keep", "net.stale", "other.x"] {
            go(&mut b, h, "a", &pools, false).unwrap();
        }
        go(&mut b, "net.remote", "b", &pools, false).unwrap();
        // A network whose name extends ours is another network.
        go(&mut b, "net.v2.x", "a", &pools, false).unwrap();
        let keep = holder("net.keep").attachment.unwrap();
        let valid: HashSet<Attachment> = [keep].into();
        let stale = holder("net.stale").attachment.unwrap();
        assert_eq!(super::stale(&b, "a", "net", &valid), vec![stale.clone()]);
        release(&mut b, &Holder::of(stale), 1);
        assert!(super::stale(&b, "a", "net", &valid).is_empty());
        for h in ["net.keep", "other.x", "net.remote", "net.v2.x"] {
            assert_eq!(addresses_of(&b, &holder(h)).len(), 1, "{h}");
        }
    }

    #[test]
    fn empty_blocks_released_after_grace_only() {
        let pools = [pool("10.1.0.0/24", 26)];
        let mut b = Blocks::new();
        go(&mut b, "n.1", "a", &pools, false).unwrap();
        release(&mut b, &holder("n.1"), 100);
        assert!(release_empty(&mut b, "a", 60, 159).is_empty());
        assert!(release_empty(&mut b, "b", 60, 160).is_empty());
        assert_eq!(release_empty(&mut b, "a", 60, 160), vec!["10.1.0.0/26".parse::<IpNet>().unwrap()]);
        assert!(b.is_empty());
    }

    #[test]
    fn claims_skip_blocks_of_another_size() {
        let pools = [pool("10.1.0.0/24", 26)];
        let mut b = Blocks::new();
        let odd: IpNet = "10.1.0.0/25".parse().unwrap();
        b.insert(odd, Block::new(odd, Some("z".into())));
        b.get_mut(&odd)
            .unwrap()
            .allocations
            .extend((0..128).map(|o| (o, Holder::handle(&format!("h{o}")).allocation("z"))));
        let got = go(&mut b, "n.1", "a", &pools, true).unwrap();
        assert_eq!(got, vec![ip("10.1.0.128")]);
    }

    #[test]
    fn no_pools_is_an_error() {
        let mut b = Blocks::new();
        assert!(matches!(go(&mut b, "n.1", "a", &[], false), Err(IpamError::NoPools)));
    }
}
