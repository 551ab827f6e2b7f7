#!/usr/bin/env bash
# Scale and reload benchmark, one command: `bash bench/scale.sh`.
#
# With 10 and with 10,000 profiles loaded: RSS and signing throughput; the time to reload
# 10,000 profiles (all changed, and one changed); the time from a file change to the new
# generation being served (p50/p99 over 100 edits); throughput and errors while a profile is
# rewritten five times a second. Prints markdown (also in target/bench/scale.md).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
out=target/bench
mkdir -p "$out"
duration=${DURATION:-10s}
connections=${CONNECTIONS:-64}
edits=${EDITS:-100}

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release --quiet --bin postgate

# Example credentials: signing needs no network, so any well-formed pair measures the same.
export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
key="bench-key-0123456789abcdef"
hash=$(printf '%s\n' "$key" | target/release/postgate hash-key)
body='{"vars":{"user":"alice"},"filename":"me.png","content_type":"image/png","size":12345,"metadata":{"purpose":"avatar"}}'

# Profile sets: avatars.yaml and N-1 variations of it (distinct key prefixes and descriptions).
make_set() { # dir count
  rm -rf "$1"; mkdir -p "$1"
  python3 - "$1" "$2" "$root/policies/avatars.yaml" <<'EOF'
import sys, pathlib
out, count, source = pathlib.Path(sys.argv[1]), int(sys.argv[2]), open(sys.argv[3]).read()
(out / "avatars.yaml").write_text(source)
for i in range(1, count):
    text = source.replace("avatars/${user}", f"p{i:05}/${{user}}").replace("Profile pictures", f"Profile set {i}")
    (out / f"p{i:05}.yaml").write_text(text)
EOF
}

pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT

start() { # dir [watch]
  cat > "$out/scale.yaml" <<EOF
policies: $1
listen: 127.0.0.1:18090
admin_listen: 127.0.0.1:18091
reload: { interval: 0s, watch: ${2:-false} }
apps:
  web:
    keys: ["$hash"]
EOF
  RUST_LOG=warn target/release/postgate serve --config "$out/scale.yaml" & pid=$!
  for _ in $(seq 1 600); do curl -sf -o /dev/null http://127.0.0.1:18090/readyz && return 0; sleep 0.05; done
  echo "postgate did not become ready" >&2; exit 1
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; }
rss_mib() { awk '/VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$pid/status"; }
throughput() { # → "rps errors" (wrk, one thread, as bench/load.sh)
  cat > "$out/scale.lua" <<EOF
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $key"
EOF
  wrk -t1 -c"$connections" -d"$duration" -s "$out/scale.lua" http://127.0.0.1:18090/v1/profiles/avatars/presign > "$out/scale-wrk.txt"
  awk '/Requests\/sec/ { rps = $2 } /Non-2xx/ { errors += $NF }
       /Socket errors/ { gsub(",", ""); errors += $4 + $6 + $8 + $10 }
       END { printf "%.0f %d\n", rps, errors }' "$out/scale-wrk.txt"
}
reload_ms() { curl -s -o /dev/null -w '%{time_total}' -X POST http://127.0.0.1:18091/-/reload | awk '{ printf "%.0f", $1 * 1000 }'; }

declare -A rss rps errs
for count in 10 10000; do
  dir="$out/set-$count"
  make_set "$dir" "$count"
  started=$(date +%s%N)
  start "$dir"
  startup_ms=$(( ($(date +%s%N) - started) / 1000000 ))
  rss_loaded=$(rss_mib)
  read -r r e < <(throughput)
  rss[$count]="$rss_loaded MiB loaded, $(rss_mib) MiB after load"; rps[$count]=$r; errs[$count]=$e
  if [ "$count" = 10000 ]; then
    startup_10k=$startup_ms
    # Every file changed: a full compile of 10,000 profiles.
    for f in "$dir"/*.yaml; do echo "# touched" >> "$f"; done
    reload_all=$(reload_ms)
    # One file changed: the other 9,999 compiled profiles are reused.
    echo "# again" >> "$dir/p00042.yaml"
    reload_one=$(reload_ms)
  fi
  stop
done

# File change → new generation served, and throughput under continuous reloads (10 profiles,
# watching the directory).
dir="$out/set-10"
start "$dir" true
python3 - "$dir/avatars.yaml" "$key" "$edits" > "$out/latency.txt" <<'EOF'
import json, sys, time, urllib.request
path, key, edits = sys.argv[1], sys.argv[2], int(sys.argv[3])
source = open(path).read()
def served():
    req = urllib.request.Request("http://127.0.0.1:18090/v1/profiles/avatars", headers={"Authorization": f"Bearer {key}"})
    return json.load(urllib.request.urlopen(req))["description"]
samples = []
for i in range(edits):
    want = f"edit {i}"
    with open(path + ".tmp", "w") as f:
        f.write(source.replace("Profile pictures", want))
    import os; os.replace(path + ".tmp", path)  # an editor's atomic save
    t0 = time.monotonic()
    while served() != want:
        time.sleep(0.002)
    samples.append((time.monotonic() - t0) * 1000)
    time.sleep(0.05)
samples.sort()
pick = lambda q: samples[min(len(samples) - 1, int(len(samples) * q))]
print(f"{pick(0.5):.0f} {pick(0.99):.0f} {samples[-1]:.0f}")
EOF
read -r change_p50 change_p99 change_max < "$out/latency.txt"
( i=0; while true; do
    sed "s/Profile pictures/reload $i/" "$root/policies/avatars.yaml" > "$dir/avatars.yaml.tmp" && mv "$dir/avatars.yaml.tmp" "$dir/avatars.yaml"
    i=$((i + 1)); sleep 0.2
  done ) & editor=$!
read -r reload_rps reload_errors < <(throughput)
kill "$editor"; wait "$editor" 2>/dev/null || true
generation=$(curl -s http://127.0.0.1:18090/metrics | awk '/^postgate_config_generation / { print $2 }')
stop

{
  echo "| measure | 10 profiles | 10,000 profiles |"
  echo "|---|---|---|"
  echo "| RSS | ${rss[10]} | ${rss[10000]} |"
  echo "| throughput (requests/s, $connections connections, $duration) | ${rps[10]} | ${rps[10000]} |"
  echo "| errors | ${errs[10]} | ${errs[10000]} |"
  echo
  echo "- start-up with 10,000 profiles (process start → ready): ${startup_10k} ms"
  echo "- reload of 10,000 profiles, every file changed: ${reload_all} ms; one file changed: ${reload_one} ms (admin endpoint round trip, watcher off)"
  echo "- file change → new generation served, over $edits edits: p50 ${change_p50} ms, p99 ${change_p99} ms, max ${change_max} ms"
  echo "- throughput while avatars.yaml is rewritten 5×/s: ${reload_rps} requests/s, ${reload_errors} errors, generation reached ${generation}"
} | tee "$out/scale.md"
