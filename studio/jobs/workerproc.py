"""`python -m studio worker`: a worker process (its dispatcher and executor), and `stack`, which runs the
API or the studio together with its workers as child processes and stops them on exit.

A worker sweeps what dead workers left (`.part-<pid>-…` temp outputs, `studio-enc-<pid>-…` temp
folders) before it starts, and dies with its parent when a supervisor started it.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

_PID_IN_NAME = re.compile(r"(?:\.part-|\.old-|^\.incoming-|^studio-(?:enc|seq|zip)-)(\d+)-")


def sweep_stale(outputs: Path | None = None, tmp: Path | None = None) -> list[Path]:
    """Remove temp outputs and temp folders whose writing process is dead; return what was removed."""
    from ..outputs import outputs_dir
    from .worker import pid_alive

    roots = [outputs or outputs_dir()]
    removed: list[Path] = []
    candidates: list[Path] = []
    for root in roots:
        candidates += [p for p in root.glob(".*") if ".part-" in p.name or ".old-" in p.name]
        candidates += [p for p in root.glob("*/.*") if ".part-" in p.name or ".old-" in p.name]
        candidates += [
            p for p in root.glob("*/uploads/.*") if ".part-" in p.name or p.name.startswith(".incoming-")
        ]
    candidates += list((tmp or Path(tempfile.gettempdir())).glob("studio-*-*"))
    for p in candidates:
        m = _PID_IN_NAME.search(p.name)
        if m is not None:
            if int(m.group(1)) == os.getpid() or pid_alive(int(m.group(1))):
                continue
        elif not p.name.startswith(".incoming-") or time.time() - p.stat().st_mtime < 3600:
            continue
        try:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            removed.append(p)
        except OSError:
            log.warning("could not remove stale %s", p)
    if removed:
        log.info("swept %d file(s) left by dead workers: %s", len(removed), [p.name for p in removed])
    return removed


def die_with_parent() -> None:
    """Linux: get SIGTERM when the parent process dies (a supervisor that was killed)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - elsewhere: the supervisor's own stop still applies
        pass


def run_worker(
    device: str = "cpu", executor: str = "local", address: str | None = None, with_parent: bool = False
) -> int:
    """Run one worker until SIGTERM/SIGINT: sweep, then dispatch jobs to the chosen executor."""
    from .dispatch import Dispatcher
    from .logs import setup_file_logging
    from .store import JobStore
    from .worker import worker_token

    if with_parent:
        die_with_parent()
    setup_file_logging(f"worker-{device.replace(':', '')}.log")
    sweep_stale()
    store = JobStore()
    token = worker_token()
    if executor == "local":
        from .executors import LocalExecutor

        ex = LocalExecutor([device], token)
    elif executor == "ray":
        from .ray_executor import RayExecutor

        ex = RayExecutor(address=address or os.environ.get("RAY_ADDRESS"), worker=token)
    else:
        raise ValueError(f"executor={executor!r} is not one of local, ray")
    disp = Dispatcher(store, ex)

    def stop(signum: int, frame: object) -> None:
        log.info("worker %s: signal %d, stopping", token, signum)
        disp.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"worker {token} ({executor}, {device}) on {store.path}", file=sys.stderr, flush=True)
    disp.run()
    return 0


def _devices() -> list[str]:
    from .worker import default_devices

    return [d for d in default_devices()] or ["cpu"]


def run_stack(what: str, port: int, workers: int | None = None, extra: list[str] | None = None,
              allow_hosts: list[str] | None = None) -> int:
    """Start the API or the studio plus one worker per visible GPU (or one CPU worker), as children.

    A worker that exits is restarted with a back-off (`supervise.Supervised`); the stack stops (all of
    it) when this process is told to stop or when the front end exits.  `allow_hosts`: Host names the
    front end answers besides loopback (a proxy in front).
    """
    from .supervise import Supervised

    py = sys.executable
    env = {**os.environ, "STUDIO_JOBS_WORKERS": "0"}  # the front end only submits
    if what == "api":
        front = [py, "-m", "studio", "serve", "--port", str(port), *(extra or [])]
        for h in allow_hosts or []:
            front += ["--allow-host", h]
    elif what == "ui":
        front = [py, "-m", "studio.ui.serve", "--server.port", str(port), *(extra or [])]
        if allow_hosts:
            env["STUDIO_ALLOW_HOSTS"] = ",".join([env.get("STUDIO_ALLOW_HOSTS", ""), *allow_hosts])
    else:
        raise ValueError(f"stack {what!r} is not one of api, ui")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="stack: %(message)s")
    devs = _devices()
    if workers is not None:
        devs = (devs * workers)[:workers] if workers > 0 else []
    front_proc = subprocess.Popen(front, env=env, preexec_fn=die_with_parent)
    kids = [Supervised(f"worker {i} ({d})", _worker_starter(py, d)) for i, d in enumerate(devs)]
    for k in kids:
        k.launch()
    print(
        f"started {what} on :{port} and {len(devs)} worker(s): {', '.join(devs) or 'none'}", file=sys.stderr
    )
    stopping = {"now": False}

    def stop(signum: int, frame: object) -> None:
        stopping["now"] = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    rc = 0
    try:
        while not stopping["now"]:
            if front_proc.poll() is not None:
                rc = front_proc.returncode or 0
                log.warning("the front end exited with code %s; stopping the stack", front_proc.returncode)
                break
            for k in kids:
                k.poll()
            time.sleep(0.2)
    finally:
        for k in kids:
            k.stop()
        if front_proc.poll() is None:
            front_proc.terminate()
        end = time.monotonic() + 15
        for p in [front_proc, *(k.proc for k in kids if k.proc is not None)]:
            try:
                p.wait(max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
    return rc


def _worker_starter(py: str, device: str) -> Callable[[], subprocess.Popen]:
    def start() -> subprocess.Popen:
        return subprocess.Popen([py, "-m", "studio", "worker", "--device", device, "--with-parent"],
                                env=os.environ.copy(), preexec_fn=die_with_parent)
    return start
