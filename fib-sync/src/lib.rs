//! fib-sync: makes the routes merled learns real in the kernel.
//!
//! - [`desired`]: the kernel state merle wants (routes, VXLAN devices,
//!   neighbour and FDB entries), a pure function of the Loc-RIB best paths,
//!   the pools and this node. Tested without a kernel.
//! - [`vtep`]: how a node's VXLAN tunnel endpoint is derived from its
//!   address, so no node has to be told another's.

pub mod desired;
pub mod vtep;

pub use desired::{desired, Desired, Hop, Inputs, LearnedRoute, NodeNet, RouteSpec};
