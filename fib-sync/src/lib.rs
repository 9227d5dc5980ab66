//! fib-sync: makes the routes merled learns real in the kernel. The
//! pipeline's last step: bgpd's Loc-RIB -> fib-sync -> the kernel FIB.
//!
//! Pure, tested without a kernel:
//! - [`desired`]: the rules: the route one prefix gets ([`desired::route`]:
//!   a blackhole for a block of this node, else plain, VXLAN or IPIP per
//!   next hop as the pool's modes say), the VXLAN devices, the neighbour
//!   and FDB entries of a VTEP; [`desired()`] for a whole table.
//! - [`want`]: those rules kept prefix by prefix ([`want::Want`]); the
//!   engine and [`desired()`] both run it, so there is one path.
//! - [`reconcile`]: what one prefix, a set of them or the L2 tables need,
//!   given what merle wants and what the kernel holds: the operations.
//! - [`vtep`]: VTEP MACs and link-local gateways derived from addresses.
//!
//! I/O:
//! - [`kernel`]: the state as rtnetlink messages, and the kernel's reports
//!   read back (over the pipelined socket of the `merle-netlink` crate).
//! - [`monitor`]: the netlink watch of routes, links and neighbours.
//! - [`engine`]: the one thread that owns merle's part of the FIB: it takes
//!   [`Input`]s on a channel, feeds [`want::Want`], executes what
//!   [`reconcile`] decides in one batch, and publishes [`FibStatus`].
//!
//! No tokio: the engine is a plain thread with a blocking socket.

pub mod desired;
pub mod engine;
pub mod kernel;
pub mod monitor;
pub mod reconcile;
pub mod status;
pub mod vtep;
pub mod want;

pub use desired::{desired, Desired, Hop, Inputs, LearnedRoute, NodeNet, RouteSpec};
pub use engine::{Fib, Input, Settings};
pub use kernel::Owner;
pub use status::{FibStatus, Ipip, OpCounts, RouteState, RouteStatus};
