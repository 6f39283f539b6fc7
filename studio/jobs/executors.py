"""Executors: where a claimed job runs.  The dispatcher (`dispatch.py`) is the only writer of the store;
an executor runs jobs and reports back through events.

    slots()            every place a job can run: id, device, busy job, models it has loaded
    start(slot, job)   run `job` there (returns at once)
    poll()             events since the last poll: Progress, Preview, Finished, Lost
    cancel(job_id)     ask a running job to stop (it stops at its next progress step)
    worker_id(slot)    the name the store records for that slot (host:pid:token/device, or an actor id)
    close()            stop everything

`LocalExecutor` runs jobs in threads of this process, one slot per device, each slot with its own
model cache (a model loaded once stays resident for the next job there).  The Ray executor
(`ray_executor.py`) runs them on actors.  Both call `execute` to run a job.
"""

from __future__ import annotations

import importlib
import io
import logging
import queue
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..context import Cancelled, ModelCache, RunContext
from .logs import current_job

log = logging.getLogger(__name__)

JobFn = Callable[[dict[str, Any], RunContext], dict[str, Any]]
PREVIEW_EVERY_S = 0.4
PROGRESS_EVERY_S = 0.15

_KINDS: dict[str, JobFn | str] = {
    "generate": "studio.jobs.kinds:run_generate",
    "post": "studio.jobs.kinds:run_post",
    "rerun": "studio.jobs.kinds:run_rerun",
    "weights": "studio.jobs.kinds:run_weights",
    "sequence": "studio.sequence.render:run_sequence_job",
}


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


def resolve_kind(kind: str) -> JobFn:
    """The function that runs jobs of `kind` (imported on first use)."""
    fn = _KINDS.get(kind)
    if fn is None:
        raise ValueError(f"job kind {kind!r} is not registered (known: {', '.join(_KINDS)})")
    if isinstance(fn, str):
        mod, _, name = fn.partition(":")
        fn = getattr(importlib.import_module(mod), name)
        _KINDS[kind] = fn
    return fn


def model_key(kind: str, payload: dict[str, Any]) -> str | None:
    """What a job needs loaded, for model affinity: a generation's engine id (None otherwise)."""
    if kind == "generate":
        req = payload.get("request") or {}
        return f"engine:{req.get('engine') or 'camera'}"
    return None


# -- events ---------------------------------------------------------------------------------------
@dataclass
class Progress:
    """A running job reached step `i` of `n` in `stage`."""

    job_id: str
    stage: str
    i: int
    n: int


@dataclass
class Preview:
    """A small JPEG of a running job's latest frame."""

    job_id: str
    jpeg: bytes


@dataclass
class Finished:
    """A job ended: done (with `result`), failed (with `error`) or cancelled."""

    job_id: str
    status: str
    result: dict[str, Any] | None = None
    error: str | None = None


@dataclass
class Lost:
    """A job's runner died under it (an actor killed, a node gone)."""

    job_id: str
    reason: str


@dataclass
class Slot:
    """One place a job can run."""

    id: str
    device: str
    busy: str | None = None  # the job running there
    loaded: set[str] = field(default_factory=set)  # model keys resident there
    jobs_run: int = 0


def preview_jpeg(frame: Any, max_side: int = 256) -> bytes:
    """A small JPEG of a frame (or a Clip's last frame), for the job card."""
    import numpy as np
    from PIL import Image

    arr = np.asarray(getattr(frame, "frames", frame))
    if arr.ndim == 4:
        arr = arr[-1]
    if arr.dtype != np.uint8:
        arr = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    img = Image.fromarray(arr[..., :3] if arr.ndim == 3 else arr)
    img.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=80)
    return buf.getvalue()


def execute(
    job_id: str,
    kind: str,
    payload: dict[str, Any],
    device: str,
    cache: ModelCache,
    cancel: threading.Event,
    emit: Callable[[Any], None],
) -> Finished:
    """Run one job to its end with a context whose progress and previews become events."""
    last = {"p": 0.0, "v": 0.0, "stage": None}

    def progress(stage: str, i: int, n: int) -> None:
        now = time.monotonic()
        if stage != last["stage"] or i >= n or now - last["p"] >= PROGRESS_EVERY_S:
            last.update(p=now, stage=stage)
            emit(Progress(job_id, stage, int(i), int(n)))
        if cancel.is_set():
            raise Cancelled("cancelled by user")

    def preview(frame: Any) -> None:
        now = time.monotonic()
        if now - last["v"] < PREVIEW_EVERY_S:
            return
        last["v"] = now
        try:
            emit(Preview(job_id, preview_jpeg(frame)))
        except Exception:  # noqa: BLE001 - a preview must never break a run
            log.debug("preview for job %s failed", job_id, exc_info=True)

    ctx = RunContext(
        device=device,
        progress=progress,
        cancel=cancel,
        log=logging.getLogger(f"studio.job.{job_id}"),
        cache=cache,
        preview=preview,
    )
    token = current_job.set(job_id)
    t0 = time.perf_counter()
    try:
        result = resolve_kind(kind)(payload, ctx) or {}
        if cancel.is_set():   # too late: the output is complete and in place; keep it, say so
            result["note"] = "the cancel came after the output was written; it was kept"
            log.info("job %s: cancel arrived after its output was written; kept as done", job_id)
        result.setdefault("seconds", round(time.perf_counter() - t0, 3))
        log.info("job %s (%s) done in %.2fs on %s", job_id, kind, time.perf_counter() - t0, device)
        return Finished(job_id, "done", result=result)
    except Cancelled:
        log.info("job %s cancelled", job_id)
        return Finished(job_id, "cancelled")
    except Exception as e:  # noqa: BLE001 - any failure is recorded on the job, with its reason
        log.warning("job %s (%s) failed: %s\n%s", job_id, kind, e, traceback.format_exc())
        return Finished(job_id, "failed", error=f"{type(e).__name__}: {e}")
    finally:
        current_job.reset(token)


class LocalExecutor:
    """Jobs in threads of this process: one slot per device, each with a resident model cache."""

    name = "local"

    def __init__(self, devices: list[str], worker: str, caches: dict[str, ModelCache] | None = None) -> None:
        self.worker = worker
        self._slots = {f"{worker}/{d}": Slot(f"{worker}/{d}", d) for d in devices}
        self._caches = {sid: (caches or {}).get(s.device) or ModelCache() for sid, s in self._slots.items()}
        self._events: queue.Queue = queue.Queue()
        self._cancels: dict[str, threading.Event] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    def slots(self) -> list[Slot]:
        """Every slot, with its state."""
        with self._lock:
            return list(self._slots.values())

    def worker_id(self, slot_id: str) -> str:
        """The store's name for a slot: host:pid:token/device."""
        return slot_id

    def start(self, slot_id: str, job: Any) -> None:
        """Run `job` (a store Job) in a thread on that slot."""
        slot = self._slots[slot_id]
        payload = job.run_payload if job.run_payload is not None else job.payload
        cancel = threading.Event()
        key = model_key(job.kind, payload)
        with self._lock:
            if slot.busy is not None:
                raise RuntimeError(f"slot {slot_id} is busy with {slot.busy}")
            slot.busy = job.id
            self._cancels[job.id] = cancel

        def run() -> None:
            fin = execute(
                job.id, job.kind, payload, slot.device, self._caches[slot_id], cancel, self._events.put
            )
            with self._lock:
                slot.busy = None
                slot.jobs_run += 1
                if key and fin.status == "done":
                    slot.loaded.add(key)
                self._cancels.pop(job.id, None)
                self._threads.pop(job.id, None)
            self._events.put(fin)

        t = threading.Thread(target=run, name=f"studio-job-{job.id}", daemon=True)
        self._threads[job.id] = t
        t.start()

    def poll(self) -> list[Any]:
        """Events since the last poll."""
        out = []
        while True:
            try:
                out.append(self._events.get_nowait())
            except queue.Empty:
                return out

    def cancel(self, job_id: str) -> None:
        """Ask a running job to stop."""
        with self._lock:
            ev = self._cancels.get(job_id)
        if ev is not None:
            ev.set()

    def running(self) -> list[str]:
        """Ids of the jobs running now."""
        with self._lock:
            return [s.busy for s in self._slots.values() if s.busy]

    def close(self, timeout: float = 10.0) -> list[str]:
        """Cancel what runs, wait for it; return the ids that were running."""
        ids = self.running()
        for j in ids:
            self.cancel(j)
        for t in list(self._threads.values()):
            t.join(timeout)
        return ids
