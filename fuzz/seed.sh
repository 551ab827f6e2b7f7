#!/usr/bin/env bash
# Seeds the fuzz corpora: corpus/compile/ from the example and golden profiles, corpus/presign/
# from the admission cases of tests/data/admit.yaml (as request JSON, and again asked as a PUT).
# Existing corpus files (what earlier runs found) are kept.
set -euo pipefail
cd "$(dirname "$0")"

mkdir -p corpus/compile corpus/presign corpus/token
for file in ../policies/*.yaml; do cp "$file" "corpus/compile/policies-$(basename "$file")"; done
for file in ../tests/data/compile/*.yaml; do cp "$file" "corpus/compile/golden-$(basename "$file")"; done
echo "$(ls corpus/compile | wc -l) compile seeds in corpus/compile"

# The admission cases are YAML; written as request JSON (`PROFILE\nJSON`), plus one
# `YAML\n%%\nJSON` seed per example profile with its first admission case's request.
python3 -c 'import yaml' 2>/dev/null || pip install -q --disable-pip-version-check pyyaml
python3 - <<'PY'
import json, pathlib, yaml
root, out = pathlib.Path(".."), pathlib.Path("corpus/presign")
cases = yaml.safe_load((root / "tests/data/admit.yaml").read_text())
first, written = {}, 0
for name, case in cases.items():
    profile = case.get("profile") if isinstance(case, dict) else None
    if not isinstance(profile, str):
        continue
    request = json.dumps(case.get("request"), separators=(",", ":"), ensure_ascii=False)
    (out / name).write_text(f"{profile}\n{request}")
    first.setdefault(profile, request)
    # The same request asked as a PUT, so the fuzzer starts on both renderers.
    put = json.dumps({**(case.get("request") or {}), "method": "put"}, separators=(",", ":"), ensure_ascii=False)
    (out / f"{name}-put").write_text(f"{profile}\n{put}")
    written += 2
for path in sorted((root / "policies").glob("*.yaml")):
    request = first.get(path.stem, "{}")
    (out / f"inline-{path.stem}").write_text(f"{path.read_text()}\n%%\n{request}")
    written += 1
print(f"{written} presign seeds in corpus/presign")
PY

# Upload token claims: a multipart upload and a POST form (`complete` and the multipart routes
# open what the gateway sealed from these).
cat >corpus/token/multipart.json <<'JSON'
{"profile":"media","app":"web","store":"default","bucket":"user-content","carry":"multipart","key":"media/alice/01a2/clip.mp4","min_size":11534336,"max_size":11534336,"content_type":{"exact":"video/mp4"},"metadata":[["uploaded-by","alice"]],"no_overwrite":true,"upload_id":"2~abc","parts":{"part_size":5242880,"part_count":3,"last_part_size":1048576},"expires_at":1800003600}
JSON
cat >corpus/token/post.json <<'JSON'
{"profile":"scans","app":"mobile","store":"default","bucket":"user-documents","carry":"post","key":"incoming/scans/bob/1/scan.pdf","promote_to":"scans/bob/1/scan.pdf","min_size":1,"max_size":20971520,"content_type":{"prefix":"application/"},"checksum":["sha256","47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="],"expires_at":1700000000}
JSON
printf 'pgu1.k1.e30.AAAA' >corpus/token/garbage
echo "$(ls corpus/token | wc -l) token seeds in corpus/token"
