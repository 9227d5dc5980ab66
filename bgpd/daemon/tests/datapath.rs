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
    // A fresh port each time: a server earlier in the test may still hold
    // its old one in a closing state.
    let bind = if addr.contains(':') { "[::]:0" } else { "0.0.0.0:0" };
    let (tx, rx) = std::sync::mpsc::channel();
    let srv = server
        .ns
        .spawn(move || {
            let l = std::net::TcpListener::bind(bind).unwrap();
            tx.send(l.local_addr().unwrap().port()).unwrap();
            let (mut s, _) = l.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut buf = vec![0u8; 65536];
            s.read_exact(&mut buf).unwrap();
            s.write_all(&buf).unwrap();
        })
        .unwrap();
    let port = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    let target: std::net::SocketAddr =
        if addr.contains(':') { format!("[{addr}]:{port}") } else { format!("{addr}:{port}") }.parse().unwrap();
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

    if encap == Encap::Vxlan {
        // Both families cross in the tunnel: IPv6 by the VTEP's link-local
        // gateway on vxlan-v6.merle.
        for (fam, dev) in [("-4", "vxlan.merle"), ("-6", "vxlan-v6.merle")] {
            let to = if fam == "-4" { b1.v4.clone() } else { b1.v6.clone().unwrap() };
            testbed::wait::poll(&format!("the route to {to} via {dev}"), Duration::from_secs(20), || {
                c.ns(0).ip(&[fam, "route", "get", &to]).ok().filter(|r| r.contains(dev)).map(|_| ())
            })
            .unwrap_or_else(|e| panic!("{e}: {:?}", c.ns(0).ip(&[fam, "route"])));
        }
    }
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
    // The same counters on merled's metrics: never behind the datapath's
    // own, read just before.
    let peer_now = c.counter(0, "pod-ingress", "redirect-peer");
    let text = c.metrics(0).unwrap();
    let series = "merle_ebpf_packets_total{hook=\"pod-ingress\",verdict=\"redirect\",reason=\"redirect-peer\"}";
    let v: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"));
    assert!(v >= peer_now && peer_now > 0, "{series} {v}, the datapath's {peer_now}");
    let eps = c.dataplane(0).unwrap()["endpoints"].as_array().unwrap().len();
    assert!(text.contains(&format!("merle_ebpf_endpoints {eps}.0\n")), "{eps} endpoints on n1:\n{text}");

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
#[ignore = "needs root and BPF: the test command runs it with --include-ignored"]
fn ebpf_mode_forwards_pods_natively_and_skips_the_host_stack() {
    if skip_unless_bpf("ebpf_mode_forwards_pods_natively") {
        return;
    }
    forwarding(Encap::Native, "dpn");
}

#[test]
#[ignore = "needs root and BPF: the test command runs it with --include-ignored"]
fn ebpf_mode_forwards_pods_over_vxlan_and_skips_the_host_stack() {
    if skip_unless_bpf("ebpf_mode_forwards_pods_over_vxlan") {
        return;
    }
    forwarding(Encap::Vxlan, "dpx");
}

fn interfaces(d: &serde_json::Value) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = d["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["ifname"].as_str().unwrap().to_owned(), i["program_id"].as_u64().unwrap()))
        .collect();
    v.sort();
    v
}

/// `ping -i 0.005` summary: (sent, received).
fn ping_summary(out: &str) -> (u64, u64) {
    let line = out.lines().find(|l| l.contains("packets transmitted")).unwrap_or_else(|| panic!("ping said: {out}"));
    let n: Vec<u64> = line.split(|c: char| !c.is_ascii_digit()).filter_map(|s| s.parse().ok()).collect();
    (n[0], n[1])
}

#[test]
#[ignore = "needs root and BPF: the test command runs it with --include-ignored"]
fn restarting_merled_loses_no_packet_and_adopts_its_pins() {
    if skip_unless_bpf("restarting_merled_loses_no_packet") {
        return;
    }
    let mut c = Cluster::new("dpr", 2, Encap::Native, Mode::Ebpf).unwrap();
    let a1 = c.add_pod(0, "dpra1").unwrap();
    let b1 = c.add_pod(1, "dprb1").unwrap();
    c.wait_node_links(0).unwrap();
    c.wait_ping(&a1, &b1.v4).unwrap();
    let before = c.dataplane(0).unwrap();

    // 5 ms pings and an iperf3 stream across the restart of n1's merled.
    let mut server = b1.ns.command("iperf3").args(["-s", "-1"]).stdout(std::process::Stdio::null()).spawn().unwrap();
    testbed::wait::poll("iperf3 listening", Duration::from_secs(10), || {
        b1.ns.exec(&["ss", "-ltn"]).ok().filter(|s| s.contains(":5201")).map(|_| ())
    })
    .unwrap();
    let stream = a1
        .ns
        .command("iperf3")
        .args(["-c", &b1.v4, "-t", "8", "-i", "0.1", "-J"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pings = a1
        .ns
        .command("ping")
        .args(["-i", "0.005", "-c", "1400", "-W", "1", &b1.v4])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    c.restart(0).unwrap();
    c.wait_mode(0, Mode::Ebpf).unwrap();

    let out = String::from_utf8(pings.wait_with_output().unwrap().stdout).unwrap();
    let (sent, got) = ping_summary(&out);
    assert_eq!(got, sent, "pings lost across the restart: {out}");
    let out = stream.wait_with_output().unwrap();
    let _ = server.kill();
    let _ = server.wait();
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let intervals = j["intervals"].as_array().unwrap();
    assert!(intervals.len() >= 70, "{} intervals", intervals.len());
    let mut stalls = Vec::new();
    for (i, iv) in intervals.iter().enumerate() {
        let s = &iv["sum"];
        if s["bytes"].as_u64().unwrap() == 0 && s["seconds"].as_f64().unwrap() >= 0.09 {
            stalls.push(i);
        }
    }
    assert!(stalls.is_empty(), "the stream stalled for 100 ms or more in intervals {stalls:?}");

    let after = c.dataplane(0).unwrap();
    assert_eq!(after["adopted"], true, "the new merled adopted the pins: {after}");
    assert_eq!(after["version"], before["version"]);
    assert_eq!(interfaces(&after), interfaces(&before), "the same programs on the same interfaces");
    assert_eq!(after["endpoints"], before["endpoints"]);

    // A live switch to kernel mode and back loses nothing either.
    let pings = a1
        .ns
        .command("ping")
        .args(["-i", "0.005", "-w", "600", &b1.v4])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    c.set_mode(0, Mode::Kernel).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    c.set_mode(0, Mode::Ebpf).unwrap();
    c.wait_node_links(0).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let _ = std::process::Command::new("kill").args(["-INT", &pings.id().to_string()]).status();
    let out = String::from_utf8(pings.wait_with_output().unwrap().stdout).unwrap();
    let (sent, got) = ping_summary(&out);
    assert!(sent > 200 && got == sent, "pings lost across the live mode switches: {out}");

    // A pod that vanished while merled was down (its veth gone, no DEL):
    // the next merled's start removes its entries and its link.
    let a2 = c.add_pod(0, "dpra2").unwrap();
    let host = merle_ipam::pods::host_veth_name("dpra2", "eth0");
    c.nodes[0].merled.daemon.kill();
    c.ns(0).ip(&["link", "del", &host]).unwrap();
    c.restart(0).unwrap();
    testbed::wait::poll("the vanished pod's entries removed", Duration::from_secs(20), || {
        let d = c.dataplane(0).ok()?;
        let eps = d["endpoints"].as_array()?.clone();
        let gone = !eps.iter().any(|e| e["ip"] == a2.v4.as_str());
        let unlinked = !d["interfaces"].as_array()?.iter().any(|i| i["ifname"] == host.as_str());
        (gone && unlinked && eps.len() == 2).then_some(())
    })
    .unwrap();
}

#[test]
#[ignore = "needs root and BPF: the test command runs it with --include-ignored"]
fn pod_churn_leaves_no_stale_endpoint_and_two_pods_keep_talking() {
    if skip_unless_bpf("pod_churn") {
        return;
    }
    let c = Cluster::new("dpc", 2, Encap::Native, Mode::Ebpf).unwrap();
    let a1 = c.add_pod(0, "dpca1").unwrap();
    let b1 = c.add_pod(1, "dpcb1").unwrap();
    c.wait_ping(&a1, &b1.v4).unwrap();
    let pings = a1
        .ns
        .command("ping")
        .args(["-i", "0.01", "-w", "600", &b1.v4])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut churn = Vec::new();
    for i in 0..100 {
        churn.push(c.add_pod(i % 2, &format!("dpcx{i}")).unwrap());
    }
    let d = c.dataplane(0).unwrap();
    assert_eq!(d["endpoints"].as_array().unwrap().len(), 2 * 51, "a1 and 50 churned pods, two addresses each");
    for p in &churn {
        c.del_pod(p).unwrap();
    }
    let _ = std::process::Command::new("kill").args(["-INT", &pings.id().to_string()]).status();
    let out = String::from_utf8(pings.wait_with_output().unwrap().stdout).unwrap();
    let (sent, got) = ping_summary(&out);
    assert!(sent > 100 && got == sent, "a1 and b1 kept talking through the churn: {out}");
    for (node, keep) in [(0, &a1), (1, &b1)] {
        let d = c.dataplane(node).unwrap();
        let mut eps: Vec<String> =
            d["endpoints"].as_array().unwrap().iter().map(|e| e["ip"].as_str().unwrap().to_owned()).collect();
        eps.sort();
        let mut want = vec![keep.v4.clone(), keep.v6.clone().unwrap()];
        want.sort();
        assert_eq!(eps, want, "node {node}: only the pods that exist are in the map");
        let pod_links = d["interfaces"].as_array().unwrap().iter().filter(|i| i["hook"] == "pod-ingress").count();
        assert_eq!(pod_links, 1, "node {node}: one pod link left");
        // The veth entries of the source check went with their pods.
        let pins = merle_ebpf::PinDir::new(c.nodes[node].bpffs.pin_dir());
        let eps = merle_ebpf::endpoints::Endpoints::open(&pins).unwrap();
        let ifaces = eps.ifaces().unwrap();
        assert_eq!(ifaces, merle_ebpf::endpoints::pod_ifaces(&eps.list()), "node {node}: merle_pod_ifaces");
        assert_eq!(ifaces.len(), 1, "node {node}: one veth entry left: {ifaces:?}");
    }
}

#[test]
#[ignore = "needs root and BPF: the test command runs it with --include-ignored"]
fn nat_outgoing_masquerades_traffic_leaving_the_cluster_in_both_modes() {
    if skip_unless_bpf("nat_outgoing") {
        return;
    }
    let c = Cluster::with_nat("dpo", 2, Encap::Native, Mode::Ebpf, true).unwrap();
    // An address outside every pool and node subnet, behind the switch,
    // which has no route back to the pods: only masqueraded pings return.
    c.lan.switch.ip(&["addr", "add", "198.51.100.1/32", "dev", "lo"]).unwrap();
    c.lan.switch.ip(&["link", "set", "lo", "up"]).unwrap();
    let a1 = c.add_pod(0, "dpoa1").unwrap();
    c.wait_node_links(0).unwrap();
    let before = c.counter(0, "pod-ingress", "pass-nat-outgoing");
    c.wait_ping(&a1, "198.51.100.1").unwrap();
    assert!(c.counter(0, "pod-ingress", "pass-nat-outgoing") > before, "handed to the stack for NAT");
    let table = c.ns(0).exec(&["nft", "list", "table", "inet", "merle_nat"]).unwrap();
    assert!(table.contains("masquerade") && table.contains("10.244.0.0/16"), "{table}");

    c.set_mode(0, Mode::Kernel).unwrap();
    c.wait_ping(&a1, "198.51.100.1").unwrap();

    // nat_outgoing off: merle removes its rules, and the replies have no
    // way back.
    let path = &c.nodes[0].merled.config;
    let text = std::fs::read_to_string(path).unwrap().replace("nat_outgoing = true", "nat_outgoing = false");
    std::fs::write(path, text).unwrap();
    testbed::wait::poll("merle's NAT table removed", Duration::from_secs(20), || {
        c.ns(0).exec(&["nft", "list", "table", "inet", "merle_nat"]).is_err().then_some(())
    })
    .unwrap();
    assert!(!pings(&a1, "198.51.100.1"), "without outgoing NAT the reply cannot come back");
}

#[test]
#[ignore = "needs root and BPF: the test command runs it with --include-ignored"]
fn a_pin_directory_off_bpffs_keeps_merled_up_in_kernel_mode_and_says_why() {
    if skip_unless_bpf("pin_directory_off_bpffs") {
        return;
    }
    let ns = testbed::netns::Netns::new("dpbad").unwrap();
    let dir = testbed::TempDir::new("dpbad").unwrap();
    // Mounted before merled starts: its `ip netns exec` mount namespace
    // does not see mounts made later on a host without shared mounts.
    let (fs1, fs2) = (testbed::bpf::BpfFs::new("dpbad1").unwrap(), testbed::bpf::BpfFs::new("dpbad2").unwrap());
    let cfg = format!(
        "[node]\nname = \"x\"\naddress = \"10.9.0.1/24\"\n[datastore]\npath = \"{0}\"\n\
         [dataplane]\nmode = \"ebpf\"\npin_dir = \"{0}/not-bpffs/merle\"\n[control]\nsocket = \"{{socket}}\"\n",
        dir.path().display()
    );
    let bin = |n: &str| testbed::merled::sibling_binary(n).unwrap();
    let m = testbed::merled::Merled::start(&ns, "x", &bin("merled"), &bin("merlectl"), &cfg).unwrap();
    let s = m.status().unwrap();
    assert_eq!(s["dataplane"]["mode"], "kernel", "{s}");
    let why = s["dataplane"]["reason"].as_str().unwrap();
    assert!(why.contains("not on a bpf filesystem") && why.contains("mount -t bpf"), "{why}");
    assert!(!dir.path().join("not-bpffs/merle/maps").exists(), "nothing half-made");
    let text = m.merlectl(&["status"]).unwrap();
    assert!(text.contains("Dataplane: kernel (requested ebpf)"), "{text}");

    // Fixed live: a pin directory on a bpffs, then another one. Each move
    // takes the pins along: none stay in the directory left behind.
    let good = |fs: &testbed::bpf::BpfFs| {
        std::fs::read_to_string(&m.config)
            .unwrap()
            .lines()
            .map(|l| {
                if l.starts_with("pin_dir") {
                    format!("pin_dir = \"{}\"", fs.pin_dir().display())
                } else {
                    l.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let in_ebpf = |fs: &testbed::bpf::BpfFs| {
        testbed::wait::poll("eBPF mode", Duration::from_secs(20), || {
            let s = m.status().ok()?;
            (s["dataplane"]["mode"] == "ebpf" && fs.pin_dir().join("maps/merle_endpoints").exists()).then_some(())
        })
    };
    m.write_config(&good(&fs1)).unwrap();
    in_ebpf(&fs1).unwrap();
    m.write_config(&good(&fs2)).unwrap();
    in_ebpf(&fs2).unwrap();
    assert!(!fs1.pin_dir().exists(), "the old pin directory was emptied and removed");
}
