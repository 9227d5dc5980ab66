//! `merlectl ipam show`: pools, blocks and handles as data.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::Blocks;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolUse {
    pub cidr: IpNet,
    pub block_size: u8,
    pub blocks: usize,
    pub used: u64,
    /// Addresses in the pool (saturating at 2^64 - 1: see `size_bits`).
    pub capacity: u64,
    /// The pool holds 2^size_bits addresses.
    #[serde(default)]
    pub size_bits: u32,
}

impl PoolUse {
    /// The pool's size as people write it: `65536`, or `2^80` once the
    /// number stops being readable.
    pub fn size_text(&self) -> String {
        if self.size_bits < 32 {
            (1u64 << self.size_bits).to_string()
        } else {
            format!("2^{}", self.size_bits)
        }
    }

    /// The share of the pool in use, in percent.
    pub fn used_percent(&self) -> f64 {
        self.used as f64 * 100.0 / 2f64.powi(self.size_bits as i32)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockUse {
    pub cidr: IpNet,
    pub affinity: Option<String>,
    pub used: u32,
    pub size: u32,
    pub empty_since: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandleUse {
    pub handle: String,
    pub node: String,
    pub addresses: Vec<IpAddr>,
    /// Set when the addresses come from another node's block.
    pub borrowed: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub pools: Vec<PoolUse>,
    pub blocks: Vec<BlockUse>,
    pub handles: Vec<HandleUse>,
}

pub fn report(blocks: &Blocks, pools: &[conf::Pool]) -> Report {
    let pools = pools
        .iter()
        .map(|p| {
            let inside: Vec<_> = blocks.values().filter(|b| p.cidr.contains(&b.cidr)).collect();
            let host_bits = u32::from(p.cidr.max_prefix_len() - p.cidr.prefix_len());
            PoolUse {
                cidr: p.cidr,
                block_size: p.block_size(),
                blocks: inside.len(),
                used: inside.iter().map(|b| u64::from(b.used())).sum(),
                capacity: 1u64.checked_shl(host_bits).unwrap_or(u64::MAX),
                size_bits: host_bits,
            }
        })
        .collect();
    let blocks_out = blocks
        .values()
        .map(|b| BlockUse {
            cidr: b.cidr,
            affinity: b.affinity.clone(),
            used: b.used(),
            size: b.size(),
            empty_since: b.empty_since,
        })
        .collect();
    let mut handles: BTreeMap<&str, HandleUse> = BTreeMap::new();
    for b in blocks.values() {
        for (o, a) in &b.allocations {
            let h = handles.entry(&a.handle).or_insert_with(|| HandleUse {
                handle: a.handle.clone(),
                node: a.node.clone(),
                addresses: Vec::new(),
                borrowed: false,
            });
            h.addresses.push(b.addr(*o));
            h.borrowed |= !b.is_affine_to(&a.node);
        }
    }
    Report { pools, blocks: blocks_out, handles: handles.into_values().collect() }
}
