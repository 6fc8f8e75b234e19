"""A rebuild and the live consumer group: the offsets committed to the projector's group
are for lag tooling (kafka-consumer-groups, Burrow, dashboards) and must describe the live
projector, never `projector rebuild`, which reads every topic from offset 0 with its own
consumer. The projector that adopts the new generation commits that store's offsets."""
import subprocess

import pytest

import harness

pytestmark = pytest.mark.brokers("dev", "kafka")


def projector(config, *args, timeout=120):
    return subprocess.run([harness.binary("projector/projector"), "--config", config, *args],
                          cwd=harness.ROOT, capture_output=True, text=True, timeout=timeout)


def group_offsets(ck, bootstrap, group):
    """{(topic, partition): offset} committed to group (partitions without one left out)."""
    consumer = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                            "enable.auto.commit": False, "log_level": 0})
    try:
        wanted = [ck.TopicPartition(t, p) for t in harness.TOPICS for p in range(6)]
        return {(tp.topic, tp.partition): tp.offset
                for tp in consumer.committed(wanted, timeout=30) if tp.offset >= 0}
    finally:
        consumer.close()


def log_ends(ck, bootstrap):
    """{(topic, partition): log end} of the partitions that hold anything."""
    consumer = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": "log-end-probe",
                            "log_level": 0})
    try:
        ends = {(t, p): consumer.get_watermark_offsets(ck.TopicPartition(t, p), timeout=10)[1]
                for t in harness.TOPICS for p in range(6)}
        return {tp: end for tp, end in ends.items() if end > 0}
    finally:
        consumer.close()


def rebuild_watching(ck, bootstrap, config, group, want, what):
    """Runs `projector rebuild` to its switch while reading the group's offsets over and
    over; every reading must be `want` (a rebuild commits from offset 0 up, so one taken
    mid-way shows it; the last one, after the exit, is the final state)."""
    proc = subprocess.Popen([harness.binary("projector/projector"), "--config", config,
                             "rebuild"], cwd=harness.ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    readings = []
    while True:
        running = proc.poll() is None
        readings.append(group_offsets(ck, bootstrap, group))
        if not running:
            break
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    assert "current -> gen-" in out, out
    moved = [r for r in readings if r != want]
    assert not moved, (
        f"{what}: the rebuild moved group {group} in {len(moved)} of {len(readings)} "
        f"readings; the first: " + ", ".join(
            f"{t}:{p} {want.get((t, p))} -> {moved[0].get((t, p))}"
            for t, p in sorted(set(want) | set(moved[0]))
            if want.get((t, p)) != moved[0].get((t, p)))[:600])


@pytest.mark.parametrize("group_id", [None, "ops-customer360"])
def test_a_rebuild_leaves_the_live_groups_offsets_alone(broker, workdir, processes, group_id):
    """(1) The daemon runs, caught up on stream A: a rebuild to its switch never changes
    what the group says. (2) The daemon stopped and stream B produced since: the group
    shows B as lag; a rebuild that switches to a generation holding B must not make a
    stopped projector look caught up. (3) The projector that then opens the new
    generation commits its offsets, so the lag is right again without new events.
    With kafka.group.id set the same holds for that group."""
    ck = harness.kafka_admin_module()
    group = group_id or "readmodel-customer360"
    kafka = {"group.id": group_id} if group_id else None
    harness.simulate(broker.bootstrap, workdir, 60, 61)
    config = harness.write_config(workdir, broker.bootstrap, kafka=kafka,
                                  projector__metrics_listen="")
    daemon = harness.Process("projector", [harness.binary("projector/projector"), "--config",
                                           config], workdir)
    processes.append(daemon)
    ends_a = log_ends(ck, broker.bootstrap)
    harness.wait_until(lambda: group_offsets(ck, broker.bootstrap, group) == ends_a, 60,
                       "the daemon's offsets committed to the group at the log ends")

    rebuild_watching(ck, broker.bootstrap, config, group, ends_a, "daemon caught up")
    assert daemon.stop() == 0, daemon.log_text()[-2000:]
    assert group_offsets(ck, broker.bootstrap, group) == ends_a

    harness.simulate(broker.bootstrap, workdir, 20, 62)
    ends_ab = log_ends(ck, broker.bootstrap)
    assert ends_ab != ends_a
    rebuild_watching(ck, broker.bootstrap, config, group, ends_a, "daemon stopped, lagging")

    # Nothing new to apply: only the adoption of the store can commit these offsets.
    out = harness.run_projector(config)
    assert out.returncode == 0, out.stderr[-3000:]
    assert group_offsets(ck, broker.bootstrap, group) == ends_ab
    # No group of the rebuild's own is left behind for lag tooling to find.
    assert group_offsets(ck, broker.bootstrap, group + "-rebuild") == {}
