"""deploy/: alert rules, Grafana dashboard, systemd units, Kubernetes manifests, Dockerfile.

The metric check reads the exported names from the C sources (string literals starting
with readmodel_ in lib/pipeline*.c, query-api/*.c and reconcile/*.c), so it stays true as
the code changes: a rule or panel that references a name no program exports fails here.
External tools (promtool, systemd-analyze, readelf/dpkg, the built binaries) are used
when present and the test is skipped, with the reason, when not."""
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.request

import pytest
import yaml

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

ROOT = harness.ROOT
DEPLOY = os.path.join(ROOT, "deploy")
ALERTS = os.path.join(DEPLOY, "prometheus", "alerts.yml")
DASHBOARD = os.path.join(DEPLOY, "grafana", "readmodel-dashboard.json")
RUNBOOK = os.path.join(ROOT, "docs", "runbook.md")
UNITS = os.path.join(DEPLOY, "systemd")
K8S = os.path.join(DEPLOY, "k8s")
DOCKERFILE = os.path.join(DEPLOY, "docker", "Dockerfile")
CONFIG = os.path.join(DEPLOY, "config", "readmodel.yaml")

# Names referenced by the alert rules and the dashboard ahead of their exporter. Empty
# since reconcile/report.c exports the reconcile family; keep it minimal: a name here must
# be referenced (test_reconcile_allowlist_is_minimal).
RECONCILE_ALLOWLIST = set()
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
METRIC_RE = re.compile(r"\breadmodel_[a-zA-Z0-9_]+")


# ---------------------------------------------------------------- exported metric names

def metric_sources():
    files = sorted(glob.glob(os.path.join(ROOT, "lib", "pipeline*.c")))
    files += sorted(glob.glob(os.path.join(ROOT, "query-api", "*.c")))
    files += sorted(glob.glob(os.path.join(ROOT, "reconcile", "**", "*.c"), recursive=True))
    return [f for f in files if os.path.exists(f)]


def exported_metrics():
    """(names, histogram families) from the C string literals of the metric sources."""
    names, histograms = set(), set()
    for path in metric_sources():
        src = open(path, encoding="utf-8").read()
        names.update(re.findall(r'"(readmodel_[a-zA-Z0-9_]+)"', src))
        # FAMILY("name", "histogram", ...) / metrics_family(b, "name", "histogram", ...)
        histograms.update(re.findall(r'"(readmodel_[a-zA-Z0-9_]+)"\s*,\s*"histogram"', src))
        # metrics_hist_render(out, "name", ...) renders _bucket/_sum/_count
        histograms.update(re.findall(r'metrics_hist_render\([^,]+,\s*"(readmodel_[a-zA-Z0-9_]+)"', src))
        # family_hist(sc, "name", ...) in lib/pipeline_metrics.c: the family and its lines
        histograms.update(re.findall(r'family_hist\([^,]+,\s*"(readmodel_[a-zA-Z0-9_]+)"', src))
    return names, histograms


def unexported(referenced, names, histograms, allow=frozenset()):
    """Referenced names that no program exports (histogram suffixes resolved)."""
    missing = set()
    for name in referenced:
        if name in names or name in allow:
            continue
        base = next((name[: -len(s)] for s in HISTOGRAM_SUFFIXES if name.endswith(s)), None)
        if base and base in histograms:
            continue
        missing.add(name)
    return missing


def load_alerts():
    with open(ALERTS, encoding="utf-8") as f:
        return yaml.safe_load(f)


def alert_rules():
    return [rule for group in load_alerts()["groups"] for rule in group["rules"]]


def load_dashboard():
    with open(DASHBOARD, encoding="utf-8") as f:
        return json.load(f)


def dashboard_panels(dash):
    for panel in dash["panels"]:
        yield panel
        for inner in panel.get("panels", []):  # collapsed rows hold their panels
            yield inner


def dashboard_exprs(dash):
    exprs = [t["expr"] for p in dashboard_panels(dash) for t in p.get("targets", []) if "expr" in t]
    for var in dash.get("templating", {}).get("list", []):
        q = var.get("query")
        if isinstance(q, dict):
            q = q.get("query")
        if var.get("type") == "query" and q:
            exprs.append(q)
    return exprs


def referenced_metrics():
    refs = {}
    for rule in alert_rules():
        for name in METRIC_RE.findall(rule["expr"]):
            refs.setdefault(name, set()).add(f"alert {rule['alert']}")
    for expr in dashboard_exprs(load_dashboard()):
        for name in METRIC_RE.findall(expr):
            refs.setdefault(name, set()).add("dashboard")
    return refs


def test_exported_metric_extraction_sees_the_code():
    names, histograms = exported_metrics()
    # If the parser broke (or the code moved), these anchors catch it before the
    # reference check below passes vacuously.
    assert {"readmodel_partition_lag_messages", "readmodel_events_total",
            "readmodel_http_requests_total"} <= names
    assert {"readmodel_batch_events", "readmodel_commit_seconds",
            "readmodel_http_request_duration_seconds"} <= histograms
    # The checker rejects what is not exported, and suffixes only histograms.
    assert unexported({"readmodel_no_such_metric"}, names, histograms) == {"readmodel_no_such_metric"}
    assert unexported({"readmodel_events_total_bucket"}, names, histograms) == {"readmodel_events_total_bucket"}
    assert unexported({"readmodel_commit_seconds_bucket"}, names, histograms) == set()


def test_every_referenced_metric_is_exported():
    names, histograms = exported_metrics()
    refs = referenced_metrics()
    assert refs, "no readmodel_* metric found in alerts.yml and the dashboard"
    missing = unexported(refs, names, histograms, RECONCILE_ALLOWLIST)
    assert not missing, "referenced but not exported: " + ", ".join(
        f"{m} ({', '.join(sorted(refs[m]))})" for m in sorted(missing))


def test_reconcile_allowlist_is_minimal():
    refs = referenced_metrics()
    unused = RECONCILE_ALLOWLIST - set(refs)
    assert not unused, f"allowlisted but never referenced (remove them): {sorted(unused)}"
    assert all(n.startswith("readmodel_reconcile_") for n in RECONCILE_ALLOWLIST)


def test_alerts_cover_the_required_signals():
    exprs = " ".join(r["expr"] for r in alert_rules())
    for name in ("readmodel_partition_lag_messages", "readmodel_partition_lag_seconds",
                 "readmodel_dead_letters_total", "readmodel_dead_letters_pending",
                 "readmodel_gaps_total", "readmodel_reconcile_drift_keys",
                 "readmodel_events_total", "readmodel_parked_events",
                 "readmodel_store_used_bytes"):
        assert name in exprs, f"no alert uses {name}"


# ---------------------------------------------------------------- alert rule structure

def runbook_anchors():
    anchors = set()
    for line in open(RUNBOOK, encoding="utf-8"):
        m = re.match(r"#{1,6}\s+(.*)", line)
        if m:  # GitHub's slug: lower case, punctuation dropped, spaces to dashes
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            anchors.add(slug)
    return anchors


def test_alert_rules_are_complete():
    doc = load_alerts()
    assert isinstance(doc, dict) and doc.get("groups"), "alerts.yml has no groups"
    anchors = runbook_anchors()
    seen = set()
    for rule in alert_rules():
        name = rule.get("alert")
        assert name, f"recording rule or unnamed rule in alerts.yml: {rule}"
        assert name not in seen, f"duplicate alert {name}"
        seen.add(name)
        assert rule.get("expr"), f"{name}: no expr"
        assert "for" in rule and re.fullmatch(r"\d+[smhd]", str(rule["for"])), f"{name}: no valid for"
        assert rule.get("labels", {}).get("severity") in ("critical", "warning", "info"), \
            f"{name}: labels.severity must be critical, warning or info"
        ann = rule.get("annotations", {})
        for key in ("summary", "description", "runbook_url"):
            assert ann.get(key), f"{name}: no annotations.{key}"
        url = ann["runbook_url"]
        assert url.startswith("docs/runbook.md#"), f"{name}: runbook_url {url}"
        assert url.split("#", 1)[1] in anchors, f"{name}: {url} has no heading in docs/runbook.md"
        # Descriptions should name what fired: use at least one label.
        assert "$labels." in ann["summary"] + ann["description"], f"{name}: annotations use no label"


def promtool():
    path = shutil.which("promtool")
    if not path:
        pytest.skip("promtool not installed (Debian package: prometheus)")
    return path


def test_promtool_check_rules():
    out = subprocess.run([promtool(), "check", "rules", ALERTS], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in out.stdout


def test_promtool_check_config():
    config = os.path.join(DEPLOY, "prometheus", "prometheus.yml")
    out = subprocess.run([promtool(), "check", "config", config], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_check_config_kubernetes():
    config = os.path.join(DEPLOY, "prometheus", "prometheus-kubernetes.yml")
    out = subprocess.run([promtool(), "check", "config", config], capture_output=True, text=True)
    if out.returncode and "kubernetes_sd_configs not found" in out.stdout + out.stderr:
        # Debian's prometheus is built without Kubernetes service discovery.
        doc = yaml.safe_load(open(config, encoding="utf-8"))
        assert doc["rule_files"] == ["alerts.yml"] and doc["scrape_configs"]
        pytest.skip("this promtool has no kubernetes_sd_configs (Debian build)")
    assert out.returncode == 0, out.stdout + out.stderr


def test_dashboard_queries_are_valid_promql(tmp_path):
    """Every dashboard query, with Grafana's variables substituted, compiles as PromQL
    (promtool checks them as recording rules)."""
    exprs = dashboard_exprs(load_dashboard())
    rules = []
    for i, expr in enumerate(exprs):
        if expr.startswith("label_values("):
            m = re.fullmatch(r"label_values\((.*),\s*\w+\)", expr)
            assert m, f"bad label_values query: {expr}"
            expr = m.group(1)
        expr = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m")
        expr = re.sub(r"\$\w+", ".*", expr)
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    out = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


# ---------------------------------------------------------------- Grafana

def test_dashboard_panels_have_datasource_and_targets():
    dash = load_dashboard()
    assert dash.get("title") and dash.get("uid")
    ids, count = set(), 0
    for panel in dashboard_panels(dash):
        if panel.get("type") == "row":
            continue
        count += 1
        title = panel.get("title", "?")
        assert panel.get("id") not in ids, f"duplicate panel id in {title}"
        ids.add(panel.get("id"))
        assert panel.get("datasource"), f"panel {title}: no datasource"
        assert panel.get("gridPos"), f"panel {title}: no gridPos"
        targets = panel.get("targets")
        assert targets, f"panel {title}: no targets"
        for target in targets:
            assert target.get("expr"), f"panel {title}: target without expr"
            assert target.get("refId"), f"panel {title}: target without refId"
    assert count >= 10
    names = {v["name"] for v in dash["templating"]["list"]}
    used = set(re.findall(r"\$(\w+)", json.dumps(dash))) - {"__rate_interval", "__interval"}
    assert used <= names, f"undefined dashboard variables: {used - names}"


def test_dashboard_shows_the_required_views():
    exprs = " ".join(dashboard_exprs(load_dashboard()))
    for needle in ("readmodel_partition_lag_messages", "readmodel_partition_lag_seconds",
                   "readmodel_events_total", "readmodel_events_applied_total",
                   "histogram_quantile(0.99, sum by (le) (rate(readmodel_batch_events_bucket",
                   "histogram_quantile(0.99, sum by (le) (rate(readmodel_commit_seconds_bucket",
                   "readmodel_dead_letters_total", "readmodel_parked_events", "readmodel_gaps_total",
                   "readmodel_store_used_bytes", "readmodel_http_requests_total",
                   "readmodel_http_request_duration_seconds_bucket"):
        assert needle in exprs, f"dashboard has no query with {needle}"


# ---------------------------------------------------------------- systemd

def parse_unit(path):
    """{section: {key: [values...]}}: units repeat keys (SystemCallFilter=, After=) and an
    empty assignment resets the list, which configparser cannot represent."""
    sections, current = {}, None
    for raw in open(path, encoding="utf-8"):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        values = current.setdefault(key.strip(), [])
        if value.strip() == "" and key.strip() != "CapabilityBoundingSet":
            values.clear()
        values.append(value.strip())
    return sections


SERVICES = ["readmodel-projector.service", "readmodel-query-api.service"]


@pytest.mark.parametrize("unit", SERVICES + ["readmodel-reconcile.service"])
def test_unit_is_hardened(unit):
    svc = parse_unit(os.path.join(UNITS, unit))["Service"]

    def one(key):
        assert key in svc, f"{unit}: no {key}="
        return svc[key][-1]

    assert one("User") == "readmodel" and "DynamicUser" not in svc
    assert one("ProtectSystem") == "strict"
    assert "/var/lib/readmodel" in " ".join(svc.get("ReadWritePaths", [])).split()
    # The EROFS trap: a read-only data dir makes LMDB readers drop their reader table.
    assert "/var/lib/readmodel" not in " ".join(svc.get("ReadOnlyPaths", []))
    for key in ("NoNewPrivileges", "PrivateTmp", "MemoryDenyWriteExecute"):
        assert one(key) == "yes", f"{unit}: {key}"
    assert one("ProtectHome") in ("yes", "true")
    assert one("CapabilityBoundingSet") == ""
    assert one("RestrictAddressFamilies")
    assert "@system-service" in svc["SystemCallFilter"]
    assert one("EnvironmentFile") == "-/etc/default/readmodel"
    assert one("ExecStart").split()[1:3] == ["--config", "/etc/readmodel/readmodel.yaml"]


@pytest.mark.parametrize("unit", SERVICES)
def test_daemon_restart_policy(unit):
    svc = parse_unit(os.path.join(UNITS, unit))["Service"]
    assert svc["Restart"][-1] == "on-failure"
    assert "2" in " ".join(svc["RestartPreventExitStatus"]).split(), "bad config (exit 2) must not loop"


def seconds(value):
    total = 0
    for number, unit in re.findall(r"(\d+)\s*(min|ms|s|h)?", value):
        total += int(number) * {"min": 60, "h": 3600, "ms": 0.001, "s": 1, "": 1}[unit]
    return total


def test_projector_stop_timeout_covers_a_batch_commit():
    svc = parse_unit(os.path.join(UNITS, "readmodel-projector.service"))["Service"]
    assert seconds(svc["TimeoutStopSec"][-1]) >= 60
    assert svc.get("KillSignal", ["SIGTERM"])[-1] == "SIGTERM"


def test_query_api_audit_lines_are_not_rate_limited_by_journald():
    """The audit log goes to the journal through stderr; journald's per-unit rate limit
    would drop audit lines silently under load (docs/query-api.md, Audit)."""
    svc = parse_unit(os.path.join(UNITS, "readmodel-query-api.service"))["Service"]
    assert svc.get("LogRateLimitIntervalSec", ["unset"])[-1] == "0"


def test_reconcile_timer_and_sysusers():
    timer = parse_unit(os.path.join(UNITS, "readmodel-reconcile.timer"))["Timer"]
    assert timer["OnCalendar"] and timer["Persistent"][-1] == "true"
    assert seconds(timer["RandomizedDelaySec"][-1]) > 0
    svc = parse_unit(os.path.join(UNITS, "readmodel-reconcile.service"))["Service"]
    assert svc["Type"][-1] == "oneshot"
    assert "1" in svc["SuccessExitStatus"][-1].split(), "drift (exit 1) is a finding, not a unit failure"
    sysusers = open(os.path.join(UNITS, "readmodel.sysusers"), encoding="utf-8").read()
    assert re.search(r"^u\s+readmodel\s", sysusers, re.M)


def fake_unit_dir(tmp_path):
    """Copies the units with ExecStart pointing at stub executables, so that verify
    checks the units' syntax rather than complaining that /usr/bin/projector is absent."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in ("projector", "query-api", "reconcile"):
        stub = bindir / name
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
    units = tmp_path / "units"
    units.mkdir()
    for path in glob.glob(os.path.join(UNITS, "*.service")) + glob.glob(os.path.join(UNITS, "*.timer")):
        text = open(path, encoding="utf-8").read().replace("/usr/bin/", f"{bindir}/")
        (units / os.path.basename(path)).write_text(text)
    return units


def systemd_analyze():
    path = shutil.which("systemd-analyze")
    if not path:
        pytest.skip("systemd-analyze not available")
    return path


def test_systemd_analyze_verify(tmp_path):
    tool = systemd_analyze()
    units = fake_unit_dir(tmp_path)
    paths = sorted(str(p) for p in units.iterdir())
    assert len(paths) == 4
    out = subprocess.run([tool, "verify", "--man=no"] + paths, capture_output=True, text=True,
                         cwd=str(units))
    # verify exits 0 on unknown keys and unparsable values ("..., ignoring"): any line
    # about our units is a failure.
    ours = [line for line in (out.stdout + out.stderr).splitlines()
            if "readmodel" in line or str(units) in line]
    assert out.returncode == 0 and not ours, out.stdout + out.stderr


def test_systemd_analyze_verify_catches_a_typo(tmp_path):
    """The check above can fail: a misspelled key is reported."""
    tool = systemd_analyze()
    units = fake_unit_dir(tmp_path)
    bad = units / "readmodel-projector.service"
    bad.write_text(bad.read_text().replace("NoNewPrivileges=yes", "NoNewPrivilege=yes"))
    out = subprocess.run([tool, "verify", "--man=no", str(bad)], capture_output=True, text=True)
    assert "NoNewPrivilege" in out.stdout + out.stderr


@pytest.mark.parametrize("unit", SERVICES + ["readmodel-reconcile.service"])
def test_systemd_security_exposure(tmp_path, unit):
    tool = systemd_analyze()
    units = fake_unit_dir(tmp_path)
    out = subprocess.run([tool, "security", "--offline=yes", "--no-pager", str(units / unit)],
                         capture_output=True, text=True)
    if out.returncode and "offline" in out.stderr:
        pytest.skip("systemd-analyze security --offline is not supported here")
    m = re.search(r"Overall exposure level for \S+: ([\d.]+)", out.stdout + out.stderr)
    assert m, out.stdout + out.stderr
    assert float(m.group(1)) <= 2.0, f"{unit}: exposure {m.group(1)}\n{out.stdout}"


# ---------------------------------------------------------------- Kubernetes

def k8s_docs():
    docs = []
    for path in sorted(glob.glob(os.path.join(K8S, "*.yaml"))):
        if os.path.basename(path) == "kustomization.yaml":
            continue
        with open(path, encoding="utf-8") as f:
            for doc in yaml.safe_load_all(f):
                if doc is not None:
                    docs.append((os.path.basename(path), doc))
    return docs


def k8s_kind(kind):
    found = [doc for _, doc in k8s_docs() if doc["kind"] == kind]
    assert found, f"no {kind} in deploy/k8s"
    return found


def test_k8s_manifests_parse():
    docs = k8s_docs()
    assert docs
    for path, doc in docs:
        assert doc.get("apiVersion") and doc.get("kind"), f"{path}: not a Kubernetes object"
        assert doc.get("metadata", {}).get("name"), f"{path}: {doc['kind']} without a name"
    kinds = {doc["kind"] for _, doc in docs}
    assert {"StatefulSet", "Service", "ConfigMap", "CronJob", "PodDisruptionBudget"} <= kinds


def test_kustomization_lists_every_manifest():
    kust = yaml.safe_load(open(os.path.join(K8S, "kustomization.yaml"), encoding="utf-8"))
    manifests = {os.path.basename(p) for p in glob.glob(os.path.join(K8S, "*.yaml"))} - {"kustomization.yaml"}
    assert set(kust["resources"]) == manifests
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl not installed")
    out = subprocess.run([kubectl, "kustomize", K8S], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    rendered = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert len(rendered) == len(k8s_docs())


def containers_by_name(pod_spec):
    return {c["name"]: c for c in pod_spec["containers"]}


def named_port(container, port):
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in container["ports"] if p["name"] == port)


def test_statefulset_containers_share_one_volume():
    (sts,) = k8s_kind("StatefulSet")
    pod = sts["spec"]["template"]["spec"]
    containers = containers_by_name(pod)
    assert {"projector", "query-api"} <= set(containers)
    claims = {t["metadata"]["name"]: t for t in sts["spec"]["volumeClaimTemplates"]}
    mounts = {}
    for name in ("projector", "query-api"):
        data = [m for m in containers[name]["volumeMounts"] if m["name"] in claims]
        assert len(data) == 1, f"{name} must mount exactly one claim volume"
        # LMDB readers write lock.mdb: no read-only mount for the query API either.
        assert not data[0].get("readOnly"), f"{name} mounts the store read-only"
        mounts[name] = (data[0]["name"], data[0]["mountPath"])
    assert mounts["projector"] == mounts["query-api"], mounts
    claim = claims[mounts["projector"][0]]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_statefulset_probes_resources_and_security():
    (sts,) = k8s_kind("StatefulSet")
    pod = sts["spec"]["template"]["spec"]
    containers = containers_by_name(pod)
    proj, api = containers["projector"], containers["query-api"]
    assert proj["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert named_port(proj, proj["livenessProbe"]["httpGet"]["port"]) == 9464
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert named_port(api, api["readinessProbe"]["httpGet"]["port"]) == 8080
    assert pod["securityContext"]["runAsNonRoot"] is True
    for c in pod["containers"]:
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(c["resources"][kind]), f"{c['name']}: {kind}"
        assert "command" in c and c["command"][1:3] == ["--config", "/etc/readmodel/readmodel.yaml"]
    assert pod["terminationGracePeriodSeconds"] >= 60


def test_services_and_pdb_select_the_pods():
    (sts,) = k8s_kind("StatefulSet")
    labels = sts["spec"]["template"]["metadata"]["labels"]
    services = {s["metadata"]["name"]: s for s in k8s_kind("Service")}
    headless = services[sts["spec"]["serviceName"]]
    assert headless["spec"]["clusterIP"] == "None"
    assert any(s["spec"].get("clusterIP") != "None" for s in services.values()), "no Service for the API"
    for svc in services.values():
        assert svc["spec"]["selector"].items() <= labels.items(), svc["metadata"]["name"]
    (pdb,) = k8s_kind("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert sts["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_configmap_listens_on_the_container_ports():
    (cm,) = k8s_kind("ConfigMap")
    cfg = yaml.safe_load(cm["data"]["readmodel.yaml"])
    assert cfg["projector"]["metrics_listen"] == "0.0.0.0:9464"
    assert cfg["query_api"]["listen"] == "0.0.0.0:8080"
    assert cfg["data_dir"] == "/var/lib/readmodel"


def test_reconcile_cronjob_uses_the_live_store_on_its_node():
    (sts,) = k8s_kind("StatefulSet")
    (cron,) = k8s_kind("CronJob")
    spec = cron["spec"]
    assert len(spec["schedule"].split()) == 5 and spec["concurrencyPolicy"] == "Forbid"
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    claim = next(v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v)
    template = sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]
    assert claim == f"{template}-{sts['metadata']['name']}-0"
    term = pod["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert pod["securityContext"]["runAsUser"] == sts["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
    for c in pod["containers"]:
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]


# ---------------------------------------------------------------- config and Dockerfile

def query_api_accepts(config_path, tmp_path):
    """Starts the real query-api on config_path (paths redirected into the repo and
    tmp_path) and returns once it serves /healthz; (exit code, log) when it exits."""
    try:
        binary = harness.binary("query-api/query-api")
    except FileNotFoundError as e:
        pytest.skip(str(e))
    port = harness.free_port()
    env = dict(os.environ, RM_DATA_DIR=str(tmp_path), RM_LISTEN=f"127.0.0.1:{port}",
               RM_VIEW=os.path.join(ROOT, "schemas", "views", "customer360.yaml"),
               RM_CATALOG=os.path.join(ROOT, "schemas", "catalog.yaml"),
               # auth stays on: the shipped role policy, checked against the real view, and
               # an identity provider key and audit key made here
               RM_AUTH_POLICY=os.path.join(DEPLOY, "config", "auth-policy.yaml"),
               RM_AUDIT_HMAC_KEY_FILE=str(tmp_path / "audit.key"))
    (tmp_path / "audit.key").write_text("deploy-test-audit-key-0123456789")
    private, public = tmp_path / "idp.key", tmp_path / "idp.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-out", str(private)], check=True, capture_output=True)
    subprocess.run(["openssl", "pkey", "-in", str(private), "-pubout", "-out", str(public)],
                   check=True, capture_output=True)
    env["RM_JWT_KEYS"] = f"idp-2026:ES256:{public}"
    log = tmp_path / "query-api.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen([binary, "--config", str(config_path)], stderr=err, stdout=err, env=env)
        try:
            def up():
                if proc.poll() is not None:
                    return True
                try:
                    return urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).status == 200
                except OSError:
                    return False
            harness.wait_until(up, 30, "query-api to serve /healthz or exit")
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            rc = proc.wait(timeout=30)
    return rc, log.read_text()


def test_production_config_is_accepted(tmp_path):
    rc, log = query_api_accepts(CONFIG, tmp_path)
    assert rc == 0, log


def test_configmap_config_is_accepted(tmp_path):
    (cm,) = k8s_kind("ConfigMap")
    path = tmp_path / "readmodel.yaml"
    path.write_text(cm["data"]["readmodel.yaml"])
    rc, log = query_api_accepts(path, tmp_path)
    assert rc == 0, log


def test_a_bad_config_is_refused(tmp_path):
    """The two checks above can fail: an unknown key exits 2."""
    path = tmp_path / "bad.yaml"
    path.write_text(open(CONFIG, encoding="utf-8").read() + "\nquery_api_typo: 1\n")
    rc, log = query_api_accepts(path, tmp_path)
    assert rc == 2 and "query_api_typo" in log, log


def dockerfile_stages():
    stages, current = [], None
    for line in open(DOCKERFILE, encoding="utf-8").read().replace("\\\n", " ").splitlines():
        line = line.strip()
        if line.upper().startswith("FROM "):
            current = {"from": line.split()[1], "lines": []}
            stages.append(current)
        elif current is not None and line and not line.startswith("#"):
            current["lines"].append(line)
    return stages


def test_dockerfile_is_multistage_and_non_root():
    stages = dockerfile_stages()
    assert len(stages) >= 2
    assert all(s["from"].startswith("debian:bookworm") for s in stages)
    runtime = stages[-1]["lines"]
    user = [line.split()[1] for line in runtime if line.upper().startswith("USER ")]
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert any("meson" in line for line in stages[0]["lines"])
    assert not any("-dev" in line for line in runtime if line.startswith("RUN")), "dev packages in runtime"


def runtime_packages():
    runtime = " ".join(dockerfile_stages()[-1]["lines"])
    m = re.search(r"apt-get install ([^&]*)", runtime)
    assert m, "runtime stage installs no packages"
    return {w for w in m.group(1).split() if not w.startswith("-")}


def test_dockerfile_runtime_has_every_needed_library():
    """Each shared library the built programs link comes from a package the runtime
    stage installs (or from the base image: libc, libgcc)."""
    if not (shutil.which("readelf") and shutil.which("dpkg")):
        pytest.skip("readelf or dpkg not available")
    binaries = []
    for rel in ("projector/projector", "query-api/query-api", "reconcile/reconcile"):
        path = os.path.join(ROOT, "build", rel)
        if os.path.exists(path):
            binaries.append(path)
    if len(binaries) < 2:
        pytest.skip("build/ has no release binaries (tools/test builds them)")
    sonames = set()
    for path in binaries:
        out = subprocess.run(["readelf", "-d", path], capture_output=True, text=True, check=True).stdout
        sonames.update(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out))
    base = {"libc6", "libgcc-s1", "zlib1g", "liblzma5", "libzstd1"}
    packages = runtime_packages()
    missing = {}
    for soname in sorted(sonames):
        out = subprocess.run(["dpkg", "-S", f"*/{soname}"], capture_output=True, text=True)
        owners = {line.split(":")[0] for line in out.stdout.splitlines() if line}
        assert owners, f"no package owns {soname}"
        if not owners & (packages | base):
            missing[soname] = sorted(owners)
    assert not missing, f"runtime stage lacks: {missing}"
