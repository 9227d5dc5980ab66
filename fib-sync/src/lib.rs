//! fib-sync: makes the routes merled learns real in the kernel.
//!
//! - [`desired`]: the kernel state the Loc-RIB calls for, as pure functions.
//! - [`kernel`]: that state as rtnetlink messages, and the kernel's reports
//!   read back.
//! - [`engine`]: the thread that diffs, applies, watches and repairs.

pub mod desired;
pub mod engine;
pub mod kernel;
pub mod monitor;
pub mod status;
pub mod vtep;

pub use desired::{desired, Desired, Hop, Inputs, LearnedRoute, NodeNet, RouteSpec};
pub use engine::{Fib, Input, Settings};
pub use kernel::Owner;
pub use status::{FibStatus, Ipip, OpCounts, RouteState, RouteStatus};
