"""What only a real Apache Kafka broker can show (the dev broker's mock cluster has no
transaction markers, no offsets-for-times, no group tooling of its own): transactions
read committed and caught up past their markers, and lag as Kafka's own
kafka-consumer-groups tool reports it. Each test runs on the session's tools/kafka
cluster (RM_KAFKA=0 skips them)."""
import heapq
import json
import os
import subprocess

import harness

GROUP = "readmodel-customer360"  # the projector's default group.id: readmodel-<view>


def recorded_stream(workdir, processes, customers, seed):
    """The simulator's stream for `seed`, produced to a throwaway dev broker and read
    back: (messages in production order, oracle path). Each message is a dict with
    topic, partition, key, value, headers and timestamp, so a test can re-produce it
    to real Kafka however it likes (here: inside transactions)."""
    ck = harness.kafka_admin_module()
    sub = os.path.join(workdir, f"stream-{seed}")
    os.makedirs(sub)
    dev = harness.DevBroker(sub)
    processes.append(dev)
    summary, oracle = harness.simulate(dev.bootstrap, workdir, customers, seed)
    consumer = ck.Consumer({"bootstrap.servers": dev.bootstrap, "group.id": f"copy-{seed}",
                            "enable.auto.commit": False, "log_level": 0})
    assignment, expected = [], 0
    for topic in harness.TOPICS:
        for partition in range(6):
            low, high = consumer.get_watermark_offsets(ck.TopicPartition(topic, partition),
                                                       timeout=10)
            assignment.append(ck.TopicPartition(topic, partition, low))
            expected += high - low
    consumer.assign(assignment)
    by_partition = {}
    got = 0
    while got < expected:
        for m in consumer.consume(min(10000, expected - got), timeout=5):
            assert not m.error(), m.error()
            by_partition.setdefault((m.topic(), m.partition()), []).append(
                {"topic": m.topic(), "partition": m.partition(), "key": m.key(),
                 "value": m.value(), "headers": m.headers(), "timestamp": m.timestamp()[1],
                 "offset": m.offset()})
            got += 1
    per_partition = [sorted(msgs, key=lambda m: m["offset"]) for msgs in by_partition.values()]
    consumer.close()
    dev.stop()
    # Production order, as near as the timestamps tell: a merge of the partitions, each
    # in offset order, so an entity's events keep their order.
    merged = list(heapq.merge(*per_partition, key=lambda m: m["timestamp"]))
    assert len(merged) == summary["events"], (len(merged), summary)
    return merged, oracle


def produce(producer, msg):
    producer.produce(msg["topic"], value=msg["value"], key=msg["key"],
                     partition=msg["partition"], headers=msg["headers"],
                     timestamp=msg["timestamp"])


def stored_offsets(config):
    out = harness.inspect(config, "offsets")
    assert out.returncode == 0, out.stderr
    return {(p["topic"], p["partition"]): p for p in json.loads(out.stdout)}


def log_end_offsets(ck, bootstrap):
    consumer = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": "log-end-probe",
                            "log_level": 0})
    ends = {}
    for topic in harness.TOPICS:
        for partition in range(6):
            ends[(topic, partition)] = consumer.get_watermark_offsets(
                ck.TopicPartition(topic, partition), timeout=10)[1]
    consumer.close()
    return ends


def test_transactions_only_committed_events_reach_the_view(kafka, workdir, processes):
    """Stream A is produced in committed transactions and stream B, interleaved with it,
    in aborted ones. The view must hold exactly stream A (the consumer reads committed),
    and the projector must be caught up: its stored offsets equal the log end, which lies
    past the last transaction marker, not one before it."""
    ck = harness.kafka_admin_module()
    committed, oracle_a = recorded_stream(workdir, processes, 150, 71)
    aborted, oracle_b = recorded_stream(workdir, processes, 150, 72)
    keys_a = {e["key"] for e in harness.read_oracle(oracle_a)}
    keys_b = {e["key"] for e in harness.read_oracle(oracle_b)}
    assert not keys_a & keys_b, "the two streams must not share customers"

    producer = ck.Producer({"bootstrap.servers": kafka.bootstrap, "transactional.id": "tx-test",
                            "message.max.bytes": 8000000, "log_level": 0})
    producer.init_transactions(30)
    batch = 400
    commits = aborts = 0
    for i in range(0, max(len(committed), len(aborted)), batch):
        for msgs, commit in ((committed[i:i + batch], True), (aborted[i:i + batch], False)):
            if not msgs:
                continue
            producer.begin_transaction()
            for msg in msgs:
                produce(producer, msg)
                producer.poll(0)
            if commit:
                producer.commit_transaction(30)
                commits += 1
            else:
                # Flushed first: abort_transaction purges what is still queued in the
                # client, and the aborted records must really be in the log.
                producer.flush(30)
                producer.abort_transaction(30)
                aborts += 1
    assert commits >= 5 and aborts >= 5, (commits, aborts)
    ends = log_end_offsets(ck, kafka.bootstrap)
    assert sum(ends.values()) >= len(committed) + len(aborted), \
        (sum(ends.values()), len(committed), len(aborted))

    config = harness.write_config(workdir, kafka.bootstrap, projector__metrics_listen="")
    try:
        out = harness.run_projector(config, timeout=60)
    except subprocess.TimeoutExpired:
        ends = log_end_offsets(ck, kafka.bootstrap)
        short = {f"{t}:{p}": (o["next_offset"], ends[(t, p)])
                 for (t, p), o in stored_offsets(config).items() if o["next_offset"] != ends[(t, p)]}
        raise AssertionError("--until-caught-up did not return in 60 s; stored next offset "
                             f"vs log end: {short}") from None
    assert out.returncode == 0, out.stderr[-3000:]

    docs_a = harness.inspect_docs(config, sorted(keys_a))
    problems = harness.compare_with_oracle(
        harness.read_oracle(oracle_a), lambda k: docs_a[k]["sections"] if docs_a[k] else None)
    assert not problems, f"{len(problems)} committed customers differ; first: {problems[:5]}"
    docs_b = harness.inspect_docs(config, sorted(keys_b))
    leaked = [k for k, doc in docs_b.items() if doc is not None]
    assert not leaked, f"{len(leaked)} customers of aborted transactions are in the view"

    # Every partition ends with a marker (commit or abort) at log end - 1: the projector
    # must stand at the log end itself, with nothing left to read.
    stored = stored_offsets(config)
    behind = {tp: (stored.get(tp, {}).get("next_offset"), end) for tp, end in ends.items()
              if end > 0 and stored.get(tp, {}).get("next_offset") != end}
    assert not behind, f"stored next offset != log end (stored, end): {behind}"
    assert all(p["lag_messages"] == 0 for p in stored.values()), stored
    # Lag tooling agrees: the group's committed offsets are past the markers too.
    rows = kafka_consumer_groups(kafka.bootstrap, GROUP)
    lagging = {tp: row for tp, row in rows.items() if row[2] != 0 and row[1] > 0}
    assert not lagging, f"kafka-consumer-groups reports lag (current, end, lag): {lagging}"


def kafka_consumer_groups(bootstrap, group):
    """kafka-consumer-groups --describe, Kafka's own tool (Kafka 4.x: java -cp with
    org.apache.kafka.tools.consumer.group.ConsumerGroupCommand, run by tools/kafka):
    {(topic, partition): (current offset or None, log end offset, lag or None)}."""
    out = subprocess.run([os.path.join(harness.ROOT, "tools/kafka"), "tool", "consumer-groups",
                          "--bootstrap-server", bootstrap, "--describe", "--group", group],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    rows = {}
    header = None

    def number(text):
        return None if text == "-" else int(text)
    for line in out.stdout.splitlines():
        cols = line.split()
        if cols[:1] == ["GROUP"]:
            header = cols
            continue
        if header and len(cols) >= 6 and cols[0] == group:
            row = dict(zip(header, cols))
            rows[(row["TOPIC"], int(row["PARTITION"]))] = (
                number(row["CURRENT-OFFSET"]), int(row["LOG-END-OFFSET"]), number(row["LAG"]))
    assert rows, f"no partitions in the tool's answer:\n{out.stdout}\n{out.stderr}"
    return rows


def test_committed_offsets_and_lag_are_what_kafka_consumer_groups_reports(kafka, workdir):
    """The projector commits its stored offsets to its group for lag tooling. Kafka's
    own kafka-consumer-groups must then report, per partition, the store's next offset
    as the group's current offset, and as lag exactly the events produced since: zero
    when caught up, stream 2's events behind a stopped projector."""
    ck = harness.kafka_admin_module()
    summary1, _ = harness.simulate(kafka.bootstrap, workdir, 150, 81)
    config = harness.write_config(workdir, kafka.bootstrap, projector__metrics_listen="")
    out = harness.run_projector(config)
    assert out.returncode == 0, out.stderr[-3000:]

    def check(want_total_lag):
        stored = stored_offsets(config)
        rows = kafka_consumer_groups(kafka.bootstrap, GROUP)
        ends = log_end_offsets(ck, kafka.bootstrap)
        problems = []
        for tp, end in ends.items():
            if end == 0:
                continue
            next_offset = stored[tp]["next_offset"]
            want = (next_offset, end, end - next_offset)
            if rows.get(tp) != want:
                problems.append(f"{tp[0]}:{tp[1]} tool {rows.get(tp)} != store/log end {want}")
        assert not problems, problems[:10]
        total = sum(lag for _, _, lag in rows.values() if lag)
        assert total == want_total_lag, (total, want_total_lag)

    check(0)
    # Behind a stopped projector: the tool's lag is the new stream, partition by partition.
    summary2, _ = harness.simulate(kafka.bootstrap, workdir, 100, 82)
    check(summary2["events"])
    out = harness.run_projector(config)
    assert out.returncode == 0, out.stderr[-3000:]
    check(0)
