#!/usr/bin/env bash
# Installs what merle's demo and tests need on Debian 12, idempotently:
# BIRD 2 and FRR (interop peers), ExaBGP (the malformed-UPDATE suite's
# sender, as FRR's topotests use it), iproute2, ping and tcpdump, etcd (the
# cluster store), the reference CNI plugins, and protoc (etcd-client builds
# its gRPC stubs with it), clang-19 and libbpf-dev (the eBPF programs),
# bpftool, nftables (outgoing NAT), iptables, iperf3 and sockperf (the
# datapath tests and benchmark), prometheus (the metrics test scrapes
# merled with it), and kubernetes-validate (PyPI, in a
# virtualenv at /opt/merle/venv: the deployment manifests' schema check).
set -euo pipefail

need=(bird2 frr exabgp iproute2 iputils-ping tcpdump procps etcd-server containernetworking-plugins protobuf-compiler libprotobuf-dev clang-19 libbpf-dev linux-libc-dev bpftool nftables iptables iperf3 sockperf util-linux python3-venv prometheus openssl)
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null; then
  echo "cargo is not installed: install a Rust toolchain (1.85 or newer), e.g. with rustup" >&2
  exit 1
fi
for c in rustfmt clippy; do
  if ! cargo "${c/rustfmt/fmt}" --version >/dev/null 2>&1; then
    rustup component add "$c"
  fi
done

# kubernetes-validate ships the Kubernetes API schemas; pinned, and checked
# by its version so that a rerun does nothing.
KV_VERSION=1.37.0
venv=/opt/merle/venv
if ! "$venv/bin/kubernetes-validate" --version 2>/dev/null | grep -q "$KV_VERSION"; then
  echo "installing kubernetes-validate $KV_VERSION into $venv"
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "kubernetes-validate==$KV_VERSION"
fi

# cargo-fuzz for the fuzz smoke run (bgpd/fuzz), on the nightly toolchain
# that is present (libFuzzer needs -Zsanitizer); pinned, checked by version.
CARGO_FUZZ_VERSION=0.13.1
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "the fuzz smoke run needs a nightly toolchain (rustup toolchain install nightly)" >&2
    exit 1
  fi
  echo "installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install -q --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi
