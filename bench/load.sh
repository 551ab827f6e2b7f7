#!/usr/bin/env bash
# HTTP load benchmark, one command on a fresh machine: `bash bench/load.sh` (`--quick`: 1 s runs,
# one round, 1 s warm-ups; a check that everything runs, not a measurement).
#
# What is measured, all on loopback, one server under load at a time:
#
# 1. The ratio to the ceiling. postgate (`serve`, release, `workers: 2`, `log_format: json`, the
#    default log level: no RUST_LOG) signs the `avatars` POST form (filename, content type, size,
#    metadata, app key), its stderr going through a pipe (a FIFO) to a reader that counts the
#    lines, as a log shipper reads it in production. The ceiling (examples/ceiling.rs: the same
#    actix-web version, 2 workers) answers a static body of exactly postgate's answer size
#    (measured with curl first). ROUNDS rounds (default 3); in each, postgate then the ceiling,
#    back to back, each WARMUP s (default 2) of load and then DURATION s (default 10) measured.
#    Reported: every round's requests/s for both, each round's ratio and the median ratio, and
#    the server process's CPU time per request (utime + stime of /proc/PID/stat, fields 14 and
#    15, in `getconf CLK_TCK` ticks, read before and after each measured run, divided by its
#    requests; for postgate its own pid, with the log reader's CPU given apart).
#    How the load generator shares the 2 cores equally for both: the same wrk command (one
#    thread, the same connections, script and duration), the same worker count, rounds that
#    alternate so that drift of the machine hits both, and nothing else running: the idle one of
#    the two servers waits on its socket, and the peers and the dev store start later (postgate's
#    log reader runs during postgate's runs: it is part of its cost, as in production). Before
#    every warm-up the script waits until the server under test is idle (under 10 % of a core
#    over 100 ms), so no run pays for calls left over from the one before.
#    postgate's log: its line count must be at least the presign requests it answered (each
#    presign logs one line), and postgate_log_lines_dropped_total is read from /metrics.
#    postgate at about half of its median saturation rate, for the latency target: wrk cannot
#    hold a rate by itself (wrk2 is not packaged; oha, which the previous version used for `-q`,
#    would need a cargo install), so the script's Lua `delay()` paces the requests on one
#    schedule across the connections (a request is sent at most 1 ms early, and at once when
#    the schedule is behind: like oha's `-q`, not corrected for coordinated omission); the rate
#    achieved is reported.
# 2. The same POST form from the peers, which build the same conditions and fields with the SDKs
#    people use: Node's @aws-sdk/s3-presigned-post (bench/peers/node/server.js, node:cluster × 2)
#    and boto3's generate_presigned_post under gunicorn (× 2), SigV4 as postgate
#    (bench/peers/python/app.py). postgate's row is round 1 of the ratio.
# 3. A PUT URL: `media`'s presign with `"method": "put"` (postgate, Node, boto3).
# 4. 1,000 part URLs in one call: postgate's `POST /v1/uploads/parts` with the upload token of a
#    5 GiB multipart upload started against `postgate dev`'s embedded store (used for nothing
#    else), by a second postgate instance whose config adds that store and `upload_tokens`;
#    the peers sign the same 1,000 UploadPart URLs for the same upload id and key. With 4
#    connections (PART_CONNECTIONS; 2 per worker keep both busy): a call takes milliseconds
#    (postgate) to around a second (the peers, two calls at a time per worker), and wrk counts
#    only the calls that complete within the run, so fewer calls in flight cut less off the
#    count (still up to the work of the 4 calls in flight at the end, several per cent of a
#    peer's count in 10 s: the table gives the count). Reported as requests/s and part URLs/s.
#    (With `--quick`, a peer may complete no call in its 1 s.)
# 5. An end-user JWT: the `avatars` form for the user of an ES256 and of an RS256 ID token
#    (bench/peers/node/jwt-setup.mjs makes the keys and tokens; both keys in one JWKS file).
#    postgate: the app `mobile-users` (`auth: token`, `end_user_tokens` with `jwks_file`) on the
#    profile `avatars-jwt` (avatars.yaml with `vars.user.claim: sub` and `apps: [mobile-users]`);
#    the body has no `vars` (a bound var sent is refused). Peers: jose (Node) and PyJWT (Python)
#    verify the token, then sign as in 2.
#
# Every request is checked once with curl first (HTTP 200, answer size printed), so a
# misconfiguration fails before anything is measured. Load: `wrk -t1 -c64` (CONNECTIONS),
# `--timeout 10s`, the POST body and headers from a Lua script this script writes (its `done()`
# prints the run as JSON: requests, latency percentiles, socket errors, non-2xx/3xx answers).
# Every run must have 0 errors, and postgate's log at least as many lines as presigns answered:
# otherwise the report is written and the script exits 1.
# Output: JSON lines in target/bench/load.jsonl, wrk's output and scripts in target/bench/wrk/,
# the tables in target/bench/load.md. SKIP_BUILD=1 uses the release binaries as they are.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
out=target/bench
rm -rf "$out/wrk"
mkdir -p "$out/wrk"
if [ "${1:-}" = --quick ]; then
  DURATION=1 ROUNDS=1 WARMUP=1
fi
duration=${DURATION:-10}
rounds=${ROUNDS:-3}
warmup=${WARMUP:-2}
connections=${CONNECTIONS:-64}
part_connections=${PART_CONNECTIONS:-4}
workers=2
tick=$(getconf CLK_TCK)

# --- tools -----------------------------------------------------------------------------------
need_apt() { apt-get update -qq && apt-get install -y -qq "$@"; }
command -v wrk >/dev/null || need_apt wrk
command -v curl >/dev/null || need_apt curl
command -v pgrep >/dev/null || need_apt procps
command -v node >/dev/null || need_apt nodejs npm
for module in @aws-sdk/client-s3 @aws-sdk/s3-presigned-post @aws-sdk/s3-request-presigner jose; do
  [ -d "bench/peers/node/node_modules/$module" ] ||
    { npm install --prefix bench/peers/node --no-audit --no-fund --silent; break; }
done
if ! "$out/venv/bin/python" -c 'import boto3, gunicorn, jwt, cryptography' 2>/dev/null; then
  python3 -m venv "$out/venv"
  "$out/venv/bin/pip" install --quiet boto3 gunicorn 'pyjwt[crypto]'
fi
[ "${SKIP_BUILD:-}" = 1 ] || cargo build --locked --release --quiet --bin postgate --example ceiling

# --- processes -------------------------------------------------------------------------------
tmp=$(mktemp -d)
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    kill $(pgrep -P "$pid" 2>/dev/null) "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

port_free() { ! curl -s -o /dev/null "http://127.0.0.1:$1/" || { echo "port $1 is already in use" >&2; exit 1; }; }
# wait_url URL PID: until URL answers 2xx; false when PID exits first or after 30 s.
wait_url() {
  for _ in $(seq 300); do
    curl -sf -o /dev/null "$1" && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
wait_port() { for _ in $(seq 300); do curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0; sleep 0.1; done; echo "port $1 did not open" >&2; exit 1; }
reap() { # PID: wait for it to exit, and take it off the list cleanup kills
  local keep=() pid
  wait "$1" 2>/dev/null || true
  for pid in "${pids[@]}"; do if [ "$pid" != "$1" ]; then keep+=("$pid"); fi; done
  pids=("${keep[@]}")
}
stop() { # PID: SIGTERM, then reap it
  kill "$1" 2>/dev/null || true
  reap "$1"
}

# start_postgate NAME CONFIG PORT: postgate serve, its stderr through a FIFO to a reader (awk)
# that counts the lines and keeps the first 50; the count is written to $out/load-NAME-log-lines
# when postgate has exited, the first lines to $out/load-NAME-log-head. Sets pg_pid, pg_reader.
start_postgate() {
  port_free "$3"
  mkfifo "$tmp/$1.log"
  awk -v head="$out/load-$1-log-head" 'NR <= 50 { print > head } END { print NR }' \
    < "$tmp/$1.log" > "$out/load-$1-log-lines" & pg_reader=$!
  pids+=("$pg_reader")
  target/release/postgate serve --config "$2" 2> "$tmp/$1.log" > /dev/null & pg_pid=$!
  pids+=("$pg_pid")
  if ! wait_url "http://127.0.0.1:$3/readyz" "$pg_pid"; then
    stop "$pg_pid"
    reap "$pg_reader"
    echo "postgate serve --config $2 did not become ready; its log began:" >&2
    cat "$out/load-$1-log-head" >&2
    exit 1
  fi
}
# stop_postgate NAME PORT PID READER: the dropped-lines counter, then SIGTERM (the log is flushed
# on exit) and the reader's count.
stop_postgate() {
  local dropped lines
  dropped=$(curl -s "http://127.0.0.1:$2/metrics" | awk '/^postgate_log_lines_dropped_total/ {print $2}')
  stop "$3"
  reap "$4"
  lines=$(tr -dc 0-9 < "$out/load-$1-log-lines")
  printf '{"type":"log","instance":"%s","lines":%s,"dropped":%s}\n' "$1" "${lines:-0}" "${dropped:-null}" >> "$results"
}

# utime + stime (clock ticks) of a process and its children (node's and gunicorn's workers).
ticks() {
  local total=0 pid
  for pid in "$1" $(pgrep -P "$1" || true); do
    total=$((total + $(sed 's/^.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')))
  done
  echo "$total"
}

# settle PID: wait (at most 30 s) until PID and its children use under 10 % of a core, so that
# work left from the run before (calls whose connections wrk closed, which the peers finish all
# the same) is not counted in the next one.
settle() {
  local before after
  before=$(ticks "$1")
  for _ in $(seq 300); do
    sleep 0.1
    after=$(ticks "$1")
    if [ $((after - before)) -le $((tick / 100)) ]; then return 0; fi
    before=$after
  done
  echo "warning: $1 is still busy after 30 s" >&2
}

# --- requests ---------------------------------------------------------------------------------
# Example credentials: signing needs no network, so any well-formed pair measures the same.
export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
export BENCH_DEV_ACCESS_KEY=POSTGATEDEVACCESSKEY BENCH_DEV_SECRET_KEY=postgate-dev-secret-key-not-for-production
export BENCH_UPLOAD_TOKEN_KEY=bench-upload-token-key-0123456789abcdef0123
key="bench-key-0123456789abcdef"
avatars='{"vars":{"user":"alice"},"filename":"me.png","content_type":"image/png","size":12345,"metadata":{"purpose":"avatar"}}'
put='{"method":"put","vars":{"user":"alice"},"filename":"me.png","content_type":"image/png","size":12345}'
multipart='{"vars":{"user":"alice"},"filename":"movie.mp4","content_type":"video/mp4","size":5368709120}'
jwt_body='{"filename":"me.png","content_type":"image/png","size":12345,"metadata":{"purpose":"avatar"}}'
part_numbers=$(seq -s, 1 1000)

results="$out/load.jsonl"
: > "$results"
printf '{"type":"settings","duration":%s,"warmup":%s,"rounds":%s,"connections":%s,"part_connections":%s,"workers":%s,"wrk":"%s"}\n' \
  "$duration" "$warmup" "$rounds" "$connections" "$part_connections" "$workers" "$(wrk -v 2>&1 | awk 'NR==1 {print $2}')" >> "$results"

# lua NAME BODY [BEARER [RATE]]: a wrk script POSTing BODY (paced to RATE requests/s when given);
# its done() prints one JSON line.
lua() {
  local file="$out/wrk/$1.lua"
  {
    echo '-- written by bench/load.sh'
    echo 'wrk.method = "POST"'
    echo 'wrk.headers["Content-Type"] = "application/json"'
    if [ -n "${3:-}" ]; then echo "wrk.headers[\"Authorization\"] = \"Bearer $3\""; fi
    echo "wrk.body = [==[$2]==]"
    if [ -n "${4:-}" ]; then
      echo "local rate = $4"
      cat <<'LUA'
-- One schedule for all connections: each request takes the next slot, 1/rate apart; wrk waits
-- delay() ms (truncated to whole ms) before sending it. Behind schedule: at once, from now on.
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local interval, next_at = 1000 / rate, 0
delay = function()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  local now = tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
  if next_at < now then next_at = now end
  local at = next_at
  next_at = next_at + interval
  return at - now
end
LUA
    fi
    cat <<'LUA'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"timeout":%d,"status":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}\n', summary.requests, summary.duration,
    summary.bytes, e.connect, e.read, e.write, e.timeout, e.status, latency:percentile(50),
    latency:percentile(99), latency.max))
end
LUA
  } > "$file"
  echo "$file"
}

# check CASE SERVER INSTANCE URL BODY [BEARER]: one request with curl; anything but 200 stops here.
check() {
  local answer="$out/wrk/$1-$2.answer" auth=() code size
  if [ -n "${6:-}" ]; then auth=(-H "Authorization: Bearer $6"); fi
  read -r code size < <(curl -s -o "$answer" -w '%{http_code} %{size_download}\n' -X POST \
    -H 'Content-Type: application/json' "${auth[@]}" --data-binary "$5" "$4")
  echo "check $1 $2: HTTP $code, $size bytes" >&2
  if [ "$code" != 200 ]; then
    echo "$4 answered $code, not 200:" >&2
    head -c 2000 "$answer" >&2
    echo >&2
    exit 1
  fi
  printf '{"type":"check","case":"%s","server":"%s","instance":"%s","bytes":%s}\n' "$1" "$2" "$3" "$size" >> "$results"
}

# measure CASE SERVER INSTANCE URL SCRIPT CONNECTIONS PID [READER]: WARMUP s of load, then DURATION s
# measured, with the CPU ticks of PID (and its children) and of READER around the measured run.
round=0
measure() {
  local name="$1-$2" before after reader_before=0 reader_after=0 warm run
  if [ "$round" != 0 ]; then name="$name-r$round"; fi
  echo "load $name (${warmup} s warm-up, ${duration} s)" >&2
  settle "$7"
  wrk -t1 -c"$6" -d"${warmup}s" --timeout 10s -s "$5" "$4" > "$out/wrk/$name.warmup.txt"
  before=$(ticks "$7")
  if [ -n "${8:-}" ]; then reader_before=$(ticks "$8"); fi
  wrk -t1 -c"$6" -d"${duration}s" --timeout 10s --latency -s "$5" "$4" > "$out/wrk/$name.txt"
  after=$(ticks "$7")
  if [ -n "${8:-}" ]; then reader_after=$(ticks "$8"); fi
  warm=$(grep '^{' "$out/wrk/$name.warmup.txt" | tail -1)
  run=$(grep '^{' "$out/wrk/$name.txt" | tail -1)
  printf '{"type":"run","name":"%s","case":"%s","server":"%s","instance":"%s","round":%s,"connections":%s,"cpu_ticks":%s,"reader_ticks":%s,"tick_hz":%s,"warmup":%s,"wrk":%s}\n' \
    "$name" "$1" "$2" "$3" "$round" "$6" "$((after - before))" "$((reader_after - reader_before))" "$tick" "$warm" "$run" >> "$results"
}

# --- configs ----------------------------------------------------------------------------------
hash=$(printf '%s\n' "$key" | target/release/postgate hash-key)
abs=$root/$out
rm -rf "$out/policies" "$out/jwt-es256" "$out/jwt-rs256"
cp -r policies "$out/policies"
# avatars-jwt: avatars.yaml with the user from the token's `sub`, for the token app only.
python3 - "$out/policies/avatars.yaml" "$out/policies/avatars-jwt.yaml" <<'EOF'
import sys
text = open(sys.argv[1]).read()
for old, new in [("  user:\n    pattern:", "  user:\n    claim: sub\n    pattern:"),
                 ("apps: [web, mobile]", "apps: [mobile-users]"),
                 ("description: Profile pictures", "description: Profile pictures, for the user of an ID token")]:
    assert text.count(old) == 1, f"avatars.yaml changed: no `{old}`"
    text = text.replace(old, new)
open(sys.argv[2], "w").write(text)
EOF
es256=$(node bench/peers/node/jwt-setup.mjs "$out/jwt-es256" ES256)
rs256=$(node bench/peers/node/jwt-setup.mjs "$out/jwt-rs256" RS256)
python3 - "$out/jwt-es256/jwks.json" "$out/jwt-rs256/jwks.json" > "$out/jwks.json" <<'EOF'
import json, sys
print(json.dumps({"keys": [k for path in sys.argv[1:] for k in json.load(open(path))["keys"]]}, indent=2))
EOF
export BENCH_JWKS=$abs/jwks.json

# The main instance: AWS S3 in eu-west-1 as the peers sign for, no upload tokens (the peers seal
# none), the JSON log.
cat > "$out/postgate.yaml" <<EOF
policies: $abs/policies
listen: 127.0.0.1:18080
workers: $workers
log_format: json
stores:
  default:
    region: eu-west-1
    credentials:
      access_key_id_env: AWS_ACCESS_KEY_ID
      secret_access_key_env: AWS_SECRET_ACCESS_KEY
apps:
  web:
    keys: ["$hash"]
  mobile-users:
    auth: token
    end_user_tokens:
      issuer: https://id.bench.example
      audiences: [postgate-bench]
      jwks_file: $abs/jwks.json
EOF
# The parts instance: the same, with postgate dev's store and upload tokens.
cat > "$out/postgate-parts.yaml" <<EOF
policies: $abs/policies
listen: 127.0.0.1:18085
workers: $workers
log_format: json
stores:
  default:
    region: us-east-1
    endpoint: http://127.0.0.1:19190
    addressing: path
    credentials:
      access_key_id_env: BENCH_DEV_ACCESS_KEY
      secret_access_key_env: BENCH_DEV_SECRET_KEY
upload_tokens:
  current: bench
  keys:
    bench: { secret_env: BENCH_UPLOAD_TOKEN_KEY }
apps:
  web:
    keys: ["$hash"]
EOF
cat > "$out/postgate-dev.yaml" <<EOF
policies: $root/policies
EOF

# --- 1. postgate and the ceiling, alternating; then postgate's other cases -------------------
pg=http://127.0.0.1:18080
start_postgate postgate "$out/postgate.yaml" 18080
main_pid=$pg_pid main_reader=$pg_reader
check avatars postgate postgate "$pg/v1/profiles/avatars/presign" "$avatars" "$key"
size=$(grep '"case":"avatars","server":"postgate"' "$results" | sed 's/.*"bytes":\([0-9]*\).*/\1/')
check put postgate postgate "$pg/v1/profiles/media/presign" "$put" "$key"
check jwt-es256 postgate postgate "$pg/v1/profiles/avatars-jwt/presign" "$jwt_body" "$es256"
check jwt-rs256 postgate postgate "$pg/v1/profiles/avatars-jwt/presign" "$jwt_body" "$rs256"

port_free 18081
target/release/examples/ceiling 127.0.0.1:18081 "$size" "$workers" & ceiling_pid=$!
pids+=("$ceiling_pid")
wait_port 18081
check avatars ceiling ceiling "http://127.0.0.1:18081/v1/profiles/avatars/presign" "$avatars" "$key"

avatars_lua=$(lua avatars "$avatars" "$key")
for round in $(seq "$rounds"); do
  measure ratio postgate postgate "$pg/v1/profiles/avatars/presign" "$avatars_lua" "$connections" "$main_pid" "$main_reader"
  measure ratio ceiling ceiling "http://127.0.0.1:18081/v1/profiles/avatars/presign" "$avatars_lua" "$connections" "$ceiling_pid"
done
round=0
stop "$ceiling_pid"

half=$(python3 - "$results" <<'EOF'
import json, statistics, sys
runs = [r for r in map(json.loads, open(sys.argv[1])) if r["type"] == "run" and r["name"].startswith("ratio-postgate")]
print(int(statistics.median(r["wrk"]["requests"] / r["wrk"]["duration_us"] * 1e6 for r in runs) / 2))
EOF
)
measure half-rate postgate postgate "$pg/v1/profiles/avatars/presign" "$(lua half-rate "$avatars" "$key" "$half")" "$connections" "$main_pid" "$main_reader"
measure put postgate postgate "$pg/v1/profiles/media/presign" "$(lua put "$put" "$key")" "$connections" "$main_pid"
measure jwt-es256 postgate postgate "$pg/v1/profiles/avatars-jwt/presign" "$(lua jwt-es256 "$jwt_body" "$es256")" "$connections" "$main_pid"
measure jwt-rs256 postgate postgate "$pg/v1/profiles/avatars-jwt/presign" "$(lua jwt-rs256 "$jwt_body" "$rs256")" "$connections" "$main_pid"
stop_postgate postgate 18080 "$main_pid" "$main_reader"

# --- 4. postgate's part URLs, against postgate dev's store ------------------------------------
port_free 18190
port_free 19190
target/release/postgate dev --config "$out/postgate-dev.yaml" --listen 127.0.0.1:18190 --store-listen 127.0.0.1:19190 \
  --data "$tmp/dev-data" > "$out/load-dev.log" 2>&1 & dev_pid=$!
pids+=("$dev_pid")
wait_url http://127.0.0.1:18190/readyz "$dev_pid" || { echo "postgate dev did not start: $out/load-dev.log" >&2; exit 1; }
start_postgate postgate-parts "$out/postgate-parts.yaml" 18085
parts_pid=$pg_pid parts_reader=$pg_reader
check multipart postgate postgate-parts "http://127.0.0.1:18085/v1/profiles/media/multipart" "$multipart" "$key"
read -r upload_token upload_id upload_key < <(python3 -c '
import json, sys
a = json.load(open(sys.argv[1]))
assert a["part_count"] == 1024 and a["part_size"] == 5242880, a
print(a["upload_token"], a["upload_id"], a["key"])' "$out/wrk/multipart-postgate.answer")
parts_body="{\"upload_token\":\"$upload_token\",\"part_numbers\":[$part_numbers]}"
peer_parts_body="{\"upload_id\":\"$upload_id\",\"key\":\"$upload_key\",\"part_size\":5242880,\"part_numbers\":[$part_numbers]}"
check parts postgate postgate-parts "http://127.0.0.1:18085/v1/uploads/parts" "$parts_body" "$key"
python3 -c 'import json, sys; n = len(json.load(open(sys.argv[1]))["parts"]); assert n == 1000, n' "$out/wrk/parts-postgate.answer"
measure parts postgate postgate-parts "http://127.0.0.1:18085/v1/uploads/parts" "$(lua parts "$parts_body" "$key")" "$part_connections" "$parts_pid" "$parts_reader"
stop_postgate postgate-parts 18085 "$parts_pid" "$parts_reader"
stop "$dev_pid"

# --- 2, 3, 4, 5: the peers ----------------------------------------------------------------------
peer_cases() { # SERVER PORT PID
  local url="http://127.0.0.1:$2"
  check avatars "$1" "$1" "$url/v1/profiles/avatars/presign" "$avatars"
  check put "$1" "$1" "$url/v1/profiles/media/presign" "$put"
  check parts "$1" "$1" "$url/v1/uploads/parts" "$peer_parts_body"
  check jwt-es256 "$1" "$1" "$url/v1/profiles/avatars/presign-jwt" "$jwt_body" "$es256"
  check jwt-rs256 "$1" "$1" "$url/v1/profiles/avatars/presign-jwt" "$jwt_body" "$rs256"
  measure avatars "$1" "$1" "$url/v1/profiles/avatars/presign" "$avatars_lua" "$connections" "$3"
  measure put "$1" "$1" "$url/v1/profiles/media/presign" "$out/wrk/put.lua" "$connections" "$3"
  measure jwt-es256 "$1" "$1" "$url/v1/profiles/avatars/presign-jwt" "$out/wrk/jwt-es256.lua" "$connections" "$3"
  measure jwt-rs256 "$1" "$1" "$url/v1/profiles/avatars/presign-jwt" "$out/wrk/jwt-rs256.lua" "$connections" "$3"
  measure parts "$1" "$1" "$url/v1/uploads/parts" "$(lua parts-peer "$peer_parts_body")" "$part_connections" "$3"
}

port_free 18082
node bench/peers/node/server.js 18082 "$workers" & node_pid=$!
pids+=("$node_pid")
wait_port 18082
peer_cases node-aws-sdk 18082 "$node_pid"
# The workers first: a worker whose primary is gone before it dies fails on the IPC channel (EPIPE).
kill $(pgrep -P "$node_pid") 2>/dev/null || true
sleep 0.5
stop "$node_pid"

port_free 18083
(cd bench/peers/python && exec "$root/$out/venv/bin/gunicorn" -w "$workers" -b 127.0.0.1:18083 --log-level warning app:app) &
gunicorn_pid=$!
pids+=("$gunicorn_pid")
wait_port 18083
peer_cases python-boto3 18083 "$gunicorn_pid"
stop "$gunicorn_pid"

# --- report -----------------------------------------------------------------------------------
python3 - "$results" <<'EOF' | tee "$out/load.md"
import json, statistics, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
settings = next(l for l in lines if l["type"] == "settings")
runs = {r["name"]: r for r in lines if r["type"] == "run"}
checks = [c for c in lines if c["type"] == "check"]
logs = {l["instance"]: l for l in lines if l["type"] == "log"}
size = {(c["case"], c["server"]): c["bytes"] for c in checks}
problems = []

def rps(r): return r["wrk"]["requests"] / r["wrk"]["duration_us"] * 1e6
def errors(r):
    w = r["wrk"]
    return {k: w[k] for k in ("status", "connect", "read", "write", "timeout") if w[k]}
def errors_text(r):
    e = errors(r)
    return str(sum(e.values())) + (" (" + ", ".join(f"{k} {n}" for k, n in e.items()) + ")" if e else "")
def cpu_us(r, field="cpu_ticks"):
    return r[field] / r["tick_hz"] / r["wrk"]["requests"] * 1e6 if r["wrk"]["requests"] else float("nan")
def cpu_text(r):
    return "–" if not r["wrk"]["requests"] else f"{cpu_us(r):.1f}"
def times(a, b):
    return f"{a / b:.1f}×" if b else "n/a (no call completed)"
for r in runs.values():
    if errors(r):
        problems.append(f"{r['name']}: {errors_text(r)} errors")

s = settings
print(f"wrk {s['wrk']}, `-t1 -c{s['connections']}` (part URLs: `-c{s['part_connections']}`), `--timeout 10s`; "
      f"{s['warmup']} s warm-up then {s['duration']} s per run; {s['workers']} workers per server; one server "
      f"under load at a time, on loopback. Server CPU: utime + stime of the server's processes (node's primary "
      f"and workers, gunicorn's master and workers; postgate's log reader apart) during the measured run, "
      f"per request.\n")

print("### postgate vs the ceiling (avatars POST form)\n")
print(f"Answer: postgate {size[('avatars', 'postgate')]} bytes, ceiling {size[('avatars', 'ceiling')]} bytes.\n")
if size[("avatars", "postgate")] != size[("avatars", "ceiling")]:
    problems.append("the ceiling's answer is not the size of postgate's")
print("| round | postgate req/s | ceiling req/s | ratio | postgate CPU µs/req | log reader CPU µs/req | ceiling CPU µs/req | errors (postgate, ceiling) |")
print("|---|---|---|---|---|---|---|---|")
ratios, pg_cpu, ceil_cpu = [], [], []
for n in range(1, s["rounds"] + 1):
    p, c = runs[f"ratio-postgate-r{n}"], runs[f"ratio-ceiling-r{n}"]
    ratios.append(rps(p) / rps(c))
    pg_cpu.append(cpu_us(p))
    ceil_cpu.append(cpu_us(c))
    print(f"| {n} | {rps(p):,.0f} | {rps(c):,.0f} | {ratios[-1]:.3f} | {cpu_us(p):.1f} | {cpu_us(p, 'reader_ticks'):.2f} | "
          f"{cpu_us(c):.1f} | {errors_text(p)}, {errors_text(c)} |")
print(f"\n**median ratio postgate / ceiling = {statistics.median(ratios):.3f}** over {len(ratios)} round(s); "
      f"server CPU per request, median: postgate {statistics.median(pg_cpu):.1f} µs, ceiling "
      f"{statistics.median(ceil_cpu):.1f} µs (difference {statistics.median(pg_cpu) - statistics.median(ceil_cpu):.1f} µs).\n")

half = runs["half-rate-postgate"]
print(f"postgate at about half its median saturation rate (paced by the wrk script): {rps(half):,.0f} requests/s, "
      f"p50 {half['wrk']['p50_us'] / 1e3:.2f} ms, **p99 at half rate {half['wrk']['p99_us'] / 1e3:.2f} ms**, "
      f"max {half['wrk']['max_us'] / 1e3:.1f} ms, errors {errors_text(half)}.\n")

# postgate's log: every presign answered (warm-ups, measured runs, curl checks) logged a line.
answered = sum(r["wrk"]["requests"] + r["warmup"]["requests"] for r in runs.values() if r["instance"] == "postgate")
answered += sum(1 for c in checks if c["instance"] == "postgate")
log = logs["postgate"]
dropped = "not exported" if log["dropped"] is None else f"{log['dropped']:.0f}"
print(f"postgate's JSON log through a pipe: {log['lines']:,} lines for {answered:,} presign requests completed "
      f"(warm-ups and checks included); lines dropped (postgate_log_lines_dropped_total): {dropped}.\n")
if log["lines"] < answered:
    problems.append(f"postgate logged {log['lines']} lines for {answered} presigns")
if log["dropped"]:
    problems.append(f"postgate dropped {log['dropped']:.0f} log lines")

peers = ["node-aws-sdk", "python-boto3"]
cases = [
    ("avatars", "POST form (`avatars`, app key)", "ratio-postgate-r1"),
    ("put", "PUT URL (`media`, `\"method\": \"put\"`, app key)", "put-postgate"),
    ("parts", "1,000 part URLs in one call", "parts-postgate"),
    ("jwt-es256", "POST form for an end-user ID token, ES256", "jwt-es256-postgate"),
    ("jwt-rs256", "POST form for an end-user ID token, RS256", "jwt-rs256-postgate"),
]
summary = []
for case, title, pg_name in cases:
    print(f"### {title}\n")
    parts = case == "parts"
    print("| server | requests/s |" + (" part URLs/s | calls completed |" if parts else "") + " p50 ms | p99 ms | max ms | server CPU µs/req | errors | answer bytes |")
    print("|---|---|" + ("---|---|" if parts else "") + "---|---|---|---|---|---|")
    rows = [("postgate", runs[pg_name])] + [(p, runs[f"{case}-{p}"]) for p in peers]
    for server, r in rows:
        w = r["wrk"]
        print(f"| {server} | {rps(r):,.0f} |" + (f" {rps(r) * 1000:,.0f} | {w['requests']:,} |" if parts else "") +
              f" {w['p50_us'] / 1e3:.2f} | {w['p99_us'] / 1e3:.2f} | {w['max_us'] / 1e3:.1f} | {cpu_text(r)} | "
              f"{errors_text(r)} | {size[(case, server)]:,} |")
    pg = rps(rows[0][1])
    summary.append(f"{case}: postgate / node = {times(pg, rps(rows[1][1]))}, postgate / boto3 = {times(pg, rps(rows[2][1]))}")
    print()
print("; ".join(summary))
if problems:
    print("\nINVALID RUN: " + "; ".join(problems))
    print("invalid run: " + "; ".join(problems), file=sys.stderr)
    sys.exit(1)
EOF
