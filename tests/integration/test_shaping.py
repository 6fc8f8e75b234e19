"""The view endpoint's shaping and promises (docs/query-api.md): ?fields, list pages with
opaque cursors, ETag / If-None-Match -> 304, the staleness budget (met and not met) and
consistency tokens (read-your-writes satisfied, and timed out with the projector down)."""
import json
import os
import re
import signal
import struct
import subprocess
import time

import pytest

import harness
from harness import avro_string, view_path, zigzag

VIEW = harness.VIEW
PROBLEM = "https://readmodel.dev/problems/"




def get_json(api, path, headers=None):
    status, headers, body = harness.http_request(api.base, path, headers)
    return status, headers, json.loads(body) if body else None




def assert_problem(api, path, status, slug, headers=None):
    got, hdrs, body = get_json(api, path, headers)
    assert got == status, (path, got, body)
    assert hdrs["content-type"] == "application/problem+json", path
    assert body["type"] == PROBLEM + slug, (path, body)
    assert body["status"] == status
    return body


def customer_registered(customer_id, name, version, event_id):
    """Schema id 1, c360.customers.CustomerRegistered, encoded by hand (as test_interop)."""
    body = (avro_string(event_id) + zigzag(int(time.time() * 1000)) + zigzag(version)
            + avro_string(customer_id) + avro_string(name) + avro_string("shape@example.org")
            + avro_string("+15550100001") + zigzag(1) + b"\x01")
    return b"\x00" + struct.pack(">I", 1) + body


def order_created(customer_id, order_id, occurred_ms):
    """Schema id 4, c360.orders.OrderCreated (no lines), encoded by hand."""
    body = (avro_string(f"{order_id}-created") + zigzag(occurred_ms) + zigzag(1)
            + avro_string(order_id) + avro_string(customer_id) + b"\x00" + zigzag(1234)
            + avro_string("EUR"))
    return b"\x00" + struct.pack(">I", 4) + body


def section_lags(doc):
    """{section: lag} of every projected section with a freshness entry."""
    return {s: f["lag"] for s, f in doc["freshness"].items()
            if f is not None and f["mode"] == "projected"}


def produce(producer, key, name, version):
    """Produces a registration; returns its (partition, offset)."""
    meta = producer.send("customers", key=key.encode(),
                         value=customer_registered(key, name, version, f"{key}-v{version}")
                         ).get(timeout=30)
    return meta.partition, meta.offset


# ---------------------------------------------------------------------------------------
# A projected store that does not change: shaping, pages, ETags, budgets, token syntax.

@pytest.fixture(scope="module")
def static_api(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("shaping"))
    started = []
    try:
        broker = harness.DevBroker(workdir)
        started.append(broker)
        _, oracle_path = harness.simulate(broker.bootstrap, workdir, 150, 31)
        config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="")
        out = harness.run_projector(config)
        assert out.returncode == 0, out.stderr[-3000:]
        api = harness.QueryApi(workdir, config, harness.free_port())
        started.append(api)
        oracle = {e["key"]: e for e in harness.read_oracle(oracle_path) if not e["erased"]}
        yield api, oracle
    finally:
        for proc in reversed(started):
            proc.stop()


def with_orders(oracle, at_least):
    return [k for k, e in oracle.items() if len(e["sections"]["orders"]) >= at_least]


def test_fields_selects_sections(static_api):
    api, oracle = static_api
    key = with_orders(oracle, 2)[0]
    status, _, doc = get_json(api, view_path(key, fields="profile,orders"))
    assert status == 200, doc
    assert list(doc["sections"]) == ["profile", "orders"]
    assert set(doc["freshness"]) == {"profile", "orders"}
    assert doc["sections"] == {s: oracle[key]["sections"][s] for s in ("profile", "orders")}
    assert "lag" in doc and doc["key"] == key
    # definition order whatever the order asked; a repeated name is harmless
    status, _, doc = get_json(api, view_path(key, fields="counters,orders,counters"))
    assert status == 200 and list(doc["sections"]) == ["orders", "counters"]
    # every section, when fields is absent: the projected ones as the oracle says, and the
    # live one (fraud_holds, no risk service configured here) unavailable
    status, headers, doc = get_json(api, view_path(key))
    assert doc["sections"] == dict(oracle[key]["sections"], fraud_holds=None)
    assert doc["freshness"]["fraud_holds"] == {"mode": "unavailable", "reason": "not configured"}
    assert headers["x-readmodel-unavailable"] == "fraud_holds"


def test_bad_fields_and_numbers_are_problems(static_api):
    api, oracle = static_api
    key = next(iter(oracle))
    body = assert_problem(api, view_path(key, fields="profile,bogus"), 400, "unknown-section")
    assert "bogus" in body["detail"]
    assert_problem(api, view_path(key, fields="Profile"), 400, "unknown-section")
    for params in ({"fields": ""}, {"fields": "profile,"}, {"orders_limit": "0"},
                   {"orders_limit": "-1"}, {"orders_limit": "two"}, {"orders_limit": "1e3"},
                   {"max_staleness_ms": "soon"}, {"max_staleness_ms": "-5"},
                   {"wait_ms": "99999999999999999999999"}):
        assert_problem(api, view_path(key, **params), 400, "bad-parameter")


def walk_orders(api, key, limit, fields=None):
    """Every order of key, page by page; checks each page's size and cursor."""
    orders, cursor, pages = [], None, 0
    while True:
        params = {"orders_limit": limit}
        if fields:
            params["fields"] = fields
        if cursor:
            params["orders_cursor"] = cursor
        status, _, doc = get_json(api, view_path(key, **params))
        assert status == 200, doc
        page = doc["sections"]["orders"]
        assert len(page) <= limit
        orders += page
        pages += 1
        cursor = doc.get("orders_next_cursor")
        if cursor is None:
            return orders, pages
        assert len(page) == limit, "a page with a next cursor must be full"
        assert re.fullmatch(r"[A-Za-z0-9_-]+", cursor), cursor
        assert pages < 100, "the cursor does not advance"


def test_pagination_walks_every_order(static_api):
    api, oracle = static_api
    keys = with_orders(oracle, 4)
    assert len(keys) >= 10, "the simulator should give many customers several orders"
    for key in keys[:25]:
        want = oracle[key]["sections"]["orders"]
        for limit in (1, 3):
            got, pages = walk_orders(api, key, limit)
            assert got == want, (key, limit)
            assert pages == max(1, -(-len(want) // limit)), (key, limit, pages)
    # with fields, and a limit that takes everything at once: no cursor
    key = keys[0]
    got, pages = walk_orders(api, key, 20, fields="orders")
    assert got == oracle[key]["sections"]["orders"] and pages == 1
    status, _, doc = get_json(api, view_path(key))
    assert "orders_next_cursor" not in doc
    # a customer without orders: an empty page, no cursor
    empty = [k for k, e in oracle.items() if not e["sections"]["orders"]]
    if empty:
        status, _, doc = get_json(api, view_path(empty[0], orders_limit=2))
        assert status == 200 and doc["sections"]["orders"] == [] and "orders_next_cursor" not in doc


def test_bad_cursor_is_a_problem(static_api):
    api, oracle = static_api
    key = with_orders(oracle, 3)[0]
    _, _, doc = get_json(api, view_path(key, orders_limit=1))
    good = doc["orders_next_cursor"]
    for bad in ("", "!!!!", good + "=", "AQ", "AQAAAAAAAAAF", "x" * 500, "/" + good[1:],
                "+" + good[1:]):
        assert_problem(api, view_path(key, orders_cursor=bad), 400, "bad-cursor")
    # a cursor is sealed for its section and document (test_view_privacy.py has the rest)
    assert_problem(api, view_path(key, returns_cursor=good), 400, "bad-cursor")


def test_etag_and_if_none_match(static_api):
    api, oracle = static_api
    key = with_orders(oracle, 1)[0]
    status, headers, body = harness.http_request(api.base, view_path(key))
    assert status == 200
    etag = headers["etag"]
    assert re.fullmatch(r'W/"[0-9a-f]{16}"', etag), etag
    assert harness.http_request(api.base, view_path(key))[1]["etag"] == etag  # stable for an unchanged view
    for inm in (etag, etag.removeprefix("W/"), '"nope", ' + etag, "*"):
        status, hdrs, body = harness.http_request(api.base, view_path(key), {"If-None-Match": inm})
        assert status == 304, inm
        assert body == b""
        assert hdrs["etag"] == etag and "x-readmodel-lag-ms" in hdrs
    status, _, body = harness.http_request(api.base, view_path(key), {"If-None-Match": '"0000000000000000"'})
    assert status == 200 and json.loads(body)["key"] == key
    # another shape is another representation: another tag
    status, hdrs, _ = harness.http_request(api.base, view_path(key, fields="profile"), {"If-None-Match": etag})
    assert status == 200 and hdrs["etag"] != etag
    # every 200 view answer carries one; errors do not
    other = next(k for k in oracle if k != key)
    assert harness.http_request(api.base, view_path(other))[1]["etag"] not in (etag, None)
    status, hdrs, _ = harness.http_request(api.base, view_path("no-such-customer"))
    assert status == 404 and "etag" not in hdrs


def test_staleness_budget_met_when_caught_up(static_api):
    api, oracle = static_api
    key = next(iter(oracle))
    status, headers, doc = get_json(api, view_path(key, max_staleness_ms=5000))
    assert status == 200
    assert doc["staleness"] == {"budget_ms": 5000, "lag_ms": 0, "met": True}
    assert headers["x-readmodel-staleness-exceeded"] == "false"
    assert headers["x-readmodel-lag-ms"] == "0" and headers["x-readmodel-lag-messages"] == "0"
    assert int(headers["x-readmodel-commit-age-ms"]) >= 0
    status, headers, doc = get_json(api, view_path(key))
    assert "staleness" not in doc and "x-readmodel-staleness-exceeded" not in headers
    assert headers["x-readmodel-lag-ms"] == "0"
    # caught up: every projected section says so, and only projected ones carry a lag
    lags = section_lags(doc)
    assert set(lags) == {s for s, f in doc["freshness"].items() if f and f["mode"] == "projected"}
    assert "profile" in lags, doc["freshness"]
    assert all(lag == {"messages": 0, "ms": 0} for lag in lags.values()), lags
    assert "lag" not in doc["freshness"]["fraud_holds"]


def test_consistency_tokens_syntax(static_api):
    api, oracle = static_api
    key = next(iter(oracle))
    for bad in ("orders", "orders:1", "orders:1:", "orders:x:1", "orders:1:-1", "orders:1:1,",
                ":1:1", "orders:1:1:1", ",".join(f"orders:{p}:1" for p in range(65))):
        assert_problem(api, view_path(key, min_offsets=bad), 400, "bad-consistency-token")
        assert_problem(api, view_path(key), 400, "bad-consistency-token",
                       {"X-Readmodel-Min-Offsets": bad})
    # a topic this view does not consume would never arrive
    assert_problem(api, view_path(key, min_offsets="inventory:0:1"), 400, "bad-consistency-token")
    # offsets long applied: reached at once, through the parameter or the header
    status, headers, doc = get_json(api, view_path(key, min_offsets="customers:0:0"))
    assert status == 200 and doc["consistency"] == {"reached": True, "missing": []}
    assert headers["x-readmodel-consistency"] == "reached"
    status, headers, doc = get_json(api, view_path(key),
                                    {"X-Readmodel-Min-Offsets": "orders:0:0,customers:1:0"})
    assert status == 200 and doc["consistency"]["reached"] is True


# ---------------------------------------------------------------------------------------
# A running projector: read-your-writes, a changed ETag, then the projector stops.

def test_read_your_writes_and_timeout(broker, workdir, processes):
    from kafka import KafkaProducer
    harness.simulate(broker.bootstrap, workdir, 20, 32)
    config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="",
                                  query_api__consistency_wait_ms=700)
    projector = harness.Process("projector", [harness.binary("projector/projector"), "--config",
                                              config], workdir)
    processes.append(projector)
    api = harness.QueryApi(workdir, config, harness.free_port())
    processes.append(api)
    harness.wait_until(lambda: api.get("/readyz")[0] == 200, 60, "/readyz 200")
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, api_version=(2, 5, 0))
    try:
        # 1. a write, then a read that names it: the read sees the write
        partition, offset = produce(producer, "RYW-1", "First Name", 1)
        token = f"customers:{partition}:{offset}"
        status, headers, doc = get_json(api, view_path("RYW-1", min_offsets=token, wait_ms=10000))
        assert status == 200, doc
        assert doc["consistency"] == {"reached": True, "missing": []}
        assert doc["sections"]["profile"]["name"] == "First Name"
        assert headers["x-readmodel-consistency"] == "reached"
        assert doc["freshness"]["profile"]["offset"] == offset
        etag = headers["etag"]
        status, _, _ = harness.http_request(api.base, view_path("RYW-1", min_offsets=token), {"If-None-Match": etag})
        assert status == 304

        # 2. a newer version of the same customer: another document, another tag
        partition2, offset2 = produce(producer, "RYW-1", "Second Name", 2)
        status, headers, doc = get_json(api, view_path("RYW-1"),
                                        {"X-Readmodel-Min-Offsets": f"customers:{partition2}:{offset2}",
                                         "If-None-Match": etag})
        assert status == 200, doc
        assert doc["sections"]["profile"]["name"] == "Second Name"
        assert headers["etag"] != etag

        # 3. the projector stops: a token for a later write times out, with what it has
        assert projector.stop() == 0
        partition3, offset3 = produce(producer, "RYW-1", "Third Name", 3)
        for params, low, high in (({"wait_ms": 300}, 0.28, 0.69), ({}, 0.68, 1.9),
                                  ({"wait_ms": 0}, 0.0, 0.25)):
            start = time.monotonic()
            status, headers, doc = get_json(api, view_path(
                "RYW-1", min_offsets=f"customers:{partition3}:{offset3}", **params))
            elapsed = time.monotonic() - start
            assert status == 200, doc
            assert low <= elapsed < high, (params, elapsed)
            assert doc["sections"]["profile"]["name"] == "Second Name"
            consistency = doc["consistency"]
            assert consistency["reached"] is False and consistency["reason"] == "timeout"
            assert consistency["missing"] == [{"topic": "customers", "partition": partition3,
                                               "want": offset3, "have": offset3}]
            assert headers["x-readmodel-consistency"] == "not-reached"
        # only the tokens not reached are listed
        status, _, doc = get_json(api, view_path(
            "RYW-1", min_offsets=f"customers:{partition2}:{offset2},customers:{partition3}:{offset3}",
            wait_ms=50))
        assert [m["want"] for m in doc["consistency"]["missing"]] == [offset3]
        # a key the store has not seen yet: 404, and the header says why it may be
        status, headers, _ = get_json(api, view_path("RYW-2", min_offsets=f"customers:{partition3}:{offset3}",
                                                     wait_ms=50))
        assert status == 404 and headers["x-readmodel-consistency"] == "not-reached"
    finally:
        producer.close()


# ---------------------------------------------------------------------------------------
# A store left behind: the budget is not met, and the answer says so.

def test_staleness_budget_not_met(broker, workdir, processes):
    hour_ago = int(time.time() * 1000) - 3600_000
    summary, oracle_path = harness.simulate(broker.bootstrap, workdir, 1000, 33,
                                            extra=["--start-ms", str(hour_ago)])
    total = summary["events"]
    # Small synced batches make the run long enough to stop it in the middle.
    config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="",
                                  projector__batch_max_events=100, projector__durability="sync")
    projector = harness.Process("projector", [harness.binary("projector/projector"), "--config",
                                              config], workdir)
    processes.append(projector)
    # 20% of the stream, some of it profiles: partitions are read in no set order, so a
    # fifth of the offsets alone may hold no customers event yet.
    def customers_applied():
        out = harness.inspect(config, "offsets")
        return out.returncode == 0 and sum(
            p["next_offset"] for p in json.loads(out.stdout) if p["topic"] == "customers") > 0
    harness.wait_until(lambda: harness.committed_offsets(config) > total * 0.2
                       and customers_applied(), 120,
                       "the projector to commit 20% of the stream, profiles among it")
    projector.send(signal.SIGKILL)
    projector.wait(60)
    midway = harness.committed_offsets(config)
    assert 0 < midway < total, f"stopped at {midway} of {total}: not midway"

    api = harness.QueryApi(workdir, config, harness.free_port())
    processes.append(api)
    # A customer whose profile is applied: a stream stopped midway also holds customers
    # whose orders came before their profile (no order across topics), served without one.
    def has_profile(key):
        status, _, doc = get_json(api, view_path(key))
        return status == 200 and doc["sections"]["profile"] is not None
    key = next(e["key"] for e in harness.read_oracle(oracle_path) if has_profile(e["key"]))
    status, headers, doc = get_json(api, view_path(key, max_staleness_ms=60000))
    assert status == 200, doc
    staleness = doc["staleness"]
    assert staleness["budget_ms"] == 60000 and staleness["met"] is False
    assert staleness["lag_ms"] > 3000_000  # the newest applied event is about an hour old
    assert headers["x-readmodel-staleness-exceeded"] == "true"
    assert int(headers["x-readmodel-lag-ms"]) == staleness["lag_ms"]
    assert int(headers["x-readmodel-lag-messages"]) > 0
    assert doc["sections"]["profile"] is not None  # the data is served all the same
    status, headers, doc = get_json(api, view_path(key, max_staleness_ms=86400000))
    assert doc["staleness"]["met"] is True
    assert headers["x-readmodel-staleness-exceeded"] == "false"


# ---------------------------------------------------------------------------------------
# Per-section lag: a section is as late as the topics that feed it, no later.

ORDERS_FED = ("orders", "payment_issues", "delivery_exceptions", "returns", "counters")


def test_section_lag_follows_its_topics(broker, workdir, processes):
    from kafka import KafkaProducer
    _, oracle_path = harness.simulate(broker.bootstrap, workdir, 40, 34)
    config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="",
                                  projector__batch_max_events=5)
    out = harness.run_projector(config)
    assert out.returncode == 0, out.stderr[-3000:]
    oracle = [e for e in harness.read_oracle(oracle_path) if not e["erased"]]
    # a customer whose every orders-fed section and loyalty hold data, so that each has a
    # freshness entry to carry the lag
    key = next(e["key"] for e in oracle
               if e["sections"]["loyalty"] and e["sections"]["orders"])
    api = harness.QueryApi(workdir, config, harness.free_port())
    processes.append(api)
    status, _, doc = get_json(api, view_path(key))
    assert status == 200, doc
    assert all(lag == {"messages": 0, "ms": 0} for lag in section_lags(doc).values()), doc

    # Orders only; then a projector that dies right after its first commit (a batch of at
    # most 5): the store records the orders partitions behind, and nothing else.
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, api_version=(2, 5, 0))
    now_ms = int(time.time() * 1000)
    try:
        for i in range(120):
            customer = oracle[i % len(oracle)]["key"]
            producer.send("orders", key=customer.encode(),
                          value=order_created(customer, f"LAG-O{i}", now_ms + i))
        producer.flush(timeout=30)
    finally:
        producer.close()
    env = dict(os.environ, RM_FAILPOINT="batch-commit:1")
    out = subprocess.run([harness.binary("projector/projector"), "--config", config], env=env,
                         cwd=harness.ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == -signal.SIGKILL, (out.returncode, out.stderr[-3000:])

    status, headers, doc = get_json(api, view_path(key))
    assert status == 200, doc
    lags = section_lags(doc)
    behind = int(headers["x-readmodel-lag-messages"])
    assert 0 < behind < 120, headers
    for section in ORDERS_FED:
        if section in lags:
            # orders is the only topic behind: each section it feeds is behind by all of it
            assert lags[section]["messages"] == behind, (section, lags)
            assert lags[section]["ms"] > 0, (section, lags)
    assert "orders" in lags and "counters" in lags, lags
    assert lags["loyalty"] == {"messages": 0, "ms": 0}, lags
    assert lags["profile"] == {"messages": 0, "ms": 0}, lags
    assert int(headers["x-readmodel-lag-ms"]) == lags["orders"]["ms"]
