//! merle's BGP protocol core.
//!
//! This crate holds the parts of the BGP speaker that do no I/O, so they can be
//! tested without sockets and fuzzed:
//!
//! - [`packet`]: the wire codec. Every message is decoded from a byte slice with
//!   `nom` against a [`packet::DecodeCtx`] (what the session negotiated) and encoded
//!   with `bytes` against a [`packet::EncodeCtx`]. Decode errors carry their
//!   NOTIFICATION (code, subcode, data) and, for path attributes, their RFC 7606
//!   action. RFCs: 4271, 4760, 6793, 2918, 7313, 4724, 7911, 8950, 1997, 4360,
//!   8092, 4456, 7606, 8203/9003.
//! - [`fsm`]: the RFC 4271 §8 session state machine, driven as
//!   `handle(event) -> actions`. Timers, sockets and randomness seeds come from
//!   the caller (the `merled` driver), so the machine is deterministic.
//! - [`policy`]: route filters with Calico BGPFilter semantics.
//! - [`rib`]: Adj-RIB-In storage and the RFC 4271 §9.1.2 decision process that
//!   picks the best path per prefix and says why every other path lost.
//!
//! There is no tokio in this crate: the async driver lives in `merled`.

pub mod fsm;
pub mod hash;
pub mod packet;
pub mod policy;
pub mod rib;
