//! Services in the programs, with BPF_PROG_TEST_RUN on crafted TCP and UDP
//! packets: ClusterIP translation from pods, the reverse on the way back
//! in, Maglev as the C side reads the table the Rust side built, and what
//! conntrack keeps when backends come and go. The namespace is
//! `testbed::bpf::prog_net`'s (pod0 10.1.0.5, pod1 10.1.0.6 on this node;
//! 10.99.0.0/24 behind up0).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::IpAddr;

use merle_ebpf::datapath::{load, AttachMode, Linker};
use merle_ebpf::endpoints::Endpoints;
use merle_ebpf::metrics::Metrics;
use merle_ebpf::objects;
use merle_ebpf::services::Services;
use merle_ebpf::types::{EndpointInfo, Hook, Reason};

const M: u32 = merle_lb::maglev::DEFAULT_SIZE;
use merle_ebpf::PinDir;
use merle_lb::plan::{plan, Frontend, Plan, Target};
use merle_lb::service::{Backend, Mode, Protocol, Service, TrafficPolicy};
use testbed::bpf::packet::{self, ACK, L4, SYN, TCP};
use testbed::bpf::{mac_of, prog_net, skip_unless_bpf, BpfFs};
use testbed::netns::Netns;

const TC_ACT_SHOT: u32 = 2;
const TC_ACT_REDIRECT: u32 = 7;
const POD_MAC: [u8; 6] = [0x0a, 0x58, 10, 1, 0, 5];
const POD1_MAC: [u8; 6] = [0x0a, 0x58, 10, 1, 0, 6];
const NODE_MAC: [u8; 6] = [0xee; 6];

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

struct Bed {
    pins: PinDir,
    pod: Linker,
    node: Linker,
    metrics: Metrics,
    p0: u32,
    p1: u32,
    up: u32,
    up_mac: [u8; 6],
}

impl Bed {
    fn run(&self, l: &Linker, ifindex: u32, pkt: &[u8], verdict: u32, hook: Hook, reason: Reason) -> Vec<u8> {
        let before = self.metrics.get(hook, reason).packets;
        let r = l.test_run(pkt, ifindex, 1).unwrap();
        assert_eq!(r.retval, verdict, "verdict (reason wanted: {})", reason.name());
        let counted: Vec<&str> =
            Reason::ALL.iter().filter(|r| self.metrics.get(hook, **r).packets != 0).map(|r| r.name()).collect();
        assert_eq!(
            self.metrics.get(hook, reason).packets,
            before + 1,
            "counter {} (counted: {counted:?})",
            reason.name()
        );
        r.data
    }
    /// A packet pod0 sends; the frame as it would leave.
    fn pod0_sends(&self, p: L4, reason: Reason) -> Vec<u8> {
        let pkt = packet::l4(NODE_MAC, POD_MAC, p);
        self.run(&self.pod, self.p0, &pkt, TC_ACT_REDIRECT, Hook::PodIngress, reason)
    }
    fn services(&self) -> Services {
        Services::open(&self.pins).unwrap()
    }
    fn program(&self, services: &[Service]) -> Plan {
        let p = plan(services, "n1", &[ip("192.0.2.1")]);
        self.services().sync(&p).unwrap();
        p
    }
}

fn with_bed(test: &str, f: impl FnOnce(&Bed) + Send + 'static) {
    if skip_unless_bpf(test) {
        return;
    }
    let fs = BpfFs::new(test).unwrap();
    let pins = PinDir::new(fs.pin_dir());
    let ns = Netns::new("svc").unwrap();
    prog_net(&ns).unwrap();
    let up_mac = mac_of(&ns, "up0").unwrap();
    let h = ns
        .spawn(move || {
            load(&pins, &objects::PROGRAMS, &objects::digest()).unwrap();
            let pod = Linker::open(&pins, AttachMode::Tcx, &objects::POD_INGRESS).unwrap();
            let node = Linker::open(&pins, AttachMode::Tcx, &objects::NODE_INGRESS).unwrap();
            let metrics = Metrics::open(&pins).unwrap();
            let (p0, p1, up) =
                (merle_ebpf::sys::ifindex("pod0"), merle_ebpf::sys::ifindex("pod1"), merle_ebpf::sys::ifindex("up0"));
            let mut eps = Endpoints::open(&pins).unwrap();
            let ep = |ifindex, pod_mac| EndpointInfo { ifindex, pod_mac, node_mac: NODE_MAC, flags: 0, pad: 0 };
            eps.put(ip("10.1.0.5"), ep(p0, POD_MAC)).unwrap();
            eps.put(ip("10.1.0.6"), ep(p1, POD1_MAC)).unwrap();
            eps.put(ip("fd00:1::5"), ep(p0, POD_MAC)).unwrap();
            eps.put(ip("fd00:1::6"), ep(p1, POD1_MAC)).unwrap();
            drop(eps);
            f(&Bed { pins, pod, node, metrics, p0, p1, up, up_mac });
        })
        .unwrap();
    let r = h.join();
    drop(ns);
    drop(fs);
    match r {
        Ok(r) => r.unwrap(),
        Err(p) => std::panic::resume_unwind(p),
    }
}

fn service(name: &str, vip: &str, port: u16, protocol: Protocol, backends: &[(&str, u16)]) -> Service {
    Service {
        name: name.into(),
        protocol,
        cluster_ip: ip(vip),
        port,
        node_port: None,
        external_ips: vec![],
        load_balancer_ips: vec![],
        external_traffic_policy: TrafficPolicy::Cluster,
        mode: Mode::Snat,
        backends: backends.iter().map(|(a, p)| Backend { address: ip(a), port: *p, node: "n1".into() }).collect(),
    }
}

/// The backend the datapath must pick for a new flow: the slot of the
/// flow's hash in the table merle-lb builds for these targets.
fn expected(targets: &[Target], src: IpAddr, sport: u16, vip: IpAddr, port: u16, proto: u8) -> Target {
    expected_in(M, targets, src, sport, vip, port, proto)
}

fn expected_in(m: u32, targets: &[Target], src: IpAddr, sport: u16, vip: IpAddr, port: u16, proto: u8) -> Target {
    let keys: Vec<Vec<u8>> = targets.iter().map(Target::maglev_key).collect();
    let t = merle_lb::maglev::table(&keys, m).unwrap();
    let h = merle_lb::flow::flow_hash(src, sport, vip, port, proto);
    targets[t[(h % m) as usize] as usize]
}

#[test]
#[ignore = "needs root and BPF: the test command runs it with --include-ignored"]
fn a_pod_to_a_cluster_ip_goes_to_the_backend_maglev_picks_with_checksums_right() {
    with_bed("svc_dnat", |b| {
        let s = service("web", "10.100.0.10", 80, Protocol::Tcp, &[("10.1.0.6", 8080), ("10.99.0.7", 8080)]);
        let p = b.program(&[s]);
        let targets = p.tables.values().next().unwrap().clone();
        // The map holds the table merle-lb built, slot for slot.
        let svcs = b.services();
        let prog = svcs.programmed();
        assert_eq!(prog.len(), 1);
        let ids: BTreeMap<u32, Target> = prog[0].backends.iter().copied().collect();
        assert_eq!(prog[0].maglev_m, M);
        let held = svcs.table(prog[0].lb_id, M).unwrap();
        let keys: Vec<Vec<u8>> = targets.iter().map(Target::maglev_key).collect();
        let built = merle_lb::maglev::table(&keys, M).unwrap();
        assert_eq!(held.len(), built.len());
        assert!(held.iter().zip(&built).all(|(id, i)| ids[id] == targets[*i as usize]), "the map is the Rust table");

        let (vip, client) = (ip("10.100.0.10"), ip("10.1.0.5"));
        let mut seen: BTreeMap<Target, u32> = BTreeMap::new();
        for sport in 40000..40200u16 {
            let want = expected(&targets, client, sport, vip, 80, TCP);
            let local = want.address == ip("10.1.0.6");
            let reason = if local { Reason::RedirectPeer } else { Reason::RedirectFib };
            let out = b.pod0_sends(L4::tcp(client, sport, vip, 80, SYN), reason);
            let (s, sp, d, dp) = packet::l4_tuple(&out);
            assert_eq!((s, sp), (client, sport), "the source is kept");
            assert_eq!(Target { address: d, port: dp }, want, "flow {sport}: the backend of the flow's slot");
            assert!(packet::ipv4_csum_ok(&out), "IPv4 checksum");
            assert!(packet::l4_csum_ok(&out), "TCP checksum after DNAT");
            *seen.entry(want).or_default() += 1;
            // The next segment of the flow takes the same backend.
            let again = b.pod0_sends(L4::tcp(client, sport, vip, 80, ACK), reason);
            assert_eq!(packet::l4_tuple(&again).2, d);
        }
        assert_eq!(seen.len(), 2, "both backends get flows: {seen:?}");
        assert!(seen.values().all(|n| *n > 60), "roughly even: {seen:?}");
        assert_eq!(svcs.flows(), 400, "a CT_SERVICE and a CT_REPLY entry per flow");

        // Other table sizes, smaller and larger: the C side reads each the
        // way the Rust side built it, new flows by the new table.
        let s = service("web", "10.100.0.10", 80, Protocol::Tcp, &[("10.1.0.6", 8080), ("10.99.0.7", 8080)]);
        for (m, from) in [(251u32, 45000u16), (65521, 46000)] {
            let mut p = plan(std::slice::from_ref(&s), "n1", &[ip("192.0.2.1")]);
            p.maglev_size = m;
            let d = b.services().sync(&p).unwrap();
            assert_eq!(d.tables_written, 1, "size {m}: the table is rebuilt");
            let prog = b.services().programmed();
            assert_eq!(prog[0].maglev_m, m);
            assert_eq!(b.services().table(prog[0].lb_id, m).unwrap().len(), m as usize);
            for sport in from..from + 100 {
                let want = expected_in(m, &targets, client, sport, vip, 80, TCP);
                let reason = if want.address == ip("10.1.0.6") { Reason::RedirectPeer } else { Reason::RedirectFib };
                let out = b.pod0_sends(L4::tcp(client, sport, vip, 80, SYN), reason);
                assert_eq!(packet::l4_tuple(&out).2, want.address, "size {m}, flow {sport}");
            }
        }
    });
}

#[test]
#[ignore = "needs root and BPF: the test command runs it with --include-ignored"]
fn replies_are_translated_back_to_the_cluster_ip_on_the_way_into_the_client() {
    with_bed("svc_rev", |b| {
        let tcp = service("web", "10.100.0.10", 80, Protocol::Tcp, &[("10.1.0.6", 8080)]);
        let udp = service("dns", "10.100.0.53", 53, Protocol::Udp, &[("10.99.0.7", 5353)]);
        let v6 = service("web6", "fd00:100::10", 80, Protocol::Tcp, &[("fd00:1::6", 8080)]);
        b.program(&[tcp, udp, v6]);
        let (client, client6) = (ip("10.1.0.5"), ip("fd00:1::5"));

        // TCP, local backend: the reply comes from pod1 through its veth.
        let out = b.pod0_sends(L4::tcp(client, 41000, ip("10.100.0.10"), 80, SYN), Reason::RedirectPeer);
        assert_eq!(packet::l4_tuple(&out), (client, 41000, ip("10.1.0.6"), 8080));
        let reply = packet::l4(NODE_MAC, POD1_MAC, L4::tcp(ip("10.1.0.6"), 8080, client, 41000, SYN | ACK));
        let back = b.run(&b.pod, b.p1, &reply, TC_ACT_REDIRECT, Hook::PodIngress, Reason::RedirectPeer);
        assert_eq!(packet::l4_tuple(&back), (ip("10.100.0.10"), 80, client, 41000), "from the ClusterIP");
        assert!(packet::ipv4_csum_ok(&back) && packet::l4_csum_ok(&back));

        // UDP, remote backend: the reply arrives on the uplink.
        let out = b.pod0_sends(L4::udp(client, 41001, ip("10.100.0.53"), 53), Reason::RedirectFib);
        assert_eq!(packet::l4_tuple(&out), (client, 41001, ip("10.99.0.7"), 5353));
        assert!(packet::l4_csum_ok(&out), "UDP checksum after DNAT");
        let reply = packet::l4(b.up_mac, [2; 6], L4::udp(ip("10.99.0.7"), 5353, client, 41001));
        let back = b.run(&b.node, b.up, &reply, TC_ACT_REDIRECT, Hook::NodeIngress, Reason::RedirectPeer);
        assert_eq!(packet::l4_tuple(&back), (ip("10.100.0.53"), 53, client, 41001));
        assert!(packet::ipv4_csum_ok(&back) && packet::l4_csum_ok(&back));

        // IPv6.
        let out = b.pod0_sends(L4::tcp(client6, 41002, ip("fd00:100::10"), 80, SYN), Reason::RedirectPeer);
        assert_eq!(packet::l4_tuple(&out), (client6, 41002, ip("fd00:1::6"), 8080));
        assert!(packet::l4_csum_ok(&out), "TCP over IPv6 checksum after DNAT");
        let reply = packet::l4(NODE_MAC, POD1_MAC, L4::tcp(ip("fd00:1::6"), 8080, client6, 41002, SYN | ACK));
        let back = b.run(&b.pod, b.p1, &reply, TC_ACT_REDIRECT, Hook::PodIngress, Reason::RedirectPeer);
        assert_eq!(packet::l4_tuple(&back), (ip("fd00:100::10"), 80, client6, 41002));
        assert!(packet::l4_csum_ok(&back));

        // A packet between the same pods that is not a reply stays as it is.
        let plain = packet::l4(NODE_MAC, POD1_MAC, L4::tcp(ip("10.1.0.6"), 9999, client, 41000, ACK));
        let out = b.run(&b.pod, b.p1, &plain, TC_ACT_REDIRECT, Hook::PodIngress, Reason::RedirectPeer);
        assert_eq!(packet::l4_tuple(&out), (ip("10.1.0.6"), 9999, client, 41000));
    });
}

#[test]
#[ignore = "needs root and BPF: the test command runs it with --include-ignored"]
fn removing_a_backend_moves_only_its_flows_and_adding_one_takes_new_flows_only() {
    with_bed("svc_churn", |b| {
        let three = [("10.99.0.7", 80), ("10.99.0.8", 80), ("10.99.0.9", 80)];
        b.program(&[service("web", "10.100.0.10", 80, Protocol::Tcp, &three)]);
        let (vip, client) = (ip("10.100.0.10"), ip("10.1.0.5"));
        let flow = |sport: u16| {
            let out = b.pod0_sends(L4::tcp(client, sport, vip, 80, ACK), Reason::RedirectFib);
            packet::l4_tuple(&out).2
        };
        let before: Vec<IpAddr> = (42000..42300).map(flow).collect();
        let gone = ip("10.99.0.8");
        let s = b.program(&[service("web", "10.100.0.10", 80, Protocol::Tcp, &[three[0], three[2]])]);
        let targets = s.tables.values().next().unwrap().clone();
        let mut moved = 0;
        for (i, sport) in (42000..42300).enumerate() {
            let now = flow(sport);
            if before[i] == gone {
                moved += 1;
                assert_eq!(now, expected(&targets, client, sport, vip, 80, TCP).address, "moved by the new table");
            } else {
                assert_eq!(now, before[i], "flow {sport} was not on the removed backend and stays");
            }
        }
        assert!(moved > 50, "the removed backend had flows: {moved}");

        // A fourth backend: every existing flow stays; new flows follow
        // the new table, and some of them go to it.
        let four = [three[0], three[2], ("10.99.0.10", 80)];
        let s = b.program(&[service("web", "10.100.0.10", 80, Protocol::Tcp, &four)]);
        let targets = s.tables.values().next().unwrap().clone();
        let kept: Vec<IpAddr> = (42000..42300).map(flow).collect();
        for (i, sport) in (42000..42300).enumerate() {
            if before[i] != gone {
                assert_eq!(kept[i], before[i], "flow {sport} stays on its backend");
            }
        }
        let fresh: Vec<IpAddr> = (43000..43300).map(flow).collect();
        assert!(fresh.contains(&ip("10.99.0.10")), "new flows reach the new backend");
        for (i, sport) in (43000..43300).enumerate() {
            assert_eq!(fresh[i], expected(&targets, client, sport, vip, 80, TCP).address);
        }
    });
}

#[test]
#[ignore = "needs root and BPF: the test command runs it with --include-ignored"]
fn a_service_without_backends_is_dropped_and_a_pod_reaches_a_service_it_backs_itself() {
    with_bed("svc_drop", |b| {
        b.program(&[
            service("empty", "10.100.0.1", 80, Protocol::Tcp, &[]),
            service("self", "10.100.0.2", 80, Protocol::Udp, &[("10.1.0.5", 8080)]),
        ]);
        let pkt = packet::l4(NODE_MAC, POD_MAC, L4::tcp(ip("10.1.0.5"), 1234, ip("10.100.0.1"), 80, SYN));
        b.run(&b.pod, b.p0, &pkt, TC_ACT_SHOT, Hook::PodIngress, Reason::DropNoBackend);
        // A pod to a service it backs itself: into the pod again from
        // 169.254.42.1, and its reply back to it from the ClusterIP.
        let pkt = packet::l4(NODE_MAC, POD_MAC, L4::udp(ip("10.1.0.5"), 1234, ip("10.100.0.2"), 80));
        let out = b.run(&b.pod, b.p0, &pkt, TC_ACT_REDIRECT, Hook::PodIngress, Reason::RedirectPeer);
        assert_eq!(packet::l4_tuple(&out), (ip("169.254.42.1"), 1234, ip("10.1.0.5"), 8080));
        assert!(packet::ipv4_csum_ok(&out) && packet::l4_csum_ok(&out));
        let reply = packet::l4(NODE_MAC, POD_MAC, L4::udp(ip("10.1.0.5"), 8080, ip("169.254.42.1"), 1234));
        let back = b.run(&b.pod, b.p0, &reply, TC_ACT_REDIRECT, Hook::PodIngress, Reason::RedirectPeer);
        assert_eq!(packet::l4_tuple(&back), (ip("10.100.0.2"), 80, ip("10.1.0.5"), 1234), "from the ClusterIP");
        assert!(packet::ipv4_csum_ok(&back) && packet::l4_csum_ok(&back));
        assert_eq!(&back[0..6], &POD_MAC);
        // IPv6: from 100::42:1, the discard-only prefix's.
        b.program(&[
            service("empty", "10.100.0.1", 80, Protocol::Tcp, &[]),
            service("self", "10.100.0.2", 80, Protocol::Udp, &[("10.1.0.5", 8080)]),
            service("self6", "fd00:100::2", 80, Protocol::Udp, &[("fd00:1::5", 8080)]),
        ]);
        let pkt = packet::l4(NODE_MAC, POD_MAC, L4::udp(ip("fd00:1::5"), 1234, ip("fd00:100::2"), 80));
        let out = b.run(&b.pod, b.p0, &pkt, TC_ACT_REDIRECT, Hook::PodIngress, Reason::RedirectPeer);
        assert_eq!(packet::l4_tuple(&out), (ip("100::42:1"), 1234, ip("fd00:1::5"), 8080));
        assert!(packet::l4_csum_ok(&out));
        assert_eq!(&out[0..6], &POD_MAC);
        let reply = packet::l4(NODE_MAC, POD_MAC, L4::udp(ip("fd00:1::5"), 8080, ip("100::42:1"), 1234));
        let back = b.run(&b.pod, b.p0, &reply, TC_ACT_REDIRECT, Hook::PodIngress, Reason::RedirectPeer);
        assert_eq!(packet::l4_tuple(&back), (ip("fd00:100::2"), 80, ip("fd00:1::5"), 1234), "from the ClusterIP");
        assert!(packet::l4_csum_ok(&back));
        // A packet of a pod's to itself by any other way is not turned
        // back into it.
        let own = packet::l4(NODE_MAC, POD_MAC, L4::udp(ip("fd00:1::5"), 1235, ip("fd00:1::5"), 8080));
        b.run(&b.pod, b.p0, &own, 0, Hook::PodIngress, Reason::PassHairpin);
        // Another port of the same address is no service: routed as before.
        let pkt = packet::l4(NODE_MAC, POD_MAC, L4::udp(ip("10.1.0.5"), 1234, ip("10.100.0.2"), 81));
        let r = b.pod.test_run(&pkt, b.p0, 1).unwrap();
        assert_ne!(r.retval, TC_ACT_SHOT);
        assert_eq!(packet::l4_tuple(&r.data).2, ip("10.100.0.2"));
    });
}

#[test]
#[ignore = "needs root and BPF: the test command runs it with --include-ignored"]
fn a_second_sync_changes_nothing_and_ids_survive_reopening_the_maps() {
    with_bed("svc_sync", |b| {
        let set = vec![
            service("a", "10.100.0.1", 80, Protocol::Tcp, &[("10.99.0.7", 80), ("10.99.0.8", 80)]),
            service("b", "10.100.0.2", 53, Protocol::Udp, &[("10.99.0.7", 53)]),
        ];
        let p = plan(&set, "n1", &[]);
        let first = b.services().sync(&p).unwrap();
        assert_eq!((first.frontends_put, first.tables_written, first.backends_put), (2, 2, 3));
        let before = b.services().programmed();
        let again = b.services().sync(&p).unwrap();
        assert!(!again.changed(), "nothing to do: {again:?}");
        // A sync cut short leaves its mark: the next one rebuilds every
        // table, even where the backends look the same.
        b.services().mark_syncing().unwrap();
        let redo = b.services().sync(&p).unwrap();
        assert_eq!(redo.tables_written, 2, "{redo:?}");
        assert!(!b.services().sync(&p).unwrap().changed(), "and then nothing again");
        assert_eq!(b.services().programmed(), before, "same ids, same entries");
        // Changing one service rewrites that one only.
        let mut set2 = set.clone();
        set2[1].backends.push(Backend { address: ip("10.99.0.9"), port: 53, node: "n2".into() });
        let d = b.services().sync(&plan(&set2, "n1", &[])).unwrap();
        assert_eq!((d.tables_written, d.backends_put, d.frontends_put), (1, 1, 1), "{d:?}");
        let after = b.services().programmed();
        let a = |v: &[merle_ebpf::services::Programmed]| v.iter().find(|f| f.frontend.port == 80).cloned().unwrap();
        assert_eq!(a(&after), a(&before), "service a untouched");
        // Everything removed: the maps are empty and the programs skip.
        let d = b.services().sync(&Plan::default()).unwrap();
        assert_eq!((d.frontends_removed, d.tables_removed, d.backends_removed), (2, 2, 4));
        assert!(b.services().programmed().is_empty());
        // The same set again gets ids never given before: conntrack entries
        // of the removed ones cannot name the new ones.
        b.services().sync(&plan(&set2, "n1", &[])).unwrap();
        let again = b.services().programmed();
        assert_eq!(again.len(), after.len());
        for f in &again {
            assert!(f.lb_id > after.iter().map(|x| x.lb_id).max().unwrap(), "table ids are not reused");
            assert!(f.rev_nat > after.iter().map(|x| x.rev_nat).max().unwrap(), "rev-NAT ids are not reused");
            for (id, _) in &f.backends {
                assert!(after.iter().all(|x| x.backends.iter().all(|(o, _)| id > o)), "backend ids are not reused");
            }
        }
        b.services().sync(&Plan::default()).unwrap();
        let f = Frontend { address: ip("10.100.0.1"), port: 80, protocol: Protocol::Tcp };
        assert_eq!(f.to_string(), "10.100.0.1:80/tcp");
    });
}

// From outside: the node program on up0 (this node is 192.0.2.1 and
// fd00:2::1; clients and remote backends are behind 192.0.2.2).

const VIP: &str = "192.0.2.80";
const VIP6: &str = "fd00:2::80";

fn outside(name: &str, vip: &str, protocol: Protocol, mode: Mode, backends: &[(&str, u16)]) -> Service {
    let mut s = service(name, if vip.contains(':') { "fd00:100::1" } else { "10.100.0.1" }, 80, protocol, backends);
    s.load_balancer_ips = vec![ip(vip)];
    s.node_port = Some(30080);
    s.mode = mode;
    s
}

impl Bed {
    fn program_outside(&self, services: &[Service]) {
        let p = plan(services, "n1", &[ip("192.0.2.1"), ip("fd00:2::1")]);
        self.services().sync(&p).unwrap();
    }
    /// A packet arriving on up0; the frame as it would leave.
    fn arrives(&self, p: L4, verdict: u32, reason: Reason) -> Vec<u8> {
        let pkt = packet::l4(self.up_mac, [2; 6], p);
        self.run(&self.node, self.up, &pkt, verdict, Hook::NodeIngress, reason)
    }
    fn arrives_frame(&self, pkt: &[u8], verdict: u32, reason: Reason) -> Vec<u8> {
        self.run(&self.node, self.up, pkt, verdict, Hook::NodeIngress, reason)
    }
    fn pod1_sends(&self, p: L4, reason: Reason) -> Vec<u8> {
        let pkt = packet::l4(NODE_MAC, POD1_MAC, p);
        self.run(&self.pod, self.p1, &pkt, TC_ACT_REDIRECT, Hook::PodIngress, reason)
    }
}

/// The IPv4 DSR option of a frame, if its header has one.
fn dsr_option(f: &[u8]) -> Option<(IpAddr, u16)> {
    if f[14] & 0x0f != 7 || f[34] != 0x9a || f[35] != 8 {
        return None;
    }
    Some((IpAddr::from([f[38], f[39], f[40], f[41]]), u16::from_be_bytes([f[36], f[37]])))
}

/// The IPv6 DSR destination option of a frame, if it has one.
fn dsr6_option(f: &[u8]) -> Option<(IpAddr, u16)> {
    if f[20] != 60 || f[56] != 0x1b || f[57] != 20 || f[55] != 2 {
        return None;
    }
    let mut a = [0u8; 16];
    a.copy_from_slice(&f[58..74]);
    Some((IpAddr::from(a), u16::from_be_bytes([f[74], f[75]])))
}

/// The L4 checksum of a frame whose IPv4 header has options, or whose
/// IPv6 header is followed by one extension header.
fn l4_csum_ok_after_option(f: &[u8]) -> bool {
    let mut g = f.to_vec();
    if f[12..14] == [0x08, 0x00] {
        let hl = usize::from(f[14] & 0x0f) * 4;
        g.drain(34..14 + hl);
        g[14] = 0x45;
        let tot = u16::from_be_bytes([g[16], g[17]]) - (hl as u16 - 20);
        g[16..18].copy_from_slice(&tot.to_be_bytes());
    } else {
        let next = f[54];
        let ext = (usize::from(f[55]) + 1) * 8;
        g.drain(54..54 + ext);
        g[20] = next;
        let pl = u16::from_be_bytes([g[18], g[19]]) - ext as u16;
        g[18..20].copy_from_slice(&pl.to_be_bytes());
    }
    packet::l4_csum_ok(&g)
}

#[test]
#[ignore = "needs root and BPF: the test command runs it with --include-ignored"]
fn a_nodeport_to_a_local_backend_goes_into_the_pod_and_its_reply_leaves_from_the_nodeport() {
    with_bed("svc_np_local", |b| {
        b.program_outside(&[outside("web", VIP, Protocol::Tcp, Mode::Dsr, &[("10.1.0.6", 8080)])]);
        let client = ip("10.99.0.200");
        let out = b.arrives(L4::tcp(client, 5000, ip("192.0.2.1"), 30080, SYN), TC_ACT_REDIRECT, Reason::RedirectPeer);
        assert_eq!(packet::l4_tuple(&out), (client, 5000, ip("10.1.0.6"), 8080), "DNAT, the client's address kept");
        assert!(packet::ipv4_csum_ok(&out) && packet::l4_csum_ok(&out));
        assert_eq!(&out[0..6], &POD1_MAC, "into pod1");
        let reply = b.pod1_sends(L4::tcp(ip("10.1.0.6"), 8080, client, 5000, SYN | ACK), Reason::RedirectFib);
        assert_eq!(packet::l4_tuple(&reply), (ip("192.0.2.1"), 30080, client, 5000), "from the NodePort");
        assert!(packet::ipv4_csum_ok(&reply) && packet::l4_csum_ok(&reply));
        // The load-balancer IP to the same backend.
        let out = b.arrives(L4::tcp(client, 5001, ip(VIP), 80, SYN), TC_ACT_REDIRECT, Reason::RedirectPeer);
        assert_eq!(packet::l4_tuple(&out).2, ip("10.1.0.6"));
        let reply = b.pod1_sends(L4::tcp(ip("10.1.0.6"), 8080, client, 5001, ACK), Reason::RedirectFib);
        assert_eq!(packet::l4_tuple(&reply), (ip(VIP), 80, client, 5001));
    });
}

#[test]
#[ignore = "needs root and BPF: the test command runs it with --include-ignored"]
fn dsr_keeps_the_client_address_and_carries_the_service_in_an_ip_option_on_the_syn_only() {
    with_bed("svc_dsr4", |b| {
        b.program_outside(&[
            outside("web", VIP, Protocol::Tcp, Mode::Dsr, &[("10.99.0.7", 8080)]),
            outside("dns", "192.0.2.53", Protocol::Udp, Mode::Dsr, &[("10.99.0.7", 5353)]),
        ]);
        let client = ip("10.99.0.200");
        let syn = b.arrives(L4::tcp(client, 5000, ip(VIP), 80, SYN), TC_ACT_REDIRECT, Reason::RedirectFib);
        assert_eq!(&syn[0..6], &[2, 0, 0, 0, 0, 2], "towards the backend's node, out of the way it came");
        assert_eq!(dsr_option(&syn), Some((ip(VIP), 80)), "the option names the service");
        assert_eq!(u16::from_be_bytes([syn[16], syn[17]]), 20 + 8 + 20 + 16, "total length grew by 8");
        assert!(packet::ipv4_csum_ok(&syn), "header checksum over the option");
        assert_eq!(packet::l4_tuple(&without_option(&syn)), (client, 5000, ip("10.99.0.7"), 8080));
        assert!(l4_csum_ok_after_option(&syn), "TCP checksum after DNAT");
        let ack = b.arrives(L4::tcp(client, 5000, ip(VIP), 80, ACK), TC_ACT_REDIRECT, Reason::RedirectFib);
        assert_eq!(dsr_option(&ack), None, "no option after the SYN");
        assert_eq!(packet::l4_tuple(&ack), (client, 5000, ip("10.99.0.7"), 8080));
        // A flow this node has not seen (it moved here mid-way): its first
        // packet carries the option, so the backend's node learns it.
        let moved = b.arrives(L4::tcp(client, 5002, ip(VIP), 80, ACK), TC_ACT_REDIRECT, Reason::RedirectFib);
        assert_eq!(dsr_option(&moved), Some((ip(VIP), 80)));
        // UDP: every datagram.
        for _ in 0..2 {
            let d = b.arrives(L4::udp(client, 6000, ip("192.0.2.53"), 80), TC_ACT_REDIRECT, Reason::RedirectFib);
            assert_eq!(dsr_option(&d), Some((ip("192.0.2.53"), 80)));
            assert!(packet::ipv4_csum_ok(&d) && l4_csum_ok_after_option(&d));
        }
    });
}

/// The frame without its IPv4 option (for reading its tuple).
fn without_option(f: &[u8]) -> Vec<u8> {
    let mut g = f.to_vec();
    let hl = usize::from(f[14] & 0x0f) * 4;
    g.drain(34..14 + hl);
    g[14] = 0x45;
    g
}

#[test]
#[ignore = "needs root and BPF: the test command runs it with --include-ignored"]
fn the_backends_node_reads_the_option_and_its_reply_leaves_from_the_service_address() {
    with_bed("svc_dsr_backend", |b| {
        // Any service at all turns the datapath's service code on; this
        // node has none of the flow's.
        b.program(&[service("other", "10.100.0.9", 80, Protocol::Tcp, &[("10.1.0.5", 80)])]);
        let client = ip("10.99.0.200");
        let plain = packet::l4(b.up_mac, [2; 6], L4::tcp(client, 5000, ip("10.1.0.6"), 8080, SYN));
        let mut with = plain[..34].to_vec();
        with.extend_from_slice(&[0x9a, 8, 0, 80, 192, 0, 2, 80]);
        with.extend_from_slice(&plain[34..]);
        with[14] = 0x47;
        let tot = u16::from_be_bytes([with[16], with[17]]) + 8;
        with[16..18].copy_from_slice(&tot.to_be_bytes());
        with[24..26].copy_from_slice(&[0, 0]);
        let c = packet::csum(&with[14..42]);
        with[24..26].copy_from_slice(&c.to_be_bytes());
        let inp = b.arrives_frame(&with, TC_ACT_REDIRECT, Reason::RedirectPeer);
        assert_eq!(dsr_option(&inp), Some((ip(VIP), 80)), "delivered with its option");
        let reply = b.pod1_sends(L4::tcp(ip("10.1.0.6"), 8080, client, 5000, SYN | ACK), Reason::RedirectFib);
        assert_eq!(packet::l4_tuple(&reply), (ip(VIP), 80, client, 5000), "straight to the client, from the VIP");
        assert!(packet::ipv4_csum_ok(&reply) && packet::l4_csum_ok(&reply));
        // Another packet of the flow without the option, and the replies
        // still go out from the VIP.
        b.arrives(L4::tcp(client, 5000, ip("10.1.0.6"), 8080, ACK), TC_ACT_REDIRECT, Reason::RedirectPeer);
        let reply = b.pod1_sends(L4::tcp(ip("10.1.0.6"), 8080, client, 5000, ACK), Reason::RedirectFib);
        assert_eq!(packet::l4_tuple(&reply).0, ip(VIP));
        // An option of another kind still goes to the stack.
        let mut other = with.clone();
        other[34] = 0x94;
        let c = {
            other[24..26].copy_from_slice(&[0, 0]);
            packet::csum(&other[14..42])
        };
        other[24..26].copy_from_slice(&c.to_be_bytes());
        b.arrives_frame(&other, 0, Reason::PassIpOptions);
    });
}

#[test]
#[ignore = "needs root and BPF: the test command runs it with --include-ignored"]
fn snat_translates_both_ways_and_gives_colliding_clients_their_own_ports() {
    with_bed("svc_snat", |b| {
        b.program_outside(&[outside("web", VIP, Protocol::Tcp, Mode::Snat, &[("10.99.0.7", 8080)])]);
        let (c1, c2) = (ip("10.99.0.200"), ip("10.99.0.201"));
        let out = b.arrives(L4::tcp(c1, 45000, ip(VIP), 80, SYN), TC_ACT_REDIRECT, Reason::RedirectFib);
        let (s1, p1, d1, dp1) = packet::l4_tuple(&out);
        assert_eq!((s1, d1, dp1), (ip("192.0.2.1"), ip("10.99.0.7"), 8080), "from this node");
        assert_eq!(p1, 45000, "the client's port, while free");
        assert!(packet::ipv4_csum_ok(&out) && packet::l4_csum_ok(&out));
        let out2 = b.arrives(L4::tcp(c2, 45000, ip(VIP), 80, SYN), TC_ACT_REDIRECT, Reason::RedirectFib);
        let (_, p2, ..) = packet::l4_tuple(&out2);
        assert_ne!(p2, p1, "each flow its own port");
        assert!((32768..=65535).contains(&p2), "{p2}");
        for (client, port) in [(c1, p1), (c2, p2)] {
            let back = b.arrives(
                L4::tcp(ip("10.99.0.7"), 8080, ip("192.0.2.1"), port, SYN | ACK),
                TC_ACT_REDIRECT,
                Reason::RedirectFib,
            );
            assert_eq!(packet::l4_tuple(&back), (ip(VIP), 80, client, 45000), "back to its client, from the VIP");
            assert!(packet::ipv4_csum_ok(&back) && packet::l4_csum_ok(&back));
            assert_eq!(&back[0..6], &[2, 0, 0, 0, 0, 2]);
        }
        // The flow keeps its port.
        let again = b.arrives(L4::tcp(c2, 45000, ip(VIP), 80, ACK), TC_ACT_REDIRECT, Reason::RedirectFib);
        assert_eq!(packet::l4_tuple(&again).1, p2);
        // The service goes and comes back (new rev-NAT ids): a new
        // connection on the same tuple is translated both ways again.
        b.program_outside(&[]);
        b.program_outside(&[outside("web", VIP, Protocol::Tcp, Mode::Snat, &[("10.99.0.7", 8080)])]);
        let out = b.arrives(L4::tcp(c1, 45000, ip(VIP), 80, SYN), TC_ACT_REDIRECT, Reason::RedirectFib);
        let port = packet::l4_tuple(&out).1;
        let back = b.arrives(
            L4::tcp(ip("10.99.0.7"), 8080, ip("192.0.2.1"), port, SYN | ACK),
            TC_ACT_REDIRECT,
            Reason::RedirectFib,
        );
        assert_eq!(packet::l4_tuple(&back), (ip(VIP), 80, c1, 45000), "reversed after the service came back");

        // A port a socket of the node's holds is not taken: the backend's
        // packets to it would be that socket's.
        b.program_outside(&[
            outside("web", VIP, Protocol::Tcp, Mode::Snat, &[("10.99.0.7", 8080)]),
            outside("dns", "192.0.2.53", Protocol::Udp, Mode::Snat, &[("10.99.0.7", 5353)]),
        ]);
        let tcp = std::net::TcpListener::bind("0.0.0.0:45100").unwrap();
        let udp = std::net::UdpSocket::bind("0.0.0.0:45101").unwrap();
        let out = b.arrives(L4::tcp(c1, 45100, ip(VIP), 80, SYN), TC_ACT_REDIRECT, Reason::RedirectFib);
        assert_ne!(packet::l4_tuple(&out).1, 45100, "a TCP port the node listens on");
        let out = b.arrives(L4::udp(c1, 45101, ip("192.0.2.53"), 80), TC_ACT_REDIRECT, Reason::RedirectFib);
        assert_ne!(packet::l4_tuple(&out).1, 45101, "a UDP port bound on the node");
        let out = b.arrives(L4::udp(c1, 45102, ip("192.0.2.53"), 80), TC_ACT_REDIRECT, Reason::RedirectFib);
        assert_eq!(packet::l4_tuple(&out).1, 45102, "a free one is kept");
        drop((tcp, udp));

        // A client's port below 32768 is not kept: every SNAT port is in
        // the range, so that a packet to a lower port (a NodePort, a
        // service port) is never taken for a reply and needs no lookup.
        let out = b.arrives(L4::tcp(c1, 5000, ip(VIP), 80, SYN), TC_ACT_REDIRECT, Reason::RedirectFib);
        let low = packet::l4_tuple(&out).1;
        assert!((32768..=65535).contains(&low), "{low}");
        let back = b.arrives(
            L4::tcp(ip("10.99.0.7"), 8080, ip("192.0.2.1"), low, SYN | ACK),
            TC_ACT_REDIRECT,
            Reason::RedirectFib,
        );
        assert_eq!(packet::l4_tuple(&back), (ip(VIP), 80, c1, 5000), "back to the client's own port");
        b.arrives(L4::tcp(ip("10.99.0.7"), 8080, ip("192.0.2.1"), 5000, SYN | ACK), 0, Reason::PassNoEndpoint);
    });
}

#[test]
#[ignore = "needs root and BPF: the test command runs it with --include-ignored"]
fn hybrid_is_dsr_for_tcp_and_snat_for_udp_and_local_policy_without_a_local_backend_drops() {
    with_bed("svc_hybrid", |b| {
        let mut local = outside("local", "192.0.2.81", Protocol::Tcp, Mode::Dsr, &[("10.99.0.7", 80)]);
        local.external_traffic_policy = TrafficPolicy::Local;
        local.backends[0].node = "n2".into();
        b.program_outside(&[
            outside("web", VIP, Protocol::Tcp, Mode::Hybrid, &[("10.99.0.7", 8080)]),
            outside("dns", "192.0.2.53", Protocol::Udp, Mode::Hybrid, &[("10.99.0.7", 5353)]),
            local,
        ]);
        let client = ip("10.99.0.200");
        let syn = b.arrives(L4::tcp(client, 5000, ip(VIP), 80, SYN), TC_ACT_REDIRECT, Reason::RedirectFib);
        assert!(dsr_option(&syn).is_some(), "TCP by DSR");
        let d = b.arrives(L4::udp(client, 5000, ip("192.0.2.53"), 80), TC_ACT_REDIRECT, Reason::RedirectFib);
        assert_eq!(dsr_option(&d), None, "UDP by SNAT");
        assert_eq!(packet::l4_tuple(&d).0, ip("192.0.2.1"));
        b.arrives(L4::tcp(client, 5000, ip("192.0.2.81"), 80, SYN), TC_ACT_SHOT, Reason::DropNoBackend);
        // Local applies to outside traffic: a pod of this node reaches the
        // same load-balancer IP through every backend, as with kube-proxy.
        let out = b.pod0_sends(L4::tcp(ip("10.1.0.5"), 5000, ip("192.0.2.81"), 80, SYN), Reason::RedirectFib);
        assert_eq!(packet::l4_tuple(&out), (ip("10.1.0.5"), 5000, ip("10.99.0.7"), 80));
    });
}

#[test]
#[ignore = "needs root and BPF: the test command runs it with --include-ignored"]
fn a_datagram_the_option_would_push_over_the_mtu_gets_frag_needed_or_packet_too_big() {
    with_bed("svc_too_big", |b| {
        b.program_outside(&[
            outside("dns", "192.0.2.53", Protocol::Udp, Mode::Dsr, &[("10.99.0.7", 5353)]),
            outside("dns6", "fd00:2::53", Protocol::Udp, Mode::Dsr, &[("fd00:99::7", 5353)]),
        ]);
        let client = ip("10.99.0.200");
        let mut big = L4::udp(client, 7000, ip("192.0.2.53"), 80);
        big.payload = 1500 - 20 - 8; // a full 1500-byte datagram
                                     // Without Don't Fragment it goes by SNAT instead, adding nothing.
        let out = b.arrives(big, TC_ACT_REDIRECT, Reason::RedirectFib);
        assert_eq!(packet::l4_tuple(&out).0, ip("192.0.2.1"), "by SNAT");
        assert_eq!(out.len(), 14 + 1500);
        let mut pkt = packet::l4(b.up_mac, [2; 6], L4 { sport: 7001, ..big });
        pkt[20] |= 0x40; // Don't Fragment
        pkt[24..26].copy_from_slice(&[0, 0]);
        let c = packet::csum(&pkt[14..34]);
        pkt[24..26].copy_from_slice(&c.to_be_bytes());
        let err = b.arrives_frame(&pkt, TC_ACT_REDIRECT, Reason::IcmpTooBig);
        assert_eq!(&err[0..6], &[2; 6], "back to the sender's MAC");
        assert_eq!(err.len(), 14 + 20 + 8 + 28);
        assert_eq!((err[23], err[34], err[35]), (1, 3, 4), "ICMP destination unreachable, fragmentation needed");
        assert_eq!(u16::from_be_bytes([err[40], err[41]]), 1492, "the MTU less the option");
        assert_eq!(IpAddr::from([err[26], err[27], err[28], err[29]]), ip("192.0.2.53"), "from the VIP");
        assert_eq!(IpAddr::from([err[30], err[31], err[32], err[33]]), client);
        assert!(packet::ipv4_csum_ok(&err));
        assert_eq!(packet::csum(&err[34..]), 0, "ICMP checksum");
        // One that fits goes through with its option.
        let mut fits = L4 { sport: 7002, ..big };
        fits.payload -= 8;
        let ok = b.arrives(fits, TC_ACT_REDIRECT, Reason::RedirectFib);
        assert!(dsr_option(&ok).is_some());

        let client6 = ip("fd00:99::200");
        let mut big6 = L4::udp(client6, 7000, ip("fd00:2::53"), 80);
        big6.payload = 1500 - 40 - 8;
        let err = b.arrives(big6, TC_ACT_REDIRECT, Reason::IcmpTooBig);
        assert_eq!(err.len(), 14 + 40 + 8 + 48);
        assert_eq!((err[20], err[54]), (58, 2), "ICMPv6 Packet Too Big");
        assert_eq!(u32::from_be_bytes([err[58], err[59], err[60], err[61]]), 1476);
        let mut pseudo = err[22..54].to_vec();
        pseudo.extend_from_slice(&(56u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, 58]);
        pseudo.extend_from_slice(&err[54..]);
        assert_eq!(packet::csum(&pseudo), 0, "ICMPv6 checksum");
    });
}

#[test]
#[ignore = "needs root and BPF: the test command runs it with --include-ignored"]
fn ipv6_dsr_carries_a_destination_options_header_and_snat_and_local_work_too() {
    with_bed("svc_v6", |b| {
        b.program_outside(&[
            outside("web6", VIP6, Protocol::Tcp, Mode::Dsr, &[("fd00:99::7", 8080)]),
            outside("snat6", "fd00:2::81", Protocol::Tcp, Mode::Snat, &[("fd00:99::7", 8080)]),
            outside("local6", "fd00:2::82", Protocol::Tcp, Mode::Dsr, &[("fd00:1::6", 8080)]),
        ]);
        let client = ip("fd00:99::200");
        let syn = b.arrives(L4::tcp(client, 5000, ip(VIP6), 80, SYN), TC_ACT_REDIRECT, Reason::RedirectFib);
        assert_eq!(dsr6_option(&syn), Some((ip(VIP6), 80)));
        assert_eq!(u16::from_be_bytes([syn[18], syn[19]]), 24 + 20 + 16, "payload length grew by 24");
        assert!(l4_csum_ok_after_option(&syn), "TCP checksum after DNAT");
        let ack = b.arrives(L4::tcp(client, 5000, ip(VIP6), 80, ACK), TC_ACT_REDIRECT, Reason::RedirectFib);
        assert_eq!(dsr6_option(&ack), None);
        assert_eq!(packet::l4_tuple(&ack), (client, 5000, ip("fd00:99::7"), 8080));

        let out = b.arrives(L4::tcp(client, 5001, ip("fd00:2::81"), 80, SYN), TC_ACT_REDIRECT, Reason::RedirectFib);
        let (src, nport, dst, dport) = packet::l4_tuple(&out);
        assert_eq!((src, dst, dport), (ip("fd00:2::1"), ip("fd00:99::7"), 8080));
        assert!((32768..=65535).contains(&nport), "5001 is below the SNAT range: {nport}");
        assert!(packet::l4_csum_ok(&out));
        let back = b.arrives(
            L4::tcp(ip("fd00:99::7"), 8080, ip("fd00:2::1"), nport, SYN | ACK),
            TC_ACT_REDIRECT,
            Reason::RedirectFib,
        );
        assert_eq!(packet::l4_tuple(&back), (ip("fd00:2::81"), 80, client, 5001));
        assert!(packet::l4_csum_ok(&back));

        let inp = b.arrives(L4::tcp(client, 5002, ip("fd00:2::82"), 80, SYN), TC_ACT_REDIRECT, Reason::RedirectPeer);
        assert_eq!(packet::l4_tuple(&inp), (client, 5002, ip("fd00:1::6"), 8080));
        let reply = b.pod1_sends(L4::tcp(ip("fd00:1::6"), 8080, client, 5002, SYN | ACK), Reason::RedirectFib);
        assert_eq!(packet::l4_tuple(&reply), (ip("fd00:2::82"), 80, client, 5002));
        assert!(packet::l4_csum_ok(&reply));

        // The backend's side of IPv6 DSR.
        let plain = packet::l4(b.up_mac, [2; 6], L4::tcp(client, 5003, ip("fd00:1::6"), 8080, SYN));
        let mut with = plain[..54].to_vec();
        with[20] = 60;
        let pl = u16::from_be_bytes([with[18], with[19]]) + 24;
        with[18..20].copy_from_slice(&pl.to_be_bytes());
        with.extend_from_slice(&[6, 2, 0x1b, 20]);
        with.extend_from_slice(&ip6_octets(VIP6));
        with.extend_from_slice(&[0, 80, 0, 0]);
        with.extend_from_slice(&plain[54..]);
        b.arrives_frame(&with, TC_ACT_REDIRECT, Reason::RedirectPeer);
        let reply = b.pod1_sends(L4::tcp(ip("fd00:1::6"), 8080, client, 5003, SYN | ACK), Reason::RedirectFib);
        assert_eq!(packet::l4_tuple(&reply), (ip(VIP6), 80, client, 5003));
        assert!(packet::l4_csum_ok(&reply));
    });
}

fn ip6_octets(s: &str) -> [u8; 16] {
    s.parse::<std::net::Ipv6Addr>().unwrap().octets()
}

#[test]
#[ignore = "needs root and BPF: the test command runs it with --include-ignored"]
fn snat_without_a_free_port_or_a_node_address_is_dropped_with_its_reason() {
    with_bed("svc_snat_drop", |b| {
        b.program_outside(&[outside("web", VIP, Protocol::Tcp, Mode::Snat, &[("10.99.0.7", 8080)])]);
        let c = ip("10.99.0.200");
        // Every port this flow would try, held by live flows of other
        // clients.
        let h = merle_lb::flow::flow_hash(c, 5000, ip(VIP), 80, TCP);
        let ports: Vec<u16> =
            std::iter::once(5000).chain((1..4u32).map(|i| (32768 + h.wrapping_add(i * 7919) % 32768) as u16)).collect();
        let mut svcs = b.services();
        let now = merle_ebpf::services::ct_tick();
        for (n, port) in ports.iter().enumerate() {
            let k = merle_ebpf::services::ct_key(
                ip("10.99.0.7"),
                8080,
                ip("192.0.2.1"),
                *port,
                TCP,
                merle_ebpf::types::CT_REPLY,
            );
            let (addr, _) = merle_ebpf::types::addr_octets(ip(&format!("10.99.0.{}", 100 + n)));
            let e = merle_ebpf::types::CtEntry {
                flags: merle_ebpf::types::CT_F_SNAT,
                addr,
                port: 5000u16.to_be_bytes(),
                seen: now,
                ..Default::default()
            };
            svcs.put_flow(k, e).unwrap();
        }
        b.arrives(L4::tcp(c, 5000, ip(VIP), 80, SYN), TC_ACT_SHOT, Reason::DropNatNoPort);
        // Another source port finds one.
        b.arrives(L4::tcp(c, 5001, ip(VIP), 80, SYN), TC_ACT_REDIRECT, Reason::RedirectFib);
        // Expired holders free their ports: the same flow goes through.
        for (n, port) in ports.iter().enumerate() {
            let k = merle_ebpf::services::ct_key(
                ip("10.99.0.7"),
                8080,
                ip("192.0.2.1"),
                *port,
                TCP,
                merle_ebpf::types::CT_REPLY,
            );
            let (addr, _) = merle_ebpf::types::addr_octets(ip(&format!("10.99.0.{}", 100 + n)));
            let e = merle_ebpf::types::CtEntry {
                flags: merle_ebpf::types::CT_F_SNAT | merle_ebpf::types::CT_F_CLOSING,
                addr,
                port: 5000u16.to_be_bytes(),
                seen: now.wrapping_sub(merle_ebpf::types::CT_LIFE_CLOSING + 2),
                ..Default::default()
            };
            svcs.put_flow(k, e).unwrap();
        }
        b.arrives(L4::tcp(c, 5000, ip(VIP), 80, SYN), TC_ACT_REDIRECT, Reason::RedirectFib);

        // A node without an IPv4 address has nothing to SNAT to.
        let p =
            plan(&[outside("web", VIP, Protocol::Tcp, Mode::Snat, &[("10.99.0.7", 8080)])], "n1", &[ip("fd00:2::1")]);
        b.services().sync(&p).unwrap();
        b.arrives(L4::tcp(c, 5002, ip(VIP), 80, SYN), TC_ACT_SHOT, Reason::DropNat);
    });
}

use merle_ebpf::services::{ct_key, ct_tick};
use merle_ebpf::types::{
    CtEntry, CT_F_CLOSING, CT_F_DSR, CT_LIFE_CLOSING, CT_LIFE_TCP, CT_LIFE_UDP, CT_REPLY, CT_SERVICE,
};

const UDP: u8 = 17;

#[test]
#[ignore = "needs root and BPF: the test command runs it with --include-ignored"]
fn conntrack_lives_while_either_direction_does_and_a_reply_entry_lost_comes_back() {
    with_bed("svc_ct_life", |b| {
        b.program(&[service("dns", "10.100.0.53", 53, Protocol::Udp, &[("10.1.0.6", 5353)])]);
        let (client, vip, backend) = (ip("10.1.0.5"), ip("10.100.0.53"), ip("10.1.0.6"));
        let mut svcs = b.services();
        let fwd = ct_key(client, 42000, vip, 53, UDP, CT_SERVICE);
        let rep = ct_key(backend, 5353, client, 42000, UDP, CT_REPLY);
        let reply = packet::l4(NODE_MAC, POD1_MAC, L4::udp(backend, 5353, client, 42000));
        let back = |b: &Bed| {
            let f = b.run(&b.pod, b.p1, &reply, TC_ACT_REDIRECT, Hook::PodIngress, Reason::RedirectPeer);
            packet::l4_tuple(&f)
        };

        b.pod0_sends(L4::udp(client, 42000, vip, 53), Reason::RedirectPeer);
        assert_eq!(back(b), (vip, 53, client, 42000), "from the ClusterIP");
        let e = svcs.get_flow(&fwd).expect("the flow's entry");
        assert_eq!(e.seen, ct_tick(), "stamped with the programs' clock");

        // The reply entry idle past its lifetime translates nothing.
        let mut r = svcs.get_flow(&rep).expect("the reply entry");
        r.seen = ct_tick().wrapping_sub(CT_LIFE_UDP + 2);
        svcs.put_flow(rep, r).unwrap();
        assert_eq!(back(b), (backend, 5353, client, 42000), "an expired entry is not used");

        // The client's next datagram in a later tick writes it again (as
        // it does when the LRU took it).
        svcs.put_flow(fwd, CtEntry { seen: e.seen.wrapping_sub(2), ..e }).unwrap();
        b.pod0_sends(L4::udp(client, 42000, vip, 53), Reason::RedirectPeer);
        assert_eq!(svcs.get_flow(&rep).map(|r| r.seen), Some(ct_tick()));
        assert_eq!(back(b), (vip, 53, client, 42000), "translated again");

        // Replies alone keep the reply entry fresh; requests alone keep the
        // flow's. Both expired: the next datagram is a new flow.
        svcs.put_flow(fwd, CtEntry { seen: ct_tick().wrapping_sub(CT_LIFE_UDP + 2), ..e }).unwrap();
        b.pod0_sends(L4::udp(client, 42000, vip, 53), Reason::RedirectPeer);
        assert_eq!(svcs.get_flow(&fwd).map(|f| f.seen), Some(ct_tick()));
        assert_eq!(back(b), (vip, 53, client, 42000));
    });
}

#[test]
#[ignore = "needs root and BPF: the test command runs it with --include-ignored"]
fn an_expired_flow_or_a_syn_after_a_close_is_balanced_again_and_other_packets_stay() {
    with_bed("svc_ct_syn", |b| {
        let backends = [("10.99.0.7", 8080), ("10.99.0.8", 8080)];
        b.program(&[service("web", "10.100.0.20", 80, Protocol::Tcp, &backends)]);
        let (client, vip) = (ip("10.1.0.5"), ip("10.100.0.20"));
        let mut svcs = b.services();
        let to = |b: &Bed, sport: u16, flags: u8| {
            let f = b.pod0_sends(L4::tcp(client, sport, vip, 80, flags), Reason::RedirectFib);
            packet::l4_tuple(&f).2
        };
        // Two flows on different backends.
        let x = to(b, 43000, SYN);
        let fwd = ct_key(client, 43000, vip, 80, TCP, CT_SERVICE);
        let ex = svcs.get_flow(&fwd).unwrap();
        let (sport_y, y) = (43001..44000u16).map(|s| (s, to(b, s, SYN))).find(|(_, d)| *d != x).unwrap();
        let ey = svcs.get_flow(&ct_key(client, sport_y, vip, 80, TCP, CT_SERVICE)).unwrap();

        // The first flow's entry names the other backend, and it is
        // closing: its packets stay there, a SYN reusing the tuple is a
        // new connection that Maglev places again.
        let moved = CtEntry { backend_id: ey.backend_id, flags: CT_F_CLOSING, seen: ct_tick(), ..ex };
        svcs.put_flow(fwd, moved).unwrap();
        assert_eq!(to(b, 43000, ACK), y, "a closing flow's last packets stay on its backend");
        assert_eq!(to(b, 43000, SYN), x, "a SYN after the close is balanced again");
        assert_eq!(svcs.get_flow(&fwd).unwrap().flags & CT_F_CLOSING, 0);
        // An entry past its lifetime is balanced again too.
        let stale = CtEntry { backend_id: ey.backend_id, seen: ct_tick().wrapping_sub(CT_LIFE_TCP + 2), ..ex };
        svcs.put_flow(fwd, stale).unwrap();
        assert_eq!(to(b, 43000, ACK), x);
        // A live one keeps its flow wherever it is, SYN or not.
        svcs.put_flow(fwd, CtEntry { backend_id: ey.backend_id, seen: ct_tick(), ..ex }).unwrap();
        assert_eq!(to(b, 43000, ACK), y);
        assert_eq!(to(b, 43000, SYN), y);
        // A FIN from the client starts the end.
        to(b, 43000, 0x11);
        assert_ne!(svcs.get_flow(&fwd).unwrap().flags & CT_F_CLOSING, 0);
    });
}

/// `plain` (a frame to 10.1.0.6) with the IPv4 DSR option for
/// 192.0.2.80:80 inserted.
fn with_dsr_option(plain: &[u8]) -> Vec<u8> {
    let mut with = plain[..34].to_vec();
    with.extend_from_slice(&[0x9a, 8, 0, 80, 192, 0, 2, 80]);
    with.extend_from_slice(&plain[34..]);
    with[14] = 0x47;
    let tot = u16::from_be_bytes([with[16], with[17]]) + 8;
    with[16..18].copy_from_slice(&tot.to_be_bytes());
    with[24..26].copy_from_slice(&[0, 0]);
    let c = packet::csum(&with[14..42]);
    with[24..26].copy_from_slice(&c.to_be_bytes());
    with
}

#[test]
#[ignore = "needs root and BPF: the test command runs it with --include-ignored"]
fn a_dsr_syn_takes_over_a_reused_tuple_but_a_later_segment_never_takes_a_live_local_flow() {
    with_bed("svc_dsr_reuse", |b| {
        b.program(&[service("other", "10.100.0.9", 80, Protocol::Tcp, &[("10.1.0.6", 8080)])]);
        let (client, backend) = (ip("10.99.0.200"), ip("10.1.0.6"));
        let mut svcs = b.services();
        // The tuple's replies belong to a flow this node translated (its
        // ClusterIP), live.
        b.pod0_sends(L4::tcp(ip("10.1.0.5"), 5000, ip("10.100.0.9"), 80, SYN), Reason::RedirectPeer);
        let local = svcs.get_flow(&ct_key(backend, 8080, ip("10.1.0.5"), 5000, TCP, CT_REPLY)).unwrap();
        let rep = ct_key(backend, 8080, client, 5000, TCP, CT_REPLY);
        svcs.put_flow(rep, CtEntry { seen: ct_tick(), ..local }).unwrap();
        let reply =
            |b: &Bed| packet::l4_tuple(&b.pod1_sends(L4::tcp(backend, 8080, client, 5000, ACK), Reason::RedirectFib));

        // A segment with the option that is not a SYN is delivered, and
        // the local flow keeps its entry.
        let ack = with_dsr_option(&packet::l4(b.up_mac, [2; 6], L4::tcp(client, 5000, backend, 8080, ACK)));
        b.arrives_frame(&ack, TC_ACT_REDIRECT, Reason::RedirectPeer);
        assert_eq!(svcs.get_flow(&rep).unwrap().flags & CT_F_DSR, 0);
        assert_eq!(reply(b), (ip("10.100.0.9"), 80, client, 5000));
        // A SYN is a new connection on the tuple: its option wins.
        let syn = with_dsr_option(&packet::l4(b.up_mac, [2; 6], L4::tcp(client, 5000, backend, 8080, SYN)));
        b.arrives_frame(&syn, TC_ACT_REDIRECT, Reason::RedirectPeer);
        assert_eq!(reply(b), (ip(VIP), 80, client, 5000), "from the service address the option named");
        // Over a DSR entry, any segment's option refreshes it.
        b.arrives_frame(&ack, TC_ACT_REDIRECT, Reason::RedirectPeer);
        assert_eq!(svcs.get_flow(&rep).unwrap().seen, ct_tick());
        // An IPv4 fragment's option is not read: the stack reassembles it.
        let mut frag = ack.clone();
        frag[20] = 0x20; // more fragments
        frag[24..26].copy_from_slice(&[0, 0]);
        let c = packet::csum(&frag[14..42]);
        frag[24..26].copy_from_slice(&c.to_be_bytes());
        b.arrives_frame(&frag, 0, Reason::PassIpOptions);
    });
}

#[test]
#[ignore = "needs root and BPF: the test command runs it with --include-ignored"]
fn a_service_with_as_many_backends_as_its_table_balances_spreads_and_moves_only_the_removed() {
    with_bed("svc_many", |b| {
        let max = merle_lb::service::max_backends(M) as u8;
        let addrs: Vec<String> = (0..max).map(|i| format!("10.99.0.{}", 10 + u16::from(i))).collect();
        let all: Vec<(&str, u16)> = addrs.iter().map(|a| (a.as_str(), 8080)).collect();
        let p = b.program(&[service("big", "10.100.0.30", 80, Protocol::Tcp, &all)]);
        let targets = p.tables.values().next().unwrap().clone();
        assert_eq!(targets.len(), usize::from(max));
        let (vip, client) = (ip("10.100.0.30"), ip("10.1.0.5"));
        let mut on: BTreeMap<u16, IpAddr> = BTreeMap::new();
        for sport in 20000..22000u16 {
            let want = expected(&targets, client, sport, vip, 80, TCP);
            let out = b.pod0_sends(L4::tcp(client, sport, vip, 80, SYN), Reason::RedirectFib);
            assert_eq!(packet::l4_tuple(&out).2, want.address, "flow {sport}");
            on.insert(sport, want.address);
        }
        let used: std::collections::BTreeSet<&IpAddr> = on.values().collect();
        assert!(used.len() > usize::from(max) - 10, "{} of {max} backends take flows", used.len());

        // Ten backends go: their flows move, every other flow stays.
        let kept: Vec<(&str, u16)> = all[10..].to_vec();
        b.program(&[service("big", "10.100.0.30", 80, Protocol::Tcp, &kept)]);
        let gone: std::collections::BTreeSet<IpAddr> = all[..10].iter().map(|(a, _)| ip(a)).collect();
        let mut moved = 0;
        for (sport, was) in &on {
            let out = b.pod0_sends(L4::tcp(client, *sport, vip, 80, ACK), Reason::RedirectFib);
            let now = packet::l4_tuple(&out).2;
            if gone.contains(was) {
                assert!(!gone.contains(&now), "flow {sport} left a removed backend");
                moved += 1;
            } else {
                assert_eq!(now, *was, "flow {sport} stays on its backend");
            }
        }
        assert!(moved > 0, "some flows were on the removed backends");
    });
}

#[test]
#[ignore = "needs root and BPF: the test command runs it with --include-ignored"]
fn the_conntrack_sweep_deletes_expired_flows_and_nothing_live() {
    with_bed("svc_ct_sweep", |b| {
        b.program(&[service("web", "10.100.0.20", 80, Protocol::Tcp, &[("10.99.0.7", 8080)])]);
        let mut svcs = b.services();
        let now = ct_tick();
        let client = |i: u32| IpAddr::from(std::net::Ipv4Addr::from(0x0a63_0000 + i));
        let vip = ip("10.100.0.20");
        // More than a batch of each kind, so the walk takes several.
        let (mut live, mut dead) = (Vec::new(), Vec::new());
        for i in 0..6000u32 {
            let (proto, flags, age, alive) = match i % 6 {
                0 => (TCP, 0, 0, true),
                1 => (TCP, 0, CT_LIFE_TCP - 1, true),
                2 => (TCP, CT_F_CLOSING, CT_LIFE_CLOSING + 1, false),
                3 => (TCP, CT_F_CLOSING, CT_LIFE_CLOSING, true),
                4 => (UDP, 0, CT_LIFE_UDP + 5, false),
                _ => (TCP, 0, CT_LIFE_TCP + 1, false),
            };
            let k = ct_key(client(i), 40000, vip, 80, proto, CT_SERVICE);
            svcs.put_flow(k, CtEntry { backend_id: 1, flags, seen: now.wrapping_sub(age), ..Default::default() })
                .unwrap();
            if alive {
                live.push(k)
            } else {
                dead.push(k)
            }
        }
        // Stamped after the sweep's clock: a packet renewed it meanwhile.
        let renewed = ct_key(client(9999), 40000, vip, 80, UDP, CT_SERVICE);
        svcs.put_flow(renewed, CtEntry { seen: now.wrapping_add(1), ..Default::default() }).unwrap();
        live.push(renewed);
        let before = svcs.flows();

        let s = merle_ebpf::ct_gc::sweep(&b.pins, now).unwrap();
        assert_eq!(s.entries, before, "every entry walked");
        assert_eq!(s.deleted, dead.len(), "every expired one deleted");
        assert!(dead.iter().all(|k| svcs.get_flow(k).is_none()), "no expired entry left");
        assert!(live.iter().all(|k| svcs.get_flow(k).is_some()), "no live entry lost");
        assert_eq!(svcs.flows(), before - dead.len());

        // A flow after the sweep is tracked as before; a second sweep finds
        // nothing more to delete.
        let f = b.pod0_sends(L4::tcp(ip("10.1.0.5"), 43000, vip, 80, SYN), Reason::RedirectFib);
        assert_eq!(packet::l4_tuple(&f).2, ip("10.99.0.7"));
        assert!(svcs.get_flow(&ct_key(ip("10.1.0.5"), 43000, vip, 80, TCP, CT_SERVICE)).is_some());
        let again = merle_ebpf::ct_gc::sweep(&b.pins, now).unwrap();
        assert_eq!(again.deleted, 0);
        assert_eq!(again.entries, live.len() + 1 + 1, "the live ones, the new flow and its reply entry");
    });
}
