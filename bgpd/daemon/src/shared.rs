//! State shared between the peer tasks and the control server.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use bgpd::hash::IndexMap;
use bgpd::rib::{Changed, DecisionOptions, Rib};
use ipnet::IpNet;

use crate::api::{FibSummary, NodeStatus, PeerStatus};

/// The prefixes whose export to one peer must be recomputed. Producers add
/// to the set and wake the peer task; the task takes the whole set. Changes
/// to one prefix coalesce, so a slow peer costs at most one entry per
/// prefix, never a growing queue. The set keeps arrival order, so routes go
/// out in the order they came in: the peer task's RIB lookups then walk the
/// table's entries in the order they were stored, and the receiver sees the
/// same order its upstream chose.
/// Entries an emptied [`OutQueue`] keeps room for (a few MiB at most).
pub const KEEP_CAPACITY: usize = 65_536;

#[derive(Debug, Default)]
pub struct OutQueue {
    /// Each prefix with the latest slot hint for it.
    pending: Mutex<IndexMap<IpNet, u32>>,
    pub notify: tokio::sync::Notify,
    /// The [`PathSource::kind_bit`]s of best paths this peer can be sent;
    /// changes involving no such kind are not queued at all.
    interest: std::sync::atomic::AtomicU8,
}

impl OutQueue {
    pub fn set_interest(&self, kinds: u8) {
        self.interest.store(kinds, std::sync::atomic::Ordering::Relaxed);
    }

    /// Queues the changes of the kinds this peer cares about. `any_kind` is
    /// the or of every change's kinds: a peer that wants none of them (an
    /// eBGP peer, for learned routes) is skipped without a loop.
    pub fn add(&self, changed: &[Changed], any_kind: u8) {
        let interest = self.interest.load(std::sync::atomic::Ordering::Relaxed);
        if any_kind & interest == 0 {
            return;
        }
        let mut added = false;
        {
            let mut pending = lock(&self.pending);
            for c in changed {
                if c.kinds & interest != 0 {
                    pending.insert(c.prefix, c.slot);
                    added = true;
                }
            }
        }
        if added {
            self.notify.notify_one();
        }
    }

    /// Takes everything queued, oldest first. A queue that grew past
    /// [`KEEP_CAPACITY`] entries in a burst (a table arriving faster than
    /// the peer takes it) keeps its room while the burst lasts (regrowing
    /// a table-sized index on every take costs more CPU than it saves) and
    /// gives it back once a take is small against it: the burst is over,
    /// and the session does not keep a table-sized index for nothing.
    pub fn take(&self) -> Vec<(IpNet, u32)> {
        let mut pending = lock(&self.pending);
        if pending.capacity() > KEEP_CAPACITY && pending.len() < pending.capacity() / 8 {
            std::mem::take(&mut *pending).into_iter().collect()
        } else {
            pending.drain(..).collect()
        }
    }
}

#[derive(Debug)]
pub struct Shared {
    pub name: String,
    pub router_id: std::net::Ipv4Addr,
    pub as_number: u32,
    pub listen: String,
    rib: Mutex<Rib>,
    peers: Mutex<BTreeMap<IpAddr, PeerStatus>>,
    /// The export queues of the Established peers.
    exports: Mutex<HashMap<IpAddr, Arc<OutQueue>>>,
    /// Why the last configuration change was rejected, if it was.
    config_error: Mutex<Option<String>>,
    /// The FIB's queue of changed prefixes, when fib-sync runs.
    fib_queue: Mutex<Option<Arc<OutQueue>>>,
    /// fib-sync's report, when it runs.
    fib_status: Mutex<Option<Arc<Mutex<fib_sync::FibStatus>>>>,
    /// Peers that have sent End-of-RIB for every family since their
    /// session came up.
    converged: Mutex<std::collections::HashSet<IpAddr>>,
    /// Requests to the IPAM thread.
    ipam: Mutex<Option<std::sync::mpsc::Sender<crate::ipam::Cmd>>>,
    /// Requests to the dataplane thread, and the mode it is in.
    dataplane: Mutex<Option<std::sync::mpsc::Sender<crate::dataplane::Cmd>>>,
    dataplane_summary: Mutex<Option<crate::dataplane::Summary>>,
    /// Services in the datastore left out, and why.
    service_errors: Mutex<Vec<String>>,
    /// merled has set up every configured session (readiness).
    started: std::sync::atomic::AtomicBool,
    /// The event series of the metrics endpoint.
    pub metrics: crate::metrics::Live,
    /// The configuration in effect, for `show config`.
    config: Mutex<Option<Arc<conf::Config>>>,
    /// The node's TCP MD5 counters, sampled every few seconds over the
    /// last minute, for `show peer`'s likely cause.
    md5: Mutex<std::collections::VecDeque<(std::time::Instant, crate::peer_detail::Md5Counters)>>,
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it:
/// the RIB and status tables stay consistent between statements.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub fn new(
        name: String,
        router_id: std::net::Ipv4Addr,
        as_number: u32,
        listen: String,
        opts: DecisionOptions,
    ) -> Self {
        Self {
            name,
            router_id,
            as_number,
            listen,
            rib: Mutex::new(Rib::new(opts)),
            peers: Mutex::new(BTreeMap::new()),
            exports: Mutex::new(HashMap::new()),
            config_error: Mutex::new(None),
            service_errors: Mutex::new(Vec::new()),
            started: std::sync::atomic::AtomicBool::new(false),
            metrics: crate::metrics::Live::default(),
            config: Mutex::new(None),
            md5: Mutex::new(std::collections::VecDeque::new()),
            fib_queue: Mutex::new(None),
            fib_status: Mutex::new(None),
            converged: Mutex::new(std::collections::HashSet::new()),
            ipam: Mutex::new(None),
            dataplane: Mutex::new(None),
            dataplane_summary: Mutex::new(None),
        }
    }

    pub fn set_dataplane(&self, tx: std::sync::mpsc::Sender<crate::dataplane::Cmd>) {
        *lock(&self.dataplane) = Some(tx);
    }

    /// Sends a request to the dataplane thread; false when it is not running.
    pub fn dataplane(&self, cmd: crate::dataplane::Cmd) -> bool {
        lock(&self.dataplane).as_ref().is_some_and(|tx| tx.send(cmd).is_ok())
    }

    pub fn set_dataplane_summary(&self, s: crate::dataplane::Summary) {
        *lock(&self.dataplane_summary) = Some(s);
    }

    pub fn set_config(&self, c: Arc<conf::Config>) {
        *lock(&self.config) = Some(c);
    }

    pub fn config(&self) -> Option<Arc<conf::Config>> {
        lock(&self.config).clone()
    }

    /// Keeps one more MD5 sample, dropping those older than `keep`.
    pub fn sample_md5(&self, now: std::time::Instant, c: crate::peer_detail::Md5Counters, keep: std::time::Duration) {
        let mut h = lock(&self.md5);
        h.push_back((now, c));
        while h.front().is_some_and(|(t, _)| now.duration_since(*t) > keep) {
            h.pop_front();
        }
    }

    /// How much the MD5 counters rose from the oldest sample kept to
    /// `now_counters`, and over how many seconds.
    pub fn md5_rise(&self, now_counters: crate::peer_detail::Md5Counters) -> (crate::peer_detail::Md5Counters, u64) {
        let h = lock(&self.md5);
        match h.front() {
            Some((t, c)) => (now_counters.since(c), t.elapsed().as_secs().max(1)),
            None => (crate::peer_detail::Md5Counters::default(), 0),
        }
    }

    /// Every configured session is set up: the start is done.
    pub fn set_started(&self) {
        self.started.store(true, std::sync::atomic::Ordering::Release);
    }

    pub fn started(&self) -> bool {
        self.started.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn set_service_errors(&self, e: Vec<String>) {
        *lock(&self.service_errors) = e;
    }

    pub fn service_errors(&self) -> Vec<String> {
        lock(&self.service_errors).clone()
    }

    pub fn set_ipam(&self, tx: std::sync::mpsc::Sender<crate::ipam::Cmd>) {
        *lock(&self.ipam) = Some(tx);
    }

    /// Sends a request to the IPAM thread; false when it is not running.
    pub fn ipam(&self, cmd: crate::ipam::Cmd) -> bool {
        lock(&self.ipam).as_ref().is_some_and(|tx| tx.send(cmd).is_ok())
    }

    pub fn set_config_error(&self, e: Option<String>) {
        *lock(&self.config_error) = e;
    }

    pub fn register_export(&self, peer: IpAddr, q: Arc<OutQueue>) {
        lock(&self.exports).insert(peer, q);
    }

    pub fn unregister_export(&self, peer: IpAddr) {
        lock(&self.exports).remove(&peer);
    }

    /// Tells every Established peer that these prefixes' best paths
    /// changed.
    pub fn notify_export(&self, prefixes: &[Changed]) {
        if prefixes.is_empty() {
            return;
        }
        let any_kind = prefixes.iter().fold(0, |k, c| k | c.kinds);
        for q in lock(&self.exports).values() {
            q.add(prefixes, any_kind);
        }
        if let Some(q) = lock(&self.fib_queue).as_ref() {
            q.add(prefixes, any_kind);
        }
    }

    /// Connects fib-sync: from now on every best-path change is queued for
    /// the FIB too.
    pub fn attach_fib(&self, q: Arc<OutQueue>, status: Arc<Mutex<fib_sync::FibStatus>>) {
        *lock(&self.fib_queue) = Some(q);
        *lock(&self.fib_status) = Some(status);
    }

    /// Stops feeding the FIB (at shutdown, before the sessions close, so
    /// the kernel routes stay).
    pub fn detach_fib(&self) {
        *lock(&self.fib_queue) = None;
    }

    pub fn peer_converged(&self, addr: IpAddr) {
        lock(&self.converged).insert(addr);
    }

    pub fn all_converged(&self, peers: impl IntoIterator<Item = IpAddr>) -> bool {
        let c = lock(&self.converged);
        peers.into_iter().all(|p| c.contains(&p))
    }

    /// fib-sync's report, when it runs.
    pub fn fib_status(&self) -> Option<Arc<Mutex<fib_sync::FibStatus>>> {
        lock(&self.fib_status).clone()
    }

    fn fib_summary(&self) -> Option<FibSummary> {
        let st = lock(&self.fib_status).clone()?;
        let st = lock(&st);
        Some(FibSummary {
            table: st.table,
            protocol: st.protocol,
            ipip: st.ipip.to_string(),
            devices: st.devices.clone(),
            converged: st.converged,
            installed: st.installed,
            failed: st.failed,
        })
    }

    pub fn rib(&self) -> MutexGuard<'_, Rib> {
        lock(&self.rib)
    }

    pub fn set_peer_status(&self, s: PeerStatus, addr: IpAddr) {
        lock(&self.peers).insert(addr, s);
    }

    pub fn update_peer_status(&self, addr: IpAddr, f: impl FnOnce(&mut PeerStatus)) {
        if let Some(s) = lock(&self.peers).get_mut(&addr) {
            f(s);
        }
    }

    pub fn remove_peer(&self, addr: IpAddr) {
        lock(&self.peers).remove(&addr);
    }

    pub fn status(&self) -> NodeStatus {
        let peers: Vec<PeerStatus> = lock(&self.peers).values().cloned().collect();
        let rib = {
            let r = self.rib();
            let (adj_rib_out_bytes, withdrawals_pending) = r.adj_out_cost();
            crate::api::RibSummary {
                prefixes: r.len(),
                attribute_sets: r.attr_sets(),
                adj_rib_out_bytes,
                withdrawals_pending,
            }
        };
        NodeStatus {
            name: self.name.clone(),
            router_id: self.router_id.to_string(),
            as_number: self.as_number,
            listen: self.listen.clone(),
            peers,
            config_error: lock(&self.config_error).clone(),
            fib: self.fib_summary(),
            dataplane: lock(&self.dataplane_summary).as_ref().map(|d| crate::api::DataplaneSummary {
                mode: d.mode.clone(),
                requested: d.requested.clone(),
                reason: d.reason.clone(),
            }),
            rib,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bgpd::rib::PathSource;

    fn changed(i: u32, kinds: u8) -> Changed {
        let prefix = IpNet::V4(ipnet::Ipv4Net::new(std::net::Ipv4Addr::from(0x0a00_0000 + (i << 8)), 24).unwrap());
        Changed { prefix, kinds, slot: i }
    }

    #[test]
    fn the_queue_keeps_arrival_order_one_entry_a_prefix_and_only_wanted_kinds() {
        let q = OutQueue::default();
        q.set_interest(PathSource::LOCAL);
        let ebgp = PathSource::EBGP;
        q.add(
            &[changed(1, PathSource::LOCAL), changed(2, ebgp), changed(3, PathSource::LOCAL)],
            PathSource::LOCAL | ebgp,
        );
        q.add(&[changed(1, PathSource::LOCAL)], PathSource::LOCAL);
        q.add(&[changed(4, ebgp)], ebgp);
        let got: Vec<u32> = q.take().into_iter().map(|(_, slot)| slot).collect();
        assert_eq!(got, [1, 3]);
        assert!(q.take().is_empty());
    }

    #[test]
    fn a_burst_gives_its_memory_back_a_trickle_keeps_it() {
        let q = OutQueue::default();
        q.set_interest(u8::MAX);
        let burst: Vec<Changed> = (0..200_000).map(|i| changed(i, PathSource::LOCAL)).collect();
        q.add(&burst, PathSource::LOCAL);
        assert_eq!(q.take().len(), 200_000);
        assert!(lock(&q.pending).capacity() >= 200_000, "the room stays while the burst lasts");
        q.add(&burst[..100_000], PathSource::LOCAL);
        assert_eq!(q.take().len(), 100_000);
        assert!(lock(&q.pending).capacity() >= 200_000);
        q.add(&burst[..10], PathSource::LOCAL);
        assert_eq!(q.take().len(), 10);
        assert_eq!(lock(&q.pending).capacity(), 0, "a table-sized index is not kept after the burst");
        let trickle: Vec<Changed> = (0..1000).map(|i| changed(i, PathSource::LOCAL)).collect();
        q.add(&trickle, PathSource::LOCAL);
        assert_eq!(q.take().len(), 1000);
        assert!(lock(&q.pending).capacity() >= 1000, "a small queue keeps its room");
    }
}
