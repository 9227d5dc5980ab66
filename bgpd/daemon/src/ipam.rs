//! merled's side of IPAM: a thread that owns the store, follows it (the
//! plugin's notifications over the control socket, etcd's watch, and a
//! slow timer as a backstop) and publishes what this node routes for: its
//! affine blocks, the addresses it borrowed, and the registered nodes.

use std::net::IpAddr;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

use merle_ipam::{self as ipam, alloc, report, IpamError, NodeBlocks, NodeRecord, Store};
use tokio::sync::{oneshot, watch};
use tracing::{info, warn};

/// Re-read the store this often even without a notification.
const REFRESH: Duration = Duration::from_secs(30);
/// Retry an unreachable store this often.
const RETRY: Duration = Duration::from_secs(2);

/// What this node routes for, from IPAM, and the cluster's services from
/// the datastore.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpamView {
    pub blocks: NodeBlocks,
    /// Registered nodes (etcd only), this one included.
    pub nodes: Vec<NodeRecord>,
    /// Services stored in the datastore (etcd only) that pass the checks
    /// next to the file's.
    pub services: Vec<merle_lb::service::Service>,
    /// Stored services left out, each with its key and why.
    pub service_errors: Vec<String>,
}

#[derive(Debug)]
pub enum Cmd {
    /// Something changed in the store: re-read it.
    Changed,
    Show(oneshot::Sender<Result<report::Report, String>>),
    Release(String, oneshot::Sender<Result<Vec<IpAddr>, String>>),
    /// A new configuration (pools, IPAM options).
    Reconfigure(Box<conf::Config>),
    /// Store a service in the datastore, after the checks.
    PutService(Box<merle_lb::service::Service>, oneshot::Sender<Result<(), String>>),
    /// Remove a stored service: whether there was one.
    DeleteService(String, oneshot::Sender<Result<bool, String>>),
    Stop,
}

#[derive(Debug)]
pub struct IpamLink {
    pub tx: Sender<Cmd>,
    pub view: watch::Receiver<IpamView>,
}

impl IpamLink {
    pub fn start(cfg: &conf::Config) -> anyhow::Result<Self> {
        let (tx, rx) = channel();
        let (vtx, view) = watch::channel(IpamView::default());
        let cfg = cfg.clone();
        let tx2 = tx.clone();
        std::thread::Builder::new().name("ipam".into()).spawn(move || Worker::new(cfg, tx2, vtx).run(rx))?;
        Ok(Self { tx, view })
    }

    pub fn stop(&self) {
        let _ = self.tx.send(Cmd::Stop);
    }
}

struct Worker {
    cfg: conf::Config,
    store: Option<Box<dyn Store>>,
    tx: Sender<Cmd>,
    view: watch::Sender<IpamView>,
    last_error: Option<String>,
    /// Nothing published yet: the first read is sent even when empty, so
    /// merled's start can wait for it.
    first: bool,
}

fn record(cfg: &conf::Config) -> NodeRecord {
    NodeRecord {
        name: cfg.node.name.clone(),
        address: cfg.node.address,
        address_v6: cfg.node.address_v6,
        as_number: cfg.node.as_number,
    }
}

impl Worker {
    fn new(cfg: conf::Config, tx: Sender<Cmd>, view: watch::Sender<IpamView>) -> Self {
        Self { cfg, store: None, tx, view, last_error: None, first: true }
    }

    fn store(&mut self) -> Result<&dyn Store, IpamError> {
        if self.store.is_none() {
            let s = ipam::open(&self.cfg)?;
            let tx = self.tx.clone();
            s.watch(Box::new(move || {
                let _ = tx.send(Cmd::Changed);
            }));
            info!(store = ?self.cfg.datastore.kind, "IPAM store open");
            self.store = Some(s);
        }
        self.store.as_deref().ok_or_else(|| IpamError::Io("no store".into()))
    }

    fn run(mut self, rx: Receiver<Cmd>) {
        self.refresh();
        loop {
            let wait = if self.last_error.is_some() { RETRY } else { REFRESH };
            let cmd = match rx.recv_timeout(wait) {
                Ok(c) => Some(c),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            match cmd {
                Some(Cmd::Stop) => return,
                Some(Cmd::Show(reply)) => {
                    let r = self.store().and_then(|s| s.load()).map(|b| report::report(&b, &self.cfg.pools));
                    let _ = reply.send(r.map_err(|e| e.to_string()));
                    continue;
                }
                Some(Cmd::Release(handle, reply)) => {
                    let r = self.store().and_then(|s| {
                        ipam::transact(s, |b| Ok(alloc::release(b, &ipam::Holder::handle(&handle), ipam::now())))
                    });
                    if let Ok(freed) = &r {
                        info!(%handle, ?freed, "IPAM handle released by hand");
                    }
                    let _ = reply.send(r.map_err(|e| e.to_string()));
                }
                Some(Cmd::Reconfigure(cfg)) => self.cfg = *cfg,
                Some(Cmd::PutService(svc, reply)) => {
                    let r = self.put_service(*svc);
                    let _ = reply.send(r);
                }
                Some(Cmd::DeleteService(name, reply)) => {
                    let r = self.store().map_err(|e| e.to_string()).and_then(|st| match st.services() {
                        None => Err(NO_SERVICE_STORE.to_owned()),
                        Some(reg) => reg.delete_service(&name).map_err(|e| e.to_string()),
                    });
                    if let Ok(true) = r {
                        info!(service = %name, "service removed from the datastore");
                    }
                    let _ = reply.send(r);
                }
                Some(Cmd::Changed) | None => {}
            }
            // Coalesce a burst of notifications into one read.
            while let Ok(c) = rx.try_recv() {
                match c {
                    Cmd::Changed => {}
                    Cmd::Stop => return,
                    Cmd::Reconfigure(cfg) => self.cfg = *cfg,
                    other => {
                        // Answer requests that arrived meanwhile on the next turn.
                        let _ = self.tx.send(other);
                        break;
                    }
                }
            }
            self.refresh();
        }
    }

    /// Re-reads the store, releases blocks empty past their grace period,
    /// makes sure this node is registered, and publishes the view.
    fn refresh(&mut self) {
        match self.read() {
            Ok(v) => {
                if self.last_error.take().is_some() {
                    info!("IPAM store reachable again");
                }
                if std::mem::take(&mut self.first) {
                    self.view.send_replace(v);
                    return;
                }
                self.view.send_if_modified(|old| {
                    if *old == v {
                        return false;
                    }
                    *old = v;
                    true
                });
            }
            Err(e) => {
                let msg = e.to_string();
                if self.last_error.as_deref() != Some(msg.as_str()) {
                    warn!("IPAM: {msg}; the node keeps advertising what it last knew");
                }
                self.last_error = Some(msg);
                if e.is_transient() {
                    // Reconnect on the next try.
                    self.store = None;
                }
            }
        }
    }

    /// Checks `svc` next to the file's services and the stored ones (a
    /// stored one of the same name is replaced) and stores it.
    fn put_service(&mut self, svc: merle_lb::service::Service) -> Result<(), String> {
        let file = self.cfg.clone();
        let store = self.store().map_err(|e| e.to_string())?;
        let reg = store.services().ok_or_else(|| NO_SERVICE_STORE.to_owned())?;
        let stored = reg.services().map_err(|e| e.to_string())?;
        let (mut others, _) = accept_stored(&file, stored);
        others.retain(|s| s.name != svc.name);
        check_service(&file, &others, &svc)?;
        reg.put_service(&svc).map_err(|e| e.to_string())?;
        info!(service = %svc.name, "service stored in the datastore");
        Ok(())
    }

    fn read(&mut self) -> Result<IpamView, IpamError> {
        let node = self.cfg.node.name.clone();
        let grace = self.cfg.ipam.release_empty_blocks_after;
        let me = record(&self.cfg);
        let pools = self.cfg.pools.clone();
        let file = self.cfg.clone();
        let store = self.store()?;
        let blocks = match grace {
            Some(g) => {
                let mut out = None;
                store.update(&mut |b| {
                    let gone = alloc::release_empty(b, &node, g, ipam::now());
                    if !gone.is_empty() {
                        info!(?gone, "released blocks empty for {g}s");
                    }
                    out = Some(b.clone());
                    Ok(())
                })?;
                out.unwrap_or_default()
            }
            None => store.load()?,
        };
        let nodes = match store.registry() {
            Some(r) => {
                let mut nodes = r.nodes()?;
                if !nodes.contains(&me) {
                    r.register(&me)?;
                    info!(node = %me.name, "registered in the node registry");
                    nodes.retain(|n| n.name != me.name);
                    nodes.push(me);
                }
                nodes.sort_by(|a, b| a.name.cmp(&b.name));
                nodes
            }
            None => Vec::new(),
        };
        let (services, service_errors) = match store.services() {
            Some(reg) => accept_stored(&file, reg.services()?),
            None => (Vec::new(), Vec::new()),
        };
        Ok(IpamView { blocks: alloc::node_blocks(&blocks, &node, &pools), nodes, services, service_errors })
    }
}

const NO_SERVICE_STORE: &str =
    "services are stored in the datastore only with [datastore] type = \"etcd\"; edit [[services]] in the configuration file";

/// Whether `s` may join the file's services and `others`: the checks of
/// the configuration, with the error named by the service, not by an
/// index the caller never wrote.
pub fn check_service(
    file: &conf::Config,
    others: &[merle_lb::service::Service],
    s: &merle_lb::service::Service,
) -> Result<(), String> {
    if file.services.iter().any(|f| f.name == s.name) {
        return Err(format!(
            "service {:?}: the configuration file defines a service of that name, which takes precedence",
            s.name
        ));
    }
    let mut set: Vec<merle_lb::service::Service> = file.services.to_vec();
    set.extend(others.iter().cloned());
    let at = set.len();
    set.push(s.clone());
    merle_lb::service::validate(&set, &conf::validate::service_ranges(file)).map_err(|e| {
        let own = format!("services[{at}].");
        match e.key.strip_prefix(&own) {
            Some(field) => format!("service {:?}: {field}: {}", s.name, e.message),
            // The clash was found at another service (a duplicate).
            None => format!("service {:?}: {} ({})", s.name, e.message, e.key),
        }
    })
}

/// The stored services that pass the checks, in key order, and why the
/// others do not.
pub fn accept_stored(
    file: &conf::Config,
    stored: Vec<ipam::StoredService>,
) -> (Vec<merle_lb::service::Service>, Vec<String>) {
    let mut ok = Vec::new();
    let mut errors = Vec::new();
    for (key, r) in stored {
        match r {
            Err(e) => errors.push(format!("{key}: not a service: {e}")),
            Ok(s) => match check_service(file, &ok, &s) {
                Ok(()) => ok.push(s),
                Err(e) => errors.push(format!("{key}: {e}")),
            },
        }
    }
    (ok, errors)
}

/// The configuration merled runs with: the file's, plus this node's IPAM
/// blocks and borrowed addresses as advertised prefixes, plus registered
/// nodes (not already listed) in the node list, plus the datastore's
/// services.
pub fn effective(file: &conf::Config, v: &IpamView) -> conf::Config {
    let mut c = file.clone();
    c.services.list.extend(v.services.iter().cloned());
    for p in v.blocks.affine.iter().chain(&v.blocks.borrowed) {
        if !c.advertise.iter().any(|a| a.prefix == *p) {
            c.advertise.push(conf::Advertise { prefix: *p, communities: Vec::new() });
        }
    }
    for n in &v.nodes {
        if !c.nodes.iter().any(|e| e.name == n.name || e.address.addr() == n.address.addr()) {
            c.nodes.push(conf::NodeEntry {
                name: n.name.clone(),
                address: n.address,
                as_number: Some(n.as_number),
                route_reflector_cluster_id: None,
            });
        }
    }
    c
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn effective_adds_blocks_borrowed_and_registered_nodes_once() {
        let file = conf::from_str(
            "[node]\nname = \"a\"\naddress = \"10.0.0.1/24\"\n[[advertise]]\nprefix = \"10.244.0.0/26\"\n\
             [[nodes]]\nname = \"a\"\naddress = \"10.0.0.1/24\"\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        let v = IpamView {
            blocks: NodeBlocks {
                affine: vec!["10.244.0.0/26".parse().unwrap(), "10.244.0.64/26".parse().unwrap()],
                borrowed: vec!["10.244.1.5/32".parse().unwrap()],
            },
            nodes: vec![
                NodeRecord {
                    name: "a".into(),
                    address: "10.0.0.1/24".parse().unwrap(),
                    address_v6: None,
                    as_number: 64512,
                },
                NodeRecord {
                    name: "b".into(),
                    address: "10.0.0.2/24".parse().unwrap(),
                    address_v6: None,
                    as_number: 64512,
                },
            ],
            ..IpamView::default()
        };
        let e = effective(&file, &v);
        let adv: Vec<String> = e.advertise.iter().map(|a| a.prefix.to_string()).collect();
        assert_eq!(adv, ["10.244.0.0/26", "10.244.0.64/26", "10.244.1.5/32"]);
        let names: Vec<&str> = e.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
    }

    fn with_services(extra: &str) -> conf::Config {
        conf::from_str(
            &format!(
                "[node]\nname = \"a\"\naddress = \"10.0.0.1/24\"\n[service_ranges]\ncluster_ips = [\"10.96.0.0/16\"]\n\
                 [[pools]]\ncidr = \"10.244.0.0/16\"\n{extra}"
            ),
            std::path::Path::new("t.toml"),
        )
        .unwrap()
    }

    fn svc(name: &str, cip: &str, port: u16) -> merle_lb::service::Service {
        serde_json::from_value(serde_json::json!({
            "name": name, "protocol": "tcp", "cluster_ip": cip, "port": port,
            "backends": [{ "address": "10.244.0.5", "port": 80, "node": "a" }],
        }))
        .unwrap()
    }

    #[test]
    fn stored_services_are_checked_next_to_the_files_and_bad_ones_left_out_by_key() {
        let file =
            with_services("[[services]]\nname = \"file\"\nprotocol = \"tcp\"\ncluster_ip = \"10.96.0.1\"\nport = 80\n");
        let stored: Vec<ipam::StoredService> = vec![
            ("/merle/services/a".into(), Ok(svc("a", "10.96.0.2", 80))),
            ("/merle/services/b".into(), Err("expected value at line 1".into())),
            ("/merle/services/c".into(), Ok(svc("c", "10.200.0.1", 80))),
            ("/merle/services/d".into(), Ok(svc("d", "10.96.0.2", 80))),
            ("/merle/services/file".into(), Ok(svc("file", "10.96.0.3", 80))),
        ];
        let (ok, errors) = accept_stored(&file, stored);
        assert_eq!(ok.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["a"]);
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors[0].starts_with("/merle/services/b: not a service"), "{errors:?}");
        assert!(errors[1].contains("service \"c\": cluster_ip: 10.200.0.1 is outside"), "{errors:?}");
        assert!(errors[2].contains("another service already has 10.96.0.2 port 80"), "{errors:?}");
        assert!(errors[3].contains("the configuration file defines a service of that name"), "{errors:?}");
        let v = IpamView { services: ok, ..IpamView::default() };
        let names: Vec<String> = effective(&file, &v).services.iter().map(|s| s.name.clone()).collect();
        assert_eq!(names, ["file", "a"], "the file's, then the stored ones");
        // A new one is checked the same way and named by its field.
        let e = check_service(&file, &[], &svc("n", "10.96.0.9", 0)).unwrap_err();
        assert_eq!(e, "service \"n\": port: port 0 is not a port: use 1 to 65535");
    }
}
