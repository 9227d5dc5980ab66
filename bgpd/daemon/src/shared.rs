//! State shared between the peer tasks and the control server.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use bgpd::rib::{DecisionOptions, OutId, Rib};

use crate::api::{FibSummary, NodeStatus, PeerStatus};

/// The RIB behind its lock. Dropping the guard wakes every consumer (an
/// Established session's task, the FIB's) that the RIB queued changes for
/// while it was held, so no caller has to remember to.
#[derive(Debug)]
pub struct RibGuard<'a> {
    rib: MutexGuard<'a, Rib>,
    wake: &'a Mutex<HashMap<OutId, Arc<tokio::sync::Notify>>>,
}

impl std::ops::Deref for RibGuard<'_> {
    type Target = Rib;
    fn deref(&self) -> &Rib {
        &self.rib
    }
}

impl std::ops::DerefMut for RibGuard<'_> {
    fn deref_mut(&mut self) -> &mut Rib {
        &mut self.rib
    }
}

impl Drop for RibGuard<'_> {
    fn drop(&mut self) {
        let woken = self.rib.take_woken();
        if woken.is_empty() {
            return;
        }
        let wake = lock(self.wake);
        for id in woken {
            if let Some(n) = wake.get(&id) {
                n.notify_one();
            }
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
    /// How to wake each consumer of the RIB's changes (the Established
    /// sessions, the FIB) when the RIB queues some for it.
    wake: Mutex<HashMap<OutId, Arc<tokio::sync::Notify>>>,
    /// Why the last configuration change was rejected, if it was.
    config_error: Mutex<Option<String>>,
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
            wake: Mutex::new(HashMap::new()),
            config_error: Mutex::new(None),
            service_errors: Mutex::new(Vec::new()),
            started: std::sync::atomic::AtomicBool::new(false),
            metrics: crate::metrics::Live::default(),
            config: Mutex::new(None),
            md5: Mutex::new(std::collections::VecDeque::new()),
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

    /// Opens a consumer of the RIB's changes of the kinds in `interest`
    /// (see [`Rib::open_adj_out`]), woken through `notify`.
    pub fn open_consumer(&self, interest: u8, notify: Arc<tokio::sync::Notify>) -> OutId {
        let id = self.rib().open_adj_out(interest);
        lock(&self.wake).insert(id, notify);
        id
    }

    /// Closes a consumer: nothing more is queued for it, and what it held
    /// or had queued is forgotten.
    pub fn close_consumer(&self, id: OutId) {
        lock(&self.wake).remove(&id);
        self.rib().close_adj_out(id);
    }

    /// Connects fib-sync's report.
    pub fn attach_fib(&self, status: Arc<Mutex<fib_sync::FibStatus>>) {
        *lock(&self.fib_status) = Some(status);
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

    pub fn rib(&self) -> RibGuard<'_> {
        RibGuard { rib: lock(&self.rib), wake: &self.wake }
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
    use bgpd::rib::{Path, PathSource};

    #[tokio::test]
    async fn a_change_wakes_the_consumers_that_want_it_once_the_rib_is_released() {
        let shared = Shared::new("n".into(), "10.0.0.1".parse().unwrap(), 64512, "*:179".into(), Default::default());
        let (all, local) = (Arc::new(tokio::sync::Notify::new()), Arc::new(tokio::sync::Notify::new()));
        let a = shared.open_consumer(u8::MAX, all.clone());
        let _l = shared.open_consumer(PathSource::EBGP, local.clone());
        {
            let mut rib = shared.rib();
            let attrs = rib.intern(bgpd::rib::RouteAttrs::with_path(Default::default()));
            let p = Path {
                source: PathSource::Local,
                path_id: 0,
                next_hop: "10.0.0.1".parse().unwrap(),
                attrs,
                stale: false,
                lost_at: None,
                ecmp: 0,
            };
            rib.insert("10.244.0.0/26".parse().unwrap(), p);
        }
        tokio::time::timeout(std::time::Duration::from_secs(1), all.notified()).await.unwrap();
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), local.notified()).await.is_err(),
            "a consumer that wants none of it sleeps on"
        );
        assert_eq!(shared.rib().take_queue(a).len(), 1);
        shared.close_consumer(a);
        assert_eq!(shared.rib().adj_out_cost().1, 0);
    }
}
