//! merled's control-socket requests, pure: one JSON line per request from
//! `merlectl` or `merle-cni`, and the checks a request passes before
//! merled acts on it. A bad request gets an error that names what is
//! wrong; nothing here touches merled's state. `merled::api` re-exports
//! these next to the responses.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum Request {
    Status,
    /// The routes the query selects (all of them by default), or their
    /// counts. The answer streams: merled never builds it whole.
    Routes(RouteQuery),
    Fib,
    /// From merle-cni: IPAM changed, re-read it.
    IpamChanged,
    IpamShow,
    IpamRelease {
        handle: String,
    },
    /// The eBPF datapath: mode, interfaces, endpoints, counters.
    Dataplane,
    /// Store a service in the datastore (etcd), after the checks; every
    /// node sees it.
    ServicePut {
        service: Box<merle_lb::service::Service>,
    },
    /// Remove a service from the datastore.
    ServiceDelete {
        name: String,
    },
    /// From merle-cni: one CNI call's command, result and duration, for
    /// the metrics.
    CniReport {
        op: String,
        result: String,
        seconds: f64,
        #[serde(default)]
        ipam_seconds: Option<f64>,
    },
    /// One peer, with what `merlectl show peer` adds: the likely cause of
    /// a session that stays down.
    ShowPeer {
        address: String,
    },
    /// The configuration merled runs with (passwords left out).
    ShowConfig,
}

/// What `merlectl routes` asks for. Every field is optional, so
/// `{"command":"routes"}` asks for every route.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouteQuery {
    /// A prefix (exact match, `10.0.0.0/24`) or an address (the longest
    /// prefix holding it, `10.0.0.1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Only paths from this peer address, or `"local"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// Only best paths.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub best: bool,
    /// Counts instead of routes.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub count: bool,
}

/// Which prefixes a query selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefixMatch {
    All,
    /// Exactly this prefix (`--prefix 10.0.0.0/24`).
    Exact(IpNet),
    /// The longest prefix that holds this address (`--prefix 10.0.0.1`,
    /// as BIRD's `show route for`).
    Longest(IpAddr),
}

/// Whose paths a query selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerMatch {
    Any,
    Local,
    Addr(IpAddr),
}

/// A checked [`RouteQuery`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query {
    pub prefix: PrefixMatch,
    pub peer: PeerMatch,
    pub best_only: bool,
}

impl Query {
    /// Checks a query from the control socket.
    pub fn parse(q: &RouteQuery) -> Result<Self, String> {
        let prefix = match q.prefix.as_deref().map(str::trim) {
            None | Some("") => PrefixMatch::All,
            Some(s) if s.contains('/') => PrefixMatch::Exact(
                s.parse::<IpNet>().map_err(|e| format!("bad prefix {s:?}: {e} (expected e.g. 10.0.0.0/24)"))?.trunc(),
            ),
            Some(s) => {
                PrefixMatch::Longest(s.parse::<IpAddr>().map_err(|_| {
                    format!("bad prefix {s:?}: expected a prefix (10.0.0.0/24) or an address (10.0.0.1)")
                })?)
            }
        };
        let peer = match q.peer.as_deref().map(str::trim) {
            None | Some("") => PeerMatch::Any,
            Some("local") => PeerMatch::Local,
            Some(s) => {
                PeerMatch::Addr(s.parse().map_err(|_| format!("bad peer {s:?}: expected a peer address or \"local\""))?)
            }
        };
        Ok(Self { prefix, peer, best_only: q.best })
    }
}

/// The CNI commands merle-cni reports.
pub const CNI_COMMANDS: [&str; 5] = ["ADD", "DEL", "CHECK", "STATUS", "GC"];

/// Checks a CNI call's report: a known command, a result merle-cni gives,
/// and durations a call can take.
pub fn check_cni_report(command: &str, result: &str, seconds: f64, ipam_seconds: Option<f64>) -> Result<(), String> {
    if !CNI_COMMANDS.contains(&command) {
        return Err(format!("cni-report: unknown command {command:?}: one of {}", CNI_COMMANDS.join(", ")));
    }
    let code_ok = result.strip_prefix("code_").is_some_and(|c| c.parse::<u16>().is_ok_and(|n| n > 0 && n < 1000));
    if result != "ok" && !code_ok {
        return Err(format!("cni-report: result {result:?} is neither \"ok\" nor \"code_N\""));
    }
    for (k, v) in [("seconds", Some(seconds)), ("ipam_seconds", ipam_seconds)] {
        if let Some(v) = v {
            if !v.is_finite() || !(0.0..=86_400.0).contains(&v) {
                return Err(format!("cni-report: {k} {v} is not a duration between 0 and 86400 s"));
            }
        }
    }
    Ok(())
}

/// A request line as the control socket reads it: parsed, then the
/// checks that need no state (the route query, a CNI report). What is
/// left to check (a service against the datastore's, a peer that must
/// exist) is merled's.
pub fn parse(line: &str) -> Result<Request, String> {
    let req = serde_json::from_str::<Request>(line.trim()).map_err(|e| format!("bad request: {e}"))?;
    match &req {
        Request::Routes(q) => {
            Query::parse(q)?;
        }
        Request::CniReport { op, result, seconds, ipam_seconds } => {
            check_cni_report(op, result, *seconds, *ipam_seconds)?;
        }
        _ => {}
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_requests_parse_and_bad_ones_say_what_is_wrong() {
        assert_eq!(parse(r#"{"command":"status"}"#), Ok(Request::Status));
        let q = parse(r#"{"command":"routes","prefix":"10.0.0.0/8","peer":"local","best":true}"#).unwrap();
        let Request::Routes(q) = q else { panic!("{q:?}") };
        let checked = Query::parse(&q).unwrap();
        assert_eq!(checked.prefix, PrefixMatch::Exact("10.0.0.0/8".parse().unwrap()));
        assert_eq!((checked.peer, checked.best_only), (PeerMatch::Local, true));
        // A host prefix is truncated; an address asks for the longest match.
        let Request::Routes(q) = parse(r#"{"command":"routes","prefix":"10.1.2.3/8"}"#).unwrap() else { panic!() };
        assert_eq!(Query::parse(&q).unwrap().prefix, PrefixMatch::Exact("10.0.0.0/8".parse().unwrap()));
        for (line, says) in [
            (r#"{"command":"routes","prefix":"10.0.0.0/33"}"#, "bad prefix \"10.0.0.0/33\""),
            (r#"{"command":"routes","prefix":"ten"}"#, "expected a prefix"),
            (r#"{"command":"routes","peer":"10.0.0"}"#, "bad peer"),
            (r#"{"command":"routes","colour":"red"}"#, "unknown field `colour`"),
            (r#"{"command":"reboot"}"#, "unknown variant `reboot`"),
            ("not json", "bad request"),
            (r#"{"command":"cni-report","op":"ADD","result":"maybe","seconds":0.1}"#, "neither"),
            (r#"{"command":"cni-report","op":"FLY","result":"ok","seconds":0.1}"#, "unknown command \"FLY\""),
            (r#"{"command":"cni-report","op":"ADD","result":"ok","seconds":-1}"#, "not a duration"),
            (r#"{"command":"cni-report","op":"DEL","result":"code_0","seconds":1}"#, "neither"),
        ] {
            let e = parse(line).unwrap_err();
            assert!(e.contains(says), "{line}: {e}");
        }
        assert!(
            parse(r#"{"command":"cni-report","op":"DEL","result":"code_11","seconds":1,"ipam_seconds":0.5}"#).is_ok()
        );
    }

    /// The fuzz target's seeds are requests merled accepts (so the fuzzer
    /// starts from the parser's far side, not from its first error).
    #[test]
    fn the_fuzz_seeds_are_good_requests() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/seeds/control_request");
        let mut n = 0;
        for e in std::fs::read_dir(dir).unwrap() {
            let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
            assert!(parse(&text).is_ok(), "{text}: {:?}", parse(&text));
            n += 1;
        }
        assert!(n >= 10, "{n} seeds");
    }
}
