"""The simulator's source services: `simulate --serve-sources` serves the systems
of record of what it generated, with injected drift and faults. Served values must equal
--truth, every --drift-manifest entry must be visible in them, and the unapplied events must
land in the dead-letter topics, exactly."""
import calendar
import http.client
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import harness
from test_chaos import dead_letters

SECTIONS = ["profile", "orders", "payment_issues", "delivery_exceptions", "loyalty", "returns"]

# service field -> (view field, is a time); the view's names are the truth's
PROFILE = {"id": ("customer_id", False), "full_name": ("name", False), "email": ("email", False),
           "phone": ("phone", False), "contact_channel": ("preferred_channel", False),
           "marketing_opt_in": ("marketing_opt_in", False),
           "registered_at": ("registered_at", True), "updated_at": ("updated_at", True)}
ORDER = {"id": ("order_id", False), "placed_at": ("created_at", True),
         "total_cents": ("total_cents", False), "currency": ("currency", False),
         "line_count": ("line_count", False), "status": ("status", False),
         "payment_status": ("payment_status", False),
         "shipment_status": ("shipment_status", False), "updated_at": (None, True)}
PAYMENT = {"id": ("payment_id", False), "order_id": ("order_id", False),
           "status": ("kind", False), "amount_cents": ("amount_cents", False),
           "currency": ("currency", False), "failure_reason": ("reason", False),
           "occurred_at": ("occurred_at", True), "updated_at": (None, True)}
SHIPMENT = {"id": ("shipment_id", False), "order_id": ("order_id", False),
            "delay_reason": ("reason", False), "eta": ("new_eta", True),
            "occurred_at": ("occurred_at", True), "updated_at": (None, True)}
LOYALTY = {"customer_id": (None, False), "tier": ("tier", False), "points": ("points", False),
           "updated_at": ("updated_at", True)}
RETURN = {"id": ("return_id", False), "order_id": ("order_id", False),
          "reason": ("reason", False), "opened_at": ("opened_at", True),
          "updated_at": (None, True)}
LISTS = {"orders": ("orders", "orders", ORDER), "payment_issues": ("payment-issues", "payments", PAYMENT),
         "delivery_exceptions": ("shipment-exceptions", "shipments", SHIPMENT),
         "returns": ("returns?status=open", "returns", RETURN)}


def iso_to_ms(text):
    """'2026-12-01T20:00:00.123Z' -> epoch ms; asserts the exact format."""
    assert len(text) == 24 and text[10] == "T" and text[19] == "." and text[23] == "Z", text
    seconds = calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S"))
    return seconds * 1000 + int(text[20:23])


def to_view(record, mapping):
    """A served record in view names and types; also checks its exact field set."""
    assert set(record) == set(mapping), (sorted(record), sorted(mapping))
    view = {}
    for name, (view_name, is_time) in mapping.items():
        value = record[name]
        if is_time:
            value = iso_to_ms(value)
        view[view_name or ("_" + name)] = value
    return view


class Client:
    """One keep-alive connection; counts requests so that /_stats can be checked."""

    def __init__(self, base, timeout=10):
        host, port = base.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
        self.requests = 0

    def get(self, path, method="GET"):
        self.requests += 1
        self.conn.request(method, path)
        resp = self.conn.getresponse()
        body = resp.read().decode()
        ctype = resp.getheader("Content-Type") or ""
        return resp.status, ctype, (json.loads(body) if "json" in ctype else body)

    def pages(self, path, member, per_page):
        """Every item of a paginated list, following next_page."""
        items, page = [], 1
        sep = "&" if "?" in path else "?"
        while True:
            status, _, body = self.get(f"{path}{sep}page={page}&per_page={per_page}")
            assert status == 200, (path, status, body)
            assert set(body) == {member, "next_page"}, body
            assert len(body[member]) <= per_page
            items += body[member]
            if body["next_page"] is None:
                return items
            assert body["next_page"] == page + 1
            page += 1

    def close(self):
        self.conn.close()


def start_sources(workdir, processes, name, extra, customers=300, seed=21):
    ready = os.path.join(workdir, f"{name}.url")
    argv = [harness.binary("tools/simulate/simulate"), "--dry-run", "--customers",
            str(customers), "--seed", str(seed), "--serve-sources", "127.0.0.1:0",
            "--sources-ready-file", ready, *extra]
    proc = harness.Process(name, argv, workdir)
    processes.append(proc)

    def url():
        assert proc.alive(), proc.log_text()[-2000:]
        if os.path.exists(ready):
            with open(ready) as f:
                return f.read().strip()
        return None
    return proc, harness.wait_until(url, 60, "the sources ready file")


def read_lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def served_sections(client, key, per_page):
    """A customer's sections rebuilt from the services, in view shape but with every order;
    None when the customer is unknown (404 everywhere)."""
    status, ctype, profile = client.get(f"/customers/{key}")
    if status == 404:
        assert ctype == "application/problem+json" and profile["status"] == 404
        for path in ("orders", "payment-issues", "shipment-exceptions", "returns?status=open"):
            assert client.get(f"/customers/{key}/{path}")[0] == 404, path
        assert client.get(f"/loyalty/{key}")[0] == 404
        return None
    assert status == 200, profile
    sections = {"profile": to_view(profile, PROFILE)}
    for section, (path, member, mapping) in LISTS.items():
        sections[section] = [to_view(item, mapping)
                             for item in client.pages(f"/customers/{key}/{path}", member, per_page)]
    status, _, loyalty = client.get(f"/loyalty/{key}")
    if status == 404:
        sections["loyalty"] = None
    else:
        assert status == 200 and loyalty["customer_id"] == key
        sections["loyalty"] = to_view(loyalty, LOYALTY)
        del sections["loyalty"]["_customer_id"]
    return sections


def strip_meta(items):
    return [{k: v for k, v in item.items() if not k.startswith("_")} for item in items]


def test_sources_serve_the_truth_with_drift(workdir, processes):
    oracle_path, truth_path, manifest_path = (os.path.join(workdir, n) for n in
                                              ("oracle.jsonl", "truth.jsonl", "drift.jsonl"))
    started_ms = int(time.time() * 1000)
    start = str(started_ms - 3600 * 1000)  # fixed, so that a second run can be compared
    proc, base = start_sources(workdir, processes, "sources", ["--start-ms", start,
        "--oracle", oracle_path, "--truth", truth_path, "--drift-manifest", manifest_path,
        "--drift-unpublished", "13", "--drift-unapplied", "6", "--drift-diverge", "6",
        "--drift-pending", "5"])
    assert "sources listening" in proc.log_text()
    truth = {e["key"]: e for e in read_lines(truth_path)}
    oracle = {e["key"]: e for e in read_lines(oracle_path)}
    manifest = read_lines(manifest_path)
    client = Client(base)
    served = {}
    heavy = 0
    for i, key in enumerate(sorted(truth)):
        want = truth[key]
        got = served_sections(client, key, per_page=7 if i % 2 else 100)
        if want["erased"]:
            assert got is None, key
            continue
        sections = want["sections"]
        # every order, newest placed_at first (ties: id), pages concatenated
        orders = got["orders"]
        assert len(orders) == sections["counters"]["lifetime_orders"], key
        assert [o["created_at"] for o in orders] == sorted((o["created_at"] for o in orders),
                                                           reverse=True)
        heavy += len(orders) > 20
        view = dict(got, orders=strip_meta(orders[:20]))
        for section in ("payment_issues", "delivery_exceptions", "returns"):
            view[section] = strip_meta(view[section])
        view["profile"] = {k: v for k, v in got["profile"].items() if not k.startswith("_")}
        for section in SECTIONS:
            diff = harness.first_difference(view[section], sections[section], f"{key}.{section}")
            assert diff is None, diff
        served[key] = got
    assert heavy > 0, "no customer with more than 20 orders: pagination is not exercised"

    # every manifest entry is visible in what is served, and its store value is the oracle's
    kinds = {}
    pending_keys = set()
    for entry in manifest:
        kinds[entry["kind"]] = kinds.get(entry["kind"], 0) + 1
        key, section, item, field = entry["key"], entry["section"], entry["item"], entry["field"]
        got, store = served[key][section], oracle[key]["sections"][section]
        if item is not None:
            id_field = {"orders": "order_id", "payment_issues": "payment_id",
                        "delivery_exceptions": "shipment_id", "returns": "return_id"}[section]
            got = next((x for x in got if x[id_field] == item), None)
            store = next((x for x in store if x[id_field] == item), None)
        if field is None:
            assert store == entry["store"], entry
            assert (strip_meta([got])[0] if got else None) == entry["source"], entry
            continue
        assert got[field] == entry["source"], (entry, got)
        assert store[field] == entry["store"], (entry, store)
        assert entry["source"] != entry["store"], entry
        updated = got.get("updated_at", got.get("_updated_at"))
        if entry["kind"] == "pending":
            pending_keys.add(key)
            assert updated >= started_ms, (entry, updated)
        else:
            assert updated < started_ms, (entry, updated)
        if entry["kind"] == "unapplied":
            assert entry["event"]["record"].startswith("c360.") and entry["event"]["offset"] is None
    assert kinds.get("unpublished") == 13 and kinds.get("diverge") == 6 and kinds.get("pending") == 5
    assert len({e["event"]["event_id"] for e in manifest if e["kind"] == "unapplied"}) == 6
    # the truth differs from the oracle only where the manifest says (updated_at aside)
    listed = {(e["key"], e["section"]) for e in manifest}
    for key in truth:
        for section in SECTIONS if not truth[key]["erased"] else []:
            if truth[key]["sections"][section] != oracle[key]["sections"][section]:
                assert (key, section) in listed or key in pending_keys, (key, section)

    # single resources, 404s, 405s, 400s
    key = next(k for k in sorted(served) if served[k]["orders"])
    order = served[key]["orders"][0]
    status, _, body = client.get(f"/orders/{order['order_id']}")
    assert status == 200 and body["customer_id"] == key and body["id"] == order["order_id"]
    status, _, body = client.get(f"/orders/{order['order_id']}/payments")
    assert status == 200 and isinstance(body["payments"], list)
    for payment in body["payments"]:
        assert set(payment) == {"id", "order_id", "status", "amount_cents", "currency", "updated_at"}
        assert payment["status"] == order["payment_status"]
    for path in ("/customers/C21-999999", "/orders/O21-9999999", "/nothing/here",
                 f"/customers/{key}/unknown"):
        status, ctype, body = client.get(path)
        assert status == 404 and ctype == "application/problem+json", (path, status)
    assert client.get("/customers/%s/orders?page=0" % key)[0] == 400
    assert client.get("/customers/%s/orders?per_page=101" % key)[0] == 400
    status, _, body = client.get(f"/customers/{key}/orders?page=999")
    assert status == 200 and body == {"orders": [], "next_page": None}
    assert client.get("/healthz")[0] == 200
    assert client.get(f"/customers/{key}", method="POST")[0] == 405
    client.get(f"/customers/{key}", method="DELETE")  # the 405's body is read
    status, _, stats = client.get("/_stats")
    assert status == 200
    assert stats["requests"] == client.requests - 1, (stats["requests"], client.requests)
    assert stats["by_status"]["405"] == 2 and stats["by_status"]["400"] == 2
    assert sum(stats["by_status"].values()) == stats["requests"]
    assert stats["by_service"]["loyalty"] == len(truth)
    client.close()

    # deterministic: the same seed injects the same drift
    again = os.path.join(workdir, "drift-again.jsonl")
    out = subprocess.run([harness.binary("tools/simulate/simulate"), "--dry-run", "--customers",
                          "300", "--seed", "21", "--drift-unpublished", "13", "--drift-unapplied",
                          "6", "--drift-diverge", "6", "--drift-pending", "5", "--drift-manifest",
                          again, "--start-ms", start, "-q"], cwd=harness.ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert read_lines(again) == manifest

    proc.send(signal.SIGTERM)
    assert proc.wait(30) == 0


def test_source_faults(workdir, processes):
    faults = os.path.join(workdir, "faults.jsonl")
    proc, base = start_sources(workdir, processes, "faulty", [
        "--source-faults", "flaky=100,down=loyalty,timeout=20", "--fault-manifest", faults],
        customers=60, seed=22)
    listed = read_lines(faults)
    down = {e["key"] for e in listed if e["service"] == "loyalty"}
    timed_out = {(e["service"], e["key"]) for e in listed if e["fault"] == "timeout"}
    assert all(e["fault"] == "down" for e in listed if e["service"] == "loyalty")
    assert timed_out, "timeout=20 selected nothing"
    keys = sorted({e["key"] for e in listed})
    client = Client(base, timeout=5)
    checked = 0
    for key in keys:
        # down: 503 always, retries included
        for _ in range(3):
            status, ctype, body = client.get(f"/loyalty/{key}")
            assert status == 503 and ctype == "application/problem+json", body
        if ("customers", key) in timed_out:
            continue
        # flaky=100: the first request of each distinct URL fails, the retry succeeds
        assert client.get(f"/customers/{key}")[0] == 503
        assert client.get(f"/customers/{key}")[0] in (200, 404)
        assert client.get(f"/customers/{key}")[0] in (200, 404)
        checked += 1
    assert checked > 0
    assert {k for k in keys} >= down and len(down) >= 50  # every served key is down for loyalty
    # timeout: no answer within the client's deadline; other requests are not stalled
    service, key = sorted(timed_out)[0]
    path = harness_path(service, key)
    held = Client(base, timeout=1.5)
    t0 = time.monotonic()
    try:
        held.get(path)
        raise AssertionError(f"{path} answered despite the timeout fault")
    except (socket.timeout, TimeoutError):
        pass
    assert time.monotonic() - t0 >= 1.4
    held.close()
    assert client.get("/healthz")[0] == 200
    status, _, stats = client.get("/_stats")
    assert stats["by_status"]["503"] >= 3 * len(keys)
    client.close()
    # stops promptly although a request is still held
    t0 = time.monotonic()
    proc.send(signal.SIGTERM)
    assert proc.wait(20) == 0
    assert time.monotonic() - t0 < 10


def harness_path(service, key):
    return {"customers": f"/customers/{key}", "orders": f"/customers/{key}/orders",
            "payments": f"/customers/{key}/payment-issues",
            "shipments": f"/customers/{key}/shipment-exceptions",
            "loyalty": f"/loyalty/{key}", "returns": f"/customers/{key}/returns"}[service]


def test_slow_answers_do_not_stall_each_other(workdir, processes):
    proc, base = start_sources(workdir, processes, "slow", ["--source-faults", "slow=100:400"],
                               customers=20, seed=23)
    timings = []

    def fetch(i):
        t0 = time.monotonic()
        with urllib.request.urlopen(f"{base}/customers/C23-{i:06d}", timeout=10) as resp:
            assert resp.status == 200
        timings.append(time.monotonic() - t0)
    t0 = time.monotonic()
    threads = [threading.Thread(target=fetch, args=(i,)) for i in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    assert len(timings) == 8 and min(timings) >= 0.39, timings
    assert elapsed < 8 * 0.4 / 2, f"8 slow requests took {elapsed:.2f}s: they were serialized"
    with urllib.request.urlopen(f"{base}/healthz", timeout=10) as resp:  # never delayed
        assert resp.status == 200
    proc.send(signal.SIGTERM)
    assert proc.wait(20) == 0


def test_unapplied_events_are_dead_lettered(broker, workdir):
    manifest_path = os.path.join(workdir, "drift.jsonl")
    summary, oracle_path = harness.simulate(broker.bootstrap, workdir, 300, 24, [
        "--drift-unapplied", "5", "--drift-manifest", manifest_path])
    manifest = read_lines(manifest_path)
    events = {}
    for entry in manifest:
        assert entry["kind"] == "unapplied"
        ev = entry["event"]
        events[(ev["topic"], ev["partition"], ev["offset"])] = entry
    assert len(events) == 5, manifest
    config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="")
    out = harness.run_projector(config)
    assert out.returncode == 0, out.stderr[-2000:]
    letters = dead_letters(broker.bootstrap, harness.TOPICS)
    assert set(letters) == set(events), (sorted(letters), sorted(events))
    assert set(letters.values()) == {"schema"}
    # and the store is exactly the oracle without them
    oracle = harness.read_oracle(oracle_path)
    docs = harness.inspect_docs(config, [e["key"] for e in oracle])
    problems = harness.compare_with_oracle(
        oracle, lambda key: docs[key]["sections"] if docs[key] else None)
    assert not problems, problems[:5]
