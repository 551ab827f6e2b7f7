#!/usr/bin/env bash
# Every benchmark of BENCHMARKS.md in one run, one command on a fresh machine: `bash bench/all.sh`.
#
# 1. in process: criterion (benches/sign.rs), allocations per signature (examples/allocations.rs),
#    handler latency (examples/presign_latency.rs);
# 2. HTTP load (bench/load.sh): postgate vs the ceiling in alternating rounds; the POST form, a PUT
#    URL, 1,000 part URLs and end-user JWT presigns vs the Node and boto3 peers;
# 3. scale and reload (bench/scale.sh);
# 4. complete's latency against the dev store (bench/complete.sh);
# 5. upload events: signing, sync and queued delivery, and what a sync event adds to complete
#    (bench/events.sh; needs redis-server and tests/webhooks/install.sh).
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

# The peers' work in process (load.sh installed their tools), beside criterion's medians.
{ echo; echo "## 2b. In process, against the peers"; echo; } >> "$report"
(cd bench/peers/node && node inprocess.mjs) > "$out/inprocess.jsonl" 2>/dev/null
(cd bench/peers/python && "$OLDPWD/$out/venv/bin/python" inprocess.py) >> "$out/inprocess.jsonl"
python3 - "$out/inprocess.jsonl" <<'PY' | tee -a "$report"
import json, pathlib, sys
def median(name):
    path = pathlib.Path("target/criterion") / name.replace(":", "_") / "new/estimates.json"
    return json.loads(path.read_text())["median"]["point_estimate"] / 1e3
peers = {(r["peer"], r["case"]): r["median_us"] for r in map(json.loads, open(sys.argv[1]))}
post, put = median("sign one request end to end"), median("sign one PUT URL as the peers do")
es256, rs256 = median("end-user token: verify ES256"), median("end-user token: verify RS256")
remembered = median("end-user token: remembered")
rows = [
    ("POST form (avatars)", "post_form", post, ""),
    ("PUT URL (media: length, type, one metadata header)", "put_url", put, ""),
    ("1,000 part URLs of one upload", "part_urls_1000", median("sign 1000 part URLs"), ""),
    ("verify an ES256 ID token", "jwt_verify_es256", es256, f"remembered: {remembered:.2f} µs"),
    ("verify an RS256 ID token", "jwt_verify_rs256", rs256, f"remembered: {remembered:.2f} µs"),
    ("ES256 token + POST form", "jwt_presign_es256", es256 + post, f"remembered: {remembered + post:.2f} µs"),
]
print("Medians per operation: postgate from criterion (end to end: snapshot → admit → sign → answer JSON),")
print("the peers from bench/peers/*/inprocess.* (the functions their servers call).\n")
print("| operation | postgate µs | Node µs | boto3 µs | Node / postgate | boto3 / postgate | note |")
print("|---|---|---|---|---|---|---|")
for label, case, ours, note in rows:
    node, boto = peers.get(("node", case)), peers.get(("boto3", case))
    ratio = lambda other: (f"{other / ours:.0f}×" if other / ours >= 10 else f"{other / ours:.2f}×") if other else "–"
    cell = lambda v: f"{v:,.2f}" if v else "–"
    print(f"| {label} | {ours:,.2f} | {cell(node)} | {cell(boto)} | {ratio(node)} | {ratio(boto)} | {note} |")
PY

{ echo; echo "## 3. Scale and reload"; echo; } >> "$report"
bash bench/scale.sh
cat "$out/scale.md" >> "$report"

{ echo; echo "## 4. Completing uploads"; echo; } >> "$report"
bash bench/complete.sh
cat "$out/complete.md" >> "$report"

{ echo; echo "## 5. Upload events"; echo; } >> "$report"
bash bench/events.sh
cat "$out/events.md" >> "$report"

echo
echo "written: $report"
