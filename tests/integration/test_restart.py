"""Stop the projector halfway (SIGTERM, and separately SIGKILL), restart, finish: the
store equals the oracle and no counter is doubled."""
import signal

import pytest

import harness

pytestmark = pytest.mark.brokers("dev", "kafka")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_restart_midway(broker, workdir, processes, sig):
    summary, oracle_path = harness.simulate(broker.bootstrap, workdir, 1500, 21)
    total = summary["events"]
    # Small synced batches make the run long enough to stop it in the middle.
    config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="",
                                  projector__batch_max_events=100, projector__durability="sync")
    first = harness.Process("projector-1", [harness.binary("projector/projector"), "--config",
                                            config], workdir)
    processes.append(first)
    harness.wait_until(lambda: harness.committed_offsets(config) > total * 0.3, 120,
                       "the projector to commit 30% of the stream")
    first.send(sig)
    rc = first.wait(60)
    if sig == signal.SIGTERM:
        assert rc == 0, first.log_text()[-2000:]
    midway = harness.committed_offsets(config)
    assert 0 < midway < total, f"stopped at {midway} of {total}: not midway"

    out = harness.run_projector(config)
    assert out.returncode == 0, out.stderr[-3000:]
    assert harness.committed_offsets(config) == total

    oracle = harness.read_oracle(oracle_path)
    docs = harness.inspect_docs(config, [e["key"] for e in oracle])
    problems = harness.compare_with_oracle(
        oracle, lambda key: docs[key]["sections"] if docs[key] else None)
    assert not problems, f"{len(problems)} differ after restart; first: {problems[:5]}"


def test_second_projector_is_refused(broker, workdir, processes):
    harness.simulate(broker.bootstrap, workdir, 10, 5)
    config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="")
    live = harness.Process("projector-live", [harness.binary("projector/projector"), "--config",
                                              config], workdir)
    processes.append(live)
    harness.wait_until(lambda: harness.committed_offsets(config) > 0, 60, "a first commit")
    out = harness.run_projector(config, timeout=60)
    assert out.returncode == 1
    assert "locked by another writer" in out.stderr
