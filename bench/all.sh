#!/usr/bin/env bash
# Every benchmark of BENCHMARKS.md in one run, one command on a fresh machine: `bash bench/all.sh`.
#
# 1. in process: criterion (benches/sign.rs), allocations per signature (examples/allocations.rs),
#    handler latency (examples/presign_latency.rs);
# 2. HTTP load: postgate, the ceiling, Node and boto3 peers (bench/load.sh);
# 3. scale and reload (bench/scale.sh);
# 4. complete's latency against the dev store (bench/complete.sh).
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

cargo bench --locked --bench sign -- --noplot >"$out/criterion.log" 2>&1
# Medians with criterion's 95 % interval, from its own estimates (benches/sign.rs names only).
python3 - <<'PY' | tee -a "$report"
import json, pathlib, re
names = re.findall(r'bench_function\("([^"]+)"', pathlib.Path("benches/sign.rs").read_text())
def fmt(ns):
    return f"{ns / 1e6:.2f} ms" if ns >= 1e6 else f"{ns / 1e3:.2f} µs" if ns >= 1e3 else f"{ns:.0f} ns"
for name in names:
    path = pathlib.Path("target/criterion") / name.replace(":", "_") / "new/estimates.json"
    m = json.loads(path.read_text())["median"]
    ci = m["confidence_interval"]
    print(f"{name:<32} {fmt(m['point_estimate']):>10}   [{fmt(ci['lower_bound'])} … {fmt(ci['upper_bound'])}]")
PY
cargo run --locked --release --quiet --example allocations 2>&1 | tee -a "$report"
cargo run --locked --release --quiet --example presign_latency 2>&1 | tee -a "$report"
echo '```' >> "$report"

{ echo; echo "## 2. HTTP load"; echo; } >> "$report"
bash bench/load.sh
cat "$out/load.md" >> "$report"

{ echo; echo "## 3. Scale and reload"; echo; } >> "$report"
bash bench/scale.sh
cat "$out/scale.md" >> "$report"

{ echo; echo "## 4. Completing uploads"; echo; } >> "$report"
bash bench/complete.sh
cat "$out/complete.md" >> "$report"

echo
echo "written: $report"
