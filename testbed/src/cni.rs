//! Running merle-cni as a container runtime does, for the demo and tests.

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use anyhow::{bail, Context};
use serde_json::Value;

use crate::netns::Netns;

/// The network name of testbed pods (the first part of their handles).
pub const NETWORK: &str = "k8s-pod-network";

/// Runs `merle-cni` `cmd` (ADD, DEL, CHECK) in `node` for the pod netns
/// `pod`, container `id` on eth0, with merle's configuration
/// `merle_config`; returns the parsed result (null when it prints none).
pub fn run(cni: &Path, node: &Netns, cmd: &str, merle_config: &Path, pod: &Netns, id: &str) -> anyhow::Result<Value> {
    let netconf = serde_json::json!({
        "cniVersion": "1.1.0", "name": NETWORK, "type": "merle-cni", "merle_config": merle_config,
    });
    let mut c = node.command(cni.to_str().context("non-UTF-8 path")?);
    c.env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", format!("/var/run/netns/{}", pod.name))
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().context("cannot start merle-cni")?;
    child.stdin.take().context("stdin")?.write_all(netconf.to_string().as_bytes())?;
    let out = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("merle-cni {cmd} {id} failed: {} {}", text.trim(), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(if text.trim().is_empty() { Value::Null } else { serde_json::from_str(&text)? })
}

/// The pod addresses of an ADD result, without their prefix lengths.
pub fn addresses(result: &Value) -> Vec<String> {
    result["ips"]
        .as_array()
        .map(|ips| {
            ips.iter()
                .filter_map(|i| i["address"].as_str())
                .map(|a| a.split('/').next().unwrap_or(a).to_owned())
                .collect()
        })
        .unwrap_or_default()
}
