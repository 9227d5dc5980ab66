//! `merle_nets4` / `merle_nets6`: the cluster's ranges, from the
//! configuration. A pod's packet to a destination outside all of them
//! leaves the cluster, and from a `nat_outgoing` pool it goes to the stack
//! to be masqueraded (see `nat.rs`).

use std::collections::BTreeMap;

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Map, MapData};
use ipnet::IpNet;

use crate::pins::PinDir;
use crate::types::{NetInfo, NET_F_NAT_OUTGOING, NET_F_NODE, NET_F_POOL, NET_F_SERVICE};
use crate::Error;

/// Every cluster range with its `NET_F_*` flags: the pools, the service
/// ranges and the subnets of the nodes (this one and `[[nodes]]`).
pub fn ranges(cfg: &conf::Config) -> BTreeMap<IpNet, u32> {
    let mut out: BTreeMap<IpNet, u32> = BTreeMap::new();
    let mut add = |n: IpNet, f: u32| *out.entry(n.trunc()).or_default() |= f;
    for p in &cfg.pools {
        add(p.cidr, NET_F_POOL | if p.nat_outgoing { NET_F_NAT_OUTGOING } else { 0 });
    }
    for s in cfg.service_ranges.all() {
        add(*s, NET_F_SERVICE);
    }
    add(cfg.node.address, NET_F_NODE);
    if let Some(a) = cfg.node.address_v6 {
        add(a, NET_F_NODE);
    }
    for n in &cfg.nodes {
        add(n.address, NET_F_NODE);
    }
    out
}

#[derive(Debug)]
pub struct Nets {
    v4: LpmTrie<MapData, [u8; 4], NetInfo>,
    v6: LpmTrie<MapData, [u8; 16], NetInfo>,
}

fn open_trie<K: aya::Pod>(pins: &PinDir, name: &str) -> Result<LpmTrie<MapData, K, NetInfo>, Error> {
    let path = pins.map(name);
    let data = MapData::from_pin(&path).map_err(|e| Error::Map(path.display().to_string(), e.to_string()))?;
    LpmTrie::try_from(Map::LpmTrie(data)).map_err(|e| Error::Map(name.into(), e.to_string()))
}

impl Nets {
    pub fn open(pins: &PinDir) -> Result<Self, Error> {
        Ok(Self { v4: open_trie(pins, "merle_nets4")?, v6: open_trie(pins, "merle_nets6")? })
    }

    pub fn list(&self) -> BTreeMap<IpNet, u32> {
        let mut out = BTreeMap::new();
        for (k, v) in self.v4.iter().flatten() {
            if let Ok(n) = IpNet::new(std::net::Ipv4Addr::from(k.data()).into(), k.prefix_len() as u8) {
                out.insert(n, v.flags);
            }
        }
        for (k, v) in self.v6.iter().flatten() {
            if let Ok(n) = IpNet::new(std::net::Ipv6Addr::from(k.data()).into(), k.prefix_len() as u8) {
                out.insert(n, v.flags);
            }
        }
        out
    }

    /// Makes the maps hold exactly `want`; returns how many entries changed.
    pub fn sync(&mut self, want: &BTreeMap<IpNet, u32>) -> Result<usize, Error> {
        let have = self.list();
        let mut changed = 0;
        for (n, f) in want {
            if have.get(n) != Some(f) {
                let info = NetInfo { flags: *f };
                let r = match n {
                    IpNet::V4(v) => self.v4.insert(&Key::new(u32::from(v.prefix_len()), v.addr().octets()), info, 0),
                    IpNet::V6(v) => self.v6.insert(&Key::new(u32::from(v.prefix_len()), v.addr().octets()), info, 0),
                };
                r.map_err(|e| Error::Map(format!("merle_nets {n}"), e.to_string()))?;
                changed += 1;
            }
        }
        for n in have.keys().filter(|n| !want.contains_key(n)) {
            let r = match n {
                IpNet::V4(v) => self.v4.remove(&Key::new(u32::from(v.prefix_len()), v.addr().octets())),
                IpNet::V6(v) => self.v6.remove(&Key::new(u32::from(v.prefix_len()), v.addr().octets())),
            };
            r.map_err(|e| Error::Map(format!("merle_nets {n}"), e.to_string()))?;
            changed += 1;
        }
        Ok(changed)
    }
}
