//! `merle-cni`: the CNI plugin. The runtime runs it with `CNI_*` variables
//! and the network configuration on stdin; it prints the result, or the
//! spec's error JSON and exits non-zero.

use std::io::{Read, Write};
use std::process::ExitCode;

/// Network configurations are small; a runaway stdin is refused.
const MAX_STDIN: u64 = 1 << 20;

fn main() -> ExitCode {
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
