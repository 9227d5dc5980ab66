//! merled: the BGP daemon around the sans-IO core in the `bgpd` crate.
//!
//! Tasks and channels:
//! - one **peer task** per configured neighbour ([`peer`]). It owns that
//!   peer's [`bgpd::fsm::Fsm`], its timers and its connections, decodes the
//!   frames its connections read, and applies UPDATEs to the shared RIB.
//!   A slow or stuck peer only ever blocks its own task.
//! - per TCP connection, a **reader** that cuts the stream into BGP messages
//!   and a **writer** that drains encoded messages to the socket ([`conn`]);
//!   the peer task stops encoding for a writer that holds 256 KiB.
//!   Both report to their peer task over the peer's input channel.
//! - the **listener** ([`listener`]) accepts connections and hands each to
//!   the peer task whose address it comes from; others are closed.
//! - the **control server** ([`control`]) answers `merlectl` over a unix
//!   socket with JSON ([`api`]).
//! - the **health endpoint** ([`health`]) answers the kubelet's probes.
//!
//! Shared state ([`shared::Shared`]) is the RIB and each peer's status,
//! behind short-lived mutexes that are never held across an `.await`.
//!
//! [`import`], [`export`] and [`plan`] are pure: received UPDATE → RIB
//! paths; Loc-RIB best path → what one peer is sent (the Adj-RIB-Out, as a
//! function); configuration → the sessions to run. [`daemon`] starts
//! everything and applies configuration edits; [`sockopt`] sets TCP MD5 and
//! GTSM.

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
pub mod plan;
pub mod routes;
pub mod services;
pub mod shared;
pub mod show;
pub mod sockopt;
