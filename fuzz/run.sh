#!/usr/bin/env bash
# Fuzzes each target for SECONDS (default 60) from a freshly seeded corpus and fails on the first
# crash, slow input (over 10 s) or memory blow-up (over 2 GiB); cargo fuzz leaves the input in
# fuzz/artifacts/TARGET/. Prints each target's final libFuzzer status: executions (#N),
# coverage (cov) and features (ft).
#   bash fuzz/run.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"

# cargo fuzz needs nightly's -Z flags; where only stable is installed, stable is told to accept them.
if rustup toolchain list | grep -q '^nightly'; then
  toolchain=(+nightly)
else
  echo "fuzz: no nightly toolchain; using stable with RUSTC_BOOTSTRAP=1"
  toolchain=()
  export RUSTC_BOOTSTRAP=1
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
bash seed.sh

mkdir -p target
for target in compile presign token; do
  log="target/$target.log"
  cargo "${toolchain[@]}" fuzz build --debug-assertions "$target" >"$log" 2>&1 || { cat "$log"; exit 1; }
  if ! cargo "${toolchain[@]}" fuzz run --debug-assertions "$target" "corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzz: $target failed; the input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
  echo "fuzz $target, ${seconds} s: $(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1)"
done
