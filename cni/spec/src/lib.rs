//! What the CNI specification fixes, apart from any plumbing: the command
//! and its environment ([`spec::Env`]), the network configuration on stdin
//! ([`netconf::NetConf`]), results and error codes. Pure and small, so the
//! fuzz targets (`bgpd/fuzz`) can take the runtime's input to it without
//! building the plugin.

pub mod netconf;
pub mod spec;
