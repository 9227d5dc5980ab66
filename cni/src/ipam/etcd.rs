//! The etcd v3 store, for clusters: one key per block and per node.
//!
//! An update reads every block with its `mod_revision`, runs the change,
//! and commits the blocks it touched in one transaction that compares each
//! of them on revision (or on absence, for a newly claimed block). Two
//! nodes can therefore never claim the same block or take the same address:
//! the second commit fails its comparison, re-reads and tries again.
//! Processes on one node also take the data directory's lock, as Calico's
//! plugin takes its host-wide IPAM lock, so only nodes contend in etcd.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, KvClient, Txn, TxnOp, WatchOptions};
use ipnet::IpNet;

use super::{Block, Blocks, IpamError, NodeRecord, Registry, Store};

/// Transactions tried before giving up with a try-again error.
const MAX_ATTEMPTS: u32 = 200;

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

/// The key of a block: its CIDR with '/' made '-'.
fn block_key(prefix: &str, cidr: &IpNet) -> String {
    format!("{prefix}/ipam/blocks/{}", cidr.to_string().replace('/', "-"))
}

impl EtcdStore {
    pub fn connect(ds: &conf::Datastore) -> Result<Self, IpamError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| IpamError::Io(format!("cannot start a runtime: {e}")))?;
        let timeout = Duration::from_millis(ds.timeout_ms);
        let opts = ConnectOptions::new().with_connect_timeout(timeout).with_timeout(timeout);
        let client = rt.block_on(Client::connect(&ds.endpoints, Some(opts))).map_err(unavailable)?;
        let kv = client.kv_client();
        Ok(Self { rt, client, kv, prefix: ds.prefix.trim_end_matches('/').to_owned(), lock_dir: ds.path.clone() })
    }

    async fn read(kv: &mut KvClient, prefix: &str) -> Result<BTreeMap<IpNet, (Block, i64)>, IpamError> {
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
        Ok(out)
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
        let got = self.rt.block_on(Self::read(&mut kv, &self.prefix))?;
        Ok(got.into_iter().map(|(c, (b, _))| (c, b)).collect())
    }

    fn update(&self, f: &mut dyn FnMut(&mut Blocks) -> Result<(), IpamError>) -> Result<(), IpamError> {
        let _lock = super::file::lock_dir(&self.lock_dir)?;
        let mut kv = self.kv.clone();
        for attempt in 0..MAX_ATTEMPTS {
            let old = self.rt.block_on(Self::read(&mut kv, &self.prefix))?;
            let mut blocks: Blocks = old.iter().map(|(c, (b, _))| (*c, b.clone())).collect();
            f(&mut blocks)?;
            let mut compares = Vec::new();
            let mut ops = Vec::new();
            for (cidr, b) in &blocks {
                let key = block_key(&self.prefix, cidr);
                match old.get(cidr) {
                    Some((was, _)) if was == b => continue,
                    Some((_, rev)) => compares.push(Compare::mod_revision(key.clone(), CompareOp::Equal, *rev)),
                    None => compares.push(Compare::version(key.clone(), CompareOp::Equal, 0)),
                }
                let value = serde_json::to_vec(b).map_err(|e| IpamError::Io(e.to_string()))?;
                ops.push(TxnOp::put(key, value, None));
            }
            for (cidr, (_, rev)) in old.iter().filter(|(c, _)| !blocks.contains_key(*c)) {
                let key = block_key(&self.prefix, cidr);
                compares.push(Compare::mod_revision(key.clone(), CompareOp::Equal, *rev));
                ops.push(TxnOp::delete(key, None));
            }
            if ops.is_empty() {
                return Ok(());
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

    /// Calls `on_change` after every change under the prefix (blocks or
    /// nodes), from a task of the store's runtime, until the store drops.
    fn watch(&self, on_change: Box<dyn Fn() + Send + Sync>) {
        let mut client = self.client.clone();
        let key = format!("{}/", self.prefix);
        self.rt.spawn(async move {
            loop {
                if let Ok(mut stream) = client.watch(key.clone(), Some(WatchOptions::new().with_prefix())).await {
                    while let Ok(Some(m)) = stream.message().await {
                        if !m.events().is_empty() || m.canceled() {
                            on_change();
                        }
                    }
                }
                // The stream ended (etcd restarted, say): something may
                // have changed meanwhile.
                on_change();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
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
