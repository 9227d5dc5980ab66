//! `merle_endpoints`: the pods of this node by address. merle-cni puts a
//! pod's entries at ADD and removes them at DEL; [`reconcile`] decides what
//! to change so the map holds exactly the pods that exist (run by merled
//! at start and when IPAM changes, and by the plugin's GC).
//!
//! `merle_pod_ifaces` follows it: by the ifindex of each pod veth, one
//! endpoint address of each family (the lowest), which the pod program's
//! source check reads with one load. [`Endpoints::put`] and
//! [`Endpoints::remove`] keep it so that an entry only ever names a current
//! endpoint of its veth; [`Endpoints::sync_ifaces`] brings it to exactly
//! [`pod_ifaces`] of the endpoint map.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use aya::maps::{Array, HashMap, Map, MapData};

use crate::pins::PinDir;
use crate::types::{
    EndpointInfo, EndpointKey, PodIface, ENDPOINT_F_NAT_OUTGOING, POD_IFACES_MAX, POD_IFACE_F_NAT_OUTGOING_V4,
    POD_IFACE_F_NAT_OUTGOING_V6, POD_IFACE_F_V4, POD_IFACE_F_V6,
};
use crate::Error;

pub const MAP: &str = "merle_endpoints";
pub const IFACES: &str = "merle_pod_ifaces";

pub struct Endpoints {
    map: HashMap<MapData, EndpointKey, EndpointInfo>,
    /// `None` under the pins of an older merled that had no such map (a
    /// plugin upgraded before merled): the programs there do not read it.
    ifaces: Option<Array<MapData, PodIface>>,
}

impl std::fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoints").field("map", &self.map).field("ifaces", &self.ifaces.is_some()).finish()
    }
}

/// The flag bits of `ip`'s family in a [`PodIface`]: (named, nat_outgoing).
fn family_bits(ip: IpAddr) -> (u32, u32) {
    if ip.is_ipv4() {
        (POD_IFACE_F_V4, POD_IFACE_F_NAT_OUTGOING_V4)
    } else {
        (POD_IFACE_F_V6, POD_IFACE_F_NAT_OUTGOING_V6)
    }
}

impl PodIface {
    /// The address named for `ip`'s family, if any.
    pub fn named(&self, v6: bool) -> Option<IpAddr> {
        match v6 {
            false if self.flags & POD_IFACE_F_V4 != 0 => Some(IpAddr::from(self.v4)),
            true if self.flags & POD_IFACE_F_V6 != 0 => Some(IpAddr::from(self.v6)),
            _ => None,
        }
    }

    /// Names `ip` (of `info`) for its family.
    pub fn name(&mut self, ip: IpAddr, info: &EndpointInfo) {
        let (named, nat) = family_bits(ip);
        self.flags &= !(named | nat);
        self.flags |= named;
        if info.flags & ENDPOINT_F_NAT_OUTGOING != 0 {
            self.flags |= nat;
        }
        match ip {
            IpAddr::V4(a) => self.v4 = a.octets(),
            IpAddr::V6(a) => self.v6 = a.octets(),
        }
    }

    /// Names nothing for `ip`'s family.
    pub fn clear(&mut self, v6: bool) {
        let (named, nat) = family_bits(if v6 { IpAddr::from([0u8; 16]) } else { IpAddr::from([0u8; 4]) });
        self.flags &= !(named | nat);
        if v6 {
            self.v6 = [0; 16];
        } else {
            self.v4 = [0; 4];
        }
    }
}

/// What `merle_pod_ifaces` holds for an endpoint map: for every veth with
/// endpoints, its lowest address of each family. Veths whose ifindex is
/// past the end of the array are left out (their sources take the hash
/// lookup).
pub fn pod_ifaces(endpoints: &BTreeMap<IpAddr, EndpointInfo>) -> BTreeMap<u32, PodIface> {
    let mut out: BTreeMap<u32, PodIface> = BTreeMap::new();
    // In address order: the first of each family is the lowest.
    for (ip, info) in endpoints {
        if info.ifindex >= POD_IFACES_MAX {
            continue;
        }
        let e = out.entry(info.ifindex).or_default();
        if e.named(ip.is_ipv6()).is_none() {
            e.name(*ip, info);
        }
    }
    out
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
        let data = |name: &str| {
            let path = pins.map(name);
            MapData::from_pin(&path).map_err(|e| Error::Map(path.display().to_string(), e.to_string()))
        };
        let map = HashMap::try_from(Map::HashMap(data(MAP)?)).map_err(|e| Error::Map(MAP.into(), e.to_string()))?;
        let ifaces = match pins.map(IFACES).exists() {
            true => {
                Some(Array::try_from(Map::Array(data(IFACES)?)).map_err(|e| Error::Map(IFACES.into(), e.to_string()))?)
            }
            false => None,
        };
        Ok(Self { map, ifaces })
    }

    /// The `merle_pod_ifaces` entry of `ifindex` (empty past the end).
    pub fn iface(&self, ifindex: u32) -> PodIface {
        self.ifaces.as_ref().and_then(|a| a.get(&ifindex, 0).ok()).unwrap_or_default()
    }

    fn set_iface(&mut self, ifindex: u32, e: PodIface) -> Result<(), Error> {
        match self.ifaces.as_mut() {
            Some(a) => a.set(ifindex, e, 0).map_err(|err| Error::Map(format!("{IFACES} {ifindex}"), err.to_string())),
            None => Ok(()),
        }
    }

    /// Stops `ifindex`'s entry naming `ip`, if it does.
    fn unname(&mut self, ifindex: u32, ip: IpAddr) -> Result<(), Error> {
        let mut e = self.iface(ifindex);
        if self.ifaces.is_some() && ifindex < POD_IFACES_MAX && e.named(ip.is_ipv6()) == Some(ip) {
            e.clear(ip.is_ipv6());
            self.set_iface(ifindex, e)?;
        }
        Ok(())
    }

    /// Puts `ip`'s entry, and names it in its veth's `merle_pod_ifaces`
    /// entry when that names nothing of its family, names `ip` already,
    /// names a higher address, or names one that is not this veth's
    /// endpoint. An address moving from another veth is unnamed there
    /// first, so no entry ever names what its veth does not have.
    pub fn put(&mut self, ip: IpAddr, info: EndpointInfo) -> Result<(), Error> {
        if let Some(o) = self.get(ip).filter(|o| o.ifindex != info.ifindex) {
            self.unname(o.ifindex, ip)?;
        }
        self.map.insert(EndpointKey::new(ip), info, 0).map_err(|e| Error::Map(format!("{MAP} {ip}"), e.to_string()))?;
        if self.ifaces.is_some() && info.ifindex < POD_IFACES_MAX {
            let mut e = self.iface(info.ifindex);
            let claim = match e.named(ip.is_ipv6()) {
                None => true,
                Some(n) => ip <= n || self.get(n).is_none_or(|x| x.ifindex != info.ifindex),
            };
            if claim {
                e.name(ip, &info);
                self.set_iface(info.ifindex, e)?;
            }
        }
        Ok(())
    }

    /// ADD: puts every address of a new pod on the veth `ifindex`, and
    /// makes the veth's `merle_pod_ifaces` entry name exactly these (an
    /// entry left by an earlier veth of the same ifindex is overwritten).
    pub fn put_pod(&mut self, ifindex: u32, entries: &[(IpAddr, EndpointInfo)]) -> Result<(), Error> {
        for (ip, info) in entries {
            if let Some(o) = self.get(*ip).filter(|o| o.ifindex != ifindex) {
                self.unname(o.ifindex, *ip)?;
            }
            let info = EndpointInfo { ifindex, ..*info };
            self.map
                .insert(EndpointKey::new(*ip), info, 0)
                .map_err(|e| Error::Map(format!("{MAP} {ip}"), e.to_string()))?;
        }
        if ifindex < POD_IFACES_MAX {
            let own: BTreeMap<IpAddr, EndpointInfo> =
                entries.iter().map(|(ip, i)| (*ip, EndpointInfo { ifindex, ..*i })).collect();
            let e = pod_ifaces(&own).remove(&ifindex).unwrap_or_default();
            self.set_iface(ifindex, e)?;
        }
        Ok(())
    }

    /// Removes `ip`'s entry (a missing one is fine), after its veth's
    /// `merle_pod_ifaces` entry stops naming it.
    pub fn remove(&mut self, ip: IpAddr) -> Result<(), Error> {
        if let Some(o) = self.get(ip) {
            self.unname(o.ifindex, ip)?;
        }
        match self.map.remove(&EndpointKey::new(ip)) {
            Ok(()) => Ok(()),
            Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(aya::maps::MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            Err(e) => Err(Error::Map(format!("{MAP} {ip}"), e.to_string())),
        }
    }

    /// Makes `merle_pod_ifaces` exactly [`pod_ifaces`] of the endpoint map.
    /// With `all`, every index is read (once, at merled's start: a veth
    /// that went while nobody watched leaves an entry no endpoint has);
    /// otherwise the veths with endpoints and those in `also`. Returns how
    /// many entries changed.
    pub fn sync_ifaces(&mut self, all: bool, also: &BTreeSet<u32>) -> Result<usize, Error> {
        if self.ifaces.is_none() {
            return Ok(0);
        }
        let want = pod_ifaces(&self.list());
        let mut check: BTreeSet<u32> = want.keys().copied().chain(also.iter().copied()).collect();
        if all {
            for i in 0..POD_IFACES_MAX {
                if self.iface(i) != PodIface::default() {
                    check.insert(i);
                }
            }
        }
        let mut changed = 0;
        for i in check.into_iter().filter(|i| *i < POD_IFACES_MAX) {
            let w = want.get(&i).copied().unwrap_or_default();
            if self.iface(i) != w {
                self.set_iface(i, w)?;
                changed += 1;
            }
        }
        Ok(changed)
    }

    /// Every non-empty `merle_pod_ifaces` entry, by ifindex.
    pub fn ifaces(&self) -> BTreeMap<u32, PodIface> {
        let Some(a) = self.ifaces.as_ref() else { return BTreeMap::new() };
        (0..POD_IFACES_MAX)
            .filter_map(|i| Some((i, a.get(&i, 0).ok()?)))
            .filter(|(_, e)| *e != PodIface::default())
            .collect()
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
    fn pod_ifaces_name_the_lowest_address_of_each_family_per_veth() {
        let mut nat = info(5, 1);
        nat.flags = ENDPOINT_F_NAT_OUTGOING;
        let eps: BTreeMap<_, _> = [
            (ip("10.2.0.5"), info(5, 1)),
            (ip("10.1.0.5"), nat),
            (ip("fd00::5"), info(5, 1)),
            (ip("10.1.0.6"), info(6, 2)),
            (ip("10.1.0.7"), info(POD_IFACES_MAX, 3)),
        ]
        .into();
        let got = pod_ifaces(&eps);
        assert_eq!(got.keys().copied().collect::<Vec<_>>(), vec![5, 6], "past the end: left out");
        let e5 = got[&5];
        assert_eq!(e5.named(false), Some(ip("10.1.0.5")));
        assert_eq!(e5.named(true), Some(ip("fd00::5")));
        assert_eq!(e5.flags, POD_IFACE_F_V4 | POD_IFACE_F_V6 | POD_IFACE_F_NAT_OUTGOING_V4);
        assert_eq!(got[&6].named(true), None);
        assert_eq!(got[&6].flags, POD_IFACE_F_V4);
        let mut e = e5;
        e.clear(false);
        assert_eq!((e.named(false), e.flags, e.v4), (None, POD_IFACE_F_V6, [0; 4]));
        e.name(ip("10.2.0.5"), &info(5, 1));
        assert_eq!((e.named(false), e.flags), (Some(ip("10.2.0.5")), POD_IFACE_F_V4 | POD_IFACE_F_V6));
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
