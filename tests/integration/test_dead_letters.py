"""Poison never blocks a partition: it goes to <topic>.dlq with its coordinates and
reason, exactly once, and `projector dlq list/purge` see it."""
import json
import os
import signal
import subprocess
import time

import harness


def test_poison_goes_to_the_dead_letter_topic(broker, workdir):
    summary, oracle_path = harness.simulate(broker.bootstrap, workdir, 200, 12)
    poison = {"customers": b"not avro at all", "orders": b"\x00\x00\x00\x00\x63unknown-schema"}
    for topic, value in poison.items():
        subprocess.run(["kcat", "-P", "-b", broker.bootstrap, "-t", topic, "-k", "poison-key",
                        "-p", "1"], input=value, check=True, timeout=60)
    config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="")
    for _ in range(2):  # a second run must not publish them again
        out = harness.run_projector(config)
        assert out.returncode == 0, out.stderr[-2000:]
    for topic in poison:
        got = subprocess.run(["kcat", "-b", broker.bootstrap, "-C", "-t", topic + ".dlq",
                              "-o", "beginning", "-e", "-q", "-f", "%k|%h\n"],
                             capture_output=True, text=True, timeout=60).stdout.splitlines()
        assert len(got) == 1, (topic, got)
        key, headers = got[0].split("|", 1)
        assert key == "poison-key"
        assert f"__connect.errors.topic={topic}" in headers
        assert "__connect.errors.partition=1" in headers
        assert "readmodel.view=customer360" in headers
    assert json.loads(harness.inspect(config, "stats").stdout)["outbox"] == 0

    listed = subprocess.run([harness.binary("projector/projector"), "--config", config, "dlq",
                             "list"], cwd=harness.ROOT, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    letters = [json.loads(line) for line in listed.stdout.splitlines()]
    assert sorted(l["topic"] for l in letters) == ["customers", "orders"]
    assert {l["error"] for l in letters} == {"framing", "schema"}
    subprocess.run([harness.binary("projector/projector"), "--config", config, "dlq", "purge"],
                   cwd=harness.ROOT, check=True, capture_output=True, timeout=60)
    listed = subprocess.run([harness.binary("projector/projector"), "--config", config, "dlq",
                             "list"], cwd=harness.ROOT, capture_output=True, text=True, timeout=60)
    assert listed.stdout == ""

    # and the rest of the stream is intact
    oracle = harness.read_oracle(oracle_path)
    docs = harness.inspect_docs(config, [e["key"] for e in oracle])
    problems = harness.compare_with_oracle(
        oracle, lambda key: docs[key]["sections"] if docs[key] else None)
    assert not problems, problems[:5]


def dlq(config, command):
    out = subprocess.run([harness.binary("projector/projector"), "--config", config, "dlq",
                          command], cwd=harness.ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out


def partition_of(bootstrap, topic, key):
    """The partition holding `key`'s messages in `topic` (0 when it has none)."""
    out = subprocess.run(["kcat", "-b", bootstrap, "-C", "-t", topic, "-o", "beginning", "-e",
                          "-q", "-f", "%k %p\n"], capture_output=True, text=True, timeout=60)
    for line in out.stdout.splitlines():
        k, _, p = line.rpartition(" ")
        if k == key:
            return int(p)
    return 0


def test_a_dead_letter_marks_its_customer_degraded_until_handled(broker, workdir):
    """An agent must never see a silently wrong customer: a dead letter whose key names a
    customer (directly, or an order id through the order link) marks that customer's
    document `degraded` with the missing event's coordinates and reason; `dlq purge` and
    `dlq replay` clear the mark through the repairs topic."""
    summary, oracle_path = harness.simulate(broker.bootstrap, workdir, 50, 13)
    oracle = harness.read_oracle(oracle_path)
    live = [c for c in oracle if not c["erased"] and c["sections"]["orders"]]
    direct, linked, clean = live[0]["key"], live[1], live[2]["key"]
    order_id = linked["sections"]["orders"][0]["order_id"]
    # Explicit partitions: kcat's default partitioner is not the simulator's murmur2, so
    # the poison would land on any partition. Each goes to the partition of the event
    # that names its entity, after it, so the order's link is known when it is read
    # (test_a_dead_letter_before_its_link_marks_when_the_link_arrives covers the reverse).
    produce = [("customers", direct, b"\x00\x00\x00\x27\x0fnot a registered schema"),
               ("orders", order_id, b"\x05 wrong magic"),
               ("payments", "P-unknown", b"\x05 nobody to warn")]
    for topic, key, value in produce:
        subprocess.run(["kcat", "-P", "-b", broker.bootstrap, "-t", topic, "-k", key, "-p",
                        str(partition_of(broker.bootstrap, topic, key))],
                       input=value, check=True, timeout=60)
    config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="")
    out = harness.run_projector(config)
    assert out.returncode == 0, out.stderr[-2000:]
    docs = harness.inspect_docs(config, [direct, linked["key"], clean])
    assert docs[clean].get("degraded") is None
    marks = docs[direct]["degraded"]
    assert docs[direct]["degraded_count"] == 1
    assert marks[0]["topic"] == "customers" and marks[0]["error"] == "schema", marks
    assert "reason" in marks[0] and isinstance(marks[0]["offset"], int)
    marks = docs[linked["key"]]["degraded"]
    assert [(m["topic"], m["error"]) for m in marks] == [("orders", "framing")], marks
    # the sections are untouched: degraded says what is missing, it changes nothing else
    for key in (direct, linked["key"]):
        want = next(c for c in oracle if c["key"] == key)["sections"]
        assert docs[key]["sections"] == want

    dlq(config, "purge")
    out = harness.run_projector(config)  # applies the DeadLetterHandled markers
    assert out.returncode == 0, out.stderr[-2000:]
    docs = harness.inspect_docs(config, [direct, linked["key"]])
    assert docs[direct].get("degraded") is None and docs[linked["key"]].get("degraded") is None
    # the marker events are on the repairs topic, one per handled dead letter
    got = subprocess.run(["kcat", "-b", broker.bootstrap, "-C", "-t", "customer360.repairs",
                          "-o", "beginning", "-e", "-q", "-f", "%k\n"],
                         capture_output=True, text=True, timeout=60).stdout.split()
    assert sorted(got) == sorted(k for _, k, _ in produce)

    # replay: the same poison comes back, is dead-lettered again, and marks again
    subprocess.run(["kcat", "-P", "-b", broker.bootstrap, "-t", "customers", "-k", direct],
                   input=b"\x05 more poison", check=True, timeout=60)
    assert harness.run_projector(config).returncode == 0
    before = harness.inspect_docs(config, [direct])[direct]["degraded"]
    assert len(before) == 1
    dlq(config, "replay")
    assert harness.run_projector(config).returncode == 0
    after = harness.inspect_docs(config, [direct])[direct]["degraded"]
    # the replayed copy failed again: a new mark (its new offset), the old one is cleared
    assert len(after) == 1 and after[0]["offset"] > before[0]["offset"], (before, after)


def letters_by_origin(bootstrap, topic):
    """{(topic, partition, offset): [replica header or None, ...]} of <topic>.dlq."""
    out = subprocess.run(["kcat", "-b", bootstrap, "-C", "-t", topic + ".dlq", "-o",
                          "beginning", "-e", "-q", "-f", "%h\n"],
                         capture_output=True, text=True, timeout=60)
    found = {}
    for line in out.stdout.splitlines():
        headers = dict(h.split("=", 1) for h in line.split(",") if "=" in h)
        where = (headers["__connect.errors.topic"], int(headers["__connect.errors.partition"]),
                 int(headers["__connect.errors.offset"]))
        found.setdefault(where, []).append(headers.get("readmodel.replica"))
    return found


def test_two_replicas_restart_without_losing_or_doubling(broker, workdir):
    """Two replicas of one view (same consumer group, as two pods without their own
    RM_KAFKA_GROUP_ID) publish to the same DLQ partition. A replica killed before it
    published its letters must publish every one of them after its restart, although the
    other replica's letters carry the same sequence numbers; a restart of the other one
    publishes nothing again. Each replica publishes each poison message exactly once."""
    poison = [b"not avro %d" % i for i in range(12)]
    for value in poison:  # one partition: one DLQ partition, sequences 1..12 in both
        subprocess.run(["kcat", "-P", "-b", broker.bootstrap, "-t", "customers", "-k", "poison",
                        "-p", "0"], input=value, check=True, timeout=60)
    configs = []
    for name in ("a", "b"):
        os.makedirs(os.path.join(workdir, name))
        configs.append(harness.write_config(os.path.join(workdir, name), broker.bootstrap,
                                            projector__metrics_listen=""))
    config_a, config_b = configs
    out = harness.run_projector(config_b)
    assert out.returncode == 0, out.stderr[-2000:]
    # Replica A dies right after its first commit, before publishing what it recorded.
    killed = subprocess.run([harness.binary("projector/projector"), "--config", config_a,
                             "--until-caught-up"], cwd=harness.ROOT, capture_output=True,
                            text=True, timeout=120,
                            env=dict(os.environ, RM_FAILPOINT="batch-commit:1"))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    recorded = json.loads(harness.inspect(config_a, "stats").stdout)["outbox"]
    assert recorded > 0
    for config in (config_a, config_b):
        out = harness.run_projector(config)
        assert out.returncode == 0, out.stderr[-2000:]
        assert json.loads(harness.inspect(config, "stats").stdout)["outbox"] == 0
    letters = letters_by_origin(broker.bootstrap, "customers")
    assert len(letters) == len(poison), sorted(letters)
    for where, replicas in letters.items():
        assert len(replicas) == 2, (where, replicas)
        assert len(set(replicas)) == 2 and None not in replicas, (where, replicas)
    # `dlq purge` handles each poison message once, whichever replicas dead-lettered it.
    out = dlq(config_a, "purge")
    assert f"purge: {len(poison)} dead letter(s)" in out.stderr, out.stderr
    markers = subprocess.run(["kcat", "-b", broker.bootstrap, "-C", "-t", "customer360.repairs",
                              "-o", "beginning", "-e", "-q", "-f", "%k\n"],
                             capture_output=True, text=True, timeout=60).stdout.split()
    assert len(markers) == len(poison), markers


def kafka_group_offsets(bootstrap, group, topics=harness.TOPICS):
    """{(topic, partition): offset} the consumer group has committed in Kafka."""
    from kafka import KafkaConsumer, TopicPartition
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                             enable_auto_commit=False, api_version=(2, 0, 0))
    try:
        found = {}
        for topic in topics:
            for partition in consumer.partitions_for_topic(topic) or ():
                offset = consumer.committed(TopicPartition(topic, partition))
                if offset is not None and offset >= 0:
                    found[(topic, partition)] = offset
        return found
    finally:
        consumer.close()


def test_nothing_leaves_before_the_store_is_durable(broker, workdir, processes):
    """Periodic durability: an OS crash loses the commits since the last fsync, and with
    them the offsets and dead letters they recorded. So neither a dead letter nor a Kafka
    offset commit may leave the process before the store commit behind it is on disk:
    with the background fsync an hour away, a daemon that has applied everything has
    published nothing; its clean exit syncs, and then publishes both."""
    summary, _ = harness.simulate(broker.bootstrap, workdir, 30, 14)
    subprocess.run(["kcat", "-P", "-b", broker.bootstrap, "-t", "orders", "-k", "poison",
                    "-p", "2"], input=b"\x05 wrong magic", check=True, timeout=60)
    config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="",
                                  projector__sync_interval_ms=3600000)
    daemon = harness.Process("projector", [harness.binary("projector/projector"), "--config",
                                           config], workdir)
    processes.append(daemon)
    harness.wait_until(lambda: harness.committed_offsets(config) == summary["events"] + 1,
                       120, "the stream and the poison applied")
    # Everything is committed in the store (the dead letter with it); a batch's dead
    # letters and offsets would leave right after its commit.
    assert json.loads(harness.inspect(config, "stats").stdout)["outbox"] == 1
    assert letters_by_origin(broker.bootstrap, "orders") == {}
    assert kafka_group_offsets(broker.bootstrap, "readmodel-customer360") == {}
    assert daemon.stop() == 0
    letters = letters_by_origin(broker.bootstrap, "orders")
    assert [(topic, partition) for topic, partition, _ in letters] == [("orders", 2)], letters
    committed = kafka_group_offsets(broker.bootstrap, "readmodel-customer360")
    assert sum(committed.values()) == summary["events"] + 1, committed


def test_a_rebuilds_held_letters_are_published_after_the_switch(broker, workdir):
    """`rebuild --from-time` while the daemon is behind: the rebuild holds the dead letters
    of the later stream under its own sequence numbers, which the current generation has
    already published under. After the switch the daemon publishes every held letter
    once, and none of the current generation's again."""
    from test_chaos import dead_letters
    from test_rebuild import iso, projector
    manifest_a, manifest_b = f"{workdir}/poison-a.jsonl", f"{workdir}/poison-b.jsonl"
    harness.simulate(broker.bootstrap, workdir, 60, 81, ["--poison", "8", "--poison-manifest",
                                                         manifest_a])
    config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="")
    assert harness.run_projector(config).returncode == 0
    start = time.time()
    # Message timestamps are the producer's clock: stream B is stamped after `start`.
    harness.simulate(broker.bootstrap, workdir, 60, 82, ["--poison", "8", "--poison-manifest",
                                                         manifest_b])
    out = projector(config, "rebuild", "--from-time", iso(start))
    assert out.returncode == 0, out.stderr[-3000:]
    out = harness.run_projector(config)  # the daemon, on the new generation
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(harness.inspect(config, "stats").stdout)["outbox"] == 0
    wanted = {(p["topic"], p["partition"], p["offset"])
              for path in (manifest_a, manifest_b) for p in map(json.loads, open(path))}
    assert len(wanted) == 16
    assert set(dead_letters(broker.bootstrap, harness.TOPICS)) == wanted  # each exactly once


def test_a_quiet_nometasync_view_commits_its_last_offsets(broker, workdir, processes):
    """nometasync: a commit is durable once the next one is; when the view goes quiet
    there is no next one, and the last batch's Kafka offsets must still go out, without
    a restart. (Its dead letters too: tests/unit/test-outbox.c.)"""
    summary, _ = harness.simulate(broker.bootstrap, workdir, 20, 15)
    config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="",
                                  projector__durability="nometasync")
    daemon = harness.Process("projector", [harness.binary("projector/projector"), "--config",
                                           config], workdir)
    processes.append(daemon)
    harness.wait_until(lambda: sum(kafka_group_offsets(broker.bootstrap,
                                                       "readmodel-customer360").values())
                       == summary["events"], 60, "the last offsets committed to Kafka")
    assert harness.committed_offsets(config) == summary["events"]
    assert daemon.alive()


def test_a_dead_letter_before_its_link_marks_when_the_link_arrives(broker, workdir):
    """A dead letter whose key reaches its customer only through a link not known yet (an
    order's poison read before the order) waits for the link, as events do: the customer
    is marked when the order arrives. A letter handled before its link arrives never
    marks anyone."""
    start = ("--start-ms", "1700000000000")
    held = ("customers,payments,shipments,loyalty,returns")
    summary, oracle_path = harness.simulate(broker.bootstrap, workdir, 50, 14,
                                            (*start, "--topics", held))
    oracle = harness.read_oracle(oracle_path)
    live = [c for c in oracle if not c["erased"] and c["sections"]["orders"]]
    handled, waiting = live[0], live[1]
    config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="")

    def poison(customer, partition):
        order_id = customer["sections"]["orders"][0]["order_id"]
        subprocess.run(["kcat", "-P", "-b", broker.bootstrap, "-t", "orders", "-k", order_id,
                        "-p", str(partition)], input=b"\x05 wrong magic", check=True, timeout=60)

    # The first letter is handled (purged) while its order is still unknown.
    poison(handled, 0)
    assert harness.run_projector(config).returncode == 0
    dlq(config, "purge")
    assert harness.run_projector(config).returncode == 0  # applies the handled marker
    # The second one stays unhandled.
    poison(waiting, 1)
    assert harness.run_projector(config).returncode == 0
    docs = harness.inspect_docs(config, [handled["key"], waiting["key"]])
    assert docs[waiting["key"]].get("degraded") is None  # its order is not known yet

    harness.simulate(broker.bootstrap, workdir, 50, 14, (*start, "--topics", "orders"))
    out = harness.run_projector(config)
    assert out.returncode == 0, out.stderr[-2000:]
    docs = harness.inspect_docs(config, [handled["key"], waiting["key"]])
    marks = docs[waiting["key"]].get("degraded")
    assert marks and [(m["topic"], m["partition"], m["error"]) for m in marks] == [
        ("orders", 1, "framing")], marks
    assert docs[handled["key"]].get("degraded") is None, docs[handled["key"]].get("degraded")
    for key in (handled["key"], waiting["key"]):
        want = next(c for c in oracle if c["key"] == key)["sections"]
        assert docs[key]["sections"] == want
    # Nothing is left waiting: the marks were applied or cancelled.
    assert json.loads(harness.inspect(config, "stats").stdout)["pending"] == 0

    dlq(config, "purge")
    assert harness.run_projector(config).returncode == 0
    assert harness.inspect_docs(config, [waiting["key"]])[waiting["key"]].get("degraded") is None
