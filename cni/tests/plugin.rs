//! merle-cni as a runtime runs it, against the file store: every command in
//! every supported version, the errors runtimes get for bad input, 200
//! parallel ADDs, the reference plugins chained after it, and ADDs killed
//! half-way.
//!
//! Each test builds a node namespace (its default route through an
//! upstream namespace) and runs the plugin inside it on pod namespaces of
//! its own; nothing touches the host's namespace.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeSet, HashSet};
use std::net::IpAddr;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::*;
use ipnet::IpNet;
use merle_cni::link::host_veth_name;
use rand::Rng;
use serde_json::{json, Value};
use testbed::netns::Netns;
use testbed::wait::poll;

/// A node with its upstream router.
fn bed(tag: &str) -> (Node, Netns) {
    let up = Netns::new(&format!("{tag}-up")).unwrap();
    let node = Node::new(tag, "node-1", &up, 1);
    (node, up)
}

fn ping(pod: &Netns, args: &[&str]) {
    let mut argv = vec!["ping", "-c", "1", "-W", "1"];
    argv.extend_from_slice(args);
    poll(&format!("{argv:?} from the pod"), Duration::from_secs(10), || pod.exec(&argv).ok())
        .unwrap_or_else(|e| panic!("{e}"));
}

fn lifecycle(version: &str) {
    let (node, _up) = bed("life");
    node.configure(DUAL_STACK, false, None);
    let pod = Netns::new("lifepod").unwrap();
    let netns = netns_path(&pod.name);
    let cid = format!("life-{}", version.replace('.', ""));
    let conf = node.netconf(version);
    let legacy = version.starts_with("0.");

    // ADD, and the result's shape for this version.
    let r = node.cni("ADD", &cid, &netns, &conf).result("ADD");
    assert_eq!(r["cniVersion"], version, "{r}");
    let ips = r["ips"].as_array().unwrap();
    assert_eq!(ips.len(), 2, "dual stack gives two addresses: {r}");
    let nets = result_ips(&r);
    let (v4, v6) = (nets[0], nets[1]);
    assert!(v4.addr().is_ipv4() && v4.prefix_len() == 32, "{r}");
    assert!(v6.addr().is_ipv6() && v6.prefix_len() == 128, "{r}");
    assert!("10.244.0.0/16".parse::<IpNet>().unwrap().contains(&v4.addr()), "{r}");
    assert!("fd00:244::/64".parse::<IpNet>().unwrap().contains(&v6.addr()), "{r}");
    for (ip, fam) in ips.iter().zip(["4", "6"]) {
        if legacy {
            assert_eq!(ip["version"], fam, "{version} results carry ips[].version: {r}");
        } else {
            assert!(ip.get("version").is_none(), "{version} results have no ips[].version: {r}");
        }
        assert_eq!(ip["interface"], 1, "{r}");
    }
    let host = host_veth_name(&cid, "eth0");
    let ifs = r["interfaces"].as_array().unwrap();
    assert_eq!(ifs.len(), 2, "{r}");
    assert_eq!(ifs[0]["name"], host.as_str(), "{r}");
    assert_eq!(ifs[0]["mac"], "ee:ee:ee:ee:ee:ee", "{r}");
    assert!(ifs[0].get("sandbox").is_none(), "{r}");
    assert_eq!(ifs[1]["name"], "eth0", "{r}");
    assert_eq!(ifs[1]["sandbox"], netns.as_str(), "{r}");
    for i in ifs {
        assert_eq!(i.get("mtu").is_some(), version == "1.1.0", "interfaces[].mtu is 1.1.0's: {r}");
    }
    let routes = r["routes"].as_array().unwrap();
    assert!(routes.contains(&json!({"dst": "0.0.0.0/0", "gw": "169.254.1.1"})), "{r}");
    assert!(routes.contains(&json!({"dst": "::/0", "gw": "fe80::ecee:eeff:feee:eeee"})), "{r}");

    // The plumbing: the pod's addresses, the host end and its routes.
    let pod_addrs = pod.ip(&["addr", "show", "dev", "eth0"]).unwrap();
    assert!(pod_addrs.contains(&format!("inet {v4} ")), "{pod_addrs}");
    assert!(pod_addrs.contains(&format!("inet6 {v6} ")), "{pod_addrs}");
    assert_eq!(node.host_links(), vec![host.clone()]);
    assert!(node.routes_to(v4.addr()) && node.routes_to(v6.addr()));

    // Traffic: the pod reaches the node over both families, and the
    // gateway resolves to the host end's MAC by proxy ARP.
    ping(&pod, &[&node.addr4()]);
    let neigh = pod.ip(&["neigh", "show", "169.254.1.1"]).unwrap();
    assert!(neigh.contains("lladdr ee:ee:ee:ee:ee:ee"), "the gateway did not resolve: {neigh:?}");
    ping(&pod, &["-6", &node.addr6()]);

    // CHECK: 0.4.0 and later; 0.3.1 has no CHECK.
    let mut with_prev = conf.clone();
    with_prev["prevResult"] = r.clone();
    let out = node.cni("CHECK", &cid, &netns, &with_prev);
    if version == "0.3.1" {
        out.error("CHECK on 0.3.1", 1, &["CHECK"]);
    } else {
        out.empty("CHECK");
    }

    // DEL, twice: the second finds nothing and succeeds.
    let del_conf = if version == "0.3.1" { conf.clone() } else { with_prev };
    node.cni("DEL", &cid, &netns, &del_conf).empty("DEL");
    node.cni("DEL", &cid, &netns, &del_conf).empty("second DEL");
    // And once the sandbox is gone: no CNI_NETNS.
    let env =
        [("CNI_COMMAND", "DEL".to_string()), ("CNI_CONTAINERID", cid.clone()), ("CNI_IFNAME", "eth0".to_string())];
    node.cni_raw(&env, del_conf.to_string().as_bytes()).empty("DEL without CNI_NETNS");

    assert!(node.host_links().is_empty(), "host ends left: {:?}", node.host_links());
    assert_eq!(link_names(&pod.name), vec!["lo".to_string()]);
    assert!(!node.routes_to(v4.addr()), "host route to {v4} left");
    assert!(!node.routes_to(v6.addr()), "host route to {v6} left");
    let h = handle(&cid);
    let blocks = node.file_blocks();
    assert!(taken(&blocks).iter().all(|t| t.handle != h), "{h} still holds addresses");
    let text = String::from_utf8(node.ipam_file().unwrap()).unwrap();
    assert!(!text.contains(&h), "the IPAM file still names {h}: {text}");
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn add_check_del_0_3_1() {
    if testbed::skip_unless_root("add_check_del_0_3_1") {
        return;
    }
    lifecycle("0.3.1");
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn add_check_del_0_4_0() {
    if testbed::skip_unless_root("add_check_del_0_4_0") {
        return;
    }
    lifecycle("0.4.0");
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn add_check_del_1_0_0() {
    if testbed::skip_unless_root("add_check_del_1_0_0") {
        return;
    }
    lifecycle("1.0.0");
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn add_check_del_1_1_0() {
    if testbed::skip_unless_root("add_check_del_1_1_0") {
        return;
    }
    lifecycle("1.1.0");
}

fn attachments(cids: &[String]) -> Value {
    Value::Array(cids.iter().map(|c| json!({"containerID": c, "ifname": "eth0"})).collect())
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn version_status_and_gc() {
    if testbed::skip_unless_root("version_status_and_gc") {
        return;
    }
    let (node, _up) = bed("vsg");
    node.configure(V4_ONLY, false, None);
    let version_env = [("CNI_COMMAND", "VERSION".to_string())];

    let v = node.cni_raw(&version_env, br#"{"cniVersion":"1.0.0"}"#).result("VERSION");
    assert_eq!(v, json!({"cniVersion": "1.0.0", "supportedVersions": SUPPORTED}));
    let v = node.cni_raw(&version_env, b"").result("VERSION without stdin");
    assert_eq!(v["cniVersion"], "1.1.0");
    assert_eq!(v["supportedVersions"], json!(SUPPORTED));

    let status_env = [("CNI_COMMAND", "STATUS".to_string())];
    node.cni_raw(&status_env, node.netconf("1.1.0").to_string().as_bytes()).empty("STATUS");
    node.cni_raw(&status_env, node.netconf("1.0.0").to_string().as_bytes()).error("STATUS on 1.0.0", 1, &["STATUS"]);

    // Three attachments of this network and one of another; GC keeps the
    // listed ones and the other network's.
    let pods: Vec<Netns> = (0..4).map(|_| Netns::new("vsgpod").unwrap()).collect();
    let cids: Vec<String> = (0..4).map(|i| format!("gc-{i}")).collect();
    for i in 0..3 {
        node.cni("ADD", &cids[i], &netns_path(&pods[i].name), &node.netconf("1.1.0")).result("ADD");
    }
    let mut other = node.netconf("1.1.0");
    other["name"] = json!("othernet");
    node.cni("ADD", &cids[3], &netns_path(&pods[3].name), &other).result("ADD on othernet");
    let before = taken(&node.file_blocks());
    assert_eq!(before.len(), 4);

    let mut gc = node.netconf("1.1.0");
    gc["cni.dev/valid-attachments"] = attachments(&[cids[0].clone(), cids[2].clone()]);
    node.cni_raw(&[("CNI_COMMAND", "GC".to_string())], gc.to_string().as_bytes()).empty("GC");
    let after: BTreeSet<String> = taken(&node.file_blocks()).into_iter().map(|t| t.handle).collect();
    let want: BTreeSet<String> =
        [handle(&cids[0]), handle(&cids[2]), merle_cni::netconf::attachment("othernet", &cids[3], "eth0").handle]
            .into();
    assert_eq!(after, want, "GC must release exactly {}", handle(&cids[1]));

    // GC needs 1.1.0.
    let mut old = gc.clone();
    old["cniVersion"] = json!("1.0.0");
    node.cni_raw(&[("CNI_COMMAND", "GC".to_string())], old.to_string().as_bytes()).error("GC on 1.0.0", 1, &["GC"]);
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn bad_input_is_refused_and_changes_nothing() {
    if testbed::skip_unless_root("bad_input_is_refused_and_changes_nothing") {
        return;
    }
    let (node, _up) = bed("bad");
    node.configure(V4_ONLY, false, None);
    // One good attachment, so the IPAM file exists and must stay as it is.
    let good = Netns::new("badgood").unwrap();
    node.cni("ADD", "good", &netns_path(&good.name), &node.netconf("1.0.0")).result("ADD");
    let pod = Netns::new("badpod").unwrap();
    let netns = netns_path(&pod.name);
    let links = node.links();
    let ipam = node.ipam_file().unwrap();
    let inode = node.ipam_inode();

    let bad_cidr = node.dir.path().join("bad-cidr.toml");
    std::fs::write(&bad_cidr, node.config_text(&[("10.244.0.5/16", None)], false, None)).unwrap();
    let bad_block = node.dir.path().join("bad-block.toml");
    std::fs::write(&bad_block, node.config_text(&[("10.244.0.0/16", Some(8))], false, None)).unwrap();
    let with_config = |p: &Path| {
        let mut c = node.netconf("1.0.0");
        c["merle_config"] = json!(p);
        c.to_string().into_bytes()
    };
    let env = |cmd: Option<&str>, ns: Option<&str>| {
        let mut e = vec![("CNI_CONTAINERID", "bad-1".to_string()), ("CNI_IFNAME", "eth0".to_string())];
        if let Some(c) = cmd {
            e.push(("CNI_COMMAND", c.to_string()));
        }
        if let Some(n) = ns {
            e.push(("CNI_NETNS", n.to_string()));
        }
        e
    };
    let conf = node.netconf("1.0.0").to_string().into_bytes();
    let mut v999 = node.netconf("1.0.0");
    v999["cniVersion"] = json!("9.9.9");
    let gone = "/var/run/netns/mrl-no-such-netns";
    let not_netns = node.config_path().display().to_string();
    let gc_unlisted = {
        let mut c = node.netconf("1.1.0");
        c.as_object_mut().unwrap().remove("cni.dev/valid-attachments");
        c.to_string().into_bytes()
    };

    struct Case<'a> {
        what: &'a str,
        env: Vec<(&'a str, String)>,
        stdin: Vec<u8>,
        code: u64,
        needles: &'a [&'a str],
    }
    let cases = [
        Case {
            what: "broken JSON",
            env: env(Some("ADD"), Some(&netns)),
            stdin: br#"{"cniVersion": "1.0.0", "name": "#.to_vec(),
            code: 6,
            needles: &["JSON"],
        },
        Case {
            what: "cniVersion 9.9.9",
            env: env(Some("ADD"), Some(&netns)),
            stdin: v999.to_string().into_bytes(),
            code: 1,
            needles: &["9.9.9"],
        },
        Case {
            what: "no CNI_NETNS",
            env: env(Some("ADD"), None),
            stdin: conf.clone(),
            code: 4,
            needles: &["CNI_NETNS"],
        },
        Case {
            what: "CNI_NETNS that does not exist",
            env: env(Some("ADD"), Some(gone)),
            stdin: conf.clone(),
            code: 3,
            needles: &[gone],
        },
        Case {
            what: "CNI_NETNS that is not a network namespace",
            env: env(Some("ADD"), Some(&not_netns)),
            stdin: conf.clone(),
            code: 3,
            needles: &[&not_netns, "not a network namespace"],
        },
        Case {
            what: "GC without cni.dev/valid-attachments",
            env: env(Some("GC"), None),
            stdin: gc_unlisted,
            code: 7,
            needles: &["cni.dev/valid-attachments"],
        },
        Case {
            what: "pool cidr with host bits",
            env: env(Some("ADD"), Some(&netns)),
            stdin: with_config(&bad_cidr),
            code: 7,
            needles: &["pools[0].cidr", "host bits"],
        },
        Case {
            what: "block_size 8",
            env: env(Some("ADD"), Some(&netns)),
            stdin: with_config(&bad_block),
            code: 7,
            needles: &["pools[0].block_size", "8"],
        },
        Case {
            what: "no CNI_COMMAND",
            env: env(None, Some(&netns)),
            stdin: conf.clone(),
            code: 4,
            needles: &["CNI_COMMAND"],
        },
        Case {
            what: "unknown CNI_COMMAND",
            env: env(Some("FROB"), Some(&netns)),
            stdin: conf.clone(),
            code: 4,
            needles: &["FROB"],
        },
    ];
    for c in &cases {
        let out = node.cni_raw(&c.env, &c.stdin);
        let e = out.error(c.what, c.code, c.needles);
        println!("{}: {e}", c.what);
        assert_eq!(node.links(), links, "{}: the node's links changed", c.what);
        assert_eq!(node.ipam_file().as_ref(), Some(&ipam), "{}: the IPAM file changed", c.what);
        assert_eq!(node.ipam_inode(), inode, "{}: the IPAM file was rewritten", c.what);
        assert_eq!(link_names(&pod.name), vec!["lo".to_string()], "{}: the pod got a link", c.what);
    }

    // An interface name the pod already uses for something else.
    let busy = Netns::new("badbusy").unwrap();
    busy.ip(&["link", "add", "eth0", "type", "veth", "peer", "name", "other0"]).unwrap();
    let out = node.cni("ADD", "bad-busy", &netns_path(&busy.name), &node.netconf("1.0.0"));
    println!("taken ifname: {}", out.error("taken ifname", 4, &["eth0", "already exists"]));
    assert_eq!(node.links(), links, "taken ifname: the node's links changed");
    assert_eq!(node.ipam_inode(), inode, "taken ifname: the IPAM file was rewritten");
    assert_eq!(link_names(&busy.name), vec!["eth0".to_string(), "lo".to_string(), "other0".to_string()]);
}

/// A second ADD of a working attachment changes nothing; one of a broken
/// attachment mends it with the same addresses. The host end's IPv6
/// gateway does not depend on the node's defaults for new links.
#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn repeated_add_and_hostile_ipv6_defaults() {
    if testbed::skip_unless_root("repeated_add_and_hostile_ipv6_defaults") {
        return;
    }
    let (node, _up) = bed("again");
    node.configure(DUAL_STACK, false, None);
    for (k, v) in [("addr_gen_mode", "1"), ("disable_ipv6", "1"), ("accept_dad", "1")] {
        node.ns.exec(&["sysctl", "-qw", &format!("net.ipv6.conf.default.{k}={v}")]).unwrap();
    }
    let pod = Netns::new("againpod").unwrap();
    let netns = netns_path(&pod.name);
    let conf = node.netconf("1.1.0");
    let first = node.cni("ADD", "again", &netns, &conf).result("ADD");
    ping(&pod, &["-6", &node.addr6()]);
    let host = host_veth_name("again", "eth0");
    let index = |ns: &Netns, dev: &str| -> u64 {
        let v: Value = serde_json::from_str(&ns.ip(&["-j", "link", "show", "dev", dev]).unwrap()).unwrap();
        v[0]["ifindex"].as_u64().unwrap()
    };
    let before = (index(&node.ns, &host), index(&pod, "eth0"));

    let second = node.cni("ADD", "again", &netns, &conf).result("second ADD");
    assert_eq!(result_ips(&second), result_ips(&first));
    assert_eq!((index(&node.ns, &host), index(&pod, "eth0")), before, "a second ADD rebuilt a working pod");

    pod.ip(&["route", "del", "default"]).unwrap();
    let third = node.cni("ADD", "again", &netns, &conf).result("ADD of a broken attachment");
    assert_eq!(result_ips(&third), result_ips(&first));
    let mut check = conf.clone();
    check["prevResult"] = third;
    node.cni("CHECK", "again", &netns, &check).empty("CHECK after the mending ADD");
    ping(&pod, &[&node.addr4()]);
    ping(&pod, &["-6", &node.addr6()]);
    node.cni("DEL", "again", &netns, &check).empty("DEL");
    assert!(node.host_links().is_empty());
}

/// `ADD` (or another command) for every index at once; waits for all.
fn all_at_once(node: &Node, cmd: &str, pods: &PodSet, cid: impl Fn(usize) -> String, conf: &Value) -> Vec<Out> {
    let children: Vec<Child> = (0..pods.len()).map(|i| node.spawn_cni(cmd, &cid(i), &pods.path(i), conf)).collect();
    wait_all(children, Duration::from_secs(90))
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn two_hundred_parallel_adds_then_dels() {
    if testbed::skip_unless_root("two_hundred_parallel_adds_then_dels") {
        return;
    }
    const N: usize = 200;
    let (node, _up) = bed("par");
    node.configure(V4_ONLY, false, None);
    let pods = PodSet::new("par", N);
    let cid = |i: usize| format!("par-{i}");
    let conf = node.netconf("1.0.0");

    let t = Instant::now();
    let outs = all_at_once(&node, "ADD", &pods, cid, &conf);
    println!("{N} parallel ADDs: {:?}", t.elapsed());
    let mut addrs = BTreeSet::new();
    for (i, o) in outs.iter().enumerate() {
        let r = o.result(&format!("ADD {i}"));
        let ips = result_ips(&r);
        assert_eq!(ips.len(), 1, "{r}");
        assert!(addrs.insert(ips[0].addr()), "{} handed out twice", ips[0]);
    }
    assert_eq!(addrs.len(), N);
    let held = assert_consistent(&node.file_blocks());
    let want: BTreeSet<String> = (0..N).map(|i| handle(&cid(i))).collect();
    assert_eq!(held.keys().cloned().collect::<BTreeSet<_>>(), want);
    let held_addrs: BTreeSet<IpAddr> = held.values().flatten().copied().collect();
    assert_eq!(held_addrs, addrs, "the results and the IPAM file disagree");
    assert_eq!(node.host_links().len(), N);

    let t = Instant::now();
    for (i, o) in all_at_once(&node, "DEL", &pods, cid, &conf).iter().enumerate() {
        o.empty(&format!("DEL {i}"));
    }
    println!("{N} parallel DELs: {:?}", t.elapsed());
    assert!(taken(&node.file_blocks()).is_empty(), "allocations left after DEL");
    assert!(node.host_links().is_empty(), "host ends left after DEL");
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn chained_portmap_and_bandwidth() {
    if testbed::skip_unless_root("chained_portmap_and_bandwidth") {
        return;
    }
    let portmap = format!("{CNI_PATH}/portmap");
    let bandwidth = format!("{CNI_PATH}/bandwidth");
    if !Path::new(&portmap).exists() {
        eprintln!("SKIP chained_portmap_and_bandwidth: {portmap} is absent (containernetworking-plugins)");
        return;
    }
    let (node, _up) = bed("chain");
    node.configure(V4_ONLY, false, None);
    let pod = Netns::new("chainpod").unwrap();
    let netns = netns_path(&pod.name);
    let cid = "chained-1";
    let host = host_veth_name(cid, "eth0");

    let merle = node.cni("ADD", cid, &netns, &node.netconf("1.0.0")).result("merle-cni ADD");
    let pm_conf = |prev: &Value| {
        json!({
            "cniVersion": "1.0.0", "name": NETWORK, "type": "portmap",
            "capabilities": {"portMappings": true},
            "runtimeConfig": {"portMappings": [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}]},
            "prevResult": prev,
        })
    };
    let bw_conf = |prev: &Value| {
        json!({
            "cniVersion": "1.0.0", "name": NETWORK, "type": "bandwidth",
            "capabilities": {"bandwidth": true},
            "runtimeConfig": {"bandwidth": {
                "ingressRate": 10_000_000, "ingressBurst": 800_000,
                "egressRate": 10_000_000, "egressBurst": 800_000,
            }},
            "prevResult": prev,
        })
    };
    let pm = wait_one(node.spawn_plugin(&portmap, "ADD", cid, &netns, &pm_conf(&merle)));
    let pm_result = pm.result("portmap ADD");
    assert_eq!(result_ips(&pm_result), result_ips(&merle), "portmap must pass merle's result on");
    let pod_ip = result_ips(&merle)[0].addr().to_string();
    let nat = node.ns.exec(&["iptables", "-t", "nat", "-S"]).unwrap();
    assert!(nat.contains("18080") && nat.contains(&pod_ip), "no DNAT for 18080 to {pod_ip}:\n{nat}");

    let bw = wait_one(node.spawn_plugin(&bandwidth, "ADD", cid, &netns, &bw_conf(&pm_result)));
    let final_result = bw.result("bandwidth ADD");
    assert_eq!(result_ips(&final_result), result_ips(&merle));
    let qdisc = node.ns.exec(&["tc", "qdisc", "show", "dev", &host]).unwrap();
    assert!(qdisc.contains("tbf"), "no tbf on {host}: {qdisc}");

    // DEL in reverse order, each with the chain's result.
    wait_one(node.spawn_plugin(&bandwidth, "DEL", cid, &netns, &bw_conf(&final_result))).empty("bandwidth DEL");
    wait_one(node.spawn_plugin(&portmap, "DEL", cid, &netns, &pm_conf(&final_result))).empty("portmap DEL");
    let mut del = node.netconf("1.0.0");
    del["prevResult"] = final_result;
    node.cni("DEL", cid, &netns, &del).empty("merle-cni DEL");

    let nat = node.ns.exec(&["iptables", "-t", "nat", "-S"]).unwrap();
    assert!(!nat.contains("18080"), "portmap's DNAT left:\n{nat}");
    assert_eq!(node.links(), vec!["eth0".to_string(), "lo".to_string()], "links left in the node");
    assert!(taken(&node.file_blocks()).is_empty());
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn killed_adds_leave_a_sound_store_and_gc_reclaims_leaks() {
    if testbed::skip_unless_root("killed_adds_leave_a_sound_store_and_gc_reclaims_leaks") {
        return;
    }
    const N: usize = 100;
    const BATCH: usize = 10;
    let (node, _up) = bed("crash");
    node.configure(DUAL_STACK, false, None);
    let mut pods = PodSet::new("crash", N);
    let cid = |i: usize| format!("crash-{i}");
    let conf = node.netconf("1.1.0");
    let mut rng = rand::rng();

    let mut done: Vec<usize> = Vec::new();
    let mut killed: Vec<usize> = Vec::new();
    let mut results = Vec::new();
    for start in (0..N).step_by(BATCH) {
        let t0 = Instant::now();
        let mut children: Vec<Child> =
            (start..start + BATCH).map(|i| node.spawn_cni("ADD", &cid(i), &pods.path(i), &conf)).collect();
        let mut kills: Vec<(Duration, usize)> = Vec::new();
        for k in 0..BATCH {
            if rng.random_bool(0.5) {
                kills.push((Duration::from_micros(rng.random_range(0..=8000)), k));
            }
        }
        kills.sort();
        for (at, k) in kills {
            if let Some(left) = at.checked_sub(t0.elapsed()) {
                std::thread::sleep(left);
            }
            let _ = children[k].kill();
        }
        for (k, o) in wait_all(children, PLUGIN_TIMEOUT).into_iter().enumerate() {
            let i = start + k;
            if o.ok() {
                results.push((i, o.result("ADD")));
                done.push(i);
            } else {
                assert_eq!(o.signal, Some(libc::SIGKILL), "ADD {i} failed without being killed: {o:?}");
                killed.push(i);
            }
        }
    }

    // The file parses, and no address is held twice.
    let held = assert_consistent(&node.file_blocks());
    for (i, r) in &results {
        let mut want: Vec<IpAddr> = result_ips(r).iter().map(IpNet::addr).collect();
        want.sort_by_key(|a| (a.is_ipv6(), *a));
        assert_eq!(held.get(&handle(&cid(*i))), Some(&want), "ADD {i} succeeded but IPAM disagrees");
    }
    let valid: HashSet<String> = done.iter().map(|&i| handle(&cid(i))).collect();
    let leaked: Vec<&String> = held.keys().filter(|h| !valid.contains(*h)).collect();
    println!(
        "{} ADDs completed, {} killed; {} killed ADDs had committed addresses: {leaked:?}",
        done.len(),
        killed.len(),
        leaked.len()
    );

    // GC with the completed ADDs as the valid attachments reclaims every leak.
    let mut gc = node.netconf("1.1.0");
    gc["cni.dev/valid-attachments"] = attachments(&done.iter().map(|&i| cid(i)).collect::<Vec<_>>());
    node.cni_raw(&[("CNI_COMMAND", "GC".to_string())], gc.to_string().as_bytes()).empty("GC");
    let after = assert_consistent(&node.file_blocks());
    let left: HashSet<String> = after.keys().cloned().collect();
    assert_eq!(left, valid, "after GC exactly the completed attachments hold addresses");
    for h in &valid {
        assert_eq!(after[h].len(), 2, "{h} lost addresses to GC");
    }

    // The completed attachments are intact.
    let checks: Vec<Child> = results
        .iter()
        .map(|(i, r)| {
            let mut c = conf.clone();
            c["prevResult"] = r.clone();
            node.spawn_cni("CHECK", &cid(*i), &pods.path(*i), &c)
        })
        .collect();
    for (o, i) in wait_all(checks, Duration::from_secs(60)).iter().zip(&done) {
        o.empty(&format!("CHECK {i}"));
    }

    // Host ends that killed ADDs left go with their pods' namespaces.
    pods.remove(&killed);
    let orphans = || {
        let links = node.host_links();
        killed.iter().map(|&i| host_veth_name(&cid(i), "eth0")).filter(|h| links.contains(h)).collect::<Vec<_>>()
    };
    poll("the killed ADDs' host ends to go", Duration::from_secs(10), || orphans().is_empty().then_some(()))
        .unwrap_or_else(|e| panic!("{e}: {:?}", orphans()));
    assert_eq!(node.host_links().len(), done.len());

    // The store serves new pods, some with the reclaimed addresses.
    let fresh = PodSet::new("crashnew", BATCH);
    let new_cid = |i: usize| format!("fresh-{i}");
    let mut in_use: HashSet<IpAddr> = after.values().flatten().copied().collect();
    for (i, o) in all_at_once(&node, "ADD", &fresh, new_cid, &conf).iter().enumerate() {
        for ip in result_ips(&o.result(&format!("fresh ADD {i}"))) {
            assert!(in_use.insert(ip.addr()), "{ip} handed out twice");
        }
    }
}

fn with_name(mut conf: Value, name: &str) -> Value {
    conf["name"] = json!(name);
    conf
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn gc_releases_only_its_own_network() {
    if testbed::skip_unless_root("gc_releases_only_its_own_network") {
        return;
    }
    let (node, _up) = bed("gcnet");
    node.configure(V4_ONLY, false, None);
    let (p1, p2) = (Netns::new("gcnet1").unwrap(), Netns::new("gcnet2").unwrap());
    node.cni("ADD", "c1", &netns_path(&p1.name), &node.netconf("1.1.0")).result("ADD on merlenet");
    let v2 = with_name(node.netconf("1.1.0"), "merlenet.v2");
    node.cni("ADD", "c2", &netns_path(&p2.name), &v2).result("ADD on merlenet.v2");
    let mut gc = node.netconf("1.1.0");
    gc["cni.dev/valid-attachments"] = attachments(&["c1".to_string()]);
    node.cni_raw(&[("CNI_COMMAND", "GC".to_string())], gc.to_string().as_bytes()).empty("GC");
    let left: BTreeSet<String> = taken(&node.file_blocks()).into_iter().map(|t| t.handle).collect();
    assert!(left.contains("merlenet.v2.c2"), "GC of merlenet released merlenet.v2's live attachment: {left:?}");
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn handles_of_distinct_attachments_do_not_collide() {
    if testbed::skip_unless_root("handles_of_distinct_attachments_do_not_collide") {
        return;
    }
    let (node, _up) = bed("coll");
    node.configure(V4_ONLY, false, None);
    let (p1, p2) = (Netns::new("coll1").unwrap(), Netns::new("coll2").unwrap());
    let first = node.cni("ADD", "b.c", &netns_path(&p1.name), &with_name(node.netconf("1.1.0"), "a")).result("ADD 1");
    let second = node.cni("ADD", "c", &netns_path(&p2.name), &with_name(node.netconf("1.1.0"), "a.b"));
    let first_ip = result_ips(&first)[0].addr();
    let held: Vec<IpAddr> = taken(&node.file_blocks()).into_iter().map(|t| t.ip).collect();
    assert!(held.contains(&first_ip), "the first attachment lost {first_ip} to the second's failed ADD: {second:?}");
    let second = second.result("ADD 2");
    assert_ne!(result_ips(&second)[0].addr(), first_ip);
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn gc_of_a_live_attachment_does_not_wedge_later_adds() {
    if testbed::skip_unless_root("gc_of_a_live_attachment_does_not_wedge_later_adds") {
        return;
    }
    let (node, _up) = bed("wedge");
    node.configure(V4_ONLY, false, None);
    let (p1, p2) = (Netns::new("wedge1").unwrap(), Netns::new("wedge2").unwrap());
    // c1 as a killed ADD leaves it: plumbed, but unknown to the runtime.
    node.cni("ADD", "c1", &netns_path(&p1.name), &node.netconf("1.1.0")).result("ADD c1");
    let mut gc = node.netconf("1.1.0");
    gc["cni.dev/valid-attachments"] = json!([]);
    node.cni_raw(&[("CNI_COMMAND", "GC".to_string())], gc.to_string().as_bytes()).empty("GC");
    node.cni("ADD", "c2", &netns_path(&p2.name), &node.netconf("1.1.0")).result("ADD c2 after GC");
    ping(&p2, &[&node.addr4()]);
}

/// The JSON block under "## The CNI network configuration" in
/// docs/configuration.md.
fn documented_conflist() -> Value {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/configuration.md")).unwrap();
    let section = &doc[doc.find("## The CNI network configuration").expect("the CNI section")..];
    let start = section.find("```json\n").expect("a json block") + "```json\n".len();
    let end = start + section[start..].find("```").unwrap();
    serde_json::from_str(&section[start..end]).expect("the documented conflist is JSON")
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn the_documented_conflist_runs_as_runtimes_run_it() {
    if testbed::skip_unless_root("the_documented_conflist_runs_as_runtimes_run_it") {
        return;
    }
    // What the docs show is what the project installs and the demo runs.
    let installed: Value = serde_json::from_str(testbed::cni::CONFLIST).unwrap();
    assert_eq!(documented_conflist(), installed, "docs/configuration.md and conf/examples/10-merle.conflist differ");
    let version = installed["cniVersion"].as_str().unwrap().to_owned();
    // Every chained plugin must accept the list's version: runtimes (libcni)
    // refuse a list that one of its plugins cannot speak.
    for p in installed["plugins"].as_array().unwrap() {
        let t = p["type"].as_str().unwrap();
        let program = if t == "merle-cni" { BIN.to_owned() } else { format!("{CNI_PATH}/{t}") };
        let mut c = std::process::Command::new(&program);
        c.env("CNI_COMMAND", "VERSION").stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap_or_else(|e| panic!("{program}: {e} (containernetworking-plugins)"));
        // A plugin may answer VERSION without reading its input and exit:
        // the write then meets a closed pipe, which is not a failure.
        if let Err(e) = std::io::Write::write_all(&mut child.stdin.take().unwrap(), br#"{"cniVersion":"0.3.1"}"#) {
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{program}: {e}");
        }
        let v: Value = serde_json::from_slice(&child.wait_with_output().unwrap().stdout).unwrap();
        assert!(
            v["supportedVersions"].as_array().unwrap().iter().any(|s| s == version.as_str()),
            "{t} does not accept cniVersion {version}: it supports {}",
            v["supportedVersions"]
        );
    }

    // The same list at each version that docs/configuration.md says works
    // with the reference plugins: addresses, port mapping, shaping, CHECK,
    // and a clean DEL.
    let (node, _up) = bed("clist");
    node.configure(DUAL_STACK, false, None);
    for (i, v) in [version.as_str(), "0.4.0", "0.3.1"].into_iter().enumerate() {
        let mut list = installed.clone();
        list["cniVersion"] = json!(v);
        let mut rt =
            testbed::cni::Runtime::from_conflist(&list.to_string(), Path::new(BIN), &node.config_path()).unwrap();
        rt.runtime_config.port_mappings = vec![json!({"hostPort": 18080, "containerPort": 80, "protocol": "tcp"})];
        rt.runtime_config.bandwidth = Some(json!({
            "ingressRate": 10_000_000, "ingressBurst": 800_000, "egressRate": 10_000_000, "egressBurst": 800_000,
        }));
        let pod = Netns::new(&format!("clist{i}")).unwrap();
        let cid = format!("clist-{}", v.replace('.', ""));
        let r = rt.add(&node.ns, &pod, &cid).unwrap_or_else(|e| panic!("cniVersion {v}: {e:#}"));
        assert_eq!(r["cniVersion"], v);
        let ip = result_ips(&r)[0].addr().to_string();
        for a in result_ips(&r) {
            let a = a.addr().to_string();
            node.ns.exec(&["ping", "-c", "1", "-W", "2", &a]).unwrap_or_else(|e| panic!("cniVersion {v}: {e}"));
        }
        let nat = node.ns.exec(&["iptables", "-t", "nat", "-S"]).unwrap();
        assert!(nat.contains("18080") && nat.contains(&ip), "cniVersion {v}: no DNAT for 18080 to {ip}:\n{nat}");
        let host = host_veth_name(&cid, "eth0");
        let qdisc = node.ns.exec(&["tc", "qdisc", "show", "dev", &host]).unwrap();
        assert!(qdisc.contains("tbf"), "cniVersion {v}: no tbf on {host}: {qdisc}");
        if v != "0.3.1" {
            // portmap 1.1.1's CHECK looks for its IPv4 rules in ip6tables
            // and always fails; runtimes do not run CHECK, so only
            // merle-cni's and bandwidth's are asked.
            rt.check_where(&node.ns, &pod, &cid, |t| t != "portmap")
                .unwrap_or_else(|e| panic!("cniVersion {v} CHECK: {e:#}"));
        }
        rt.del(&node.ns, &pod, &cid).unwrap_or_else(|e| panic!("cniVersion {v} DEL: {e:#}"));
        let nat = node.ns.exec(&["iptables", "-t", "nat", "-S"]).unwrap();
        assert!(!nat.contains("18080"), "cniVersion {v}: portmap's DNAT left:\n{nat}");
        assert_eq!(node.links(), vec!["eth0".to_string(), "lo".to_string()], "cniVersion {v}: links left");
        assert!(taken(&node.file_blocks()).is_empty(), "cniVersion {v}: addresses left");
    }
}

fn run_install(args: &[std::ffi::OsString]) -> std::process::Output {
    std::process::Command::new(BIN).arg("install").args(args).output().unwrap()
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn install_puts_the_plugin_and_its_list_in_place_atomically_once_and_then_a_pod_runs_on_them() {
    if testbed::skip_unless_root("install_puts_the_plugin_and_its_list_in_place") {
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let dir = testbed::TempDir::new("install").unwrap();
    let (bin, net) = (dir.path().join("bin"), dir.path().join("net.d"));
    std::fs::create_dir_all(&net).unwrap();
    let cfg = dir.path().join("merle.toml");
    let args = |bin: &Path| -> Vec<std::ffi::OsString> {
        ["--bin-dir", bin.to_str().unwrap(), "--conf-dir", net.to_str().unwrap(), "--plugins-from", CNI_PATH]
            .into_iter()
            .chain(["--merle-config", cfg.to_str().unwrap()])
            .map(Into::into)
            .collect()
    };

    // No plugin directory: named, and nothing written.
    let out = run_install(&args(&bin));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(bin.to_str().unwrap()), "{err}");
    assert_eq!(std::fs::read_dir(&net).unwrap().count(), 0, "nothing written");
    // A bad option: clap's usage error, exit 2.
    assert_eq!(run_install(&["--mtu".into(), "big".into()]).status.code(), Some(2));

    // The node has its own portmap: kept. bandwidth comes from the image.
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(format!("{CNI_PATH}/portmap"), bin.join("portmap")).unwrap();
    let own = std::fs::metadata(bin.join("portmap")).unwrap().ino();
    let out = run_install(&args(&bin));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("merle-cni: written") && report.contains("10-merle.conflist: written"), "{report}");
    assert!(report.contains("portmap: kept") && report.contains("bandwidth: written"), "{report}");
    assert_eq!(std::fs::metadata(bin.join("portmap")).unwrap().ino(), own);
    assert_eq!(std::fs::read(bin.join("merle-cni")).unwrap(), std::fs::read(BIN).unwrap());
    assert_eq!(std::fs::metadata(bin.join("merle-cni")).unwrap().mode() & 0o777, 0o755);
    let list = net.join("10-merle.conflist");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&list).unwrap()).unwrap();
    assert_eq!(v["plugins"][0]["merle_config"], cfg.to_str().unwrap());
    let mut want: Value = serde_json::from_str(testbed::cni::CONFLIST).unwrap();
    want["plugins"][0]["merle_config"] = json!(cfg);
    assert_eq!(v, want, "the project's list, pointing at this merle config");
    let names: Vec<String> =
        std::fs::read_dir(&net).unwrap().flatten().map(|e| e.file_name().into_string().unwrap()).collect();
    assert_eq!(names, ["10-merle.conflist"], "no temporary file left");

    // Again: nothing changes, not even the inodes a watching runtime sees.
    let inodes = |p: &Path| std::fs::metadata(p).unwrap().ino();
    let (li, bi) = (inodes(&list), inodes(&bin.join("merle-cni")));
    std::fs::write(net.join("05-other.conflist"), "{}").unwrap();
    let out = run_install(&args(&bin));
    assert!(out.status.success());
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("10-merle.conflist: unchanged") && report.contains("merle-cni: unchanged"), "{report}");
    assert_eq!((inodes(&list), inodes(&bin.join("merle-cni"))), (li, bi));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("05-other.conflist sort before 10-merle.conflist"), "the shadowing list is named: {err}");
    std::fs::remove_file(net.join("05-other.conflist")).unwrap();
    // An edited list is put back, by rename.
    std::fs::write(&list, "{}").unwrap();
    let out = run_install(&args(&bin));
    assert!(String::from_utf8_lossy(&out.stdout).contains("10-merle.conflist: written"));
    assert_eq!(serde_json::from_str::<Value>(&std::fs::read_to_string(&list).unwrap()).unwrap(), want);

    // As the DaemonSet's init container runs it: the ConfigMap's merle
    // config copied to the host and the node's name (from the downward
    // API) left where merle-cni finds it, the directories made.
    let host = dir.path().join("host");
    let (map, to, nodename) =
        (dir.path().join("configmap.toml"), host.join("etc/merle/merle.toml"), host.join("var/lib/merle/nodename"));
    let good = "[node]\naddress = \"10.250.0.1/24\"\n";
    std::fs::write(&map, good).unwrap();
    let mut full = args(&bin);
    full.extend(
        ["--config-from", map.to_str().unwrap(), "--config-to", to.to_str().unwrap()]
            .into_iter()
            .chain(["--nodename-file", nodename.to_str().unwrap()])
            .map(std::ffi::OsString::from),
    );
    let daemonset = |extra: &[&str], env: Option<&str>| {
        let mut c = std::process::Command::new(BIN);
        c.arg("install").args(&full).args(extra).env_remove("MERLE_NODE_NAME");
        if let Some(n) = env {
            c.env("MERLE_NODE_NAME", n);
        }
        c.output().unwrap()
    };
    let out = daemonset(&[], Some("worker-7"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains(&format!("{}: written", to.display())), "{report}");
    assert!(report.contains(&format!("{}: written", nodename.display())), "{report}");
    assert_eq!(std::fs::read_to_string(&to).unwrap(), good);
    assert_eq!(std::fs::read_to_string(&nodename).unwrap(), "worker-7\n");
    let out = daemonset(&["--node-name", "worker-7"], None);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains(&format!("{}: unchanged", nodename.display())), "{report}");
    // A name that is not one, or only one half of --config-from/--config-to:
    // refused by name, and nothing changes.
    let out = daemonset(&["--node-name", "two words"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"two words\" is not a name"), "{out:?}");
    assert_eq!(std::fs::read_to_string(&nodename).unwrap(), "worker-7\n");
    // A mounted Secret, as the kubelet lays it out (keys are symlinks into
    // a hidden ..data directory): its files reach the host, mode 0600,
    // and the hidden entries do not. A Secret not created (no directory)
    // copies nothing and is no error.
    let secret = dir.path().join("secret");
    std::fs::create_dir_all(secret.join("..2026_12_02_data")).unwrap();
    std::fs::write(secret.join("..2026_12_02_data/ca.crt"), "CA PEM\n").unwrap();
    std::os::unix::fs::symlink("..2026_12_02_data", secret.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/ca.crt", secret.join("ca.crt")).unwrap();
    let host_certs = host.join("etc/merle/etcd");
    let with_secret = [
        "--node-name",
        "worker-7",
        "--secrets-from",
        secret.to_str().unwrap(),
        "--secrets-to",
        host_certs.to_str().unwrap(),
    ];
    let out = daemonset(&with_secret, None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(host_certs.join("ca.crt")).unwrap(), "CA PEM\n");
    assert_eq!(std::fs::metadata(host_certs.join("ca.crt")).unwrap().mode() & 0o777, 0o600);
    let names: Vec<String> =
        std::fs::read_dir(&host_certs).unwrap().flatten().map(|e| e.file_name().into_string().unwrap()).collect();
    assert_eq!(names, ["ca.crt"], "only the Secret's keys");
    let missing = dir.path().join("no-secret");
    let out = daemonset(
        &[
            "--node-name",
            "worker-7",
            "--secrets-from",
            missing.to_str().unwrap(),
            "--secrets-to",
            host_certs.to_str().unwrap(),
        ],
        None,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // A ConfigMap merled could not run with: the host keeps its copy.
    std::fs::write(&map, "[node]\naddress = \"10.250.0.1/24\"\nas_number = 0\n").unwrap();
    let out = daemonset(&["--node-name", "worker-7"], None);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("configmap.toml is not a merle configuration") && err.contains("node.as_number"), "{err}");
    assert_eq!(std::fs::read_to_string(&to).unwrap(), good);
    let out = run_install(&["--config-from".into(), map.clone().into_os_string()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config-to"), "{out:?}");
    let out = daemonset(&["--config-from", "/nonexistent/merle.toml"], None);
    assert_eq!(out.status.code(), Some(2), "given twice: {out:?}");

    // A pod through what it installed (testbed::cni::Runtime::new runs the
    // same install): merle-cni, portmap and bandwidth from its bin dir.
    let (node, _up) = bed("inst");
    node.configure(DUAL_STACK, false, None);
    let mut rt = testbed::cni::Runtime::new(Path::new(BIN), &node.config_path()).unwrap();
    // Both chained plugins at work (Debian's bandwidth 1.1.1 crashes on a
    // CHECK without its runtime config).
    rt.runtime_config.port_mappings = vec![json!({"hostPort": 18081, "containerPort": 80, "protocol": "tcp"})];
    rt.runtime_config.bandwidth = Some(json!({
        "ingressRate": 10_000_000, "ingressBurst": 800_000, "egressRate": 10_000_000, "egressBurst": 800_000,
    }));
    let inst = rt.installed.as_ref().unwrap();
    assert!(inst.bin_dir.join("bandwidth").is_file() && inst.bin_dir.join("portmap").is_file());
    let pod = Netns::new("instpod").unwrap();
    let r = rt.add(&node.ns, &pod, "inst-1").unwrap();
    assert_eq!(r["ips"].as_array().unwrap().len(), 2, "{r}");
    // portmap 1.1.1's CHECK looks for IPv4 rules in ip6tables: as above.
    rt.check_where(&node.ns, &pod, "inst-1", |t| t != "portmap").unwrap();
    rt.del(&node.ns, &pod, "inst-1").unwrap();
}

/// A tmpfs mounted over a directory for the test, unmounted on drop.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(at: &Path, size: &str) -> Self {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "merle-test", &at.display().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount tmpfs at {}", at.display());
        Self(at.to_owned())
    }

    fn remount(&self, opts: &str) {
        let ok = Command::new("mount").args(["-o", &format!("remount,{opts}"), &self.0.display().to_string()]).status();
        assert!(ok.unwrap().success(), "remount {opts}");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Issue 18: the IPAM file store on a full disk and on a read-only one. An
/// ADD fails cleanly with an error that says why, leaves no link behind,
/// and the store keeps every allocation it had; with room again, or
/// writable again, the same ADD works.
#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn a_full_or_read_only_store_fails_adds_cleanly_and_loses_nothing() {
    if testbed::skip_unless_root("a_full_or_read_only_store_fails_adds_cleanly_and_loses_nothing") {
        return;
    }
    let (node, _up) = bed("disk");
    let disk = SmallDisk::mount(&node.data_dir(), "256k");
    node.configure(V4_ONLY, false, None);
    let first = Netns::new("diskone").unwrap();
    let r = node.cni("ADD", "one", &netns_path(&first.name), &node.netconf("1.0.0")).result("ADD");
    let kept = result_ips(&r);
    let ipam = node.ipam_file().unwrap();
    // Fill the disk.
    let filler = node.data_dir().join("filler");
    let _ = Command::new("dd").args(["if=/dev/zero", &format!("of={}", filler.display()), "bs=4k"]).output();
    let pod = Netns::new("disktwo").unwrap();
    let links = node.links();
    let out = node.cni("ADD", "two", &netns_path(&pod.name), &node.netconf("1.0.0"));
    assert!(!out.ok(), "an ADD on a full disk must fail: {out:?}");
    let e = out.json();
    println!("full disk: {e}");
    assert!(e["msg"].as_str().unwrap_or("").contains("No space left"), "{e}");
    assert_eq!(node.links(), links, "the failed ADD left a link");
    assert_eq!(link_names(&pod.name), vec!["lo".to_string()]);
    assert_eq!(node.ipam_file().unwrap(), ipam, "the store is as it was");
    std::fs::remove_file(&filler).unwrap();
    let r = node.cni("ADD", "two", &netns_path(&pod.name), &node.netconf("1.0.0")).result("ADD with room again");
    assert_ne!(result_ips(&r), kept);
    // Read-only.
    disk.remount("ro");
    let ipam = node.ipam_file().unwrap();
    let third = Netns::new("diskthree").unwrap();
    let links = node.links();
    let out = node.cni("ADD", "three", &netns_path(&third.name), &node.netconf("1.0.0"));
    assert!(!out.ok(), "an ADD on a read-only store must fail: {out:?}");
    let e = out.json();
    println!("read-only: {e}");
    assert!(e["msg"].as_str().unwrap_or("").contains("Read-only"), "{e}");
    assert_eq!(node.links(), links, "the failed ADD left a link");
    assert_eq!(node.ipam_file().unwrap(), ipam);
    disk.remount("rw");
    node.cni("ADD", "three", &netns_path(&third.name), &node.netconf("1.0.0")).result("ADD once writable");
    for (cid, ns) in [("one", &first), ("two", &pod), ("three", &third)] {
        node.cni("DEL", cid, &netns_path(&ns.name), &node.netconf("1.0.0")).empty("DEL");
    }
    drop(disk);
}
