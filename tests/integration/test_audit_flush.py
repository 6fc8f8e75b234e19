"""The batched audit log (query-api/audit.h, docs/query-api.md): one line per request
served, none lost at SIGTERM even when the flush window has not passed, and lines reach
the file within query_api.audit.flush_ms while the server runs."""
import http.client
import json
import os

import pytest

import harness

VIEW = "/v1/views/customer360/"
POLICY = "roles: {reader: {pii: true, views: {customer360: {sections: ['*']}}}}\n"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("auditflush"))
    broker = harness.DevBroker(workdir)
    try:
        _, oracle = harness.simulate(broker.bootstrap, workdir, 40, 31)
        with open(os.path.join(workdir, "policy.yaml"), "w") as f:
            f.write(POLICY)
        base = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="")
        out = harness.run_projector(base)
        assert out.returncode == 0, out.stderr[-3000:]
        keys = [e["key"] for e in harness.read_oracle(oracle) if not e["erased"]]
        yield {"workdir": workdir, "bootstrap": broker.bootstrap, "keys": keys}
    finally:
        broker.stop()


def secured_api(store, name, flush_ms):
    workdir = store["workdir"]
    audit = os.path.join(workdir, f"{name}.jsonl")
    config = harness.write_config(
        workdir, store["bootstrap"], name=f"{name}.yaml", projector__metrics_listen="",
        **{"query_api__auth.enabled": "on",
           "query_api__auth.policy": os.path.join(workdir, "policy.yaml"),
           "query_api__auth.hs256_secret": "audit-flush-test-secret-0123456789",
           "query_api__auth.issuer": "https://idp.test", "query_api__auth.audience": "rm",
           "query_api__audit.file": audit,
           "query_api__audit.hmac_key": "audit-flush-test-key-01234",
           "query_api__audit.flush_ms": flush_ms})
    token = harness.mint_token(config, "flush-check", "reader")
    return harness.QueryApi(workdir, config, harness.free_port()), audit, token


def read_served(api, keys, token, count, prefix):
    """count GETs over one keep-alive connection; returns {request id: status}."""
    host, port = api.base.rsplit("/", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    sent = {}
    try:
        for i in range(count):
            rid = f"{prefix}-{i}"
            conn.request("GET", VIEW + keys[i % len(keys)],
                         headers={"Authorization": "Bearer " + token, "X-Request-Id": rid})
            resp = conn.getresponse()
            resp.read()
            sent[rid] = resp.status
    finally:
        conn.close()
    return sent


def audit_lines(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f]  # a torn line would fail to parse


def test_sigterm_writes_every_pending_line(store):
    # A 1 s window: the lines are still in the buffer when SIGTERM arrives.
    api, audit, token = secured_api(store, "sigterm", 1000)
    try:
        sent = read_served(api, store["keys"], token, 400, "term")
    finally:
        assert api.stop() == 0, api.log_text()[-2000:]
    assert set(sent.values()) == {200}
    got = [ln for ln in audit_lines(audit) if ln["request_id"].startswith("term-")]
    assert len(got) == len(sent), "one audit line per request served"
    assert {ln["request_id"]: ln["status"] for ln in got} == sent


def test_lines_arrive_within_the_flush_window(store):
    api, audit, token = secured_api(store, "window", 20)
    try:
        sent = read_served(api, store["keys"], token, 50, "win")
        # Written by the flusher, not by a shutdown: polled while the server runs.
        got = harness.wait_until(
            lambda: (lambda lines: lines if len(lines) >= len(sent) else None)(
                [ln for ln in audit_lines(audit) if ln["request_id"].startswith("win-")]),
            5, "audit lines within the flush window")
        assert sorted(ln["request_id"] for ln in got) == sorted(sent)
    finally:
        api.stop()
