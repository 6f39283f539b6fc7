"""A live REST API for tests: `python -m studio serve` as a real process on 127.0.0.1, with real tokens.

Tests talk to it over HTTP (httpx) the way a client, or an attacker, would.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LiveApi:
    """A running server: its base URL, tokens by name, outputs folder and process."""

    url: str
    outputs: Path
    env: dict[str, str]
    proc: subprocess.Popen
    tokens: dict[str, str] = field(default_factory=dict)
    log: Path | None = None
    workers: list[subprocess.Popen] = field(default_factory=list)

    def add_worker(self, *args: str) -> subprocess.Popen:
        """Start one more `python -m studio worker` process on this server's store."""
        log = self.outputs.parent / f"worker-{len(self.workers)}-{os.getpid()}.log"
        p = subprocess.Popen([sys.executable, "-m", "studio", "worker", *args], env=self.env, cwd=ROOT,
                             stdout=open(log, "w"), stderr=subprocess.STDOUT)  # noqa: SIM115
        self.workers.append(p)
        return p

    def client(self, token: str | None = None, **kw: Any) -> httpx.Client:
        """An httpx client for this server, authenticated as token name `token` (or anonymous)."""
        headers = dict(kw.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {self.tokens[token]}"
        return httpx.Client(base_url=self.url, headers=headers, timeout=kw.pop("timeout", 60), **kw)

    def studio(self, *args: str) -> subprocess.CompletedProcess:
        """Run `python -m studio ARGS` against this server's store."""
        return subprocess.run(
            [sys.executable, "-m", "studio", *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def stop(self) -> None:
        """Stop the server and its workers (SIGTERM, then SIGKILL)."""
        for p in [self.proc, *self.workers]:
            if p.poll() is None:
                p.terminate()
        for p in [self.proc, *self.workers]:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


def start_api(
    outputs: Path,
    tokens: dict[str, list[str]],
    extra_env: dict[str, str] | None = None,
    args: list[str] | None = None,
    workers: int = 1,
) -> LiveApi:
    """Create `tokens` ({name: [flags]}) with the CLI, start the server and `workers` CPU worker
    processes (the API runs no job itself), and wait for /health."""
    env = {
        **os.environ,
        "STUDIO_OUTPUTS_DIR": str(outputs),
        "STUDIO_JOBS_DB": str(outputs / "jobs.sqlite"),
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    }
    port = free_port()
    log = outputs.parent / f"serve-{port}.log"
    made: dict[str, str] = {}
    for name, flags in tokens.items():
        res = subprocess.run(
            [sys.executable, "-m", "studio", "tokens", "create", name, *flags],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert res.returncode == 0, res.stderr
        made[name] = res.stdout.strip()
    fh = open(log, "w")  # noqa: SIM115 - kept open for the server's lifetime
    proc = subprocess.Popen(
        [sys.executable, "-m", "studio", "serve", "--host", "127.0.0.1", "--port", str(port), *(args or [])],
        env=env,
        cwd=ROOT,
        stdout=fh,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    end = time.monotonic() + 90
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                live = LiveApi(url, outputs, env, proc, made, log)
                for _ in range(workers):
                    live.add_worker("--device", "cpu")
                return live
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"server did not answer /health: {log.read_text()[-2000:]}")


def get_ok(c: httpx.Client, path: str, timeout: float = 120, **kw: Any) -> httpx.Response:
    """GET `path`, waiting out 429s (their Retry-After, capped at 10 s) until `timeout`; any other
    non-200 answer fails with its body (never read a field from an error body)."""
    end = time.monotonic() + timeout
    while True:
        r = c.get(path, **kw)
        if r.status_code == 429 and time.monotonic() < end:
            try:
                wait = float(r.headers.get("retry-after", "1"))
            except ValueError:
                wait = 1.0
            time.sleep(min(10.0, max(0.2, wait), max(0.0, end - time.monotonic())))
            continue
        assert r.status_code == 200, f"GET {path}: {r.status_code} {r.text[:500]}"
        return r


def get_json(c: httpx.Client, path: str, timeout: float = 120, **kw: Any) -> Any:
    """`get_ok(...).json()`: a 200 answer's body, 429s waited out."""
    return get_ok(c, path, timeout, **kw).json()


def wait_job(c: httpx.Client, job_id: str, timeout: float = 120, every: float = 0.25) -> dict[str, Any]:
    """Poll a job (backing off on 429) until it has finished or `timeout` passed; return its record."""
    end = time.monotonic() + timeout
    while True:
        j = get_json(c, f"/jobs/{job_id}", timeout=max(10.0, end - time.monotonic()))
        if j["status"] in ("done", "failed", "cancelled") or time.monotonic() > end:
            return j
        time.sleep(every)


def wait_until(c: httpx.Client, job_id: str, pred: Any, timeout: float = 120,
               every: float = 0.1) -> dict[str, Any]:
    """Poll a job until `pred(record)` holds (429s waited out); fail if it finishes first or time runs out."""
    end = time.monotonic() + timeout
    while True:
        j = get_json(c, f"/jobs/{job_id}", timeout=max(10.0, end - time.monotonic()))
        if pred(j):
            return j
        assert j["status"] in ("queued", "running") and time.monotonic() < end, j
        time.sleep(every)
