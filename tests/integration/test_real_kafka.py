"""What only a real Apache Kafka broker can show (the dev broker's mock cluster has no
transactions, no log cleaner and no tools of its own): transactions read committed and
caught up past their markers, lag as Kafka's own kafka-consumer-groups tool reports it,
and a rebuild after compaction. Each test runs on the session's tools/kafka cluster
(RM_KAFKA=0 skips them); the time seek is test_rebuild.py's [kafka] case."""
import heapq
import json
import os
import signal
import subprocess

import pytest

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
    # reconcile's replay stops at the live store's offsets, which now lie past the
    # last marker: it must get there too, and find no drift.
    from test_replay import diff_replay
    try:
        out, findings, _ = diff_replay(config, workdir)
    except subprocess.TimeoutExpired:
        raise AssertionError("diff-replay did not reach the live store's offsets in 120 s") from None
    assert out.returncode == 0, (out.returncode, out.stderr[-2000:])
    assert findings == [], findings[:5]


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


# Compaction as fast as Kafka allows: segments roll after 500 ms (at the next append),
# the cleaner looks every second (tools/kafka) and cleans any dirty closed segment;
# tombstones are kept a day, far past the test.
COMPACTED = {"cleanup.policy": "compact", "segment.ms": "500", "min.cleanable.dirty.ratio": "0.001",
             "min.compaction.lag.ms": "0", "delete.retention.ms": "86400000"}


def records_and_span(ck, bootstrap, topic):
    """(records readable in topic, offsets between log start and log end)."""
    consumer = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": "count-probe",
                            "enable.auto.commit": False, "log_level": 0})
    ends, assignment, span = {}, [], 0
    for partition in range(6):
        low, high = consumer.get_watermark_offsets(ck.TopicPartition(topic, partition), timeout=10)
        ends[partition] = high
        span += high - low
        if high > low:
            assignment.append(ck.TopicPartition(topic, partition, low))
    consumer.assign(assignment)
    count, last = 0, {}
    while any(last.get(p, -1) + 1 < ends[p] for p in ends if ends[p] > 0):
        msgs = consumer.consume(10000, timeout=5)
        assert msgs, "no records while some remain"
        for m in msgs:
            assert not m.error(), m.error()
            count += 1
            last[m.partition()] = m.offset()
    consumer.close()
    return count, span


def test_rebuild_after_compaction_of_customers(kafka, workdir):
    """customers compacted, with tombstones, and a rebuild after the cleaner ran: every
    erasure (tombstone or CustomerErased) survives, every section fed by the other
    topics equals the oracle, and the profile is what the newest record of each key
    says. Since customers carries deltas (CustomerRegistered, then CustomerContactUpdated),
    a profile whose registration was compacted away loses the registration's fields:
    docs/kafka.md says to compact only topics whose records carry the whole state."""
    ck = harness.kafka_admin_module()
    kafka.cluster.reset(topic_configs={"customers": COMPACTED})
    _, oracle_path = harness.simulate(kafka.bootstrap, workdir, 200, 95)
    oracle = harness.read_oracle(oracle_path)
    erase = [e["key"] for e in oracle if not e["erased"]][:10]
    subprocess.run(["kcat", "-P", "-b", kafka.bootstrap, "-t", "customers", "-Z", "-K", "|"],
                   input="".join(f"{k}|\n" for k in erase).encode(), check=True, timeout=60)
    config = harness.write_config(workdir, kafka.bootstrap, projector__metrics_listen="")
    out = harness.run_projector(config)
    assert out.returncode == 0, out.stderr[-3000:]

    # A segment closes at the first append after segment.ms; the cleaner only compacts
    # closed ones. Append tombstones of keys no one has until the records readable in
    # customers are fewer than its offsets (the cleaner removed some).
    def compacted():
        subprocess.run(["kcat", "-P", "-b", kafka.bootstrap, "-t", "customers", "-Z", "-K", "|"],
                       input="".join(f"roll-{p}|\n" for p in range(24)).encode(),
                       check=True, timeout=60)
        records, span = records_and_span(ck, kafka.bootstrap, "customers")
        return records < span
    harness.wait_until(compacted, 60, "the log cleaner to compact customers", interval=0.5)

    out = subprocess.run([harness.binary("projector/projector"), "--config", config, "rebuild"],
                         cwd=harness.ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    docs = harness.inspect_docs(config, [e["key"] for e in oracle])
    back = [k for k in erase if docs[k] is not None]
    back += [e["key"] for e in oracle if e["erased"] and docs[e["key"]] is not None]
    assert not back, f"erased customers came back after compaction and rebuild: {back}"
    problems, lost_registration = [], 0
    newest = ("preferred_channel", "marketing_opt_in", "updated_at")
    for e in oracle:
        if e["erased"] or e["key"] in erase:
            continue
        got = docs[e["key"]]
        if got is None:
            problems.append(f"{e['key']}: missing")
            continue
        for section, want in e["sections"].items():
            have = got["sections"].get(section)
            if section == "profile" and have != want:
                lost_registration += 1
                if any(have[f] != want[f] for f in newest) or any(
                        have[f] not in (None, want[f]) for f in want):
                    problems.append(f"{e['key']}: profile {have} is not the newest record of {want}")
                continue
            diff = harness.first_difference(have, want, section)
            if diff:
                problems.append(f"{e['key']}: {diff}")
    assert not problems, f"{len(problems)} differ; first: {problems[:5]}"
    assert lost_registration > 0, "the cleaner compacted no registration away"


@pytest.fixture(scope="module")
def kafka3(tmp_path_factory):
    """A 3-node cluster of its own (every node a broker and a KRaft voter)."""
    if os.environ.get("RM_KAFKA", "1") == "0":
        pytest.skip("real Kafka disabled (RM_KAFKA=0)")
    cluster = harness.RealKafka(str(tmp_path_factory.mktemp("kafka3")), nodes=3)
    yield cluster
    cluster.stop()


def test_leader_sigkill_during_projection_equals_the_oracle(kafka3, workdir, processes):
    """Replication factor 3, min.insync.replicas=2, the projector running throughout:
    stream 1 is produced; the broker leading orders:0 is SIGKILLed while the projector
    works through it; stream 2 is produced with that broker dead; it is restarted and
    stream 3 produced. Nothing acknowledged is lost and the view equals the oracles."""
    kafka3.reset(topic_configs={t: {"min.insync.replicas": "2"} for t in harness.BROKER_TOPICS})
    config = harness.write_config(workdir, kafka3.bootstrap, projector__metrics_listen="")
    daemon = harness.Process("projector", [harness.binary("projector/projector"), "--config", config],
                             workdir)
    processes.append(daemon)
    summaries, oracles = [], []

    def stream(seed):
        summary, oracle = harness.simulate(kafka3.bootstrap, workdir, 700, seed)
        summaries.append(summary)
        oracles.append(oracle)

    def leader_of_orders0():
        return kafka3.admin.list_topics(topic="orders", timeout=30).topics["orders"].partitions[0].leader

    stream(97)
    leader = leader_of_orders0()
    os.kill(int(open(os.path.join(kafka3.cluster_dir, f"node-{leader}", "pid")).read()),
            signal.SIGKILL)
    # The controller fences a silent broker after broker.session.timeout.ms (9 s).
    harness.wait_until(lambda: leader_of_orders0() not in (leader, -1), 60,
                       "a new leader of orders:0")
    stream(98)
    subprocess.run([os.path.join(harness.ROOT, "tools/kafka"), "restart-node", kafka3.cluster_dir,
                    str(leader)], check=True, timeout=30)
    harness.wait_until(
        lambda: len(kafka3.admin.describe_cluster(request_timeout=10).result().nodes) == 3,
        90, f"node {leader} to rejoin")
    stream(99)
    assert daemon.alive(), daemon.log_text()[-2000:]
    assert daemon.stop() == 0
    out = harness.run_projector(config)
    assert out.returncode == 0, out.stderr[-3000:]
    entries = [e for path in oracles for e in harness.read_oracle(path)]
    docs = harness.inspect_docs(config, [e["key"] for e in entries])
    problems = harness.compare_with_oracle(entries, lambda k: docs[k]["sections"] if docs[k] else None)
    assert not problems, f"{len(problems)} differ; first: {problems[:5]}"
    assert harness.committed_offsets(config) == sum(s["events"] for s in summaries), summaries


def sasl_settings(kafka, mechanism="PLAIN", ca=None):
    """The config file's kafka: keys for the cluster's SASL_SSL listener; the password
    comes from the environment (RM_KAFKA_SASL_PASSWORD), as docs/kafka.md advises."""
    return {"security.protocol": "SASL_SSL", "sasl.mechanisms": mechanism,
            "sasl.username": harness.RealKafka.SASL_USER, "ssl.ca.location": ca or kafka.ca}


# librdkafka before 2.6.1 appends the client's nonce to the server's nonce a second time
# in its SCRAM client-final-message (confluentinc/librdkafka#4895); Kafka 4.x compares
# the nonce strictly and refuses the login whatever the password. librdkafka's C ABI
# (soname librdkafka.so.1) is the same across 2.x, so the projector built against the
# system's 2.0.2 runs unchanged against a newer one.
SCRAM_FIXED_VERSION = 0x020601ff  # 2.6.1, as rd_kafka_version() encodes it


def runtime_librdkafka(env=None):
    """The librdkafka version the projector runs with: (text, rd_kafka_version() form)."""
    out = subprocess.run([harness.binary("projector/projector"), "--version"], cwd=harness.ROOT,
                         capture_output=True, text=True, timeout=30, env=env)
    text = next(line.split()[1] for line in (out.stdout + out.stderr).splitlines()
                if line.strip().startswith("librdkafka "))
    major, minor, patch = (int(x) for x in text.split(".")[:3])
    return text, (major << 24) | (minor << 16) | (patch << 8) | 0xff


def scram_capable_librdkafka(workdir):
    """A directory whose librdkafka.so.1 is 2.6.1 or later: the one confluent-kafka's wheel
    (PyPI, installed by tools/lib.sh) bundles, under the soname the projector asks for.
    None when that wheel has none or an older one."""
    import glob
    ck = harness.kafka_admin_module()
    if ck.libversion()[1] < SCRAM_FIXED_VERSION:
        return None
    libs = glob.glob(os.path.join(os.path.dirname(os.path.dirname(ck.__file__)),
                                  "confluent_kafka.libs", "librdkafka*.so.1"))
    if len(libs) != 1:
        return None
    libdir = os.path.join(workdir, "librdkafka")
    os.makedirs(libdir)
    os.symlink(libs[0], os.path.join(libdir, "librdkafka.so.1"))
    return libdir


def test_sasl_ssl_scram_sha_512_with_a_librdkafka_that_has_the_nonce_fix(kafka, workdir):
    """SCRAM-SHA-512 over SASL_SSL works through config alone once librdkafka has the
    nonce fix (2.6.1): the same projector and reconcile binaries, run against the
    librdkafka confluent-kafka bundles, reach the oracle, and a wrong SCRAM password
    still exits 2 within seconds. So the broker's SCRAM credential (tools/kafka creates
    it at format time) is right, and what fails with the system's 2.0.2 is the client
    (test_sasl_ssl_refusals_exit_2_fast[scram-sha-512], docs/kafka.md)."""
    import time
    libdir = scram_capable_librdkafka(workdir)
    if libdir is None:
        pytest.skip("no librdkafka >= 2.6.1 beside confluent-kafka to run the projector with")
    env = dict(os.environ, LD_LIBRARY_PATH=libdir,
               RM_KAFKA_SASL_PASSWORD=harness.RealKafka.SASL_PASSWORD)
    version, number = runtime_librdkafka(env)
    assert number >= SCRAM_FIXED_VERSION, version
    summary, oracle = harness.simulate(kafka.bootstrap, workdir, 60, 83)
    config = harness.write_config(workdir, kafka.sasl_bootstrap, projector__metrics_listen="",
                                  kafka=sasl_settings(kafka, "SCRAM-SHA-512"))
    out = subprocess.run([harness.binary("projector/projector"), "--config", config,
                          "--until-caught-up"], cwd=harness.ROOT, capture_output=True,
                         text=True, timeout=120, env=env)
    assert out.returncode == 0, f"librdkafka {version}: " + out.stderr[-3000:]
    assert harness.committed_offsets(config) == summary["events"]
    events = harness.read_oracle(oracle)
    docs = harness.inspect_docs(config, [e["key"] for e in events])
    problems = harness.compare_with_oracle(
        events, lambda k: docs[k]["sections"] if docs[k] else None)
    assert not problems, f"{len(problems)} customers differ; first: {problems[:5]}"
    out = subprocess.run([harness.binary("reconcile/reconcile"), "--config", config,
                          "diff-replay", "--report", os.path.join(workdir, "replay.jsonl")],
                         cwd=harness.ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    start = time.monotonic()
    out = subprocess.run([harness.binary("projector/projector"), "--config", config,
                          "--until-caught-up"], cwd=harness.ROOT, capture_output=True,
                         text=True, timeout=60,
                         env=dict(env, RM_KAFKA_SASL_PASSWORD="not-the-password"))
    elapsed = time.monotonic() - start
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Authentication failed" in out.stderr and elapsed < 30, (elapsed, out.stderr[-2000:])


def test_sasl_ssl_projects_through_config_alone(kafka, workdir):
    """The projector reaches the oracle through the SASL_SSL listener (TLS with the
    cluster's own CA, SASL PLAIN) with nothing but config: kafka: keys in the file and
    the password from RM_KAFKA_SASL_PASSWORD. PLAIN, because the system's librdkafka
    (2.0.2) fails SCRAM against Kafka 4.x whatever the password (SCRAM_FIXED_VERSION);
    test_sasl_ssl_scram_sha_512_with_a_librdkafka_that_has_the_nonce_fix shows SCRAM."""
    summary, oracle = harness.simulate(kafka.bootstrap, workdir, 60, 81)
    config = harness.write_config(workdir, kafka.sasl_bootstrap, projector__metrics_listen="",
                                  kafka=sasl_settings(kafka))
    env = dict(os.environ, RM_KAFKA_SASL_PASSWORD=harness.RealKafka.SASL_PASSWORD)
    out = subprocess.run([harness.binary("projector/projector"), "--config", config,
                          "--until-caught-up"], cwd=harness.ROOT, capture_output=True,
                         text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    events = harness.read_oracle(oracle)
    keys = sorted({e["key"] for e in events})
    docs = harness.inspect_docs(config, keys)
    problems = harness.compare_with_oracle(
        events, lambda k: docs[k]["sections"] if docs[k] else None)
    assert not problems, f"{len(problems)} customers differ; first: {problems[:5]}"
    # reconcile's diff-replay reads the topics through the same listener: no drift.
    out = subprocess.run([harness.binary("reconcile/reconcile"), "--config", config,
                          "diff-replay", "--report", os.path.join(workdir, "replay.jsonl")],
                         cwd=harness.ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    # A refused login or an untrusted CA: "could not run" (reconcile's exit 2) within
    # seconds, with the broker's reason, not clients retrying.
    import time
    for what, extra, password, want in (
            ("wrong-password", [], "not-the-password", "Authentication failed"),
            ("untrusted-ca", ["-X", "ssl.ca.location=/etc/ssl/certs/ca-certificates.crt"],
             harness.RealKafka.SASL_PASSWORD, "certificate verify failed")):
        start = time.monotonic()
        try:
            out = subprocess.run([harness.binary("reconcile/reconcile"), "--config", config,
                                  *extra, "diff-replay", "--report",
                                  os.path.join(workdir, f"{what}.jsonl")],
                                 cwd=harness.ROOT, capture_output=True, text=True, timeout=60,
                                 env=dict(env, RM_KAFKA_SASL_PASSWORD=password))
        except subprocess.TimeoutExpired as err:
            raise AssertionError(f"{what}: reconcile was still running after 60 s: "
                                 f"{(err.stderr or b'')[-1500:]!r}") from None
        elapsed = time.monotonic() - start
        assert out.returncode == 2, (what, out.returncode, out.stderr[-2000:])
        assert "cannot connect to Kafka" in out.stderr and want in out.stderr, \
            out.stderr[-2000:]
        assert elapsed < 30, (what, elapsed)
        print(f"reconcile {what}: exit 2 after {elapsed:.1f} s")


@pytest.mark.parametrize("case", ["wrong-password", "scram-sha-512", "untrusted-ca"])
def test_sasl_ssl_refusals_exit_2_fast(kafka, workdir, case):
    """A refused login or an untrusted broker certificate is a configuration error:
    exit 2 with the broker's reason on stderr within seconds, not a retry loop (exit
    codes in projector --help, docs/runbook.md, docs/kafka.md). scram-sha-512 is the
    right password with SCRAM-SHA-512, which librdkafka before 2.6.1 (the system's 2.0.2)
    fails against Kafka 4.x: it must be reported as a refused login, not retried."""
    import time
    if case == "scram-sha-512" and runtime_librdkafka()[1] >= SCRAM_FIXED_VERSION:
        pytest.skip("this librdkafka has the SCRAM nonce fix: the login succeeds")
    mechanism = "SCRAM-SHA-512" if case == "scram-sha-512" else "PLAIN"
    # A CA the broker's certificate was not signed by: the system's bundle.
    ca = "/etc/ssl/certs/ca-certificates.crt" if case == "untrusted-ca" else None
    password = "not-the-password" if case == "wrong-password" else harness.RealKafka.SASL_PASSWORD
    config = harness.write_config(workdir, kafka.sasl_bootstrap, projector__metrics_listen="",
                                  kafka=sasl_settings(kafka, mechanism, ca))
    env = dict(os.environ, RM_KAFKA_SASL_PASSWORD=password)
    start = time.monotonic()
    try:
        out = subprocess.run([harness.binary("projector/projector"), "--config", config,
                              "--until-caught-up"], cwd=harness.ROOT, capture_output=True,
                             text=True, timeout=60, env=env)
    except subprocess.TimeoutExpired as err:
        raise AssertionError(f"{case}: the projector was still running after 60 s: "
                             f"{(err.stderr or b'')[-1500:]!r}") from None
    elapsed = time.monotonic() - start
    want = "certificate verify failed" if case == "untrusted-ca" else "Authentication failed"
    assert out.returncode == 2, (case, out.returncode, out.stderr[-2000:])
    assert "projector: cannot connect to Kafka" in out.stderr and want in out.stderr, \
        out.stderr[-2000:]
    # Generous on a loaded machine; the retry loop this replaces never ended.
    assert elapsed < 30, (case, elapsed)
    print(f"{case}: exit 2 after {elapsed:.1f} s")



def test_partitions_added_while_running_reach_the_oracle(kafka, workdir, processes):
    """Stream A on 6 partitions, then, while the projector daemon runs, every source
    topic grows to 9 partitions with Kafka's own kafka-topics --alter, and stream B is
    produced (the simulator's partitioner now maps some keys to partitions 6-8). The
    daemon's metadata poll must add the new partitions by itself: its stored offsets reach
    every partition's log end, 6-8 included, and the view equals both oracles."""
    ck = harness.kafka_admin_module()
    _, oracle_a = harness.simulate(kafka.bootstrap, workdir, 120, 61)
    config = harness.write_config(workdir, kafka.bootstrap, projector__metrics_listen="",
                                  projector__metadata_refresh_ms=500)
    daemon = harness.Process("projector", [harness.binary("projector/projector"),
                                           "--config", config], workdir)
    processes.append(daemon)

    def caught_up(partitions):
        ends = {}
        consumer = ck.Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": "end-probe",
                                "log_level": 0})
        try:
            for topic in harness.TOPICS:
                for p in range(partitions):
                    ends[(topic, p)] = consumer.get_watermark_offsets(
                        ck.TopicPartition(topic, p), timeout=10)[1]
        finally:
            consumer.close()
        assert daemon.alive(), daemon.log_text()[-3000:]
        out = harness.inspect(config, "offsets")
        if out.returncode != 0:
            return False  # the daemon has not created its store yet
        stored = {(p["topic"], p["partition"]): p for p in json.loads(out.stdout)}
        return all(stored.get(tp, {}).get("next_offset", 0) == end
                   for tp, end in ends.items() if end > 0)
    harness.wait_until(lambda: caught_up(6), 60, "the daemon to apply stream A", interval=0.5)

    topics = "^(" + "|".join(harness.TOPICS) + ")$"
    out = subprocess.run([os.path.join(harness.ROOT, "tools/kafka"), "tool", "topics",
                          "--bootstrap-server", kafka.bootstrap, "--alter", "--topic", topics,
                          "--partitions", "9"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert all(kafka.cluster.topics()[t] == 9 for t in harness.TOPICS), kafka.cluster.topics()
    _, oracle_b = harness.simulate(kafka.bootstrap, workdir, 120, 62)
    keys_a = {e["key"] for e in harness.read_oracle(oracle_a)}
    assert not keys_a & {e["key"] for e in harness.read_oracle(oracle_b)}, \
        "the two streams must not share customers"
    new = log_end_offsets_of(ck, kafka.bootstrap, range(6, 9))
    assert sum(new.values()) > 0, "stream B put nothing in partitions 6-8"
    harness.wait_until(lambda: caught_up(9), 60, "the daemon to add and apply partitions 6-8",
                       interval=0.5)
    assert daemon.stop() == 0, daemon.log_text()[-3000:]

    for oracle in (oracle_a, oracle_b):
        events = harness.read_oracle(oracle)
        docs = harness.inspect_docs(config, sorted({e["key"] for e in events}))
        problems = harness.compare_with_oracle(
            events, lambda k: docs[k]["sections"] if docs[k] else None)
        assert not problems, f"{len(problems)} customers differ; first: {problems[:5]}"


def log_end_offsets_of(ck, bootstrap, partitions):
    consumer = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": "log-end-probe",
                            "log_level": 0})
    try:
        return {(t, p): consumer.get_watermark_offsets(ck.TopicPartition(t, p), timeout=10)[1]
                for t in harness.TOPICS for p in partitions}
    finally:
        consumer.close()


def test_demo_on_kafka_with_the_registry_answers(workdir):
    """tools/demo --kafka, non-interactive (DEMO_EXIT_AFTER_READY=1): its own Kafka and
    devregistry, the simulator framing with registry ids, customers produced through
    confluent-kafka-python's AvroSerializer; the demo itself checks that a simulated and
    an AvroSerializer customer answer 200 with their profile, then stops everything."""
    if os.environ.get("RM_KAFKA", "1") == "0":
        pytest.skip("real Kafka disabled (RM_KAFKA=0)")
    if not os.path.exists(os.path.join(harness.ROOT, "build", "build.ninja")):
        pytest.skip("tools/demo builds build/ itself; not configured here (minutes)")
    env = dict(os.environ, DEMO_DIR=os.path.join(workdir, "demo"), DEMO_CUSTOMERS="100",
               DEMO_PORT=str(harness.free_port()), DEMO_METRICS_PORT=str(harness.free_port()),
               DEMO_SOURCES_PORT=str(harness.free_port()), DEMO_EXIT_AFTER_READY="1")
    out = subprocess.run([os.path.join(harness.ROOT, "tools/demo"), "--kafka"], env=env,
                         cwd=harness.ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "check: C1-" in out.stdout and "check: AVRO-000001 answered 200" in out.stdout, \
        out.stdout[-3000:]
    assert "reconcile --config" in out.stdout and "schema registry on http" in out.stdout
    # Everything the demo started is gone: its Kafka nodes too.
    pids = [int(open(os.path.join(env["DEMO_DIR"], "kafka", d, "pid")).read())
            for d in os.listdir(os.path.join(env["DEMO_DIR"], "kafka")) if d.startswith("node-")]
    assert not [p for p in pids if os.path.exists(f"/proc/{p}")], pids
