//! `merle-cni`: the CNI plugin. The runtime runs it with `CNI_*` variables
//! and the network configuration on stdin; it prints the result, or the
//! spec's error JSON and exits non-zero.
//!
//! `merle-cni install [OPTIONS]` (the DaemonSet's init container, never
//! the runtime, which passes no arguments) puts the plugin and the
//! network configuration list in place on the node: see
//! `merle_cni::install`.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

/// Network configurations are small; a runaway stdin is refused.
const MAX_STDIN: u64 = 1 << 20;

/// `merle-cni install`: the plugin and its network configuration list,
/// into the directories the container runtime reads.
#[derive(Debug, clap::Parser)]
#[command(name = "merle-cni install")]
struct InstallArgs {
    /// The runtime's plugin directory, as mounted from the host.
    #[arg(long, default_value = "/host/opt/cni/bin")]
    bin_dir: PathBuf,
    /// The runtime's configuration directory, as mounted from the host.
    #[arg(long, default_value = "/host/etc/cni/net.d")]
    conf_dir: PathBuf,
    /// Where the chained plugins (portmap, bandwidth) are in the image,
    /// for a node that has none.
    #[arg(long, default_value = "/usr/lib/cni")]
    plugins_from: PathBuf,
    /// merle's configuration as merle-cni finds it on the host.
    #[arg(long, default_value = merle_cni::netconf::DEFAULT_MERLE_CONFIG)]
    merle_config: PathBuf,
    /// The pod MTU merle-cni sets (default: merle's configuration's).
    #[arg(long)]
    mtu: Option<u16>,
    /// Copy this merle configuration (the ConfigMap's) to --config-to.
    #[arg(long, requires = "config_to")]
    config_from: Option<PathBuf>,
    /// Where the host's merle configuration is, as mounted here.
    #[arg(long, requires = "config_from")]
    config_to: Option<PathBuf>,
    /// The node's name (the DaemonSet passes spec.nodeName), written to
    /// --nodename-file for merle-cni.
    #[arg(long, env = "MERLE_NODE_NAME")]
    node_name: Option<String>,
    /// The host's node-name file, as mounted here.
    #[arg(long, default_value = "/host/var/lib/merle/nodename")]
    nodename_file: PathBuf,
    /// Copy the files of this mounted Secret (etcd's CA, the node's
    /// certificate and key) to --secrets-to, mode 0600.
    #[arg(long, requires = "secrets_to")]
    secrets_from: Option<PathBuf>,
    /// Where the host keeps them (the paths merle's configuration names),
    /// as mounted here.
    #[arg(long, requires = "secrets_from")]
    secrets_to: Option<PathBuf>,
    /// Run again every this many seconds (a sidecar that keeps the host's
    /// copies in step with the ConfigMap); 0: once.
    #[arg(long, default_value_t = 0)]
    every: u64,
}

fn install(args: &[String]) -> anyhow::Result<()> {
    use clap::Parser;
    let a = InstallArgs::try_parse_from(args)?;
    let plugin = std::env::current_exe().context("cannot find merle-cni's own binary")?;
    let job = merle_cni::install::Install {
        plugin,
        bin_dir: a.bin_dir,
        conf_dir: a.conf_dir,
        plugins_from: a.plugins_from,
        merle_config: a.merle_config,
        mtu: a.mtu,
        config: a.config_from.zip(a.config_to),
        nodename: a.node_name.map(|n| (n, a.nodename_file)),
        secrets: a.secrets_from.zip(a.secrets_to),
    };
    loop {
        let done = match job.run() {
            Ok(d) => d,
            Err(e) if a.every == 0 => return Err(e.into()),
            // The sidecar goes on: the host keeps its last good copies,
            // and the next round tries again.
            Err(e) => {
                eprintln!("merle-cni install: {e}");
                std::thread::sleep(std::time::Duration::from_secs(a.every));
                continue;
            }
        };
        for (path, action) in &done.files {
            if a.every == 0 || *action == merle_cni::install::Action::Written {
                println!("{}: {}", path.display(), action.as_str());
            }
        }
        if !done.shadowed_by.is_empty() {
            eprintln!(
                "warning: {} sort before {}: the runtime uses the first list, not merle's; remove them",
                done.shadowed_by.join(", "),
                merle_cni::install::CONFLIST_NAME
            );
        }
        if a.every == 0 {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_secs(a.every));
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("install") {
        return match install(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => match e.downcast_ref::<clap::Error>() {
                Some(c) => {
                    let _ = c.print();
                    ExitCode::from(if c.use_stderr() { 2 } else { 0 })
                }
                None => {
                    eprintln!("merle-cni install: {e:#}");
                    ExitCode::from(1)
                }
            },
        };
    }
    let mut stdin = Vec::new();
    if let Err(e) = std::io::stdin().take(MAX_STDIN).read_to_end(&mut stdin) {
        let err = merle_cni::spec::Error::new(merle_cni::spec::Code::Io, format!("cannot read stdin: {e}"));
        return emit(&err.to_json(merle_cni::spec::LATEST), 1);
    }
    match merle_cni::plugin::run(|k| std::env::var(k).ok(), &stdin) {
        Ok(Some(v)) => emit(&v, 0),
        Ok(None) => ExitCode::SUCCESS,
        Err((e, version)) => emit(&e.to_json(&version), 1),
    }
}

fn emit(v: &serde_json::Value, code: u8) -> ExitCode {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, v);
    let _ = out.write_all(b"\n");
    ExitCode::from(code)
}
