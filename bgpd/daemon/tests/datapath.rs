//! The eBPF datapath end to end: merled on two nodes in eBPF mode, pods
//! wired by merle-cni, real packets.
//!
//! ```text
//!   switch 10.0.0.254 ── n1 10.0.0.1 (pods a1, a2)
//!                    └── n2 10.0.0.2 (pod b1)
//!   pools 10.244.0.0/16 and fd00:244::/56, native or VXLAN
//! ```
//! 1. same-node and cross-node pod traffic, IPv4 and IPv6, ping and TCP;
//! 2. the counters rise on the path expected;
//! 3. with `iptables -I FORWARD -j DROP` on both nodes, eBPF mode still
//!    forwards and kernel mode (switched live) does not;
//! 4. kernel mode leaves no program attached and no pin.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::time::Duration;

use testbed::bpf::skip_unless_bpf;
use testbed::datapath::{Cluster, Encap, Mode, Pod};

/// A TCP exchange from `client` to `server`'s `addr`: 64 KiB each way.
fn tcp(server: &Pod, client: &Pod, addr: &str) {
    let bind = if addr.contains(':') { "[::]:7070" } else { "0.0.0.0:7070" };
    let (tx, rx) = std::sync::mpsc::channel();
    let srv = server
        .ns
        .spawn(move || {
            let l = std::net::TcpListener::bind(bind).unwrap();
            tx.send(()).unwrap();
            let (mut s, _) = l.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut buf = vec![0u8; 65536];
            s.read_exact(&mut buf).unwrap();
            s.write_all(&buf).unwrap();
        })
        .unwrap();
    rx.recv_timeout(Duration::from_secs(5)).unwrap();
    let target: std::net::SocketAddr =
        if addr.contains(':') { format!("[{addr}]:7070") } else { format!("{addr}:7070") }.parse().unwrap();
    let cli = client
        .ns
        .spawn(move || {
            let mut s = std::net::TcpStream::connect_timeout(&target, Duration::from_secs(5)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let data: Vec<u8> = (0..65536u32).map(|i| i as u8).collect();
            s.write_all(&data).unwrap();
            let mut back = vec![0u8; 65536];
            s.read_exact(&mut back).unwrap();
            assert_eq!(back, data);
        })
        .unwrap();
    cli.join().unwrap().unwrap();
    srv.join().unwrap().unwrap();
}

fn pings(from: &Pod, to: &str) -> bool {
    let ping = if to.contains(':') { "ping6" } else { "ping" };
    from.ns.exec(&[ping, "-c", "1", "-W", "1", to]).is_ok()
}

fn forward_drop(c: &Cluster, on: bool) {
    for i in 0..c.nodes.len() {
        for t in ["iptables", "ip6tables"] {
            c.ns(i).exec(&[t, if on { "-I" } else { "-D" }, "FORWARD", "-j", "DROP"]).unwrap();
        }
    }
}

fn forwarding(encap: Encap, tag: &str) {
    let c = Cluster::new(tag, 2, encap, Mode::Ebpf).unwrap();
    for i in 0..2 {
        c.wait_mode(i, Mode::Ebpf).unwrap();
    }
    let a1 = c.add_pod(0, &format!("{tag}a1")).unwrap();
    let a2 = c.add_pod(0, &format!("{tag}a2")).unwrap();
    let b1 = c.add_pod(1, &format!("{tag}b1")).unwrap();
    assert_ne!(a1.v4, b1.v4, "one IPAM for the cluster");
    for i in 0..2 {
        c.wait_node_links(i).unwrap();
    }
    let d = c.dataplane(0).unwrap();
    let eps: Vec<&str> = d["endpoints"].as_array().unwrap().iter().map(|e| e["ip"].as_str().unwrap()).collect();
    for ip in [&a1.v4, &a2.v4, a1.v6.as_ref().unwrap()] {
        assert!(eps.contains(&ip.as_str()), "{ip} not in the endpoint map: {eps:?}");
    }
    assert!(d["interfaces"].as_array().unwrap().iter().filter(|i| i["hook"] == "pod-ingress").count() >= 2);
    assert_eq!(d["attach"], "tcx", "this kernel has TCX");

    let peer0 = c.counter(0, "pod-ingress", "redirect-peer");
    let fib0 = c.counter(0, "pod-ingress", "redirect-fib") + c.counter(0, "pod-ingress", "redirect-neigh");
    let in1 = c.counter(1, "node-ingress", "redirect-peer");
    for (from, to) in [(&a1, &a2), (&a1, &b1), (&b1, &a2)] {
        c.wait_ping(from, &to.v4).unwrap();
        c.wait_ping(from, to.v6.as_ref().unwrap()).unwrap();
        tcp(to, from, &to.v4);
        tcp(to, from, to.v6.as_ref().unwrap());
    }
    assert!(c.counter(0, "pod-ingress", "redirect-peer") > peer0, "same-node traffic took bpf_redirect_peer");
    assert!(
        c.counter(0, "pod-ingress", "redirect-fib") + c.counter(0, "pod-ingress", "redirect-neigh") > fib0,
        "cross-node traffic took the FIB redirect"
    );
    assert!(c.counter(1, "node-ingress", "redirect-peer") > in1, "arriving traffic went straight into the pod");

    // The fast path skips netfilter's FORWARD chain...
    forward_drop(&c, true);
    for (from, to) in [(&a1, &b1), (&b1, &a1), (&a1, &a2)] {
        assert!(pings(from, &to.v4), "eBPF mode with FORWARD DROP: {} -> {}", from.id, to.v4);
        assert!(pings(from, to.v6.as_ref().unwrap()), "eBPF mode with FORWARD DROP: v6 {}", from.id);
    }
    // ...and the kernel path does not. The switch is live.
    for i in 0..2 {
        c.set_mode(i, Mode::Kernel).unwrap();
        let pins = c.nodes[i].bpffs.pin_dir();
        assert!(!pins.exists(), "kernel mode removes every pin: {} is still there", pins.display());
        let d = c.dataplane(i).unwrap();
        assert!(d["interfaces"].as_array().unwrap().is_empty());
    }
    assert!(!pings(&a1, &b1.v4), "kernel mode with FORWARD DROP must not forward");
    assert!(!pings(&a1, b1.v6.as_ref().unwrap()), "kernel mode with FORWARD DROP must not forward IPv6");
    forward_drop(&c, false);
    c.wait_ping(&a1, &b1.v4).unwrap();
    c.wait_ping(&a1, b1.v6.as_ref().unwrap()).unwrap();

    // Back to eBPF: the pods that exist are linked again.
    c.set_mode(0, Mode::Ebpf).unwrap();
    c.set_mode(1, Mode::Ebpf).unwrap();
    testbed::wait::poll("pods linked again", Duration::from_secs(20), || {
        let d = c.dataplane(0).ok()?;
        (d["interfaces"].as_array()?.iter().filter(|i| i["hook"] == "pod-ingress").count() >= 2
            && d["endpoints"].as_array()?.len() >= 4)
            .then_some(())
    })
    .unwrap();
    forward_drop(&c, true);
    c.wait_ping(&a1, &b1.v4).unwrap();
    forward_drop(&c, false);

    for p in [&a1, &a2, &b1] {
        c.del_pod(p).unwrap();
    }
    let d = c.dataplane(0).unwrap();
    assert!(d["endpoints"].as_array().unwrap().is_empty(), "DEL removed the entries: {d}");
    assert!(d["interfaces"].as_array().unwrap().iter().all(|i| i["hook"] != "pod-ingress"), "DEL removed the links");
}

#[test]
fn ebpf_mode_forwards_pods_natively_and_skips_the_host_stack() {
    if skip_unless_bpf("ebpf_mode_forwards_pods_natively") {
        return;
    }
    forwarding(Encap::Native, "dpn");
}

#[test]
fn ebpf_mode_forwards_pods_over_vxlan_and_skips_the_host_stack() {
    if skip_unless_bpf("ebpf_mode_forwards_pods_over_vxlan") {
        return;
    }
    forwarding(Encap::Vxlan, "dpx");
}
