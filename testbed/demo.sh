#!/usr/bin/env bash
# merle demo: two merled nodes meshed over iBGP (found in etcd's node
# registry), each peered over eBGP with an FRR top-of-rack router, and pods
# wired by merle-cni, in network namespaces. Prints the sessions, routes,
# IPAM and a pod-to-pod ping, then tears everything down. Pass --keep to
# keep it up until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) != 0 ]]; then
  echo "run as root: the demo builds network namespaces" >&2
  exit 1
fi
./testbed/install-deps.sh
cargo build --release --locked --workspace --bins
exec ./target/release/testbed demo "$@"
