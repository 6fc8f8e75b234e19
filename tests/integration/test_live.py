"""Live sections: customer360's fraud_holds is fetched from the simulator's risk
service at request time, within its 150 ms deadline, behind a circuit breaker. Up, the
section equals what the service serves; slow past the deadline, down or refused, the rest of
the document is still served (200) and the section is null and "unavailable" with a reason
and a header; after N failures the breaker opens and no request reaches the service until
the cool-down, and it closes again once the service has recovered."""
import http.client
import json
import re
import subprocess
import time
import urllib.parse

import pytest

import harness
from test_sources import iso_to_ms

CUSTOMERS = 80
SEED = 41
DEADLINE_MS = 150          # schemas/views/customer360.yaml, live.fraud_holds.deadline_ms
MARGIN_MS = 100            # render, loopback and Python's own time, measured well below
FAILURES = 3               # query_api.live_breaker_failures in this test
COOLDOWN_MS = 1500         # query_api.live_breaker_cooldown_ms in this test
VIEW = "/v1/views/customer360/"


class Conn:
    """One keep-alive connection to a server; (status, lower-case headers, JSON, ms)."""

    def __init__(self, base):
        host, port = base.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=30)

    def call(self, method, path, body=None):
        started = time.monotonic()
        self.conn.request(method, path, body=body)
        resp = self.conn.getresponse()
        raw = resp.read()
        elapsed_ms = (time.monotonic() - started) * 1000
        headers = {k.lower(): v for k, v in resp.getheaders()}
        ctype = headers.get("content-type", "")
        return resp.status, headers, json.loads(raw) if "json" in ctype else raw.decode(), elapsed_ms

    def close(self):
        self.conn.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("live"))
    started = []
    try:
        broker = harness.DevBroker(workdir)
        started.append(broker)
        base, oracle_path = harness.simulate_with_sources(
            workdir, broker.bootstrap, CUSTOMERS, SEED, started)
        config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="",
                                      query_api__live_urls=f"risk={base}",
                                      query_api__live_breaker_failures=FAILURES,
                                      query_api__live_breaker_cooldown_ms=COOLDOWN_MS)
        out = harness.run_projector(config)
        assert out.returncode == 0, out.stderr[-3000:]
        api = harness.QueryApi(workdir, config, harness.free_port())
        started.append(api)
        oracle = {e["key"]: e for e in harness.read_oracle(oracle_path) if not e["erased"]}
        yield {"api": Conn(api.base), "risk": Conn(base), "oracle": oracle, "base": base,
               "workdir": workdir, "config": config}
    finally:
        for proc in reversed(started):
            proc.stop()


def risk_calls(live):
    status, _, stats, _ = live["risk"].call("GET", "/_stats")
    assert status == 200
    return stats["by_service"]["risk"]


def set_risk(live, mode, ms=None):
    body = {"service": "risk", "mode": mode}
    if ms is not None:
        body["ms"] = ms
    status, _, answer, _ = live["risk"].call("POST", "/_faults", json.dumps(body))
    assert status == 200, answer
    assert answer == {"service": "risk", "mode": mode, "ms": ms or 0}, answer


def served_holds(live, key):
    """The risk service's answer, mapped as the view definition says (id -> hold_id)."""
    status, _, body, _ = live["risk"].call("GET", f"/customers/{key}/holds")
    assert status == 200, body
    return [{"hold_id": h["id"], "reason": h["reason"], "placed_at": iso_to_ms(h["placed_at"])}
            for h in body["holds"]]


def get_view(live, key, **params):
    query = "?" + urllib.parse.urlencode(params) if params else ""
    return live["api"].call("GET", VIEW + urllib.parse.quote(key, safe="") + query)


def metric(live, name):
    status, _, text, _ = live["api"].call("GET", "/metrics")
    assert status == 200
    pattern = re.escape(name) + r'\{section="fraud_holds",service="risk"\} (\S+)'
    found = re.search(pattern, text)
    assert found, f"{name} not in /metrics"
    return float(found.group(1))


def assert_unavailable(live, key, reason):
    status, headers, doc, elapsed_ms = get_view(live, key)
    assert status == 200, doc
    assert doc["sections"]["fraud_holds"] is None
    assert doc["freshness"]["fraud_holds"] == {"mode": "unavailable", "reason": reason}
    assert headers["x-readmodel-unavailable"] == "fraud_holds"
    projected = {s: v for s, v in doc["sections"].items() if s != "fraud_holds"}
    assert projected == live["oracle"][key]["sections"], "the rest must still be served"
    return elapsed_ms


def test_live_section_equals_the_service(live):
    oracle = live["oracle"]
    set_risk(live, "ok")
    counts = {0: 0, 1: 0, 2: 0}
    for key, entry in oracle.items():
        before = int(time.time() * 1000)
        status, headers, doc, _ = get_view(live, key)
        after = int(time.time() * 1000)
        assert status == 200, doc
        assert "x-readmodel-unavailable" not in headers
        want = served_holds(live, key)
        assert doc["sections"]["fraud_holds"] == want, key
        fresh = doc["freshness"]["fraud_holds"]
        assert fresh["mode"] == "live" and before <= fresh["fetched_at"] <= after, fresh
        assert doc["freshness"]["profile"]["mode"] == "projected"
        projected = {s: v for s, v in doc["sections"].items() if s != "fraud_holds"}
        assert projected == entry["sections"], key
        counts[len(want)] += 1
    # the seed gives customers with none, one and two holds: the comparison is not vacuous
    assert all(counts.values()), counts


def test_fields_selects_or_omits_the_live_section(live):
    key = next(iter(live["oracle"]))
    calls = risk_calls(live)
    status, _, doc, _ = get_view(live, key, fields="profile,orders")
    assert status == 200 and list(doc["sections"]) == ["profile", "orders"]
    assert "fraud_holds" not in doc["freshness"]
    assert risk_calls(live) == calls, "a read without the live section must not call the service"
    status, _, doc, _ = get_view(live, key, fields="fraud_holds")
    assert status == 200 and list(doc["sections"]) == ["fraud_holds"]
    assert doc["sections"]["fraud_holds"] == served_holds(live, key)
    assert doc["freshness"]["fraud_holds"]["mode"] == "live"
    # an unknown key is a 404 without asking the service
    calls = risk_calls(live)
    status, _, body, _ = get_view(live, "C41-999999")
    assert status == 404, body
    assert risk_calls(live) == calls


def test_slow_down_breaker_and_recovery(live):
    keys = list(live["oracle"])
    set_risk(live, "ok")
    assert get_view(live, keys[0])[2]["freshness"]["fraud_holds"]["mode"] == "live"
    assert metric(live, "readmodel_live_breaker_state") == 0
    opened_before = metric(live, "readmodel_live_breaker_opened_total")

    # Slow past the deadline: served within deadline + margin, the section unavailable.
    calls = risk_calls(live)
    set_risk(live, "slow", 400)
    slow_ms = [assert_unavailable(live, keys[i], "timeout") for i in range(FAILURES - 1)]
    assert all(DEADLINE_MS - 5 <= ms <= DEADLINE_MS + MARGIN_MS for ms in slow_ms), slow_ms
    print(f"slow service, answer times (ms): {[round(ms, 1) for ms in slow_ms]}")
    # the service counts a request when it answers: let the abandoned ones finish
    harness.wait_until(lambda: risk_calls(live) == calls + FAILURES - 1, 10,
                       "the slow requests to be counted")
    # FAILURES - 1 failures, then a success: the count starts again, the breaker stays closed
    set_risk(live, "ok")
    assert get_view(live, keys[1])[2]["freshness"]["fraud_holds"]["mode"] == "live"
    assert metric(live, "readmodel_live_breaker_state") == 0

    # Down: 503s are unavailable "http 503"; the FAILURES-th opens the breaker.
    set_risk(live, "down")
    for i in range(FAILURES):
        assert_unavailable(live, keys[i], "http 503")
    assert metric(live, "readmodel_live_breaker_state") == 1
    assert metric(live, "readmodel_live_breaker_opened_total") == opened_before + 1
    opened_at = time.monotonic()

    # Open: answered at once, and no request reaches the risk service.
    calls = risk_calls(live)
    open_ms = [assert_unavailable(live, keys[i], "circuit open") for i in range(10)]
    assert risk_calls(live) == calls, "requests reached the service through an open breaker"
    assert max(open_ms) < 50, open_ms
    print(f"breaker open, answer times (ms): max {max(open_ms):.1f}")

    # After the cool-down one trial goes through; still down, it opens the breaker again.
    def trial_made():
        get_view(live, keys[0])
        return risk_calls(live) > calls
    harness.wait_until(trial_made, COOLDOWN_MS / 1000 + 10, "the half-open trial", interval=0.1)
    assert time.monotonic() - opened_at >= COOLDOWN_MS / 1000 - 0.05
    assert risk_calls(live) == calls + 1, "exactly one trial request"
    assert metric(live, "readmodel_live_breaker_state") == 1
    assert metric(live, "readmodel_live_breaker_opened_total") == opened_before + 2
    reopened_at = time.monotonic()
    assert_unavailable(live, keys[1], "circuit open")
    assert risk_calls(live) == calls + 1

    # Recovered: the next trial after the cool-down succeeds and closes the breaker.
    set_risk(live, "ok")

    def live_again():
        doc = get_view(live, keys[2])[2]
        return doc["freshness"]["fraud_holds"]["mode"] == "live" and doc
    doc = harness.wait_until(live_again, COOLDOWN_MS / 1000 + 10, "the breaker to close",
                             interval=0.1)
    assert time.monotonic() - reopened_at >= COOLDOWN_MS / 1000 - 0.05
    assert doc["sections"]["fraud_holds"] == served_holds(live, keys[2])
    assert metric(live, "readmodel_live_breaker_state") == 0
    for key in keys[:5]:
        status, headers, doc, _ = get_view(live, key)
        assert status == 200 and doc["freshness"]["fraud_holds"]["mode"] == "live"
        assert "x-readmodel-unavailable" not in headers
    status, _, text, _ = live["api"].call("GET", "/metrics")
    for outcome in ("ok", "timeout", "http_error", "circuit_open"):
        found = re.search(r'readmodel_live_fetches_total\{section="fraud_holds",service="risk",'
                          r'outcome="' + outcome + r'"\} (\d+)', text)
        assert found and int(found.group(1)) > 0, outcome
    assert 'readmodel_live_fetch_duration_seconds_bucket{section="fraud_holds"' in text


def test_held_connection_times_out_within_the_deadline(live):
    """A service that never answers (the connection is held) costs the deadline, no more."""
    keys = list(live["oracle"])
    set_risk(live, "timeout")
    try:
        elapsed = [assert_unavailable(live, keys[i], "timeout") for i in range(FAILURES - 1)]
        assert all(DEADLINE_MS - 5 <= ms <= DEADLINE_MS + MARGIN_MS for ms in elapsed), elapsed
        print(f"held connection, answer times (ms): {[round(ms, 1) for ms in elapsed]}")
    finally:
        set_risk(live, "ok")
    assert get_view(live, keys[0])[2]["freshness"]["fraud_holds"]["mode"] == "live"


def test_refused_and_not_configured(live, tmp_path):
    """A service nobody listens on is "refused"; a service without a URL "not configured"."""
    key = next(iter(live["oracle"]))
    closed = f"http://127.0.0.1:{harness.free_port()}"
    for urls, reason in ((f"risk={closed}", "refused"), ("", "not configured")):
        api = harness.Process("query-api-2", [
            harness.binary("query-api/query-api"), "--config", live["config"],
            "--set", f"query_api.listen=127.0.0.1:{(port := harness.free_port())}",
            "--set", f"query_api.live_urls={urls}"], str(tmp_path))
        try:
            base = f"http://127.0.0.1:{port}"
            conn = Conn(base)
            harness.wait_until(lambda: _healthy(base), 30, "query-api /healthz")
            status, headers, doc, _ = conn.call("GET", VIEW + key)
            assert status == 200, doc
            assert doc["sections"]["fraud_holds"] is None
            assert doc["freshness"]["fraud_holds"] == {"mode": "unavailable", "reason": reason}
            assert headers["x-readmodel-unavailable"] == "fraud_holds"
            conn.close()
        finally:
            api.stop()
        if not urls:
            assert "live section has no service URL" in api.log_text()


def test_not_configured_counts_served_documents_only(live, tmp_path):
    """Without a service URL no call is made, so the query API does not look the key up
    before the render (http_live.h note 4); not_configured is still counted for documents
    served (200 and 304), never for an unknown key's 404."""
    key = next(iter(live["oracle"]))
    port = harness.free_port()
    api = harness.Process("query-api-3", [
        harness.binary("query-api/query-api"), "--config", live["config"],
        "--set", f"query_api.listen=127.0.0.1:{port}", "--set", "query_api.live_urls="],
        str(tmp_path))
    try:
        base = f"http://127.0.0.1:{port}"
        harness.wait_until(lambda: _healthy(base), 30, "query-api /healthz")
        conn = Conn(base)
        status, headers, doc, _ = conn.call("GET", VIEW + key)
        assert status == 200, doc
        assert doc["freshness"]["fraud_holds"] == {"mode": "unavailable",
                                                   "reason": "not configured"}
        conn.conn.request("GET", VIEW + key, headers={"If-None-Match": headers["etag"]})
        resp = conn.conn.getresponse()
        resp.read()
        assert resp.status == 304
        assert resp.getheader("X-Readmodel-Unavailable") == "fraud_holds"
        status, _, doc, _ = conn.call("GET", VIEW + "C-no-such-customer")
        assert status == 404, doc
        conn.close()
        samples = harness.scrape_metrics(base + "/metrics")
        counts = {o: harness.metric_total(samples, "readmodel_live_fetches_total", outcome=o)
                  for o in ("not_configured", "ok", "error")}
        assert counts == {"not_configured": 2, "ok": 0, "error": 0}, counts
    finally:
        api.stop()


def _healthy(base):
    try:
        conn = Conn(base)
        ok = conn.call("GET", "/healthz")[0] == 200
        conn.close()
        return ok
    except OSError:
        return False


def test_bad_live_urls_is_a_usage_error(live):
    out = subprocess.run([harness.binary("query-api/query-api"), "--config", live["config"],
                          "--set", "query_api.live_urls=risk"], cwd=harness.ROOT,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2, out.stderr
    assert "query_api.live_urls" in out.stderr
