#!/usr/bin/env bash
# schemathesis against a live `postgate dev`: generated and mutated requests for every operation
# of /openapi.json; fails on any server error or answer that violates the document.
# Usage (from the repo root, after `cargo test` built target/debug/postgate): tests/openapi/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

SCHEMATHESIS_VERSION=4.32.5
if ! st --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  pip install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

bin=${GATEWAY_BIN:-target/debug/postgate}
work=$(mktemp -d)
"$bin" dev --data "$work/data" --listen 127.0.0.1:28080 --store-listen 127.0.0.1:29000 >"$work/log" 2>&1 &
gateway=$!
trap 'kill $gateway 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do
  curl -sf http://127.0.0.1:28080/readyz >/dev/null && break
  sleep 0.1
done
curl -sf http://127.0.0.1:28080/readyz >/dev/null || { cat "$work/log"; exit 1; }

st --version
# hooks.py starts uploads through the API at import, and gives the upload routes' positive cases
# their tokens and capability URLs.
export CONTRACT_GATEWAY=http://127.0.0.1:28080
export SCHEMATHESIS_HOOKS="$PWD/tests/openapi/hooks.py"
# Every check but positive_data_acceptance: a schema-valid body is still refused (422) when the
# profile's own rules say no (an undeclared metadata name, a size out of range), which no
# generic schema can express.
st --config-file tests/openapi/schemathesis.toml run http://127.0.0.1:28080/openapi.json \
  -H "Authorization: Bearer dev-key-web-local" \
  --checks all --exclude-checks positive_data_acceptance \
  --max-examples "${SCHEMATHESIS_EXAMPLES:-200}" --seed "${SCHEMATHESIS_SEED:-20261122}" --no-color
if grep -Eq 'panicked|" 5[0-9][0-9] ' "$work/log"; then
  echo "the gateway logged a panic or a 5xx:" >&2
  cat "$work/log" >&2
  exit 1
fi
