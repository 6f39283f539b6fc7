"""Service logs: size-capped rotating files under the outputs folder, each line tagged with its job.

`current_job` is a context variable the worker sets while it runs a job; `JobIdFilter` copies it onto
every log record (`job=-` outside a job), so `grep job=3f2a… outputs/.logs/studio.log` shows one job.
"""

from __future__ import annotations

import contextvars
import logging
import logging.handlers
from pathlib import Path

current_job: contextvars.ContextVar[str] = contextvars.ContextVar("studio_job", default="-")

LOG_MAX_BYTES = 5 * 2**20
LOG_BACKUPS = 4
FORMAT = "%(asctime)s %(levelname)s job=%(job_id)s %(name)s: %(message)s"


class JobIdFilter(logging.Filter):
    """Adds `job_id` (the running job's id, or '-') to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.job_id = current_job.get()
        return True


def logs_dir() -> Path:
    """Where the service logs go: <outputs>/.logs."""
    from ..outputs import outputs_dir
    p = outputs_dir() / ".logs"
    p.mkdir(parents=True, exist_ok=True)
    return p


def setup_file_logging(name: str = "studio.log", level: int = logging.INFO) -> Path:
    """Send the studio's logs (and uvicorn's) to a rotating file under <outputs>/.logs; idempotent."""
    path = logs_dir() / name
    for lg in (logging.getLogger("studio"), logging.getLogger("uvicorn"), logging.getLogger("postfx")):
        if any(getattr(h, "baseFilename", None) == str(path) for h in lg.handlers):
            continue
        h = logging.handlers.RotatingFileHandler(path, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS,
                                                 encoding="utf-8")
        h.setFormatter(logging.Formatter(FORMAT))
        h.addFilter(JobIdFilter())
        lg.addHandler(h)
        if lg.level == logging.NOTSET or lg.level > level:
            lg.setLevel(level)
    return path
