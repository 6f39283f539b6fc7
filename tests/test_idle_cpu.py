"""An idle studio costs (almost) no CPU: the studio started as `make run` starts it
(`python -m studio stack ui --port P`: the Streamlit server plus its worker process), a page open in
headless Chromium, then every process of that tree sampled for 20 s (utime + stime from /proc, all
threads), summed.

The measured share of one core is written to test-artifacts/idle_cpu.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_browser import ARTIFACTS, ROOT, _free_port, _wait, driver, wait_healthy

pytestmark = pytest.mark.browser
__all__ = ["driver"]
SAMPLE_S = 20.0
LIMIT = 0.05          # of one core, on average


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (every thread), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tree(pid: int) -> list[int]:
    """`pid` and all its descendants (from /proc/<pid>/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            kids = (task / "children").read_text().split() if (task / "children").is_file() else []
            todo.extend(int(k) for k in kids)
    return out


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs Linux /proc")
def test_idle_server_uses_under_5_percent_of_a_core(driver, tmp_path):
    from selenium.webdriver.common.by import By
    port = _free_port()
    env = dict(os.environ, STUDIO_OUTPUTS_DIR=str(tmp_path), STUDIO_JOBS_DB=str(tmp_path / "jobs.sqlite"))
    # make run's command line (Makefile: $(BIN)/python -m studio stack ui --port $(PORT)); Streamlit's
    # settings come from .streamlit/config.toml (no file watcher, localhost)
    proc = subprocess.Popen([sys.executable, "-m", "studio", "stack", "ui", "--port", str(port)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://localhost:{port}"
    try:
        wait_healthy(url, proc, 60, lambda: proc.stdout.read().decode())
        driver.get(url + "/Generate")
        _wait(lambda: any("Generate" in h.text for h in driver.find_elements(By.TAG_NAME, "h1")), 60,
              "the page")
        time.sleep(3.0)                      # let the first run, imports and the browser settle
        assert not driver.find_elements(By.CSS_SELECTOR, "[data-testid=stException]")
        pids = _tree(proc.pid)
        assert len(pids) >= 3, f"expected the stack, Streamlit and a worker, got {pids}"
        t0, c0 = time.monotonic(), {p: _cpu_seconds(p) for p in pids}
        time.sleep(SAMPLE_S)
        t1, c1 = time.monotonic(), {p: _cpu_seconds(p) for p in pids}
        per = {p: round(c1[p] - c0[p], 3) for p in pids}
        share = sum(per.values()) / (t1 - t0)
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "idle_cpu.json").write_text(json.dumps(
            {"seconds": round(t1 - t0, 2), "cpu_seconds_per_process": per,
             "share_of_one_core": round(share, 4),
             "cpus": os.cpu_count(), "command": "python -m studio stack ui --port P",
             "page": "/Generate, open in headless Chromium"}, indent=2))
        assert proc.poll() is None, "the studio died"
        assert share < LIMIT, f"idle server used {share:.1%} of a core over {t1 - t0:.0f} s"
        driver.save_screenshot(str(ARTIFACTS / "idle-generate.png"))
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
