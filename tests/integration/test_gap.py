"""A gap — retention deleted events the view never saw — is reported, never skipped: with
projector.on_gap=stop the projector exits 3 and keeps its offset; with continue it records
the gap, moves on, and /readyz says the view is degraded and why. A stored offset beyond the
log end (a recreated topic, or a log truncated by an unclean leader election) is reported
as that, not as retention, and continuing from it re-reads nothing the view already saw."""
import json
import subprocess

import pytest

import harness
from test_chaos import dead_letters

# The mock cluster keeps about 5 MB per partition; push more than that past a stopped
# projector to make the broker drop events it has not consumed.
FILLER_MESSAGES = 90
FILLER_BYTES = 100_000
# Real Kafka deletes whole closed segments once a partition holds more than
# retention.bytes, at its retention check (tools/kafka: every second). 1 MiB is the
# smallest segment.bytes Kafka 4 accepts; 9 MB of filler closes several.
RETENTION_CONFIGS = {"segment.bytes": "1048576", "retention.bytes": "1048576"}


def one_partition_broker(kind, request, workdir, processes):
    """A broker whose topics have one partition, loyalty with real retention on Kafka."""
    if kind == "dev":
        broker = harness.DevBroker(workdir, partitions=1)
        processes.append(broker)
        return broker
    broker = request.getfixturevalue("kafka")
    broker.cluster.reset(partitions=1, topic_configs={"loyalty": RETENTION_CONFIGS})
    return broker


def log_start(bootstrap, topic, partition):
    low = subprocess.run(["kcat", "-Q", "-b", bootstrap, "-t", f"{topic}:{partition}:-2"],
                         capture_output=True, text=True, timeout=60).stdout
    return int(low.split()[-1])


def stored_offset(config, topic, partition):
    for p in json.loads(harness.inspect(config, "offsets").stdout):
        if p["topic"] == topic and p["partition"] == partition:
            return p["next_offset"]
    return None


@pytest.mark.parametrize("kind", ["dev", "kafka"])
def test_gap_is_reported_not_skipped(kind, request, workdir, processes):
    broker = one_partition_broker(kind, request, workdir, processes)
    harness.simulate(broker.bootstrap, workdir, 100, 91)
    config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="",
                                  projector__on_gap="stop")
    out = harness.run_projector(config)
    assert out.returncode == 0, out.stderr[-2000:]
    before = stored_offset(config, "loyalty", 0)
    assert before and before > 0

    filler = b"\n".join(b"x" * FILLER_BYTES for _ in range(FILLER_MESSAGES)) + b"\n"
    subprocess.run(["kcat", "-P", "-b", broker.bootstrap, "-t", "loyalty", "-p", "0",
                    "-X", "message.max.bytes=2000000"], input=filler, check=True, timeout=120)
    # The mock drops at once; Kafka at its next retention check.
    start = harness.wait_until(lambda: (lambda s: s if s > before else None)(
        log_start(broker.bootstrap, "loyalty", 0)), 60, f"the log start to pass {before}")

    out = harness.run_projector(config)
    assert out.returncode == 3, (out.returncode, out.stderr[-2000:])
    assert "gap: events were deleted before this view saw them" in out.stderr
    assert stored_offset(config, "loyalty", 0) == before, "the offset moved past the gap"

    config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="",
                                  projector__on_gap="continue")
    out = harness.run_projector(config)
    assert out.returncode == 0, out.stderr[-2000:]
    assert stored_offset(config, "loyalty", 0) >= start
    api = harness.QueryApi(workdir, config, harness.free_port())
    processes.append(api)
    status, _, body = api.get("/readyz")
    assert status == 200 and body["status"] == "degraded", body
    gap = body["gaps"][0]
    assert gap["topic"] == "loyalty" and gap["partition"] == 0, gap
    assert gap["cause"] == "retention", gap


def produce_poison(bootstrap, key):
    """One message on loyalty/0 that is not an event: the view dead-letters it and marks
    the customer its key names degraded."""
    subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", "loyalty", "-p", "0", "-k", key],
                   input=b"not an avro event", check=True, timeout=60)


def all_offsets(config):
    return {(p["topic"], p["partition"]): p["next_offset"]
            for p in json.loads(harness.inspect(config, "offsets").stdout)}


def log_end(bootstrap, topic, partition):
    out = subprocess.run(["kcat", "-Q", "-b", bootstrap, "-t", f"{topic}:{partition}:-1"],
                         capture_output=True, text=True, timeout=60).stdout
    return int(out.split()[-1])


def degraded(config, key):
    return harness.inspect_docs(config, [key])[key].get("degraded")


def test_offset_beyond_the_log_end_is_not_retention(workdir, processes):
    old = harness.DevBroker(workdir, partitions=1)
    processes.append(old)
    _, oracle_path = harness.simulate(old.bootstrap, workdir, 50, 93)
    key = next(c["key"] for c in harness.read_oracle(oracle_path) if not c["erased"])
    produce_poison(old.bootstrap, key)
    poison_offset = log_end(old.bootstrap, "loyalty", 0) - 1
    harness.simulate(old.bootstrap, workdir, 10, 95)  # what the truncation will cut off
    config = harness.write_config(workdir, old.bootstrap, projector__metrics_listen="")
    out = harness.run_projector(config)
    assert out.returncode == 0, out.stderr[-2000:]
    assert list(dead_letters(old.bootstrap, ["loyalty"])) == [("loyalty", 0, poison_offset)]
    assert degraded(config, key), "the poison did not mark its customer"
    # An operator handles the dead letter: its mark is cleared.
    subprocess.run([harness.binary("projector/projector"), "--config", config, "dlq", "purge"],
                   cwd=harness.ROOT, capture_output=True, check=True, timeout=60)
    assert harness.run_projector(config).returncode == 0
    assert degraded(config, key) is None
    before = all_offsets(config)
    assert before[("loyalty", 0)] > poison_offset + 1
    old.stop()

    # The same log cut back just after the poison, as an unclean leader election leaves it
    # (the view has applied all of it); the other topics are empty, as recreated ones are.
    new = harness.DevBroker(workdir, partitions=1)
    processes.append(new)
    harness.simulate(new.bootstrap, workdir, 50, 93)
    produce_poison(new.bootstrap, key)
    assert log_end(new.bootstrap, "loyalty", 0) == poison_offset + 1, "not the same log"
    config = harness.write_config(workdir, new.bootstrap, projector__metrics_listen="",
                                  projector__on_gap="stop")
    out = harness.run_projector(config)
    assert out.returncode == 3, (out.returncode, out.stderr[-2000:])
    assert "gap: the log ends before the stored offset" in out.stderr, out.stderr[-2000:]
    assert "events were deleted before this view saw them" not in out.stderr
    assert all_offsets(config) == before, "the offsets moved on a stop"

    # The daemon (no --until-caught-up) meets it as a fetch error instead.
    config = harness.write_config(workdir, new.bootstrap, projector__metrics_listen="",
                                  projector__on_gap="continue")
    daemon = harness.Process("projector", [harness.binary("projector/projector"), "--config",
                                           config], workdir)
    processes.append(daemon)
    api = harness.QueryApi(workdir, config, harness.free_port())
    processes.append(api)

    last = {}

    def all_gaps():
        status, _, body = api.get("/readyz")
        last["readyz"] = (status, body)
        return body if status == 200 and len(body["gaps"]) == len(before) else None
    try:
        body = harness.wait_until(all_gaps, 60, "a gap recorded for every partition")
    except AssertionError as e:  # say what the daemon saw, for a run that cannot be repeated
        raise AssertionError(f"{e}; last /readyz {last.get('readyz')}; daemon log tail:\n"
                             f"{daemon.log_text()[-4000:]}") from None
    assert body["status"] == "degraded", body
    # It resumes at the log end: what is below it the view has already seen.
    after = all_offsets(config)
    end = {(t, 0): log_end(new.bootstrap, t, 0) for t, _ in after}
    assert after == end, (after, end)
    # ... and reads on from there: a poison produced now is dead-lettered, the old one not,
    # and the mark the operator cleared does not come back.
    produce_poison(new.bootstrap, "C-nobody")
    harness.wait_until(lambda: dead_letters(new.bootstrap, ["loyalty"]), 60, "a dead letter")
    assert list(dead_letters(new.bootstrap, ["loyalty"])) == [("loyalty", 0, poison_offset + 1)], \
        "a poison the view had seen was dead-lettered again"
    assert degraded(config, key) is None, "a cleared degraded mark came back"
    assert daemon.stop() == 0
    assert "gap: the log ends before the stored offset" in daemon.log_text()
    assert "events were deleted before this view saw them" not in daemon.log_text()
    gaps = {(g["topic"], g["partition"]): g for g in body["gaps"]}
    gap = gaps[("loyalty", 0)]
    assert gap["cause"] == "log-truncated", gap
    assert gap["stored_offset"] == before[("loyalty", 0)], gap
    assert gap["log_end"] == poison_offset + 1 == gap["resumed_at"], gap
    assert gap["action"] == "continued", gap


def fill_past_retention(bootstrap):
    """Pushes loyalty/0 past what the mock broker keeps; returns its log start."""
    filler = b"\n".join(b"x" * FILLER_BYTES for _ in range(FILLER_MESSAGES)) + b"\n"
    subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", "loyalty", "-p", "0",
                    "-X", "message.max.bytes=2000000"], input=filler, check=True, timeout=120)
    low = subprocess.run(["kcat", "-Q", "-b", bootstrap, "-t", "loyalty:0:-2"],
                         capture_output=True, text=True, timeout=60).stdout
    return int(low.split()[-1])


def test_rebuild_refuses_a_log_whose_start_was_deleted(workdir, processes):
    broker = harness.DevBroker(workdir, partitions=1)
    processes.append(broker)
    harness.simulate(broker.bootstrap, workdir, 50, 94)
    assert fill_past_retention(broker.bootstrap) > 0, "the broker kept everything"
    config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="",
                                  projector__on_gap="stop")
    rebuild = [harness.binary("projector/projector"), "--config", config, "rebuild"]
    out = subprocess.run(rebuild, cwd=harness.ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 3, (out.returncode, out.stderr[-2000:])
    assert "rebuild refused: retention deleted events" in out.stderr, out.stderr[-2000:]
    gens = subprocess.run([harness.binary("projector/projector"), "--config", config,
                           "generations", "--json"], cwd=harness.ROOT, capture_output=True,
                          text=True, timeout=60)
    assert not any(g["current"] for g in json.loads(gens.stdout)), gens.stdout

    # on_gap=continue: the generation goes live with the gap recorded, as the live path does.
    config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="",
                                  projector__on_gap="continue")
    out = subprocess.run(rebuild[:2] + [config, "rebuild"], cwd=harness.ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "gap: events were deleted before this view saw them; recorded" in out.stderr
    api = harness.QueryApi(workdir, config, harness.free_port())
    processes.append(api)
    status, _, body = api.get("/readyz")
    assert status == 200 and body["status"] == "degraded", body
    assert [(g["topic"], g["partition"], g["cause"]) for g in body["gaps"]] == \
        [("loyalty", 0, "retention")], body
