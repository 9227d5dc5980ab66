//! `merle-cni install`: what calico-node's install-cni init container
//! does. It puts `merle-cni` into the runtime's plugin directory and the
//! network configuration list into its configuration directory, each by
//! writing a temporary file beside the target and renaming it over, so
//! that a running kubelet or containerd never reads half a file; a file
//! whose content is already right is left alone (no rename, no new
//! inode, no event for a watching runtime).
//!
//! The reference plugins the list chains (`portmap`, `bandwidth`) are
//! copied from the image only where the node has none: a node's own
//! plugins are never replaced.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The network configuration list merle installs, with merle-cni reading
/// `/etc/merle/merle.toml`: `conf/examples/10-merle.conflist`.
pub const CONFLIST: &str = include_str!("../../conf/examples/10-merle.conflist");

/// Its file name: kubelet uses the first list in lexical order.
pub const CONFLIST_NAME: &str = "10-merle.conflist";

/// The plugins the list chains after merle-cni.
pub const CHAINED: [&str; 2] = ["portmap", "bandwidth"];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{0} is not a directory")]
    NotDir(PathBuf),
    #[error("the network configuration list is not valid: {0}")]
    Conflist(String),
    #[error("the node name {0:?} is not a name (empty or with spaces)")]
    NodeName(String),
    #[error("{file} is not a merle configuration this node can run, so the host's copy is left as it is: {message}")]
    MerleConfig { file: PathBuf, message: String },
    #[error("{plugin} is chained in the list but is neither in {bin_dir} nor in {from}")]
    MissingPlugin { plugin: String, bin_dir: PathBuf, from: PathBuf },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io { what, path: path.to_owned(), source }
}

/// What to install, and where.
#[derive(Debug, Clone)]
pub struct Install {
    /// The merle-cni binary to copy (the running one, in the image).
    pub plugin: PathBuf,
    /// The runtime's plugin directory (`/opt/cni/bin` on the host).
    pub bin_dir: PathBuf,
    /// The runtime's configuration directory (`/etc/cni/net.d`).
    pub conf_dir: PathBuf,
    /// Where the image keeps the chained plugins (Debian's `/usr/lib/cni`).
    pub plugins_from: PathBuf,
    /// The merle configuration merle-cni reads, as seen from the host.
    pub merle_config: PathBuf,
    /// Overrides the pod MTU in the list (`mtu` of merle-cni's netconf).
    pub mtu: Option<u16>,
    /// merle's configuration to copy where merle-cni reads it on the host:
    /// (the file in the image or the ConfigMap's mount, the host's path as
    /// mounted here).
    pub config: Option<(PathBuf, PathBuf)>,
    /// The node's name and the host's node-name file (as mounted here),
    /// which merle-cni reads when the configuration names no node
    /// (`conf::identity`).
    pub nodename: Option<(String, PathBuf)>,
    /// A mounted Secret's files (etcd's CA, this node's certificate and
    /// key) to copy to the host, mode 0600, where merle-cni reads them:
    /// (the Secret's mount, the host's directory as mounted here).
    pub secrets: Option<(PathBuf, PathBuf)>,
}

/// What happened to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Written (a temporary file renamed over the target).
    Written,
    /// Its content was already right: not touched.
    Unchanged,
    /// A chained plugin the node already has: kept as it is.
    Kept,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Written => "written",
            Action::Unchanged => "unchanged",
            Action::Kept => "kept (the node's own)",
        }
    }
}

/// The outcome, file by file, and what the runtime would read.
#[derive(Debug, Clone)]
pub struct Installed {
    pub files: Vec<(PathBuf, Action)>,
    /// Network configuration files that sort before merle's: the runtime
    /// would use the first of them, not merle's.
    pub shadowed_by: Vec<String>,
}

/// The list as installed: merle's, with its merle-cni reading
/// `merle_config` and, when given, the pod MTU.
pub fn conflist(merle_config: &Path, mtu: Option<u16>) -> Result<String, Error> {
    let mut v: Value = serde_json::from_str(CONFLIST).map_err(|e| Error::Conflist(e.to_string()))?;
    let plugins = v["plugins"].as_array_mut().ok_or_else(|| Error::Conflist("it has no plugins list".into()))?;
    let merle = plugins
        .iter_mut()
        .find(|p| p["type"] == "merle-cni")
        .ok_or_else(|| Error::Conflist("it does not list merle-cni".into()))?;
    merle["merle_config"] = Value::String(merle_config.display().to_string());
    if let Some(m) = mtu {
        if m < 1280 {
            return Err(Error::Conflist(format!("mtu {m} is too small: at least 1280")));
        }
        merle["mtu"] = Value::from(m);
    }
    let mut text = serde_json::to_string_pretty(&v).map_err(|e| Error::Conflist(e.to_string()))?;
    text.push('\n');
    Ok(text)
}

/// Writes `content` to `dir/name` unless it already holds it: through a
/// temporary file in the same directory (same filesystem), synced, given
/// `mode`, then renamed over the target.
pub fn put_file(dir: &Path, name: &str, content: &[u8], mode: u32) -> Result<Action, Error> {
    let target = dir.join(name);
    if let Ok(held) = fs::read(&target) {
        let mode_ok = fs::metadata(&target).map(|m| m.permissions().mode() & 0o7777 == mode).unwrap_or(false);
        if held == content && mode_ok {
            return Ok(Action::Unchanged);
        }
    }
    // A dot name with no .conf/.conflist/.json ending: no runtime reads it.
    let tmp = dir.join(format!(".{name}.merle-tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp).map_err(io("cannot create", &tmp))?;
        f.write_all(content).map_err(io("cannot write", &tmp))?;
        f.set_permissions(fs::Permissions::from_mode(mode)).map_err(io("cannot set the mode of", &tmp))?;
        f.sync_all().map_err(io("cannot sync", &tmp))?;
        fs::rename(&tmp, &target).map_err(io("cannot rename into", &target))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map(|()| Action::Written)
}

/// [`put_file`] for a full path, its directory made if missing.
fn put_beside(path: &Path, content: &[u8], mode: u32) -> Result<Action, Error> {
    let dir = path.parent().ok_or_else(|| Error::NotDir(path.to_owned()))?;
    let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| Error::NotDir(path.to_owned()))?;
    fs::create_dir_all(dir).map_err(io("cannot create", dir))?;
    put_file(dir, name, content, mode)
}

fn check_dir(d: &Path) -> Result<(), Error> {
    match fs::metadata(d) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error::NotDir(d.to_owned())),
        Err(e) => Err(Error::Io { what: "cannot use", path: d.to_owned(), source: e }),
    }
}

impl Install {
    pub fn run(&self) -> Result<Installed, Error> {
        check_dir(&self.bin_dir)?;
        check_dir(&self.conf_dir)?;
        let list = conflist(&self.merle_config, self.mtu)?;
        // Everything that can be refused is refused before anything is
        // written.
        if let Some((name, _)) = &self.nodename {
            if name.trim().is_empty() || name.contains(char::is_whitespace) {
                return Err(Error::NodeName(name.clone()));
            }
        }
        let config = match &self.config {
            Some((from, to)) => {
                let content = fs::read(from).map_err(io("cannot read", from))?;
                // As merled and merle-cni on this node will read it: the
                // name and address it leaves out found here.
                let text = String::from_utf8(content.clone())
                    .map_err(|_| Error::MerleConfig { file: from.clone(), message: "not UTF-8".into() })?;
                conf::from_str_on(&text, from, &NodeNamed(self.nodename.as_ref().map(|n| n.0.clone())))
                    .map_err(|e| Error::MerleConfig { file: from.clone(), message: e.to_string() })?;
                Some((to, content))
            }
            None => None,
        };
        let secrets = match &self.secrets {
            Some((from, to)) => secret_files(from)?.into_iter().map(|(n, c)| (to.join(n), c)).collect(),
            None => Vec::new(),
        };
        let mut files = Vec::new();
        let bin = fs::read(&self.plugin).map_err(io("cannot read", &self.plugin))?;
        files.push((self.bin_dir.join("merle-cni"), put_file(&self.bin_dir, "merle-cni", &bin, 0o755)?));
        for p in CHAINED {
            let there = self.bin_dir.join(p);
            if there.exists() {
                files.push((there, Action::Kept));
                continue;
            }
            let from = self.plugins_from.join(p);
            let content = fs::read(&from).map_err(|_| Error::MissingPlugin {
                plugin: p.to_string(),
                bin_dir: self.bin_dir.clone(),
                from: self.plugins_from.clone(),
            })?;
            files.push((there, put_file(&self.bin_dir, p, &content, 0o755)?));
        }
        // What merle-cni reads, before the list that makes the runtime
        // call it.
        if let Some((name, file)) = &self.nodename {
            files.push((file.clone(), put_beside(file, format!("{name}\n").as_bytes(), 0o644)?));
        }
        for (to, content) in &secrets {
            files.push((to.clone(), put_beside(to, content, 0o600)?));
        }
        if let Some((to, content)) = config {
            files.push((to.clone(), put_beside(to, &content, 0o644)?));
        }
        // The binaries first: a list naming a plugin not yet there would
        // fail every pod the runtime starts in between.
        files.push((
            self.conf_dir.join(CONFLIST_NAME),
            put_file(&self.conf_dir, CONFLIST_NAME, list.as_bytes(), 0o644)?,
        ));
        Ok(Installed { files, shadowed_by: shadowing(&self.conf_dir)? })
    }
}

/// The files of a mounted Secret: its keys, which Kubernetes makes
/// symlinks into a hidden `..data` directory (followed); the hidden
/// entries themselves are skipped. An empty or missing directory (an
/// optional Secret not created) gives nothing.
fn secret_files(dir: &Path) -> Result<Vec<(String, Vec<u8>)>, Error> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::Io { what: "cannot list", path: dir.to_owned(), source: e }),
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let Ok(name) = e.file_name().into_string() else { continue };
        let path = e.path();
        if name.starts_with('.') || !path.is_file() {
            continue;
        }
        out.push((name, fs::read(&path).map_err(io("cannot read", &path))?));
    }
    out.sort();
    Ok(out)
}

/// This node, as merled will see it, with the name about to be written
/// (the node-name file is not there yet on a first install).
struct NodeNamed(Option<String>);

impl conf::identity::Host for NodeNamed {
    fn var(&self, name: &str) -> Option<String> {
        match (name, &self.0) {
            ("MERLE_NODE_NAME", Some(n)) => Some(n.clone()),
            _ => conf::identity::System.var(name),
        }
    }
    fn nodename_file(&self) -> Option<String> {
        conf::identity::System.nodename_file()
    }
    fn addrs(&self) -> Result<Vec<conf::identity::HostAddr>, String> {
        conf::identity::System.addrs()
    }
    fn source_for(&self, dst: std::net::IpAddr) -> Option<std::net::IpAddr> {
        conf::identity::System.source_for(dst)
    }
}

/// The network configuration files in `dir` that sort before merle's.
fn shadowing(dir: &Path) -> Result<Vec<String>, Error> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map_err(io("cannot list", dir))?
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.') && [".conf", ".conflist", ".json"].iter().any(|x| n.ends_with(x)))
        .filter(|n| n.as_str() < CONFLIST_NAME)
        .collect();
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("merle-install-unit-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn the_list_names_the_merle_config_and_parses_as_merle_cni_reads_it() {
        let text = conflist(Path::new("/etc/merle/node.toml"), Some(1400)).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["plugins"][0]["merle_config"], "/etc/merle/node.toml");
        assert_eq!(v["plugins"][0]["mtu"], 1400);
        let types: Vec<&str> = v["plugins"].as_array().unwrap().iter().map(|p| p["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["merle-cni", "portmap", "bandwidth"]);
        // Each plugin's netconf as a runtime builds it is one merle-cni takes.
        let mut net = v["plugins"][0].clone();
        net["cniVersion"] = v["cniVersion"].clone();
        net["name"] = v["name"].clone();
        crate::netconf::NetConf::parse(net.to_string().as_bytes()).unwrap();
        assert!(matches!(conflist(Path::new("/x"), Some(1000)), Err(Error::Conflist(m)) if m.contains("1280")));
    }

    #[test]
    fn a_file_is_replaced_by_rename_and_left_alone_when_it_is_right() {
        use std::os::unix::fs::MetadataExt;
        let d = tmp("put");
        assert_eq!(put_file(&d, "a.conflist", b"one", 0o644).unwrap(), Action::Written);
        let ino = fs::metadata(d.join("a.conflist")).unwrap().ino();
        assert_eq!(put_file(&d, "a.conflist", b"one", 0o644).unwrap(), Action::Unchanged);
        assert_eq!(fs::metadata(d.join("a.conflist")).unwrap().ino(), ino, "not rewritten");
        assert_eq!(put_file(&d, "a.conflist", b"two", 0o644).unwrap(), Action::Written);
        assert_ne!(fs::metadata(d.join("a.conflist")).unwrap().ino(), ino, "a new file renamed over");
        assert_eq!(fs::read(d.join("a.conflist")).unwrap(), b"two");
        // A wrong mode alone is rewritten too.
        assert_eq!(put_file(&d, "a.conflist", b"two", 0o600).unwrap(), Action::Written);
        let names: Vec<_> = fs::read_dir(&d).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
        fs::remove_dir_all(&d).unwrap();
    }
}
