"""Forgetting finished jobs: `DELETE /jobs/{id}` and the retention policy, with the store compacted.

A job is forgotten with what only it reaches: its row, its preview and, for an API owner's finished
generation, its output (an API output is named by its job's id, so without the job nobody could reach
it; the desk studio's own outputs, owner `local`, stay in its gallery).

Retention (`Retention.from_env`, applied by `python -m studio serve` at start and every `every_s`):
finished jobs older than `max_age_days`, and all but the newest `max_count` finished jobs, are forgotten;
then the database is compacted (WAL checkpoint, VACUUM when over a quarter of it is free pages).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .store import FINISHED, LOCAL_OWNER, Job, JobStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Retention:
    """How long finished jobs are kept: by age, by count, and how often that is applied."""

    max_age_days: float = 30.0
    max_count: int = 10_000
    every_s: float = 600.0

    @classmethod
    def from_env(cls) -> Retention:
        """$STUDIO_JOBS_KEEP_DAYS, $STUDIO_JOBS_KEEP (count), $STUDIO_JOBS_PRUNE_EVERY_S; each must be > 0."""
        d = cls()
        vals = {}
        for name, env, typ, default in (("max_age_days", "STUDIO_JOBS_KEEP_DAYS", float, d.max_age_days),
                                        ("max_count", "STUDIO_JOBS_KEEP", int, d.max_count),
                                        ("every_s", "STUDIO_JOBS_PRUNE_EVERY_S", float, d.every_s)):
            raw = os.environ.get(env)
            try:
                v = typ(raw) if raw not in (None, "") else default
            except ValueError:
                raise ValueError(f"${env}={raw!r} is not a number") from None
            if v <= 0:
                raise ValueError(f"${env}={raw!r} must be above 0")
            vals[name] = v
        return cls(**vals)


def forget(store: JobStore, job: Job) -> None:
    """Delete a finished job's row, preview and (an API owner's) output."""
    from ..outputs import delete_output
    if job.status not in FINISHED:
        raise ValueError(f"job {job.id} is {job.status}; cancel it before deleting")
    if job.preview:
        Path(job.preview).unlink(missing_ok=True)
    if job.owner != LOCAL_OWNER and job.result.get("output"):
        try:
            delete_output(job.result["output"])
        except OSError:
            log.warning("could not delete the output of job %s", job.id)
    store.delete(job.id)


def prune(store: JobStore, policy: Retention, now: float | None = None) -> int:
    """Forget finished jobs past `policy`'s age or count, compact the store; return how many went."""
    now = time.time() if now is None else now
    marks = ",".join("?" * len(FINISHED))
    with store.conn() as c:
        old = c.execute(f"SELECT id FROM jobs WHERE status IN ({marks}) AND COALESCE(finished, created) < ?",
                        [*FINISHED, now - policy.max_age_days * 86400]).fetchall()
        extra = c.execute(f"SELECT id FROM jobs WHERE status IN ({marks}) ORDER BY "
                          "COALESCE(finished, created) DESC, rowid DESC LIMIT -1 OFFSET ?",
                          [*FINISHED, policy.max_count]).fetchall()
    ids = {r["id"] for r in old} | {r["id"] for r in extra}
    n = 0
    for job_id in ids:
        try:
            forget(store, store.get(job_id))
            n += 1
        except (KeyError, ValueError):
            continue   # gone meanwhile, or not finished after all
    compact(store)
    if n:
        log.info("retention: forgot %d finished job(s) (older than %g days or beyond the newest %d)",
                 n, policy.max_age_days, policy.max_count)
    return n


def compact(store: JobStore, free_share: float = 0.25) -> None:
    """Fold the WAL into the database and VACUUM when over `free_share` of its pages are free."""
    with store.conn() as c:
        pages = c.execute("PRAGMA page_count").fetchone()[0]
        free = c.execute("PRAGMA freelist_count").fetchone()[0]
        if pages and free / pages > free_share:
            c.execute("VACUUM")
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def start_pruning(store: JobStore, policy: Retention, stop: threading.Event) -> threading.Thread:
    """Apply `policy` now and every `policy.every_s` in a daemon thread until `stop` is set."""
    def loop() -> None:
        while True:
            try:
                prune(store, policy)
            except Exception:  # noqa: BLE001 - retention must never stop the server; try again later
                log.exception("retention pass failed")
            if stop.wait(policy.every_s):
                return

    t = threading.Thread(target=loop, name="job-retention", daemon=True)
    t.start()
    return t
