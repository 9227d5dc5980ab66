//! merled: the BGP daemon around the sans-IO core in the `bgpd` crate. The
//! middle of the pipeline: sessions -> Loc-RIB -> fib-sync -> kernel, and
//! merle-cni -> IPAM (`merle-ipam`) -> this node's prefixes -> sessions.
//!
//! On the tokio runtime (one worker thread):
//! - one **peer task** per configured neighbour ([`peer`]). It owns that
//!   peer's [`bgpd::fsm::Fsm`], its timers and its connections, decodes the
//!   frames its connections read, applies UPDATEs to the shared RIB, and
//!   exports through the one driver of [`outbound`] (whole-table jobs a
//!   slice per turn, change batches from the queue the RIB keeps for its
//!   session). A slow or stuck peer only ever blocks its own task.
//! - per TCP connection, a **reader** that cuts the stream into BGP messages
//!   and a **writer** that drains encoded messages to the socket ([`conn`]);
//!   the peer task stops encoding for a writer that holds 256 KiB.
//!   Both report to their peer task over the peer's input channel.
//! - the **listener** ([`listener`]) accepts connections and hands each to
//!   the peer task whose address it comes from; others are closed.
//! - the **control server** ([`control`]) answers `merlectl` over a unix
//!   socket with JSON ([`api`]; the requests and their checks are the
//!   pure `merle-control` crate); table walks run on blocking threads
//!   ([`routes`]).
//! - the **health** and **metrics** endpoints ([`health`], [`metrics`]).
//! - the **fib task** ([`fib`]) turns the FIB's queue of changed prefixes
//!   (kept by the RIB like a session's) into `fib_sync::Input::Routes` for
//!   the engine.
//! - the **main loop** ([`daemon`]): configuration reloads (a plan diff per
//!   peer) and IPAM changes (blocks only: the local routes, the peers' own
//!   prefix list and fib-sync's blackholes; nothing is re-planned).
//!
//! On threads of their own: the **fib-sync engine** and its **watch**
//! (`fib_sync::engine`), the **IPAM** worker that owns the store
//! ([`ipam`]), and the **dataplane** worker that loads the eBPF datapath and
//! keeps its maps ([`dataplane`], [`services`]).
//!
//! Shared state ([`shared::Shared`]) is the RIB (with the Adj-RIB-Out and
//! the consumers' queues) and each peer's status, behind short-lived
//! mutexes that are never held across an `.await`; dropping the RIB's
//! guard wakes the consumers it queued changes for.
//!
//! Pure, unit-tested without sockets: [`import`] (received UPDATE -> RIB
//! paths, and their application to the RIB through the import rules,
//! interned once per UPDATE), [`export`] (Loc-RIB best path -> what one
//! peer is sent, and its UPDATEs), [`outbound`] (what a run of prefixes
//! sends in each kind of pass, recorded in the session's Adj-RIB-Out),
//! [`session_rules`] (what an edit does to a session, Hard Reset,
//! graceful-restart retention, max-prefix), [`restart`] (the peer's
//! graceful restart and End-of-RIB bookkeeping), [`peer_status`] (the
//! published status and when it is rebuilt), [`peer_detail`] (what `show
//! peer` adds), [`plan`] (configuration -> the sessions to run); the peer
//! task itself only does I/O and timers and applies what these decide.
//! [`sockopt`] sets TCP MD5 and GTSM.

pub mod api;
pub mod conn;
pub mod control;
pub mod daemon;
pub mod dataplane;
pub mod export;
pub mod fib;
pub mod health;
pub mod http;
pub mod import;
pub mod ipam;
pub mod listener;
pub mod metrics;
pub mod outbound;
pub mod peer;
pub mod peer_detail;
pub mod peer_status;
pub mod plan;
pub mod restart;
pub mod routes;
pub mod services;
pub mod session_rules;
pub mod shared;
pub mod show;
pub mod sockopt;
