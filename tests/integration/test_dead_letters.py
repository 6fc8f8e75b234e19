"""Poison never blocks a partition: it goes to <topic>.dlq with its coordinates and
reason, exactly once, and `projector dlq list/purge` see it."""
import json
import subprocess

import harness


def test_poison_goes_to_the_dead_letter_topic(broker, workdir):
    summary, oracle_path = harness.simulate(broker.bootstrap, workdir, 200, 12)
    poison = {"customers": b"not avro at all", "orders": b"\x00\x00\x00\x00\x63unknown-schema"}
    for topic, value in poison.items():
        subprocess.run(["kcat", "-P", "-b", broker.bootstrap, "-t", topic, "-k", "poison-key",
                        "-p", "1"], input=value, check=True, timeout=60)
    config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="")
    for _ in range(2):  # a second run must not publish them again
        out = harness.run_projector(config)
        assert out.returncode == 0, out.stderr[-2000:]
    for topic in poison:
        got = subprocess.run(["kcat", "-b", broker.bootstrap, "-C", "-t", topic + ".dlq",
                              "-o", "beginning", "-e", "-q", "-f", "%k|%h\n"],
                             capture_output=True, text=True, timeout=60).stdout.splitlines()
        assert len(got) == 1, (topic, got)
        key, headers = got[0].split("|", 1)
        assert key == "poison-key"
        assert f"__connect.errors.topic={topic}" in headers
        assert "__connect.errors.partition=1" in headers
        assert "readmodel.view=customer360" in headers
    assert json.loads(harness.inspect(config, "stats").stdout)["outbox"] == 0

    listed = subprocess.run([harness.binary("projector/projector"), "--config", config, "dlq",
                             "list"], cwd=harness.ROOT, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    letters = [json.loads(line) for line in listed.stdout.splitlines()]
    assert sorted(l["topic"] for l in letters) == ["customers", "orders"]
    assert {l["error"] for l in letters} == {"framing", "schema"}
    subprocess.run([harness.binary("projector/projector"), "--config", config, "dlq", "purge"],
                   cwd=harness.ROOT, check=True, capture_output=True, timeout=60)
    listed = subprocess.run([harness.binary("projector/projector"), "--config", config, "dlq",
                             "list"], cwd=harness.ROOT, capture_output=True, text=True, timeout=60)
    assert listed.stdout == ""

    # and the rest of the stream is intact
    oracle = harness.read_oracle(oracle_path)
    docs = harness.inspect_docs(config, [e["key"] for e in oracle])
    problems = harness.compare_with_oracle(
        oracle, lambda key: docs[key]["sections"] if docs[key] else None)
    assert not problems, problems[:5]
