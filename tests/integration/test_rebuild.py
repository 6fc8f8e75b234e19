"""Rebuild without downtime: `projector rebuild` builds a new store generation while the
daemon keeps writing and the query API keeps serving the current one, then switches
`current`; both follow without a restart and without a failed request. `rollback`
switches back. `--from-time` starts at the first message at or after a time."""
import datetime
import json
import os
import signal
import subprocess
import threading
import time
import urllib.parse

import pytest

import harness

pytestmark = pytest.mark.brokers("dev", "kafka")


def projector(config, *args, timeout=120, env=None):
    return subprocess.run([harness.binary("projector/projector"), "--config", config, *args],
                          cwd=harness.ROOT, capture_output=True, text=True, timeout=timeout,
                          env=env)




def api_fetcher(api):
    def fetch(key):
        status, _, body = api.get("/v1/views/customer360/" + urllib.parse.quote(key, safe="")
                                  + "?fields=" + harness.PROJECTED)
        if status == 404:
            return None
        assert status == 200, (key, status, body)
        return body["sections"]
    return fetch


def status_of(api):
    status, _, body = api.get("/v1/status")
    assert status == 200, body
    return body


def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def projector_generation(metrics_port):
    import urllib.request
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as resp:
            return metric(resp.read().decode(), "readmodel_store_generation")
    except OSError:
        return None


class Hammer(threading.Thread):
    """GETs live keys as fast as it can and counts every answer that is not 200."""

    def __init__(self, api, keys):
        super().__init__(daemon=True)
        self.api, self.keys = api, keys
        self.requests, self.failures, self.examples = 0, 0, []
        self.stop = threading.Event()

    def run(self):
        i = 0
        while not self.stop.is_set():
            key = self.keys[i % len(self.keys)]
            i += 1
            try:
                status, _, body = self.api.get("/v1/views/customer360/" + urllib.parse.quote(key, safe=""))
            except OSError as err:
                status, body = None, str(err)
            self.requests += 1
            if status != 200:
                self.failures += 1
                if len(self.examples) < 5:
                    self.examples.append((key, status, body))


def wait_caught_up(api, events):
    def check():
        body = status_of(api)
        done = sum(p["next_offset"] for p in body["partitions"])
        return body if done >= events and body["lag_messages"] == 0 else None
    return harness.wait_until(check, 60, f"{events} events applied")


def test_rebuild_switch_follow_and_rollback(broker, workdir, processes):
    summary_a, oracle_a_path = harness.simulate(broker.bootstrap, workdir, 300, 21)
    metrics_port = harness.free_port()
    config = harness.write_config(workdir, broker.bootstrap,
                                  projector__metrics_listen=f"127.0.0.1:{metrics_port}")
    daemon = harness.Process("projector", [harness.binary("projector/projector"), "--config", config],
                             workdir)
    processes.append(daemon)
    api = harness.QueryApi(workdir, config, harness.free_port())
    processes.append(api)
    wait_caught_up(api, summary_a["events"])
    assert status_of(api)["generation"] == 1  # the daemon made the first generation

    oracle_a = harness.read_oracle(oracle_a_path)
    live_keys = [e["key"] for e in oracle_a if not e["erased"]]
    hammer = Hammer(api, live_keys)
    hammer.start()
    try:
        out = projector(config, "rebuild")
        assert out.returncode == 0, out.stderr[-3000:]
        assert "current -> gen-000002" in out.stdout, out.stdout
        # Without a terminal, progress is a structured log line.
        assert '"msg":"rebuild progress"' in out.stderr
        harness.wait_until(lambda: status_of(api)["generation"] == 2, 10, "query API on generation 2")
        harness.wait_until(lambda: projector_generation(metrics_port) == 2, 10,
                           "daemon on generation 2")
        # A few more requests against the new generation before counting.
        seen = hammer.requests
        harness.wait_until(lambda: hammer.requests > seen + 50, 20, "requests after the switch")
    finally:
        hammer.stop.set()
        hammer.join(10)
    assert hammer.requests > 200, hammer.requests
    assert hammer.failures == 0, (hammer.failures, hammer.requests, hammer.examples)

    problems = harness.compare_with_oracle(oracle_a, api_fetcher(api))
    assert not problems, f"{len(problems)} differ after the rebuild; first: {problems[:5]}"
    metrics = api.get("/metrics")[2]
    assert metric(metrics, "readmodel_store_generation") == 2

    # New events go to the NEW generation: the daemon followed the switch.
    summary_b, oracle_b_path = harness.simulate(broker.bootstrap, workdir, 100, 22)
    wait_caught_up(api, summary_a["events"] + summary_b["events"])
    oracle_b = harness.read_oracle(oracle_b_path)
    problems = harness.compare_with_oracle(oracle_b, api_fetcher(api))
    assert not problems, f"{len(problems)} of stream B differ; first: {problems[:5]}"
    gens = harness.generations_by_id(config)
    assert sorted(gens) == [1, 2]
    assert gens[2]["current"] and gens[1]["previous"]
    assert gens[2]["events"] == summary_a["events"] + summary_b["events"]
    assert gens[1]["events"] == summary_a["events"]  # the old one stopped at the switch
    assert gens[2]["writer_active"] and not gens[1]["writer_active"]

    # Rollback: both follow; the daemon brings generation 1 up to date from its offsets.
    out = projector(config, "rollback")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "current -> gen-000001 (was gen-000002)" in out.stdout
    harness.wait_until(lambda: status_of(api)["generation"] == 1, 10, "query API back on 1")
    harness.wait_until(lambda: projector_generation(metrics_port) == 1, 10, "daemon back on 1")
    wait_caught_up(api, summary_a["events"] + summary_b["events"])
    problems = harness.compare_with_oracle(oracle_b, api_fetcher(api))
    assert not problems, f"{len(problems)} differ after the rollback; first: {problems[:5]}"
    gens = harness.generations_by_id(config)
    assert gens[1]["current"] and gens[2]["previous"]

    # A second rebuild keeps current + previous (keep_generations=2) and prunes the rest.
    out = projector(config, "rebuild")
    assert out.returncode == 0, out.stderr[-3000:]
    harness.wait_until(lambda: status_of(api)["generation"] == 3, 10, "query API on 3")
    gens = harness.generations_by_id(config)
    assert sorted(gens) == [1, 3], gens.keys()
    assert gens[3]["current"] and gens[1]["previous"]
    assert daemon.alive()


def iso(ts):
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).isoformat(timespec="milliseconds")


def test_rebuild_from_time_takes_only_later_events(broker, workdir):
    summary_a, oracle_a_path = harness.simulate(broker.bootstrap, workdir, 100, 31)
    config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="")
    assert harness.run_projector(config).returncode == 0
    start = time.time()
    # Message timestamps are the producer's clock: stream B is stamped after `start`.
    summary_b, oracle_b_path = harness.simulate(broker.bootstrap, workdir, 100, 32)

    out = projector(config, "rebuild", "--from-time", iso(start))
    assert out.returncode == 0, out.stderr[-3000:]
    done = [json.loads(line) for line in out.stderr.splitlines()
            if '"msg":"rebuild switched"' in line]
    assert done and done[0]["messages"] == summary_b["events"], done
    if broker.kind == "kafka":
        # A real broker answers offsets-for-times: the rebuild seeks to stream B and
        # never reads stream A (events read = messages + skipped_before_start).
        assert done[0]["skipped_before_start"] == 0, done
    else:
        # The mock cluster answers -1 (no offset for the time): the rebuild reads the
        # log from its start and skips stream A by timestamp.
        assert done[0]["skipped_before_start"] == summary_a["events"], done

    gens = harness.generations_by_id(config)
    assert gens[2]["current"]
    # Skipped messages still advance the offsets: a writer resumes after them.
    assert gens[2]["events"] == summary_a["events"] + summary_b["events"]
    docs_a = harness.inspect_docs(config, [e["key"] for e in harness.read_oracle(oracle_a_path)])
    assert all(doc is None for doc in docs_a.values()), "stream A leaked into a --from-time rebuild"
    oracle_b = harness.read_oracle(oracle_b_path)
    docs_b = harness.inspect_docs(config, [e["key"] for e in oracle_b])
    problems = harness.compare_with_oracle(
        oracle_b, lambda k: docs_b[k]["sections"] if docs_b[k] else None)
    assert not problems, f"{len(problems)} differ; first: {problems[:5]}"


def test_usage_and_failure_exit_codes(broker, workdir):
    config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="")
    assert projector(config, "rebuild", "--from-time", "yesterday").returncode == 2
    assert projector(config, "rebuild", "--from", "latest").returncode == 2
    assert projector(config, "rollback", "--to", "zero").returncode == 2
    assert projector(config, "generations", "--to", "1").returncode == 2
    # Nothing to roll back to yet: a failure, not a usage error.
    assert projector(config, "rollback").returncode == 1
    out = projector(config, "generations", "--json")
    assert out.returncode == 0 and json.loads(out.stdout) == []
    helptext = projector(config, "--help").stdout
    assert "rebuild" in helptext and "rollback" in helptext and "keep_generations" in helptext


def test_rebuild_publishes_no_dead_letter_twice(broker, workdir, processes):
    """A rebuild re-reads poison the current generation already dead-lettered: the DLQ must
    not get it twice — not from the rebuild, nor from the daemon re-consuming the messages
    it applied between the rebuild's catch-up and the switch. Poison arriving after the
    switch lands exactly once."""
    from test_chaos import dead_letters
    manifest_a = f"{workdir}/poison-a.jsonl"
    harness.simulate(broker.bootstrap, workdir, 200, 41, ["--poison", "16", "--poison-manifest",
                                                          manifest_a])
    config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="")
    daemon = harness.Process("projector", [harness.binary("projector/projector"), "--config",
                                           config], workdir)
    processes.append(daemon)
    wanted = {(p["topic"], p["partition"], p["offset"]) for p in
              map(json.loads, open(manifest_a))}
    harness.wait_until(lambda: set(dead_letters(broker.bootstrap, harness.TOPICS)) == wanted,
                       60, "the first 16 dead letters")
    # Poison keeps arriving while the rebuild runs, so some is applied by the old generation
    # after the rebuild caught up (and re-consumed by the new one after the switch).
    manifest_b = f"{workdir}/poison-b.jsonl"
    producer = threading.Thread(target=harness.simulate, args=(
        broker.bootstrap, workdir, 200, 42, ["--poison", "16", "--poison-manifest", manifest_b]))
    producer.start()
    out = projector(config, "rebuild")
    producer.join()
    assert out.returncode == 0, out.stderr[-3000:]
    manifest_c = f"{workdir}/poison-c.jsonl"
    harness.simulate(broker.bootstrap, workdir, 100, 43, ["--poison", "8", "--poison-manifest",
                                                          manifest_c])
    for path in (manifest_b, manifest_c):
        wanted |= {(p["topic"], p["partition"], p["offset"]) for p in map(json.loads, open(path))}
    assert len(wanted) == 40
    # dead_letters() fails on any (topic, partition, offset) published twice
    harness.wait_until(lambda: set(dead_letters(broker.bootstrap, harness.TOPICS)) == wanted,
                       60, "exactly the 40 dead letters")
    time.sleep(1)  # nothing more may follow
    assert set(dead_letters(broker.bootstrap, harness.TOPICS)) == wanted


def test_a_killed_rebuild_is_never_switched_to_and_the_next_one_starts_afresh(workdir):
    """A rebuild's new generation is read by nobody before the switch, so it is written with
    periodic durability (no fsync per commit; synced before the switch), whatever
    projector.durability says (sync here). Killed after its third batch, it is not current;
    once the OS has restarted (simulated with RM_BOOT_ID_FILE) its unsynced writes may be
    torn, so not even a rollback makes it current. The next rebuild builds another generation from the beginning: it equals the
    oracle, and the half-built one is deleted."""
    broker = harness.DevBroker(workdir, partitions=2)
    try:
        summary, oracle_path = harness.simulate(broker.bootstrap, workdir, 300, 51)
        boots = {}
        for name, boot_id in (("a", "0b7e0000-0000-4000-8000-00000000000a"),
                              ("b", "0b7e0000-0000-4000-8000-00000000000b")):
            path = os.path.join(workdir, f"boot-{name}")
            with open(path, "w") as f:
                f.write(boot_id + "\n")
            boots[name] = dict(os.environ, RM_BOOT_ID_FILE=path)
        config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="",
                                      projector__durability="sync",
                                      projector__batch_max_events=200)
        out = projector(config, "--until-caught-up", env=boots["a"])
        assert out.returncode == 0, out.stderr[-2000:]

        out = projector(config, "rebuild", env=dict(boots["a"], RM_FAILPOINT="batch-commit:3"))
        assert out.returncode == -signal.SIGKILL, (out.returncode, out.stderr[-2000:])
        gens = harness.generations_by_id(config)
        assert gens[1]["current"] and not gens[2]["current"], gens
        assert not gens[2]["writer_active"]

        # The OS restarted: generation 2 may be torn.
        out = projector(config, "rollback", "--to", "2", env=boots["b"])
        assert out.returncode == 1, f"a killed rebuild's generation went live: {out.stdout}"
        assert "may have lost writes" in out.stderr, out.stderr[-2000:]
        assert harness.generations_by_id(config)[1]["current"]

        out = projector(config, "rebuild", env=boots["b"])
        assert out.returncode == 0, out.stderr[-3000:]
        assert "current -> gen-000003" in out.stdout, out.stdout
        gens = harness.generations_by_id(config)
        assert sorted(gens) == [1, 3], gens.keys()
        assert gens[3]["events"] == summary["events"]
        oracle = harness.read_oracle(oracle_path)
        docs = harness.inspect_docs(config, [e["key"] for e in oracle])
        problems = harness.compare_with_oracle(
            oracle, lambda k: docs[k]["sections"] if docs[k] else None)
        assert not problems, f"{len(problems)} differ; first: {problems[:5]}"
    finally:
        broker.stop()
