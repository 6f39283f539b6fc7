"""The dispatcher: claims jobs fairly from the store, hands them to an executor, and is the only writer
of what they report (progress, previews, results).  It renews each running job's lease (the
heartbeat), relays cancel requests (within its poll interval), requeues jobs whose worker was lost,
and records itself in the `workers` table for the metrics.

A store error never ends the loop: it is logged and retried with back-off.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from .executors import Finished, Lost, Preview, Progress, job_kinds, model_key
from .store import LEASE_S, JobStore

log = logging.getLogger(__name__)

WORKERS_SCHEMA = """
CREATE TABLE IF NOT EXISTS workers (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    executor TEXT NOT NULL,
    device TEXT NOT NULL,
    busy TEXT,
    loaded TEXT NOT NULL DEFAULT '[]',
    jobs_run INTEGER NOT NULL DEFAULT 0,
    started REAL NOT NULL,
    heartbeat REAL NOT NULL
);
"""
WORKER_STALE_S = 30.0  # a worker row not refreshed for this long is gone
IDLE_POLL_S = 0.5  # the longest an idle worker waits before looking for a queued job


def live_workers(store: JobStore) -> list[dict[str, Any]]:
    """The workers whose dispatcher beat within `WORKER_STALE_S` (any process): id, device, busy.

    Read from the `workers` table every dispatcher refreshes, so a page or an API that runs no job
    itself still sees the worker processes that do.
    """
    with store.conn() as c:
        c.executescript(WORKERS_SCHEMA)
        rows = c.execute("SELECT id, device, busy, jobs_run FROM workers WHERE heartbeat >= ? ORDER BY id",
                         (time.time() - WORKER_STALE_S,)).fetchall()
    return [{"id": r["id"], "device": r["device"], "busy": r["busy"], "jobs_run": r["jobs_run"]}
            for r in rows]


def previews_dir(store: JobStore) -> Path:
    """Where job previews are kept: beside the store, in .previews/."""
    p = Path(store.path).parent / ".previews"
    p.mkdir(parents=True, exist_ok=True)
    return p


class Dispatcher:
    """Claim → executor → store, in one loop (`run` in a thread or the main thread)."""

    def __init__(
        self,
        store: JobStore,
        executor: Any,
        *,
        kinds: list[str] | None = None,
        poll_s: float = 0.1,
        lease_s: float = LEASE_S,
    ) -> None:
        self.store, self.executor = store, executor
        self.kinds, self.poll_s, self.lease_s = kinds, poll_s, lease_s
        self.stop_event = threading.Event()
        self.wake = threading.Event()
        self._last_renew = self._last_sweep = self._last_beat = 0.0
        self._lease_every = min(0.5, lease_s / 4)
        self.host, self.pid = socket.gethostname(), os.getpid()
        with store.conn() as c:
            c.executescript(WORKERS_SCHEMA)

    # -- one turn of the loop ---------------------------------------------------------------------
    def step(self) -> bool:
        """Apply events, renew leases, relay cancels, requeue lost jobs, start jobs; True if it did work."""
        now = time.monotonic()
        did = self._apply(self.executor.poll())
        if now - self._last_renew >= self._lease_every:
            self._last_renew = now
            self._renew()
        if now - self._last_sweep >= 1.0:
            self._last_sweep = now
            again, lost = self.store.requeue_expired()
            if again or lost:
                log.warning("lost worker(s): requeued %s, failed %s", again, lost)
        if now - self._last_beat >= 2.0:
            self._last_beat = now
            self._heartbeat()
        return self._start_jobs() or did

    def _apply(self, events: list[Any]) -> bool:
        for ev in events:
            if isinstance(ev, Progress):
                self.store.progress(ev.job_id, ev.stage, ev.i, ev.n)
            elif isinstance(ev, Preview):
                path = previews_dir(self.store) / f"{ev.job_id}.jpg"
                tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                tmp.write_bytes(ev.jpeg)
                os.replace(tmp, path)
                self.store.update(ev.job_id, preview=str(path))
            elif isinstance(ev, Finished):
                self.store.finish(ev.job_id, ev.status, result=ev.result, error=ev.error, message=ev.status)
            elif isinstance(ev, Lost):
                requeued = self.store.requeue(ev.job_id, ev.reason)
                log.warning(
                    "job %s lost (%s): %s", ev.job_id, ev.reason, "requeued" if requeued else "failed"
                )
        return bool(events)

    def _renew(self) -> None:
        by_worker: dict[str, list[str]] = {}
        for s in self.executor.slots():
            if s.busy:
                by_worker.setdefault(self.executor.worker_id(s.id), []).append(s.busy)
        for worker, ids in by_worker.items():
            for job_id in self.store.renew(ids, worker, self.lease_s):
                self.executor.cancel(job_id)

    def _start_jobs(self) -> bool:
        started = False
        while not self.stop_event.is_set():
            free = [s for s in self.executor.slots() if s.busy is None]
            if not free:
                return started
            job = self.store.claim(
                self.executor.worker_id(free[0].id),
                self.kinds or job_kinds(),
                device=free[0].device,
                lease_s=self.lease_s,
            )
            if job is None:
                return started
            payload = job.run_payload if job.run_payload is not None else job.payload
            key = model_key(job.kind, payload)
            slot = next((s for s in free if key and key in s.loaded), free[0])  # model affinity
            if slot is not free[0]:
                self.store.update(job.id, worker=self.executor.worker_id(slot.id), device=slot.device)
            log.info("job %s (%s, owner %s) -> %s", job.id, job.kind, job.owner, slot.id)
            try:
                self.executor.start(slot.id, job)
            except Exception as e:  # noqa: BLE001 - the executor could not take it: requeue
                log.exception("could not start job %s on %s", job.id, slot.id)
                self.store.requeue(job.id, f"could not start on {slot.id}: {e}")
                return started
            started = True

    def _heartbeat(self) -> None:
        now = time.time()
        with self.store.conn() as c:
            for s in self.executor.slots():
                c.execute(
                    "INSERT INTO workers (id, host, pid, executor, device, busy, loaded, jobs_run, started, "
                    "heartbeat) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                    "busy=excluded.busy, loaded=excluded.loaded, jobs_run=excluded.jobs_run, "
                    "heartbeat=excluded.heartbeat",
                    (
                        self.executor.worker_id(s.id),
                        self.host,
                        self.pid,
                        self.executor.name,
                        s.device,
                        s.busy,
                        json.dumps(sorted(s.loaded)),
                        s.jobs_run,
                        now,
                        now,
                    ),
                )
            c.execute("DELETE FROM workers WHERE heartbeat < ?", (now - 10 * WORKER_STALE_S,))

    # -- the loop ---------------------------------------------------------------------------------
    def run(self) -> None:
        """Loop until `stop_event` is set; store errors are logged and retried with back-off."""
        backoff = 0.0
        idle = 0
        while not self.stop_event.is_set():
            try:
                did = self.step()
                backoff = 0.0
            except Exception:  # noqa: BLE001 - a locked or vanished DB, a full disk: retry later
                backoff = min(5.0, max(0.2, backoff * 2))
                log.exception("dispatcher step failed; retrying in %.1fs", backoff)
                self.stop_event.wait(backoff)
                continue
            busy = any(s.busy for s in self.executor.slots())
            idle = 0 if did or busy else idle + 1
            if not did:   # an idle worker polls less and less often, up to IDLE_POLL_S
                self.wake.wait(min(IDLE_POLL_S, self.poll_s * (1.5 ** min(idle, 20))))
                self.wake.clear()
        self._shutdown()

    def _shutdown(self) -> None:
        """Stop what runs; its jobs go back to the queue (a stop is not the job's fault)."""
        ids = self.executor.close()
        try:
            self._apply(self.executor.poll())
            for job_id in ids:
                job = self.store.get(job_id)
                if job.status == "running" or job.status == "cancelled" and not job.cancel_requested:
                    self.store.update(
                        job_id,
                        status="queued",
                        lease_until=None,
                        finished=None,
                        attempts=max(0, job.attempts - 1),
                        message="requeued: its worker stopped",
                    )
            with self.store.conn() as c:
                for s in self.executor.slots():
                    c.execute("DELETE FROM workers WHERE id=?", (self.executor.worker_id(s.id),))
        except Exception:  # noqa: BLE001 - shutting down: the leases will expire instead
            log.exception("could not hand running jobs back on shutdown")

    def stop(self) -> None:
        """Ask the loop to end."""
        self.stop_event.set()
        self.wake.set()
