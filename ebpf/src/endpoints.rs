//! `merle_endpoints`: the pods of this node by address. merle-cni puts a
//! pod's entries at ADD and removes them at DEL; [`reconcile`] decides what
//! to change so the map holds exactly the pods that exist (run by merled
//! at start and when IPAM changes, and by the plugin's GC).
//!
//! `merle_pod_ifaces` follows it: at slot `ifindex % POD_IFACES_MAX` of
//! each pod veth, the veth's ifindex and one endpoint address of each
//! family (the lowest), which the pod program's source check reads with
//! one load. [`Endpoints::put`], [`Endpoints::put_pod`] and
//! [`Endpoints::remove`] keep it so that an entry only ever names a current
//! endpoint of its veth; [`Endpoints::sync_ifaces`] brings it to exactly
//! [`pod_ifaces`] of the endpoint map.
//!
//! merle-cni (ADD, DEL, GC) and merled change the maps from different
//! processes: [`Endpoints::open`] takes an exclusive `flock` on the pin
//! directory's `maps/`, held until the handle is dropped, so each change
//! (and each reconcile, from its read to its last write) is done alone.
//!
//! A program may read an entry while user space rewrites it (an array
//! update is a plain copy). The plugin writes a new veth's entry before it
//! links the program, and unlinks before it removes the entries at DEL, so
//! no program reads those writes; an entry that must change under a linked
//! program (a reconcile's repair) is emptied first and then written, so a
//! torn read mixes one address with zeroes, never two addresses.

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
    /// The `flock` on `maps/`, released on drop.
    _lock: nix::fcntl::Flock<std::fs::File>,
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

/// The slot of the veth `ifindex` in `merle_pod_ifaces`.
pub fn slot(ifindex: u32) -> u32 {
    ifindex & (POD_IFACES_MAX - 1)
}

/// What `merle_pod_ifaces` holds for an endpoint map, by slot: for every
/// veth with endpoints, its lowest address of each family; where veths
/// share a slot, the one with the lowest ifindex has it (the others'
/// sources take the hash lookup).
pub fn pod_ifaces(endpoints: &BTreeMap<IpAddr, EndpointInfo>) -> BTreeMap<u32, PodIface> {
    let mut by_veth: BTreeMap<u32, PodIface> = BTreeMap::new();
    // In address order: the first of each family is the lowest.
    for (ip, info) in endpoints {
        let e = by_veth.entry(info.ifindex).or_insert(PodIface { ifindex: info.ifindex, ..PodIface::default() });
        if e.named(ip.is_ipv6()).is_none() {
            e.name(*ip, info);
        }
    }
    let mut out: BTreeMap<u32, PodIface> = BTreeMap::new();
    // In ifindex order: the first of each slot is the lowest.
    for (ifindex, e) in by_veth {
        out.entry(slot(ifindex)).or_insert(e);
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
        let dir = pins.maps();
        let file = std::fs::File::open(&dir).map_err(|e| Error::Pin(dir.display().to_string(), e))?;
        let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| Error::Pin(format!("{}: flock", dir.display()), e.into()))?;
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
        Ok(Self { _lock: lock, map, ifaces })
    }

    /// What slot `slot` of `merle_pod_ifaces` holds (empty without the map).
    fn slot_entry(&self, slot: u32) -> Result<PodIface, Error> {
        match self.ifaces.as_ref() {
            Some(a) => a.get(&slot, 0).map_err(|e| Error::Map(format!("{IFACES} {slot}"), e.to_string())),
            None => Ok(PodIface::default()),
        }
    }

    /// The entry of the veth `ifindex`, if its slot holds one for it.
    pub fn iface(&self, ifindex: u32) -> Result<Option<PodIface>, Error> {
        let e = self.slot_entry(slot(ifindex))?;
        Ok((e.ifindex == ifindex && e.flags != 0).then_some(e))
    }

    /// Writes slot `slot`; an entry that changes from one address to
    /// another is emptied first (see the module's notes on torn reads).
    fn write_slot(&mut self, slot: u32, new: PodIface) -> Result<(), Error> {
        let Some(a) = self.ifaces.as_mut() else { return Ok(()) };
        let err = |e: aya::maps::MapError| Error::Map(format!("{IFACES} {slot}"), e.to_string());
        let old = a.get(&slot, 0).map_err(err)?;
        if old == new {
            return Ok(());
        }
        if old.flags != 0 && new.flags != 0 {
            a.set(slot, PodIface::default(), 0).map_err(err)?;
        }
        a.set(slot, new, 0).map_err(err)
    }

    /// Stops the entry of `ifindex` naming `ip`, if it does.
    fn unname(&mut self, ifindex: u32, ip: IpAddr) -> Result<(), Error> {
        if let Some(mut e) = self.iface(ifindex)? {
            if e.named(ip.is_ipv6()) == Some(ip) {
                e.clear(ip.is_ipv6());
                let e = if e.flags == 0 { PodIface::default() } else { e };
                self.write_slot(slot(ifindex), e)?;
            }
        }
        Ok(())
    }

    /// Whether the veth `ifindex` may take slot `s` from what holds it: an
    /// empty slot, its own, one of a veth that is gone, or of a higher
    /// ifindex (the lowest keeps a shared slot, as [`pod_ifaces`] says).
    fn may_take(&self, s: &PodIface, ifindex: u32) -> bool {
        s.flags == 0 || s.ifindex == ifindex || s.ifindex > ifindex || crate::sys::ifname(s.ifindex).is_none()
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
        if self.ifaces.is_none() {
            return Ok(());
        }
        let s = self.slot_entry(slot(info.ifindex))?;
        let mut e = if s.ifindex == info.ifindex && s.flags != 0 {
            s
        } else if self.may_take(&s, info.ifindex) {
            PodIface { ifindex: info.ifindex, ..PodIface::default() }
        } else {
            return Ok(());
        };
        let claim = match e.named(ip.is_ipv6()) {
            None => true,
            Some(n) => ip <= n || self.get(n).is_none_or(|x| x.ifindex != info.ifindex),
        };
        if claim {
            e.name(ip, &info);
            self.write_slot(slot(info.ifindex), e)?;
        }
        Ok(())
    }

    /// ADD: puts every address of a new pod on the veth `ifindex`, and
    /// makes the veth's `merle_pod_ifaces` entry name exactly these (what an
    /// earlier veth of the same ifindex left is overwritten). Called before
    /// the program is linked to the veth.
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
        let s = self.slot_entry(slot(ifindex))?;
        if self.may_take(&s, ifindex) {
            let own: BTreeMap<IpAddr, EndpointInfo> =
                entries.iter().map(|(ip, i)| (*ip, EndpointInfo { ifindex, ..*i })).collect();
            let e = pod_ifaces(&own).remove(&slot(ifindex)).unwrap_or_default();
            self.write_slot(slot(ifindex), e)?;
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
    /// With `all`, every slot is read (at merled's start and before an
    /// upgrade moves the links: a veth that went while nobody watched
    /// leaves an entry no endpoint has); otherwise the slots of veths with
    /// endpoints and of those in `also`. Returns how many slots changed.
    pub fn sync_ifaces(&mut self, all: bool, also: &BTreeSet<u32>) -> Result<usize, Error> {
        if self.ifaces.is_none() {
            return Ok(0);
        }
        let want = pod_ifaces(&self.list());
        let mut check: BTreeSet<u32> = want.keys().copied().chain(also.iter().map(|i| slot(*i))).collect();
        if all {
            check.extend(self.ifaces()?.into_keys());
        }
        let mut changed = 0;
        for s in check {
            let w = want.get(&s).copied().unwrap_or_default();
            if self.slot_entry(s)? != w {
                self.write_slot(s, w)?;
                changed += 1;
            }
        }
        Ok(changed)
    }

    /// Every non-empty slot of `merle_pod_ifaces`.
    pub fn ifaces(&self) -> Result<BTreeMap<u32, PodIface>, Error> {
        let Some(a) = self.ifaces.as_ref() else { return Ok(BTreeMap::new()) };
        let mut out = BTreeMap::new();
        for (i, e) in a.iter().enumerate() {
            let e = e.map_err(|e| Error::Map(format!("{IFACES} {i}"), e.to_string()))?;
            if e != PodIface::default() {
                out.insert(u32::try_from(i).unwrap_or(u32::MAX), e);
            }
        }
        Ok(out)
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
        assert_eq!(got.keys().copied().collect::<Vec<_>>(), vec![0, 5, 6], "slots");
        assert_eq!(got[&0].ifindex, POD_IFACES_MAX, "past the end: at ifindex % the size");
        let e5 = got[&5];
        assert_eq!(e5.ifindex, 5);
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
    fn veths_sharing_a_slot_leave_it_to_the_lowest_ifindex() {
        let eps: BTreeMap<_, _> = [(ip("10.0.0.1"), info(7 + POD_IFACES_MAX, 1)), (ip("10.0.0.2"), info(7, 2))].into();
        let got = pod_ifaces(&eps);
        assert_eq!(got.len(), 1);
        assert_eq!((got[&7].ifindex, got[&7].named(false)), (7, Some(ip("10.0.0.2"))));
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
