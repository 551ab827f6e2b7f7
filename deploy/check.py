"""Checks of deploy/ that no off-the-shelf tool makes, run by deploy/check.sh.

Each command prints what it checked and exits non-zero with every problem it found:

  check.py manifests APP.yaml SECRETS.yaml   rendered kustomize output against the repository
  check.py split APP.yaml CORE.yaml          core objects only (CRDs have no schema to validate)
  check.py dockerfile                        deploy/Dockerfile and its ignore file
  check.py dashboard                         deploy/grafana/postgate.json's structure
  check.py query URL EXPR                    one instant query: prints the values, one per line
  check.py dashboard-queries URL             every dashboard query runs and returns data
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
CORE_GROUPS = {"v1", "apps/v1", "autoscaling/v2", "policy/v1"}


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
    count = 0
    for panel, target in dashboard_targets(board):
        expr = (target["expr"].replace("$__rate_interval", "1m")
                .replace("$namespace", ".*").replace("$job", ".*"))
        values = []
        for _ in range(20):  # a rate() needs two scrapes inside its window
            try:
                values = query(url, expr)
            except Exception as error:  # noqa: BLE001 - report any failure of the query
                problems.append(f"{panel['title']}: {expr}: {error}")
                break
            if values:
                break
            time.sleep(0.5)
        else:
            problems.append(f"{panel['title']}: {expr}: no data")
        count += 1
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
    print(f"  ok: {count} dashboard queries ran against the live scrape and returned data")


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
        "manifests": manifests, "split": split, "dockerfile": dockerfile, "dashboard": dashboard,
        "dashboard-queries": dashboard_queries, "rules-health": rules_health,
        "query": lambda url, expr: print("\n".join(query(url, expr))),
    }
    if len(argv) < 2 or argv[1] not in commands:
        sys.exit(__doc__)
    commands[argv[1]](*argv[2:])


if __name__ == "__main__":
    main(sys.argv)
