//! The CNI specification's wire types (1.1.0, with 0.3.1, 0.4.0 and 1.0.0
//! results): the runtime's environment, error codes and result JSON.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub const SUPPORTED_VERSIONS: [&str; 4] = ["0.3.1", "0.4.0", "1.0.0", "1.1.0"];
pub const LATEST: &str = "1.1.0";

/// The spec's well-known error codes, and merle's own (100 and up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    IncompatibleVersion = 1,
    UnsupportedField = 2,
    UnknownContainer = 3,
    InvalidEnvironment = 4,
    Io = 5,
    Decode = 6,
    InvalidConfig = 7,
    TryAgainLater = 11,
    NotAvailable = 50,
    /// merle: the pools have no free address.
    NoAddress = 100,
    /// merle: CHECK found the attachment differs from what ADD set up.
    CheckFailed = 101,
}

/// A failure reported to the runtime as the spec's error JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub code: Code,
    pub msg: String,
    pub details: String,
}

impl Error {
    pub fn new(code: Code, msg: impl Into<String>) -> Self {
        Self { code, msg: msg.into(), details: String::new() }
    }
    pub fn details(mut self, d: impl Into<String>) -> Self {
        self.details = d.into();
        self
    }
    pub fn to_json(&self, version: &str) -> Value {
        let mut v = json!({ "cniVersion": version, "code": self.code as u32, "msg": self.msg });
        if !self.details.is_empty() {
            v["details"] = Value::String(self.details.clone());
        }
        v
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (code {})", self.msg, self.code as u32)?;
        if !self.details.is_empty() {
            write!(f, ": {}", self.details)?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Status,
    Gc,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Add => "ADD",
            Self::Del => "DEL",
            Self::Check => "CHECK",
            Self::Version => "VERSION",
            Self::Status => "STATUS",
            Self::Gc => "GC",
        }
    }

    pub fn parse(s: &str) -> Result<Self, Error> {
        Ok(match s {
            "ADD" => Self::Add,
            "DEL" => Self::Del,
            "CHECK" => Self::Check,
            "VERSION" => Self::Version,
            "STATUS" => Self::Status,
            "GC" => Self::Gc,
            other => {
                return Err(Error::new(
                    Code::InvalidEnvironment,
                    format!("CNI_COMMAND {other:?} is not one of ADD, DEL, CHECK, VERSION, STATUS, GC"),
                ))
            }
        })
    }
}

/// The `CNI_*` variables of one invocation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub args: String,
    pub path: String,
}

/// The spec's container ID: alphanumerics, then also `_`, `.` and `-`.
pub fn valid_container_id(id: &str) -> bool {
    let mut c = id.chars();
    c.next().is_some_and(|f| f.is_ascii_alphanumeric())
        && c.all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '.' | '-'))
}

/// A Linux interface name: 1-15 bytes, not `.`/`..`, no `/`, `:` or space.
pub fn valid_ifname(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 15
        && n != "."
        && n != ".."
        && !n.chars().any(|c| c == '/' || c == ':' || c.is_whitespace())
}

impl Env {
    /// Reads the variables `cmd` needs from `get`; missing or malformed ones
    /// are error 4.
    pub fn read(cmd: Command, get: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let need = |k: &str| -> Result<String, Error> {
            match get(k) {
                Some(v) if !v.is_empty() => Ok(v),
                _ => Err(Error::new(Code::InvalidEnvironment, format!("{k} is not set"))),
            }
        };
        let e = match cmd {
            Command::Version | Command::Status | Command::Gc => return Ok(Self::default()),
            Command::Add | Command::Check => Self {
                container_id: need("CNI_CONTAINERID")?,
                netns: need("CNI_NETNS")?,
                ifname: need("CNI_IFNAME")?,
                args: get("CNI_ARGS").unwrap_or_default(),
                path: get("CNI_PATH").unwrap_or_default(),
            },
            // DEL may come after the sandbox is gone: no netns is fine.
            Command::Del => Self {
                container_id: need("CNI_CONTAINERID")?,
                netns: get("CNI_NETNS").unwrap_or_default(),
                ifname: need("CNI_IFNAME")?,
                args: get("CNI_ARGS").unwrap_or_default(),
                path: get("CNI_PATH").unwrap_or_default(),
            },
        };
        if !valid_container_id(&e.container_id) {
            return Err(Error::new(
                Code::InvalidEnvironment,
                format!("CNI_CONTAINERID {:?} is not a valid container ID", e.container_id),
            ));
        }
        if !valid_ifname(&e.ifname) {
            return Err(Error::new(
                Code::InvalidEnvironment,
                format!("CNI_IFNAME {:?} is not a valid interface name", e.ifname),
            ));
        }
        Ok(e)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    pub mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Set for the container's interface: its netns path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    pub address: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub dst: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
}

/// An ADD result, in the 1.x shape; [`AddResult::to_json`] renders the
/// shape of any supported version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddResult {
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
}

impl AddResult {
    pub fn to_json(&self, version: &str) -> Value {
        let legacy = version.starts_with("0.");
        let ips: Vec<Value> = self
            .ips
            .iter()
            .map(|ip| {
                let mut v = serde_json::to_value(ip).unwrap_or(Value::Null);
                if legacy {
                    v["version"] = Value::String(if ip.address.addr().is_ipv4() { "4" } else { "6" }.into());
                }
                v
            })
            .collect();
        let interfaces: Vec<Value> = self
            .interfaces
            .iter()
            .map(|i| {
                let mut i = i.clone();
                // `mtu` joined the interface object in 1.1.0.
                if version != "1.1.0" {
                    i.mtu = None;
                }
                serde_json::to_value(i).unwrap_or(Value::Null)
            })
            .collect();
        json!({
            "cniVersion": version,
            "interfaces": interfaces,
            "ips": ips,
            "routes": self.routes,
            "dns": {},
        })
    }
}

pub fn version_json(version: &str) -> Value {
    json!({ "cniVersion": version, "supportedVersions": SUPPORTED_VERSIONS })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn env_requires_what_each_command_needs() {
        let full = |k: &str| match k {
            "CNI_CONTAINERID" => Some("abc-1".into()),
            "CNI_NETNS" => Some("/var/run/netns/x".into()),
            "CNI_IFNAME" => Some("eth0".into()),
            _ => None,
        };
        assert!(Env::read(Command::Add, full).is_ok());
        let no_netns = |k: &str| if k == "CNI_NETNS" { None } else { full(k) };
        let e = Env::read(Command::Add, no_netns).unwrap_err();
        assert_eq!(e.code, Code::InvalidEnvironment);
        assert!(e.msg.contains("CNI_NETNS"));
        assert!(Env::read(Command::Del, no_netns).is_ok());
        let bad_id = |k: &str| if k == "CNI_CONTAINERID" { Some("../x".into()) } else { full(k) };
        assert!(Env::read(Command::Add, bad_id).is_err());
        let long_if = |k: &str| if k == "CNI_IFNAME" { Some("a23456789012345x".into()) } else { full(k) };
        assert!(Env::read(Command::Add, long_if).is_err());
    }

    #[test]
    fn results_take_each_versions_shape() {
        let r = AddResult {
            interfaces: vec![Interface {
                name: "eth0".into(),
                mac: "aa".into(),
                mtu: Some(1450),
                sandbox: Some("/n".into()),
            }],
            ips: vec![IpConfig { address: "10.0.0.1/32".parse().unwrap(), gateway: None, interface: Some(0) }],
            routes: vec![Route { dst: "0.0.0.0/0".parse().unwrap(), gw: Some("169.254.1.1".parse().unwrap()) }],
        };
        let old = r.to_json("0.3.1");
        assert_eq!(old["ips"][0]["version"], "4");
        assert!(old["interfaces"][0].get("mtu").is_none());
        let new = r.to_json("1.1.0");
        assert!(new["ips"][0].get("version").is_none());
        assert_eq!(new["interfaces"][0]["mtu"], 1450);
        assert_eq!(new["routes"][0]["gw"], "169.254.1.1");
    }

    #[test]
    fn error_json_has_code_msg_details() {
        let e = Error::new(Code::InvalidConfig, "bad").details("more");
        let v = e.to_json("1.0.0");
        assert_eq!(v["code"], 7);
        assert_eq!(v["msg"], "bad");
        assert_eq!(v["details"], "more");
    }
}
