"""Helpers shared by the Streamlit AppTest tests."""

from __future__ import annotations

import time

import pytest
from streamlit.testing.v1 import AppTest

from studio.ui.common import shutdown_queues


@pytest.fixture(autouse=True)
def fresh_queue():
    """A fresh job queue for each test of a module that imports this fixture (and none left after)."""
    shutdown_queues()
    yield
    shutdown_queues()


def poll(at: AppTest, until, timeout: float = 40.0) -> AppTest:
    """Re-run the page until `until(at)` holds (jobs run in a background worker), or fail."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        at.run()
        if until(at):
            return at
        time.sleep(0.2)
    raise AssertionError("condition not reached; errors: " + str([e.value for e in at.error]))
