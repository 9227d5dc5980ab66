//! `merle_endpoints`: the pods of this node by address. merle-cni puts a
//! pod's entries at ADD and removes them at DEL; [`reconcile`] decides what
//! to change so the map holds exactly the pods that exist (run by merled
//! at start and when IPAM changes, and by the plugin's GC).

use std::collections::BTreeMap;
use std::net::IpAddr;

use aya::maps::{HashMap, Map, MapData};

use crate::pins::PinDir;
use crate::types::{EndpointInfo, EndpointKey};
use crate::Error;

pub const MAP: &str = "merle_endpoints";

#[derive(Debug)]
pub struct Endpoints {
    map: HashMap<MapData, EndpointKey, EndpointInfo>,
}

/// One change to the map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointOp {
    Put(IpAddr, EndpointInfo),
    Remove(IpAddr),
}

/// The changes that turn `current` into `desired`. An entry already there
/// for the same veth with the same flags is kept as it is: its pod MAC was
/// read from the pod's interface at ADD, while `desired` may only have
/// derived it.
pub fn reconcile(
    desired: &BTreeMap<IpAddr, EndpointInfo>,
    current: &BTreeMap<IpAddr, EndpointInfo>,
) -> Vec<EndpointOp> {
    let mut ops = Vec::new();
    for (ip, cur) in current {
        if !desired.contains_key(ip) {
            ops.push(EndpointOp::Remove(*ip));
        } else if desired[ip].ifindex != cur.ifindex
            || desired[ip].node_mac != cur.node_mac
            || desired[ip].flags != cur.flags
        {
            ops.push(EndpointOp::Put(*ip, desired[ip]));
        }
    }
    for (ip, want) in desired {
        if !current.contains_key(ip) {
            ops.push(EndpointOp::Put(*ip, *want));
        }
    }
    ops
}

impl Endpoints {
    pub fn open(pins: &PinDir) -> Result<Self, Error> {
        let path = pins.map(MAP);
        let data = MapData::from_pin(&path).map_err(|e| Error::Map(path.display().to_string(), e.to_string()))?;
        let map = HashMap::try_from(Map::HashMap(data)).map_err(|e| Error::Map(MAP.into(), e.to_string()))?;
        Ok(Self { map })
    }

    pub fn put(&mut self, ip: IpAddr, info: EndpointInfo) -> Result<(), Error> {
        self.map.insert(EndpointKey::new(ip), info, 0).map_err(|e| Error::Map(format!("{MAP} {ip}"), e.to_string()))
    }

    /// Removes `ip`'s entry; a missing one is fine.
    pub fn remove(&mut self, ip: IpAddr) -> Result<(), Error> {
        match self.map.remove(&EndpointKey::new(ip)) {
            Ok(()) => Ok(()),
            Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(aya::maps::MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            Err(e) => Err(Error::Map(format!("{MAP} {ip}"), e.to_string())),
        }
    }

    pub fn get(&self, ip: IpAddr) -> Option<EndpointInfo> {
        self.map.get(&EndpointKey::new(ip), 0).ok()
    }

    pub fn list(&self) -> BTreeMap<IpAddr, EndpointInfo> {
        self.map.iter().flatten().filter_map(|(k, v)| Some((k.ip()?, v))).collect()
    }

    pub fn apply(&mut self, ops: &[EndpointOp]) -> Result<(), Error> {
        for op in ops {
            match op {
                EndpointOp::Put(ip, info) => self.put(*ip, *info)?,
                EndpointOp::Remove(ip) => self.remove(*ip)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn info(ifindex: u32, mac: u8) -> EndpointInfo {
        EndpointInfo { ifindex, pod_mac: [mac; 6], node_mac: [0xee; 6], flags: 0, pad: 0 }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn reconcile_adds_missing_removes_stale_and_keeps_what_is_right() {
        let desired: BTreeMap<_, _> =
            [(ip("10.0.0.1"), info(5, 1)), (ip("10.0.0.2"), info(6, 2)), (ip("fd00::3"), info(7, 3))].into();
        let current: BTreeMap<_, _> = [
            (ip("10.0.0.1"), info(5, 9)), // same veth, MAC read at ADD: kept
            (ip("10.0.0.2"), info(4, 2)), // another veth (a reused address): fixed
            (ip("10.0.0.9"), info(8, 8)), // a pod that is gone: removed
        ]
        .into();
        let ops = reconcile(&desired, &current);
        assert_eq!(
            ops,
            vec![
                EndpointOp::Put(ip("10.0.0.2"), info(6, 2)),
                EndpointOp::Remove(ip("10.0.0.9")),
                EndpointOp::Put(ip("fd00::3"), info(7, 3)),
            ]
        );
        assert!(reconcile(&desired, &desired).is_empty());
        assert_eq!(reconcile(&BTreeMap::new(), &current).len(), 3);
    }
}
