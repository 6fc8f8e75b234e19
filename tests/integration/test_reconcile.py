"""reconcile diff-source: against the simulator's source services with drift of
every kind injected, the report names exactly the injected keys, sections, items and fields
(none missed, no false positive), tells "not yet projected" apart from drift, never calls an
unreadable source drift, and --repair makes a second run clean through the log."""
import os
import subprocess
import time

import pytest

import harness

pytestmark = pytest.mark.brokers("dev", "kafka")
from test_sources import read_lines

CUSTOMERS = 300
SEED = 31
SERVICES = ["customers", "orders", "payments", "shipments", "loyalty", "returns"]
# Placing the stream an hour in the past makes every event older than the freshness
# budget below, while --drift-pending changes are stamped "now": so the pending ones, and
# only they, are "not yet projected".
HOUR_MS = 3600 * 1000
BUDGET_MS = 10 * 60 * 1000


def source_urls(base):
    return ",".join(f"{s}={base}" for s in SERVICES)


def reconcile(config, *args, timeout=300):
    return subprocess.run([harness.binary("reconcile/reconcile"), "--config", config, *args],
                          cwd=harness.ROOT, capture_output=True, text=True, timeout=timeout)


def findings(path):
    lines = read_lines(path)
    assert "summary" in lines[-1], "the report does not end with its summary line"
    return lines[:-1], lines[-1]["summary"]


def where(entry):
    return (entry["key"], entry["section"], entry["item"], entry["field"])


def repairs_on_topic(bootstrap):
    out = subprocess.run(["kcat", "-b", bootstrap, "-C", "-t", "customer360.repairs", "-o",
                          "beginning", "-e", "-q", "-f", "%k|%h\n"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [line for line in out.stdout.splitlines() if line]


def pipeline(broker, workdir, processes, extra, **settings):
    """simulate (stream + sources) -> projector caught up; returns (config, manifest path)."""
    manifest = os.path.join(workdir, "drift.jsonl")
    oracle = os.path.join(workdir, "oracle.jsonl")
    start_ms = int(time.time() * 1000) - HOUR_MS
    ready = os.path.join(workdir, "sources.url")
    proc = harness.Process("sources", [
        harness.binary("tools/simulate/simulate"), "--bootstrap", broker.bootstrap,
        "--customers", str(CUSTOMERS), "--seed", str(SEED), "--start-ms", str(start_ms),
        "--oracle", oracle, "--drift-manifest", manifest, "--serve-sources", "127.0.0.1:0",
        "--sources-ready-file", ready, "-q", *extra], workdir)
    processes.append(proc)

    def url():
        assert proc.alive(), proc.log_text()[-2000:]
        return open(ready).read().strip() if os.path.exists(ready) else None
    base = harness.wait_until(url, 120, "the stream and the source services")
    config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="",
                                  reconcile__source_urls=source_urls(base),
                                  reconcile__freshness_budget_ms=BUDGET_MS,
                                  reconcile__rate_limit=0, **settings)
    out = harness.run_projector(config)
    assert out.returncode == 0, out.stderr[-2000:]
    return config, manifest, oracle


def test_drift_of_every_kind_is_found_exactly_then_repaired(broker, workdir, processes):
    config, manifest, oracle = pipeline(
        broker, workdir, processes,
        ["--drift-unpublished", "8", "--drift-unapplied", "5", "--drift-diverge", "5",
         "--drift-pending", "4"])
    # The store holds exactly the oracle (the unapplied events were dead-lettered).
    docs = harness.inspect_docs(config, [c["key"] for c in harness.read_oracle(oracle)
                                         if not c["erased"]])
    for c in harness.read_oracle(oracle):
        if not c["erased"]:
            assert docs[c["key"]]["sections"] == c["sections"], c["key"]

    injected = read_lines(manifest)
    want_drift = {where(e) for e in injected if e["kind"] != "pending"}
    want_pending = {where(e) for e in injected if e["kind"] == "pending"}
    assert len(want_drift) >= 18 and want_pending

    report = os.path.join(workdir, "report.jsonl")
    textfile = os.path.join(workdir, "reconcile.prom")
    out = reconcile(config, "diff-source", "--report", report, "--metrics-textfile", textfile,
                    "--run-id", "run-1")
    assert out.returncode == 1, f"exit {out.returncode}: {out.stderr[-2000:]}"
    found, summary = findings(report)
    got_drift = {where(f) for f in found if f["class"] == "drift"}
    got_pending = {where(f) for f in found if f["class"] == "pending"}
    assert not [f for f in found if f["class"] == "unknown"], "a healthy source read as unknown"
    assert got_drift - want_drift == set(), f"false positives: {sorted(got_drift - want_drift)}"
    assert want_drift - got_drift == set(), f"missed: {sorted(want_drift - got_drift)}"
    assert got_pending == want_pending
    # values: what the store holds and what the source says, as the manifest has them
    by_where = {where(f): f for f in found}
    for e in injected:
        f = by_where[where(e)]
        if e["field"] is not None:
            assert (f["store"], f["source"]) == (e["store"], e["source"]), (e, f)
    assert summary["keys"] == CUSTOMERS - sum(1 for c in harness.read_oracle(oracle)
                                              if c["erased"])
    assert "DRIFT FOUND" in out.stdout and "payment_issues" in out.stdout
    prom = open(textfile).read()
    # drift_keys counts, per section, the keys with drift in it
    key_sections = len({(e["key"], e["section"]) for e in injected if e["kind"] != "pending"})
    drift_keys = sum(int(float(line.rsplit(" ", 1)[1])) for line in prom.splitlines()
                     if line.startswith("readmodel_reconcile_drift_keys{"))
    assert drift_keys == key_sections
    assert f'readmodel_reconcile_keys_checked{{view="customer360",mode="diff-source"}} ' \
           f'{summary["keys"]}' in prom

    # --repair: one correction per drifting item, applied by the projector like any event
    out = reconcile(config, "diff-source", "--repair", "--run-id", "run-2",
                    "--report", report)
    assert out.returncode == 1, out.stderr[-2000:]
    _, summary = findings(report)
    items = {(k, s, i) for (k, s, i, _) in want_drift}
    assert summary["repairs"] == len(items)
    on_topic = repairs_on_topic(broker.bootstrap)
    assert len(on_topic) == len(items)
    assert {line.split("|")[0] for line in on_topic} == {k for (k, _, _) in items}
    out = harness.run_projector(config)
    assert out.returncode == 0, out.stderr[-2000:]

    out = reconcile(config, "diff-source", "--report", report, "--run-id", "run-3")
    assert out.returncode == 0, f"drift left after repair: {out.stdout}\n{out.stderr[-2000:]}"
    found, summary = findings(report)
    assert summary["drift"] == 0
    assert {where(f) for f in found if f["class"] == "pending"} == want_pending
    # a redelivered repair changes nothing: replaying the topic's events is idempotent
    assert len(repairs_on_topic(broker.bootstrap)) == len(items)

    # the query API shows the last run's summary (the dashboard's "last reconciliation")
    api_config = harness.write_config(workdir, broker.bootstrap, name="api.yaml",
                                      query_api__reconcile_report=report)
    api = harness.QueryApi(workdir, api_config, harness.free_port())
    processes.append(api)
    status = harness.wait_until(
        lambda: (lambda s: s if s.get("reconcile") else None)(api.get("/v1/status")[2]), 30,
        "the reconcile summary in /v1/status")
    assert status["reconcile"]["run_id"] == "run-3" and status["reconcile"]["drift"] == 0
    assert status["reconcile"]["keys"] == summary["keys"]


def test_unreadable_sources_are_unknown_never_drift(broker, workdir, processes):
    faults = os.path.join(workdir, "faults.jsonl")
    config, _, oracle = pipeline(
        broker, workdir, processes,
        ["--source-faults", "flaky=40,down=loyalty,timeout=3", "--fault-manifest", faults],
        reconcile__timeout_ms=800, reconcile__retries=2)
    live = [c["key"] for c in harness.read_oracle(oracle) if not c["erased"]]
    timed_out = {(f["key"], f["service"]) for f in read_lines(faults) if f["fault"] == "timeout"}
    report = os.path.join(workdir, "report.jsonl")
    out = reconcile(config, "diff-source", "--report", report, "--set",
                    "reconcile.concurrency=32")
    # no drift was injected: flaky answers were retried, the rest is unknown
    assert out.returncode == 0, f"exit {out.returncode}: {out.stdout}\n{out.stderr[-2000:]}"
    found, summary = findings(report)
    assert summary["drift"] == 0 and not [f for f in found if f["class"] != "unknown"]
    service_of = {"profile": "customers", "orders": "orders", "payment_issues": "payments",
                  "delivery_exceptions": "shipments", "loyalty": "loyalty", "returns": "returns"}
    unknown = {(f["key"], service_of[f["section"]]) for f in found}
    want = {(k, "loyalty") for k in live} | {(k, s) for (k, s) in timed_out if k in live}
    assert unknown == want
    assert all(f["reason"].startswith("http 503") for f in found if f["section"] == "loyalty")
    assert all("timeout" in f["reason"] for f in found if f["section"] != "loyalty")

    # every source down: nothing could be checked, which is not "no drift"
    out = reconcile(config, "diff-source", "--set",
                    "reconcile.source_urls=" + source_urls("http://127.0.0.1:9"),
                    "--set", "reconcile.retries=0")
    assert out.returncode == 2, out.stdout


def test_rate_limit_and_key_selection(broker, workdir, processes):
    config, _, oracle = pipeline(broker, workdir, processes, [])
    live = sorted(c["key"] for c in harness.read_oracle(oracle) if not c["erased"])
    keys = os.path.join(workdir, "keys.txt")
    with open(keys, "w") as f:
        f.write("\n".join(live[:20] + ["C999-000001"]) + "\n")
    report = os.path.join(workdir, "report.jsonl")
    started = time.monotonic()
    out = reconcile(config, "diff-source", "--keys", keys, "--report", report,
                    "--set", "reconcile.rate_limit=50")
    elapsed = time.monotonic() - started
    assert out.returncode == 0, out.stderr[-2000:]
    found, summary = findings(report)
    assert summary["keys"] == 21 and not found  # unknown everywhere: nothing to compare
    # 21 keys x 6 sections >= 126 requests at 50/s (burst 5): cannot be done in < 2.4 s
    assert elapsed >= (126 - 5) / 50, f"rate limit not honoured: {elapsed:.2f} s"
    out = reconcile(config, "diff-source", "--sample", "25", "--seed", "7", "--report", report)
    assert out.returncode == 0 and findings(report)[1]["keys"] == 25
    out = reconcile(config, "diff-source", "--since", "2999-01-01T00:00:00Z", "--report", report)
    assert out.returncode == 0 and findings(report)[1]["keys"] == 0
    out = reconcile(config, "diff-source", "--sample", "0")
    assert out.returncode == 2 and "--sample" in out.stderr
    out = reconcile(config, "diff-source", "--set", "reconcile.source_urls=customers=http://x")
    assert out.returncode == 2 and "no URL for service 'orders'" in out.stderr
