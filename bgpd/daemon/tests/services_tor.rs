//! Services from outside the cluster, through a routing FRR ToR: three
//! merle nodes, a client behind the ToR, backends on two nodes
//! (`testbed::lbbed`).
//!
//! ```text
//!   client 192.168.100.2 ── ToR ── n1 10.0.0.1 (pod a1: a client)
//!          fd00:100::2
//!                              ├── n2 10.0.0.2 (pod b1: a backend)
//!                              └── n3 10.0.0.3 (pod c1: a backend)
//!   web    10.96.0.10:80/tcp, NodePort 30080, LB 192.0.2.10 -> b1, c1 :8080
//!   dns    10.96.0.53:53/udp, NodePort 30053, LB 192.0.2.53 -> b1, c1 :5353
//!   long   10.96.0.90:9000/tcp,               LB 192.0.2.90 -> b1 :9000 (dsr)
//!   web6   [fd00:96::10]:80/tcp, NodePort 30080, LB fd00:192::10 -> b1, c1 :8080
//!   dns6   [fd00:96::53]:53/udp, NodePort 30053, LB fd00:192::53 -> b1, c1 :5353
//! ```
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use testbed::bpf::skip_unless_bpf;
use testbed::capture::Capture;
use testbed::datapath::Pod;
use testbed::echo::{ask_tcp, ask_udp, Conn, Echo, Stream};
use testbed::lbbed::{ServiceBed, CLIENT, CLIENT6};

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn backends(pods: &[&Pod], port: u16) -> String {
    pods.iter()
        .map(|p| format!("{{ address = \"{}\", port = {port}, node = \"n{}\" }}", p.v4, p.node + 1))
        .collect::<Vec<_>>()
        .join(", ")
}

fn services(mode: &str, web: &[&Pod], dns: &[&Pod], long: &[&Pod]) -> String {
    format!(
        "[service_ranges]\ncluster_ips = [\"10.96.0.0/16\"]\nload_balancer_ips = [\"192.0.2.0/24\"]\n\n\
         [[services]]\nname = \"web\"\nprotocol = \"tcp\"\ncluster_ip = \"10.96.0.10\"\nport = 80\nnode_port = 30080\n\
         load_balancer_ips = [\"192.0.2.10\"]\nmode = \"{mode}\"\nbackends = [{}]\n\n\
         [[services]]\nname = \"dns\"\nprotocol = \"udp\"\ncluster_ip = \"10.96.0.53\"\nport = 53\nnode_port = 30053\n\
         load_balancer_ips = [\"192.0.2.53\"]\nmode = \"{mode}\"\nbackends = [{}]\n\n\
         [[services]]\nname = \"long\"\nprotocol = \"tcp\"\ncluster_ip = \"10.96.0.90\"\nport = 9000\n\
         load_balancer_ips = [\"192.0.2.90\"]\nmode = \"dsr\"\nbackends = [{}]\n",
        backends(web, 8080),
        backends(dns, 5353),
        backends(long, 9000)
    )
}

fn backends6(pods: &[&Pod], port: u16) -> String {
    pods.iter()
        .map(|p| format!("{{ address = \"{}\", port = {port}, node = \"n{}\" }}", p.v6.as_ref().unwrap(), p.node + 1))
        .collect::<Vec<_>>()
        .join(", ")
}

fn services6(mode: &str, pods: &[&Pod]) -> String {
    format!(
        "[service_ranges]\ncluster_ips = [\"fd00:96::/112\"]\nload_balancer_ips = [\"fd00:192::/112\"]\n\n\
         [[services]]\nname = \"web\"\nprotocol = \"tcp\"\ncluster_ip = \"fd00:96::10\"\nport = 80\nnode_port = 30080\n\
         load_balancer_ips = [\"fd00:192::10\"]\nmode = \"{mode}\"\nbackends = [{}]\n\n\
         [[services]]\nname = \"dns\"\nprotocol = \"udp\"\ncluster_ip = \"fd00:96::53\"\nport = 53\nnode_port = 30053\n\
         load_balancer_ips = [\"fd00:192::53\"]\nmode = \"{mode}\"\nbackends = [{}]\n",
        backends6(pods, 8080),
        backends6(pods, 5353),
    )
}

/// Applies `toml` on every node and waits until each has it programmed
/// with `mode`.
fn apply(bed: &ServiceBed, toml: &str, web_dsr: bool) {
    apply_n(bed, toml, 3, web_dsr)
}

fn apply_n(bed: &ServiceBed, toml: &str, services: usize, web_dsr: bool) {
    let c = &bed.cluster;
    for i in 0..c.nodes.len() {
        c.set_services(i, toml).unwrap();
    }
    for i in 0..c.nodes.len() {
        c.wait_services(i, services).unwrap();
        testbed::wait::poll("the mode programmed", Duration::from_secs(20), || {
            let v = c.services(i).ok()?;
            let web = v.as_array()?.iter().find(|s| s["service"]["name"] == "web")?.clone();
            web["frontends"].as_array()?.iter().all(|f| f["dsr"] == web_dsr).then_some(())
        })
        .unwrap();
    }
}

/// `n` short connections from the client to `to`; each answered from
/// `to`; the peer address each backend saw; the servers that answered.
fn connections(bed: &ServiceBed, to: SocketAddr, n: usize, peer: IpAddr) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for i in 0..n {
        let a = ask_tcp(&bed.client, to).unwrap_or_else(|e| panic!("connection {i} of {n} to {to}: {e:#}"));
        assert_eq!(a.from, to);
        assert_eq!(a.peer.ip(), peer, "connection {i} to {to}: the address the backend saw");
        seen.insert(a.server);
    }
    seen
}

fn datagrams(bed: &ServiceBed, to: SocketAddr, n: usize, peer: IpAddr) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for i in 0..n {
        let a = ask_udp(&bed.client, to).unwrap_or_else(|e| panic!("datagram {i} to {to}: {e:#}"));
        assert_eq!(a.from, to, "the answer comes from the address asked");
        assert_eq!(a.peer.ip(), peer, "datagram {i} to {to}: the address the backend saw");
        seen.insert(a.server);
    }
    seen
}

/// The packets node `i` counted arriving for a service or a pod.
fn arrivals(bed: &ServiceBed, i: usize) -> u64 {
    ["redirect-fib", "redirect-neigh", "redirect-peer"].iter().map(|r| bed.cluster.counter(i, "node-ingress", r)).sum()
}

/// A long TCP stream from the client, echoing 16 KiB at a time until
/// stopped: the bytes echoed so far, and the first error.
struct LongFlow {
    stop: Arc<AtomicBool>,
    bytes: Arc<AtomicU64>,
    handle: std::thread::JoinHandle<Result<(), String>>,
}

impl LongFlow {
    fn start(bed: &ServiceBed, to: SocketAddr) -> Self {
        let mut conn = Conn::open(&bed.client, to).unwrap();
        let (stop, bytes) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let (s, b) = (stop.clone(), bytes.clone());
        let handle = std::thread::spawn(move || {
            let chunk: Vec<u8> = (0..16384u32).map(|i| i as u8).collect();
            while !s.load(Ordering::Relaxed) {
                conn.echo(&chunk).map_err(|e| format!("{e:#}"))?;
                b.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(())
        });
        Self { stop, bytes, handle }
    }
    fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
    /// Waits until `more` bytes beyond now have been echoed.
    fn progresses(&self, what: &str) {
        let from = self.bytes();
        testbed::wait::poll(what, Duration::from_secs(20), || (self.bytes() > from + 65536).then_some(())).unwrap();
    }
    fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap().unwrap();
    }
}

#[test]
#[ignore = "needs root and BPF: the test command runs it with --include-ignored"]
fn nodeport_and_load_balancer_ips_from_behind_the_tor_in_each_mode() {
    if skip_unless_bpf("services_from_behind_the_tor") {
        return;
    }
    let mut bed = ServiceBed::new("lbt", 3).unwrap();
    let a1 = bed.cluster.add_pod(0, "lbta1").unwrap();
    let b1 = bed.cluster.add_pod(1, "lbtb1").unwrap();
    let c1 = bed.cluster.add_pod(2, "lbtc1").unwrap();
    let mut servers = Vec::new();
    for (p, name) in [(&b1, "b1"), (&c1, "c1")] {
        servers.push(Echo::tcp(&p.ns, sa("0.0.0.0:8080"), name).unwrap());
        servers.push(Echo::udp(&p.ns, sa("0.0.0.0:5353"), name).unwrap());
    }
    let _long = [
        Stream::start(&b1.ns, sa("0.0.0.0:9000"), "b1").unwrap(),
        Stream::start(&c1.ns, sa("0.0.0.0:9000"), "c1").unwrap(),
    ];
    let client: IpAddr = CLIENT.parse().unwrap();
    let n1: IpAddr = "10.0.0.1".parse().unwrap();
    let both: BTreeSet<String> = ["b1", "c1"].map(String::from).into();

    apply(&bed, &services("dsr", &[&b1, &c1], &[&b1, &c1], &[&b1]), true);
    bed.wait_ecmp("192.0.2.0/24", 3).unwrap();

    // DSR: the backend sees the client; no reply crosses n1.
    let cap = Capture::start(bed.cluster.ns(0), "eth0", "tcp src port 30080 or udp src port 30053").unwrap();
    assert_eq!(connections(&bed, sa("10.0.0.1:30080"), 1000, client), both, "1000 connections by DSR");
    assert_eq!(datagrams(&bed, sa("10.0.0.1:30053"), 50, client), both, "UDP by DSR");
    assert!(cap.times().is_empty(), "DSR: replies must not cross n1, {} did", cap.times().len());
    cap.stop();
    assert_eq!(connections(&bed, sa("192.0.2.10:80"), 200, client), both, "the LB IP over ECMP, by DSR");
    assert_eq!(datagrams(&bed, sa("192.0.2.53:53"), 30, client), both);
    // Pods reach the same service through its ClusterIP, across nodes.
    let own: IpAddr = a1.v4.parse().unwrap();
    for _ in 0..20 {
        let a = ask_tcp(&a1.ns, sa("10.96.0.10:80")).unwrap();
        assert_eq!((a.from, a.peer.ip()), (sa("10.96.0.10:80"), own));
    }

    // SNAT: the backend sees n1, replies come back through it.
    apply(&bed, &services("snat", &[&b1, &c1], &[&b1, &c1], &[&b1]), false);
    assert_eq!(connections(&bed, sa("10.0.0.1:30080"), 1000, n1), both, "1000 connections by SNAT");
    assert_eq!(datagrams(&bed, sa("10.0.0.1:30053"), 50, n1), both, "UDP by SNAT");

    // Hybrid: TCP by DSR, UDP by SNAT.
    apply(&bed, &services("hybrid", &[&b1, &c1], &[&b1, &c1], &[&b1]), true);
    assert_eq!(connections(&bed, sa("10.0.0.1:30080"), 1000, client), both, "1000 connections, hybrid");
    assert_eq!(datagrams(&bed, sa("10.0.0.1:30053"), 50, n1), both, "UDP by SNAT in hybrid mode");

    // A long flow to the LB IP survives the ToR losing the path to the
    // node that carried it: another node picks the same backend.
    let flow = LongFlow::start(&bed, sa("192.0.2.90:9000"));
    flow.progresses("the long flow runs");
    let before: Vec<u64> = (0..3).map(|i| arrivals(&bed, i)).collect();
    flow.progresses("the long flow runs on");
    let rise: Vec<u64> = (0..3).map(|i| arrivals(&bed, i) - before[i]).collect();
    let carrier = (0..3).max_by_key(|i| rise[*i]).unwrap();
    bed.tor_shutdown(carrier, true).unwrap();
    bed.wait_ecmp("192.0.2.0/24", 2).unwrap();
    let after: Vec<u64> = (0..3).map(|i| arrivals(&bed, i)).collect();
    flow.progresses("the long flow after its node lost the ToR's path");
    let moved = (0..3).filter(|i| *i != carrier).any(|i| arrivals(&bed, i) > after[i] + 5);
    assert!(moved, "another node carries the flow now (rises {rise:?})");

    // Restarting merled keeps the established flows (the maps are pinned).
    for i in 0..3 {
        bed.cluster.restart(i).unwrap();
        flow.progresses(&format!("the long flow across a restart of n{}", i + 1));
    }
    flow.finish();
    bed.tor_shutdown(carrier, false).unwrap();

    // A backend removed: flows on the other one go on; added back: the
    // existing flows stay, new ones reach both.
    apply(&bed, &services("dsr", &[&b1, &c1], &[&b1, &c1], &[&b1, &c1]), true);
    let mut conns: Vec<Conn> = (0..30).map(|_| Conn::open(&bed.client, sa("192.0.2.90:9000")).unwrap()).collect();
    assert!(conns.iter().any(|c| c.server == "b1"));
    let on_b1: Vec<usize> = (0..conns.len()).filter(|i| conns[*i].server == "b1").collect();
    apply(&bed, &services("dsr", &[&b1, &c1], &[&b1, &c1], &[&b1]), true);
    for i in &on_b1 {
        conns[*i].echo(b"still here").unwrap_or_else(|e| panic!("a flow on b1 broke when c1 left: {e:#}"));
    }
    drop(servers);
    for p in [&a1, &b1, &c1] {
        bed.cluster.del_pod(p).unwrap();
    }
}

/// The ToR's BGP next hops for `prefix`.
fn tor_hops(bed: &ServiceBed, prefix: &str) -> BTreeSet<String> {
    let v = bed.tor.json(&format!("show bgp ipv4 unicast {prefix} json")).unwrap_or_default();
    v["paths"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["nexthops"][0]["ip"].as_str().map(String::from))
        .collect()
}

fn local_service(pods: &[&Pod]) -> String {
    format!(
        "[service_ranges]\ncluster_ips = [\"10.96.0.0/16\"]\nload_balancer_ips = [\"192.0.2.0/24\"]\n\n\
         [[services]]\nname = \"loc\"\nprotocol = \"tcp\"\ncluster_ip = \"10.96.0.20\"\nport = 80\n\
         load_balancer_ips = [\"192.0.2.20\"]\nexternal_traffic_policy = \"Local\"\nmode = \"dsr\"\nbackends = [{}]\n",
        backends(pods, 8080)
    )
}

#[test]
#[ignore = "needs root and BPF: the test command runs it with --include-ignored"]
fn local_policy_vips_come_only_from_nodes_with_a_backend_and_go_when_it_goes() {
    if skip_unless_bpf("local_policy_vips") {
        return;
    }
    let bed = ServiceBed::new("lbl", 3).unwrap();
    let b1 = bed.cluster.add_pod(1, "lblb1").unwrap();
    let c1 = bed.cluster.add_pod(2, "lblc1").unwrap();
    let _servers =
        [Echo::tcp(&b1.ns, sa("0.0.0.0:8080"), "b1").unwrap(), Echo::tcp(&c1.ns, sa("0.0.0.0:8080"), "c1").unwrap()];
    let set = |pods: &[&Pod]| {
        for i in 0..3 {
            bed.cluster.set_services(i, &local_service(pods)).unwrap();
        }
    };
    let hops = |want: &[&str]| {
        let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
        testbed::wait::poll(&format!("192.0.2.20/32 from {want:?}"), Duration::from_secs(30), || {
            (tor_hops(&bed, "192.0.2.20/32") == want).then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}: {:?}", tor_hops(&bed, "192.0.2.20/32")));
    };
    set(&[&b1]);
    hops(&["10.0.0.2"]);
    // zebra installs what bgpd chose a moment later: the ToR's kernel too.
    bed.wait_ecmp("192.0.2.20/32", 1).unwrap();
    let client: IpAddr = CLIENT.parse().unwrap();
    let only_b1: BTreeSet<String> = ["b1"].map(String::from).into();
    assert_eq!(
        connections(&bed, sa("192.0.2.20:80"), 50, client),
        only_b1,
        "Local: n2's backend, the client's address"
    );
    set(&[&b1, &c1]);
    hops(&["10.0.0.2", "10.0.0.3"]);
    bed.wait_ecmp("192.0.2.20/32", 2).unwrap();
    // n2 loses its last backend of the service: its /32 goes. SIGHUP, so
    // that the time is the withdrawal's, not the file poll's.
    set(&[&c1]);
    let t = std::time::Instant::now();
    let pid = bed.cluster.nodes[1].merled.daemon.pid().unwrap().to_string();
    std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    hops(&["10.0.0.3"]);
    let took = t.elapsed();
    assert!(took < Duration::from_secs(1), "withdrawn in {took:?}");
    println!("the /32 of a node without a local backend left the ToR in {took:?}");
    let only_c1: BTreeSet<String> = ["c1"].map(String::from).into();
    bed.wait_ecmp("192.0.2.20/32", 1).unwrap();
    assert_eq!(connections(&bed, sa("192.0.2.20:80"), 50, client), only_c1);
    for p in [&b1, &c1] {
        bed.cluster.del_pod(p).unwrap();
    }
}

#[test]
#[ignore = "needs root and BPF: the test command runs it with --include-ignored"]
fn ipv6_nodeport_and_load_balancer_ips_from_behind_the_tor_by_dsr_and_snat() {
    if skip_unless_bpf("ipv6_services_from_behind_the_tor") {
        return;
    }
    let bed = ServiceBed::new("lb6", 3).unwrap();
    let b1 = bed.cluster.add_pod(1, "lb6b1").unwrap();
    let c1 = bed.cluster.add_pod(2, "lb6c1").unwrap();
    let mut servers = Vec::new();
    for (p, name) in [(&b1, "b1"), (&c1, "c1")] {
        servers.push(Echo::tcp(&p.ns, sa("[::]:8080"), name).unwrap());
        servers.push(Echo::udp(&p.ns, sa("[::]:5353"), name).unwrap());
    }
    let client: IpAddr = CLIENT6.parse().unwrap();
    let n1: IpAddr = "fd00::1".parse().unwrap();
    let both: BTreeSet<String> = ["b1", "c1"].map(String::from).into();

    // DSR: the destination options header; the backend sees the client.
    apply_n(&bed, &services6("dsr", &[&b1, &c1]), 2, true);
    bed.wait_ecmp("fd00:192::/112", 3).unwrap();
    let cap = Capture::start(bed.cluster.ns(0), "eth0", "ip6 and (tcp src port 30080 or udp src port 30053)").unwrap();
    assert_eq!(connections(&bed, sa("[fd00::1]:30080"), 300, client), both, "IPv6 connections by DSR");
    assert_eq!(datagrams(&bed, sa("[fd00::1]:30053"), 30, client), both, "IPv6 UDP by DSR");
    assert!(cap.times().is_empty(), "DSR: replies must not cross n1, {} did", cap.times().len());
    cap.stop();
    assert_eq!(connections(&bed, sa("[fd00:192::10]:80"), 100, client), both, "the IPv6 LB IP over ECMP");
    assert_eq!(datagrams(&bed, sa("[fd00:192::53]:53"), 20, client), both);

    // SNAT: the backend sees n1's IPv6 address.
    apply_n(&bed, &services6("snat", &[&b1, &c1]), 2, false);
    assert_eq!(connections(&bed, sa("[fd00::1]:30080"), 300, n1), both, "IPv6 connections by SNAT");
    assert_eq!(datagrams(&bed, sa("[fd00::1]:30053"), 30, n1), both, "IPv6 UDP by SNAT");
    drop(servers);
    for p in [&b1, &c1] {
        bed.cluster.del_pod(p).unwrap();
    }
}
