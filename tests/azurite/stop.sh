#!/usr/bin/env bash
# Stop the Azurite that tests/azurite/start.sh started for <state dir>.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 <state dir>" >&2; exit 2; }
PIDFILE=$1/azurite.pid
[ -f "$PIDFILE" ] || { echo "azurite/stop: no pid file in $1: nothing to stop" >&2; exit 0; }
pid=$(cat "$PIDFILE")
if ps -p "$pid" -o args= 2>/dev/null | grep -q azurite; then
  kill -TERM "$pid"
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -KILL "$pid" 2>/dev/null || true
fi
rm -f "$PIDFILE"
