#!/usr/bin/env bash
# The fuzz smoke run (issue 18): builds every cargo-fuzz target of
# bgpd/fuzz on the nightly toolchain and runs each for a few seconds from
# its seed corpus (seeds/<target>, in the tree) and what earlier runs found
# (corpus/<target>, not in the tree). A crash fails the run; libFuzzer
# prints the input and saves it under bgpd/fuzz/artifacts/<target>/.
# MERLE_FUZZ_SECONDS sets the time per target (default 15).
set -euo pipefail
cd "$(dirname "$0")/../bgpd/fuzz"
secs=${MERLE_FUZZ_SECONDS:-15}
start=$SECONDS
cargo +nightly fuzz build -O
for t in $(cargo +nightly fuzz list); do
  mkdir -p "corpus/$t"
  echo "== fuzz $t for ${secs} s"
  log=$(mktemp)
  if ! cargo +nightly fuzz run -O "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
    # The whole report: the crash, its stack, the input (hex and Base64)
    # and where it was saved.
    cat "$log" >&2
    rm -f "$log"
    echo "fuzz target $t failed" >&2
    exit 1
  fi
  grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ +DONE)" "$log" || true
  rm -f "$log"
done
echo "== fuzz smoke run passed in $((SECONDS - start)) s"
