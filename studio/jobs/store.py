"""SQLite job store: every job's kind, payload, status, progress, result and error, persisted.

One row per job.  Status moves queued -> running -> done | failed | cancelled (a queued job may go
straight to cancelled).  The store is safe to share between threads and between processes: each
call opens its own short-lived connection, and a queued job is claimed with one conditional UPDATE,
so two workers never run the same job.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .rows import BRIEF_COLUMNS, loads_or_note, text_or_replacement

STATUSES = ("queued", "running", "done", "failed", "cancelled")
FINISHED = ("done", "failed", "cancelled")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    stage TEXT NOT NULL DEFAULT '',
    i INTEGER NOT NULL DEFAULT 0,
    n INTEGER NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT '',
    preview TEXT,
    result TEXT,
    error TEXT,
    owner TEXT NOT NULL DEFAULT 'local',
    worker TEXT,
    device TEXT,
    run_payload TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL DEFAULT 2,
    lease_until REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    started REAL,
    finished REAL
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status, created);
"""
_INDEXES = """
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs(owner, status, created);
CREATE TABLE IF NOT EXISTS owner_turns (owner TEXT PRIMARY KEY, last REAL NOT NULL);
"""
_ADDED_COLUMNS = {"run_payload": "TEXT", "device": "TEXT", "attempts": "INTEGER NOT NULL DEFAULT 0",
                  "max_attempts": "INTEGER NOT NULL DEFAULT 2", "lease_until": "REAL"}
LEASE_S = 10.0          # a running job's lease; its worker renews it every LEASE_S / 4
MAX_ATTEMPTS = 2        # runs a job gets before a lost worker marks it failed
LOCAL_OWNER = "local"   # the desk studio (Streamlit, CLI): its outputs live in outputs/ itself
GPUS_SQL = "MAX(1, CAST(COALESCE(json_extract(j.payload, '$.gpus'), 1) AS INTEGER))"  # devices a job needs


def default_db_path() -> Path:
    """$STUDIO_JOBS_DB, else outputs/jobs.sqlite (beside the outputs it describes)."""
    env = os.environ.get("STUDIO_JOBS_DB")
    if env:
        return Path(env)
    from ..outputs import outputs_dir
    return outputs_dir() / "jobs.sqlite"


@dataclass
class Job:
    """One job row, decoded."""

    id: str
    kind: str
    payload: dict[str, Any]
    status: str
    stage: str = ""
    i: int = 0
    n: int = 0
    message: str = ""
    preview: str | None = None
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    owner: str = LOCAL_OWNER          # who submitted it: a token's owner, or 'local' for the desk studio
    worker: str | None = None         # which worker ran it: host:pid:random, or a Ray actor id
    device: str | None = None         # the device it ran on
    run_payload: dict[str, Any] | None = None   # what the worker runs, when it differs from `payload`
    attempts: int = 0                 # how many times a worker has claimed it
    max_attempts: int = MAX_ATTEMPTS
    lease_until: float | None = None  # while running: its worker's lease (renewed by heartbeat)
    cancel_requested: bool = False
    created: float = 0.0
    started: float | None = None
    finished: float | None = None

    @property
    def finished_ok(self) -> bool:
        """True when the job is done (not failed or cancelled)."""
        return self.status == "done"

    @property
    def is_active(self) -> bool:
        """True while the job is queued or running."""
        return self.status in ("queued", "running")

    @property
    def fraction(self) -> float:
        """Progress within the current stage, 0..1."""
        return min(1.0, self.i / self.n) if self.n > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the REST API's job record)."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _row_to_job(row: sqlite3.Row) -> Job:
    d = dict(row)
    d["payload"] = loads_or_note(d["payload"], {})
    d["run_payload"] = loads_or_note(d.get("run_payload"), None)
    d["result"] = loads_or_note(d["result"], {})
    for k in ("result", "payload"):
        if not isinstance(d[k], dict):
            d[k] = {"unreadable": f"stored {k} is not an object"}
    d["cancel_requested"] = bool(d["cancel_requested"])
    return Job(**d)


class QueueFull(Exception):
    """An owner already has its maximum of queued and running jobs."""

    def __init__(self, owner: str, active: int, limit: int) -> None:
        super().__init__(f"{owner} has {active} queued or running job(s), the limit is {limit}")
        self.owner, self.active, self.limit = owner, active, limit


def worker_token() -> str:
    """A token naming this worker process: host, pid and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class JobStore:
    """The SQLite table of jobs at `path` (created on first use)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_db_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.conn() as c:
            c.execute("PRAGMA journal_mode=WAL")
            c.executescript(_SCHEMA)
            cols = {r["name"] for r in c.execute("PRAGMA table_info(jobs)")}
            if "worker" not in cols:   # a database from before owners: `owner` held the worker's token
                c.execute("ALTER TABLE jobs ADD COLUMN worker TEXT")
                c.execute("UPDATE jobs SET worker=owner")
                c.execute(f"UPDATE jobs SET owner='{LOCAL_OWNER}'")
            for col, decl in _ADDED_COLUMNS.items():
                if col not in cols:
                    c.execute(f"ALTER TABLE jobs ADD COLUMN {col} {decl}")
            c.executescript(_INDEXES)

    @contextmanager
    def conn(self) -> Iterator[sqlite3.Connection]:
        """A short-lived connection (rows as sqlite3.Row, autocommit unless BEGIN is issued)."""
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.text_factory = text_or_replacement
        try:
            yield conn
        finally:
            conn.close()

    # -- writing -----------------------------------------------------------------------------
    def add(self, kind: str, payload: dict[str, Any], *, owner: str = LOCAL_OWNER,
            run_payload: dict[str, Any] | None = None, max_active: int | None = None) -> Job:
        """Insert a queued job for `owner` and return it.

        `run_payload` is what the worker runs when it differs from the client's `payload` (the REST
        API resolves upload ids to server paths there).  With `max_active`, the owner's queued and
        running jobs are counted and the insert made in one transaction; at the cap it raises
        `QueueFull` and inserts nothing.
        """
        if not kind or not isinstance(kind, str):
            raise ValueError(f"job kind={kind!r} must be a non-empty string")
        text = json.dumps(payload, default=str)
        run_text = None if run_payload is None else json.dumps(run_payload, default=str)
        job_id = uuid.uuid4().hex[:12]
        with self.conn() as c:
            c.execute("BEGIN IMMEDIATE")
            try:
                if max_active is not None:
                    n = c.execute("SELECT COUNT(*) FROM jobs WHERE owner=? "
                                  "AND status IN ('queued','running')", (owner,)).fetchone()[0]
                    if n >= max_active:
                        raise QueueFull(owner, n, max_active)
                c.execute("INSERT INTO jobs (id, kind, payload, status, created, owner, run_payload) "
                          "VALUES (?, ?, ?, 'queued', ?, ?, ?)",
                          (job_id, kind, text, time.time(), owner, run_text))
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
        return self.get(job_id)

    def claim(self, worker: str, kinds: list[str] | None = None, *, device: str | None = None,
              lease_s: float = LEASE_S, max_gpus: int = 1, free_gpus: int | None = None) -> Job | None:
        """Atomically take a queued job (of `kinds`, if given), mark it running under a lease.

        Fair across owners: the owner served longest ago goes first (round-robin), and within an
        owner the oldest job (FIFO).  Only jobs needing at most `max_gpus` devices (payload 'gpus',
        default 1) are seen; with `free_gpus`, a first job that needs more than that is not passed
        over: nothing is claimed (the caller drains until it fits, so small jobs never starve it).
        """
        with self.conn() as c:
            c.execute("BEGIN IMMEDIATE")
            try:
                q = (f"SELECT j.id, j.owner, {GPUS_SQL} AS gpus FROM jobs j "
                     "LEFT JOIN owner_turns t ON t.owner = j.owner WHERE j.status='queued'")
                args: list[Any] = []
                if kinds is not None:
                    q += f" AND j.kind IN ({','.join('?' * len(kinds))})"
                    args += kinds
                q += (f" AND {GPUS_SQL} <= ? ORDER BY COALESCE(t.last, 0), j.created, j.rowid LIMIT 1")
                row = c.execute(q, [*args, int(max_gpus)]).fetchone()
                if row is not None and free_gpus is not None and row["gpus"] > free_gpus:
                    row = None
                if row is None:
                    c.execute("COMMIT")
                    return None
                now = time.time()
                c.execute("UPDATE jobs SET status='running', worker=?, device=?, started=?, lease_until=?, "
                          "attempts=attempts+1, message='starting' WHERE id=? AND status='queued'",
                          (worker, device, now, now + lease_s, row["id"]))
                c.execute("INSERT INTO owner_turns (owner, last) VALUES (?, ?) "
                          "ON CONFLICT(owner) DO UPDATE SET last=excluded.last", (row["owner"], now))
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
        return self.get(row["id"])

    def renew(self, job_ids: list[str], worker: str, lease_s: float = LEASE_S) -> list[str]:
        """Extend the leases of `worker`'s running jobs; return the ids whose cancel was requested."""
        if not job_ids:
            return []
        marks = ",".join("?" * len(job_ids))
        with self.conn() as c:
            c.execute(f"UPDATE jobs SET lease_until=? WHERE id IN ({marks}) AND status='running' "
                      "AND worker=?", [time.time() + lease_s, *job_ids, worker])
            rows = c.execute(f"SELECT id FROM jobs WHERE id IN ({marks}) AND cancel_requested=1",
                             job_ids).fetchall()
        return [r["id"] for r in rows]

    def requeue_expired(self, now: float | None = None) -> tuple[list[str], list[str]]:
        """Running jobs whose lease lapsed (their worker died): queue them again while they have
        attempts left, else mark them failed with "worker lost".  Returns (requeued, failed) ids."""
        now = time.time() if now is None else now
        with self.conn() as c:
            c.execute("BEGIN IMMEDIATE")
            try:
                rows = c.execute("SELECT id, attempts, max_attempts, worker, cancel_requested FROM jobs "
                                 "WHERE status='running' AND lease_until IS NOT NULL AND lease_until < ?",
                                 (now,)).fetchall()
                again, lost = [], []
                for r in rows:
                    if r["cancel_requested"]:
                        c.execute("UPDATE jobs SET status='cancelled', finished=?, lease_until=NULL, "
                                  "message='cancelled' WHERE id=?", (now, r["id"]))
                    elif r["attempts"] < r["max_attempts"]:
                        again.append(r["id"])
                        c.execute("UPDATE jobs SET status='queued', lease_until=NULL, stage='', i=0, n=0, "
                                  "message=? WHERE id=?",
                                  (f"requeued: its worker was lost (attempt {r['attempts']} of "
                                   f"{r['max_attempts']})", r["id"]))
                    else:
                        lost.append(r["id"])
                        c.execute("UPDATE jobs SET status='failed', finished=?, lease_until=NULL, "
                                  "message='failed', error=? WHERE id=?",
                                  (now, f"worker lost: its worker stopped answering, after "
                                   f"{r['attempts']} attempt(s)", r["id"]))
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
        return again, lost

    def requeue(self, job_id: str, reason: str) -> bool:
        """Queue a running job again at once (its worker is known dead); False if out of attempts
        (then it is failed with `reason`)."""
        job = self.get(job_id)
        if job.status != "running":
            return False
        if job.cancel_requested:
            self.finish(job_id, "cancelled", message="cancelled")
            return False
        if job.attempts < job.max_attempts:
            self.update(job_id, status="queued", lease_until=None, stage="", i=0, n=0,
                        message=f"requeued: {reason} (attempt {job.attempts} of {job.max_attempts})")
            return True
        self.finish(job_id, "failed", error=f"worker lost: {reason}, after {job.attempts} attempt(s)")
        return False

    def update(self, job_id: str, **fields: Any) -> None:
        """Set some columns of a job (result is JSON-encoded)."""
        if not fields:
            return
        bad = sorted(set(fields) - set(Job.__dataclass_fields__) - {"id"})
        if bad:
            raise ValueError(f"unknown job field(s): {', '.join(bad)}")
        for k in ("result", "run_payload"):
            if k in fields and fields[k] is not None:
                fields[k] = json.dumps(fields[k], default=str)
        if "status" in fields and fields["status"] not in STATUSES:
            raise ValueError(f"status={fields['status']!r} is not one of {', '.join(STATUSES)}")
        cols = ", ".join(f"{k}=?" for k in fields)
        with self.conn() as c:
            c.execute(f"UPDATE jobs SET {cols} WHERE id=?", [*fields.values(), job_id])

    def progress(self, job_id: str, stage: str, i: int, n: int, message: str = "") -> None:
        """Record progress: step `i` of `n` in `stage`."""
        self.update(job_id, stage=stage, i=int(i), n=int(n), message=message or f"{stage} {i}/{n}")

    def finish(self, job_id: str, status: str, *, result: dict[str, Any] | None = None,
               error: str | None = None, message: str = "") -> None:
        """Mark a job done, failed or cancelled."""
        if status not in FINISHED:
            raise ValueError(f"finish status={status!r} is not one of {', '.join(FINISHED)}")
        self.update(job_id, status=status, result=result or {}, error=error,
                    message=message or status, finished=time.time(), lease_until=None)

    def request_cancel(self, job_id: str) -> Job:
        """Cancel a queued job at once; flag a running one (its worker stops at the next step)."""
        job = self.get(job_id)
        with self.conn() as c:
            c.execute("UPDATE jobs SET status='cancelled', cancel_requested=1, finished=?, "
                      "message='cancelled before it started' WHERE id=? AND status='queued'",
                      (time.time(), job_id))
            c.execute("UPDATE jobs SET cancel_requested=1, message='cancelling' "
                      "WHERE id=? AND status='running'", (job_id,))
        return self.get(job.id)

    def delete(self, job_id: str) -> None:
        """Forget a finished job (a queued or running one must be cancelled first)."""
        job = self.get(job_id)
        if job.is_active:
            raise ValueError(f"job {job_id} is {job.status}; cancel it before deleting")
        with self.conn() as c:
            c.execute("DELETE FROM jobs WHERE id=?", (job_id,))

    def recover(self, is_alive: Any) -> list[str]:
        """Running jobs whose worker is known dead (`is_alive(worker)` false): requeued at once while
        they have attempts left, else failed (`requeue`); return their ids.  Jobs of workers that may
        live (another host) are left to their lease."""
        lost = [j for j in self.list(status="running", limit=100_000) if not is_alive(j.worker)]
        for j in lost:
            self.requeue(j.id, "its worker was interrupted")
        return [j.id for j in lost]

    # -- reading -----------------------------------------------------------------------------
    def get(self, job_id: str) -> Job:
        """The job with `job_id`; an unknown id raises KeyError naming it."""
        with self.conn() as c:
            row = c.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        if row is None:
            raise KeyError(f"no job with id {job_id!r}")
        return _row_to_job(row)

    def list(self, status: str | tuple[str, ...] | None = None, kind: str | None = None,
             limit: int = 200, owner: str | None = None, brief: bool = False) -> list[Job]:
        """Jobs, newest first, optionally only those with `status` (one or several), `kind`, `owner`.

        `brief` (the API's listings) reads payloads of up to `rows.BRIEF_PAYLOAD_CHARS` only (a bigger one
        reads as `{"omitted": ...}`) and never the worker's `run_payload` (it reads as `{}` when
        present), so a page of jobs costs kilobytes whatever was stored.
        """
        cols = BRIEF_COLUMNS if brief else "*"
        q, args = f"SELECT {cols} FROM jobs WHERE 1=1", []
        if status is not None:
            sts = (status,) if isinstance(status, str) else tuple(status)
            bad = [s for s in sts if s not in STATUSES]
            if bad:
                raise ValueError(f"status={bad[0]!r} is not one of {', '.join(STATUSES)}")
            q += f" AND status IN ({','.join('?' * len(sts))})"
            args += list(sts)
        if kind is not None:
            q += " AND kind=?"
            args.append(kind)
        if owner is not None:
            q += " AND owner=?"
            args.append(owner)
        q += " ORDER BY created DESC, rowid DESC LIMIT ?"
        args.append(int(limit))
        with self.conn() as c:
            rows = c.execute(q, args).fetchall()
        return [_row_to_job(r) for r in rows]

    def counts(self) -> dict[str, int]:
        """How many jobs are in each status."""
        with self.conn() as c:
            rows = c.execute("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status").fetchall()
        out = dict.fromkeys(STATUSES, 0)
        out.update({r["status"]: r["n"] for r in rows})
        return out
