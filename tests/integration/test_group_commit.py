"""Group commit and periodic durability: a batch closes as soon as the consumer queue is
empty, not batch_max_ms after its first message; a failed fsync stops the projector for
good on that generation, and the restart rebuilds it with nothing lost or applied twice."""
import os
import subprocess

import harness

# The longest allowed, and longer than the waits for commits below: a batch held open
# until batch_max_ms would time them out.
BATCH_MAX_MS = 60000
COMMIT_WAIT_S = 30
APP_EXIT_REBUILD = 4  # lib/app.h: the generation must be rebuilt; a restart does it


def test_batches_close_when_the_queue_is_empty(broker, workdir, processes):
    first, _ = harness.simulate(broker.bootstrap, workdir, 5, 61)
    port = harness.free_port()
    config = harness.write_config(workdir, broker.bootstrap,
                                  projector__metrics_listen=f"127.0.0.1:{port}",
                                  projector__batch_max_ms=BATCH_MAX_MS,
                                  projector__sync_interval_ms=20)
    projector = harness.Process("projector", [harness.binary("projector/projector"), "--config",
                                              config], workdir)
    processes.append(projector)
    url = f"http://127.0.0.1:{port}/metrics"
    # A small backlog, then a live burst: each is committed long before batch_max_ms.
    harness.wait_until(lambda: harness.committed_offsets(config) == first["events"],
                       COMMIT_WAIT_S, "the backlog to be committed")
    second, _ = harness.simulate(broker.bootstrap, workdir, 5, 62)
    total = first["events"] + second["events"]
    harness.wait_until(lambda: harness.committed_offsets(config) == total, COMMIT_WAIT_S,
                       "the live burst to be committed")
    samples = harness.wait_until(
        lambda: (lambda s: s if harness.metric_total(s, "readmodel_store_syncs_total", outcome="ok") >= 1
                 else None)(harness.scrape_metrics(url)), 30, "a background sync")
    assert harness.metric_total(samples, "readmodel_batches_total", closed_by="max_ms") == 0
    assert harness.metric_total(samples, "readmodel_batches_total", closed_by="max_events") == 0
    drained = harness.metric_total(samples, "readmodel_batches_total", closed_by="drained")
    assert drained >= 2, samples  # the backlog's and the burst's
    assert drained == harness.metric_total(samples, "readmodel_batch_events_count")
    assert harness.metric_total(samples, "readmodel_store_syncs_total", outcome="failed") == 0
    assert harness.metric_total(samples, "readmodel_store_sync_seconds_count") == \
        harness.metric_total(samples, "readmodel_store_syncs_total", outcome="ok")
    assert projector.alive()




def check_oracle(config, oracle_path):
    oracle = harness.read_oracle(oracle_path)
    docs = harness.inspect_docs(config, [e["key"] for e in oracle])
    problems = harness.compare_with_oracle(
        oracle, lambda key: docs[key]["sections"] if docs[key] else None)
    assert not problems, f"{len(problems)} differ; first: {problems[:5]}"


def test_failed_sync_stops_then_restart_rebuilds_exactly_once(broker, workdir, processes):
    summary, oracle_path = harness.simulate(broker.bootstrap, workdir, 300, 63)
    # Small batches and a short sync interval: the stream takes several sync intervals.
    # The first sync follows the start-up commits (view hash, outbox) while partitions are
    # assigned; sync 2 fails (on a fast run it may be the close's final one), and sync 3
    # would succeed without rewriting the pages whose writeback failed (Linux marks them
    # clean).
    config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="",
                                  projector__batch_max_events=50,
                                  projector__sync_interval_ms=20)
    api = harness.QueryApi(workdir, config, harness.free_port())
    processes.append(api)
    oracle = harness.read_oracle(oracle_path)
    key = [e for e in oracle if not e["erased"]][0]["key"]
    env = dict(os.environ, RM_FAILPOINT_ERROR="store-sync:2:1")
    cmd = [harness.binary("projector/projector"), "--config", config, "--until-caught-up"]
    out = subprocess.run(cmd, cwd=harness.ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert "failpoint store-sync: EIO (pass 2)" in out.stderr, out.stderr[-3000:]
    # No commit on top of the failed sync, ever: the process stops with the documented
    # code instead of waiting for a sync that would only pretend to succeed.
    assert out.returncode == APP_EXIT_REBUILD, (out.returncode, out.stderr[-3000:])
    assert "failpoint store-sync: EIO (pass 3)" not in out.stderr
    # The query API opened the generation before the failure; it stops serving it (its
    # pages may be re-read from a disk that never got them).
    harness.wait_until(lambda: api.get(f"/v1/views/customer360/{key}")[0] == 503, 10,
                       "the query API to stop serving the generation whose fsync failed")
    # The supervisor's restart rebuilds the generation from Kafka before serving it.
    out = subprocess.run(cmd, cwd=harness.ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "rebuilding it from Kafka" in out.stderr, out.stderr[-3000:]
    gens = harness.generations_by_id(config)
    assert [g for g in gens.values() if g["current"]][0]["id"] == 2, gens
    assert harness.committed_offsets(config) == summary["events"]
    check_oracle(config, oracle_path)
    harness.wait_until(lambda: api.get(f"/v1/views/customer360/{key}")[0] == 200, 10,
                       "the query API to serve the rebuilt generation")


def test_rebuild_refuses_to_switch_when_its_final_sync_fails(broker, workdir):
    summary, oracle_path = harness.simulate(broker.bootstrap, workdir, 20, 64)
    # An hour between syncs: the only sync of the rebuild's store is the one its close
    # makes before the switch, and that one fails.
    config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="",
                                  projector__sync_interval_ms=3600000)
    out = harness.run_projector(config)
    assert out.returncode == 0, out.stderr[-3000:]
    env = dict(os.environ, RM_FAILPOINT_ERROR="store-sync:1:1")
    out = subprocess.run([harness.binary("projector/projector"), "--config", config, "rebuild"],
                         cwd=harness.ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert "failpoint store-sync: EIO (pass 1)" in out.stderr, out.stderr[-3000:]
    assert out.returncode != 0, out.stderr[-3000:]
    gens = harness.generations_by_id(config)
    assert [g for g in gens.values() if g["current"]][0]["id"] == 1, gens
    check_oracle(config, oracle_path)
