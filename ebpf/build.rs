//! Compiles each `bpf/*.bpf.c` with clang for the BPF target (Debian's
//! clang-19, the kernel's uapi headers and libbpf's `bpf_helpers.h`) into
//! `$OUT_DIR`, where `src/objects.rs` embeds them. It also builds and runs
//! `bpf/layout.c` for the host: it prints the size and field offsets of
//! every type in `bpf/lib/types.h`, and the reason codes of
//! `bpf/lib/drop.h`, which the layout test compares with `src/types.rs`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn clang() -> String {
    if let Ok(c) = std::env::var("MERLE_CLANG") {
        return c;
    }
    for c in ["clang-19", "clang"] {
        if Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()) {
            return c.to_string();
        }
    }
    panic!("clang is not installed: run ./testbed/install-deps.sh (it installs clang-19 and libbpf-dev)");
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!("{what} failed:\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
}

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let src = Path::new("bpf");
    let clang = clang();
    println!("cargo:rerun-if-changed=bpf");
    println!("cargo:rerun-if-env-changed=MERLE_CLANG");
    let arch_include = format!("-I/usr/include/{}-linux-gnu", std::env::consts::ARCH);
    for name in ["pod", "node", "sock", "test/reject", "test/minimal"] {
        let c = src.join(format!("{name}.bpf.c"));
        let o = out.join(format!("{}.bpf.o", name.replace('/', "_")));
        run(
            Command::new(&clang)
                .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror", "-c"])
                .arg(&arch_include)
                .arg(&c)
                .arg("-o")
                .arg(&o),
            &format!("compiling {}", c.display()),
        );
    }
    let exe = out.join("layout");
    run(
        Command::new(&clang)
            .args(["-O0", "-Wall", "-Werror"])
            .arg(&arch_include)
            .arg(src.join("layout.c"))
            .arg("-o")
            .arg(&exe),
        "compiling bpf/layout.c",
    );
    let printed = Command::new(&exe).output().expect("running bpf/layout.c");
    assert!(printed.status.success(), "bpf/layout.c failed");
    std::fs::write(out.join("layout.txt"), printed.stdout).expect("writing layout.txt");
}
