//! Services end to end: two merled nodes in eBPF mode, pods wired by
//! merle-cni, `[[services]]` in the configuration applied live, and real
//! TCP and UDP through ClusterIPs.
//!
//! ```text
//!   n1: a1 (client), a2 (backend)      n2: b1 (backend), b2 (client)
//!   web   10.96.0.10:80/tcp     -> a2:8080, b1:8080
//!   dns   10.96.0.53:53/udp     -> a2:5353, b1:5353
//!   web6  [fd00:96::10]:80/tcp  -> a2:8086, b1:8086
//! ```
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use testbed::bpf::skip_unless_bpf;
use testbed::datapath::{Cluster, Encap, Mode, Pod};
use testbed::echo::{ask_tcp, ask_udp, Echo};

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn backend(p: &Pod, v6: bool, port: u16) -> String {
    let a = if v6 { p.v6.clone().unwrap() } else { p.v4.clone() };
    format!("{{ address = \"{a}\", port = {port}, node = \"n{}\" }}", p.node + 1)
}

fn services(web: &[&Pod], dns: &[&Pod], web6: &[&Pod]) -> String {
    services_with(web, dns, web6, "")
}

fn services_with(web: &[&Pod], dns: &[&Pod], web6: &[&Pod], web_extra: &str) -> String {
    let list = |pods: &[&Pod], v6, port| pods.iter().map(|p| backend(p, v6, port)).collect::<Vec<_>>().join(", ");
    format!(
        "[service_ranges]\ncluster_ips = [\"10.96.0.0/16\", \"fd00:96::/112\"]\n\n\
         [[services]]\nname = \"web\"\nprotocol = \"tcp\"\ncluster_ip = \"10.96.0.10\"\nport = 80\n{web_extra}backends = [{}]\n\n\
         [[services]]\nname = \"dns\"\nprotocol = \"udp\"\ncluster_ip = \"10.96.0.53\"\nport = 53\nbackends = [{}]\n\n\
         [[services]]\nname = \"web6\"\nprotocol = \"tcp\"\ncluster_ip = \"fd00:96::10\"\nport = 80\nbackends = [{}]\n",
        list(web, false, 8080),
        list(dns, false, 5353),
        list(web6, true, 8086)
    )
}

/// `n` connections from `client` to `vip`: each answered from the VIP,
/// each server saw the client's own address. The servers that answered.
fn through(client: &Pod, vip: SocketAddr, n: usize, udp: bool) -> BTreeSet<String> {
    let own: IpAddr = if vip.is_ipv6() { client.v6.clone().unwrap() } else { client.v4.clone() }.parse().unwrap();
    let mut seen = BTreeSet::new();
    for i in 0..n {
        let a = if udp { ask_udp(&client.ns, vip) } else { ask_tcp(&client.ns, vip) }
            .unwrap_or_else(|e| panic!("{} -> {vip} #{i}: {e:#}", client.id));
        assert_eq!(a.from, vip, "the answer comes from the service address");
        assert_eq!(a.peer.ip(), own, "the backend sees the client's own address");
        seen.insert(a.server);
    }
    seen
}

#[test]
#[ignore = "needs root and BPF: the test command runs it with --include-ignored"]
fn pods_reach_cluster_ips_across_nodes_and_live_edits_apply_as_a_diff() {
    if skip_unless_bpf("pods_reach_cluster_ips") {
        return;
    }
    let c = Cluster::new("svc", 2, Encap::Native, Mode::Ebpf).unwrap();
    for i in 0..2 {
        c.wait_mode(i, Mode::Ebpf).unwrap();
    }
    let a1 = c.add_pod(0, "svca1").unwrap();
    let a2 = c.add_pod(0, "svca2").unwrap();
    let b1 = c.add_pod(1, "svcb1").unwrap();
    let b2 = c.add_pod(1, "svcb2").unwrap();
    let mut servers = Vec::new();
    for (p, name) in [(&a2, "a2"), (&b1, "b1")] {
        servers.push(Echo::tcp(&p.ns, sa("0.0.0.0:8080"), name).unwrap());
        servers.push(Echo::udp(&p.ns, sa("0.0.0.0:5353"), name).unwrap());
        servers.push(Echo::tcp(&p.ns, sa("[::]:8086"), name).unwrap());
    }
    let all = services(&[&a2, &b1], &[&a2, &b1], &[&a2, &b1]);
    for i in 0..2 {
        c.set_services(i, &all).unwrap();
    }
    for i in 0..2 {
        c.wait_services(i, 3).unwrap();
    }
    let both: BTreeSet<String> = ["a2", "b1"].map(String::from).into();
    for client in [&a1, &b2] {
        assert_eq!(through(client, sa("10.96.0.10:80"), 40, false), both, "TCP from {}", client.id);
        assert_eq!(through(client, sa("10.96.0.53:53"), 30, true), both, "UDP from {}", client.id);
        assert_eq!(through(client, sa("[fd00:96::10]:80"), 40, false), both, "TCP over IPv6 from {}", client.id);
    }
    // A backend reaching its own service: its flows to itself come back
    // into it from 169.254.42.1 (a pod drops a packet from its own address).
    let own: IpAddr = a2.v4.parse().unwrap();
    let mut seen = BTreeSet::new();
    for _ in 0..40 {
        let a = ask_tcp(&a2.ns, sa("10.96.0.10:80")).unwrap();
        assert_eq!(a.from, sa("10.96.0.10:80"));
        let want: IpAddr = if a.server == "a2" { "169.254.42.1".parse().unwrap() } else { own };
        assert_eq!(a.peer.ip(), want, "answered by {}", a.server);
        seen.insert(a.server);
    }
    assert_eq!(seen, both, "a2 reaches itself and b1 through the ClusterIP");
    // Over IPv6, from 100::42:1 (the discard-only prefix).
    let own6: IpAddr = a2.v6.clone().unwrap().parse().unwrap();
    let mut seen = BTreeSet::new();
    for _ in 0..40 {
        let a = ask_tcp(&a2.ns, sa("[fd00:96::10]:80")).unwrap();
        assert_eq!(a.from, sa("[fd00:96::10]:80"));
        let want: IpAddr = if a.server == "a2" { "100::42:1".parse().unwrap() } else { own6 };
        assert_eq!(a.peer.ip(), want, "answered by {} over IPv6", a.server);
        seen.insert(a.server);
    }
    assert_eq!(seen, both, "a2 reaches itself and b1 through the IPv6 ClusterIP");
    let d = c.dataplane(0).unwrap();
    for cn in d["counters"].as_array().unwrap() {
        assert_ne!(cn["kind"], "drop", "no packet dropped: {cn}");
    }
    // The nodes themselves (kubelet, hostNetwork pods): the socket
    // programs send connect() and sendmsg() to a backend, and recvmsg()
    // and getpeername() show the ClusterIP.
    assert!(d["socket_lb"].as_str().unwrap_or_default().contains("8 programs"), "{}", d["socket_lb"]);
    for i in 0..2 {
        let host = c.ns(i);
        let mut seen = BTreeSet::new();
        for _ in 0..30 {
            let a = ask_tcp(host, sa("10.96.0.10:80")).unwrap();
            assert_eq!(a.from, sa("10.96.0.10:80"), "getpeername shows the ClusterIP");
            seen.insert(a.server);
        }
        assert_eq!(seen, both, "from node n{}", i + 1);
        for _ in 0..10 {
            assert_eq!(ask_udp(host, sa("10.96.0.53:53")).unwrap().from, sa("10.96.0.53:53"), "recvmsg shows it");
            assert_eq!(ask_tcp(host, sa("[fd00:96::10]:80")).unwrap().from, sa("[fd00:96::10]:80"));
            // A dual-stack IPv6 socket asking the IPv4 ClusterIP.
            let mapped = sa("[::ffff:10.96.0.10]:80");
            assert_eq!(ask_tcp(host, mapped).unwrap().from, mapped, "IPv4-mapped, through an IPv6 socket");
        }
    }
    let shown = c.nodes[0].merled.merlectl(&["service", "show", "web"]).unwrap();
    assert!(shown.contains("programmed") && shown.contains("10.96.0.10:80/tcp"), "{shown}");
    let listed = c.nodes[0].merled.merlectl(&["service", "list"]).unwrap();
    assert!(listed.contains("web6") && listed.contains("2 (1 here)"), "{listed}");

    // A backend that is not a pod: refused by name, the maps keep the
    // previous set and flows go on.
    let bad = all.replacen(&backend(&a2, false, 8080), "{ address = \"10.244.250.1\", port = 8080, node = \"n1\" }", 1);
    c.set_services(0, &bad).unwrap();
    testbed::wait::poll("the refusal reported", Duration::from_secs(20), || {
        let d = c.dataplane(0).ok()?;
        d["services_error"].as_str().filter(|e| e.contains("10.244.250.1")).map(|_| ())
    })
    .unwrap();
    let listed = c.nodes[0].merled.merlectl(&["service", "list"]).unwrap();
    assert!(listed.contains("not the address of any pod IPAM knows"), "{listed}");
    assert_eq!(through(&a1, sa("10.96.0.10:80"), 20, false), both, "the previous set still serves");

    // A backend removed: every new flow goes to the one left; the other
    // services are not rewritten.
    c.set_services(0, &services(&[&b1], &[&a2, &b1], &[&a2, &b1])).unwrap();
    testbed::wait::poll("one backend for web", Duration::from_secs(20), || {
        let v = c.services(0).ok()?;
        let web = v.as_array()?.iter().find(|s| s["service"]["name"] == "web")?.clone();
        (web["frontends"][0]["programmed_backends"] == 1).then_some(())
    })
    .unwrap();
    assert!(c.dataplane(0).unwrap()["services_error"].is_null());
    let only: BTreeSet<String> = ["b1"].map(String::from).into();
    assert_eq!(through(&a1, sa("10.96.0.10:80"), 20, false), only);
    assert_eq!(through(&a1, sa("10.96.0.53:53"), 20, true), both);
    let log = c.nodes[0].merled.daemon.log_tail(50_000);
    let last = log.lines().rfind(|l| l.contains("dataplane: services:")).unwrap_or_default().to_owned();
    assert!(last.contains("0 frontends put") || last.contains("1 frontends put"), "{last}");
    assert!(last.contains("1 tables written"), "only web's table is rewritten: {last}");

    // The conntrack sweep, at 1 s by live reload: the closed TCP flows
    // (10 s once closing) are deleted; the ones alive are not.
    let path = &c.nodes[0].merled.config;
    let text = std::fs::read_to_string(path).unwrap();
    std::fs::write(path, text.replacen("[dataplane]\n", "[dataplane]\nconntrack_gc_interval = 1\n", 1)).unwrap();
    let ct = testbed::wait::poll("a sweep that deleted closed flows", Duration::from_secs(40), || {
        let ct = c.dataplane(0).ok()?["conntrack"].clone();
        (ct["deleted"].as_u64()? > 0 && ct["interval_seconds"] == 1).then_some(ct)
    })
    .unwrap();
    assert!(ct["entries"].as_u64().unwrap() > 0 && ct["error"].is_null(), "{ct}");
    let text = c.metrics(0).unwrap();
    assert!(text.contains("merle_conntrack_expired_deleted_total "), "{text}");
    assert_eq!(through(&a1, sa("10.96.0.10:80"), 10, false), only, "flows after the sweeps");
    drop(servers);
    for p in [&a1, &a2, &b1, &b2] {
        c.del_pod(p).unwrap();
    }
}

/// kube-proxy's iptables rules for `web` on a node, as it writes them:
/// ClusterIP DNAT in OUTPUT (KUBE-SERVICES), NodePort in PREROUTING with
/// the masquerade mark (KUBE-NODEPORTS), MASQUERADE of marked packets.
fn kube_proxy_rules(ns: &testbed::netns::Netns, backends: &[&Pod]) {
    let ipt = |args: &str| {
        ns.exec(&["iptables", "-t", "nat"].iter().copied().chain(args.split(' ')).collect::<Vec<_>>()).unwrap()
    };
    for chain in ["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-SVC-WEB", "KUBE-MARK-MASQ", "KUBE-POSTROUTING"] {
        ipt(&format!("-N {chain}"));
    }
    ipt("-A OUTPUT -j KUBE-SERVICES");
    ipt("-A PREROUTING -j KUBE-SERVICES");
    ipt("-A POSTROUTING -j KUBE-POSTROUTING");
    ipt("-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000");
    ipt("-A KUBE-POSTROUTING -m mark --mark 0x4000/0x4000 -j MASQUERADE");
    ipt("-A KUBE-SERVICES -d 10.96.0.10/32 -p tcp --dport 80 -j KUBE-SVC-WEB");
    ipt("-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS");
    ipt("-A KUBE-NODEPORTS -p tcp --dport 30080 -j KUBE-MARK-MASQ");
    ipt("-A KUBE-NODEPORTS -p tcp --dport 30080 -j KUBE-SVC-WEB");
    let n = backends.len();
    for (i, b) in backends.iter().enumerate() {
        let sep = format!("KUBE-SEP-{i}");
        ipt(&format!("-N {sep}"));
        ipt(&format!("-A {sep} -p tcp -j DNAT --to-destination {}:8080", b.v4));
        if i + 1 < n {
            ipt(&format!(
                "-A KUBE-SVC-WEB -m statistic --mode random --probability {:.5} -j {sep}",
                1.0 / (n - i) as f64
            ));
        } else {
            ipt(&format!("-A KUBE-SVC-WEB -j {sep}"));
        }
    }
}

/// Packets the nat table's rule jumping to `target` counted.
fn iptables_count(ns: &testbed::netns::Netns, chain: &str, target: &str) -> u64 {
    let out = ns.exec(&["iptables", "-t", "nat", "-L", chain, "-v", "-x", "-n"]).unwrap();
    out.lines()
        .filter(|l| l.split_whitespace().nth(2) == Some(target))
        .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

#[test]
#[ignore = "needs root and BPF: the test command runs it with --include-ignored"]
fn without_socket_lb_merle_coexists_with_kube_proxy_rules() {
    if skip_unless_bpf("coexists_with_kube_proxy") {
        return;
    }
    let c = Cluster::new("kpx", 2, Encap::Native, Mode::Ebpf).unwrap();
    for i in 0..2 {
        c.wait_mode(i, Mode::Ebpf).unwrap();
    }
    let a2 = c.add_pod(0, "kpxa2").unwrap();
    let b1 = c.add_pod(1, "kpxb1").unwrap();
    let _servers: Vec<Echo> =
        [(&a2, "a2"), (&b1, "b1")].iter().map(|(p, n)| Echo::tcp(&p.ns, sa("0.0.0.0:8080"), n).unwrap()).collect();
    // n1 leaves ClusterIPs from the host to kube-proxy.
    let path = &c.nodes[0].merled.config;
    let text = std::fs::read_to_string(path).unwrap();
    std::fs::write(path, text.replacen("[dataplane]\n", "[dataplane]\nsocket_lb = false\n", 1)).unwrap();
    let all = services_with(&[&a2, &b1], &[&a2, &b1], &[&a2, &b1], "node_port = 30080\nmode = \"dsr\"\n");
    for i in 0..2 {
        c.set_services(i, &all).unwrap();
        c.wait_services(i, 3).unwrap();
    }
    testbed::wait::poll("socket programs off on n1", Duration::from_secs(20), || {
        c.dataplane(0).ok()?["socket_lb"].as_str()?.starts_with("off").then_some(())
    })
    .unwrap();
    kube_proxy_rules(c.ns(0), &[&a2, &b1]);
    let both: BTreeSet<String> = ["a2", "b1"].map(String::from).into();

    // The host's ClusterIP connections go through kube-proxy's DNAT.
    let before = iptables_count(c.ns(0), "KUBE-SERVICES", "KUBE-SVC-WEB");
    let mut seen = BTreeSet::new();
    for _ in 0..30 {
        let a = ask_tcp(c.ns(0), sa("10.96.0.10:80")).unwrap();
        assert_eq!(a.from, sa("10.96.0.10:80"));
        seen.insert(a.server);
    }
    assert_eq!(seen, both);
    assert!(iptables_count(c.ns(0), "KUBE-SERVICES", "KUBE-SVC-WEB") >= before + 30, "iptables did the DNAT");

    // NodePort traffic arriving at n1 is merle's (DSR: the backend sees
    // the client, n2's address), before kube-proxy's rules see it.
    let np = iptables_count(c.ns(0), "KUBE-NODEPORTS", "KUBE-MARK-MASQ");
    let n2: IpAddr = "10.0.0.2".parse().unwrap();
    let mut seen = BTreeSet::new();
    for _ in 0..30 {
        let a = ask_tcp(c.ns(1), sa("10.0.0.1:30080")).unwrap();
        assert_eq!((a.from, a.peer.ip()), (sa("10.0.0.1:30080"), n2), "by merle's DSR, not masqueraded");
        seen.insert(a.server);
    }
    assert_eq!(seen, both);
    assert_eq!(
        iptables_count(c.ns(0), "KUBE-NODEPORTS", "KUBE-MARK-MASQ"),
        np,
        "kube-proxy's NodePort rule saw nothing"
    );
    for p in [&a2, &b1] {
        c.del_pod(p).unwrap();
    }
}

#[test]
#[ignore = "needs root and BPF: the test command runs it with --include-ignored"]
fn services_stored_in_etcd_reach_every_node_and_bad_ones_change_nothing() {
    if skip_unless_bpf("services_in_etcd") {
        return;
    }
    assert!(testbed::etcd::Etcd::installed(), "etcd is not installed; run the README test command");
    let c = Cluster::with_etcd("sde", 2, Mode::Ebpf).unwrap();
    for i in 0..2 {
        c.wait_mode(i, Mode::Ebpf).unwrap();
        c.set_services(i, "[service_ranges]\ncluster_ips = [\"10.96.0.0/16\"]\n").unwrap();
    }
    for i in 0..2 {
        testbed::wait::poll("the ranges loaded", Duration::from_secs(20), || {
            c.nodes[i].merled.daemon.log_tail(1000).contains("configuration reloaded").then_some(())
        })
        .unwrap();
    }
    let a2 = c.add_pod(0, "sdea2").unwrap();
    let b1 = c.add_pod(1, "sdeb1").unwrap();
    let b2 = c.add_pod(1, "sdeb2").unwrap();
    let _servers: Vec<Echo> =
        [(&a2, "a2"), (&b1, "b1")].iter().map(|(p, n)| Echo::tcp(&p.ns, sa("0.0.0.0:8080"), n).unwrap()).collect();
    let dir = testbed::TempDir::new("sde-files").unwrap();
    let file = |name: &str, body: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p.display().to_string()
    };
    let web = |cip: &str, port: u16| {
        format!(
            "[[services]]\nname = \"default/web\"\nprotocol = \"tcp\"\ncluster_ip = \"{cip}\"\nport = {port}\n\
             backends = [{}, {}]\n",
            backend(&a2, false, 8080),
            backend(&b1, false, 8080)
        )
    };
    // Stored through n1; n2 programs it without an edit of its own.
    let out = c.nodes[0].merled.merlectl(&["service", "apply", &file("web.toml", &web("10.96.0.10", 80))]).unwrap();
    assert!(out.contains("default/web: stored"), "{out}");
    for i in 0..2 {
        c.wait_services(i, 1).unwrap();
    }
    let both: BTreeSet<String> = ["a2", "b1"].map(String::from).into();
    assert_eq!(through(&b2, sa("10.96.0.10:80"), 30, false), both, "from a pod of n2");

    // Refused by name, and nothing changes.
    for (body, words) in [
        (web("10.200.0.1", 80), "service \"default/web\": cluster_ip: 10.200.0.1 is outside every cluster IP range"),
        (web("10.96.0.10", 0), "port: port 0 is not a port"),
        (web("10.96.0.10", 80).replace("protocol = \"tcp\"", "protocol = \"sctp\""), "use tcp or udp"),
    ] {
        let e = c.nodes[0].merled.merlectl(&["service", "apply", &file("bad.toml", &body)]).unwrap_err();
        assert!(format!("{e:#}").contains(words), "{e:#}");
    }
    assert_eq!(through(&b2, sa("10.96.0.10:80"), 10, false), both, "the stored service is untouched");

    // One written straight into etcd past the checks (another tool, an
    // older merled): left out by every node, with the reason, and the
    // others go on.
    let ds = conf::Datastore {
        kind: conf::DatastoreKind::Etcd,
        endpoints: vec![c.etcd.as_ref().unwrap().url.clone()],
        path: dir.path().join("lock"),
        ..Default::default()
    };
    let mut junk: merle_lb::service::Service = toml_service(&web("10.96.0.10", 80));
    junk.name = "default/junk".into();
    junk.cluster_ip = "10.250.0.1".parse().unwrap();
    // From the switch's namespace, where etcd is: no test traffic leaves
    // the namespaces the test made.
    c.lan
        .switch
        .spawn(move || {
            let store = merle_ipam::etcd::EtcdStore::connect(&ds).unwrap();
            merle_ipam::Store::services(&store).unwrap().put_service(&junk).unwrap();
        })
        .unwrap()
        .join()
        .unwrap()
        .unwrap();
    testbed::wait::poll("the bad entry reported", Duration::from_secs(20), || {
        let d = c.dataplane(1).ok()?;
        d["datastore_errors"]
            .as_array()?
            .iter()
            .any(|e| e.as_str().is_some_and(|e| e.contains("default/junk")))
            .then_some(())
    })
    .unwrap();
    let listed = c.nodes[1].merled.merlectl(&["service", "list"]).unwrap();
    assert!(listed.contains("Left out of the datastore's services") && listed.contains("10.250.0.1"), "{listed}");
    assert_eq!(c.services(1).unwrap().as_array().unwrap().len(), 1);

    // Removed through n2: gone from both.
    c.nodes[1].merled.merlectl(&["service", "delete", "default/web"]).unwrap();
    c.nodes[1].merled.merlectl(&["service", "delete", "default/junk"]).unwrap();
    for i in 0..2 {
        testbed::wait::poll("no service", Duration::from_secs(20), || {
            c.services(i).ok()?.as_array()?.is_empty().then_some(())
        })
        .unwrap();
    }
    let e = c.nodes[0].merled.merlectl(&["service", "delete", "default/web"]).unwrap_err();
    assert!(format!("{e:#}").contains("no service \"default/web\" in the datastore"), "{e:#}");
    for p in [&a2, &b1, &b2] {
        c.del_pod(p).unwrap();
    }
}

fn toml_service(text: &str) -> merle_lb::service::Service {
    let dir = testbed::TempDir::new("sde-parse").unwrap();
    let p = dir.path().join("s.toml");
    std::fs::write(&p, text).unwrap();
    conf::services_file(&p).unwrap().remove(0)
}
