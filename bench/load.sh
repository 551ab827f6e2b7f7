#!/usr/bin/env bash
# HTTP load benchmark, one command on a fresh machine: `bash bench/load.sh`.
#
# Starts, in the same run and one after another on loopback: postgate (`serve`, release), the
# ceiling (examples/ceiling.rs: a static body of the same size, same actix version and worker
# count), and two peers serving the same presign request with the SDKs people use today — Node's
# @aws-sdk/s3-presigned-post and Python's boto3 under gunicorn, one worker per core. Each gets the
# same fixed concurrency and duration from oha. Then postgate again at half its saturation rate
# for the latency target. Prints a markdown table (also in target/bench/load.md).
#
# Settings: DURATION (default 10s), CONNECTIONS (default 32).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
out=target/bench
mkdir -p "$out"
duration=${DURATION:-10s}
connections=${CONNECTIONS:-32}
workers=$(nproc)

# --- tools -----------------------------------------------------------------------------------
command -v oha >/dev/null || cargo install oha --locked --quiet
command -v node >/dev/null || { apt-get update -qq && apt-get install -y -qq nodejs npm; }
[ -d bench/peers/node/node_modules ] || npm install --prefix bench/peers/node --no-audit --no-fund --silent
if [ ! -x "$out/venv/bin/gunicorn" ]; then
  python3 -m venv "$out/venv"
  "$out/venv/bin/pip" install --quiet boto3 gunicorn
fi
cargo build --release --quiet --bin postgate --example ceiling

# --- the request ------------------------------------------------------------------------------
# Example credentials: signing needs no network, so any well-formed pair measures the same.
export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
key="bench-key-0123456789abcdef"
hash=$(printf '%s\n' "$key" | target/release/postgate hash-key)
body='{"vars":{"user":"alice"},"filename":"me.png","content_type":"image/png","size":12345,"metadata":{"purpose":"avatar"}}'
path=/v1/profiles/avatars/presign
cat > "$out/postgate.yaml" <<EOF
policies: $root/policies
listen: 127.0.0.1:18080
workers: $workers
apps:
  web:
    keys: ["$hash"]
EOF

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

wait_port() { for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0; sleep 0.1; done; echo "port $1 did not open" >&2; exit 1; }

# oha → one JSON line: rps, p50/p99/max (ms), errors (non-2xx + transport errors).
load() { # name url [extra oha args…]
  local name=$1 url=$2; shift 2
  oha -z 2s -c "$connections" -m POST -H "Authorization: Bearer $key" -T application/json -d "$body" \
    --no-tui --output-format json "$url" >/dev/null
  oha -z "$duration" -c "$connections" -m POST -H "Authorization: Bearer $key" -T application/json -d "$body" \
    --no-tui --output-format json "$@" "$url" > "$out/$name.json"
  python3 - "$name" "$out/$name.json" <<'EOF'
import json, sys
name, path = sys.argv[1], sys.argv[2]
r = json.load(open(path))
s, p = r["summary"], r["latencyPercentiles"]
codes = r.get("statusCodeDistribution", {})
ok = sum(n for c, n in codes.items() if c.startswith("2"))
# Requests still in flight when the run's time is up are cut off by oha, not failed.
errors = sum(n for c, n in codes.items() if not c.startswith("2")) + sum(
    n for e, n in r.get("errorDistribution", {}).items() if e != "aborted due to deadline")
print(json.dumps({"name": name, "rps": s["requestsPerSec"], "p50": p["p50"] * 1e3, "p99": p["p99"] * 1e3,
                  "max": s["slowest"] * 1e3, "ok": ok, "errors": errors}))
EOF
}

results="$out/load.jsonl"
: > "$results"

RUST_LOG=warn target/release/postgate serve --config "$out/postgate.yaml" & pids+=($!)
wait_port 18080
size=$(curl -s -X POST -H "Authorization: Bearer $key" -H 'Content-Type: application/json' -d "$body" "http://127.0.0.1:18080$path" | wc -c)
load postgate "http://127.0.0.1:18080$path" >> "$results"
saturation=$(python3 -c "import json; print(int(json.loads(open('$results').readline())['rps']))")
load postgate-half-rate "http://127.0.0.1:18080$path" -q $((saturation / 2)) >> "$results"
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true

target/release/examples/ceiling 127.0.0.1:18081 "$size" "$workers" & pids+=($!)
wait_port 18081
load ceiling "http://127.0.0.1:18081$path" >> "$results"
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true

node bench/peers/node/server.js 18082 "$workers" & pids+=($!)
wait_port 18082
load node-aws-sdk "http://127.0.0.1:18082$path" >> "$results"
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true

(cd bench/peers/python && exec "$root/$out/venv/bin/gunicorn" -w "$workers" -b 127.0.0.1:18083 --log-level warning app:app) & pids+=($!)
wait_port 18083
load python-boto3 "http://127.0.0.1:18083$path" >> "$results"

python3 - "$results" "$duration" "$connections" "$workers" "$size" <<'EOF' | tee "$out/load.md"
import json, sys
rows = {r["name"]: r for r in map(json.loads, open(sys.argv[1]))}
duration, connections, workers, size = sys.argv[2:]
print(f"oha, {connections} connections, {duration} per server (after a 2 s warm-up), {workers} workers each, response {size.strip()} bytes\n")
print("| server | requests/s | p50 ms | p99 ms | max ms | errors |")
print("|---|---|---|---|---|---|")
for name in ["postgate", "ceiling", "node-aws-sdk", "python-boto3", "postgate-half-rate"]:
    r = rows[name]
    print(f"| {name} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['max']:.1f} | {r['errors']} |")
pg = rows["postgate"]["rps"]
print()
print(f"postgate / ceiling = {pg / rows['ceiling']['rps']:.2f}; postgate / node = {pg / rows['node-aws-sdk']['rps']:.1f}x; "
      f"postgate / boto3 = {pg / rows['python-boto3']['rps']:.1f}x; p99 at half rate = {rows['postgate-half-rate']['p99']:.2f} ms")
EOF
