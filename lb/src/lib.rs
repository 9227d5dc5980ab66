//! Service load balancing, as pure functions (no maps, no sockets):
//!
//! - [`maglev`]: the Maglev lookup table of a service (Eisenbud et al.,
//!   "Maglev: A Fast and Reliable Software Network Load Balancer", NSDI
//!   2016, section 3.4), built from the backends' addresses alone, so every
//!   node builds the same table and picks the same backend for a flow.
//! - [`service`]: what a service is (its addresses, ports, policy, mode
//!   and backends) and the checks every source of services (the config
//!   file, the datastore) runs before anything is programmed.
//! - [`plan`]: the frontends and backend tables one node programs.
//! - [`flow`]: the flow hash that picks a slot, as the datapath computes
//!   it.

pub mod flow;
pub mod maglev;
pub mod plan;
pub mod service;
