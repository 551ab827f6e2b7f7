#!/usr/bin/env bash
# Installs the reference Standard Webhooks verifiers used by receiver.py / receiver.mjs:
#   - PyPI `standardwebhooks` in a venv under ${WEBHOOK_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/postgate-webhooks}
#   - npm  `standardwebhooks` in tests/webhooks/node_modules (pinned by package-lock.json)
# Idempotent and cheap when already installed. All progress goes to stderr; stdout is exactly one
# line, so callers can do:   eval "$(bash tests/webhooks/install.sh)"   (sets WEBHOOK_PYTHON)
set -euo pipefail

PY_VERSION=1.3.0   # standardwebhooks on PyPI; the npm pin lives in package.json / package-lock.json

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tools="${WEBHOOK_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/postgate-webhooks}"
venv="$tools/venv"
py="$venv/bin/python"

{
    # Python: (re)create the venv only if the pinned version is not importable from it.
    if ! "$py" -c "import importlib.metadata as m, sys; sys.exit(m.version('standardwebhooks') != '$PY_VERSION')" 2>/dev/null; then
        echo "webhooks: installing standardwebhooks==$PY_VERSION (PyPI) into $venv"
        mkdir -p "$tools"
        python3 -m venv --clear "$venv"
        "$py" -m pip install --quiet --disable-pip-version-check "standardwebhooks==$PY_VERSION"
    fi

    # Node: npm ci only when node_modules is missing or older than the lockfile.
    stamp="$here/node_modules/.package-lock.json"
    if [ ! -f "$stamp" ] || [ "$here/package-lock.json" -nt "$stamp" ]; then
        echo "webhooks: npm ci in $here"
        (cd "$here" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    fi
} >&2

printf 'export WEBHOOK_PYTHON=%q\n' "$py"
