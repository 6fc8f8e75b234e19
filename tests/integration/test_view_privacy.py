"""What a role can learn from a view answer besides the fields it may read, and caching on a
document with a live section (docs/query-api.md, Security and Caching): live sections are
shaped and masked like stored ones, page cursors are opaque and bound to their view, key and
section, degraded marks and freshness follow the sections a role may read, no answer names
the store's path, every view answer says how caches may keep it, and the entity tag of a
document with a live section stays put while nothing about the customer changes."""
import base64
import hashlib
import http.client
import json
import os
import re
import subprocess

import pytest

import harness
from test_shaping import customer_registered

VIEW = harness.VIEW
view_path = harness.view_path
request = harness.http_request
PROBLEM = "https://readmodel.dev/problems/"
CUSTOMERS = 80
SEED = 43
API_KEY = "privacy-key-0123456789abcdef"

# agent may read two of the live section's three fields, one of them PII (masked for it)
POLICY = f"""
roles:
  admin:
    pii: true
    views:
      customer360: {{sections: ["*"]}}
  agent:
    views:
      customer360:
        sections: [profile, orders, counters, fraud_holds]
        fields: {{fraud_holds: [hold_id, reason]}}
  analyst:
    views:
      customer360: {{sections: [orders, counters]}}
api_keys:
  - name: svc
    sha256: {hashlib.sha256(API_KEY.encode()).hexdigest()}
    roles: [analyst]
"""






def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("privacy"))
    started = []
    try:
        broker = harness.DevBroker(workdir)
        started.append(broker)
        risk, oracle_path = harness.simulate_with_sources(
            workdir, broker.bootstrap, CUSTOMERS, SEED, started)
        oracle = {e["key"]: e for e in harness.read_oracle(oracle_path) if not e["erased"]}
        # A dead letter on `loyalty` (which feeds the loyalty section only) marks a customer.
        marked = sorted(oracle)[0]
        subprocess.run(["kcat", "-P", "-b", broker.bootstrap, "-t", "loyalty", "-k", marked],
                       input=b"not avro at all", check=True, timeout=60)
        # The test view: customer360 with the live section's `reason` declared PII.
        with open(os.path.join(harness.ROOT, "schemas/views/customer360.yaml")) as f:
            text = f.read()
        live_reason = "      hold_id: string\n      reason: string\n"
        assert text.count(live_reason) == 1
        text = text.replace(live_reason, "      hold_id: string\n"
                            "      reason: {type: string, pii: true, mask: redact}\n")
        # a generous deadline: a fetch that times out on a loaded machine would change the
        # document (unavailable), and the caching test would see a change that is none
        assert text.count("deadline_ms: 150\n") == 1
        text = text.replace("deadline_ms: 150\n", "deadline_ms: 5000\n")
        view = os.path.join(workdir, "customer360.yaml")
        with open(view, "w") as f:
            f.write(text)
        policy = os.path.join(workdir, "policy.yaml")
        with open(policy, "w") as f:
            f.write(POLICY)
        secret = os.path.join(workdir, "hs.secret")
        with open(secret, "w") as f:
            f.write(os.urandom(32).hex() + "\n")
        config = harness.write_config(
            workdir, broker.bootstrap, projector__metrics_listen="",
            query_api__live_urls=f"risk={risk}", **{
                "query_api__auth.enabled": "on", "query_api__auth.policy": policy,
                "query_api__auth.hs256_secret_file": secret, "query_api__auth.hs256_kid": "hs1",
                "query_api__auth.issuer": "https://idp.test",
                "query_api__auth.audience": "readmodel-test"})
        with open(config) as f:
            lines = [f"view: {view}" if line.startswith("view: ") else line
                     for line in f.read().splitlines()]
        with open(config, "w") as f:
            f.write("\n".join(lines) + "\n")
        out = harness.run_projector(config)
        assert out.returncode == 0, out.stderr[-3000:]
        api = harness.QueryApi(workdir, config, harness.free_port())
        started.append(api)
        tokens = {role: {"Authorization": "Bearer " + harness.mint_token(config, "u-" + role, role)}
                  for role in ("admin", "agent", "analyst")}
        yield {"api": api.base, "risk": risk, "oracle": oracle, "tokens": tokens,
               "config": config, "workdir": workdir, "broker": broker, "marked": marked}
    finally:
        for proc in reversed(started):
            proc.stop()


def get_doc(env, role, key, **params):
    status, headers, body = request(env["api"], view_path(key, **params), env["tokens"][role])
    assert status == 200, (status, body[:300])
    return json.loads(body)


def with_holds(env):
    """Customers whose live section has at least one hold (admin's view)."""
    for key in sorted(env["oracle"]):
        doc = get_doc(env, "admin", key, fields="fraud_holds")
        if doc["sections"]["fraud_holds"]:
            return key, doc
    pytest.fail("the risk service places no hold on any customer of this seed")


def test_live_section_is_shaped_and_masked(env):
    key, full = with_holds(env)
    assert full["freshness"]["fraud_holds"]["mode"] == "live"
    holds = full["sections"]["fraud_holds"]
    assert all(set(h) == {"hold_id", "reason", "placed_at"} for h in holds), holds
    assert any(h["reason"] not in (None, "***") for h in holds), holds
    agent = get_doc(env, "agent", key)["sections"]["fraud_holds"]
    # the field allowlist leaves placed_at out, and reason (pii, no entitlement) is masked
    assert agent == [{"hold_id": h["hold_id"], "reason": None if h["reason"] is None else "***"}
                     for h in holds], agent


def test_view_answers_say_how_caches_may_keep_them(env):
    key = sorted(env["oracle"])[1]
    admin = env["tokens"]["admin"]
    status, headers, _ = request(env["api"], view_path(key, fields="profile"), admin)
    assert status == 200
    checks = [("200", headers)]
    status, hdrs, _ = request(env["api"], view_path(key, fields="profile"),
                              {**admin, "If-None-Match": headers["etag"]})
    assert status == 304
    checks.append(("304", hdrs))
    for what, path, hdr, want in (
            ("404", view_path("no-such-customer"), admin, 404),
            ("401", view_path(key), {}, 401),
            ("403", view_path(key, fields="profile"), env["tokens"]["analyst"], 403),
            ("400", view_path(key, orders_limit="x"), admin, 400)):
        status, hdrs, _ = request(env["api"], path, hdr)
        assert status == want, what
        checks.append((what, hdrs))
    for what, hdrs in checks:
        assert hdrs.get("cache-control") == ("private, no-cache" if what in ("200", "304")
                                             else "no-store"), (what, hdrs)
        vary = {v.strip().lower() for v in hdrs.get("vary", "").split(",")}
        assert {"authorization", "x-api-key"} <= vary, (what, hdrs)


def orders_walk(env, key):
    return get_doc(env, "admin", key, fields="orders", orders_limit=1)


def test_cursors_are_opaque_and_bound(env):
    keys = [k for k, e in sorted(env["oracle"].items()) if len(e["sections"]["orders"]) >= 3]
    assert len(keys) >= 2
    key, other = keys[0], keys[1]
    doc = orders_walk(env, key)
    cursor = doc["orders_next_cursor"]
    order_id = doc["sections"]["orders"][0]["order_id"].encode()
    raw = b64url_decode(cursor)
    assert order_id not in raw, "the cursor shows the item id"
    sort_ms = doc["sections"]["orders"][0]["created_at"]
    assert sort_ms.to_bytes(8, "big") not in raw, "the cursor shows the sort key"
    # the next page follows from it
    nxt = get_doc(env, "admin", key, fields="orders", orders_limit=1, orders_cursor=cursor)
    assert nxt["sections"]["orders"][0]["order_id"] != order_id.decode()
    admin = env["tokens"]["admin"]

    def refused(path):
        status, hdrs, body = request(env["api"], path, admin)
        assert status == 400, (path, status, body[:200])
        assert hdrs["content-type"] == "application/problem+json"
        assert json.loads(body)["type"] == PROBLEM + "bad-cursor"
    # another key, another section, a changed byte, a hand-made position: all refused
    refused(view_path(other, orders_cursor=cursor))
    refused(view_path(key, returns_cursor=cursor))
    flipped = bytearray(raw)
    flipped[len(flipped) // 2] ^= 1
    refused(view_path(key, orders_cursor=base64.urlsafe_b64encode(bytes(flipped))
                      .rstrip(b"=").decode()))
    handmade = base64.urlsafe_b64encode(b"\x01" + (sort_ms).to_bytes(8, "big") + order_id)
    refused(view_path(key, orders_cursor=handmade.rstrip(b"=").decode()))


def test_marks_and_freshness_follow_readable_sections(env):
    key = env["marked"]
    admin = get_doc(env, "admin", key)
    assert admin["degraded_count"] == 1 and admin["degraded"][0]["topic"] == "loyalty", admin
    for role, sections in (("agent", {"profile", "orders", "counters", "fraud_holds"}),
                           ("analyst", {"orders", "counters"})):
        doc = get_doc(env, role, key)
        assert set(doc["sections"]) == sections
        assert set(doc["freshness"]) == sections, (role, doc["freshness"])
        assert "degraded" not in doc and "degraded_count" not in doc, (role, doc.get("degraded"))


def test_no_answer_names_the_store_path(env, tmp_path):
    data_dir = os.path.join(env["workdir"], "data")
    config = harness.write_config(str(tmp_path), env["broker"].bootstrap, name="empty.yaml")
    api = harness.QueryApi(str(tmp_path), config, harness.free_port())
    try:
        for path in ("/v1/status", "/readyz", "/metrics", view_path("C1")):
            status, _, body = request(api.base, path)
            assert status in (200, 503), (path, status)
            assert str(tmp_path).encode() not in body, (path, body)
            assert b"/data" not in body, (path, body)
    finally:
        api.stop()
    for path in ("/v1/status", "/readyz", "/metrics"):
        status, _, body = request(env["api"], path)
        assert status == 200 and data_dir.encode() not in body, path


def set_risk(env, mode):
    host, port = env["risk"].removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("POST", "/_faults", body=json.dumps({"service": "risk", "mode": mode}))
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()
        resp.read()
    finally:
        conn.close()


def test_if_none_match_on_a_document_with_a_live_section(env):
    key, _ = with_holds(env)
    admin = env["tokens"]["admin"]
    status, headers, body = request(env["api"], view_path(key), admin)
    assert status == 200
    doc = json.loads(body)
    assert doc["freshness"]["fraud_holds"]["mode"] == "live"
    tag = headers["etag"]
    assert re.fullmatch(r'W/"[0-9a-f]{16}"', tag), tag
    for _ in range(3):  # nothing changed: the live section is fetched again, same tag
        status, hdrs, body = request(env["api"], view_path(key), {**admin, "If-None-Match": tag})
        assert status == 304, (status, body[:300])
        assert hdrs["etag"] == tag and body == b""
    # the live section changes (its service goes down): a new document
    set_risk(env, "down")
    try:
        status, hdrs, body = request(env["api"], view_path(key), {**admin, "If-None-Match": tag})
        assert status == 200, status
        assert json.loads(body)["sections"]["fraud_holds"] is None
        assert hdrs["etag"] != tag
    finally:
        set_risk(env, "ok")
    status, hdrs, _ = request(env["api"], view_path(key), {**admin, "If-None-Match": tag})
    assert status == 304, "the service is back with the same holds: the same document"
    # a projected change (a new profile version for this customer): a new document
    from kafka import KafkaProducer
    producer = KafkaProducer(bootstrap_servers=env["broker"].bootstrap)
    try:
        producer.send("customers", key=key.encode(),
                      value=customer_registered(key, "Changed Name", 1000, key + "-v1000")).get(60)
    finally:
        producer.close()
    out = harness.run_projector(env["config"])
    assert out.returncode == 0, out.stderr[-3000:]

    def changed():
        status, hdrs, body = request(env["api"], view_path(key), {**admin, "If-None-Match": tag})
        return (status, hdrs, body) if status == 200 else None
    status, hdrs, body = harness.wait_until(changed, 30, "the new profile in the document")
    assert json.loads(body)["sections"]["profile"]["name"] == "Changed Name"
    assert hdrs["etag"] != tag
