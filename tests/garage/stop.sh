#!/usr/bin/env bash
# Stop the Garage server that tests/garage/start.sh started for <state dir>.
# Leaves the state dir in place (delete it yourself to start afresh).
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 <state dir>" >&2; exit 2; }
PIDFILE=$1/garage.pid

if [ ! -f "$PIDFILE" ]; then
  echo "garage/stop: no pid file in $1: nothing to stop" >&2
  exit 0
fi
pid=$(cat "$PIDFILE")

# Only signal the pid if it still is a garage server (pids get reused).
if ! ps -p "$pid" -o args= 2>/dev/null | grep -q 'garage.* server'; then
  echo "garage/stop: pid $pid is not running a garage server: removing stale pid file" >&2
  rm -f "$PIDFILE"
  exit 0
fi

kill -TERM "$pid"
for _ in $(seq 1 50); do
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.2
done
if kill -0 "$pid" 2>/dev/null; then
  echo "garage/stop: pid $pid still running after 10s: sending SIGKILL" >&2
  kill -KILL "$pid" 2>/dev/null || true
fi
rm -f "$PIDFILE"
echo "garage/stop: stopped pid $pid" >&2
