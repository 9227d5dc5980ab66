//! The programs run on crafted packets with BPF_PROG_TEST_RUN: no program
//! is attached anywhere. A namespace (`testbed::bpf::prog_net`) gives the
//! FIB lookup its routes and neighbours:
//!
//! ```text
//!   pod0 (ifindex P0)  pod1 (P1)          up0 192.0.2.1/24, fd00:2::1/64
//!   10.1.0.5           10.1.0.6            10.99.0.0/24  via 192.0.2.2 (neighbour known)
//!   fd00:1::5          fd00:1::6           10.98.0.0/24  via 192.0.2.3 (no neighbour)
//!                                          10.97.0.0/24  blackhole, 10.96.0.0/24 unreachable
//!                                          fd00:99::/64  via fd00:2::2 (neighbour known)
//! ```
//! Each case checks the verdict, where a redirect would go (`cb[0]`), the
//! bytes out (MACs, TTL or hop limit, checksum) and the counter of the
//! reason.

#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use merle_ebpf::datapath::{load, AttachMode, Linker};
use merle_ebpf::endpoints::Endpoints;
use merle_ebpf::metrics::Metrics;
use merle_ebpf::nets::Nets;
use merle_ebpf::objects;
use merle_ebpf::types::{
    EndpointInfo, Hook, Reason, ENDPOINT_F_NAT_OUTGOING, NET_F_NAT_OUTGOING, NET_F_NODE, NET_F_POOL,
    POD_IFACE_F_NAT_OUTGOING_V4,
};
use merle_ebpf::PinDir;
use testbed::bpf::packet::{self, V4};
use testbed::bpf::{mac_of, prog_net, skip_unless_bpf, BpfFs};
use testbed::netns::Netns;

const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;
const TC_ACT_REDIRECT: u32 = 7;
const POD_MAC: [u8; 6] = [0x0a, 0x58, 10, 1, 0, 5];
const POD1_MAC: [u8; 6] = [0x0a, 0x58, 10, 1, 0, 6];
const NODE_MAC: [u8; 6] = [0xee; 6];
const GW_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

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
    fn pod_run(&self, pkt: &[u8]) -> merle_ebpf::sys::TestRun {
        self.pod.test_run(pkt, self.p0, 1).unwrap()
    }
    fn count(&self, hook: Hook, r: Reason) -> u64 {
        self.metrics.get(hook, r).packets
    }
    /// Runs `pkt` through the pod program and checks verdict and reason.
    fn expect(&self, what: &str, pkt: &[u8], verdict: u32, reason: Reason) -> merle_ebpf::sys::TestRun {
        let before = self.count(Hook::PodIngress, reason);
        let r = self.pod_run(pkt);
        assert_eq!(r.retval, verdict, "{what}: verdict");
        assert_eq!(self.count(Hook::PodIngress, reason), before + 1, "{what}: counter {}", reason.name());
        if verdict == TC_ACT_OK {
            assert_eq!(r.data, pkt, "{what}: a packet passed to the stack must be unchanged");
        }
        r
    }
}

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}
fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn with_bed(test: &str, f: impl FnOnce(&Bed) + Send + 'static) {
    if skip_unless_bpf(test) {
        return;
    }
    let fs = BpfFs::new(test).unwrap();
    let pins = PinDir::new(fs.pin_dir());
    let ns = Netns::new("prog").unwrap();
    prog_net(&ns).unwrap();
    let up_mac = mac_of(&ns, "up0").unwrap();
    let h = ns
        .spawn(move || {
            let pins = pins.clone();
            load(&pins, &objects::PROGRAMS, &objects::digest()).unwrap();
            let pod = Linker::open(&pins, AttachMode::Tcx, &objects::POD_INGRESS).unwrap();
            let node = Linker::open(&pins, AttachMode::Tcx, &objects::NODE_INGRESS).unwrap();
            let metrics = Metrics::open(&pins).unwrap();
            let (p0, p1, up) =
                (merle_ebpf::sys::ifindex("pod0"), merle_ebpf::sys::ifindex("pod1"), merle_ebpf::sys::ifindex("up0"));
            let mut eps = Endpoints::open(&pins).unwrap();
            let ep = |ifindex, pod_mac, flags| EndpointInfo { ifindex, pod_mac, node_mac: NODE_MAC, flags, pad: 0 };
            // 10.1.0.0/16 and fd00:1::/64 are nat_outgoing pools, 10.2.0.0/16 not.
            let nat = ENDPOINT_F_NAT_OUTGOING;
            eps.put(IpAddr::V4(v4("10.1.0.5")), ep(p0, POD_MAC, nat)).unwrap();
            eps.put(IpAddr::V4(v4("10.1.0.6")), ep(p1, POD1_MAC, nat)).unwrap();
            eps.put(IpAddr::V4(v4("10.2.0.5")), ep(p0, POD_MAC, 0)).unwrap();
            eps.put(IpAddr::V6(v6("fd00:1::5")), ep(p0, POD_MAC, nat)).unwrap();
            eps.put(IpAddr::V6(v6("fd00:1::6")), ep(p1, POD1_MAC, nat)).unwrap();
            // The handle holds the maps' lock: a test opens its own.
            drop(eps);
            let mut nets = Nets::open(&pins).unwrap();
            let want = [
                ("10.1.0.0/16".parse().unwrap(), NET_F_POOL | NET_F_NAT_OUTGOING),
                ("10.2.0.0/16".parse().unwrap(), NET_F_POOL),
                ("10.99.0.0/24".parse().unwrap(), NET_F_NODE),
                ("fd00:1::/64".parse().unwrap(), NET_F_POOL | NET_F_NAT_OUTGOING),
                ("fd00:99::/64".parse().unwrap(), NET_F_NODE),
            ]
            .into();
            nets.sync(&want).unwrap();
            assert_eq!(nets.list(), want);
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

#[test]
#[ignore = "needs root and BPF: the test command runs it with --include-ignored"]
fn pod_to_pod_on_one_node_is_redirected_into_the_peer_with_macs_and_ttl_rewritten() {
    with_bed("prog_same_node", |b| {
        let pkt = packet::ipv4(NODE_MAC, POD_MAC, V4::udp(v4("10.1.0.5"), v4("10.1.0.6")));
        let r = b.expect("v4 pod to pod", &pkt, TC_ACT_REDIRECT, Reason::RedirectPeer);
        assert_eq!(r.cb0, b.p1, "redirected to pod1's veth");
        assert_eq!(&r.data[0..6], &POD1_MAC, "destination: the pod's MAC");
        assert_eq!(&r.data[6..12], &NODE_MAC, "source: the node's MAC on the veth");
        assert_eq!(r.data[22], 63, "TTL decremented");
        assert!(packet::ipv4_csum_ok(&r.data), "IPv4 checksum fixed");
        assert_eq!((r.data[23], &r.data[26..]), (pkt[23], &pkt[26..]), "only MACs, TTL and checksum change");

        let pkt = packet::ipv6(NODE_MAC, POD_MAC, v6("fd00:1::5"), v6("fd00:1::6"), 64, 17);
        let r = b.expect("v6 pod to pod", &pkt, TC_ACT_REDIRECT, Reason::RedirectPeer);
        assert_eq!(r.cb0, b.p1);
        assert_eq!(&r.data[0..6], &POD1_MAC);
        assert_eq!(r.data[21], 63, "hop limit decremented");
        assert_eq!(&r.data[22..], &pkt[22..], "the rest is untouched");
    });
}

#[test]
#[ignore = "needs root and BPF: the test command runs it with --include-ignored"]
fn pod_to_remote_takes_the_fib_route_with_the_neighbours_mac() {
    with_bed("prog_fib", |b| {
        let pkt = packet::ipv4(NODE_MAC, POD_MAC, V4::udp(v4("10.1.0.5"), v4("10.99.0.7")));
        // 10.99.0.0/24 is a node range: no NAT, forwarded by the FIB.
        let r = b.expect("v4 via FIB", &pkt, TC_ACT_REDIRECT, Reason::RedirectFib);
        assert_eq!(r.cb0, b.up, "out of up0");
        assert_eq!(&r.data[0..6], &GW_MAC, "destination: the gateway's MAC");
        assert_eq!(&r.data[6..12], &b.up_mac, "source: up0's MAC");
        assert_eq!(r.data[22], 63);
        assert!(packet::ipv4_csum_ok(&r.data));
        assert_eq!((r.data[23], &r.data[26..]), (pkt[23], &pkt[26..]), "only MACs, TTL and checksum change");

        let pkt = packet::ipv6(NODE_MAC, POD_MAC, v6("fd00:1::5"), v6("fd00:99::7"), 64, 17);
        let r = b.expect("v6 via FIB", &pkt, TC_ACT_REDIRECT, Reason::RedirectFib);
        assert_eq!((r.cb0, &r.data[0..6], &r.data[6..12], r.data[21]), (b.up, &GW_MAC[..], &b.up_mac[..], 63));

        // 10.98.0.0/24 is outside the cluster and 10.1.0.0/16 has
        // nat_outgoing: to the stack, whose rules masquerade it.
        let pkt = packet::ipv4(NODE_MAC, POD_MAC, V4::udp(v4("10.1.0.5"), v4("10.98.0.7")));
        b.expect("v4 leaving the cluster from a nat pool", &pkt, TC_ACT_OK, Reason::PassNatOutgoing);
        let pkt = packet::ipv6(NODE_MAC, POD_MAC, v6("fd00:1::5"), v6("fd00:98::7"), 64, 17);
        b.expect("v6 leaving the cluster from a nat pool", &pkt, TC_ACT_OK, Reason::PassNatOutgoing);
    });
}

#[test]
#[ignore = "needs root and BPF: the test command runs it with --include-ignored"]
fn no_neighbour_goes_to_redirect_neigh_and_routes_the_kernel_refuses_go_to_the_stack() {
    with_bed("prog_neigh", |b| {
        // 10.2.0.5 is pod0's address from a pool without nat_outgoing.
        let mut h = V4::udp(v4("10.2.0.5"), v4("10.98.0.7"));
        h.ttl = 10;
        let pkt = packet::ipv4(NODE_MAC, POD_MAC, h);
        let r = b.expect("no neighbour for the gateway", &pkt, TC_ACT_REDIRECT, Reason::RedirectNeigh);
        assert_eq!(r.cb0, b.up, "out of up0, the kernel fills in the MACs");
        assert_eq!(r.data[22], 9, "TTL decremented");
        assert!(packet::ipv4_csum_ok(&r.data));
        let pkt = packet::ipv4(NODE_MAC, POD_MAC, V4::udp(v4("10.2.0.5"), v4("10.97.0.7")));
        b.expect("blackhole route", &pkt, TC_ACT_SHOT, Reason::DropFibBlackhole);
        let pkt = packet::ipv4(NODE_MAC, POD_MAC, V4::udp(v4("10.2.0.5"), v4("10.96.0.7")));
        b.expect("unreachable route: the kernel sends the ICMP error", &pkt, TC_ACT_OK, Reason::PassFib);
    });
}

#[test]
#[ignore = "needs root and BPF: the test command runs it with --include-ignored"]
fn what_the_kernel_must_handle_goes_to_the_stack_unchanged() {
    with_bed("prog_pass", |b| {
        b.expect("ARP", &packet::arp(POD_MAC), TC_ACT_OK, Reason::PassNotIp);
        let pkt = packet::ipv4(NODE_MAC, POD_MAC, V4::udp(v4("10.2.0.5"), v4("192.0.2.1")));
        b.expect("to the node itself", &pkt, TC_ACT_OK, Reason::PassLocal);
        let mut h = V4::udp(v4("10.1.0.5"), v4("10.99.0.7"));
        h.ihl = 6;
        b.expect("IPv4 options", &packet::ipv4(NODE_MAC, POD_MAC, h), TC_ACT_OK, Reason::PassIpOptions);
        let mut h = V4::udp(v4("10.1.0.5"), v4("10.99.0.7"));
        h.frag = 0x2000;
        b.expect("first fragment", &packet::ipv4(NODE_MAC, POD_MAC, h), TC_ACT_OK, Reason::PassFragment);
        h.frag = 0x0010;
        b.expect("later fragment", &packet::ipv4(NODE_MAC, POD_MAC, h), TC_ACT_OK, Reason::PassFragment);
        let mut h = V4::udp(v4("10.1.0.5"), v4("10.99.0.7"));
        h.ttl = 1;
        b.expect("TTL 1", &packet::ipv4(NODE_MAC, POD_MAC, h), TC_ACT_OK, Reason::PassTtl);
        let pkt = packet::ipv6(NODE_MAC, POD_MAC, v6("fd00:1::5"), v6("fd00:99::7"), 1, 17);
        b.expect("hop limit 1", &pkt, TC_ACT_OK, Reason::PassTtl);
        let pkt = packet::ipv6(NODE_MAC, POD_MAC, v6("fd00:1::5"), v6("fd00:99::7"), 64, 44);
        b.expect("IPv6 fragment", &pkt, TC_ACT_OK, Reason::PassFragment);
        let pkt = packet::ipv6([0x33, 0x33, 0xff, 0, 0, 1], POD_MAC, v6("fd00:1::5"), v6("ff02::1:ff00:1"), 255, 58);
        b.expect("neighbour solicitation", &pkt, TC_ACT_OK, Reason::PassLinkLocal);
        let pkt = packet::ipv6(NODE_MAC, POD_MAC, v6("fe80::1"), v6("fe80::ecee:eeff:feee:eeee"), 255, 58);
        b.expect("link-local unicast", &pkt, TC_ACT_OK, Reason::PassLinkLocal);
        let pkt = packet::ipv4(NODE_MAC, POD_MAC, V4::udp(v4("10.200.0.1"), v4("10.99.0.7")));
        b.expect("a source that is no pod here", &pkt, TC_ACT_OK, Reason::PassUnknownSource);
        let pkt = packet::ipv4([2, 9, 9, 9, 9, 9], POD_MAC, V4::udp(v4("10.1.0.5"), v4("10.99.0.7")));
        b.expect("not addressed to the node", &pkt, TC_ACT_OK, Reason::PassOtherHost);
        let pkt = packet::ipv4(NODE_MAC, POD_MAC, V4::udp(v4("10.1.0.5"), v4("10.1.0.5")));
        b.expect("to itself", &pkt, TC_ACT_OK, Reason::PassHairpin);
    });
}

#[test]
#[ignore = "needs root and BPF: the test command runs it with --include-ignored"]
fn the_source_check_takes_the_veths_entry_and_falls_back_to_the_endpoint_map() {
    with_bed("prog_source", |b| {
        let mut eps = Endpoints::open(&b.pins).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // pod0 has 10.1.0.5 (nat_outgoing), 10.2.0.5 and fd00:1::5: its
        // entry names the lowest of each family, with the NAT flag.
        let named = |eps: &Endpoints, ifindex, v6| eps.iface(ifindex).unwrap().and_then(|e| e.named(v6));
        let e = eps.iface(b.p0).unwrap().unwrap();
        assert_eq!(e.ifindex, b.p0);
        assert_eq!((e.named(false), e.named(true)), (Some(ip("10.1.0.5")), Some(ip("fd00:1::5"))));
        assert_eq!(e.flags & POD_IFACE_F_NAT_OUTGOING_V4, POD_IFACE_F_NAT_OUTGOING_V4);
        assert_eq!(named(&eps, b.p1, false), Some(ip("10.1.0.6")));
        let out = |src: &str| packet::ipv4(NODE_MAC, POD_MAC, V4::udp(v4(src), v4("10.98.0.7")));
        // The named address, by the entry (its NAT flag sends it to the
        // stack); the other one, by the endpoint map (no NAT: forwarded).
        b.expect("named source", &out("10.1.0.5"), TC_ACT_OK, Reason::PassNatOutgoing);
        b.expect("second address", &out("10.2.0.5"), TC_ACT_REDIRECT, Reason::RedirectNeigh);
        b.expect("pod1's address", &out("10.1.0.6"), TC_ACT_SHOT, Reason::DropSourceSpoofed);
        // IPv6: the named address passes the entry; addresses that differ
        // from it in any one 32-bit word are no pod's (the entry must
        // compare all four).
        let out6 = |src: &str| packet::ipv6(NODE_MAC, POD_MAC, v6(src), v6("fd00:98::7"), 64, 17);
        b.expect("named v6 source", &out6("fd00:1::5"), TC_ACT_OK, Reason::PassNatOutgoing);
        for near in ["fd01:1::5", "fd00:1:0:1::5", "fd00:1::1:0:5", "fd00:1::6:5"] {
            b.expect(&format!("v6 near miss {near}"), &out6(near), TC_ACT_OK, Reason::PassUnknownSource);
        }
        // Removed, the address is no longer named: its packets are from
        // an unknown source, not let through by a stale entry.
        let info = eps.get(ip("10.1.0.5")).unwrap();
        eps.remove(ip("10.1.0.5")).unwrap();
        assert_eq!(named(&eps, b.p0, false), None);
        b.expect("removed source", &out("10.1.0.5"), TC_ACT_OK, Reason::PassUnknownSource);
        // The sync names the next one; putting the lower one back names it
        // again.
        assert_eq!(eps.sync_ifaces(false, &Default::default()).unwrap(), 1);
        assert_eq!(named(&eps, b.p0, false), Some(ip("10.2.0.5")));
        assert_eq!(eps.iface(b.p0).unwrap().unwrap().flags & POD_IFACE_F_NAT_OUTGOING_V4, 0);
        eps.put(ip("10.1.0.5"), info).unwrap();
        assert_eq!(named(&eps, b.p0, false), Some(ip("10.1.0.5")));
        // An address moved to another veth leaves the old one's entry.
        eps.put(ip("10.1.0.5"), EndpointInfo { ifindex: b.p1, ..info }).unwrap();
        assert_eq!(named(&eps, b.p0, false), None);
        assert_eq!(named(&eps, b.p1, false), Some(ip("10.1.0.5")));
        b.expect("moved away", &out("10.1.0.5"), TC_ACT_SHOT, Reason::DropSourceSpoofed);
        // The whole map, as pod_ifaces says.
        eps.sync_ifaces(true, &Default::default()).unwrap();
        assert_eq!(eps.ifaces().unwrap(), merle_ebpf::endpoints::pod_ifaces(&eps.list()));
        eps.put(ip("10.1.0.5"), info).unwrap();
        eps.sync_ifaces(false, &Default::default()).unwrap();
        assert_eq!(named(&eps, b.p0, false), Some(ip("10.1.0.5")));
        assert_eq!(named(&eps, b.p1, false), Some(ip("10.1.0.6")));
    });
}

#[test]
#[ignore = "needs root and BPF: the test command runs it with --include-ignored"]
fn every_drop_has_its_reason() {
    with_bed("prog_drop", |b| {
        let pkt = packet::ipv4(NODE_MAC, POD_MAC, V4::udp(v4("10.1.0.6"), v4("10.99.0.7")));
        b.expect("pod1's address sent from pod0", &pkt, TC_ACT_SHOT, Reason::DropSourceSpoofed);
        let pkt = packet::ipv6(NODE_MAC, POD_MAC, v6("fd00:1::6"), v6("fd00:99::7"), 64, 17);
        b.expect("v6 spoofed", &pkt, TC_ACT_SHOT, Reason::DropSourceSpoofed);
        let mut h = V4::udp(v4("10.1.0.5"), v4("10.99.0.7"));
        h.ihl = 4;
        b.expect("IHL 4", &packet::ipv4(NODE_MAC, POD_MAC, h), TC_ACT_SHOT, Reason::DropInvalidIpv4);
        let mut pkt = packet::ipv4(NODE_MAC, POD_MAC, V4::udp(v4("10.1.0.5"), v4("10.99.0.7")));
        pkt[16..18].copy_from_slice(&2000u16.to_be_bytes());
        b.expect("total length beyond the packet", &pkt, TC_ACT_SHOT, Reason::DropInvalidIpv4);
        let mut pkt = packet::ipv4(NODE_MAC, POD_MAC, V4::udp(v4("10.1.0.5"), v4("10.99.0.7")));
        pkt[14] = 0x65;
        b.expect("IP version 6 in an IPv4 frame", &pkt, TC_ACT_SHOT, Reason::DropInvalidIpv4);
        let mut pkt = packet::ipv6(NODE_MAC, POD_MAC, v6("fd00:1::5"), v6("fd00:99::7"), 64, 17);
        pkt[18..20].copy_from_slice(&1400u16.to_be_bytes());
        b.expect("IPv6 payload beyond the packet", &pkt, TC_ACT_SHOT, Reason::DropInvalidIpv6);
        // Headers cut short cannot be crafted here: BPF_PROG_TEST_RUN
        // itself refuses an IPv4 or IPv6 frame shorter than its header.
    });
}

#[test]
#[ignore = "needs root and BPF: the test command runs it with --include-ignored"]
fn arriving_for_a_local_pod_is_redirected_into_it_and_nothing_else_is_touched() {
    with_bed("prog_node", |b| {
        let run = |pkt: &[u8]| b.node.test_run(pkt, b.up, 1).unwrap();
        let count = |r| b.count(Hook::NodeIngress, r);
        let before = count(Reason::RedirectPeer);
        let pkt = packet::ipv4(b.up_mac, GW_MAC, V4::udp(v4("10.99.0.7"), v4("10.1.0.6")));
        let r = run(&pkt);
        assert_eq!((r.retval, r.cb0), (TC_ACT_REDIRECT, b.p1));
        assert_eq!((&r.data[0..6], &r.data[6..12], r.data[22]), (&POD1_MAC[..], &NODE_MAC[..], 63));
        assert!(packet::ipv4_csum_ok(&r.data));
        let pkt = packet::ipv6(b.up_mac, GW_MAC, v6("fd00:99::7"), v6("fd00:1::5"), 64, 6);
        let r = run(&pkt);
        assert_eq!((r.retval, r.cb0, &r.data[0..6], r.data[21]), (TC_ACT_REDIRECT, b.p0, &POD_MAC[..], 63));
        assert_eq!(count(Reason::RedirectPeer), before + 2);

        for (what, pkt, reason) in [
            (
                "for the node",
                packet::ipv4(b.up_mac, GW_MAC, V4::udp(v4("10.99.0.7"), v4("192.0.2.1"))),
                Reason::PassNoEndpoint,
            ),
            ("ARP", packet::arp(GW_MAC), Reason::PassNotIp),
            (
                "for another host",
                packet::ipv4([2, 7, 7, 7, 7, 7], GW_MAC, V4::udp(v4("10.99.0.7"), v4("10.1.0.6"))),
                Reason::PassOtherHost,
            ),
            (
                "TTL 1",
                {
                    let mut h = V4::udp(v4("10.99.0.7"), v4("10.1.0.6"));
                    h.ttl = 1;
                    packet::ipv4(b.up_mac, GW_MAC, h)
                },
                Reason::PassTtl,
            ),
        ] {
            let before = count(reason);
            let r = run(&pkt);
            assert_eq!(r.retval, TC_ACT_OK, "{what}");
            assert_eq!(r.data, pkt, "{what}: unchanged");
            assert_eq!(count(reason), before + 1, "{what}: {}", reason.name());
        }
    });
}
