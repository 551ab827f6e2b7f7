#!/usr/bin/env bash
# Start Azurite's blob service on loopback for postgate's Azure suites.
#
#   eval "$(bash tests/azurite/install.sh)"          # AZURITE_BIN
#   bash tests/azurite/start.sh <state dir> > env; . env   # AZURITE_BLOB_ENDPOINT now set
#   ...
#   bash tests/azurite/stop.sh <state dir>
#
# Keeps data, log (azurite.log) and pid file (azurite.pid) in <state dir>, prints shell exports on
# stdout and exits 0 with the server left running. The account is Azurite's well-known
# `devstoreaccount1`; the tests create their containers with an account SAS.
#
# Environment (optional): AZURITE_BLOB_PORT (default 10100), AZURITE_START_TIMEOUT (default 60 s).
set -euo pipefail
PORT=${AZURITE_BLOB_PORT:-10100}
TIMEOUT=${AZURITE_START_TIMEOUT:-60}
log() { echo "azurite/start: $*" >&2; }
die() { log "error: $*"; exit 1; }

[ $# -eq 1 ] || { echo "usage: $0 <state dir>" >&2; exit 2; }
BIN=${AZURITE_BIN:-}
[ -n "$BIN" ] && [ -x "$BIN" ] || die "azurite not found: run eval \"\$(bash tests/azurite/install.sh)\""
mkdir -p "$1"
STATE=$(cd "$1" && pwd)
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port_open "$PORT" && die "127.0.0.1:$PORT is already in use (set AZURITE_BLOB_PORT)"

log "starting azurite-blob $("$BIN" --version 2>/dev/null) on 127.0.0.1:$PORT (state in $STATE)"
# --disableProductStyleUrl: the account is the path's first segment, as Azurite's endpoint says.
setsid "$BIN" --blobHost 127.0.0.1 --blobPort "$PORT" --location "$STATE/data" \
  --debug "$STATE/azurite.log" --disableTelemetry --disableProductStyleUrl \
  >"$STATE/stdout.log" 2>&1 </dev/null &
echo $! >"$STATE/azurite.pid"
for _ in $(seq 1 $((TIMEOUT * 5))); do
  port_open "$PORT" && break
  kill -0 "$(cat "$STATE/azurite.pid")" 2>/dev/null || { cat "$STATE/stdout.log" >&2; die "azurite exited"; }
  sleep 0.2
done
port_open "$PORT" || die "azurite did not listen on 127.0.0.1:$PORT within ${TIMEOUT}s"
log "ready"
printf 'export AZURITE_BLOB_ENDPOINT=%q\n' "http://127.0.0.1:$PORT/devstoreaccount1"
