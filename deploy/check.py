"""Checks of deploy/ that no off-the-shelf tool makes, run by deploy/check.sh.

Each command prints what it checked and exits non-zero with every problem it found:

  check.py manifests APP.yaml SECRETS.yaml   rendered kustomize output against the repository
  check.py split APP.yaml CORE.yaml          core objects only (CRDs have no schema to validate)
  check.py dockerfile                        deploy/Dockerfile and its ignore file
  check.py aws                               deploy/aws's IAM policies against policies/
  check.py dashboard                         deploy/grafana/postgate.json's structure
  check.py metric-names                      the dashboard and rules name only the gateway's metrics
  check.py query URL EXPR                    one instant query: prints the values, one per line
  check.py dashboard-queries URL             every dashboard query runs and returns data (or may
                                             not: metrics postgate dev does not export)
  check.py rules-health URL                  every rule loaded and evaluated without error

Run from the repository root with a Python that has PyYAML (the check's virtualenv).
"""

import json
import re
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

DASHBOARD = Path("deploy/grafana/postgate.json")
RULES = Path("deploy/prometheus/rules.yaml")
RULES_TEST = Path("deploy/prometheus/rules_test.yaml")
METRICS_SOURCE = Path("src/metrics.rs")
CORE_GROUPS = {"v1", "apps/v1", "autoscaling/v2", "policy/v1"}

AWS = Path("deploy/aws")
IAM_POLICY = AWS / "iam-policy.json"
KMS_POLICY = AWS / "iam-policy-sse-kms.json"
TRUST_IRSA = AWS / "trust-irsa.json"
TRUST_POD_IDENTITY = AWS / "trust-pod-identity.json"
ROLE_ARN_ANNOTATION = "eks.amazonaws.com/role-arn"
# The S3 actions postgate's own calls and signatures need, and nothing else: PutObject (presigned
# POST/PUT, CreateMultipartUpload, UploadPart, CompleteMultipartUpload, a copy's destination),
# PutObjectAcl (a pinned `acl`), GetObject (HeadObject, the ranged GetObject of a sniff, a copy's
# source), DeleteObject, ListParts and AbortMultipartUpload.
S3_ACTIONS = {"s3:PutObject", "s3:PutObjectAcl", "s3:GetObject", "s3:DeleteObject",
              "s3:ListMultipartUploadParts", "s3:AbortMultipartUpload"}
KMS_ACTIONS = {"kms:GenerateDataKey", "kms:Decrypt"}
# Placeholders in deploy/aws and the ServiceAccount: ACCOUNT_ID, OIDC_PROVIDER_ID, ...
PLACEHOLDER = re.compile(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b")
# Metrics `postgate dev` exports no series of: it signs with fixed keys, so it fetches no store
# credentials, and it checks no end-user tokens. check.sh runs it without a config, so no app
# sends upload events (those families get a series with an app's first event; a histogram is
# named here as the `_bucket` series its queries read) and there is no audit log; the queue
# gauges also need `events.redis`. A dashboard query of these alone must run against the live
# scrape but may return nothing.
ABSENT_IN_DEV = {
    "postgate_store_credentials_expiry_timestamp_seconds",
    "postgate_store_credentials_valid",
    "postgate_store_credentials_refreshes_total",
    "postgate_jwks_fetches_total",
    "postgate_end_user_tokens_total",
    "postgate_events_total",
    "postgate_event_delivery_attempts_total",
    "postgate_event_delivery_duration_seconds_bucket",
    "postgate_event_queue_depth",
    "postgate_event_queue_oldest_age_seconds",
    "postgate_event_dead_letters",
    "postgate_audit_lines_total",
}


def fail(problems):
    for problem in problems:
        print(f"  problem: {problem}", file=sys.stderr)
    sys.exit(1)


def load_docs(path):
    return [d for d in yaml.safe_load_all(Path(path).read_text()) if d]


def find(docs, kind, name=None):
    for doc in docs:
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name):
            return doc
    return None


def profile_files():
    """The files postgate loads: top-level, non-dot *.yaml and *.yml."""
    return sorted(
        p for p in Path("policies").iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix in (".yaml", ".yml")
    )


def manifests(app_path, secrets_path):
    docs, secrets = load_docs(app_path), load_docs(secrets_path)
    problems = []

    # The policies ConfigMap holds exactly the repository's profiles, byte for byte, under a
    # fixed name (no hash suffix: the gateway hot-reloads it).
    policies = find(docs, "ConfigMap", "postgate-policies")
    if policies is None:
        problems.append("no ConfigMap named exactly `postgate-policies` (is its name hash back?)")
    else:
        expected = {p.name: p.read_text() for p in profile_files()}
        data = policies.get("data", {})
        for name in sorted(expected.keys() - data.keys()):
            problems.append(f"policies/{name} is missing from the configMapGenerator in deploy/k8s/kustomization.yaml")
        for name in sorted(data.keys() - expected.keys()):
            problems.append(f"the policies ConfigMap has {name}, which is not in policies/")
        for name in sorted(expected.keys() & data.keys()):
            if data[name] != expected[name]:
                problems.append(f"the policies ConfigMap's {name} differs from policies/{name}")

    deployment = find(docs, "Deployment", "postgate")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    mounts = {m["name"]: m for m in container.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    env = {e["name"]: e for e in container.get("env", [])}

    if pod.get("enableServiceLinks") is not False:
        problems.append("enableServiceLinks is not false: the Service `postgate` would add POSTGATE_* "
                        "variables that the gateway refuses")
    for mount in mounts.values():
        if "subPath" in mount or "subPathExpr" in mount:
            problems.append(f"volume mount {mount['name']} uses subPath: it would never see updates")
    if volumes.get("policies", {}).get("configMap", {}).get("name") != "postgate-policies":
        problems.append("the `policies` volume is not the postgate-policies ConfigMap")
    if mounts.get("policies", {}).get("mountPath") != env.get("POSTGATE_POLICIES", {}).get("value"):
        problems.append("POSTGATE_POLICIES is not where the policies ConfigMap is mounted")

    # The config file named by --config is the one the config ConfigMap mounts.
    args = container.get("args", [])
    config_path = args[args.index("--config") + 1] if "--config" in args else None
    config_map = volumes.get("config", {}).get("configMap", {}).get("name")
    config_doc = find(docs, "ConfigMap", config_map) if config_map else None
    if config_path is None or config_doc is None:
        problems.append("no --config argument backed by the config ConfigMap")
        config = {}
    else:
        mount_dir, file_name = config_path.rsplit("/", 1)
        if mounts.get("config", {}).get("mountPath") != mount_dir or file_name not in config_doc["data"]:
            problems.append(f"--config {config_path} is not a file of the mounted config ConfigMap")
        config = yaml.safe_load(config_doc["data"].get(file_name, "")) or {}

    # Every app a profile names has keys, and every keys_file is a key of the mounted Secret.
    apps = config.get("apps", {})
    # `apps: all` (every app) names none; a list names each of its apps.
    listed = (yaml.safe_load(p.read_text()).get("apps") for p in profile_files())
    named = {app for apps_of in listed if isinstance(apps_of, list) for app in apps_of}
    for app in sorted(named - apps.keys()):
        problems.append(f"a profile names app `{app}`, which deploy/k8s/config/postgate.yaml does not declare")
    key_secret = find(secrets, "Secret", volumes.get("app-keys", {}).get("secret", {}).get("secretName"))
    key_dir = mounts.get("app-keys", {}).get("mountPath")
    if key_secret is None:
        problems.append("the app-keys volume's Secret is not generated by deploy/k8s/secrets")
    for app, settings in apps.items():
        keys_file = (settings or {}).get("keys_file")
        if keys_file is None:
            continue
        directory, name = keys_file.rsplit("/", 1)
        if directory != key_dir or key_secret is None or name not in key_secret.get("data", {}):
            problems.append(f"apps.{app}.keys_file {keys_file} is not a key of the mounted app keys Secret")

    # Every upload token key file is a key of the mounted upload tokens Secret, and `current` is
    # one of the keys.
    tokens = config.get("upload_tokens")
    if tokens is None:
        problems.append("deploy/k8s/config/postgate.yaml sets no upload_tokens: multipart and complete would answer 503")
    else:
        token_secret = find(secrets, "Secret", volumes.get("upload-tokens", {}).get("secret", {}).get("secretName"))
        token_dir = mounts.get("upload-tokens", {}).get("mountPath")
        if tokens.get("current") not in (tokens.get("keys") or {}):
            problems.append(f"upload_tokens.current {tokens.get('current')} is not one of upload_tokens.keys")
        for key_id, settings in (tokens.get("keys") or {}).items():
            secret_file = (settings or {}).get("secret_file")
            if secret_file is None:
                continue
            directory, name = secret_file.rsplit("/", 1)
            if directory != token_dir or token_secret is None or name not in token_secret.get("data", {}):
                problems.append(f"upload_tokens.keys.{key_id}.secret_file {secret_file} is not a key of the mounted upload tokens Secret")

    # Every secretKeyRef names a generated Secret and one of its keys.
    for name, var in env.items():
        ref = var.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            secret = find(secrets, "Secret", ref["name"])
            if secret is None or ref["key"] not in secret.get("data", {}):
                problems.append(f"env {name}: Secret {ref['name']} has no key {ref['key']}")

    # The restricted security context.
    pod_sc, sc = pod.get("securityContext", {}), container.get("securityContext", {})
    wanted = {
        "runAsNonRoot": (sc.get("runAsNonRoot"), True),
        "runAsUser": (sc.get("runAsUser", pod_sc.get("runAsUser")), 10001),
        "readOnlyRootFilesystem": (sc.get("readOnlyRootFilesystem"), True),
        "allowPrivilegeEscalation": (sc.get("allowPrivilegeEscalation"), False),
        "capabilities.drop": (sc.get("capabilities", {}).get("drop"), ["ALL"]),
        "seccompProfile": (pod_sc.get("seccompProfile", {}).get("type"), "RuntimeDefault"),
    }
    for field, (got, want) in wanted.items():
        if got != want:
            problems.append(f"securityContext {field} is {got!r}, not {want!r}")

    # The Service, its ServiceMonitor and the container agree on the port named `http`.
    service = find(docs, "Service", "postgate")
    monitor = find(docs, "ServiceMonitor", "postgate")
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    container_ports = {p["name"] for p in container.get("ports", [])}
    if ports.get("http", {}).get("targetPort") not in container_ports:
        problems.append("the Service's `http` port does not target a named container port")
    if not service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items():
        problems.append("the Service's selector does not match the pods")
    if monitor is None:
        problems.append("no ServiceMonitor")
    else:
        if not monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items():
            problems.append("the ServiceMonitor's selector does not match the Service's labels")
        for endpoint in monitor["spec"]["endpoints"]:
            if endpoint.get("port") not in ports or endpoint.get("path") != "/metrics":
                problems.append("a ServiceMonitor endpoint is not the Service's named port at /metrics")

    hpa, pdb = find(docs, "HorizontalPodAutoscaler"), find(docs, "PodDisruptionBudget")
    if hpa["spec"]["minReplicas"] < 2:
        problems.append("the HorizontalPodAutoscaler allows fewer than 2 replicas")
    if "replicas" in deployment["spec"]:
        problems.append("the Deployment sets replicas, which the HorizontalPodAutoscaler owns")
    if pdb["spec"].get("minAvailable") != 1:
        problems.append("the PodDisruptionBudget does not keep 1 replica available")

    # The pods' ServiceAccount names the IAM role (IRSA), and both trust policies in deploy/aws
    # name this ServiceAccount in this namespace.
    account_name = pod.get("serviceAccountName", "default")
    account = find(docs, "ServiceAccount", account_name)
    if account is None:
        problems.append(f"the pods' ServiceAccount {account_name} is not rendered")
    else:
        namespace = account["metadata"].get("namespace", "default")
        role_arn = (account["metadata"].get("annotations") or {}).get(ROLE_ARN_ANNOTATION)
        if role_arn is None:
            problems.append(f"the ServiceAccount {account_name} has no {ROLE_ARN_ANNOTATION} annotation")
        elif not re.fullmatch(r"arn:aws[a-z-]*:iam::(\d{12}|ACCOUNT_ID):role/[\w+=,.@/-]+", role_arn):
            problems.append(f"{ROLE_ARN_ANNOTATION} {role_arn} is not an IAM role ARN")
        if account.get("automountServiceAccountToken") is not False:
            problems.append(f"the ServiceAccount {account_name} mounts an API token: postgate never calls the Kubernetes API")
        subject = f"system:serviceaccount:{namespace}:{account_name}"
        try:
            irsa = {key.rsplit(":", 1)[-1]: value for statement in json.loads(TRUST_IRSA.read_text())["Statement"]
                    for key, value in statement.get("Condition", {}).get("StringEquals", {}).items()}
            tags = {key: value for statement in json.loads(TRUST_POD_IDENTITY.read_text())["Statement"]
                    for key, value in statement.get("Condition", {}).get("StringEquals", {}).items()}
        except (OSError, ValueError, KeyError, AttributeError) as error:
            problems.append(f"the trust policies in {AWS} do not read: {error} (check.py aws says more)")
        else:
            if irsa.get("sub") != subject:
                problems.append(f"{TRUST_IRSA}: the `sub` condition is {irsa.get('sub')!r}, not the pods' {subject!r}")
            for tag, want in (("kubernetes-namespace", namespace), ("kubernetes-service-account", account_name)):
                if tags.get(f"aws:RequestTag/{tag}") != want:
                    problems.append(f"{TRUST_POD_IDENTITY}: aws:RequestTag/{tag} is "
                                    f"{tags.get(f'aws:RequestTag/{tag}')!r}, not {want!r}")

    if problems:
        fail(problems)
    print(f"  ok: {len(docs)} objects and {len(secrets)} Secrets agree with policies/ "
          f"({len(profile_files())} profiles), the config, the Secrets and each other")


def split(app_path, core_path):
    docs = load_docs(app_path)
    core = [d for d in docs if d["apiVersion"] in CORE_GROUPS]
    for doc in docs:
        if doc["apiVersion"] not in CORE_GROUPS:
            print(f"  skipped {doc['kind']} ({doc['apiVersion']}): a CustomResourceDefinition "
                  "kubernetes-validate has no schema for; `manifests` checked its selector and port")
    Path(core_path).write_text(yaml.safe_dump_all(core, sort_keys=False))


def dockerfile():
    text = Path("deploy/Dockerfile").read_text()
    allowed = {
        line[1:].strip().rstrip("/")
        for line in Path("deploy/Dockerfile.dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    problems = []
    stages = re.findall(r"^FROM\s+(\S+)", text, re.M)
    if len(stages) < 2:
        problems.append("not a multi-stage build")
    for line in re.findall(r"^COPY\s+(?!--from)(.+)$", text, re.M):
        for source in line.split()[:-1]:
            if source.rstrip("/") not in allowed:
                problems.append(f"COPY {source}: left out of the context by Dockerfile.dockerignore")
    for needle in ("--locked", "--no-default-features", "USER 10001", 'ENTRYPOINT ["postgate"]',
                   'CMD ["serve"]', "EXPOSE 8080"):
        if needle not in text:
            problems.append(f"Dockerfile lacks `{needle}`")
    if problems:
        fail(problems)
    print(f"  ok: stages {' -> '.join(stages)}; every COPY source is in the context")


def as_list(value):
    return value if isinstance(value, list) else [value]


def read_policy(path, problems):
    """A policy document, or None (with the reason in problems)."""
    try:
        policy = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        problems.append(f"{path}: {error}")
        return None
    if policy.get("Version") != "2012-10-17":
        problems.append(f"{path}: Version is not 2012-10-17 (policy variables and conditions need it)")
    statements = policy.get("Statement")
    if not isinstance(statements, list) or not statements:
        problems.append(f"{path}: no Statement list")
        return None
    sids = [s.get("Sid") for s in statements if isinstance(s, dict)]
    for sid in sorted({s for s in sids if sids.count(s) > 1}):
        problems.append(f"{path}: Sid {sid} is used twice")
    return policy


def check_statement(path, statement, required, problems):
    """Every key in `required`, an alphanumeric Sid, Allow, and no wildcard action."""
    sid = statement.get("Sid")
    where = f"{path}: statement {sid or '(no Sid)'}"
    for key in required:
        if key not in statement:
            problems.append(f"{where}: no {key}")
    for key in ("NotAction", "NotResource", "NotPrincipal"):
        if key in statement:
            problems.append(f"{where}: {key} grants everything not listed")
    if sid is not None and not re.fullmatch(r"[A-Za-z0-9]+", str(sid)):
        problems.append(f"{where}: a Sid holds only letters and digits")
    if statement.get("Effect") != "Allow":
        problems.append(f"{where}: Effect is not Allow")
    for action in as_list(statement.get("Action", [])):
        if "*" in action or "?" in action:
            problems.append(f"{where}: wildcard action {action}")
    return where


def profile_needs():
    """What postgate does in S3 for each profile: {(action, bucket, key prefix): why}.

    The prefix is the profile's key up to its first `${`; a single upload lands behind
    `verify.staging` when set and is copied to the key once checked; a multipart upload writes the
    key itself; a refused one is copied behind `verify.quarantine` (under its marker).
    """
    needs = {}
    for path in profile_files():
        profile = yaml.safe_load(path.read_text()) or {}
        bucket, key = profile.get("bucket"), profile.get("key")
        if not isinstance(bucket, str) or not isinstance(key, str):
            continue
        prefix = key.split("${", 1)[0]
        verify = profile.get("verify") or {}
        staging, quarantine = verify.get("staging"), verify.get("quarantine")
        uploaded = (staging or "") + prefix
        pins_acl = "acl" in (profile.get("fields") or {})
        wanted = [
            ("s3:PutObject", uploaded, "signed uploads"),
            ("s3:GetObject", uploaded, "complete: HeadObject, sniffing"),
            ("s3:DeleteObject", uploaded, "complete: removing a refused or promoted upload"),
        ]
        if pins_acl:
            wanted.append(("s3:PutObjectAcl", uploaded, "the pinned `acl`"))
        if profile.get("multipart") is not None:
            wanted.append(("s3:PutObject", prefix, "multipart: CreateMultipartUpload, UploadPart"))
            wanted.append(("s3:GetObject", prefix, "complete: HeadObject, sniffing of a multipart upload"))
            wanted.append(("s3:DeleteObject", prefix, "complete: removing a refused multipart upload"))
            wanted.append(("s3:ListMultipartUploadParts", prefix, "multipart: ListParts"))
            wanted.append(("s3:AbortMultipartUpload", prefix, "multipart: abort"))
            if pins_acl:
                wanted.append(("s3:PutObjectAcl", prefix, "multipart: the pinned `acl`"))
        if staging:
            wanted.append(("s3:PutObject", prefix, "promotion: CopyObject destination"))
            wanted.append(("s3:GetObject", prefix, "complete: HeadObject of the promoted key"))
            wanted.append(("s3:DeleteObject", prefix, "promotion: removing a changed copy"))
            if pins_acl:
                wanted.append(("s3:PutObjectAcl", prefix, "promotion: the pinned `acl` on the copy"))
        if quarantine:
            wanted.append(("s3:PutObject", quarantine, "quarantine: CopyObject destination, under the upload's marker"))
        for action, key_prefix, why in wanted:
            needs.setdefault((action, bucket, key_prefix), []).append(f"{path.stem}: {why}")
    return needs


def aws():
    problems = []

    # The S3 policy grants exactly what the profiles need, one object prefix at a time.
    needs = profile_needs()
    granted = set()
    policy = read_policy(IAM_POLICY, problems)
    for statement in (policy or {}).get("Statement", []):
        where = check_statement(IAM_POLICY, statement, ("Sid", "Effect", "Action", "Resource"), problems)
        for action in as_list(statement.get("Action", [])):
            if action not in S3_ACTIONS:
                problems.append(f"{where}: {action} is none of postgate's S3 calls")
                continue
            for resource in as_list(statement.get("Resource", [])):
                match = re.fullmatch(r"arn:aws:s3:::([a-z0-9.-]+)/([^*?]*)\*", resource)
                if match is None:
                    problems.append(f"{where}: {resource} is not one bucket's objects under one key prefix")
                    continue
                bucket, key_prefix = match.groups()
                if (action, bucket, key_prefix) not in needs:
                    problems.append(f"{where}: {action} on {resource}, which no profile in policies/ needs")
                granted.add((action, bucket, key_prefix))
    for (action, bucket, key_prefix), why in sorted(needs.items()):
        if policy is not None and (action, bucket, key_prefix) not in granted:
            problems.append(f"{IAM_POLICY}: no {action} on arn:aws:s3:::{bucket}/{key_prefix}* ({'; '.join(why)})")
    buckets = sorted({bucket for _, bucket, _ in needs})

    # The SSE-KMS addition: only the two KMS actions, on a key, through S3.
    kms = read_policy(KMS_POLICY, problems)
    for statement in (kms or {}).get("Statement", []):
        where = check_statement(KMS_POLICY, statement, ("Sid", "Effect", "Action", "Resource"), problems)
        if set(as_list(statement.get("Action", []))) != KMS_ACTIONS:
            problems.append(f"{where}: Action is not exactly {sorted(KMS_ACTIONS)}")
        for resource in as_list(statement.get("Resource", [])):
            if not re.fullmatch(r"arn:aws:kms:[a-z0-9-]+:[A-Z0-9_]+:key/[A-Za-z0-9_-]+", resource):
                problems.append(f"{where}: {resource} is not one KMS key")
        if "kms:ViaService" not in json.dumps(statement.get("Condition", {})):
            problems.append(f"{where}: no kms:ViaService condition (the key would serve any caller of the role)")

    # The trust policies: who may assume the role.
    irsa = read_policy(TRUST_IRSA, problems)
    for statement in (irsa or {}).get("Statement", []):
        where = check_statement(TRUST_IRSA, statement, ("Sid", "Effect", "Principal", "Action", "Condition"), problems)
        if ":oidc-provider/" not in str(statement.get("Principal", {}).get("Federated", "")):
            problems.append(f"{where}: Principal is not the cluster's OIDC provider (Federated)")
        if as_list(statement.get("Action")) != ["sts:AssumeRoleWithWebIdentity"]:
            problems.append(f"{where}: Action is not sts:AssumeRoleWithWebIdentity")
        conditions = {k.rsplit(":", 1)[-1]: v for k, v in statement.get("Condition", {}).get("StringEquals", {}).items()}
        if conditions.get("aud") != "sts.amazonaws.com":
            problems.append(f"{where}: no StringEquals `aud` sts.amazonaws.com")
        if not re.fullmatch(r"system:serviceaccount:[a-z0-9-]+:[a-z0-9.-]+", str(conditions.get("sub"))):
            problems.append(f"{where}: no StringEquals `sub` naming one ServiceAccount (a wildcard would let any pod in)")
    pod_identity = read_policy(TRUST_POD_IDENTITY, problems)
    for statement in (pod_identity or {}).get("Statement", []):
        where = check_statement(TRUST_POD_IDENTITY, statement, ("Sid", "Effect", "Principal", "Action"), problems)
        if statement.get("Principal") != {"Service": "pods.eks.amazonaws.com"}:
            problems.append(f"{where}: Principal is not the service pods.eks.amazonaws.com")
        if sorted(as_list(statement.get("Action", []))) != ["sts:AssumeRole", "sts:TagSession"]:
            problems.append(f"{where}: Action is not sts:AssumeRole and sts:TagSession")

    # Every placeholder is explained in deploy/aws/README.md.
    readme = (AWS / "README.md").read_text() if (AWS / "README.md").is_file() else ""
    for path in (IAM_POLICY, KMS_POLICY, TRUST_IRSA, TRUST_POD_IDENTITY, Path("deploy/k8s/serviceaccount.yaml")):
        text = path.read_text() if path.is_file() else ""
        for placeholder in sorted(set(PLACEHOLDER.findall(text))):
            if placeholder.startswith("AWS_"):
                continue  # environment variables named in comments
            if f"`{placeholder}`" not in readme:
                problems.append(f"{path}: placeholder {placeholder} is not explained in {AWS}/README.md")

    if problems:
        fail(problems)
    print(f"  ok: {IAM_POLICY} grants exactly what {len(profile_files())} profiles need "
          f"({len(needs)} action and prefix pairs in {len(buckets)} buckets: {', '.join(buckets)}); "
          f"the SSE-KMS addition and both trust policies are well formed")


def dashboard_targets(dashboard):
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield panel, target


def dashboard():
    board = json.loads(DASHBOARD.read_text())
    problems = []
    names = [v["name"] for v in board["templating"]["list"]]
    if "datasource" not in names:
        problems.append("no `datasource` template variable")
    ids = [p["id"] for p in board["panels"]]
    if len(ids) != len(set(ids)):
        problems.append("duplicate panel ids")
    count = 0
    for panel, target in dashboard_targets(board):
        count += 1
        for what, source in (("panel", panel.get("datasource")), ("target", target.get("datasource"))):
            if (source or {}).get("uid") != "${datasource}":
                problems.append(f"{panel['title']}: {what} datasource is not ${{datasource}}")
    if problems:
        fail(problems)
    print(f"  ok: {len(board['panels'])} panels, {count} queries, all on ${{datasource}}")


def metric_names():
    """Every postgate_* name the dashboard and the rules (and their tests) use is one of the
    gateway's metric constants in src/metrics.rs (histograms also as _bucket, _sum, _count)."""
    defined = set(re.findall(r'pub const \w+: &str = "(postgate_\w+)";', METRICS_SOURCE.read_text()))
    known = defined | {f"{name}{suffix}" for name in defined for suffix in ("_bucket", "_sum", "_count")}
    board = json.loads(DASHBOARD.read_text())
    uses = [(f"{DASHBOARD}: {panel['title']}", target["expr"]) for panel, target in dashboard_targets(board)]
    uses += [(f"{DASHBOARD}: variable {v['name']}", v.get("definition", "")) for v in board["templating"]["list"]]
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        uses += [(f"{RULES}: {rule.get('alert') or rule.get('record')}", rule["expr"]) for rule in group["rules"]]
    for number, test in enumerate(yaml.safe_load(RULES_TEST.read_text())["tests"], 1):
        uses += [(f"{RULES_TEST}: test {number}", series["series"]) for series in test.get("input_series", [])]
    problems = []
    count = 0
    for where, text in uses:
        for name in sorted(set(re.findall(r"\bpostgate_\w+", text))):
            count += 1
            if name not in known:
                problems.append(f"{where}: {name} is not a metric of the gateway ({METRICS_SOURCE})")
    if not defined:
        problems.append(f"no metric constants found in {METRICS_SOURCE}")
    if problems:
        fail(problems)
    used = {name for _, text in uses for name in re.findall(r"\bpostgate_\w+", text)}
    print(f"  ok: the dashboard, the rules and their tests use {len(used)} postgate metric names "
          f"({count} uses), all among the {len(defined)} metrics the gateway defines")


def query(url, expr):
    body = urllib.parse.urlencode({"query": expr}).encode()
    with urllib.request.urlopen(f"{url}/api/v1/query", body, timeout=5) as answer:
        reply = json.load(answer)
    if reply["status"] != "success":
        raise RuntimeError(reply.get("error", reply))
    result = reply["data"]["result"]
    if reply["data"]["resultType"] == "scalar":
        return [result[1]]
    return [sample["value"][1] for sample in result]


def dashboard_queries(url):
    board = json.loads(DASHBOARD.read_text())
    problems = []
    count = empty = 0
    for panel, target in dashboard_targets(board):
        expr = (target["expr"].replace("$__rate_interval", "1m")
                .replace("$namespace", ".*").replace("$job", ".*"))
        metrics = set(re.findall(r"\bpostgate_\w+", expr))
        may_be_empty = bool(metrics) and metrics <= ABSENT_IN_DEV
        values = []
        for _ in range(20):  # a rate() needs two scrapes inside its window
            try:
                values = query(url, expr)
            except Exception as error:  # noqa: BLE001 - report any failure of the query
                problems.append(f"{panel['title']}: {expr}: {error}")
                break
            if values or may_be_empty:
                break
            time.sleep(0.5)
        else:
            problems.append(f"{panel['title']}: {expr}: no data")
        count += 1
        empty += not values and may_be_empty
    for variable in board["templating"]["list"]:
        match = re.fullmatch(r"label_values\((\w+)(?:\{.*\})?, (\w+)\)", variable.get("definition", ""))
        if match:
            metric, label = match.groups()
            params = urllib.parse.urlencode({"match[]": metric})
            with urllib.request.urlopen(f"{url}/api/v1/label/{label}/values?{params}", timeout=5) as answer:
                if not json.load(answer)["data"]:
                    problems.append(f"variable {variable['name']}: no {label} values on {metric}")
    if problems:
        fail(problems)
    print(f"  ok: {count} dashboard queries ran against the live scrape; {count - empty} returned data, "
          f"{empty} of metrics postgate dev does not export ran empty")


def rules_health(url):
    deadline = time.time() + 30
    while True:
        with urllib.request.urlopen(f"{url}/api/v1/rules", timeout=5) as answer:
            groups = json.load(answer)["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        unhealthy = [f"{r['name']}: {r['health']} {r.get('lastError', '')}" for r in rules if r["health"] != "ok"]
        if rules and not unhealthy:
            break
        if time.time() > deadline:
            fail(unhealthy or ["no rules loaded"])
        time.sleep(0.5)
    states = ", ".join(f"{r['name']}={r.get('state', '-')}" for r in rules)
    print(f"  ok: {len(rules)} rules evaluated without error on live data ({states})")


def main(argv):
    commands = {
        "manifests": manifests, "split": split, "dockerfile": dockerfile, "aws": aws, "dashboard": dashboard,
        "metric-names": metric_names, "dashboard-queries": dashboard_queries, "rules-health": rules_health,
        "query": lambda url, expr: print("\n".join(query(url, expr))),
    }
    if len(argv) < 2 or argv[1] not in commands:
        sys.exit(__doc__)
    commands[argv[1]](*argv[2:])


if __name__ == "__main__":
    main(sys.argv)
