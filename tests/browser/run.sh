#!/usr/bin/env bash
# Browser upload tests in headless Chromium (see upload.test.mjs). Run from the repository root
# after `cargo build`; installs what is missing, so running it again is cheap.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."

if [ ! -x /usr/bin/chromium ]; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
fi

if [ ! -d tests/browser/node_modules ]; then
    (cd tests/browser && npm ci --no-audit --no-fund)
fi

# One file at a time: every suite starts its own `postgate dev` on the same ports.
node --test --test-concurrency=1 tests/browser/
