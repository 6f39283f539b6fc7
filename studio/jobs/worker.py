"""The job queue: worker threads that run jobs from the SQLite store, one per GPU or one on CPU.

A job kind is a function `fn(payload, ctx) -> dict` (the result: output paths and the like),
registered with `register_job_kind(kind, fn)`; `fn` may also be a 'module:function' string that is
imported when the first job of that kind runs.  The worker gives each job a `RunContext` whose
`progress` writes the stage and step to the store, whose `preview` stores a small JPEG of the latest
frame, and whose `cancel` event is set by `JobQueue.cancel` (or by a cancel flag another process
wrote into the store).  Loaded models are shared through the context's `ModelCache`, behind its lock.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..context import Cancelled, ModelCache, RunContext
from .logs import current_job
from .store import LOCAL_OWNER, Job, JobStore, worker_token

log = logging.getLogger(__name__)

JobFn = Callable[[dict[str, Any], RunContext], dict[str, Any]]

_KINDS: dict[str, JobFn | str] = {
    "generate": "studio.jobs.kinds:run_generate",
    "post": "studio.jobs.kinds:run_post",
    "rerun": "studio.jobs.kinds:run_rerun",
    "weights": "studio.jobs.kinds:run_weights",
    "sequence": "studio.sequence.render:run_sequence_job",
}
_LIVE_TOKENS: set[str] = set()
PREVIEW_EVERY_S = 0.4
PROGRESS_EVERY_S = 0.15


def register_job_kind(kind: str, fn: JobFn | str) -> None:
    """Make jobs of `kind` runnable: `fn(payload, ctx) -> dict` or a 'module:function' string."""
    if not kind or not isinstance(kind, str):
        raise ValueError(f"job kind={kind!r} must be a non-empty string")
    if not (callable(fn) or (isinstance(fn, str) and ":" in fn)):
        raise ValueError(f"job function for {kind!r} must be callable or 'module:function', got {fn!r}")
    _KINDS[kind] = fn


def job_kinds() -> list[str]:
    """Registered job kinds."""
    return list(_KINDS)


def _resolve(kind: str) -> JobFn:
    fn = _KINDS.get(kind)
    if fn is None:
        raise ValueError(f"job kind {kind!r} is not registered (known: {', '.join(_KINDS)})")
    if isinstance(fn, str):
        mod, _, name = fn.partition(":")
        fn = getattr(importlib.import_module(mod), name)
        _KINDS[kind] = fn
    return fn


def worker_alive(worker: str | None) -> bool:
    """Whether the process (and, in this process, the queue) that runs a job still lives."""
    if not worker:
        return False
    host, _, rest = worker.partition(":")
    pid_s, _, token = rest.partition(":")
    if host != socket.gethostname():
        return True  # another machine: we cannot tell, so leave its jobs alone
    try:
        pid = int(pid_s)
    except ValueError:
        return False
    if pid == os.getpid():
        return worker in _LIVE_TOKENS
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def default_devices() -> list[str]:
    """One device per GPU ('cuda:0', ...), else ['cpu'].  $STUDIO_JOBS_WORKERS=0 means none."""
    env = os.environ.get("STUDIO_JOBS_WORKERS")
    if env is not None and env.strip() == "0":
        return []
    try:
        import torch
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001 - no torch or a broken driver: run on CPU
        n = 0
    return [f"cuda:{i}" for i in range(n)] or ["cpu"]


def _save_preview(frame: Any, path: Path, max_side: int = 256) -> None:
    import numpy as np
    from PIL import Image
    arr = getattr(frame, "frames", frame)  # a Clip: its last frame
    arr = np.asarray(arr)
    if arr.ndim == 4:
        arr = arr[-1]
    if arr.dtype != np.uint8:
        arr = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    img = Image.fromarray(arr[..., :3] if arr.ndim == 3 else arr)
    img.thumbnail((max_side, max_side))
    from ..outputs import atomic_path
    with atomic_path(path) as tmp:
        img.convert("RGB").save(tmp, format="JPEG", quality=80)


class JobQueue:
    """The jobs in a `JobStore` plus the worker threads that run them."""

    def __init__(self, store: JobStore | str | Path | None = None, devices: list[str] | None = None,
                 cache: ModelCache | None = None, poll_s: float = 0.25) -> None:
        self.store = store if isinstance(store, JobStore) else JobStore(store)
        self.devices = devices
        self.cache = cache if cache is not None else RunContext().cache
        self.poll_s = poll_s
        self.worker = worker_token()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._running: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self.recovered: list[str] = []

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> JobQueue:
        """Mark jobs orphaned by a crash as failed, then start the workers (idempotent)."""
        if self._threads:
            return self
        _LIVE_TOKENS.add(self.worker)
        self.recovered = self.store.recover(worker_alive)
        if self.recovered:
            log.warning("marked %d interrupted job(s) failed: %s", len(self.recovered), self.recovered)
        devices = default_devices() if self.devices is None else list(self.devices)
        self.devices = devices
        for dev in devices:
            t = threading.Thread(target=self._loop, args=(dev,), name=f"studio-worker-{dev}", daemon=True)
            t.start()
            self._threads.append(t)
        log.info("job queue on %s with %d worker(s): %s", self.store.path, len(devices), devices)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Ask running jobs to stop, then end the worker threads."""
        self._stop.set()
        self._wake.set()
        with self._lock:
            for ev in self._running.values():
                ev.set()
        for t in self._threads:
            t.join(timeout)
        self._threads.clear()
        _LIVE_TOKENS.discard(self.worker)

    @property
    def running(self) -> bool:
        """True while worker threads are alive."""
        return any(t.is_alive() for t in self._threads)

    # -- jobs --------------------------------------------------------------------------------
    def submit(self, kind: str, payload: dict[str, Any], *, owner: str = LOCAL_OWNER,
               run_payload: dict[str, Any] | None = None, max_active: int | None = None) -> Job:
        """Queue a job for `owner`; the next free worker runs it (`run_payload` if given, else `payload`).

        With `max_active`, raises `QueueFull` when the owner already has that many queued or running.
        """
        if kind not in _KINDS:
            raise ValueError(f"job kind {kind!r} is not registered (known: {', '.join(_KINDS)})")
        job = self.store.add(kind, payload, owner=owner, run_payload=run_payload, max_active=max_active)
        self._wake.set()
        return job

    def cancel(self, job_id: str) -> Job:
        """Cancel a job: a queued one at once, a running one at its next progress step."""
        job = self.store.request_cancel(job_id)
        with self._lock:
            ev = self._running.get(job_id)
        if ev is not None:
            ev.set()
        return job

    def get(self, job_id: str) -> Job:
        """The job with `job_id` (KeyError when unknown)."""
        return self.store.get(job_id)

    def list(self, **kw: Any) -> list[Job]:
        """Jobs, newest first (see `JobStore.list`)."""
        return self.store.list(**kw)

    def wait(self, job_id: str, timeout: float = 60.0, poll: float = 0.05) -> Job:
        """Block until the job has finished (or `timeout` passes); return its last state."""
        end = time.monotonic() + timeout
        job = self.store.get(job_id)
        while job.is_active and time.monotonic() < end:
            time.sleep(poll)
            job = self.store.get(job_id)
        return job

    # -- the worker --------------------------------------------------------------------------
    def _loop(self, device: str) -> None:
        while not self._stop.is_set():
            try:
                job = self.store.claim(self.worker, kinds=job_kinds())
            except Exception:  # noqa: BLE001 - a locked or vanished DB: retry later
                log.exception("could not claim a job")
                job = None
            if job is None:
                self._wake.wait(self.poll_s)
                self._wake.clear()
                continue
            self._run(job, device)

    def _context(self, job: Job, device: str, cancel: threading.Event) -> RunContext:
        store = self.store
        last = {"p": 0.0, "v": 0.0, "stage": None}
        preview_path = Path(store.path).parent / ".previews" / f"{job.id}.jpg"

        def progress(stage: str, i: int, n: int) -> None:
            now = time.monotonic()
            if stage != last["stage"] or i >= n or now - last["p"] >= PROGRESS_EVERY_S:
                last.update(p=now, stage=stage)
                store.progress(job.id, stage, i, n)
                if store.get(job.id).cancel_requested:  # set by another process
                    cancel.set()
            if cancel.is_set():
                raise Cancelled("cancelled by user")

        def preview(frame: Any) -> None:
            now = time.monotonic()
            if now - last["v"] < PREVIEW_EVERY_S:
                return
            last["v"] = now
            try:
                _save_preview(frame, preview_path)
                store.update(job.id, preview=str(preview_path))
            except Exception:  # noqa: BLE001 - a preview must never break a run
                log.debug("preview for job %s failed", job.id, exc_info=True)

        return RunContext(device=device, progress=progress, cancel=cancel,
                          log=logging.getLogger(f"studio.job.{job.id}"), cache=self.cache, preview=preview)

    def _run(self, job: Job, device: str) -> None:
        cancel = threading.Event()
        with self._lock:
            self._running[job.id] = cancel
        ctx = self._context(job, device, cancel)
        t0 = time.perf_counter()
        token = current_job.set(job.id)
        try:
            fn = _resolve(job.kind)
            result = fn(job.run_payload if job.run_payload is not None else job.payload, ctx) or {}
            if cancel.is_set() and self.store.get(job.id).cancel_requested:
                raise Cancelled("cancelled by user")
            result.setdefault("seconds", round(time.perf_counter() - t0, 3))
            self.store.finish(job.id, "done", result=result, message="done")
            log.info("job %s (%s) done in %.2fs", job.id, job.kind, time.perf_counter() - t0)
        except Cancelled:
            self.store.finish(job.id, "cancelled", message="cancelled")
            log.info("job %s cancelled", job.id)
        except Exception as e:  # noqa: BLE001 - any failure is recorded on the job, with its reason
            log.warning("job %s (%s) failed: %s\n%s", job.id, job.kind, e, traceback.format_exc())
            self.store.finish(job.id, "failed", error=f"{type(e).__name__}: {e}", message="failed")
        finally:
            current_job.reset(token)
            with self._lock:
                self._running.pop(job.id, None)
