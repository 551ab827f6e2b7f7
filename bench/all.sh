#!/usr/bin/env bash
# Every benchmark of BENCHMARKS.md in one run, one command on a fresh machine: `bash bench/all.sh`.
#
# 1. in process: criterion (benches/sign.rs), allocations per signature (examples/allocations.rs),
#    handler latency (examples/presign_latency.rs);
# 2. HTTP load: postgate, the ceiling, Node and boto3 peers (bench/load.sh);
# 3. scale and reload (bench/scale.sh).
# Writes target/bench/all.md: the machine, the commands and every result.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/bench
mkdir -p "$out"
report="$out/all.md"

{
  echo "# Benchmark run $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo
  echo "- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -sr)"
  echo "- toolchain: $(rustc --version)"
  echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo
  echo "## 1. In process"
  echo
  echo '```'
} > "$report"

cargo bench --locked --bench sign -- --noplot 2>/dev/null |
  grep -E '^(compile|render|parts|sign)|time:' | paste - - |
  sed -E 's/ +time: +/\t/' | awk -F'\t' '{printf "%-45s %s\n", $1, $2}' | tee -a "$report"
cargo run --locked --release --quiet --example allocations 2>&1 | tee -a "$report"
cargo run --locked --release --quiet --example presign_latency 2>&1 | tee -a "$report"
echo '```' >> "$report"

{ echo; echo "## 2. HTTP load"; echo; } >> "$report"
bash bench/load.sh
cat "$out/load.md" >> "$report"

{ echo; echo "## 3. Scale and reload"; echo; } >> "$report"
bash bench/scale.sh
cat "$out/scale.md" >> "$report"

echo
echo "written: $report"
