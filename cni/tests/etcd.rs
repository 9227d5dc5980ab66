//! merle-cni against a real etcd (Debian's etcd-server): two nodes sharing
//! a pool small enough that they must borrow, strict affinity, the node
//! registry, and etcd going away.
//!
//! etcd runs in a namespace of its own, listening on its loopback and on
//! 10.99.0.1, on ports found free there: the plugins run inside node
//! namespaces, which cannot reach the host's loopback, and the host's
//! namespace stays untouched. Each simulated node is a namespace whose
//! default route leads to etcd's. The tests read the store with the
//! library, from a thread inside etcd's namespace.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::process::Child;
use std::time::{Duration, Instant};

use common::*;
use merle_ipam::etcd::EtcdStore;
use merle_ipam::{self as ipam, alloc, Blocks, NodeRecord, Store};
use testbed::netns::Netns;
use testbed::wait::{poll, until};
use testbed::TempDir;

/// etcd's client address as the nodes see it.
const ETCD_ADDR: &str = "10.99.0.1";

/// One etcd member in its own namespace, stopped on drop.
#[derive(Debug)]
struct Etcd {
    server: testbed::etcd::Etcd,
    ns: Netns,
    dir: TempDir,
}

impl Etcd {
    /// Starts etcd and waits until a store can load from it; `None` (with a
    /// printed reason) when not root. A missing etcd fails the test: the
    /// README test command installs it.
    fn start(test: &str) -> Option<Self> {
        if testbed::skip_unless_root(test) {
            return None;
        }
        assert!(
            testbed::etcd::Etcd::installed(),
            "{} is missing: run the README test command, which installs etcd-server",
            testbed::etcd::ETCD
        );
        let ns = Netns::new("etcd").unwrap();
        ns.ip(&["addr", "add", &format!("{ETCD_ADDR}/32"), "dev", "lo"]).unwrap();
        let server = testbed::etcd::Etcd::start(Some(&ns), ETCD_ADDR.parse().unwrap()).unwrap();
        let etcd = Self { server, ns, dir: TempDir::new("etcd-lock").unwrap() };
        let ds = etcd.datastore("/ready");
        let t = Instant::now();
        let answers = || {
            let ds = ds.clone();
            in_ns(&etcd.ns, move || load(&ds)).ok()
        };
        poll("etcd to answer", Duration::from_secs(20), answers)
            .unwrap_or_else(|e| panic!("{e}: {}", etcd.server.daemon.log_tail(20)));
        println!("etcd answers after {:?}", t.elapsed());
        Some(etcd)
    }

    fn endpoint(&self) -> String {
        self.server.url.clone()
    }

    fn ds(&self, prefix: &str) -> EtcdDs {
        EtcdDs { endpoint: self.endpoint(), prefix: prefix.to_owned() }
    }

    /// A datastore for the library, with a lock directory of its own.
    fn datastore(&self, prefix: &str) -> conf::Datastore {
        conf::Datastore {
            kind: conf::DatastoreKind::Etcd,
            path: self.dir.path().join("lock"),
            endpoints: vec![self.endpoint()],
            prefix: prefix.to_owned(),
            timeout_ms: 1000,
            ..Default::default()
        }
    }

    fn stop(&mut self) {
        self.server.stop();
    }
}

/// Runs `f` on a thread inside `ns`: the store's runtime threads, started
/// from it, are there too.
fn in_ns<T: Send + 'static>(ns: &Netns, f: impl FnOnce() -> Result<T, String> + Send + 'static) -> Result<T, String> {
    let thread = ns.spawn(f).map_err(|e| e.to_string())?;
    until("the netns thread", Duration::from_secs(30), Duration::from_millis(5), || thread.is_finished().then_some(()))
        .map_err(|e| e.to_string())?;
    let entered = thread.join().map_err(|_| "the netns thread panicked".to_string())?;
    entered.map_err(|e| e.to_string())?
}

fn load(ds: &conf::Datastore) -> Result<Blocks, String> {
    let s = EtcdStore::connect(ds).map_err(|e| e.to_string())?;
    s.load().map_err(|e| e.to_string())
}

/// The blocks, as node `cfg` sees them.
fn blocks(etcd: &Etcd, cfg: conf::Config) -> Blocks {
    in_ns(&etcd.ns, move || ipam::open(&cfg).and_then(|s| s.load()).map_err(|e| e.to_string())).unwrap()
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn two_nodes_share_a_small_pool_and_borrow() {
    let Some(etcd) = Etcd::start("two_nodes_share_a_small_pool_and_borrow") else { return };
    // 200 ADDs, as against the file store. 4 blocks of 64: 130 pods need 3
    // blocks and 70 need 2, 5 in all, so however the ADDs interleave, some
    // address must be borrowed.
    const NA: usize = 130;
    const NB: usize = 70;
    let pools = [("10.250.0.0/24", Some(26))];
    let ds = etcd.ds("/merle-share");
    let a = Node::new("etcda", "node-a", &etcd.ns, 1);
    let b = Node::new("etcdb", "node-b", &etcd.ns, 2);
    a.configure(&pools, false, Some(&ds));
    b.configure(&pools, false, Some(&ds));
    let pods = PodSet::new("share", NA + NB);
    let node_of = |i: usize| if i < NA { &a } else { &b };
    let cid = |i: usize| format!("{}-{i}", node_of(i).name);
    // Each node's plugin reads that node's configuration.
    let conf = |i: usize| node_of(i).netconf("1.0.0");

    let t = Instant::now();
    let children: Vec<Child> =
        (0..NA + NB).map(|i| node_of(i).spawn_cni("ADD", &cid(i), &pods.path(i), &conf(i))).collect();
    let outs = wait_all(children, Duration::from_secs(90));
    println!("{} parallel ADDs on two nodes: {:?}", NA + NB, t.elapsed());
    let mut addrs = BTreeSet::new();
    for (i, o) in outs.iter().enumerate() {
        let r = o.result(&format!("ADD {}", cid(i)));
        let ips = result_ips(&r);
        assert_eq!(ips.len(), 1, "{r}");
        assert!(addrs.insert(ips[0].addr()), "{} handed out twice", ips[0]);
    }

    let all = blocks(&etcd, a.config());
    let held = assert_consistent(&all);
    assert_eq!(held.len(), NA + NB);
    let held_addrs: BTreeSet<IpAddr> = held.values().flatten().copied().collect();
    assert_eq!(held_addrs, addrs, "the results and etcd disagree");
    let allocs = taken(&all);
    for i in 0..NA + NB {
        let t = allocs.iter().find(|t| t.handle == handle(&cid(i))).unwrap();
        assert_eq!(t.node, node_of(i).name, "{} allocated by the wrong node", t.handle);
    }
    assert!(all.values().all(|b| matches!(b.affinity.as_deref(), Some("node-a" | "node-b"))));
    let borrowed: Vec<&Taken> = allocs.iter().filter(|t| t.borrowed()).collect();
    println!(
        "blocks: {:?}; borrowed: {:?}",
        all.values().map(|b| (b.cidr.to_string(), b.affinity.clone(), b.used())).collect::<Vec<_>>(),
        borrowed.iter().map(|t| (t.ip, &t.node)).collect::<Vec<_>>()
    );
    assert!(!borrowed.is_empty(), "nothing was borrowed");
    assert_eq!(a.host_links().len(), NA);
    assert_eq!(b.host_links().len(), NB);

    let children: Vec<Child> =
        (0..NA + NB).map(|i| node_of(i).spawn_cni("DEL", &cid(i), &pods.path(i), &conf(i))).collect();
    for (i, o) in wait_all(children, Duration::from_secs(90)).iter().enumerate() {
        o.empty(&format!("DEL {}", cid(i)));
    }
    assert!(taken(&blocks(&etcd, b.config())).is_empty(), "allocations left after DEL");
    assert!(a.host_links().is_empty() && b.host_links().is_empty());
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn strict_affinity_with_an_exhausted_pool_is_code_100() {
    let Some(etcd) = Etcd::start("strict_affinity_with_an_exhausted_pool_is_code_100") else { return };
    // Two blocks of 8, both claimed by node-a, which uses 12 addresses.
    let pools = [("10.250.0.0/28", Some(29))];
    let ds = etcd.ds("/merle-strict");
    let a = Node::new("stricta", "node-a", &etcd.ns, 1);
    let b = Node::new("strictb", "node-b", &etcd.ns, 2);
    a.configure(&pools, true, Some(&ds));
    b.configure(&pools, true, Some(&ds));
    let cfg = a.config();
    let before = in_ns(&etcd.ns, move || {
        let s = ipam::open(&cfg).map_err(|e| e.to_string())?;
        for i in 0..12 {
            let h = merle_cni::netconf::attachment(common::NETWORK, &format!("seed-{i}"), "eth0");
            let req = alloc::Assign { holder: &h, node: "node-a", pools: &cfg.pools, strict_affinity: true };
            ipam::transact(s.as_ref(), |b| alloc::assign(b, &req)).map_err(|e| e.to_string())?;
        }
        s.load().map_err(|e| e.to_string())
    })
    .unwrap();
    assert_eq!(before.len(), 2);
    assert!(before.values().all(|b| b.is_affine_to("node-a")));

    let pod = Netns::new("strictpod").unwrap();
    let netns = netns_path(&pod.name);
    let links = b.links();
    let out = b.cni("ADD", "strict-1", &netns, &b.netconf("1.0.0"));
    let e = out.error("ADD on node-b with strict affinity", 100, &["IPv4", "strict_affinity"]);
    println!("{e}");
    assert_eq!(blocks(&etcd, b.config()), before, "the failed ADD changed the store");
    assert_eq!(b.links(), links, "the failed ADD left a link");
    assert_eq!(link_names(&pod.name), vec!["lo".to_string()]);

    // Without strict affinity the same ADD borrows one of node-a's four
    // free addresses: the 100 came from strict affinity alone.
    b.configure(&pools, false, Some(&ds));
    let r = b.cni("ADD", "strict-1", &netns, &b.netconf("1.0.0")).result("ADD on node-b, borrowing");
    let ip = result_ips(&r)[0].addr();
    let t = taken(&blocks(&etcd, b.config())).into_iter().find(|t| t.ip == ip).unwrap();
    assert!(t.borrowed() && t.node == "node-b" && t.affinity.as_deref() == Some("node-a"), "{t:?}");
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn node_registry_round_trips() {
    let Some(etcd) = Etcd::start("node_registry_round_trips") else { return };
    let ds = etcd.datastore("/merle-registry");
    let records = vec![
        NodeRecord {
            name: "node-a".into(),
            address: "10.0.1.1/24".parse().unwrap(),
            address_v6: Some("fd00:1::1/64".parse().unwrap()),
            as_number: 64512,
        },
        NodeRecord {
            name: "node-b".into(),
            address: "10.0.2.1/24".parse().unwrap(),
            address_v6: None,
            as_number: 64513,
        },
    ];
    let want = records.clone();
    let (first, second) = in_ns(&etcd.ns, move || {
        let s = EtcdStore::connect(&ds).map_err(|e| e.to_string())?;
        let reg = s.registry().ok_or("the etcd store has no registry")?;
        if !reg.nodes().map_err(|e| e.to_string())?.is_empty() {
            return Err("a fresh prefix has nodes".into());
        }
        for r in &records {
            reg.register(r).map_err(|e| e.to_string())?;
        }
        let mut first = reg.nodes().map_err(|e| e.to_string())?;
        first.sort_by(|x, y| x.name.cmp(&y.name));
        // Registering again replaces the record.
        let mut moved = records[0].clone();
        moved.address = "10.0.9.1/24".parse().unwrap();
        reg.register(&moved).map_err(|e| e.to_string())?;
        let mut second = reg.nodes().map_err(|e| e.to_string())?;
        second.sort_by(|x, y| x.name.cmp(&y.name));
        Ok((first, second))
    })
    .unwrap();
    assert_eq!(first, want);
    assert_eq!(second.len(), 2);
    assert_eq!(second[0].address, "10.0.9.1/24".parse().unwrap());
    assert_eq!(second[1], want[1]);
}

#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn etcd_down_is_try_again_and_creates_nothing() {
    let Some(mut etcd) = Etcd::start("etcd_down_is_try_again_and_creates_nothing") else { return };
    let ds = etcd.ds("/merle-down");
    let a = Node::new("downa", "node-a", &etcd.ns, 1);
    a.configure(V4_ONLY, false, Some(&ds));
    let up_pod = Netns::new("downpod").unwrap();
    a.cni("ADD", "down-1", &netns_path(&up_pod.name), &a.netconf("1.0.0")).result("ADD with etcd up");

    etcd.stop();
    let pod = Netns::new("downpod").unwrap();
    let links = a.links();
    let t = Instant::now();
    let out = a.cni("ADD", "down-2", &netns_path(&pod.name), &a.netconf("1.0.0"));
    println!("ADD with etcd down took {:?}", t.elapsed());
    let e = out.error("ADD with etcd down", 11, &["etcd"]);
    println!("{e}");
    assert_eq!(a.links(), links, "the failed ADD left a link");
    assert_eq!(link_names(&pod.name), vec!["lo".to_string()]);
    // STATUS says the plugin cannot serve ADDs.
    let st = a.cni_raw(&[("CNI_COMMAND", "STATUS".to_string())], a.netconf("1.1.0").to_string().as_bytes());
    st.error("STATUS with etcd down", 50, &["etcd"]);
    // DEL of the pod that has an address: try again too, and nothing half
    // done: its link and its allocation both stay, for the runtime's retry.
    let before_del = a.links();
    let out = a.cni("DEL", "down-1", &netns_path(&up_pod.name), &a.netconf("1.0.0"));
    println!("DEL with etcd down: {}", out.error("DEL with etcd down", 11, &["etcd"]));
    assert_eq!(a.links(), before_del, "a DEL that could not release the address must keep the pod's link");

    // etcd back: everything recovers by itself, nothing restarted.
    etcd.server.restart().unwrap();
    let t = Instant::now();
    let r = poll("ADD once etcd is back", Duration::from_secs(30), || {
        let out = a.cni("ADD", "down-2", &netns_path(&pod.name), &a.netconf("1.0.0"));
        out.ok().then(|| out.result("ADD after the restart"))
    })
    .unwrap();
    println!("ADD succeeded {:?} after etcd came back", t.elapsed());
    let got = result_ips(&r);
    a.cni("DEL", "down-1", &netns_path(&up_pod.name), &a.netconf("1.0.0")).empty("DEL after the restart");
    // What etcd holds is exactly the one pod left.
    let ds = etcd.datastore("/merle-down");
    let all = in_ns(&etcd.ns, move || load(&ds)).unwrap();
    let held: Vec<IpAddr> =
        all.values().flat_map(|b| b.allocations.keys().map(move |o| b.addr(*o))).collect::<Vec<_>>();
    assert_eq!(held, vec![got[0].addr()], "one allocation, the live pod's");
}

/// A node's pools, from merle's configuration.
fn pools(cidr: &str, block_size: u8) -> Vec<conf::Pool> {
    let text = format!(
        "[node]\nname = \"n\"\naddress = \"10.0.0.1/24\"\n[[pools]]\ncidr = \"{cidr}\"\nblock_size = {block_size}\n"
    );
    conf::from_str(&text, std::path::Path::new("pools.toml")).unwrap().pools
}

/// Two nodes whose configurations disagree on the block size (a rollout
/// half done) claim at the same moment: node B's /24 commits while node
/// A's claim of a /26 inside it is between its read and its commit. A's
/// commit must fail and its retry must see B's block, never overlap it.
#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn racing_claims_of_different_block_sizes_never_overlap() {
    let Some(etcd) = Etcd::start("racing_claims_of_different_block_sizes_never_overlap") else { return };
    let lock_b = TempDir::new("etcd-lock-b").unwrap();
    let ds_a = etcd.datastore("/merle-race");
    let ds_b = conf::Datastore { path: lock_b.path().to_owned(), ..ds_a.clone() };
    let all = in_ns(&etcd.ns, move || {
        let a = EtcdStore::connect(&ds_a).map_err(|e| e.to_string())?;
        let b = EtcdStore::connect(&ds_b).map_err(|e| e.to_string())?;
        let (pools_a, pools_b) = (pools("10.251.0.0/23", 26), pools("10.251.0.0/23", 24));
        let (ha, hb) =
            (merle_cni::netconf::attachment("net", "a", "eth0"), merle_cni::netconf::attachment("net", "b", "eth0"));
        let mut attempts = 0;
        let got = ipam::transact(&a, |blocks| {
            attempts += 1;
            if attempts == 1 {
                let req = alloc::Assign { holder: &hb, node: "node-b", pools: &pools_b, strict_affinity: false };
                ipam::transact(&b, |bb| alloc::assign(bb, &req)).expect("node B's claim");
            }
            let req = alloc::Assign { holder: &ha, node: "node-a", pools: &pools_a, strict_affinity: false };
            alloc::assign(blocks, &req)
        })
        .map_err(|e| e.to_string())?;
        if attempts < 2 {
            return Err(format!("node A committed {got:?} on its first try, over node B's claim"));
        }
        a.load().map_err(|e| e.to_string())
    })
    .unwrap();
    let held = assert_consistent(&all);
    assert_eq!(held.len(), 2, "{all:?}");
    println!("blocks: {:?}", all.values().map(|b| (b.cidr.to_string(), b.affinity.clone())).collect::<Vec<_>>());
}

/// etcd with TLS and client-certificate auth, as a production cluster
/// runs it: the store works with the CA and this node's certificate, and
/// is refused without the certificate or with another CA, each with an
/// error that says so.
#[test]
#[ignore = "needs root and network namespaces: the test command runs it with --include-ignored"]
fn etcd_over_tls_with_a_client_certificate() {
    if testbed::skip_unless_root("etcd_over_tls_with_a_client_certificate") {
        return;
    }
    assert!(testbed::etcd::Etcd::installed(), "etcd-server is missing: run ./testbed/install-deps.sh");
    assert!(testbed::tls::Pki::installed(), "openssl is missing: run ./testbed/install-deps.sh");
    let ns = Netns::new("etcdtls").unwrap();
    let ip: IpAddr = "127.0.0.1".parse().unwrap();
    let pki = testbed::tls::Pki::new(ip).unwrap();
    let server = testbed::etcd::Etcd::start_tls(&ns, ip, &pki).unwrap();
    assert!(server.url.starts_with("https://127.0.0.1:"), "{}", server.url);
    let lock = TempDir::new("etcd-tls-lock").unwrap();
    let ds = conf::Datastore {
        kind: conf::DatastoreKind::Etcd,
        path: lock.path().join("lock"),
        endpoints: vec![server.url.clone()],
        prefix: "/merle-tls".into(),
        timeout_ms: 2000,
        ca_file: Some(pki.ca.clone()),
        cert_file: Some(pki.client_cert.clone()),
        key_file: Some(pki.client_key.clone()),
        username: None,
        password_file: None,
    };
    // A claim and a read back, over TLS.
    let good = ds.clone();
    let pool = pools("10.251.0.0/24", 26);
    let got = poll("a store over TLS", Duration::from_secs(20), || {
        let (good, pool) = (good.clone(), pool.clone());
        in_ns(&ns, move || {
            let s = EtcdStore::connect(&good).map_err(|e| e.to_string())?;
            let h = merle_cni::netconf::attachment(common::NETWORK, "tls-1", "eth0");
            let req = alloc::Assign { holder: &h, node: "node-a", pools: &pool, strict_affinity: false };
            ipam::transact(&s, |b| alloc::assign(b, &req)).map_err(|e| e.to_string())?;
            s.load().map_err(|e| e.to_string())
        })
        .ok()
    })
    .unwrap_or_else(|e| panic!("{e}: {}", server.daemon.log_tail(20)));
    assert_eq!(got.len(), 1, "one block claimed: {got:?}");

    let refused = |ds: conf::Datastore| -> String {
        in_ns(&ns, move || match EtcdStore::connect(&ds).and_then(|s| s.load()) {
            Ok(_) => Ok(String::new()),
            Err(e) => Ok(format!("{e} (transient: {})", e.is_transient())),
        })
        .unwrap()
    };
    // Without a client certificate: etcd refuses the handshake.
    let e = refused(conf::Datastore { cert_file: None, key_file: None, ..ds.clone() });
    assert!(e.contains("etcd") && e.contains("transient: true"), "no client certificate: {e:?}");
    // A CA that did not sign etcd's certificate: this side refuses etcd.
    let e = refused(conf::Datastore { ca_file: Some(pki.other_ca.clone()), ..ds.clone() });
    assert!(e.contains("etcd"), "another CA: {e:?}");
    // A file that is not there: named, before any connection.
    let e = refused(conf::Datastore { ca_file: Some("/nonexistent/ca.crt".into()), ..ds.clone() });
    assert!(e.contains("datastore.ca_file /nonexistent/ca.crt: cannot read"), "{e:?}");
}
