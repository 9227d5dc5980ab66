//! The etcd v3 store, for clusters: one key per block and per node.
//!
//! An update reads every block with its `mod_revision`, runs the change,
//! and commits the blocks it touched in one transaction that compares each
//! of them on revision (or on absence, for a newly claimed block). Two
//! nodes can therefore never claim the same block or take the same address:
//! the second commit fails its comparison, re-reads and tries again.
//! A claim or a release of a block also compares the pool-wide claims key
//! on "unchanged since the read" and touches it. Claims are therefore
//! serialised across the cluster, so the overlap check against the blocks
//! read stays true at commit even when two nodes run with different block
//! sizes or pools (a config rollout); allocations inside existing blocks,
//! the common case, do not contend on it.
//! Processes on one node also take the data directory's lock, as Calico's
//! plugin takes its host-wide IPAM lock, so only nodes contend in etcd.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, KvClient, Txn, TxnOp, WatchOptions};
use ipnet::IpNet;

use crate::{Block, Blocks, IpamError, NodeRecord, Registry, ServiceRegistry, Store, StoredService};

/// Transactions tried before giving up with a try-again error.
const MAX_ATTEMPTS: u32 = 200;
/// Bounds of the wait before re-opening a watch that ended.
const WATCH_RETRY_MIN: Duration = Duration::from_secs(1);
const WATCH_RETRY_MAX: Duration = Duration::from_secs(30);

pub struct EtcdStore {
    rt: tokio::runtime::Runtime,
    client: Client,
    kv: KvClient,
    prefix: String,
    lock_dir: PathBuf,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore").field("prefix", &self.prefix).field("lock_dir", &self.lock_dir).finish()
    }
}

fn unavailable(e: etcd_client::Error) -> IpamError {
    IpamError::Unavailable(format!("etcd: {e}"))
}

/// Reads a file the datastore settings name; an error names the key.
fn read_setting(key: &str, path: &std::path::Path) -> Result<Vec<u8>, IpamError> {
    std::fs::read(path).map_err(|e| IpamError::Io(format!("datastore.{key} {}: cannot read: {e}", path.display())))
}

/// TLS (the CA, and the client certificate when given) and etcd's own
/// user, from the settings; the files are read now, so a missing one is
/// named before any connection is tried.
pub fn connect_options(ds: &conf::Datastore) -> Result<ConnectOptions, IpamError> {
    let mut opts = ConnectOptions::new();
    if let Some(ca) = &ds.ca_file {
        let pem = read_setting("ca_file", ca)?;
        let mut tls = etcd_client::TlsOptions::new().ca_certificate(etcd_client::Certificate::from_pem(pem));
        if let (Some(c), Some(k)) = (&ds.cert_file, &ds.key_file) {
            tls = tls
                .identity(etcd_client::Identity::from_pem(read_setting("cert_file", c)?, read_setting("key_file", k)?));
        }
        opts = opts.with_tls(tls);
    }
    if let (Some(u), Some(f)) = (&ds.username, &ds.password_file) {
        let pw = String::from_utf8(read_setting("password_file", f)?)
            .map_err(|_| IpamError::Io(format!("datastore.password_file {}: not UTF-8", f.display())))?;
        opts = opts.with_user(u.clone(), pw.trim_end_matches(['\n', '\r']).to_owned());
    }
    Ok(opts)
}

/// The key of a block: its CIDR with '/' made '-'.
fn block_key(prefix: &str, cidr: &IpNet) -> String {
    format!("{prefix}/ipam/blocks/{}", cidr.to_string().replace('/', "-"))
}

/// Touched by every block claim and release; see the module comment.
fn claims_key(prefix: &str) -> String {
    format!("{prefix}/ipam/claims")
}

impl EtcdStore {
    pub fn connect(ds: &conf::Datastore) -> Result<Self, IpamError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| IpamError::Io(format!("cannot start a runtime: {e}")))?;
        let timeout = Duration::from_millis(ds.timeout_ms);
        let opts = connect_options(ds)?.with_connect_timeout(timeout).with_timeout(timeout);
        let client = rt.block_on(Client::connect(&ds.endpoints, Some(opts))).map_err(unavailable)?;
        let kv = client.kv_client();
        Ok(Self { rt, client, kv, prefix: ds.prefix.trim_end_matches('/').to_owned(), lock_dir: ds.path.clone() })
    }

    /// Every block with its `mod_revision`, and the store revision of the read.
    async fn read(kv: &mut KvClient, prefix: &str) -> Result<(BTreeMap<IpNet, (Block, i64)>, i64), IpamError> {
        let resp = kv
            .get(format!("{prefix}/ipam/blocks/"), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(unavailable)?;
        let mut out = BTreeMap::new();
        for item in resp.kvs() {
            let b: Block = serde_json::from_slice(item.value())
                .map_err(|e| IpamError::Corrupt(format!("{}: {e}", String::from_utf8_lossy(item.key()))))?;
            out.insert(b.cidr, (b, item.mod_revision()));
        }
        let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
        Ok((out, revision))
    }
}

/// A few milliseconds, different in each process, so that two losers of a
/// comparison do not collide again at once.
fn jitter(attempt: u32) -> Duration {
    let seed = std::process::id().wrapping_mul(2_654_435_761).wrapping_add(attempt.wrapping_mul(40_503));
    Duration::from_micros(u64::from(500 + seed % (1000 * attempt.min(10) + 1)))
}

impl Store for EtcdStore {
    fn load(&self) -> Result<Blocks, IpamError> {
        let mut kv = self.kv.clone();
        let (got, _) = self.rt.block_on(Self::read(&mut kv, &self.prefix))?;
        Ok(got.into_iter().map(|(c, (b, _))| (c, b)).collect())
    }

    fn update(&self, f: &mut dyn FnMut(&mut Blocks) -> Result<(), IpamError>) -> Result<(), IpamError> {
        let _lock = crate::file::lock_dir(&self.lock_dir)?;
        let mut kv = self.kv.clone();
        for attempt in 0..MAX_ATTEMPTS {
            let (old, read_at) = self.rt.block_on(Self::read(&mut kv, &self.prefix))?;
            let mut blocks: Blocks = old.iter().map(|(c, (b, _))| (*c, b.clone())).collect();
            f(&mut blocks)?;
            let mut compares = Vec::new();
            let mut ops = Vec::new();
            let mut claims = false;
            for (cidr, b) in &blocks {
                let key = block_key(&self.prefix, cidr);
                match old.get(cidr) {
                    Some((was, _)) if was == b => continue,
                    Some((_, rev)) => compares.push(Compare::mod_revision(key.clone(), CompareOp::Equal, *rev)),
                    None => {
                        claims = true;
                        compares.push(Compare::version(key.clone(), CompareOp::Equal, 0));
                    }
                }
                let value = serde_json::to_vec(b).map_err(|e| IpamError::Io(e.to_string()))?;
                ops.push(TxnOp::put(key, value, None));
            }
            for (cidr, (_, rev)) in old.iter().filter(|(c, _)| !blocks.contains_key(*c)) {
                let key = block_key(&self.prefix, cidr);
                compares.push(Compare::mod_revision(key.clone(), CompareOp::Equal, *rev));
                ops.push(TxnOp::delete(key, None));
                claims = true;
            }
            if ops.is_empty() {
                return Ok(());
            }
            if claims {
                let key = claims_key(&self.prefix);
                compares.push(Compare::mod_revision(key.clone(), CompareOp::Less, read_at + 1));
                ops.push(TxnOp::put(key, read_at.to_string(), None));
            }
            let txn = Txn::new().when(compares).and_then(ops);
            let resp = self.rt.block_on(kv.txn(txn)).map_err(unavailable)?;
            if resp.succeeded() {
                return Ok(());
            }
            std::thread::sleep(jitter(attempt + 1));
        }
        Err(IpamError::Unavailable(format!("etcd: {MAX_ATTEMPTS} conflicting updates in a row")))
    }

    fn registry(&self) -> Option<&dyn Registry> {
        Some(self)
    }

    fn services(&self) -> Option<&dyn ServiceRegistry> {
        Some(self)
    }

    /// Calls `on_change` after every change under the prefix (blocks or
    /// nodes), from a task of the store's runtime, until the store drops.
    fn watch(&self, on_change: Box<dyn Fn() + Send + Sync>) {
        let mut client = self.client.clone();
        let key = format!("{}/", self.prefix);
        self.rt.spawn(async move {
            let mut backoff = WATCH_RETRY_MIN;
            loop {
                if let Ok(mut stream) = client.watch(key.clone(), Some(WatchOptions::new().with_prefix())).await {
                    while let Ok(Some(m)) = stream.message().await {
                        backoff = WATCH_RETRY_MIN;
                        if !m.events().is_empty() || m.canceled() {
                            on_change();
                        }
                    }
                }
                // The stream ended (etcd restarted, say): something may
                // have changed meanwhile. While etcd stays away, each retry
                // waits twice as long, so the daemon is not woken every
                // second to fail again.
                on_change();
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(WATCH_RETRY_MAX);
            }
        });
    }
}

/// `<prefix>/services/<name>`: a name may hold slashes (`namespace/name`),
/// which etcd keeps as they are.
fn service_key(prefix: &str, name: &str) -> String {
    format!("{prefix}/services/{name}")
}

impl ServiceRegistry for EtcdStore {
    fn services(&self) -> Result<Vec<StoredService>, IpamError> {
        let mut kv = self.kv.clone();
        let resp = self
            .rt
            .block_on(kv.get(format!("{}/services/", self.prefix), Some(GetOptions::new().with_prefix())))
            .map_err(unavailable)?;
        Ok(resp
            .kvs()
            .iter()
            .map(|item| {
                let key = String::from_utf8_lossy(item.key()).into_owned();
                let s = serde_json::from_slice(item.value()).map_err(|e| e.to_string());
                (key, s)
            })
            .collect())
    }

    fn put_service(&self, s: &merle_lb::service::Service) -> Result<(), IpamError> {
        let mut kv = self.kv.clone();
        let value = serde_json::to_vec(s).map_err(|e| IpamError::Io(e.to_string()))?;
        self.rt.block_on(kv.put(service_key(&self.prefix, &s.name), value, None)).map_err(unavailable)?;
        Ok(())
    }

    fn delete_service(&self, name: &str) -> Result<bool, IpamError> {
        let mut kv = self.kv.clone();
        let resp = self.rt.block_on(kv.delete(service_key(&self.prefix, name), None)).map_err(unavailable)?;
        Ok(resp.deleted() > 0)
    }
}

impl Registry for EtcdStore {
    fn register(&self, node: &NodeRecord) -> Result<(), IpamError> {
        let mut kv = self.kv.clone();
        let value = serde_json::to_vec(node).map_err(|e| IpamError::Io(e.to_string()))?;
        self.rt.block_on(kv.put(format!("{}/nodes/{}", self.prefix, node.name), value, None)).map_err(unavailable)?;
        Ok(())
    }

    fn nodes(&self) -> Result<Vec<NodeRecord>, IpamError> {
        let mut kv = self.kv.clone();
        let resp = self
            .rt
            .block_on(kv.get(format!("{}/nodes/", self.prefix), Some(GetOptions::new().with_prefix())))
            .map_err(unavailable)?;
        resp.kvs()
            .iter()
            .map(|item| {
                serde_json::from_slice(item.value())
                    .map_err(|e| IpamError::Corrupt(format!("{}: {e}", String::from_utf8_lossy(item.key()))))
            })
            .collect()
    }
}
