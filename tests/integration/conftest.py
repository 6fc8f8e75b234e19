"""pytest fixtures: a dev broker per test, a real Apache Kafka cluster per session, a
scratch directory per test, and process cleanup even when a test fails.

Tests that take the `broker` fixture run on the dev broker; marked
`@pytest.mark.brokers("dev", "kafka")` (or a module's pytestmark) they run on both, ids
[dev] and [kafka]. The real broker's tests skip only when RM_KAFKA=0."""
import os
import re
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "brokers(*kinds): run the test on each broker kind "
                            "(dev: the embedded dev broker, kafka: real Apache Kafka)")


def pytest_generate_tests(metafunc):
    marker = metafunc.definition.get_closest_marker("brokers")
    if marker and "broker" in metafunc.fixturenames:
        metafunc.parametrize("broker", marker.args, indirect=True)


@pytest.fixture
def workdir(tmp_path):
    return str(tmp_path)


@pytest.fixture
def processes():
    """Collects harness.Process objects; stops every one that is still running."""
    started = []
    yield started
    for proc in reversed(started):
        proc.stop()


@pytest.fixture(scope="session")
def real_kafka(tmp_path_factory):
    """One real Kafka cluster (1 node) for the whole session, started on first use."""
    if os.environ.get("RM_KAFKA", "1") == "0":
        pytest.skip("real Kafka disabled (RM_KAFKA=0)")
    cluster = harness.RealKafka(str(tmp_path_factory.mktemp("kafka")), sasl_ssl=True)
    yield cluster
    cluster.stop()


@pytest.fixture
def kafka(request, real_kafka):
    """The session's real Kafka, reset to empty Customer 360 topics for this test."""
    real_kafka.reset()
    return harness.SharedKafka(real_kafka)


@pytest.fixture
def broker(request, tmp_path, processes):
    kind = getattr(request, "param", "dev")
    if kind == "kafka":
        return request.getfixturevalue("kafka")
    b = harness.DevBroker(str(tmp_path))
    processes.append(b)
    return b


# What the real broker adds to the suite: its tests' setup, call and teardown, which
# include starting and stopping the cluster (tools/test prints this line).
_REAL_KAFKA = {"tests": set(), "seconds": 0.0}
_KAFKA_ID = re.compile(r"\[(?:[^\]]*-)?kafka(?:-[^\]]*)?\]$|test_real_kafka\.py::")


def pytest_runtest_logreport(report):
    if _KAFKA_ID.search(report.nodeid):
        _REAL_KAFKA["tests"].add(report.nodeid)
        _REAL_KAFKA["seconds"] += report.duration


def pytest_terminal_summary(terminalreporter):
    if _REAL_KAFKA["tests"]:
        terminalreporter.write_line("real Kafka: %d tests, %.0f s" % (
            len(_REAL_KAFKA["tests"]), _REAL_KAFKA["seconds"]))
