#!/usr/bin/env bash
# Seeds the fuzz corpora: corpus/compile/ from the example and golden profiles, corpus/presign/
# from the admission cases of tests/data/admit.yaml (converted to request JSON by the `seed` bin).
# Existing corpus files (what earlier runs found) are kept.
set -euo pipefail
cd "$(dirname "$0")"

mkdir -p corpus/compile corpus/presign
for file in ../policies/*.yaml; do cp "$file" "corpus/compile/policies-$(basename "$file")"; done
for file in ../tests/data/compile/*.yaml; do cp "$file" "corpus/compile/golden-$(basename "$file")"; done
echo "$(ls corpus/compile | wc -l) compile seeds in corpus/compile"

# The admission cases are YAML; the `seed` bin (an ordinary program, on the default toolchain)
# writes them as request JSON.
cargo run --quiet --locked --bin seed
