"""Tombstones (null-value records) from a real Kafka client follow the view definition's
rule for their topic: on `customers` the customer is erased, on `orders` the order leaves
the list, elsewhere they are counted and skipped."""
import json
import subprocess

import harness


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


def test_an_erasure_survives_a_rebuild_after_compaction(broker, workdir, processes):
    """On a compacted `customers` topic the tombstone goes after delete.retention.ms. A
    rebuild of that log (here: a second broker holding the same stream without the
    tombstone) must not bring the erased customer back: the erasure is kept in the
    view directory's ledger, outside every generation."""
    _, oracle_path = harness.simulate(broker.bootstrap, workdir, 40, 23)
    oracle = harness.read_oracle(oracle_path)
    live = [c for c in oracle if not c["erased"] and c["sections"]["orders"]]
    gone, kept = live[0], live[1]
    tombstone(broker.bootstrap, "customers", gone["key"])
    config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="")
    out = harness.run_projector(config)
    assert out.returncode == 0, out.stderr[-2000:]
    assert harness.inspect_docs(config, [gone["key"]])[gone["key"]] is None

    compacted = harness.DevBroker(workdir)
    processes.append(compacted)
    _, oracle_path = harness.simulate(compacted.bootstrap, workdir, 40, 23)
    kept = {c["key"]: c for c in harness.read_oracle(oracle_path)}[kept["key"]]  # today's times
    config2 = harness.write_config(workdir, compacted.bootstrap, name="compacted.yaml",
                                   projector__metrics_listen="")
    out = subprocess.run([harness.binary("projector/projector"), "--config", config2, "rebuild"],
                         cwd=harness.ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    docs = harness.inspect_docs(config2, [gone["key"], kept["key"]])
    assert docs[gone["key"]] is None, "the erased customer came back in the rebuilt generation"
    assert docs[kept["key"]]["sections"] == kept["sections"]
