"""pytest fixtures: a dev broker per test module, a scratch directory per test, and
process cleanup even when a test fails."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402


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


@pytest.fixture
def broker(tmp_path, processes):
    b = harness.DevBroker(str(tmp_path))
    processes.append(b)
    return b
