"""Helpers shared by the Streamlit AppTest tests."""

from __future__ import annotations

import time

from streamlit.testing.v1 import AppTest


def poll(at: AppTest, until, timeout: float = 40.0) -> AppTest:
    """Re-run the page until `until(at)` holds (jobs run in a background worker), or fail."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        at.run()
        if until(at):
            return at
        time.sleep(0.2)
    raise AssertionError("condition not reached; errors: " + str([e.value for e in at.error]))
