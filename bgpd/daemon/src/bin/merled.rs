//! merled: merle's routing daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(name = "merled", version, about = "merle routing daemon: BGP for Kubernetes nodes")]
struct Args {
    /// Configuration file (TOML).
    #[arg(long, short = 'c', default_value = "/etc/merle/merled.toml")]
    config: PathBuf,
    /// Check the configuration and exit.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let cfg = match conf::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("merled: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check {
        println!("{}: configuration is valid", args.config.display());
        return ExitCode::SUCCESS;
    }
    let filter = EnvFilter::try_from_env("MERLE_LOG").unwrap_or_else(|_| EnvFilter::new(&cfg.log.level));
    let log = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match cfg.log.format {
        conf::LogFormat::Text => log.init(),
        // One object per line, fields flattened, for log shippers.
        conf::LogFormat::Json => log.json().flatten_event(true).with_current_span(false).init(),
    }
    // One event-loop thread, as BIRD: the peers share one RIB behind one
    // lock, so a second worker mostly adds lock hand-offs and cross-thread
    // wake-ups (the ingest benchmark runs about 15% faster on one). Tokio's
    // own TOKIO_WORKER_THREADS still overrides this.
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        builder.worker_threads(1);
    }
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("merled: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(merled::daemon::run(cfg, &args.config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("merled: {e:#}");
            ExitCode::FAILURE
        }
    }
}
