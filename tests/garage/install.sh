#!/usr/bin/env bash
# Install the Garage S3 server used by postgate's end-to-end upload tests (see README.md here).
# Does nothing when a `garage` 2.5.x is already on PATH or in ~/.cargo/bin.
set -euo pipefail

version=2.5.0

found_version() {
  local bin=$1
  [ -x "$bin" ] || return 1
  # `garage --version` prints e.g. "garage v2.5.0 [features: ...]"
  "$bin" --version 2>/dev/null | grep -Eo 'v?[0-9]+\.[0-9]+\.[0-9]+' | head -n1 | sed 's/^v//'
}

for bin in "$(command -v garage || true)" "${CARGO_HOME:-$HOME/.cargo}/bin/garage"; do
  [ -n "$bin" ] || continue
  v=$(found_version "$bin" || true)
  case "$v" in
    2.5.*)
      echo "garage $v already installed: $bin" >&2
      exit 0
      ;;
    "") ;;
    *) echo "found garage $v at $bin, but the tests want 2.5.x" >&2 ;;
  esac
done

command -v cargo >/dev/null || { echo "cargo not found: install a Rust toolchain first" >&2; exit 1; }
# A debug build: ~4 min from cold on 2 cores where a release build takes ~15, and the suites run
# as fast against it (44 s against 39 s): the tests need Garage's behaviour, not its speed.
echo "installing garage $version with cargo (a from-source debug build: takes ~4 min)..." >&2
cargo install garage --version "$version" --no-default-features --features sqlite,bundled-libs --locked --debug
echo "installed: ${CARGO_HOME:-$HOME/.cargo}/bin/garage" >&2
