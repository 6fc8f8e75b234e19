"""Tombstones (null-value records) from a real Kafka client follow the view definition's
rule for their topic: on `customers` the customer is erased, on `orders` the order leaves
the list, elsewhere they are counted and skipped."""
import json
import os
import subprocess
import time

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


def test_an_order_tombstone_read_before_its_order_still_deletes_it(broker, workdir):
    """A tombstone on `orders` need not share its order's partition: kcat's partitioner is
    not the simulator's, and partitions added later move keys. Here the tombstone is read
    before anything of its order: it waits parked for the order link, then deletes the
    order, whose events are all older than it. Before, it was skipped as naming nothing,
    and the order came back when its events arrived."""
    start_ms = int(time.time() * 1000) - 3_600_000  # the whole stream an hour old
    extra = ("--start-ms", str(start_ms))
    _, oracle_path = harness.simulate(broker.bootstrap, workdir, 30, 41, ("--dry-run", *extra))
    oracle = harness.read_oracle(oracle_path)
    trimmed = [c for c in oracle if not c["erased"] and len(c["sections"]["orders"]) >= 2][0]
    order_id = trimmed["sections"]["orders"][0]["order_id"]
    tombstone(broker.bootstrap, "orders", order_id)
    config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="")
    out = harness.run_projector(config)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(harness.inspect(config, "stats").stdout)["pending"] == 1
    harness.simulate(broker.bootstrap, workdir, 30, 41, extra)
    out = harness.run_projector(config)
    assert out.returncode == 0, out.stderr[-2000:]
    want = json.loads(json.dumps(trimmed["sections"]))
    want["orders"] = [o for o in want["orders"] if o["order_id"] != order_id]
    assert harness.inspect_docs(config, [trimmed["key"]])[trimmed["key"]]["sections"] == want
    stats = json.loads(harness.inspect(config, "stats").stdout)
    assert stats["pending"] == 0 and stats["outbox"] == 0, stats


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


def copy_topic(source, target, topic):
    """Copies every record of topic (key|value lines) from one broker to another; nothing
    when the source has no such topic."""
    out = subprocess.run(["kcat", "-C", "-b", source, "-t", topic, "-e", "-q", "-K", "|",
                          "-f", "%k|%s\n"], capture_output=True, timeout=60)
    records = out.stdout if out.returncode == 0 else b""
    if records.strip():
        subprocess.run(["kcat", "-P", "-b", target, "-t", topic, "-K", "|"],
                       input=records, check=True, timeout=60)
    return records.decode().splitlines()


@pytest.mark.parametrize("start", ["daemon", "rebuild"])
def test_a_new_replica_never_serves_a_customer_erased_before_compaction(broker, workdir, processes,
                                                                        start):
    """Replica A erases a customer; later compaction removes the tombstone from `customers`
    (here: a second broker holding the same stream without it, and the erasure topic
    carried over as a real cluster keeps it). Replica B, started on an EMPTY data
    directory (as a daemon, or by `projector rebuild`), must take the erasure from the
    erasure topic before it applies anything, so its store never holds the customer,
    not even briefly."""
    _, oracle_path = harness.simulate(broker.bootstrap, workdir, 40, 29)
    live = [c for c in harness.read_oracle(oracle_path)
            if not c["erased"] and c["sections"]["orders"]]
    gone, kept = live[0], live[1]
    tombstone(broker.bootstrap, "customers", gone["key"])
    dir_a, dir_b = os.path.join(workdir, "a"), os.path.join(workdir, "b")
    os.makedirs(dir_a)
    os.makedirs(dir_b)
    config_a = harness.write_config(dir_a, broker.bootstrap, projector__metrics_listen="")
    out = harness.run_projector(config_a)
    assert out.returncode == 0, out.stderr[-2000:]
    assert harness.inspect_docs(config_a, [gone["key"]])[gone["key"]] is None

    compacted = harness.DevBroker(workdir)
    processes.append(compacted)
    _, oracle_path = harness.simulate(compacted.bootstrap, workdir, 40, 29)
    kept = {c["key"]: c for c in harness.read_oracle(oracle_path)}[kept["key"]]
    copied = copy_topic(broker.bootstrap, compacted.bootstrap, "customer360.erasures")
    assert any(line.startswith(gone["key"] + "|") for line in copied), \
        f"replica A did not publish its erasure to customer360.erasures: {copied}"

    config_b = harness.write_config(dir_b, compacted.bootstrap, projector__metrics_listen="")
    if start == "daemon":
        out = harness.run_projector(config_b)
    else:
        out = subprocess.run([harness.binary("projector/projector"), "--config", config_b,
                              "rebuild"], cwd=harness.ROOT, capture_output=True, text=True,
                             timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    # Before B applied its first event, the erasure was in its ledger: the merge is logged
    # before the pipeline starts, and the key is B's ledger's first record.
    lines = [json.loads(line) for line in out.stderr.splitlines() if line.startswith("{")]
    msgs = [line.get("msg") for line in lines]
    assert "erasures merged from the erasure topic" in msgs, msgs
    first_apply = "projector started" if start == "daemon" else "rebuild started"
    starts = [i for i, m in enumerate(msgs) if m and m.startswith(first_apply)]
    assert starts, msgs
    assert msgs.index("erasures merged from the erasure topic") < starts[0]
    with open(os.path.join(dir_b, "data", "customer360", "erasures.log"), "rb") as f:
        ledger = f.read()
    assert ledger[3:3 + len(gone["key"])] == gone["key"].encode(), ledger[:64]
    docs = harness.inspect_docs(config_b, [gone["key"], kept["key"]])
    assert docs[gone["key"]] is None, "replica B serves a customer erased before compaction"
    assert docs[kept["key"]]["sections"] == kept["sections"]


def test_a_replica_applies_nothing_until_it_has_read_the_erasure_topic(workdir, processes):
    """With the broker down at start, a replica waits at the erasure topic (it says so) and
    applies nothing; once the broker is back it merges the erasures before its pipeline
    starts, never skipping them."""
    control = os.path.join(workdir, "control.fifo")
    broker = harness.DevBroker(workdir, extra=("--control", control))
    processes.append(broker)
    harness.wait_until(lambda: os.path.exists(control), 10, "the control FIFO")
    _, oracle_path = harness.simulate(broker.bootstrap, workdir, 30, 31)
    gone = [c for c in harness.read_oracle(oracle_path) if not c["erased"]][0]
    tombstone(broker.bootstrap, "customers", gone["key"])
    dir_a, dir_b = os.path.join(workdir, "a"), os.path.join(workdir, "b")
    os.makedirs(dir_a)
    os.makedirs(dir_b)
    config_a = harness.write_config(dir_a, broker.bootstrap, projector__metrics_listen="")
    out = harness.run_projector(config_a)
    assert out.returncode == 0, out.stderr[-2000:]

    fifo = os.open(control, os.O_WRONLY)
    os.write(fifo, b"broker-down 1\n")
    harness.wait_until(lambda: "ok: broker-down" in broker.log_text(), 10, "the broker down")
    config_b = harness.write_config(dir_b, broker.bootstrap, projector__metrics_listen="")
    replica = harness.Process("projector-b", [harness.binary("projector/projector"), "--config",
                                              config_b, "--until-caught-up"], dir_b)
    processes.append(replica)
    harness.wait_until(lambda: "cannot read the erasure topic" in replica.log_text(), 60,
                       "the replica waiting for the erasure topic")
    assert replica.alive()
    assert "projector started" not in replica.log_text()
    os.write(fifo, b"broker-up 1\n")
    os.close(fifo)
    assert replica.wait(120) == 0, replica.log_text()[-3000:]
    msgs = [json.loads(line) for line in replica.log_text().splitlines() if line.startswith("{")]
    merged = [m for m in msgs if m.get("msg") == "erasures merged from the erasure topic"]
    assert merged and merged[0]["merged"] >= 1, msgs
    names = [m.get("msg") for m in msgs]
    assert names.index("erasures merged from the erasure topic") < names.index("projector started")
    assert harness.inspect_docs(config_b, [gone["key"]])[gone["key"]] is None


def test_a_running_daemon_publishes_its_erasures(broker, workdir, processes):
    """The daemon publishes a live erasure while it runs (not only when it exits), and
    marks the ledger published once the broker acknowledged it."""
    _, oracle_path = harness.simulate(broker.bootstrap, workdir, 20, 37)
    gone = [c for c in harness.read_oracle(oracle_path) if not c["erased"]][0]
    config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="")
    daemon = harness.Process("projector", [harness.binary("projector/projector"), "--config",
                                           config], workdir)
    processes.append(daemon)
    harness.wait_until(lambda: "projector started" in daemon.log_text(), 60, "the daemon")
    tombstone(broker.bootstrap, "customers", gone["key"])

    def published():
        out = subprocess.run(["kcat", "-C", "-b", broker.bootstrap, "-t", "customer360.erasures",
                              "-e", "-q", "-f", "%k\n"], capture_output=True, text=True,
                             timeout=60)
        return gone["key"] in out.stdout.split()
    harness.wait_until(published, 60, "the erasure on customer360.erasures", interval=0.5)
    view_dir = os.path.join(workdir, "data", "customer360")
    ledger_bytes = os.path.getsize(os.path.join(view_dir, "erasures.log"))

    def marked():
        try:
            with open(os.path.join(view_dir, "erasures.published")) as f:
                mark, topic, _cluster = f.read().split()
            return int(mark) == ledger_bytes and topic == "customer360.erasures"
        except (OSError, ValueError):
            return False
    harness.wait_until(marked, 30, "erasures.published at the ledger's end", interval=0.2)
    assert daemon.alive()
    assert daemon.stop() == 0


def test_erasures_the_broker_did_not_acknowledge_are_published_at_the_next_start(workdir, processes):
    """Every Produce is refused while the projector erases: the erasure stays in the ledger,
    is not marked published, and the next start publishes it."""
    control = os.path.join(workdir, "control.fifo")
    broker = harness.DevBroker(workdir, extra=("--control", control))
    processes.append(broker)
    harness.wait_until(lambda: os.path.exists(control), 10, "the control FIFO")
    _, oracle_path = harness.simulate(broker.bootstrap, workdir, 20, 43)
    gone = [c for c in harness.read_oracle(oracle_path) if not c["erased"]][0]
    tombstone(broker.bootstrap, "customers", gone["key"])
    fifo = os.open(control, os.O_WRONLY)
    os.write(fifo, b"error 0 100000 29\n")  # Produce: TOPIC_AUTHORIZATION_FAILED
    harness.wait_until(lambda: "ok: error" in broker.log_text(), 10, "the injected error")
    config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="")
    view_dir = os.path.join(workdir, "data", "customer360")

    def on_topic():
        out = subprocess.run(["kcat", "-C", "-b", broker.bootstrap, "-t", "customer360.erasures",
                              "-e", "-q", "-f", "%k\n"], capture_output=True, text=True,
                             timeout=60)
        return gone["key"] in out.stdout.split()
    out = harness.run_projector(config)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "erasures not yet acknowledged" in out.stderr, out.stderr[-2000:]
    with open(os.path.join(view_dir, "erasures.log"), "rb") as f:
        assert gone["key"].encode() in f.read()
    assert not os.path.exists(os.path.join(view_dir, "erasures.published"))
    assert not on_topic()

    os.write(fifo, b"clear 0\n")
    os.close(fifo)
    harness.wait_until(lambda: "ok: clear" in broker.log_text(), 10, "the cleared error")
    out = harness.run_projector(config)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "erasures not yet acknowledged" not in out.stderr, out.stderr[-2000:]
    assert on_topic()
    with open(os.path.join(view_dir, "erasures.published")) as f:
        mark = int(f.read().split()[0])
    assert mark == os.path.getsize(os.path.join(view_dir, "erasures.log"))
