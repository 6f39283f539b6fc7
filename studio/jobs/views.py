"""What a REST client sees of the studio's records: no server paths, outputs named by id.

`scrub` cleans an error text (server paths cut to their last part, ffmpeg's banner dropped), `redact`
does the same to every string of a manifest or record, and `public_job` is a job as the API shows it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .store import Job
from .textcheck import clean

_ABS_PATH = re.compile(r"(?<![\w.])/(?:[\w.+-]+/)+([\w.+-]+)")
_WORKER_TOKEN = re.compile(r"[\w.-]+:\d+:[0-9a-f]{8}\b")   # host:pid:random (store.worker_token)
_FFMPEG_NOISE = re.compile(r"^\s*(ffmpeg version|built with|configuration:|lib\w+\s+\d)", re.I)


def scrub(text: str | None, limit: int = 600) -> str | None:
    """An error text fit for a client: server paths cut to their last part, ffmpeg's banner dropped."""
    if text is None:
        return None
    lines = [ln for ln in str(text).splitlines() if not _FFMPEG_NOISE.match(ln)]
    out = clean(_WORKER_TOKEN.sub("a worker", _ABS_PATH.sub(lambda m: m.group(1), "\n".join(lines))))
    return out if len(out) <= limit else out[:limit] + "…"


def redact(obj: Any) -> Any:
    """A copy of a manifest or status record with every absolute path cut to its last part."""
    if isinstance(obj, dict):
        return {k: redact(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    if isinstance(obj, str) and obj.startswith("/"):
        return Path(obj.rstrip("/")).name
    if isinstance(obj, str) and "/" in obj:   # a path inside a text ("missing: /srv/models/x")
        return _ABS_PATH.sub(lambda m: m.group(1), obj)
    return obj


LIST_PAYLOAD_BYTES = 4096   # a listing shows payloads up to this size (GET /jobs/{id} shows any)


def public_job(job: Job, brief: bool = False) -> dict[str, Any]:
    """What a client sees of a job: no server paths, the output named by its id, text that encodes.

    `brief` (listings) leaves out payloads over `LIST_PAYLOAD_BYTES`, so a page of 200 jobs stays small.
    A row that cannot be shown (written around the API) comes back as its id, status and a note.
    """
    try:
        return clean(_public_job(job, brief))
    except Exception:  # noqa: BLE001 - one unreadable row must not take a listing down
        return clean({"id": str(job.id), "kind": str(job.kind), "owner": str(job.owner),
                      "status": str(job.status), "payload": None, "result": None, "preview": None,
                      "error": "this job's stored record is unreadable"})


def _public_job(job: Job, brief: bool) -> dict[str, Any]:
    d: dict[str, Any] = {k: getattr(job, k) for k in ("id", "kind", "owner", "status", "stage", "i", "n",
                                                        "cancel_requested", "created", "started", "finished")}
    d["message"] = scrub(job.message, 300)
    d["progress"] = round(job.fraction, 4)
    d["payload"] = job.payload if job.run_payload is not None else redact(job.payload)
    if brief and len(json.dumps(d["payload"])) > LIST_PAYLOAD_BYTES:
        d["payload"] = {"omitted": f"over {LIST_PAYLOAD_BYTES} bytes; GET /jobs/{job.id} shows it"}
    d["error"] = scrub(job.error)
    d["preview"] = f"/jobs/{job.id}/preview" if job.preview else None
    d["result"] = None
    if job.status == "done" and job.result.get("output"):
        d["result"] = {"output_id": job.id, "name": Path(str(job.result["output"]).rstrip("/")).name,
                       "seconds": job.result.get("seconds"), "timings": job.result.get("timings")}
        if job.result.get("note"):
            d["result"]["note"] = str(job.result["note"])
    return d
