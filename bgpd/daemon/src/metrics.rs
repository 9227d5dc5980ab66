//! Prometheus metrics on `[metrics] listen` (`GET /metrics`), in the
//! OpenMetrics text format, through `prometheus-client`.
//!
//! Two kinds of series:
//! - **state**, read at scrape time from what merled already keeps (the
//!   peers' status and counters, the RIB, fib-sync's status, IPAM's
//!   report, the eBPF counters, `/proc/self`): gathered into a
//!   [`Snapshot`], then rendered by the pure [`render`];
//! - **events** merled hears of and keeps here ([`Live`]): CNI requests
//!   and their latency, reported by merle-cni over the control socket
//!   after each call, and IPAM allocation latency.
//!
//! Names follow Prometheus's conventions: `merle_` and the subsystem,
//! base units (`_seconds`, `_bytes`), `_total` on counters; the process
//! series are the standard `process_*` ones.

use std::sync::Arc;
use std::time::Duration;

use hyper::{Method, StatusCode};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use crate::api::NodeStatus;
use crate::http::{reply, Reply};
use crate::shared::Shared;

/// A series' labels.
pub type Labels = Vec<(&'static str, String)>;

type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

/// 0.5 ms to about 16 s: a CNI ADD runs from a few ms (file store) to
/// seconds (etcd under load).
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// CNI commands merle-cni reports, as the spec names them.
pub use merle_control::CNI_COMMANDS;

/// Event series, kept from merled's start.
#[derive(Debug, Clone)]
pub struct Live {
    cni_requests: Family<Labels, Counter>,
    cni_duration: HistogramFamily,
    ipam_allocation: Histogram,
}

impl Default for Live {
    fn default() -> Self {
        Self {
            cni_requests: Family::default(),
            cni_duration: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            ipam_allocation: latency_histogram(),
        }
    }
}

/// One CNI call as merle-cni reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct CniCall {
    pub command: String,
    /// `ok`, or the CNI error code (`code_11`).
    pub result: String,
    pub seconds: f64,
    /// The IPAM transaction's share, for an ADD that allocated.
    pub ipam_seconds: Option<f64>,
}

impl CniCall {
    /// Checks a report from the control socket: a known command, a result
    /// merle-cni gives, and durations a call can take.
    pub fn check(&self) -> Result<(), String> {
        merle_control::check_cni_report(&self.command, &self.result, self.seconds, self.ipam_seconds)
    }
}

impl Live {
    pub fn record_cni(&self, c: &CniCall) {
        self.cni_requests.get_or_create(&vec![("command", c.command.clone()), ("result", c.result.clone())]).inc();
        self.cni_duration.get_or_create(&vec![("command", c.command.clone())]).observe(c.seconds);
        if let Some(s) = c.ipam_seconds {
            self.ipam_allocation.observe(s);
        }
    }
}

/// The process's own figures, from `/proc/self`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Process {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub threads: u64,
    pub start_time_seconds: f64,
    pub open_fds: u64,
    pub max_fds: Option<u64>,
}

/// Parses `/proc/self/stat` (after the command name, which may hold
/// spaces and parentheses), given the clock tick, the page size and the
/// boot time (`btime` of `/proc/stat`).
pub fn parse_stat(stat: &str, ticks: f64, page: u64, boot_time: u64) -> Option<Process> {
    let rest = &stat[stat.rfind(')')? + 2..];
    // Fields from 3 (state) on, so field N of proc(5) is f[N - 3].
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |n: usize| -> Option<u64> { f.get(n - 3)?.parse().ok() };
    Some(Process {
        cpu_seconds: (num(14)? + num(15)?) as f64 / ticks,
        threads: num(20)?,
        start_time_seconds: boot_time as f64 + num(22)? as f64 / ticks,
        virtual_bytes: num(23)?,
        resident_bytes: num(24)? * page,
        open_fds: 0,
        max_fds: None,
    })
}

/// The soft "Max open files" of `/proc/self/limits`.
pub fn parse_max_fds(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

fn read_process() -> Option<Process> {
    use nix::unistd::{sysconf, SysconfVar};
    let ticks = sysconf(SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100);
    let page = sysconf(SysconfVar::PAGE_SIZE).ok().flatten().unwrap_or(4096);
    let boot = std::fs::read_to_string("/proc/stat").ok()?;
    let btime = boot.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse().ok()?;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let mut p = parse_stat(&stat, ticks.max(1) as f64, page.max(1) as u64, btime)?;
    p.open_fds = std::fs::read_dir("/proc/self/fd").map(|d| d.count() as u64).unwrap_or(0);
    p.max_fds = std::fs::read_to_string("/proc/self/limits").ok().as_deref().and_then(parse_max_fds);
    Some(p)
}

/// fib-sync's figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fib {
    pub installed: usize,
    pub failed: usize,
    pub converged: bool,
    pub converged_in: Option<(Duration, bool)>,
    pub ops: fib_sync::OpCounts,
}

/// Everything the state series come from, gathered for one scrape.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub status: NodeStatus,
    pub fib: Option<Fib>,
    pub ipam: Option<merle_ipam::report::Report>,
    pub dataplane: Option<merle_ebpf::report::Report>,
    pub md5: Option<crate::peer_detail::Md5Counters>,
    pub process: Option<Process>,
}

/// The six RFC 4271 states, each a series of `merle_bgp_session_state`.
const STATES: [&str; 6] = ["Idle", "Connect", "Active", "OpenSent", "OpenConfirm", "Established"];

fn put(reg: &mut Registry, name: &str, help: &str, unit: Option<Unit>, m: impl prometheus_client::registry::Metric) {
    match unit {
        Some(u) => reg.register_with_unit(name, help, u, m),
        None => reg.register(name, help, m),
    }
}

/// A gauge per label set; one without labels is a plain gauge.
fn gauges(reg: &mut Registry, name: &str, help: &str, unit: Option<Unit>, rows: Vec<(Labels, f64)>) {
    type G = Gauge<f64, std::sync::atomic::AtomicU64>;
    if let [(l, v)] = rows.as_slice() {
        if l.is_empty() {
            let g = G::default();
            g.set(*v);
            return put(reg, name, help, unit, g);
        }
    }
    let fam = Family::<Labels, G>::default();
    for (l, v) in rows {
        fam.get_or_create(&l).set(v);
    }
    put(reg, name, help, unit, fam)
}

/// A counter per label set; one without labels is a plain counter.
fn counters(reg: &mut Registry, name: &str, help: &str, unit: Option<Unit>, rows: Vec<(Labels, u64)>) {
    if let [(l, v)] = rows.as_slice() {
        if l.is_empty() {
            let c = Counter::<u64>::default();
            c.inc_by(*v);
            return put(reg, name, help, unit, c);
        }
    }
    let fam = Family::<Labels, Counter>::default();
    for (l, v) in rows {
        fam.get_or_create(&l).inc_by(v);
    }
    put(reg, name, help, unit, fam)
}

fn one(v: f64) -> Vec<(Labels, f64)> {
    vec![(vec![], v)]
}

fn peer(p: &crate::api::PeerStatus) -> Labels {
    vec![("peer", p.address.clone()), ("peer_as", p.as_number.to_string())]
}

fn with(mut l: Labels, k: &'static str, v: impl Into<String>) -> Labels {
    l.push((k, v.into()));
    l
}

fn bgp(reg: &mut Registry, s: &Snapshot) {
    let peers = &s.status.peers;
    let per = |f: &dyn Fn(&crate::api::PeerStatus) -> f64| peers.iter().map(|p| (peer(p), f(p))).collect();
    let per_n = |f: &dyn Fn(&crate::api::PeerStatus) -> u64| peers.iter().map(|p| (peer(p), f(p))).collect();
    gauges(
        reg,
        "merle_bgp_session_established",
        "1 while the session with the peer is Established",
        None,
        per(&|p| f64::from(u8::from(p.state == "Established"))),
    );
    let states = peers
        .iter()
        .flat_map(|p| STATES.iter().map(move |st| (with(peer(p), "state", *st), f64::from(u8::from(p.state == *st)))))
        .collect();
    gauges(reg, "merle_bgp_session_state", "1 for the RFC 4271 state the session is in", None, states);
    gauges(
        reg,
        "merle_bgp_session_state_change_timestamp_seconds",
        "When the session last changed state (Unix time)",
        None,
        per(&|p| p.since_unix as f64),
    );
    counters(
        reg,
        "merle_bgp_session_flaps",
        "Times an Established session with the peer went down",
        None,
        per_n(&|p| p.detail.flaps),
    );
    for (dir, help, pick) in [
        (
            "received",
            "BGP messages received from the peer, by type",
            (|d: &crate::api::PeerDetail| d.messages_received)
                as fn(&crate::api::PeerDetail) -> crate::api::MessageCounts,
        ),
        ("sent", "BGP messages sent to the peer, by type", |d| d.messages_sent),
    ] {
        let rows = peers
            .iter()
            .flat_map(|p| pick(&p.detail).by_type().into_iter().map(move |(t, n)| (with(peer(p), "type", t), n)))
            .collect();
        counters(reg, &format!("merle_bgp_messages_{dir}"), help, None, rows);
    }
    gauges(
        reg,
        "merle_bgp_prefixes_received",
        "Paths from the peer held in the RIB (Adj-RIB-In after policy)",
        None,
        per(&|p| p.prefixes_received as f64),
    );
    gauges(
        reg,
        "merle_bgp_prefixes_advertised",
        "Prefixes advertised to the peer",
        None,
        per(&|p| p.prefixes_advertised as f64),
    );
    gauges(
        reg,
        "merle_bgp_out_queue_bytes",
        "Encoded messages queued for the peer and not yet written to its socket",
        None,
        per(&|p| p.out_queue_bytes as f64),
    );
    counters(
        reg,
        "merle_bgp_prefixes_accepted",
        "Announcements from the peer the import policy accepted",
        None,
        per_n(&|p| p.detail.prefixes_accepted),
    );
    counters(
        reg,
        "merle_bgp_prefixes_rejected",
        "Announcements from the peer the import policy or the RFC 4271 checks rejected",
        None,
        per_n(&|p| p.detail.prefixes_rejected),
    );
    counters(
        reg,
        "merle_bgp_withdrawals_received",
        "Withdrawn prefixes received from the peer",
        None,
        per_n(&|p| p.detail.withdrawals_received),
    );
    if let Some(m) = s.md5 {
        let rows = vec![
            (vec![("error", "not_found".to_owned())], m.not_found),
            (vec![("error", "unexpected".to_owned())], m.unexpected),
            (vec![("error", "failure".to_owned())], m.failure),
        ];
        counters(
            reg,
            "merle_tcp_md5_errors",
            "The node's TCP MD5 errors (TCPMD5NotFound, TCPMD5Unexpected, TCPMD5Failure); failure: a password mismatch",
            None,
            rows,
        );
    }
    let rib = &s.status.rib;
    gauges(reg, "merle_rib_prefixes", "Prefixes in the Loc-RIB", None, one(rib.prefixes as f64));
    gauges(
        reg,
        "merle_rib_attribute_sets",
        "Distinct path attribute sets the RIB interns",
        None,
        one(rib.attribute_sets as f64),
    );
    gauges(
        reg,
        "merle_rib_adj_out",
        "What recording each session's sent prefixes (the Adj-RIB-Out) costs",
        Some(Unit::Bytes),
        one(rib.adj_rib_out_bytes as f64),
    );
    gauges(
        reg,
        "merle_rib_withdrawals_pending",
        "Prefixes gone from the Loc-RIB whose withdrawal some session has not been sent yet",
        None,
        one(rib.withdrawals_pending as f64),
    );
    gauges(
        reg,
        "merle_config_last_reload_successful",
        "0 while the configuration file has an error merled refused",
        None,
        one(f64::from(u8::from(s.status.config_error.is_none()))),
    );
}

fn fib(reg: &mut Registry, f: &Fib) {
    let routes = vec![
        (vec![("state", "installed".to_owned())], f.installed as f64),
        (vec![("state", "failed".to_owned())], f.failed as f64),
    ];
    gauges(reg, "merle_fib_routes", "Kernel routes merle holds, and prefixes failing to install", None, routes);
    let ops = vec![
        (vec![("op", "add".to_owned())], f.ops.added),
        (vec![("op", "replace".to_owned())], f.ops.replaced),
        (vec![("op", "delete".to_owned())], f.ops.deleted),
    ];
    counters(reg, "merle_fib_operations", "Kernel route operations that succeeded", None, ops);
    counters(
        reg,
        "merle_fib_operation_failures",
        "Kernel route operations refused or impossible",
        None,
        vec![(vec![], f.ops.failed)],
    );
    counters(
        reg,
        "merle_fib_table_reads",
        "Whole-table reads of the kernel's routes (start, every 90 s, link flaps, errors, settings changes)",
        None,
        vec![(vec![], f.ops.table_reads)],
    );
    gauges(
        reg,
        "merle_fib_converged",
        "1 once every peer's End-of-RIB (or the sweep timer) let fib-sync remove stale routes",
        None,
        one(f64::from(u8::from(f.converged))),
    );
    if let Some((d, timer)) = f.converged_in {
        gauges(
            reg,
            "merle_fib_convergence",
            "From fib-sync's start to convergence; by=timer when the sweep timer ended it",
            Some(Unit::Seconds),
            vec![(vec![("by", if timer { "timer" } else { "end_of_rib" }.to_owned())], d.as_secs_f64())],
        );
    }
}

fn ipam(reg: &mut Registry, r: &merle_ipam::report::Report) {
    let pool = |p: &merle_ipam::report::PoolUse| vec![("pool", p.cidr.to_string())];
    gauges(
        reg,
        "merle_ipam_blocks",
        "Blocks claimed in the pool (every node's)",
        None,
        r.pools.iter().map(|p| (pool(p), p.blocks as f64)).collect(),
    );
    gauges(
        reg,
        "merle_ipam_addresses_allocated",
        "Addresses allocated in the pool's blocks",
        None,
        r.pools.iter().map(|p| (pool(p), p.used as f64)).collect(),
    );
    gauges(
        reg,
        "merle_ipam_addresses_capacity",
        "Addresses the pool holds (saturating at 2^64 - 1 for IPv6 pools)",
        None,
        r.pools.iter().map(|p| (pool(p), p.capacity as f64)).collect(),
    );
}

fn dataplane(reg: &mut Registry, d: &merle_ebpf::report::Report) {
    let lab = |c: &merle_ebpf::metrics::Counter| {
        let kind = serde_json::to_value(c.kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        vec![("hook", c.hook.name().to_owned()), ("verdict", kind), ("reason", c.reason.clone())]
    };
    counters(
        reg,
        "merle_ebpf_packets",
        "Packets the tc programs handled, by hook, verdict (redirect, pass, drop) and reason",
        None,
        d.counters.iter().map(|c| (lab(c), c.packets)).collect(),
    );
    counters(
        reg,
        "merle_ebpf",
        "Bytes the tc programs handled, by hook, verdict and reason",
        Some(Unit::Bytes),
        d.counters.iter().map(|c| (lab(c), c.bytes)).collect(),
    );
    gauges(reg, "merle_ebpf_endpoints", "Pod endpoints in the datapath", None, one(d.endpoints.len() as f64));
    if let Some(ct) = &d.conntrack {
        gauges(reg, "merle_conntrack_entries", "Conntrack entries at the last sweep", None, one(ct.entries as f64));
        gauges(reg, "merle_conntrack_capacity", "Entries the conntrack table holds", None, one(ct.capacity as f64));
        counters(
            reg,
            "merle_conntrack_sweeps",
            "Sweeps of the conntrack table for expired flows",
            None,
            vec![(vec![], ct.sweeps)],
        );
        counters(
            reg,
            "merle_conntrack_expired_deleted",
            "Expired conntrack entries the sweeps deleted",
            None,
            vec![(vec![], ct.deleted)],
        );
    }
    gauges(
        reg,
        "merle_ebpf_service_frontends",
        "Service frontends this node programs",
        None,
        one(d.services.iter().map(|s| s.frontends.len()).sum::<usize>() as f64),
    );
}

/// Renders a scrape.
pub fn render(s: &Snapshot, live: &Live) -> String {
    let mut reg = Registry::default();
    bgp(&mut reg, s);
    if let Some(f) = &s.fib {
        fib(&mut reg, f);
    }
    if let Some(r) = &s.ipam {
        ipam(&mut reg, r);
    }
    if let Some(d) = &s.dataplane {
        dataplane(&mut reg, d);
    }
    reg.register(
        "merle_cni_requests",
        "CNI calls merle-cni reported, by command and result (ok, or code_N of the spec)",
        live.cni_requests.clone(),
    );
    reg.register_with_unit(
        "merle_cni_request_duration",
        "How long merle-cni's calls took, by command",
        Unit::Seconds,
        live.cni_duration.clone(),
    );
    reg.register_with_unit(
        "merle_ipam_allocation_duration",
        "How long an ADD's IPAM transaction took (the store's lock, read and write)",
        Unit::Seconds,
        live.ipam_allocation.clone(),
    );
    if let Some(p) = &s.process {
        process_series(&mut reg, p);
    }
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &reg);
    out
}

fn process_series(reg: &mut Registry, p: &Process) {
    let cpu = Counter::<f64, std::sync::atomic::AtomicU64>::default();
    cpu.inc_by(p.cpu_seconds);
    reg.register_with_unit("process_cpu", "Total user and system CPU time spent", Unit::Seconds, cpu);
    gauges(reg, "process_resident_memory", "Resident memory size", Some(Unit::Bytes), one(p.resident_bytes as f64));
    gauges(reg, "process_virtual_memory", "Virtual memory size", Some(Unit::Bytes), one(p.virtual_bytes as f64));
    gauges(
        reg,
        "process_start_time",
        "Start time since the Unix epoch",
        Some(Unit::Seconds),
        one(p.start_time_seconds),
    );
    gauges(reg, "process_open_fds", "Open file descriptors", None, one(p.open_fds as f64));
    if let Some(m) = p.max_fds {
        gauges(reg, "process_max_fds", "The limit of open file descriptors", None, one(m as f64));
    }
    gauges(reg, "process_threads", "OS threads", None, one(p.threads as f64));
}

/// How long a scrape waits for the IPAM and dataplane threads.
const GATHER_WITHIN: Duration = Duration::from_secs(2);

async fn gather(shared: &Arc<Shared>) -> Snapshot {
    let mut s = Snapshot { status: shared.status(), ..Default::default() };
    if let Some(f) = shared.fib_status() {
        let st = f.lock().unwrap_or_else(|p| p.into_inner());
        s.fib = Some(Fib {
            installed: st.installed,
            failed: st.failed,
            converged: st.converged,
            converged_in: st.converged_in,
            ops: st.ops,
        });
    }
    s.ipam = tokio::time::timeout(GATHER_WITHIN, crate::control::ipam(shared, crate::ipam::Cmd::Show))
        .await
        .ok()
        .and_then(Result::ok);
    let (tx, rx) = tokio::sync::oneshot::channel();
    if shared.dataplane(crate::dataplane::Cmd::Report(tx)) {
        s.dataplane = tokio::time::timeout(GATHER_WITHIN, rx).await.ok().and_then(Result::ok);
    }
    s.md5 = crate::peer_detail::read_md5();
    s.process = read_process();
    s
}

async fn handle(method: Method, path: String, shared: Arc<Shared>) -> Reply {
    if method != Method::GET && method != Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET /metrics\n".into());
    }
    if path != "/metrics" {
        return reply(StatusCode::NOT_FOUND, "text/plain", format!("{path}: no such page; /metrics is\n"));
    }
    let snap = gather(&shared).await;
    let body = render(&snap, &shared.metrics);
    reply(StatusCode::OK, "application/openmetrics-text; version=1.0.0; charset=utf-8", body)
}

/// Binds `[metrics] listen`: an error names the address.
pub async fn bind(addr: std::net::SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    crate::http::bind("metrics.listen", addr).await
}

/// Serves `/metrics` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    crate::http::serve(listener, "metrics endpoint", move |m, p| handle(m, p, shared.clone())).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::api::{PeerDetail, PeerStatus};

    fn snapshot() -> Snapshot {
        let mut d = PeerDetail { flaps: 2, prefixes_accepted: 10, prefixes_rejected: 1, ..Default::default() };
        d.messages_received.update = 7;
        let p = PeerStatus {
            address: "10.0.0.2".into(),
            as_number: 65001,
            state: "Established".into(),
            prefixes_received: 9,
            detail: d,
            ..Default::default()
        };
        Snapshot {
            status: NodeStatus {
                peers: vec![p],
                rib: crate::api::RibSummary { prefixes: 12, ..Default::default() },
                ..Default::default()
            },
            fib: Some(Fib {
                installed: 5,
                converged: true,
                converged_in: Some((Duration::from_millis(1500), false)),
                ..Default::default()
            }),
            process: Some(Process { cpu_seconds: 1.5, resident_bytes: 4096, ..Default::default() }),
            ..Default::default()
        }
    }

    fn value<'a>(text: &'a str, series: &str) -> Option<&'a str> {
        text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
    }

    #[test]
    fn the_series_carry_conventional_names_labels_and_values() {
        let live = Live::default();
        let text = render(&snapshot(), &live);
        let peer = "peer=\"10.0.0.2\",peer_as=\"65001\"";
        assert_eq!(value(&text, &format!("merle_bgp_session_established{{{peer}}}")), Some("1.0"), "{text}");
        assert_eq!(value(&text, &format!("merle_bgp_session_state{{{peer},state=\"Idle\"}}")), Some("0.0"));
        assert_eq!(value(&text, &format!("merle_bgp_session_flaps_total{{{peer}}}")), Some("2"));
        assert_eq!(value(&text, &format!("merle_bgp_messages_received_total{{{peer},type=\"update\"}}")), Some("7"));
        assert_eq!(value(&text, &format!("merle_bgp_prefixes_rejected_total{{{peer}}}")), Some("1"));
        assert_eq!(value(&text, "merle_rib_prefixes"), Some("12.0"), "no empty braces: {text}");
        assert_eq!(value(&text, "merle_fib_convergence_seconds{by=\"end_of_rib\"}"), Some("1.5"));
        assert_eq!(value(&text, "process_cpu_seconds_total"), Some("1.5"));
        assert_eq!(value(&text, "process_resident_memory_bytes"), Some("4096.0"));
        assert!(text.contains("# TYPE merle_bgp_session_flaps counter"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn cni_reports_are_checked_then_counted_and_timed() {
        let live = Live::default();
        let ok = CniCall { command: "ADD".into(), result: "ok".into(), seconds: 0.004, ipam_seconds: Some(0.001) };
        ok.check().unwrap();
        live.record_cni(&ok);
        live.record_cni(&CniCall { result: "code_11".into(), ipam_seconds: None, ..ok.clone() });
        let text = render(&Snapshot::default(), &live);
        assert_eq!(value(&text, "merle_cni_requests_total{command=\"ADD\",result=\"ok\"}"), Some("1"), "{text}");
        assert_eq!(value(&text, "merle_cni_requests_total{command=\"ADD\",result=\"code_11\"}"), Some("1"));
        assert_eq!(value(&text, "merle_cni_request_duration_seconds_count{command=\"ADD\"}"), Some("2"));
        assert_eq!(value(&text, "merle_ipam_allocation_duration_seconds_count"), Some("1"));
        for bad in [
            CniCall { command: "ADDX".into(), ..ok.clone() },
            CniCall { result: "fine".into(), ..ok.clone() },
            CniCall { result: "code_0".into(), ..ok.clone() },
            CniCall { seconds: f64::NAN, ..ok.clone() },
            CniCall { ipam_seconds: Some(-1.0), ..ok.clone() },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn proc_self_is_read_past_a_command_name_with_spaces() {
        let stat = "4242 (merled (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 150 50 0 0 20 0 3 0 1000 123456 789 18446744073709551615";
        let p = parse_stat(stat, 100.0, 4096, 1_700_000_000).unwrap();
        assert_eq!(p.cpu_seconds, 2.0);
        assert_eq!(p.threads, 3);
        assert_eq!(p.start_time_seconds, 1_700_000_010.0);
        assert_eq!((p.virtual_bytes, p.resident_bytes), (123456, 789 * 4096));
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
        assert_eq!(parse_max_fds(limits), Some(1024));
        assert!(read_process().is_some_and(|p| p.resident_bytes > 0 && p.open_fds > 0));
    }
}
