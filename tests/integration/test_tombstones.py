"""Tombstones (null-value records) from a real Kafka client follow the view definition's
rule for their topic: on `customers` the customer is erased, on `orders` the order leaves
the list, elsewhere they are counted and skipped."""
import json
import subprocess

import pytest

import harness

pytestmark = pytest.mark.brokers("dev", "kafka")


def tombstone(bootstrap, topic, key):
    # kcat -Z sends an empty value as NULL: a real tombstone
    subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", topic, "-Z", "-K", "|"],
                   input=f"{key}|\n".encode(), check=True, timeout=60)


def test_tombstones_erase_delete_or_skip(broker, workdir):
    _, oracle_path = harness.simulate(broker.bootstrap, workdir, 60, 17)
    oracle = harness.read_oracle(oracle_path)
    live = [c for c in oracle if not c["erased"] and len(c["sections"]["orders"]) >= 2]
    gone, trimmed, untouched = live[0], live[1], live[2]
    order_id = trimmed["sections"]["orders"][0]["order_id"]
    tombstone(broker.bootstrap, "customers", gone["key"])
    tombstone(broker.bootstrap, "orders", order_id)
    tombstone(broker.bootstrap, "payments", "P-anything")
    config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="")
    out = harness.run_projector(config)
    assert out.returncode == 0, out.stderr[-2000:]
    docs = harness.inspect_docs(config, [gone["key"], trimmed["key"], untouched["key"]])
    assert docs[gone["key"]] is None
    want = json.loads(json.dumps(trimmed["sections"]))
    want["orders"] = [o for o in want["orders"] if o["order_id"] != order_id]
    assert docs[trimmed["key"]]["sections"] == want
    assert docs[untouched["key"]]["sections"] == untouched["sections"]
    # the erased customer cannot come back: replaying the whole stream changes nothing
    harness.simulate(broker.bootstrap, workdir, 60, 17)
    assert harness.run_projector(config).returncode == 0
    docs = harness.inspect_docs(config, [gone["key"], trimmed["key"]])
    assert docs[gone["key"]] is None
    assert docs[trimmed["key"]]["sections"] == want  # nor the deleted order
    stats = json.loads(harness.inspect(config, "stats").stdout)
    assert stats["outbox"] == 0  # no tombstone was a dead letter
