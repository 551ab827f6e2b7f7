#!/usr/bin/env bash
# Upload event figures (release build, loopback), written to target/bench/events.md:
#   1. examples/events_throughput: build + sign cost, sync attempts (latency, events/s), the
#      Redis queue (stored/s by 64 callers, delivered/s by one worker), CPU per event;
#   2. `complete` of a small PUT through `postgate dev` with the app's `upload.completed` going to
#      a receiver on loopback (the reference npm verifier, tests/webhooks/receiver.mjs) or not
#      sent at all (`types: [upload.aborted]`): the latency the sync event adds to `complete`.
# Needs redis-server and `bash tests/webhooks/install.sh` done.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/bench
mkdir -p "$out"
cargo build --locked --release --quiet --bin postgate --example events_throughput
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$work"' EXIT
redis-server --port 16390 --bind 127.0.0.1 --save '' --appendonly yes --appendfsync everysec --dir "$work" >/dev/null &
pids+=($!)
sleep 0.5
{
  echo "## Event delivery ($(nproc) cores, $(date -u +%F))"
  echo
  EVENTS_BENCH_REDIS=redis://127.0.0.1:16390/ target/release/examples/events_throughput 20000
  echo
} | tee "$out/events.md"

secret=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
node tests/webhooks/receiver.mjs serve --port 18290 --secret "$secret" --record "$work/record.jsonl" >/dev/null &
pids+=($!)
sleep 0.5
for mode in with without; do
  types='[upload.completed, upload.refused, upload.aborted]'
  [ "$mode" = without ] && types='[upload.aborted]'
  cat >"$work/$mode.yaml" <<YAML
apps:
  web:
    keys: []
    events:
      url: http://127.0.0.1:18290/hooks
      secrets_env: BENCH_WEBHOOK_SECRET
      types: $types
YAML
  BENCH_WEBHOOK_SECRET=$secret target/release/postgate dev --config "$work/$mode.yaml" --listen 127.0.0.1:18280 \
    --store-listen 127.0.0.1:19280 --data "$work/data-$mode" >"$work/dev-$mode.log" 2>&1 &
  dev=$!
  for _ in $(seq 100); do curl -sf http://127.0.0.1:18280/readyz >/dev/null && break; sleep 0.1; done
  MODE=$mode python3 - <<'PY' | tee -a "$out/events.md"
import json, os, statistics, time, urllib.request

GATEWAY = "http://127.0.0.1:18280"
HEADERS = {"Authorization": "Bearer dev-key-web-local", "Content-Type": "application/json"}
PNG = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89" + bytes(1024)

def call(path, body):
    request = urllib.request.Request(GATEWAY + path, data=json.dumps(body).encode(), headers=HEADERS)
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())

samples = []
for i in range(300):
    signed = call("/v1/profiles/media/presign", {"method": "put", "vars": {"user": "bench"}, "filename": f"{i}.png", "content_type": "image/png", "size": len(PNG)})
    request = urllib.request.Request(signed["url"], data=PNG, method="PUT", headers=signed["headers"])
    urllib.request.urlopen(request).read()
    started = time.perf_counter()
    answer = call("/v1/uploads/complete", {"upload_token": signed["upload_token"]})
    samples.append((time.perf_counter() - started) * 1000)
    assert ("app_answer" in answer) == (os.environ["MODE"] == "with"), answer
samples = sorted(samples[20:])
q = statistics.quantiles(samples, n=100)
print(f"| complete, small PUT, {os.environ['MODE']} a sync upload.completed: p50 / p95 ms | {q[49]:.2f} / {q[94]:.2f} |")
PY
  kill $dev; wait $dev 2>/dev/null || true
done
