#!/usr/bin/env bash
# Installs Azurite, Microsoft's Azure Storage emulator (npm `azurite`, pinned by package.json and
# package-lock.json), into tests/azurite/node_modules. Azurite validates SAS signatures, expiry
# and permissions, which is what the Azure suites prove against.
# Idempotent; progress on stderr; stdout is one line:   eval "$(bash tests/azurite/install.sh)"
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
{
    stamp="$here/node_modules/.package-lock.json"
    if [ ! -f "$stamp" ] || [ "$here/package-lock.json" -nt "$stamp" ]; then
        echo "azurite: npm ci in $here"
        (cd "$here" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    fi
} >&2
printf 'export AZURITE_BIN=%q\n' "$here/node_modules/.bin/azurite-blob"
