//! The network configuration the runtime passes on stdin.

use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;

use crate::spec::{Code, Error, SUPPORTED_VERSIONS};

/// Where merle's own configuration is read from unless the netconf says.
pub const DEFAULT_MERLE_CONFIG: &str = "/etc/merle/merle.toml";

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct NetConf {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// Overrides the pod MTU of merle's configuration (before the
    /// encapsulation overhead is taken off).
    #[serde(default)]
    pub mtu: Option<u16>,
    /// merle's configuration file: node name, pools, IPAM and store.
    #[serde(default)]
    pub merle_config: Option<PathBuf>,
    #[serde(default, rename = "prevResult")]
    pub prev_result: Option<Value>,
    /// GC: the attachments the runtime still has.
    #[serde(default, rename = "cni.dev/valid-attachments")]
    pub valid_attachments: Option<Vec<Attachment>>,
}

/// The spec's network name: alphanumerics, then also `_`, `.` and `-`.
fn valid_name(n: &str) -> bool {
    crate::spec::valid_container_id(n)
}

impl NetConf {
    /// Parses stdin: unparsable JSON is error 6, an unsupported version 1,
    /// anything else wrong 7.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let v: Value = serde_json::from_slice(bytes).map_err(|e| {
            Error::new(Code::Decode, "cannot parse the network configuration as JSON").details(e.to_string())
        })?;
        let version = match v.get("cniVersion") {
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(Error::new(Code::InvalidConfig, "cniVersion must be a string")),
            None => return Err(Error::new(Code::InvalidConfig, "the network configuration has no cniVersion")),
        };
        if !SUPPORTED_VERSIONS.contains(&version.as_str()) {
            return Err(Error::new(
                Code::IncompatibleVersion,
                format!("cniVersion {version:?} is not supported: use one of {}", SUPPORTED_VERSIONS.join(", ")),
            ));
        }
        let c: NetConf = serde_json::from_value(v)
            .map_err(|e| Error::new(Code::InvalidConfig, "invalid network configuration").details(e.to_string()))?;
        if !valid_name(&c.name) {
            return Err(Error::new(Code::InvalidConfig, format!("network name {:?} is not valid", c.name)));
        }
        if let Some(m) = c.mtu {
            if m < 1280 {
                return Err(Error::new(Code::InvalidConfig, format!("mtu {m} is too small: at least 1280")));
            }
        }
        Ok(c)
    }

    pub fn merle_config(&self) -> PathBuf {
        self.merle_config.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_MERLE_CONFIG))
    }

    /// At least 0.4.0: CHECK exists.
    pub fn has_check(&self) -> bool {
        self.cni_version != "0.3.1"
    }

    /// 1.1.0: STATUS and GC exist.
    pub fn has_gc(&self) -> bool {
        self.cni_version == "1.1.0"
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn errors_take_the_spec_codes() {
        assert_eq!(NetConf::parse(b"{\"cniVersion\":").unwrap_err().code, Code::Decode);
        assert_eq!(NetConf::parse(br#"{"name":"n","type":"merle-cni"}"#).unwrap_err().code, Code::InvalidConfig);
        let e = NetConf::parse(br#"{"cniVersion":"9.9.9","name":"n","type":"merle-cni"}"#).unwrap_err();
        assert_eq!(e.code, Code::IncompatibleVersion);
        assert!(e.msg.contains("9.9.9"));
        let e = NetConf::parse(br#"{"cniVersion":"1.0.0","name":"bad name","type":"merle-cni"}"#).unwrap_err();
        assert_eq!(e.code, Code::InvalidConfig);
        let e = NetConf::parse(br#"{"cniVersion":"1.0.0","name":"n","type":"merle-cni","mtu":"x"}"#).unwrap_err();
        assert_eq!(e.code, Code::InvalidConfig);
    }

    #[test]
    fn parses_gc_attachments_and_handles() {
        let c = NetConf::parse(
            br#"{"cniVersion":"1.1.0","name":"k8s","type":"merle-cni","cni.dev/valid-attachments":[{"containerID":"c1","ifname":"eth0"}]}"#,
        )
        .unwrap();
        assert_eq!(c.valid_attachments.unwrap()[0].container_id, "c1");
    }
}
