"""/v1/status reports, per source topic, the parked events and the dead letters a store
holds, from counters the projector keeps with each change (never a scan per request).
The figures equal a full scan of the store (`inspect topics`) while payments and
shipments are parked behind a held-back orders topic, and after they drain; the dead
letters recorded per topic are the poison the simulator injected there."""
import collections
import json
import os
import time

import harness

NOT_ORDERS = "customers,payments,shipments,loyalty,returns"


def run(broker, workdir, seed, start_ms, topics, manifest):
    return harness.simulate(broker.bootstrap, workdir, 150, seed,
                            ("--start-ms", str(start_ms), "--topics", topics, "--poison", "9",
                             "--poison-manifest", manifest))


def by_topic(rows):
    return {r["topic"]: r for r in rows or []}


def figures(rows, field):
    """{topic: n} without the zeros (a topic with nothing counted may be absent)."""
    return {t: r[field] for t, r in by_topic(rows).items() if r[field]}


def assert_status_equals_scan(api, config):
    status = api.get("/v1/status")[2]
    scan = json.loads(harness.inspect(config, "topics").stdout)
    assert status["topics"] is not None, status
    for field in ("parked", "dead_letters_pending"):
        assert figures(status["topics"], field) == figures(scan["scanned"], field), field
        assert sum(figures(status["topics"], field).values()) == status[field], field
    assert by_topic(scan["counted"]) == by_topic(status["topics"])
    return status


def poison_per_topic(*manifests):
    counts = collections.Counter()
    for path in manifests:
        with open(path) as f:
            counts.update(json.loads(line)["topic"] for line in f if line.strip())
    return dict(counts)


def test_status_counts_parked_and_dead_letters_per_topic(broker, workdir, processes):
    start_ms = int(time.time() * 1000) - 3600 * 1000
    held, rest = os.path.join(workdir, "poison-1.jsonl"), os.path.join(workdir, "poison-2.jsonl")
    run(broker, workdir, 91, start_ms, NOT_ORDERS, held)
    config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="")
    out = harness.run_projector(config)
    assert out.returncode == 0, out.stderr[-2000:]
    api = harness.QueryApi(workdir, config, harness.free_port())
    processes.append(api)

    status = assert_status_equals_scan(api, config)
    parked = figures(status["topics"], "parked")
    assert parked.get("payments", 0) > 0 and parked.get("shipments", 0) > 0, parked
    assert set(parked) <= {"payments", "shipments", "returns"}, parked  # by order id
    recorded = figures(status["topics"], "dead_letters_recorded")
    assert recorded == poison_per_topic(held), recorded

    # The orders arrive: every parked event is applied, and the counters follow.
    run(broker, workdir, 91, start_ms, "orders", rest)
    out = harness.run_projector(config)
    assert out.returncode == 0, out.stderr[-2000:]
    status = assert_status_equals_scan(api, config)
    assert status["parked"] == 0 and figures(status["topics"], "parked") == {}, status["topics"]
    recorded = figures(status["topics"], "dead_letters_recorded")
    assert recorded == poison_per_topic(held, rest), recorded
