"""Parked events wait for their link however old the history is: a first deployment, a
second replica started from empty and a `projector rebuild` all read events whose
producer timestamps are weeks old, with the link topic (orders) held back until after
several expiry passes. Link-timeout counts the time an event waited in this store, so
nothing expires and every payment reaches the view (the simulator's oracle). A parked
event that fails validation once its link is known is dead-lettered, never dropped."""
import json
import os
import subprocess
import time

import harness
from harness import avro_string, zigzag

DAY_MS = 86400 * 1000
WEEKS_MS = 21 * DAY_MS  # producer timestamps three weeks old
NOT_ORDERS = "customers,payments,shipments,loyalty,returns"


def replay(bootstrap, workdir, seed, start_ms, topics):
    """The simulator's stream, stamped three weeks ago, produced to `topics` only."""
    return harness.simulate(bootstrap, workdir, 120, seed,
                            ("--start-ms", str(start_ms), "--timestamp-offset-ms", str(WEEKS_MS),
                             "--topics", topics))


def metrics(port):
    try:
        return harness.scrape_metrics(f"http://127.0.0.1:{port}/metrics")
    except OSError:
        return None


def metric(port, name):
    samples = metrics(port)
    return None if samples is None else harness.metric_total(samples, name)


def applied_through(port, events):
    """The daemon has stored offsets covering `events` messages."""
    return (metric(port, "readmodel_partition_next_offset") or 0) >= events


def start_daemon(workdir, broker, processes, name):
    port = harness.free_port()
    home = os.path.join(workdir, name)
    os.makedirs(home, exist_ok=True)
    config = harness.write_config(home, broker.bootstrap,
                                  projector__metrics_listen=f"127.0.0.1:{port}",
                                  projector__parked_check_interval_ms=200)
    daemon = harness.Process(name, [harness.binary("projector/projector"), "--config", config],
                             home)
    processes.append(daemon)
    return config, port


def wait_parked_through_expiry(port, events, what):
    """All `events` applied, some parked, and then three more expiry passes ran."""
    harness.wait_until(lambda: applied_through(port, events), 60, f"{what}: {events} applied")
    checks = harness.wait_until(lambda: metric(port, "readmodel_parked_expiry_checks_total"), 30,
                                f"{what}: a first expiry pass")
    harness.wait_until(
        lambda: metric(port, "readmodel_parked_expiry_checks_total") >= checks + 3, 30,
        f"{what}: three more expiry passes")
    assert metric(port, "readmodel_parked_events") > 0, what
    assert metric(port, "readmodel_parked_expired_total") == 0, what


def check_oracle(config, oracle):
    docs = harness.inspect_docs(config, [e["key"] for e in oracle])
    problems = harness.compare_with_oracle(
        oracle, lambda key: docs[key]["sections"] if docs[key] else None)
    assert not problems, f"{len(problems)} differ; first: {problems[:5]}"
    assert json.loads(harness.inspect(config, "stats").stdout)["pending"] == 0






def payment_settled(event_id, payment_id, order_id):
    """A Confluent-framed c360.payments.PaymentSettled v1 (schema id 6, catalog.yaml)."""
    body = (avro_string(event_id) + zigzag(1000) + zigzag(1) + avro_string(payment_id)
            + avro_string(order_id) + zigzag(500) + avro_string("EUR"))
    return b"\x00\x00\x00\x00\x06" + body


def dead_letters(bootstrap, topic):
    out = subprocess.run(["kcat", "-b", bootstrap, "-C", "-t", topic + ".dlq", "-o", "beginning",
                          "-e", "-q", "-f", "%h\n"], capture_output=True, text=True, timeout=60)
    return [dict(h.split("=", 1) for h in line.split(",") if "=" in h)
            for line in out.stdout.splitlines()]


def test_weeks_old_history_with_the_link_topic_held_back(broker, workdir, processes):
    start_ms = int(time.time() * 1000) - WEEKS_MS
    summary, oracle_path = replay(broker.bootstrap, workdir, 81, start_ms, NOT_ORDERS)
    oracle = harness.read_oracle(oracle_path)
    first = summary["events"] - summary["by_topic"]["orders"]
    # A payment with a valid order id and no payment id, parked like the others: poison
    # that only shows once its order is known.
    order_id = next(o["order_id"] for c in oracle if not c["erased"]
                    for o in c["sections"]["orders"])
    subprocess.run(["kcat", "-P", "-b", broker.bootstrap, "-t", "payments", "-p", "0", "-k",
                    "P-empty"], input=payment_settled("E-empty", "", order_id), check=True,
                   timeout=60)
    first += 1

    config_a, port_a = start_daemon(workdir, broker, processes, "replica-a")
    wait_parked_through_expiry(port_a, first, "first deployment")
    # A second replica from empty, over the same old history, while orders are still held.
    config_b, port_b = start_daemon(workdir, broker, processes, "replica-b")
    wait_parked_through_expiry(port_b, first, "second replica")

    replay(broker.bootstrap, workdir, 81, start_ms, "orders")
    for config, port in ((config_a, port_a), (config_b, port_b)):
        harness.wait_until(lambda: applied_through(port, summary["events"] + 1)
                           and metric(port, "readmodel_parked_events") == 0, 60,
                           "orders applied, nothing parked")
        assert metric(port, "readmodel_parked_expired_total") == 0
        check_oracle(config, oracle)
    # The empty payment id is dead-lettered by each replica once its order is known, with
    # a reason, exactly as if it had come after its order.
    for port in (port_a, port_b):
        assert metric(port, "readmodel_dead_letters_total") == 1
    got = harness.wait_until(lambda: dead_letters(broker.bootstrap, "payments"), 30,
                             "the unparked poison in payments.dlq")
    assert {(h["__connect.errors.partition"], h["__connect.errors.exception.class.name"])
            for h in got} == {("0", "validation")}, got
    assert all(h.get("__connect.errors.exception.message") for h in got), got


def test_a_rebuild_over_weeks_old_history_keeps_what_waits_for_a_link(broker, workdir, processes):
    start_ms = int(time.time() * 1000) - WEEKS_MS
    summary, oracle_path = replay(broker.bootstrap, workdir, 82, start_ms, NOT_ORDERS)
    first = summary["events"] - summary["by_topic"]["orders"]
    config, port = start_daemon(workdir, broker, processes, "daemon")
    wait_parked_through_expiry(port, first, "daemon")

    # The rebuild reads the same old history into a new generation; its expiry passes
    # run after every batch here (parked_check_interval_ms is shorter than a batch).
    out = subprocess.run([harness.binary("projector/projector"), "--config", config, "rebuild"],
                         cwd=harness.ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "link-timeout" not in out.stderr, out.stderr[-3000:]
    harness.wait_until(lambda: metric(port, "readmodel_store_generation") == 2, 30,
                       "daemon on generation 2")
    stats = json.loads(harness.inspect(config, "stats").stdout)
    assert stats["pending"] > 0, stats  # the rebuilt generation kept them waiting

    replay(broker.bootstrap, workdir, 82, start_ms, "orders")
    harness.wait_until(lambda: applied_through(port, summary["events"])
                       and metric(port, "readmodel_parked_events") == 0, 60,
                       "orders applied on generation 2, nothing parked")
    assert metric(port, "readmodel_parked_expired_total") == 0
    check_oracle(config, harness.read_oracle(oracle_path))


def test_an_event_whose_link_never_comes_still_expires(broker, workdir, processes):
    """The fix must not switch expiry off: with a 2 s limit, a payment whose order never
    comes is dead-lettered (link-timeout) once it has waited that long in the store."""
    port = harness.free_port()
    config = harness.write_config(workdir, broker.bootstrap,
                                  projector__metrics_listen=f"127.0.0.1:{port}",
                                  projector__parked_check_interval_ms=200,
                                  projector__parked_max_age_s=2)
    daemon = harness.Process("projector", [harness.binary("projector/projector"), "--config",
                                           config], workdir)
    processes.append(daemon)
    harness.wait_until(lambda: metric(port, "readmodel_parked_expiry_checks_total"), 30,
                       "a first expiry pass")
    subprocess.run(["kcat", "-P", "-b", broker.bootstrap, "-t", "payments", "-p", "2", "-k",
                    "P-orphan"], input=payment_settled("E-orphan", "P-orphan", "O-never"),
                   check=True, timeout=60)
    harness.wait_until(lambda: metric(port, "readmodel_parked_events") == 1, 30, "parked")
    parked_at = time.monotonic()
    harness.wait_until(lambda: metric(port, "readmodel_parked_expired_total") == 1, 30, "expired")
    assert time.monotonic() - parked_at >= 1.0  # not at once: it waited its time
    got = harness.wait_until(lambda: dead_letters(broker.bootstrap, "payments"), 30,
                             "the link-timeout letter")
    assert got[0]["__connect.errors.exception.class.name"] == "link-timeout", got


def test_oracle_under_chaos_over_weeks_old_history(broker, workdir):
    """The chaos oracle (duplicates, orders held back behind 4,000 messages, poison of every
    shape, v1/v2 writers) with producer timestamps three weeks old, applied in small batches
    with expiry passes every 100 ms while payments wait for their held-back orders."""
    import test_chaos
    manifest, extra = test_chaos.chaos_args(workdir, 83)
    extra[extra.index("--skew") + 1] = "4000"  # orders far behind: parked across batches
    summary, oracle_path = harness.simulate(
        broker.bootstrap, workdir, 600, 83,
        [*extra, "--start-ms", str(int(time.time() * 1000) - WEEKS_MS),
         "--timestamp-offset-ms", str(WEEKS_MS)])
    # Small batches and frequent expiry passes: many passes run while events are parked.
    config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="",
                                  projector__parked_check_interval_ms=100,
                                  projector__batch_max_events=200)
    out = harness.run_projector(config)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "link-timeout" not in out.stderr
    check_oracle(config, harness.read_oracle(oracle_path))
    poison = test_chaos.read_manifest(manifest)
    letters = test_chaos.dead_letters(broker.bootstrap, sorted({p["topic"] for p in poison}))
    assert set(letters) == {(p["topic"], p["partition"], p["offset"]) for p in poison}


def test_no_expiry_while_the_link_topic_has_a_backlog(workdir, processes):
    """Time waited counts only while the link topics are read through. Orders of another
    stream fill the orders topic first, and fetches are slowed (1 KiB per partition, 50 ms
    round trips), so the payments of the stream under test are read early and wait for
    orders that are already in Kafka, behind a backlog that takes seconds to read. With a
    1 s limit none of them may expire for that."""
    control = os.path.join(workdir, "control.fifo")
    broker = harness.DevBroker(workdir, extra=("--control", control))
    processes.append(broker)
    harness.wait_until(lambda: os.path.exists(control), 10, "the control FIFO")
    harness.simulate(broker.bootstrap, workdir, 4000, 85, ("--topics", "orders"))
    summary, oracle_path = harness.simulate(
        broker.bootstrap, workdir, 60, 84,
        ("--start-ms", str(int(time.time() * 1000) - WEEKS_MS),
         "--timestamp-offset-ms", str(WEEKS_MS)))
    fifo = os.open(control, os.O_WRONLY)
    os.write(fifo, b"rtt 1 50\n")
    os.close(fifo)
    config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="",
                                  projector__parked_check_interval_ms=100,
                                  projector__parked_max_age_s=1,
                                  projector__batch_max_events=20,
                                  projector__durability="sync")
    started = time.monotonic()
    out = subprocess.run([harness.binary("projector/projector"), "--config", config,
                          "--until-caught-up"], cwd=harness.ROOT, capture_output=True, text=True,
                         timeout=300, env={**os.environ, "RM_KAFKA_MAX_PARTITION_FETCH_BYTES": "1024"})
    took = time.monotonic() - started
    assert out.returncode == 0, out.stderr[-2000:]
    assert took > 3, f"the backlog took {took:.1f} s: too short to show anything"
    assert "parked event expired" not in out.stderr, out.stderr[-2000:]
    check_oracle(config, harness.read_oracle(oracle_path))
