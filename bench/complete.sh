#!/usr/bin/env bash
# `complete`'s latency against `postgate dev`'s store (release build, loopback): PUT uploads of a
# small PNG and multipart uploads of 11 MiB (three parts), each completed and verified (HEAD,
# sniffed first bytes; for multipart also ListParts and CompleteMultipartUpload). Only the
# `complete` call is timed. Writes target/bench/complete.md.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/bench
mkdir -p "$out"
cargo build --locked --release --quiet
data=$(mktemp -d)
target/release/postgate dev --listen 127.0.0.1:18180 --store-listen 127.0.0.1:19100 --data "$data" \
  >"$out/complete-dev.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 100); do
  curl -sf http://127.0.0.1:18180/readyz >/dev/null && break
  sleep 0.1
done
python3 - <<'PY' | tee "$out/complete.md"
import json, statistics, time, urllib.request

GATEWAY = "http://127.0.0.1:18180"
HEADERS = {"Authorization": "Bearer dev-key-web-local", "Content-Type": "application/json"}
PNG = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89"

def call(path, body):
    request = urllib.request.Request(GATEWAY + path, data=json.dumps(body).encode(), headers=HEADERS)
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())

def put(url, data, headers=None):
    request = urllib.request.Request(url, data=data, method="PUT", headers=headers or {})
    with urllib.request.urlopen(request) as response:
        return response.status

def timed_complete(token):
    started = time.perf_counter()
    answer = call("/v1/uploads/complete", {"upload_token": token})
    elapsed = time.perf_counter() - started
    assert answer["sniffed"], answer
    return elapsed

def single(i):
    data = PNG + bytes(1024)
    signed = call("/v1/profiles/media/presign", {"method": "put", "vars": {"user": "bench"}, "filename": f"{i}.png", "content_type": "image/png", "size": len(data)})
    put(signed["url"], data, signed["headers"])
    return timed_complete(signed["upload_token"])

def multipart(i):
    data = PNG + bytes(11 * 1024 * 1024)
    created = call("/v1/profiles/media/multipart", {"vars": {"user": "bench"}, "filename": f"{i}.png", "content_type": "image/png", "size": len(data)})
    parts = call("/v1/uploads/parts", {"upload_token": created["upload_token"], "part_numbers": list(range(1, created["part_count"] + 1))})["parts"]
    offset = 0
    for part in parts:
        put(part["url"], data[offset:offset + part["size"]])
        offset += part["size"]
    return timed_complete(created["upload_token"])

def report(name, samples):
    samples = sorted(s * 1000 for s in samples)
    q = lambda p: samples[min(len(samples) - 1, int(p * len(samples)))]
    print(f"| {name} | {len(samples)} | {q(0.5):.2f} ms | {q(0.9):.2f} ms | {q(0.99):.2f} ms | {samples[-1]:.2f} ms |")

for i in range(20):  # warm-up
    single(f"w{i}")
print("| complete of | uploads | p50 | p90 | p99 | max |")
print("|---|---|---|---|---|---|")
report("a PUT upload (1 KiB PNG: HEAD, ranged GET, sniff)", [single(i) for i in range(300)])
report("a multipart upload (11 MiB, 3 parts: ListParts, Complete, HEAD, ranged GET, sniff)", [multipart(i) for i in range(30)])
PY
