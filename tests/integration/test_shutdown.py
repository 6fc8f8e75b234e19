"""A SIGTERM is answered within a bound even when the brokers went away: the projector
does not wait on Kafka forever for its dead letters, its erasures or its consumer group's
offset commits. What it could not hand to Kafka stays in the store for the next start,
which publishes it: nothing is lost, nothing doubled."""
import json
import os
import signal
import subprocess
import time

import harness

# The bound docs/runbook.md states for a SIGTERM whatever the brokers do.
SHUTDOWN_BOUND_S = 15


def dlq_letters(bootstrap, topics):
    """[(origin topic, partition, offset)] of every letter on the topics' .dlq topics."""
    found = []
    for topic in topics:
        out = subprocess.run(["kcat", "-b", bootstrap, "-C", "-t", topic + ".dlq", "-o",
                              "beginning", "-e", "-q", "-f", "%h\n"],
                             capture_output=True, text=True, timeout=60)
        for line in out.stdout.splitlines():
            headers = dict(h.split("=", 1) for h in line.split(",") if "=" in h)
            found.append((headers.get("__connect.errors.topic"),
                          int(headers.get("__connect.errors.partition", -1)),
                          int(headers.get("__connect.errors.offset", -1))))
    return found


def assert_stops_in_bound(daemon):
    """SIGTERM, then the daemon must exit 0 within SHUTDOWN_BOUND_S."""
    started = time.monotonic()
    daemon.send(signal.SIGTERM)
    try:
        rc = daemon.wait(120)
    except subprocess.TimeoutExpired:
        rc = None
    took = time.monotonic() - started
    assert rc == 0 and took < SHUTDOWN_BOUND_S, \
        f"exit {rc} after {took:.1f} s (bound {SHUTDOWN_BOUND_S} s)\n" + daemon.log_text()[-3000:]


def test_sigterm_with_the_broker_down_exits_in_bounded_time_and_loses_nothing(workdir,
                                                                              processes):
    control = os.path.join(workdir, "control.fifo")
    broker = harness.DevBroker(workdir, extra=("--control", control))
    processes.append(broker)
    harness.wait_until(lambda: os.path.exists(control), 10, "the control FIFO")
    manifest_path = os.path.join(workdir, "poison.jsonl")
    summary, oracle_path = harness.simulate(broker.bootstrap, workdir, 40, 61, [
        "--poison", "4", "--poison-manifest", manifest_path])
    with open(manifest_path) as f:
        poison = sorted((p["topic"], p["partition"], p["offset"])
                        for p in map(json.loads, f))
    total = summary["events"] + len(poison)
    # With the background fsync an hour away, nothing leaves the process before its clean
    # exit syncs the store (test_dead_letters.py): the dead letters and the Kafka offset
    # commits are all still to be handed over when the SIGTERM comes.
    config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="",
                                  projector__sync_interval_ms=3600000)
    daemon = harness.Process("projector", [harness.binary("projector/projector"), "--config",
                                           config], workdir)
    processes.append(daemon)
    harness.wait_until(lambda: harness.committed_offsets(config) == total, 120,
                       "the stream and the poison applied")
    assert json.loads(harness.inspect(config, "stats").stdout)["outbox"] == len(poison)

    fifo = os.open(control, os.O_WRONLY)
    os.write(fifo, b"broker-down 1\n")
    harness.wait_until(lambda: "ok: broker-down" in broker.log_text(), 10, "the broker down")
    # The projector's clients notice (a Kafka log line) before the signal comes.
    harness.wait_until(lambda: "brokers are down" in daemon.log_text(), 30,
                       "the projector to see the broker down")
    assert_stops_in_bound(daemon)
    # Not handed over, so still in the store's outbox for the next start.
    assert json.loads(harness.inspect(config, "stats").stdout)["outbox"] == len(poison)

    os.write(fifo, b"broker-up 1\n")
    os.close(fifo)
    harness.wait_until(lambda: "ok: broker-up" in broker.log_text(), 10, "the broker up")
    out = harness.run_projector(config)
    assert out.returncode == 0, out.stderr[-3000:]
    assert harness.committed_offsets(config) == total
    assert json.loads(harness.inspect(config, "stats").stdout)["outbox"] == 0
    topics = sorted({p[0] for p in poison})
    assert sorted(dlq_letters(broker.bootstrap, topics)) == poison

    oracle = harness.read_oracle(oracle_path)
    docs = harness.inspect_docs(config, [e["key"] for e in oracle])
    problems = harness.compare_with_oracle(
        oracle, lambda key: docs[key]["sections"] if docs[key] else None)
    assert not problems, f"{len(problems)} differ after the restart; first: {problems[:5]}"


def test_sigterm_during_a_start_with_the_broker_down_is_honoured_in_bounded_time(workdir,
                                                                                processes):
    """The start-up's waits for the brokers (the login check, the erasure topic, the DLQ
    topics' metadata) give way to a SIGTERM: it does not first start the pipeline."""
    control = os.path.join(workdir, "control.fifo")
    broker = harness.DevBroker(workdir, extra=("--control", control))
    processes.append(broker)
    harness.wait_until(lambda: os.path.exists(control), 10, "the control FIFO")
    harness.simulate(broker.bootstrap, workdir, 10, 62)
    config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="")
    out = harness.run_projector(config)
    assert out.returncode == 0, out.stderr[-3000:]
    applied = harness.committed_offsets(config)
    fifo = os.open(control, os.O_WRONLY)
    os.write(fifo, b"broker-down 1\n")
    os.close(fifo)
    harness.wait_until(lambda: "ok: broker-down" in broker.log_text(), 10, "the broker down")
    daemon = harness.Process("projector", [harness.binary("projector/projector"), "--config",
                                           config], workdir)
    processes.append(daemon)
    # Past the login check, at the erasure topic, which it cannot read.
    harness.wait_until(lambda: "cannot read the erasure topic" in daemon.log_text(), 60,
                       "the projector waiting for the erasure topic")
    assert_stops_in_bound(daemon)
    assert "projector started" not in daemon.log_text()
    assert harness.committed_offsets(config) == applied
