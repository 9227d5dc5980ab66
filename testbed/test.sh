#!/usr/bin/env bash
# merle's test suite: formatting, lints, unit, property, fixture and
# namespace interop tests (BIRD 2 and FRR), then a short run of every fuzz
# target. Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) != 0 ]]; then
  echo "run as root: the interop tests build network namespaces" >&2
  exit 1
fi
./testbed/install-deps.sh

start=$SECONDS
echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked -- --include-ignored
echo "== fuzz smoke run (every cargo-fuzz target, nightly)"
./testbed/fuzz-smoke.sh
echo "== test suite passed in $((SECONDS - start)) s"
