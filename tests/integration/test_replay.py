"""reconcile diff-replay: replaying the log into a scratch store and diffing it with the live
store finds exactly the applications a projector lost (RM_TEST_SKIP_APPLY), nothing on a
clean store — also one that lags the log — and refuses to run when retention deleted
history the live store was built from."""
import json
import os
import subprocess

import pytest

import harness

pytestmark = pytest.mark.brokers("dev", "kafka")

CUSTOMERS = 300
SEED = 23
# Event types whose loss is visible in a document, and how many of each to lose. An
# OrderCreated also loses its order's link (reported on "_links"); the order's payments
# and shipments then stay parked in the live store.
SKIP_PLAN = {
    12: ("LoyaltyTierChanged", 2),
    5: ("OrderCancelled", 2),
    10: ("ShipmentDelayed", 1),
    4: ("OrderCreated", 1),
}
# List sections: the field that identifies an item (schemas/views/customer360.yaml).
ITEM_ID = {"orders": "order_id", "payment_issues": "payment_id",
           "delivery_exceptions": "shipment_id", "returns": "return_id"}


def log_of(broker_bootstrap):
    """Every message of the view's topics: (topic, partition, offset, schema id, key)."""
    from kafka import KafkaConsumer, TopicPartition
    consumer = KafkaConsumer(bootstrap_servers=broker_bootstrap, api_version=(2, 5, 0),
                             enable_auto_commit=False)
    parts = [TopicPartition(t, p) for t in harness.TOPICS
             for p in sorted(consumer.partitions_for_topic(t) or [])]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    ends = consumer.end_offsets(parts)
    seen = {tp: 0 for tp in parts}
    out = []

    def done():
        for batch in consumer.poll(timeout_ms=200).values():
            for m in batch:
                out.append((m.topic, m.partition, m.offset, int.from_bytes(m.value[1:5], "big"),
                            m.key.decode() if m.key else None))
                seen[TopicPartition(m.topic, m.partition)] = m.offset + 1
        return all(seen[tp] >= ends[tp] for tp in parts)

    harness.wait_until(done, 60, "the whole log consumed")
    consumer.close()
    return out


def choose_skips(log):
    """The last events of each planned type (most likely not superseded later)."""
    skips = []
    for schema_id, (_, count) in SKIP_PLAN.items():
        of_type = [m for m in log if m[3] == schema_id]
        assert len(of_type) >= count, f"the stream has too few events of schema {schema_id}"
        skips += of_type[-count:]
    return skips


def oracle_differences(oracle, docs):
    """(key, section, item, field) for every difference between the oracle and the live
    documents: item/field None when a whole item/section is missing on one side."""
    found = set()
    for entry in oracle:
        key = entry["key"]
        doc = docs.get(key)
        if entry["erased"]:
            assert doc is None, f"{key}: erased in the oracle, served by the store"
            continue
        assert doc is not None, f"{key}: missing from the live store"
        for section, want in entry["sections"].items():
            got = doc["sections"][section]
            if section in ITEM_ID:
                got_items = {i[ITEM_ID[section]]: i for i in got}
                want_items = {i[ITEM_ID[section]]: i for i in want}
                for item in set(got_items) | set(want_items):
                    g, w = got_items.get(item), want_items.get(item)
                    if g is None or w is None:
                        found.add((key, section, item, None))
                    else:
                        found |= {(key, section, item, f) for f in set(g) | set(w)
                                  if g.get(f) != w.get(f)}
            elif got is None or want is None:
                if got != want:
                    found.add((key, section, None, None))
            else:
                found |= {(key, section, None, f) for f in set(got) | set(want)
                          if got.get(f) != want.get(f)}
    return found


def diff_replay(config, workdir, *extra):
    report = os.path.join(workdir, "replay.jsonl")
    metrics = os.path.join(workdir, "replay.prom")
    out = subprocess.run([harness.binary("reconcile/reconcile"), "--config", config,
                          "diff-replay", "--report", report, "--metrics-textfile", metrics, *extra],
                         cwd=harness.ROOT, capture_output=True, text=True, timeout=120)
    lines = []
    if os.path.exists(report):
        with open(report) as f:
            lines = [json.loads(line) for line in f]
    return out, [line for line in lines if "summary" not in line], lines


def rates(stderr):
    """The replay's events/s and the diff's keys/s from the JSON logs."""
    got = {}
    for line in stderr.splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("msg") in ("replay finished", "diff finished"):
                got.update(entry)
    return got.get("events_per_s"), got.get("keys_per_s")


def scratch_dirs(workdir):
    return [d for d in os.listdir(os.path.join(workdir, "data")) if d.startswith(".replay-")]


def test_diff_replay_finds_exactly_the_lost_applications(broker, workdir):
    _, oracle_path = harness.simulate(broker.bootstrap, workdir, CUSTOMERS, SEED)
    skips = choose_skips(log_of(broker.bootstrap))
    config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="")
    env = dict(os.environ, RM_TEST_SKIP_APPLY=",".join(f"{t}:{p}:{o}" for t, p, o, _, _ in skips))
    out = subprocess.run([harness.binary("projector/projector"), "--config", config,
                          "--until-caught-up"], cwd=harness.ROOT, capture_output=True, text=True,
                         timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stderr.count("event consumed without applying it") == len(skips), out.stderr[-3000:]

    oracle = harness.read_oracle(oracle_path)
    docs = harness.inspect_docs(config, [e["key"] for e in oracle])
    expected = oracle_differences(oracle, docs)
    # Every planned type must have changed something, or the test would prove little.
    assert len({k for k, _, _, _ in expected}) >= len(SKIP_PLAN), expected

    out, findings, _ = diff_replay(config, workdir)
    assert out.returncode == 1, (out.returncode, out.stderr[-3000:])
    got = {(f["key"], f["section"], f["item"], f["field"]) for f in findings
           if not f["section"].startswith("_")}
    assert got == expected, (f"missed: {sorted(expected - got)}\n"
                             f"false: {sorted(got - expected, key=str)}")
    assert len(findings) == len({(f["key"], f["section"], f["item"], f["field"])
                                 for f in findings}), "a difference was reported twice"
    for f in findings:
        assert f["class"] == "drift" and f["mode"] == "diff-replay", f
        assert f["reason"] in ("value", "missing-in-store", "missing-in-replay"), f
    # The replay holds what the lost events wrote: its values are the oracle's.
    wanted = {e["key"]: e["sections"] for e in oracle if not e["erased"]}
    for f in findings:
        if f["field"] and f["section"] in ("loyalty", "profile"):
            assert f["replay"] == wanted[f["key"]][f["section"]][f["field"]], f
        if f["field"] and f["section"] in ITEM_ID:
            items = {i[ITEM_ID[f["section"]]]: i for i in wanted[f["key"]][f["section"]]}
            assert f["replay"] == items[f["item"]][f["field"]], f
    # The lost OrderCreated lost its link: exactly that one, missing in the store.
    created = [m for m in skips if m[3] == 4]
    links = [f for f in findings if f["section"] == "_links"]
    assert len(links) == len(created), links
    assert all(f["reason"] == "missing-in-store" and f["store"] is None and
               f["item"].startswith("order:") for f in links), links
    assert not [f for f in findings if f["section"] in ("_indexes", "_erased")], findings
    assert not scratch_dirs(workdir), "the scratch store was left behind"
    events_per_s, keys_per_s = rates(out.stderr)
    assert events_per_s and keys_per_s, out.stderr[-2000:]
    print(f"\nreplay {events_per_s} events/s, diff {keys_per_s} keys/s, "
          f"{len(findings)} findings for {len(skips)} lost events")


def test_clean_store_lagging_the_log_has_no_drift(broker, workdir):
    harness.simulate(broker.bootstrap, workdir, CUSTOMERS, SEED + 1)
    config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="")
    out = harness.run_projector(config)
    assert out.returncode == 0, out.stderr[-2000:]
    # More events after the projector stopped: the replay must stop where the store
    # stopped, not at the log's end, or every new event would read as drift.
    harness.simulate(broker.bootstrap, workdir, 50, SEED + 2)
    # Kept where a config with data_dir <workdir>/sdata finds it, so inspect can read it.
    scratch = os.path.join(workdir, "sdata", "customer360")
    out, findings, lines = diff_replay(config, workdir, "--scratch", scratch, "--keep-scratch")
    assert out.returncode == 0, (out.returncode, findings[:5], out.stderr[-3000:])
    assert findings == [] and lines[-1]["summary"]["keys"] > 0, lines[-1:]
    assert "no drift" in out.stdout, out.stdout
    with open(os.path.join(workdir, "replay.prom")) as f:
        assert 'readmodel_reconcile_keys_checked{view="customer360",mode="diff-replay"}' in f.read()
    # The kept scratch store ends exactly at the live store's offsets.
    scratch_config = harness.write_config(workdir, broker.bootstrap, name="scratch.yaml")
    with open(scratch_config) as f:
        text = f.read().replace(os.path.join(workdir, "data"), os.path.join(workdir, "sdata"), 1)
    with open(scratch_config, "w") as f:
        f.write(text)
    offsets = lambda c: sorted((p["topic"], p["partition"], p["next_offset"])  # noqa: E731
                               for p in json.loads(harness.inspect(c, "offsets").stdout))
    assert offsets(scratch_config) == offsets(config)
    # A second run refuses to replay onto the kept store.
    out, _, _ = diff_replay(config, workdir, "--scratch", scratch)
    assert out.returncode == 2 and "already holds a store" in out.stderr, out.stderr[-2000:]


@pytest.mark.parametrize("kind", ["dev", "kafka"])
def test_history_deleted_by_retention_cannot_be_replayed(kind, request, workdir, processes):
    from test_gap import log_start, one_partition_broker
    broker = one_partition_broker(kind, request, workdir, processes)
    harness.simulate(broker.bootstrap, workdir, 50, SEED + 3)
    config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="")
    assert harness.run_projector(config).returncode == 0
    # Past the mock broker's ~5 MB per partition (as in test_gap.py): the log start of
    # loyalty:0 moves above 0, so the events the live store was built from are gone.
    filler = b"\n".join(b"x" * 100_000 for _ in range(90)) + b"\n"
    subprocess.run(["kcat", "-P", "-b", broker.bootstrap, "-t", "loyalty", "-p", "0",
                    "-X", "message.max.bytes=2000000"], input=filler, check=True, timeout=120)
    harness.wait_until(lambda: log_start(broker.bootstrap, "loyalty", 0) > 0, 60,
                       "retention to delete the first segment of loyalty:0")
    out, findings, _ = diff_replay(config, workdir)
    assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
    assert "replay incomplete: loyalty:0 starts at offset" in out.stderr, out.stderr[-2000:]
    assert findings == [], "no drift may be reported for history the log lost"
    assert not scratch_dirs(workdir)
