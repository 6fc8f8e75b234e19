"""A gap — retention deleted events the view never saw — is reported, never skipped: with
projector.on_gap=stop the projector exits 3 and keeps its offset; with continue it records
the gap, moves on, and /readyz says the view is degraded and why."""
import json
import subprocess

import pytest

import harness

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
