"""The oracle under chaos: duplicates, cross-topic skew (payments and shipments before the
order that links them), poison of every shape and v1/v2 writers interleaved (a renamed
field, an added optional one, a dropped one), all in one stream. At the end every
customer equals the oracle, the dead-letter topics hold exactly the injected poison (by
original topic, partition and offset), and nothing is left parked."""
import json
import os
import random
import signal
import subprocess
import time

import pytest

import harness

pytestmark = pytest.mark.brokers("dev", "kafka")

POISON = 24  # three of each of the eight shapes


def read_manifest(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def dead_letters(bootstrap, topics):
    """{(topic, partition, offset): error class} read back from <topic>.dlq with kcat."""
    found = {}
    for topic in topics:
        out = subprocess.run(["kcat", "-b", bootstrap, "-C", "-t", topic + ".dlq", "-o",
                              "beginning", "-e", "-q", "-f", "%h\n"],
                             capture_output=True, text=True, timeout=60)
        for line in out.stdout.splitlines():
            headers = dict(h.split("=", 1) for h in line.split(",") if "=" in h)
            where = (headers["__connect.errors.topic"],
                     int(headers["__connect.errors.partition"]),
                     int(headers["__connect.errors.offset"]))
            assert where not in found, f"dead letter {where} published twice"
            found[where] = headers.get("__connect.errors.exception.class.name", "")
    return found


def chaos_args(workdir, seed):
    manifest = f"{workdir}/poison-{seed}.jsonl"
    return manifest, ["--duplicates", "5", "--skew", "400", "--poison", str(POISON),
                      "--poison-manifest", manifest, "--evolve"]


def test_oracle_under_chaos(broker, workdir):
    manifest, extra = chaos_args(workdir, 51)
    summary, oracle_path = harness.simulate(broker.bootstrap, workdir, 1500, 51, extra)
    poison = read_manifest(manifest)
    assert len(poison) == POISON
    assert len({p["shape"] for p in poison}) == 8, "every poison shape injected"

    config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="")
    out = harness.run_projector(config)
    assert out.returncode == 0, out.stderr[-2000:]

    oracle = harness.read_oracle(oracle_path)
    docs = harness.inspect_docs(config, [e["key"] for e in oracle])
    problems = harness.compare_with_oracle(
        oracle, lambda key: docs[key]["sections"] if docs[key] else None)
    assert not problems, problems[:5]

    stats = json.loads(harness.inspect(config, "stats").stdout)
    assert stats["pending"] == 0, stats  # nothing left parked
    assert stats["outbox"] == 0, (stats, [l for l in out.stderr.splitlines()
                                          if '"level":"info"' not in l][-10:])
    topics = sorted({p["topic"] for p in poison})
    letters = dead_letters(broker.bootstrap, topics)
    want = {(p["topic"], p["partition"], p["offset"]) for p in poison}
    assert set(letters) == want, (sorted(set(letters) - want)[:5], sorted(want - set(letters))[:5])


def check_final_state(broker, config, oracle_paths, manifests, log=""):
    """The store equals the oracle of every stream, nothing is parked or unpublished, and
    the dead-letter topics hold every injected poison message exactly once."""
    oracle = [e for path in oracle_paths for e in harness.read_oracle(path)]
    docs = harness.inspect_docs(config, [e["key"] for e in oracle])
    problems = harness.compare_with_oracle(
        oracle, lambda key: docs[key]["sections"] if docs[key] else None)
    assert not problems, problems[:5]
    stats = json.loads(harness.inspect(config, "stats").stdout)
    assert stats["pending"] == 0 and stats["outbox"] == 0, (
        stats, [l for l in log.splitlines() if "dead-lettered" not in l][-12:])
    poison = [p for path in manifests for p in read_manifest(path)]
    letters = dead_letters(broker.bootstrap, sorted({p["topic"] for p in poison}))
    want = {(p["topic"], p["partition"], p["offset"]) for p in poison}
    assert set(letters) == want, (sorted(set(letters) - want)[:5], sorted(want - set(letters))[:5])


def start_stream(bootstrap, workdir, customers, seed):
    """simulate with chaos in the background; returns (Popen, oracle path, manifest)."""
    manifest, extra = chaos_args(workdir, seed)
    oracle = os.path.join(workdir, f"oracle-{seed}.jsonl")
    with open(os.path.join(workdir, f"simulate-{seed}.log"), "wb") as log:
        proc = subprocess.Popen(
            [harness.binary("tools/simulate/simulate"), "--bootstrap", bootstrap, "--customers",
             str(customers), "--seed", str(seed), "--oracle", oracle, *extra],
            cwd=harness.ROOT, stdout=subprocess.DEVNULL, stderr=log)
    proc.log_path = log.name
    return proc, oracle, manifest


def delivered(proc):
    """Messages the simulator had acknowledged (its "stream produced" log line)."""
    assert proc.wait(timeout=300) == 0, open(proc.log_path).read()[-2000:]
    with open(proc.log_path) as f:
        for line in f:
            record = json.loads(line)
            if record["msg"] == "stream produced":
                return record["delivered"]
    raise AssertionError("simulate did not report its deliveries")


# Fixed crash points (lib/failpoint.h) first, then random moments.
FAILPOINTS = ["apply-event:700", "batch-commit:2", "outbox-produced:1", "apply-event:5000",
              "batch-commit:9", "outbox-produced:2", "apply-event:1"]
KILLS = 36


def test_crash_loop_sigkill(broker, workdir):
    """SIGKILL the projector again and again while chaotic streams are being produced and
    consumed; restart it each time. The final store must still equal the oracle, with no
    counter doubled (the oracle holds the counters) and no dead letter lost or doubled."""
    rng = random.Random(20261201)
    config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="")
    seeds = [61, 62, 63]
    streams = []

    def next_stream():
        streams.append(start_stream(broker.bootstrap, workdir, 800, seeds[len(streams)]))

    next_stream()
    log = open(os.path.join(workdir, "projector.log"), "ab")
    for i in range(KILLS):
        if streams[-1][0].poll() is not None and len(streams) < len(seeds):
            next_stream()  # keep the projector busy: the next stream arrives mid-loop
        env = dict(os.environ)
        failpoint = FAILPOINTS[i // 5] if i % 5 == 0 and i // 5 < len(FAILPOINTS) else None
        if failpoint:
            env["RM_FAILPOINT"] = failpoint
        proc = subprocess.Popen([harness.binary("projector/projector"), "--config", config],
                                cwd=harness.ROOT, env=env, stdout=log, stderr=log)
        try:
            # a failpoint kills the process itself; one never reached is cut off like
            # the random ones
            proc.wait(timeout=8 if failpoint else rng.uniform(0.05, 0.9))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        assert proc.returncode == -signal.SIGKILL, (failpoint, proc.returncode)
    log.close()
    while len(streams) < len(seeds):
        streams[-1][0].wait(timeout=300)
        next_stream()
    for proc, _, _ in streams:
        delivered(proc)  # exit status 0 and every message acknowledged

    out = harness.run_projector(config)
    with open(os.path.join(workdir, "projector-final.log"), "w") as f:
        f.write(out.stderr)
    assert out.returncode == 0, out.stderr[-2000:]
    check_final_state(broker, config, [o for _, o, _ in streams], [m for _, _, m in streams],
                      out.stderr)
    assert "failpoint" in open(os.path.join(workdir, "projector.log"), errors="replace").read()


def test_broker_faults(workdir, processes):
    """High RTT, Fetch errors, leader moves and every broker down for seconds, while a
    chaotic stream is produced and the projector runs as a daemon: it recovers by itself
    (no restart) and ends equal to the oracle, every poison message dead-lettered once."""
    control = os.path.join(workdir, "control.fifo")
    broker = harness.DevBroker(workdir, extra=("--brokers", "3", "--control", control))
    processes.append(broker)
    harness.wait_until(lambda: os.path.exists(control), 10, "the control FIFO")
    config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="")
    projector = harness.Process("projector", [harness.binary("projector/projector"),
                                              "--config", config], workdir)
    processes.append(projector)
    streams = [start_stream(broker.bootstrap, workdir, 1200, 81)]

    fifo = os.open(control, os.O_WRONLY)

    def fault(command, then_sleep):
        os.write(fifo, (command + "\n").encode())
        time.sleep(then_sleep)

    fault("rtt 1 400", 0)
    fault("rtt 2 400", 1.5)
    fault("rtt 1 0", 0)
    fault("rtt 2 0", 0)
    streams.append(start_stream(broker.bootstrap, workdir, 800, 82))  # consumed under faults
    fault("error 1 30 6", 1.0)        # Fetch: NOT_LEADER_OR_FOLLOWER x30
    fault("error 1 10 7", 1.0)        # Fetch: REQUEST_TIMED_OUT x10
    for partition in range(6):        # move every leader of two topics
        fault(f"leader orders {partition} {1 + partition % 3}", 0)
        fault(f"leader payments {partition} {1 + (partition + 1) % 3}", 0)
    time.sleep(1.0)
    streams.append(start_stream(broker.bootstrap, workdir, 800, 83))  # produced across the outage
    for b in (1, 2, 3):
        fault(f"broker-down {b}", 0)
    time.sleep(4.0)                   # the whole cluster is gone for four seconds
    for b in (1, 2, 3):
        fault(f"broker-up {b}", 0)
    os.close(fifo)

    total = sum(delivered(sim) for sim, _, _ in streams)
    harness.wait_until(lambda: harness.committed_offsets(config) >= total, 120,
                       f"the projector to apply all {total} messages by itself")
    assert projector.alive(), projector.log_text()[-2000:]
    assert projector.stop() == 0
    check_final_state(broker, config, [o for _, o, _ in streams], [m for _, _, m in streams],
                      projector.log_text())
    assert "ok: broker-down" in broker.log_text()
