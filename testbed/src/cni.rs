//! Running a CNI network configuration list as a container runtime does
//! (libcni's rules), for the demo and tests: each plugin in turn, its
//! netconf built from the list's `cniVersion` and `name`, the runtime's
//! values for the capabilities it declares as `runtimeConfig`, and the
//! previous plugin's result as `prevResult`; DEL in reverse order with the
//! cached result; CHECK in order with it.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::netns::Netns;

/// The network configuration list the project documents and
/// `merle-cni install` writes (docs/configuration.md shows it).
pub const CONFLIST: &str = include_str!("../../conf/examples/10-merle.conflist");

/// The network name of testbed pods (the first part of their handles).
pub const NETWORK: &str = "k8s-pod-network";

/// Where Debian's reference plugins are.
pub const REFERENCE_PLUGINS: &str = "/usr/lib/cni";

/// What the runtime passes for the capabilities plugins declare.
#[derive(Debug, Clone, Default)]
pub struct RuntimeConfig {
    pub port_mappings: Vec<Value>,
    pub bandwidth: Option<Value>,
}

/// A conflist and the runtime's state for it: the results of the
/// attachments it added, as libcni caches them.
#[derive(Debug)]
pub struct Runtime {
    pub conflist: Value,
    plugin_dirs: Vec<PathBuf>,
    pub runtime_config: RuntimeConfig,
    cache: Mutex<HashMap<String, Value>>,
    /// The node's plugin and configuration directories `merle-cni
    /// install` filled, when the runtime was made by [`Runtime::new`].
    pub installed: Option<Installed>,
}

/// What `merle-cni install` put on a (test) node.
#[derive(Debug)]
pub struct Installed {
    pub bin_dir: PathBuf,
    pub conf_dir: PathBuf,
    /// What it printed.
    pub report: String,
    _dir: crate::TempDir,
}

/// Runs `merle-cni install` as the DaemonSet's init container does, into
/// fresh `bin/` and `net.d/` directories, with merle-cni reading
/// `merle_config`.
pub fn install(merle_cni: &Path, merle_config: &Path) -> anyhow::Result<Installed> {
    let dir = crate::TempDir::new("cni-install")?;
    let (bin_dir, conf_dir) = (dir.path().join("bin"), dir.path().join("net.d"));
    std::fs::create_dir_all(&bin_dir)?;
    std::fs::create_dir_all(&conf_dir)?;
    let out = std::process::Command::new(merle_cni)
        .arg("install")
        .arg("--bin-dir")
        .arg(&bin_dir)
        .arg("--conf-dir")
        .arg(&conf_dir)
        .arg("--plugins-from")
        .arg(REFERENCE_PLUGINS)
        .arg("--merle-config")
        .arg(merle_config)
        .output()
        .with_context(|| format!("running {} install", merle_cni.display()))?;
    if !out.status.success() {
        bail!("merle-cni install failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    Ok(Installed { bin_dir, conf_dir, report, _dir: dir })
}

impl Runtime {
    /// The node as `merle-cni install` leaves it: its conflist, with
    /// merle-cni reading `merle_config`, and the plugins it put in its
    /// plugin directory (merle-cni, and portmap and bandwidth from
    /// Debian's package).
    pub fn new(merle_cni: &Path, merle_config: &Path) -> anyhow::Result<Self> {
        let inst = install(merle_cni, merle_config)?;
        let list = inst.conf_dir.join("10-merle.conflist");
        let text = std::fs::read_to_string(&list).with_context(|| format!("reading {}", list.display()))?;
        let mut rt = Self::from_conflist(&text, &inst.bin_dir.join("merle-cni"), merle_config)?;
        rt.plugin_dirs = vec![inst.bin_dir.clone()];
        rt.installed = Some(inst);
        Ok(rt)
    }

    pub fn from_conflist(text: &str, merle_cni: &Path, merle_config: &Path) -> anyhow::Result<Self> {
        let mut conflist: Value = serde_json::from_str(text).context("the conflist is not JSON")?;
        let plugins = conflist["plugins"].as_array_mut().context("the conflist has no plugins list")?;
        for p in plugins.iter_mut().filter(|p| p["type"] == "merle-cni") {
            p["merle_config"] = json!(merle_config);
        }
        let dir = merle_cni.parent().context("merle-cni has no directory")?.to_owned();
        Ok(Self {
            conflist,
            plugin_dirs: vec![dir, PathBuf::from(REFERENCE_PLUGINS)],
            runtime_config: RuntimeConfig::default(),
            cache: Mutex::new(HashMap::new()),
            installed: None,
        })
    }

    pub fn version(&self) -> &str {
        self.conflist["cniVersion"].as_str().unwrap_or_default()
    }

    fn plugins(&self) -> Vec<Value> {
        self.conflist["plugins"].as_array().cloned().unwrap_or_default()
    }

    /// One plugin's netconf, as libcni builds it.
    fn netconf(&self, plugin: &Value, prev: Option<&Value>) -> Value {
        let mut c = plugin.clone();
        c["cniVersion"] = self.conflist["cniVersion"].clone();
        c["name"] = self.conflist["name"].clone();
        let mut rc = serde_json::Map::new();
        let caps = &plugin["capabilities"];
        if caps["portMappings"] == true && !self.runtime_config.port_mappings.is_empty() {
            rc.insert("portMappings".into(), json!(self.runtime_config.port_mappings));
        }
        if let (true, Some(b)) = (caps["bandwidth"] == true, &self.runtime_config.bandwidth) {
            rc.insert("bandwidth".into(), b.clone());
        }
        if !rc.is_empty() {
            c["runtimeConfig"] = Value::Object(rc);
        }
        if let Some(p) = prev {
            c["prevResult"] = p.clone();
        }
        c
    }

    fn program(&self, plugin: &Value) -> anyhow::Result<PathBuf> {
        let t = plugin["type"].as_str().context("a plugin without a type")?;
        self.plugin_dirs.iter().map(|d| d.join(t)).find(|p| p.is_file()).with_context(|| {
            format!("plugin {t:?} not found in {:?} (install containernetworking-plugins)", self.plugin_dirs)
        })
    }

    /// ADD: every plugin in order; returns the last one's result.
    pub fn add(&self, node: &Netns, pod: &Netns, id: &str) -> anyhow::Result<Value> {
        let mut prev: Option<Value> = None;
        for p in self.plugins() {
            let r = self.exec(node, &p, "ADD", pod, id, prev.as_ref())?;
            if r.is_null() {
                bail!("{} ADD printed no result", p["type"]);
            }
            if r["cniVersion"] != self.conflist["cniVersion"] {
                bail!("{} answered ADD in version {} for a {} conflist", p["type"], r["cniVersion"], self.version());
            }
            prev = Some(r);
        }
        let r = prev.context("the conflist has no plugins")?;
        self.lock().insert(id.to_owned(), r.clone());
        Ok(r)
    }

    /// CHECK (0.4.0 and later): every plugin in order, with the cached
    /// result.
    pub fn check(&self, node: &Netns, pod: &Netns, id: &str) -> anyhow::Result<()> {
        self.check_where(node, pod, id, |_| true)
    }

    /// CHECK through the plugins whose type `which` selects.
    pub fn check_where(&self, node: &Netns, pod: &Netns, id: &str, which: impl Fn(&str) -> bool) -> anyhow::Result<()> {
        let prev = self.lock().get(id).cloned().context("CHECK of an attachment never added")?;
        for p in self.plugins().into_iter().filter(|p| which(p["type"].as_str().unwrap_or_default())) {
            self.exec(node, &p, "CHECK", pod, id, Some(&prev))?;
        }
        Ok(())
    }

    /// DEL: every plugin in reverse order, with the cached result if any.
    pub fn del(&self, node: &Netns, pod: &Netns, id: &str) -> anyhow::Result<()> {
        let prev = self.lock().remove(id);
        for p in self.plugins().iter().rev() {
            self.exec(node, p, "DEL", pod, id, prev.as_ref())?;
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Value>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn exec(
        &self,
        node: &Netns,
        plugin: &Value,
        cmd: &str,
        pod: &Netns,
        id: &str,
        prev: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let program = self.program(plugin)?;
        let netconf = self.netconf(plugin, prev);
        let path = std::env::join_paths(&self.plugin_dirs)?;
        let mut c = node.command(program.to_str().context("non-UTF-8 path")?);
        c.env("CNI_COMMAND", cmd)
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", format!("/var/run/netns/{}", pod.name))
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().with_context(|| format!("cannot start {}", program.display()))?;
        child.stdin.take().context("stdin")?.write_all(netconf.to_string().as_bytes())?;
        let out = child.wait_with_output()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "{} {cmd} {id} failed: {} {}",
                plugin["type"],
                text.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(if text.trim().is_empty() { Value::Null } else { serde_json::from_str(&text)? })
    }
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
