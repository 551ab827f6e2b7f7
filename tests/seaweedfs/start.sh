#!/usr/bin/env bash
# Start a single-process SeaweedFS (master, volume, filer, S3 gateway) on loopback for postgate's
# end-to-end upload tests.
#
#   eval "$(bash tests/seaweedfs/install.sh)"          # WEED_BIN
#   eval "$(bash tests/seaweedfs/start.sh <state dir>)" # SEAWEEDFS_* variables now set
#   ...
#   bash tests/seaweedfs/stop.sh <state dir>
#
# Keeps data, config, log (weed.log) and pid file (weed.pid) in <state dir>, creates the test
# buckets, prints shell exports on stdout and exits 0 with the server left running.
#
# Environment (all optional):
#   WEED_BIN                  the weed binary (default: `weed` on PATH)
#   SEAWEEDFS_S3_PORT         S3 port on 127.0.0.1 (default 18333); master, volume and filer take
#                             SEAWEEDFS_S3_PORT+1000, +2000, +3000 (and their gRPC ports +10000)
#   SEAWEEDFS_START_TIMEOUT   seconds to wait for the server (default 90)
set -euo pipefail

ACCESS_KEY=AKIASEAWEEDPOSTGATE1
SECRET_KEY=seaweedfs/postgate/test/secret/0123456789
REGION=us-east-1
BUCKETS=(user-content user-documents tenant-datasets finance-inbox other-bucket)

S3_PORT=${SEAWEEDFS_S3_PORT:-18333}
MASTER_PORT=$((S3_PORT + 1000))
VOLUME_PORT=$((S3_PORT + 2000))
FILER_PORT=$((S3_PORT + 3000))
TIMEOUT=${SEAWEEDFS_START_TIMEOUT:-90}

log() { echo "seaweedfs/start: $*" >&2; }
die() { log "error: $*"; exit 1; }

[ $# -eq 1 ] || { echo "usage: $0 <state dir>" >&2; exit 2; }
WEED=${WEED_BIN:-$(command -v weed || true)}
[ -n "$WEED" ] && [ -x "$WEED" ] || die "weed not found: run eval \"\$(bash tests/seaweedfs/install.sh)\""

mkdir -p "$1"
STATE=$(cd "$1" && pwd)
PIDFILE=$STATE/weed.pid
LOGFILE=$STATE/weed.log
if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  die "a server from $STATE is already running (pid $(cat "$PIDFILE")); stop it with tests/seaweedfs/stop.sh $1"
fi
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in "$S3_PORT" "$MASTER_PORT" "$VOLUME_PORT" "$FILER_PORT"; do
  port_open "$port" && die "127.0.0.1:$port is already in use (set SEAWEEDFS_S3_PORT)"
done

mkdir -p "$STATE/data"
umask 077
cat >"$STATE/s3.json" <<JSON
{"identities": [{"name": "postgate-test",
  "credentials": [{"accessKey": "$ACCESS_KEY", "secretKey": "$SECRET_KEY"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
JSON

log "starting $("$WEED" version 2>/dev/null | head -n1) on 127.0.0.1:$S3_PORT (state in $STATE)"
# SSE-S3 (`x-amz-server-side-encryption: AES256`, pinned by policies/avatars.yaml) needs a key
# encryption key; without one SeaweedFS answers 500 to every such upload.
kek_file=$STATE/sse.kek
[ -s "$kek_file" ] || (openssl rand -hex 32 2>/dev/null || od -An -N32 -tx1 /dev/urandom | tr -d ' \n') >"$kek_file"
export WEED_S3_SSE_KEK=$(cat "$kek_file")
# -volume.max: enough volumes for the suites' buckets (each bucket takes its own collection).
nohup "$WEED" server -dir="$STATE/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
  -master.port="$MASTER_PORT" -volume.port="$VOLUME_PORT" -filer.port="$FILER_PORT" \
  -s3 -s3.port="$S3_PORT" -s3.config="$STATE/s3.json" \
  -volume.max=100 -master.volumeSizeLimitMB=64 </dev/null >>"$LOGFILE" 2>&1 &
pid=$!
echo "$pid" >"$PIDFILE"

deadline=$((SECONDS + TIMEOUT))
retry() {
  until "$@" >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || { tail -n 20 "$LOGFILE" >&2; die "server exited"; }
    [ "$SECONDS" -lt "$deadline" ] || { tail -n 20 "$LOGFILE" >&2; kill "$pid"; die "timed out waiting for: $*"; }
    sleep 0.3
  done
}
retry port_open "$S3_PORT"
weed_shell() { echo "$1" | "$WEED" shell -master="127.0.0.1:$MASTER_PORT" 2>&1; }
has_bucket() { weed_shell "s3.bucket.list" | grep -qw "$1"; }
for bucket in "${BUCKETS[@]}"; do
  until has_bucket "$bucket"; do
    weed_shell "s3.bucket.create -name $bucket" >/dev/null || true
    kill -0 "$pid" 2>/dev/null || { tail -n 20 "$LOGFILE" >&2; die "server exited"; }
    [ "$SECONDS" -lt "$deadline" ] || { kill "$pid"; die "timed out creating bucket $bucket"; }
    sleep 0.3
  done
done
log "ready: buckets ${BUCKETS[*]}; pid $pid; log $LOGFILE"
cat <<EXPORTS
export SEAWEEDFS_ENDPOINT=http://127.0.0.1:$S3_PORT
export SEAWEEDFS_REGION=$REGION
export SEAWEEDFS_ACCESS_KEY_ID=$ACCESS_KEY
export SEAWEEDFS_SECRET_ACCESS_KEY=$SECRET_KEY
EXPORTS
