"""The background job queue: a SQLite store, worker threads and the REST API over them.

    from studio.jobs import JobQueue, register_job_kind
    q = JobQueue().start()                       # $STUDIO_JOBS_DB or outputs/jobs.sqlite
    job = q.submit("generate", {"request": req.to_dict()})
    q.wait(job.id).result["output"]

Other modules add kinds with `register_job_kind("sequence", fn)`, `fn(payload, ctx) -> dict`.
"""

from __future__ import annotations

from .store import FINISHED, STATUSES, Job, JobStore, default_db_path
from .worker import JobQueue, default_devices, job_kinds, register_job_kind

__all__ = ["FINISHED", "STATUSES", "Job", "JobQueue", "JobStore", "default_db_path", "default_devices",
           "job_kinds", "register_job_kind"]
