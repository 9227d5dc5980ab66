//! merle's IPAM, with Calico's block affinity: the step between the CNI
//! plugin and BGP (cni -> IPAM -> bgpd). The plugin allocates a pod's
//! addresses here; merled reads which blocks this node holds and
//! advertises them, and blackholes the blocks it is affine to.
//!
//! - [`block`]: a block and who holds each of its addresses.
//! - [`alloc`]: the rules, pure: assign, release, borrow, this node's
//!   blocks, the garbage collector's stale attachments.
//! - [`pods`]: the pods of a node as IPAM records them, by host veth.
//! - [`report`]: pool and block use, for `merlectl ipam` and the metrics.
//! - [`Store`]: where the blocks live, committing each change atomically:
//!   a local file ([`file`], flock) or etcd ([`etcd`], one transaction
//!   per change, which also holds the node registry and the services).
//!
//! No tokio in the interface: the etcd store runs its own small runtime,
//! since the plugin is a short-lived blocking process.

pub mod alloc;
pub mod block;
pub mod etcd;
pub mod file;
pub mod pods;
pub mod report;

use std::time::{SystemTime, UNIX_EPOCH};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub use alloc::{Assign, Blocks, NodeBlocks};
pub use block::{Allocation, Attachment, Block, Holder};

#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("no IP pool is configured ([[pools]] is empty)")]
    NoPools,
    #[error("no free {family} address: every block of the pools is full{}", if *strict { " and strict_affinity forbids borrowing from other nodes' blocks" } else { "" })]
    Exhausted { family: &'static str, strict: bool },
    /// The store cannot be reached or stayed contended: worth retrying.
    #[error("IPAM store unavailable: {0}")]
    Unavailable(String),
    /// The store holds something unreadable; it is left as it is.
    #[error("IPAM store is corrupt: {0}")]
    Corrupt(String),
    #[error("IPAM store: {0}")]
    Io(String),
}

impl IpamError {
    /// Whether a retry may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// A node as registered in a cluster store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub name: String,
    pub address: IpNet,
    #[serde(default)]
    pub address_v6: Option<IpNet>,
    pub as_number: u32,
}

/// Where the blocks live. Implementations commit what `f` changed
/// atomically, or nothing; `f` may run several times when a concurrent
/// writer got there first.
pub trait Store: Send + Sync + std::fmt::Debug {
    fn load(&self) -> Result<Blocks, IpamError>;
    fn update(&self, f: &mut dyn FnMut(&mut Blocks) -> Result<(), IpamError>) -> Result<(), IpamError>;
    /// The cluster's node registry, for stores shared between nodes.
    fn registry(&self) -> Option<&dyn Registry> {
        None
    }
    /// The cluster's services, for stores shared between nodes.
    fn services(&self) -> Option<&dyn ServiceRegistry> {
        None
    }
    /// Calls `on_change` whenever another writer changes the store. A
    /// node-local store has no other writers but this node's plugin, which
    /// tells merled over the control socket instead, so by default this
    /// does nothing.
    fn watch(&self, on_change: Box<dyn Fn() + Send + Sync>) {
        let _ = on_change;
    }
}

/// The node registry of a shared store.
pub trait Registry: std::fmt::Debug {
    fn register(&self, node: &NodeRecord) -> Result<(), IpamError>;
    fn nodes(&self) -> Result<Vec<NodeRecord>, IpamError>;
}

/// One stored service: its key, and the service or why it cannot be read.
pub type StoredService = (String, Result<merle_lb::service::Service, String>);

/// Services kept in a shared store, so every node sees the same ones.
pub trait ServiceRegistry: std::fmt::Debug {
    /// Every stored service, in key order; an entry that does not parse
    /// comes with the reason, so one bad entry hides no other.
    fn services(&self) -> Result<Vec<StoredService>, IpamError>;
    fn put_service(&self, s: &merle_lb::service::Service) -> Result<(), IpamError>;
    /// Whether there was such a service.
    fn delete_service(&self, name: &str) -> Result<bool, IpamError>;
}

/// Runs `f` in one atomic update and returns what it returned.
pub fn transact<T>(store: &dyn Store, mut f: impl FnMut(&mut Blocks) -> Result<T, IpamError>) -> Result<T, IpamError> {
    let mut out = None;
    store.update(&mut |b| {
        out = Some(f(b)?);
        Ok(())
    })?;
    out.ok_or_else(|| IpamError::Io("the store did not run the update".into()))
}

/// Opens the store `cfg` names.
pub fn open(cfg: &conf::Config) -> Result<Box<dyn Store>, IpamError> {
    let ds = &cfg.datastore;
    match ds.kind {
        conf::DatastoreKind::File => Ok(Box::new(file::FileStore::open(&ds.path)?)),
        conf::DatastoreKind::Etcd => Ok(Box::new(etcd::EtcdStore::connect(ds)?)),
    }
}

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
