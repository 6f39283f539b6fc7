"""The job queue: a store plus, optionally, in-process workers; and the `studio worker` process.

`JobQueue(store, devices)` submits to the store and, once started, runs a dispatcher over a
`LocalExecutor` with one slot per device (the desk studio and tests use it this way).  With
`devices=[]` it only submits: separate worker processes (`python -m studio worker`) run the jobs, as
`make run` and `make api` arrange.  Both are the same code: store -> dispatcher -> executor.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from ..context import ModelCache
from .dispatch import Dispatcher
from .executors import LocalExecutor, job_kinds, register_job_kind
from .store import LOCAL_OWNER, Job, JobStore

log = logging.getLogger(__name__)

__all__ = ["JobQueue", "default_devices", "job_kinds", "pid_alive", "register_job_kind", "worker_alive",
           "worker_token"]
_LIVE_TOKENS: set[str] = set()


def worker_token() -> str:
    """A token naming a worker process: host, pid and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def worker_alive(worker: str | None) -> bool:
    """Whether the process (and, in this process, the queue) that runs a job still lives."""
    if not worker:
        return False
    host, _, rest = worker.partition(":")
    pid_s, _, token = rest.partition(":")
    if host != socket.gethostname():
        return True  # another machine: we cannot tell, so leave its jobs to their lease
    try:
        pid = int(pid_s)
    except ValueError:
        return False
    if pid == os.getpid():
        return worker.split("/")[0] in _LIVE_TOKENS
    return pid_alive(pid)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
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


class JobQueue:
    """The jobs in a `JobStore`, plus (once started) a dispatcher running them on this process's devices."""

    def __init__(
        self,
        store: JobStore | str | Path | None = None,
        devices: list[str] | None = None,
        cache: ModelCache | None = None,
        poll_s: float = 0.1,
    ) -> None:
        self.store = store if isinstance(store, JobStore) else JobStore(store)
        self.devices = devices
        self.cache = cache
        self.poll_s = poll_s
        self.worker = worker_token()
        self.dispatcher: Dispatcher | None = None
        self._thread: threading.Thread | None = None
        self.recovered: list[str] = []

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> JobQueue:
        """Fail rows orphaned by a crash before leases existed, then start the dispatcher (idempotent)."""
        if self._thread is not None:
            return self
        _LIVE_TOKENS.add(self.worker)
        self.recovered = self.store.recover(worker_alive)
        if self.recovered:
            log.warning("marked %d interrupted job(s) failed: %s", len(self.recovered), self.recovered)
        devices = default_devices() if self.devices is None else list(self.devices)
        self.devices = devices
        if not devices:
            return self
        caches = {d: self.cache for d in devices} if self.cache is not None else None
        self.dispatcher = Dispatcher(
            self.store, LocalExecutor(devices, self.worker, caches), poll_s=self.poll_s
        )
        self._thread = threading.Thread(target=self.dispatcher.run, name="studio-dispatcher", daemon=True)
        self._thread.start()
        log.info("job queue on %s with %d worker slot(s): %s", self.store.path, len(devices), devices)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the dispatcher; jobs it was running go back to the queue."""
        if self.dispatcher is not None:
            self.dispatcher.stop()
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None
        self.dispatcher = None
        _LIVE_TOKENS.discard(self.worker)

    @property
    def running(self) -> bool:
        """True while this queue's dispatcher runs."""
        return self._thread is not None and self._thread.is_alive()

    def workers(self) -> list[dict[str, Any]]:
        """Live workers of this store, in any process (see `dispatch.live_workers`)."""
        from .dispatch import live_workers
        return live_workers(self.store)

    # -- jobs --------------------------------------------------------------------------------
    def submit(
        self,
        kind: str,
        payload: dict[str, Any],
        *,
        owner: str = LOCAL_OWNER,
        run_payload: dict[str, Any] | None = None,
        max_active: int | None = None,
    ) -> Job:
        """Queue a job for `owner`; the next free worker runs it (`run_payload` if given, else `payload`).

        With `max_active`, raises `QueueFull` when the owner already has that many queued or running.
        """
        if kind not in job_kinds():
            raise ValueError(f"job kind {kind!r} is not registered (known: {', '.join(job_kinds())})")
        job = self.store.add(kind, payload, owner=owner, run_payload=run_payload, max_active=max_active)
        if self.dispatcher is not None:
            self.dispatcher.wake.set()
        return job

    def cancel(self, job_id: str) -> Job:
        """Cancel a job: a queued one at once, a running one at its next progress step (any process)."""
        job = self.store.request_cancel(job_id)
        if self.dispatcher is not None:
            self.dispatcher.executor.cancel(job_id)
        return job

    def move(self, job_id: str, up: bool) -> bool:
        """Swap a queued job with the owner's queued job before it (`up`) or after it, in the order
        workers take them (`created`, then insertion).  False when there is none to swap with."""
        with self.store.conn() as c:
            c.execute("BEGIN IMMEDIATE")
            try:
                me = c.execute("SELECT id, owner, created, rowid FROM jobs WHERE id=? AND status='queued'",
                               (job_id,)).fetchone()
                other = None
                if me is not None:
                    cmp, order = ("<", "DESC") if up else (">", "ASC")
                    other = c.execute(
                        f"SELECT id, created, rowid FROM jobs WHERE status='queued' AND owner=? AND id<>? "
                        f"AND (created {cmp} ? OR (created = ? AND rowid {cmp} ?)) "
                        f"ORDER BY created {order}, rowid {order} LIMIT 1",
                        (me["owner"], job_id, me["created"], me["created"], me["rowid"])).fetchone()
                if other is None:
                    c.execute("COMMIT")
                    return False
                mine, theirs = other["created"], me["created"]
                if mine == theirs:                    # same instant: order by a hair instead
                    mine += -1e-6 if up else 1e-6
                c.execute("UPDATE jobs SET created=? WHERE id=?", (mine, job_id))
                c.execute("UPDATE jobs SET created=? WHERE id=?", (theirs, other["id"]))
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
        return True

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
