"""`python -m studio stack api|ui` as real processes: a worker killed with SIGKILL is restarted with a
bounded back-off while the front end keeps answering, and its job follows the lease rules; the studio
(Streamlit) refuses foreign Host headers, HTTP and WebSocket alike, and keeps serving localhost."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import psutil

from studio.jobs.store import JobStore
from studio.jobs.supervise import Supervised
from tests.conftest import DATA
from tests.live_api import ROOT, free_port, get_json, wait_job, wait_until


def _env(tmp_path) -> dict[str, str]:
    out = tmp_path / "outputs"
    out.mkdir(exist_ok=True)
    return {**os.environ, "STUDIO_OUTPUTS_DIR": str(out), "STUDIO_JOBS_DB": str(out / "jobs.sqlite"),
            "PYTHONUNBUFFERED": "1"}


def _workers(stack: subprocess.Popen) -> list[psutil.Process]:
    """The stack's live worker processes."""
    out = []
    for p in psutil.Process(stack.pid).children():
        try:
            if "worker" in p.cmdline() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.Error:   # gone, or a zombie not yet reaped by the stack
            continue
    return out


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def test_stack_api_restarts_a_killed_worker_front_end_stays_up(tmp_path):
    env = _env(tmp_path)
    res = subprocess.run([sys.executable, "-m", "studio", "tokens", "create", "ann"], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    token, port = res.stdout.strip(), free_port()
    log = tmp_path / "stack.log"
    stack = subprocess.Popen([sys.executable, "-m", "studio", "stack", "api", "--port", str(port),
                              "--workers", "1"], env=env, cwd=ROOT, stdout=open(log, "w"),  # noqa: SIM115
                             stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        end = time.monotonic() + 120
        while True:
            assert stack.poll() is None and time.monotonic() < end, log.read_text()[-3000:]
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200 and _workers(stack):
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as c:
            up = c.post("/uploads", files={"file": ("a.jpg", (DATA / "astronaut.jpg").read_bytes())}).json()
            req = {"prompt": "camera slowly zooming in", "frames": 48, "width": 384, "height": 384,
                   "image": up["id"], "preset": "veryslow"}
            r = c.post("/jobs", json={"kind": "generate", "payload": {"request": req}})
            assert r.status_code == 201, r.text
            jid = r.json()["id"]
            wait_until(c, jid, lambda j: j["status"] == "running" and j["i"] >= 1, timeout=180)
            (old,) = _workers(stack)
            os.kill(old.pid, signal.SIGKILL)
            t0, answered, new = time.monotonic(), 0, []
            while not new:   # the front end answers throughout; a new worker appears
                assert time.monotonic() - t0 < 60, log.read_text()[-3000:]
                assert httpx.get(url + "/health", timeout=5).status_code == 200
                answered += 1
                new = [p for p in _workers(stack) if p.pid != old.pid]
                time.sleep(0.2)
            print(f"worker restarted {time.monotonic() - t0:.1f} s after its SIGKILL "
                  f"({answered} /health answers meanwhile)")
            done = wait_job(c, jid, timeout=300)
            assert done["status"] == "done", done
            assert get_json(c, "/health")["status"] == "ok"
        row = JobStore(tmp_path / "outputs" / "jobs.sqlite").get(jid)
        assert row.attempts == 2 and f":{new[0].pid}:" in row.worker, (row.attempts, row.worker)
        assert stack.poll() is None
        text = log.read_text()
        assert f"worker 0 (cpu) (pid {old.pid}) exited with code -9" in text, text[-3000:]
        assert "worker 0 (cpu) restarted" in text
    finally:
        _stop(stack)


def test_restart_back_off_doubles_to_its_cap_and_resets_after_a_healthy_run():
    code = "import sys; sys.exit(3)"
    sup = Supervised("crasher", lambda: subprocess.Popen([sys.executable, "-c", code]), first_s=0.05,
                     max_s=0.4, healthy_s=30)
    sup.launch()
    delays = []
    end = time.monotonic() + 60
    while len(delays) < 6 and time.monotonic() < end:
        n = len(sup.history)
        sup.poll()
        if len(sup.history) > n:
            delays.append(sup.delay)
        time.sleep(0.01)
    sup.stop()
    assert delays == [0.05, 0.1, 0.2, 0.4, 0.4, 0.4], delays
    assert all(c == 3 for _, c in sup.history) and sup.restarts >= 5
    sup = Supervised("steady", lambda: subprocess.Popen([sys.executable, "-c", code]), first_s=0.05,
                     healthy_s=0.0)
    sup.launch()
    sup.delay = 8.0            # after a run that counts as healthy, the back-off starts over
    sup.proc.wait(30)
    sup.poll()
    assert sup.delay == 0.05
    sup.stop()


def _handshake(port: int, host: str) -> str:
    """The status line Streamlit's WebSocket endpoint answers a handshake with `Host: host`."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall((f"GET /_stcore/stream HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: streamlit\r\n\r\n").encode())
        return s.recv(4096).decode("latin-1").split("\r\n")[0]


def test_studio_refuses_foreign_host_headers(tmp_path):
    port = free_port()
    log = tmp_path / "ui.log"
    env = {**_env(tmp_path), "STUDIO_ALLOW_HOSTS": "studio.internal"}
    stack = subprocess.Popen([sys.executable, "-m", "studio", "stack", "ui", "--port", str(port), "--workers",
                              "0", "--allow-host", "proxy.example.org"], env=env, cwd=ROOT,
                             stdout=open(log, "w"), stderr=subprocess.STDOUT)  # noqa: SIM115
    url = f"http://127.0.0.1:{port}"
    try:
        end = time.monotonic() + 120
        while True:
            assert stack.poll() is None and time.monotonic() < end, log.read_text()[-3000:]
            try:
                if httpx.get(url + "/_stcore/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        for host in ("rebind.evil.example", f"rebind.evil.example:{port}", "localhost.evil.example",
                     "127.0.0.1.nip.io", "", "studio.internal.evil"):
            for path in ("/", "/_stcore/health", "/Generate", "/_stcore/host-config"):
                r = httpx.get(url + path, headers={"Host": host})
                assert r.status_code == 421, (host, path, r.status_code)
            assert "is not served here" in r.json()["detail"]
            assert " 101 " not in _handshake(port, host) + " ", host
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", "proxy.example.org", "studio.internal:443"):
            r = httpx.get(url + "/", headers={"Host": host})
            assert r.status_code == 200 and "<html" in r.text.lower(), (host, r.status_code)
            assert _handshake(port, host).startswith("HTTP/1.1 101"), host
        assert stack.poll() is None
    finally:
        _stop(stack)
