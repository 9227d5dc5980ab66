//! The service maps of `bpf/lib/lb.h`, written from a plan
//! (`merle_lb::plan`) as a diff: a frontend, table, backend or rev-NAT
//! entry that is already right is not touched, so flows of services that
//! did not change see nothing. Ids are recovered from the maps themselves,
//! so a restarted merled keeps them (the maps are pinned) and conntrack
//! goes on naming the right backends.
//!
//! The order keeps every packet answerable: new backends first, then the
//! tables that name them (each table is replaced whole, atomically), then
//! rev-NAT entries and frontends; what is gone is removed last.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use aya::maps::{Array, HashMap, Map, MapData};
use merle_lb::plan::{Frontend, Kind, Plan, TableKey, Target};
use merle_lb::service::Protocol;

use crate::pins::PinDir;
use crate::types::{
    addr_octets, octets_addr, BackendInfo, CtEntry, CtKey, LbConfig, MaglevChunk, MaglevKey, RevNatInfo, ServiceInfo,
    ServiceKey, CT_REPLY, CT_SERVICE, LB_F_ADDR4, LB_F_ADDR6, MAGLEV_CHUNK, MAGLEV_M_MAX, SVC_F_CLUSTER_IP, SVC_F_DSR,
    SVC_F_EXTERNAL, SVC_F_LOCAL, SVC_F_NODE_PORT,
};
use crate::Error;

pub const SERVICES: &str = "merle_services";
pub const MAGLEV: &str = "merle_maglev";
pub const BACKENDS: &str = "merle_backends";
pub const REV_NAT: &str = "merle_rev_nat";
pub const CT: &str = "merle_ct";
pub const LB_CONFIG: &str = "merle_lb_config";

/// The maps, opened from their pins.
pub struct Services {
    services: HashMap<MapData, ServiceKey, ServiceInfo>,
    maglev: HashMap<MapData, MaglevKey, MaglevChunk>,
    backends: HashMap<MapData, u32, BackendInfo>,
    rev_nat: HashMap<MapData, u32, RevNatInfo>,
    ct: HashMap<MapData, CtKey, CtEntry>,
    config: Array<MapData, LbConfig>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services").finish_non_exhaustive()
    }
}

/// What a sync changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Synced {
    pub frontends_put: usize,
    pub frontends_removed: usize,
    pub tables_written: usize,
    pub tables_removed: usize,
    pub backends_put: usize,
    pub backends_removed: usize,
}

impl Synced {
    pub fn changed(&self) -> bool {
        *self != Self::default()
    }
}

/// One frontend as the maps hold it, for `merlectl service`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Programmed {
    pub frontend: Frontend,
    pub lb_id: u32,
    pub maglev_m: u32,
    pub rev_nat: u32,
    pub flags: u32,
    pub backends: Vec<(u32, Target)>,
}

fn open<T: TryFrom<Map, Error = aya::maps::MapError>>(
    pins: &PinDir,
    name: &str,
    wrap: fn(MapData) -> Map,
) -> Result<T, Error> {
    let path = pins.map(name);
    let data = MapData::from_pin(&path).map_err(|e| Error::Map(path.display().to_string(), e.to_string()))?;
    T::try_from(wrap(data)).map_err(|e| Error::Map(name.into(), e.to_string()))
}

fn map_err(name: &str, what: impl std::fmt::Display) -> impl FnOnce(aya::maps::MapError) -> Error {
    let ctx = format!("{name} {what}");
    move |e| Error::Map(ctx, e.to_string())
}

pub fn service_key(f: &Frontend) -> ServiceKey {
    let (addr, family) = addr_octets(f.address);
    ServiceKey { addr, port: f.port.to_be_bytes(), proto: f.protocol_number(), family }
}

fn frontend_of(k: &ServiceKey) -> Option<Frontend> {
    Some(Frontend {
        address: octets_addr(&k.addr, k.family)?,
        port: u16::from_be_bytes(k.port),
        protocol: Protocol::from_number(k.proto)?,
    })
}

fn target_of(b: &BackendInfo) -> Option<Target> {
    Some(Target { address: octets_addr(&b.addr, b.family)?, port: u16::from_be_bytes(b.port) })
}

fn flags(kind: Kind, local: bool, dsr: bool) -> u32 {
    let k = match kind {
        Kind::ClusterIp => SVC_F_CLUSTER_IP,
        Kind::NodePort => SVC_F_NODE_PORT,
        Kind::External | Kind::LoadBalancer => SVC_F_EXTERNAL,
    };
    k | if local { SVC_F_LOCAL } else { 0 } | if dsr { SVC_F_DSR } else { 0 }
}

/// A fresh id: past the largest in use and past every id handed out
/// before (`floor`, kept in `merle_lb_config`), so that no conntrack entry
/// of a removed table, backend or frontend names a new one.
fn next_id(used: impl Iterator<Item = u32>, floor: u32) -> u32 {
    used.max().unwrap_or(0).saturating_add(1).max(floor).max(1)
}

impl Services {
    pub fn open(pins: &PinDir) -> Result<Self, Error> {
        Ok(Self {
            services: open(pins, SERVICES, Map::HashMap)?,
            maglev: open(pins, MAGLEV, Map::HashMap)?,
            backends: open(pins, BACKENDS, Map::HashMap)?,
            rev_nat: open(pins, REV_NAT, Map::HashMap)?,
            ct: open(pins, CT, Map::LruHashMap)?,
            config: open(pins, LB_CONFIG, Map::Array)?,
        })
    }

    fn frontends_held(&self) -> BTreeMap<ServiceKey, ServiceInfo> {
        self.services.iter().flatten().collect()
    }

    fn backends_held(&self) -> BTreeMap<u32, BackendInfo> {
        self.backends.iter().flatten().collect()
    }

    /// Makes the maps hold exactly `plan`.
    pub fn sync(&mut self, plan: &Plan) -> Result<Synced, Error> {
        let mut done = Synced::default();
        let ids = self.config.get(&0, 0).map_err(map_err(LB_CONFIG, 0))?;
        // A sync cut short (merled killed, a map error) may have left a
        // table half written under an unchanged backend set: rebuild all.
        let interrupted = ids.syncing != 0;
        self.config.set(0, LbConfig { syncing: 1, ..ids }, 0).map_err(map_err(LB_CONFIG, 0))?;
        let have_fe = self.frontends_held();
        let have_be = self.backends_held();
        let have_rn: BTreeMap<u32, RevNatInfo> = self.rev_nat.iter().flatten().collect();
        let mut have_tables: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::new();
        for k in self.maglev.keys().flatten() {
            have_tables.entry(k.lb_id).or_default().insert(k.chunk);
        }
        let size = plan.maglev_size;
        if !merle_lb::maglev::is_prime(size) || size > MAGLEV_M_MAX {
            return Err(Error::Map(MAGLEV.into(), format!("table size {size} is not a prime up to {MAGLEV_M_MAX}")));
        }
        let chunks = size.div_ceil(MAGLEV_CHUNK);
        // The size each table was built with, from its frontends.
        let held_size: BTreeMap<u32, u32> = have_fe.values().map(|i| (i.lb_id, i.maglev_m)).collect();

        // Table ids: each table keeps the id its frontends already use.
        let mut table_ids: BTreeMap<&TableKey, u32> = BTreeMap::new();
        let mut taken: BTreeSet<u32> = BTreeSet::new();
        for (f, p) in &plan.frontends {
            if let Some(info) = have_fe.get(&service_key(f)) {
                if !table_ids.contains_key(&p.table) && info.lb_id != 0 && taken.insert(info.lb_id) {
                    table_ids.insert(&p.table, info.lb_id);
                }
            }
        }
        let mut next_lb = next_id(
            have_fe
                .values()
                .map(|i| i.lb_id)
                .chain(have_be.values().map(|b| b.lb_id))
                .chain(have_tables.keys().copied())
                .chain(taken.iter().copied()),
            ids.next_lb,
        );
        for t in plan.tables.keys() {
            table_ids.entry(t).or_insert_with(|| {
                next_lb += 1;
                next_lb - 1
            });
        }

        // Backends: an id per (table, target), kept while both stay.
        let mut next_be = next_id(have_be.keys().copied(), ids.next_backend);
        let mut want_be: BTreeMap<u32, BackendInfo> = BTreeMap::new();
        let mut table_backends: BTreeMap<u32, Vec<(u32, Target)>> = BTreeMap::new();
        for (t, targets) in &plan.tables {
            let lb_id = table_ids[t];
            let held: BTreeMap<Target, u32> = have_be
                .iter()
                .filter(|(_, b)| b.lb_id == lb_id)
                .filter_map(|(id, b)| Some((target_of(b)?, *id)))
                .collect();
            let mut list = Vec::with_capacity(targets.len());
            for target in targets {
                let id = held.get(target).copied().unwrap_or_else(|| {
                    next_be += 1;
                    next_be - 1
                });
                let (addr, family) = addr_octets(target.address);
                want_be.insert(id, BackendInfo { addr, port: target.port.to_be_bytes(), family, pad: 0, lb_id });
                list.push((id, *target));
            }
            table_backends.insert(lb_id, list);
        }
        for (id, b) in &want_be {
            if have_be.get(id) != Some(b) {
                self.backends.insert(id, b, 0).map_err(map_err(BACKENDS, id))?;
                done.backends_put += 1;
            }
        }

        // Tables: rebuilt when their backends or the size changed, or a
        // chunk is missing. Chunk by chunk: a reader between two chunk
        // writes finds a backend of the old or of the new set, both in
        // the maps until the end.
        for (lb_id, list) in &table_backends {
            let held: BTreeSet<u32> = have_be.iter().filter(|(_, b)| b.lb_id == *lb_id).map(|(id, _)| *id).collect();
            let want: BTreeSet<u32> = list.iter().map(|(id, _)| *id).collect();
            if list.is_empty() {
                continue;
            }
            let complete = have_tables.get(lb_id).is_some_and(|c| (0..chunks).all(|i| c.contains(&i)));
            if !interrupted && held == want && complete && held_size.get(lb_id) == Some(&size) {
                continue;
            }
            let keys: Vec<Vec<u8>> = list.iter().map(|(_, t)| t.maglev_key()).collect();
            let slots = merle_lb::maglev::table(&keys, size)
                .map_err(|e| Error::Map(format!("{MAGLEV} {lb_id}"), e.to_string()))?;
            for (chunk, part) in slots.chunks(MAGLEV_CHUNK as usize).enumerate() {
                let mut c = Box::new(MaglevChunk { backend: [0; MAGLEV_CHUNK as usize] });
                for (slot, i) in c.backend.iter_mut().zip(part) {
                    *slot = list[*i as usize].0;
                }
                let key = MaglevKey { lb_id: *lb_id, chunk: chunk as u32 };
                self.maglev.insert(key, c.as_ref(), 0).map_err(map_err(MAGLEV, lb_id))?;
            }
            done.tables_written += 1;
        }

        // Rev-NAT and frontends.
        let mut next_rn = next_id(have_rn.keys().copied().chain(have_fe.values().map(|i| i.rev_nat)), ids.next_rev_nat);
        let mut want_rn: BTreeSet<u32> = BTreeSet::new();
        let mut want_fe: BTreeSet<ServiceKey> = BTreeSet::new();
        for (f, p) in &plan.frontends {
            let key = service_key(f);
            let rn_info = RevNatInfo { addr: key.addr, port: key.port, family: key.family, pad: 0 };
            let rev_nat = match have_fe.get(&key) {
                Some(i) if have_rn.get(&i.rev_nat) == Some(&rn_info) && !want_rn.contains(&i.rev_nat) => i.rev_nat,
                _ => {
                    next_rn += 1;
                    self.rev_nat.insert(next_rn - 1, rn_info, 0).map_err(map_err(REV_NAT, f))?;
                    next_rn - 1
                }
            };
            want_rn.insert(rev_nat);
            let lb_id = table_ids[&p.table];
            let count = table_backends.get(&lb_id).map_or(0, Vec::len) as u32;
            let cluster = TableKey { service: p.table.service.clone(), local: false };
            let (cluster_lb_id, cluster_count) = match (p.local, table_ids.get(&cluster)) {
                (true, Some(id)) => (*id, table_backends.get(id).map_or(0, Vec::len) as u32),
                _ => (0, 0),
            };
            let info = ServiceInfo {
                lb_id,
                rev_nat,
                count,
                flags: flags(p.kind, p.local, p.dsr),
                maglev_m: size,
                cluster_lb_id,
                cluster_count,
            };
            if have_fe.get(&key) != Some(&info) {
                self.services.insert(key, info, 0).map_err(map_err(SERVICES, f))?;
                done.frontends_put += 1;
            }
            want_fe.insert(key);
        }
        self.set_config(want_fe.len() as u32, &plan.node_addresses, [next_lb, next_be, next_rn])?;

        // What is gone.
        for key in have_fe.keys().filter(|k| !want_fe.contains(k)) {
            self.services.remove(key).map_err(map_err(SERVICES, "remove"))?;
            done.frontends_removed += 1;
        }
        let live_tables: BTreeSet<u32> =
            table_backends.iter().filter(|(_, l)| !l.is_empty()).map(|(id, _)| *id).collect();
        for (id, held) in &have_tables {
            let live = live_tables.contains(id);
            for chunk in held.iter().filter(|c| !live || **c >= chunks) {
                self.maglev.remove(&MaglevKey { lb_id: *id, chunk: *chunk }).map_err(map_err(MAGLEV, id))?;
            }
            if !live {
                done.tables_removed += 1;
            }
        }
        for id in have_be.keys().filter(|id| !want_be.contains_key(id)) {
            self.backends.remove(id).map_err(map_err(BACKENDS, id))?;
            done.backends_removed += 1;
        }
        for id in have_rn.keys().filter(|id| !want_rn.contains(id)) {
            self.rev_nat.remove(id).map_err(map_err(REV_NAT, id))?;
        }
        Ok(done)
    }

    fn set_config(&mut self, n: u32, addrs: &[IpAddr], next: [u32; 3]) -> Result<(), Error> {
        let cur = self.config.get(&0, 0).map_err(map_err(LB_CONFIG, 0))?;
        let mut want = LbConfig {
            services: n,
            netns_cookie: cur.netns_cookie,
            next_lb: next[0].max(cur.next_lb),
            next_backend: next[1].max(cur.next_backend),
            next_rev_nat: next[2].max(cur.next_rev_nat),
            ..LbConfig::default()
        };
        if let Some(IpAddr::V4(a)) = addrs.iter().find(|a| a.is_ipv4()) {
            want.addr4 = a.octets();
            want.flags |= LB_F_ADDR4;
        }
        if let Some(IpAddr::V6(a)) = addrs.iter().find(|a| a.is_ipv6()) {
            want.addr6 = a.octets();
            want.flags |= LB_F_ADDR6;
        }
        if cur != want {
            self.config.set(0, want, 0).map_err(map_err(LB_CONFIG, 0))?;
        }
        Ok(())
    }

    /// The network namespace whose sockets the socket programs balance (0:
    /// none).
    pub fn set_host_netns(&mut self, cookie: u64) -> Result<(), Error> {
        let mut cur = self.config.get(&0, 0).map_err(map_err(LB_CONFIG, 0))?;
        if cur.netns_cookie != cookie {
            cur.netns_cookie = cookie;
            self.config.set(0, cur, 0).map_err(map_err(LB_CONFIG, 0))?;
        }
        Ok(())
    }

    /// Every frontend with its backends, as the maps hold them.
    pub fn programmed(&self) -> Vec<Programmed> {
        let mut by_lb: BTreeMap<u32, Vec<(u32, Target)>> = BTreeMap::new();
        for (id, b) in self.backends_held() {
            if let Some(t) = target_of(&b) {
                by_lb.entry(b.lb_id).or_default().push((id, t));
            }
        }
        let mut out: Vec<Programmed> = self
            .frontends_held()
            .into_iter()
            .filter_map(|(k, i)| {
                Some(Programmed {
                    frontend: frontend_of(&k)?,
                    lb_id: i.lb_id,
                    maglev_m: i.maglev_m,
                    rev_nat: i.rev_nat,
                    flags: i.flags,
                    backends: by_lb.get(&i.lb_id).cloned().unwrap_or_default(),
                })
            })
            .collect();
        out.sort_by_key(|p| p.frontend);
        out
    }

    /// The Maglev table of `lb_id`, as the datapath reads it: `size` slots
    /// from its chunks.
    pub fn table(&self, lb_id: u32, size: u32) -> Option<Vec<u32>> {
        let mut out = Vec::with_capacity(size as usize);
        for chunk in 0..size.div_ceil(MAGLEV_CHUNK) {
            let c = self.maglev.get(&MaglevKey { lb_id, chunk }, 0).ok()?;
            out.extend_from_slice(&c.backend);
        }
        out.truncate(size as usize);
        Some(out)
    }

    /// The backend conntrack keeps the flow `client -> frontend` on.
    pub fn flow_backend(&self, client: IpAddr, sport: u16, f: &Frontend) -> Option<u32> {
        let k = ct_key(client, sport, f.address, f.port, f.protocol_number(), CT_SERVICE);
        self.ct.get(&k, 0).ok().map(|e| e.backend_id)
    }

    /// The rev-NAT index conntrack holds for replies from `backend` to
    /// `client`.
    pub fn reply_rev_nat(&self, backend: IpAddr, bport: u16, client: IpAddr, cport: u16, proto: u8) -> Option<u32> {
        self.ct.get(&ct_key(backend, bport, client, cport, proto, CT_REPLY), 0).ok().map(|e| e.rev_nat)
    }

    /// Leaves the mark of a sync under way, as one cut short does: for
    /// tests.
    #[doc(hidden)]
    pub fn mark_syncing(&mut self) -> Result<(), Error> {
        let cur = self.config.get(&0, 0).map_err(map_err(LB_CONFIG, 0))?;
        self.config.set(0, LbConfig { syncing: 1, ..cur }, 0).map_err(map_err(LB_CONFIG, 0))
    }

    /// Writes a conntrack entry: for tests that need a table in a state
    /// real traffic takes long to reach (every SNAT port of a flow taken).
    #[doc(hidden)]
    pub fn put_flow(&mut self, k: CtKey, e: CtEntry) -> Result<(), Error> {
        self.ct.insert(k, e, 0).map_err(map_err(CT, "put"))
    }

    /// A conntrack entry: for tests.
    #[doc(hidden)]
    pub fn get_flow(&self, k: &CtKey) -> Option<CtEntry> {
        self.ct.get(k, 0).ok()
    }

    /// Conntrack entries, both directions.
    pub fn flows(&self) -> usize {
        self.ct.keys().flatten().count()
    }
}

/// The conntrack clock the programs keep (`bpf_ktime_get_ns() >> 30`):
/// CLOCK_MONOTONIC in ticks of about a second.
pub fn ct_tick() -> u32 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| ((t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64) >> crate::types::CT_TICK_SHIFT) as u32)
        .unwrap_or(0)
}

/// A conntrack key for `src:sport -> dst:dport`.
pub fn ct_key(src: IpAddr, sport: u16, dst: IpAddr, dport: u16, proto: u8, dir: u8) -> CtKey {
    let (saddr, family) = addr_octets(src);
    let (daddr, _) = addr_octets(dst);
    CtKey { saddr, daddr, sport: sport.to_be_bytes(), dport: dport.to_be_bytes(), proto, family, dir, pad: 0 }
}
