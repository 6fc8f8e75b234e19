"""Consistency tokens that cannot be, or should not be, waited for (docs/query-api.md,
min_offsets): a token beyond the partition's log end is answered at once as
"unreachable" instead of holding a worker for consistency_wait_ms, and one principal
holds at most one waiting slot, so it cannot take every slot from the others.

The store is left behind Kafka on purpose: the projector runs to caught-up, then more
events are produced and not projected, so a token between the store's next offset and
the log end is reachable but not yet applied (it waits), and one past the log end is
unreachable."""
import http.client
import json
import socket
import threading
import time
import urllib.request

import pytest

import harness

VIEW = "/v1/views/customer360/"
WAIT_MS = 4000


def get(api, path, token):
    host, port = api.base.rsplit("/", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.request("GET", path, headers={"Authorization": "Bearer " + token})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, json.loads(resp.read())
    finally:
        conn.close()


def waiters(api):
    """Requests waiting now, or None when the scrape is not answered within a second: a
    connection accepted by the worker that then began to wait is served only after the
    wait (a waiting worker serves nothing else), so the scrape is tried again on a new
    connection, which a free worker accepts."""
    try:
        with urllib.request.urlopen(api.base + "/metrics", timeout=1) as resp:
            text = resp.read().decode()
    except (OSError, socket.timeout):
        return None
    for line in text.splitlines():
        if line.startswith("readmodel_http_consistency_waiters "):
            return float(line.split()[1])
    return None


@pytest.fixture(scope="module")
def behind(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("waits"))
    started = []
    try:
        broker = harness.DevBroker(workdir)
        started.append(broker)
        _, oracle_path = harness.simulate(broker.bootstrap, workdir, 20, 71)
        policy = f"{workdir}/policy.yaml"
        with open(policy, "w") as f:
            f.write("roles: {reader: {views: {customer360: {sections: ['*']}}}}\n")
        config = harness.write_config(
            workdir, broker.bootstrap, projector__metrics_listen="",
            **{"query_api__auth.enabled": "on", "query_api__auth.policy": policy,
               "query_api__auth.hs256_secret": "consistency-waits-test-secret-0123456789",
               "query_api__auth.issuer": "https://idp.test", "query_api__auth.audience": "rm",
               "query_api__threads": 4, "query_api__consistency_max_waiters": 2,
               "query_api__consistency_wait_ms": WAIT_MS})
        out = harness.run_projector(config)
        assert out.returncode == 0, out.stderr[-3000:]
        stored = {(p["topic"], p["partition"]): p["next_offset"]
                  for p in json.loads(harness.inspect(config, "offsets").stdout)}
        harness.simulate(broker.bootstrap, workdir, 40, 72)  # in Kafka, not in the store
        api = harness.QueryApi(workdir, config, harness.free_port())
        started.append(api)
        key = next(e["key"] for e in harness.read_oracle(oracle_path) if not e["erased"])
        yield api, config, stored, key
    finally:
        for proc in reversed(started):
            proc.stop()


def test_a_token_past_the_log_end_is_answered_at_once(behind):
    api, config, stored, key = behind
    token = harness.mint_token(config, "far-ahead", "reader")
    for offset in ("9223372036854775806", str(stored[("orders", 0)] + 1_000_000)):
        status, headers, doc = get(api, f"{VIEW}{key}?min_offsets=orders:0:{offset}", token)
        assert status == 200, doc
        assert doc["consistency"]["reached"] is False
        assert doc["consistency"]["reason"] == "unreachable", doc["consistency"]
        # answered without the wait (WAIT_MS), not after it
        assert int(headers["x-readmodel-consistency-wait-ms"]) < WAIT_MS / 2, headers
    # a partition the topic does not have is unreachable too
    status, _, doc = get(api, f"{VIEW}{key}?min_offsets=orders:999:0", token)
    assert status == 200 and doc["consistency"]["reason"] == "unreachable", doc


def test_one_principal_holds_one_waiting_slot(behind):
    api, config, stored, key = behind
    greedy = harness.mint_token(config, "greedy", "reader")
    other = harness.mint_token(config, "other", "reader")
    # in Kafka (produced after the projector stopped), not in the store: a real wait
    pending = f"{VIEW}{key}?min_offsets=orders:0:{stored[('orders', 0)]}"
    answers = {}

    def wait_as(name, token):
        answers[name] = get(api, pending, token)

    first = threading.Thread(target=wait_as, args=("greedy-1", greedy))
    first.start()
    try:
        harness.wait_until(lambda: waiters(api) == 1, 30, "the first wait to start")
        # the same principal again: busy at once, although a slot is free
        start = time.monotonic()
        status, _, doc = get(api, pending, greedy)
        assert status == 200 and doc["consistency"]["reason"] == "busy", doc["consistency"]
        assert time.monotonic() - start < WAIT_MS / 1000
        # another principal gets the free slot and waits its time
        status, _, doc = get(api, pending, other)
        assert status == 200 and doc["consistency"]["reason"] == "timeout", doc["consistency"]
    finally:
        first.join()
    status, _, doc = answers["greedy-1"]
    assert status == 200 and doc["consistency"]["reason"] == "timeout", doc["consistency"]
