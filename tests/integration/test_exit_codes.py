"""The projector's exit code says what failed, decided by error code: 2 for a configuration
that no restart can fix (systemd's RestartPreventExitStatus=2, docs/runbook.md), 1 for a
runtime failure that a restart may clear. Each case fails at start, before anything is
applied, in the daemon and in `projector rebuild`."""
import os
import socket
import subprocess

import pytest

import harness

# Kafka settings librdkafka accepts one by one but refuses when it builds a client:
# a consumer with a fetch limit below the message size it must take, and an idempotent
# producer (the dead-letter outbox's, the erasure topic's) with acks other than all.
REFUSED = {
    "consumer": ({"fetch.max.bytes": "1000"}, "fetch.max.bytes"),
    "idempotent-producer": ({"acks": "1"}, "acks"),
}
MODES = {"daemon": ("--until-caught-up",), "rebuild": ("rebuild",)}


def projector(config, args, env=None):
    return subprocess.run([harness.binary("projector/projector"), "--config", config, *args],
                          cwd=harness.ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("client", sorted(REFUSED))
def test_a_kafka_setting_librdkafka_refuses_exits_2(broker, workdir, mode, client):
    kafka, setting = REFUSED[client]
    config = harness.write_config(workdir, broker.bootstrap, kafka=kafka,
                                  projector__metrics_listen="")
    out = projector(config, MODES[mode])
    assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
    assert setting in out.stderr, out.stderr[-2000:]


@pytest.mark.parametrize("mode", sorted(MODES))
def test_a_store_that_cannot_be_opened_exits_1(broker, workdir, mode):
    """Not configuration: the store's data file is damaged (LMDB refuses it)."""
    config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="")
    assert projector(config, ("--until-caught-up",)).returncode == 0  # gen-000001 exists
    gen = os.path.join(workdir, "data", "customer360", "current")
    with open(os.path.join(gen, "data.mdb"), "r+b") as f:
        f.write(b"\xff" * 8192)  # both meta pages
    out = projector(config, MODES[mode])
    assert out.returncode == 1, (out.returncode, out.stderr[-2000:])
    assert "MDB_INVALID" in out.stderr, out.stderr[-2000:]


@pytest.mark.parametrize("mode", sorted(MODES))
def test_a_pipeline_that_cannot_start_for_another_reason_exits_1(broker, workdir, mode):
    """The pipeline refuses a malformed test hook (failpoint.h): not configuration."""
    config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="")
    out = projector(config, MODES[mode], env={"RM_TEST_SKIP_APPLY": "garbage"})
    assert out.returncode == 1, (out.returncode, out.stderr[-2000:])
    assert "RM_TEST_SKIP_APPLY" in out.stderr, out.stderr[-2000:]


def query_api(config, *sets):
    args = [harness.binary("query-api/query-api"), "--config", config]
    for s in sets:
        args += ["--set", s]
    return subprocess.run(args, cwd=harness.ROOT, capture_output=True, text=True, timeout=60)


def test_query_api_a_busy_port_exits_1_a_bad_listen_exits_2(broker, workdir):
    """The query API's start-up too: a port another process holds is a runtime failure
    (a restart may find it free: 1); an address that cannot be parsed, or a TLS file that
    cannot be read, is configuration (2). Decided by error code, not by the message (the
    message of a busy port starts with the setting's name, and was read as configuration)."""
    config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="")
    assert projector(config, ("--until-caught-up",)).returncode == 0  # a store to serve
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    try:
        port = holder.getsockname()[1]
        out = query_api(config, f"query_api.listen=127.0.0.1:{port}")
        assert out.returncode == 1, (out.returncode, out.stderr[-2000:])
        assert "cannot listen" in out.stderr, out.stderr[-2000:]
    finally:
        holder.close()
    out = query_api(config, "query_api.listen=nowhere")
    assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
    out = query_api(config, f"query_api.listen=127.0.0.1:{harness.free_port()}",
                    "query_api.tls.cert_file=/nonexistent/cert.pem",
                    "query_api.tls.key_file=/nonexistent/key.pem")
    assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
