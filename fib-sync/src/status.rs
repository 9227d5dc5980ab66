//! What fib-sync reports: per route, installed or why not; and the node's
//! tunnel capabilities.

use foldhash::HashMap;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::desired::{Hop, RouteSpec};

/// Whether this node can do IPIP.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "state", content = "reason")]
pub enum Ipip {
    /// No pool uses IPIP, so it was not probed.
    #[default]
    NotNeeded,
    Available,
    /// The kernel has no IPIP; IPIP pools are refused.
    Unavailable(String),
}

impl std::fmt::Display for Ipip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotNeeded => f.write_str("not needed (no IPIP pool)"),
            Self::Available => f.write_str("available"),
            Self::Unavailable(why) => write!(f, "UNAVAILABLE: {why}; IPIP pools are refused"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub enum RouteState {
    Installed,
    /// Wanted, not yet sent.
    Pending,
    /// Found in the kernel at start and not (yet) learned again; removed
    /// once the routing converges.
    Stale,
    /// The kernel refused it; retried with backoff.
    Failed {
        reason: String,
        attempts: u32,
    },
    /// The pool's mode cannot be honoured on this node.
    Refused {
        reason: String,
    },
}

impl std::fmt::Display for RouteState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Installed => f.write_str("installed"),
            Self::Pending => f.write_str("pending"),
            Self::Stale => f.write_str("stale (kept until the routing converges)"),
            Self::Failed { reason, attempts } => write!(f, "failed ({attempts} attempts): {reason}"),
            Self::Refused { reason } => write!(f, "refused: {reason}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteStatus {
    /// The kernel route (see [`describe`]).
    pub spec: Option<RouteSpec>,
    pub state: RouteState,
}

/// Kernel route operations since fib-sync started, by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpCounts {
    /// Routes created (`RTM_NEWROUTE` with `NLM_F_EXCL`).
    pub added: u64,
    /// Routes replaced in place (`NLM_F_REPLACE`).
    pub replaced: u64,
    /// Routes deleted (`RTM_DELROUTE`).
    pub deleted: u64,
    /// Operations the kernel refused, or that could not be built.
    pub failed: u64,
    /// Whole-table reads of the kernel (dumps of its routes): at start,
    /// every 90 s, after a link flap or an error, and on a settings change
    /// other than the node's blocks.
    pub table_reads: u64,
}

#[derive(Debug, Clone, Default)]
pub struct FibStatus {
    pub table: u32,
    pub protocol: u8,
    pub ipip: Ipip,
    pub devices: Vec<String>,
    pub converged: bool,
    /// From fib-sync's start to convergence (every peer's End-of-RIB, or
    /// the sweep timer), and whether the timer ended it.
    pub converged_in: Option<(std::time::Duration, bool)>,
    pub installed: usize,
    pub failed: usize,
    pub ops: OpCounts,
    pub routes: HashMap<IpNet, RouteStatus>,
}

fn hop(h: &Hop) -> String {
    let gw = h.kernel_gateway();
    match h.device() {
        Some(dev) if gw != h.gateway() => format!("via {gw} dev {dev} onlink (VTEP {})", h.gateway()),
        Some(dev) => format!("via {gw} dev {dev} onlink"),
        None => format!("via {gw}"),
    }
}

/// A route in `ip route` words: `blackhole`, `via 10.0.0.2`, `via 10.1.0.3
/// dev vxlan.merle onlink`, or the nexthops of a multipath route.
pub fn describe(spec: &RouteSpec) -> String {
    match spec {
        RouteSpec::Blackhole => "blackhole".to_owned(),
        RouteSpec::Via(hops) if hops.len() == 1 => hop(&hops[0]),
        RouteSpec::Via(hops) => hops.iter().map(|h| format!("nexthop {}", hop(h))).collect::<Vec<_>>().join(" "),
    }
}
