//! Calico's allocation rules, as pure functions over the set of blocks:
//! affine blocks first, then a newly claimed block, then (unless strict
//! affinity) one address borrowed from another node's block.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use conf::Pool;
use ipnet::IpNet;

use super::block::Block;
use super::IpamError;

/// Every block in the store, by CIDR.
pub type Blocks = BTreeMap<IpNet, Block>;

/// One ADD's request for addresses.
#[derive(Debug, Clone, Copy)]
pub struct Assign<'a> {
    pub handle: &'a str,
    pub node: &'a str,
    pub pools: &'a [Pool],
    pub strict_affinity: bool,
}

/// The addresses `handle` holds, IPv4 first.
pub fn addresses_of(blocks: &Blocks, handle: &str) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = blocks
        .values()
        .flat_map(|b| b.allocations.iter().filter(|(_, a)| a.handle == handle).map(|(o, _)| b.addr(*o)))
        .collect();
    out.sort_by_key(|a| (a.is_ipv6(), *a));
    out
}

/// Gives `handle` one address of each family the pools offer. A handle that
/// already holds addresses gets them back unchanged. On error nothing in
/// `blocks` has changed.
pub fn assign(blocks: &mut Blocks, r: &Assign<'_>) -> Result<Vec<IpAddr>, IpamError> {
    let held = addresses_of(blocks, r.handle);
    if !held.is_empty() {
        return Ok(held);
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
                undo(blocks, r.handle, &touched);
                return Err(IpamError::Exhausted {
                    family: if v6 { "IPv6" } else { "IPv4" },
                    strict: r.strict_affinity,
                });
            }
        }
    }
    Ok(out)
}

/// Rolls back a half-done dual-stack assignment.
fn undo(blocks: &mut Blocks, handle: &str, touched: &[IpNet]) {
    for cidr in touched {
        let claimed = touched.iter().filter(|c| *c == cidr).count() > 1;
        if claimed {
            blocks.remove(cidr);
        } else if let Some(b) = blocks.get_mut(cidr) {
            b.allocations.retain(|_, a| a.handle != handle);
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
        let ip = blocks.get_mut(&cidr)?.allocate(r.handle, r.node)?;
        return Some((ip, cidr, false));
    }
    // 2. A free block, claimed for this node.
    if let Some(cidr) = free_block(blocks, pools) {
        let mut b = Block::new(cidr, Some(r.node.to_owned()));
        let ip = b.allocate(r.handle, r.node)?;
        blocks.insert(cidr, b);
        return Some((ip, cidr, true));
    }
    // 3. An address borrowed from another node's block.
    if r.strict_affinity {
        return None;
    }
    let other = blocks.values().find(|b| !b.is_affine_to(r.node) && !b.is_full() && in_pools(pools, &b.cidr))?;
    let cidr = other.cidr;
    let ip = blocks.get_mut(&cidr)?.allocate(r.handle, r.node)?;
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

/// Frees every address of `handle`; returns them. Unknown handles free
/// nothing, which is success.
pub fn release(blocks: &mut Blocks, handle: &str, now: u64) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = blocks.values_mut().flat_map(|b| b.release(handle, now)).collect();
    out.sort_by_key(|a| (a.is_ipv6(), *a));
    out
}

/// CNI GC: frees every handle of `network` allocated by `node` that is not
/// in `valid`. Returns the freed handles.
pub fn gc(blocks: &mut Blocks, node: &str, network: &str, valid: &HashSet<String>, now: u64) -> Vec<String> {
    let prefix = format!("{network}.");
    let mut stale: Vec<String> = blocks
        .values()
        .flat_map(|b| b.allocations.values())
        .filter(|a| a.node == node && a.handle.starts_with(&prefix) && !valid.contains(&a.handle))
        .map(|a| a.handle.clone())
        .collect();
    stale.sort();
    stale.dedup();
    for h in &stale {
        release(blocks, h, now);
    }
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
            cidr: cidr.parse().unwrap(),
            block_size: Some(bs),
            ipip_mode: conf::EncapMode::Never,
            vxlan_mode: conf::EncapMode::Never,
        }
    }

    fn req<'a>(handle: &'a str, node: &'a str, pools: &'a [Pool], strict: bool) -> Assign<'a> {
        Assign { handle, node, pools, strict_affinity: strict }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn affine_then_claim_then_borrow() {
        let pools = [pool("10.1.0.0/29", 30)];
        let mut b = Blocks::new();
        let a1 = assign(&mut b, &req("n.a1", "a", &pools, false)).unwrap();
        assert_eq!(a1, vec![ip("10.1.0.0")]);
        assert!(b[&"10.1.0.0/30".parse().unwrap()].is_affine_to("a"));
        let b1 = assign(&mut b, &req("n.b1", "b", &pools, false)).unwrap();
        assert_eq!(b1, vec![ip("10.1.0.4")]);
        for i in 2..=4 {
            assign(&mut b, &req(&format!("n.a{i}"), "a", &pools, false)).unwrap();
        }
        // a's block is full and no block is free: a borrows from b's.
        let a5 = assign(&mut b, &req("n.a5", "a", &pools, false)).unwrap();
        assert_eq!(a5, vec![ip("10.1.0.5")]);
        let nb = node_blocks(&b, "a", &pools);
        assert_eq!(nb.affine, vec!["10.1.0.0/30".parse::<IpNet>().unwrap()]);
        assert_eq!(nb.borrowed, vec!["10.1.0.5/32".parse::<IpNet>().unwrap()]);
        // Strict affinity refuses to borrow.
        let before = b.clone();
        let e = assign(&mut b, &req("n.a6", "a", &pools, true)).unwrap_err();
        assert!(matches!(e, IpamError::Exhausted { strict: true, .. }), "{e}");
        assert_eq!(b, before);
    }

    #[test]
    fn same_handle_same_address_and_release() {
        let pools = [pool("10.1.0.0/24", 26), pool("fd00::/120", 122)];
        let mut b = Blocks::new();
        let first = assign(&mut b, &req("k8s.c1", "a", &pools, false)).unwrap();
        assert_eq!(first, vec![ip("10.1.0.0"), ip("fd00::")]);
        assert_eq!(assign(&mut b, &req("k8s.c1", "a", &pools, false)).unwrap(), first);
        assert_eq!(release(&mut b, "k8s.c1", 9), first);
        assert!(release(&mut b, "k8s.c1", 9).is_empty());
        assert_eq!(b.values().filter_map(|x| x.empty_since).collect::<Vec<_>>(), vec![9, 9]);
    }

    #[test]
    fn dual_stack_failure_rolls_back_both() {
        let pools = [pool("10.1.0.0/24", 26), pool("fd00::/127", 127)];
        let mut b = Blocks::new();
        assign(&mut b, &req("x.1", "a", &pools, true)).unwrap();
        assign(&mut b, &req("x.2", "a", &pools, true)).unwrap();
        let before = b.clone();
        assert!(assign(&mut b, &req("x.3", "a", &pools, true)).is_err());
        assert_eq!(b, before);
        // A claim made for the failed request is dropped too.
        let mut fresh = Blocks::new();
        let v6_full = [pool("10.1.0.0/24", 26), pool("fd00::/128", 128)];
        assign(&mut fresh, &req("y.1", "b", &v6_full, true)).unwrap();
        let before = fresh.clone();
        assert!(assign(&mut fresh, &req("y.2", "a", &v6_full, true)).is_err());
        assert_eq!(fresh, before);
    }

    #[test]
    fn gc_frees_only_this_nodes_stale_handles_of_the_network() {
        let pools = [pool("10.1.0.0/24", 26)];
        let mut b = Blocks::new();
        for h in ["net.keep", "net.stale", "other.x"] {
            assign(&mut b, &req(h, "a", &pools, false)).unwrap();
        }
        assign(&mut b, &req("net.remote", "b", &pools, false)).unwrap();
        let valid: HashSet<String> = ["net.keep".to_string()].into();
        assert_eq!(gc(&mut b, "a", "net", &valid, 1), vec!["net.stale".to_string()]);
        for h in ["net.keep", "other.x", "net.remote"] {
            assert_eq!(addresses_of(&b, h).len(), 1, "{h}");
        }
    }

    #[test]
    fn empty_blocks_released_after_grace_only() {
        let pools = [pool("10.1.0.0/24", 26)];
        let mut b = Blocks::new();
        assign(&mut b, &req("n.1", "a", &pools, false)).unwrap();
        release(&mut b, "n.1", 100);
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
        b.get_mut(&odd).unwrap().allocations.extend(
            (0..128).map(|o| (o, super::super::block::Allocation { handle: format!("h{o}"), node: "z".into() })),
        );
        let got = assign(&mut b, &req("n.1", "a", &pools, true)).unwrap();
        assert_eq!(got, vec![ip("10.1.0.128")]);
    }

    #[test]
    fn no_pools_is_an_error() {
        let mut b = Blocks::new();
        assert!(matches!(assign(&mut b, &req("n.1", "a", &[], false)), Err(IpamError::NoPools)));
    }
}
