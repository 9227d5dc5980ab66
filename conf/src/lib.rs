//! merle's configuration file.
//!
//! - [`model`]: the TOML schema as serde types, with defaults. Unknown keys
//!   are errors.
//! - [`load`]: reads a file through the `config` crate and deserializes it,
//!   keeping the path of the offending key for error messages.
//! - [`validate`]: checks that go beyond types (AS ranges, duplicate peers,
//!   prefixes with host bits, ...).
//!
//! Every error names the file, the key and what is wrong, so `merled` can
//! refuse to start with a message the operator can act on.

pub mod identity;
pub mod model;
pub mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

pub use model::*;

/// A configuration error: which file, which key, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    /// Dotted key path such as `bgp.peers[1].as_number`; empty when the
    /// error concerns the file as a whole.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}: key `{}`: {}", self.file.display(), self.key, self.message)
        }
    }
}

/// Reads, parses and validates a configuration file, on this node: what
/// the file leaves out of `[node]` comes from the environment and the
/// host's addresses ([`identity`]).
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_on(path, &identity::System)
}

/// [`load`], asking `host` for the node's identity.
pub fn load_on(path: &Path, host: &dyn identity::Host) -> Result<Config, ConfigError> {
    if !path.is_file() {
        return Err(ConfigError {
            file: path.to_owned(),
            key: String::new(),
            message: "file not found or not a regular file".into(),
        });
    }
    parse(config::File::from(path).format(config::FileFormat::Toml).required(true), path, Some(host))
}

/// Parses and validates configuration text (for tests and `merled --check`).
/// Nothing is asked of the node: `[node]` must be complete.
pub fn from_str(text: &str, name: &Path) -> Result<Config, ConfigError> {
    parse(config::File::from_str(text, config::FileFormat::Toml), name, None)
}

/// [`from_str`], asking `host` for what `[node]` leaves out.
pub fn from_str_on(text: &str, name: &Path, host: &dyn identity::Host) -> Result<Config, ConfigError> {
    parse(config::File::from_str(text, config::FileFormat::Toml), name, Some(host))
}

/// Builds the configuration from one `config` source, keeping the path of
/// a key serde rejects, then validates it.
fn parse<S: config::Source + Send + Sync + 'static>(
    source: S,
    file: &Path,
    host: Option<&dyn identity::Host>,
) -> Result<Config, ConfigError> {
    let err = |key: String, message: String| ConfigError { file: file.to_owned(), key, message };
    let raw = config::Config::builder()
        .add_source(source)
        .build()
        .map_err(|e| err(String::new(), format!("cannot parse TOML: {e}")))?;
    let raw = match host {
        Some(h) => identity::resolve(raw, h).map_err(|(k, m)| err(k, m))?,
        None => raw,
    };
    let mut cfg: Config = serde_path_to_error::deserialize(raw).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." { String::new() } else { key };
        err(key, clean_serde_message(&e.inner().to_string()))
    })?;
    let legacy = cfg.services.legacy_ranges.is_some();
    if let Some(r) = cfg.services.legacy_ranges.take() {
        if cfg.service_ranges != Services::default() {
            return Err(err(
                "services".into(),
                "the [services] table of ranges is the older spelling of [service_ranges]: give one of them".into(),
            ));
        }
        cfg.service_ranges = r;
    }
    validate::validate(&cfg).map_err(|(key, message)| {
        // Named as the file spells it.
        let key = match key.strip_prefix("service_ranges.") {
            Some(rest) if legacy => format!("services.{rest}"),
            _ => key,
        };
        err(key, message)
    })?;
    Ok(cfg)
}

/// A file of services alone (`[[services]]` tables, as in the
/// configuration), for `merlectl service apply`: each error names its key.
/// The checks that need the cluster's ranges are merled's.
pub fn services_file(path: &Path) -> Result<Vec<merle_lb::service::Service>, ConfigError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        services: Vec<merle_lb::service::Service>,
    }
    let err = |key: String, message: String| ConfigError { file: path.to_owned(), key, message };
    if !path.is_file() {
        return Err(err(String::new(), "file not found or not a regular file".into()));
    }
    let raw = config::Config::builder()
        .add_source(config::File::from(path).format(config::FileFormat::Toml).required(true))
        .build()
        .map_err(|e| err(String::new(), format!("cannot parse TOML: {e}")))?;
    let f: File = serde_path_to_error::deserialize(raw).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." { String::new() } else { key };
        err(key, clean_serde_message(&e.inner().to_string()))
    })?;
    if f.services.is_empty() {
        return Err(err("services".into(), "no [[services]] in the file".into()));
    }
    Ok(f.services)
}

/// The `config` crate appends its own origin to some messages; the file is
/// already in our prefix, so keep only serde's words.
fn clean_serde_message(m: &str) -> String {
    m.split(" for key `").next().unwrap_or(m).trim().to_owned()
}
