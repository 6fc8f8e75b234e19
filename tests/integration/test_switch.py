"""A generation switch is all or nothing: when the daemon cannot take the new generation
(here its partition assignment fails, through the `assign` failpoint), it keeps writing the
old one — no closed store under the pipeline — says so in a log line and a metric, and a
restart takes the new generation from its own offsets without losing anything."""
import json
import os
import signal
import subprocess

import harness


def projector(config, *args, timeout=120):
    return subprocess.run([harness.binary("projector/projector"), "--config", config, *args],
                          cwd=harness.ROOT, capture_output=True, text=True, timeout=timeout)




def daemon_metrics(port):
    try:
        return harness.scrape_metrics(f"http://127.0.0.1:{port}/metrics")
    except OSError:
        return None


def applied(port, events):
    """The daemon's metrics once it has stored `events` offsets with no lag, else None."""
    samples = daemon_metrics(port)
    if not samples:
        return None
    done = harness.metric_total(samples, "readmodel_partition_next_offset")
    lag = harness.metric_total(samples, "readmodel_partition_lag_messages")
    return samples if done >= events and lag == 0 else None


def test_failed_switch_keeps_writing_the_old_generation(broker, workdir, processes):
    summary_a, _ = harness.simulate(broker.bootstrap, workdir, 100, 61)
    port = harness.free_port()
    config = harness.write_config(workdir, broker.bootstrap,
                                  projector__metrics_listen=f"127.0.0.1:{port}")
    # Pass 1 is the daemon's first assignment; every later one (the switch) fails.
    env = dict(os.environ, RM_FAILPOINT_ERROR="assign:2:1000000")
    daemon = harness.Process("projector", [harness.binary("projector/projector"), "--config",
                                           config], workdir, env=env)
    processes.append(daemon)
    harness.wait_until(lambda: applied(port, summary_a["events"]), 60, "stream A applied")

    out = projector(config, "rebuild")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "current -> gen-000002" in out.stdout, out.stdout
    harness.wait_until(lambda: "failpoint assign: EIO (pass 2)" in daemon.log_text(),
                       30, "the daemon's failed switch")

    # Still alive, still on generation 1, and still applying: nothing runs on a closed store.
    summary_b, _ = harness.simulate(broker.bootstrap, workdir, 50, 62)
    total = summary_a["events"] + summary_b["events"]
    samples = harness.wait_until(lambda: not daemon.alive() or applied(port, total), 60,
                                 "stream B applied")
    assert daemon.alive(), daemon.log_text()[-3000:]
    line = next(json.loads(l) for l in daemon.log_text().splitlines()
                if "cannot switch to the new store generation" in l)
    assert line["generation"] == 2 and line["current_generation"] == 1, line
    assert harness.metric_total(samples, "readmodel_store_generation") == 1
    assert harness.metric_total(samples, "readmodel_generation_switch_failures_total") >= 1
    gens = harness.generations_by_id(config)
    assert gens[1]["events"] == total, gens[1]
    assert gens[2]["current"] and gens[2]["events"] == summary_a["events"], gens[2]

    daemon.send(signal.SIGTERM)
    assert daemon.wait(60) == 0, daemon.log_text()[-3000:]
    assert "AddressSanitizer" not in daemon.log_text()

    # A restart without the failpoint opens current (generation 2) and brings it up to date.
    restarted = harness.Process("projector-2", [harness.binary("projector/projector"),
                                                "--config", config], workdir)
    processes.append(restarted)
    samples = harness.wait_until(lambda: applied(port, total), 60, "generation 2 caught up")
    assert harness.metric_total(samples, "readmodel_store_generation") == 2
    assert harness.generations_by_id(config)[2]["events"] == total
