"""Reading job rows whatever was stored: JSON columns that fail to parse and TEXT that is not UTF-8
(a row written around the store) read as notes and U+FFFD instead of failing a listing, and the
columns a listing reads (small rows: no big payloads, never the worker's copy).
"""

from __future__ import annotations

import json
from typing import Any

BRIEF_PAYLOAD_CHARS = 4096  # listings read payloads up to this size (JobStore.list(brief=True))
BRIEF_COLUMNS = (
    "id, kind, status, stage, i, n, message, preview, result, substr(error, 1, 2000) AS error, owner, "
    "worker, device, attempts, max_attempts, lease_until, cancel_requested, created, started, finished, "
    f"CASE WHEN length(payload) <= {BRIEF_PAYLOAD_CHARS} THEN payload "
    "ELSE '{\"omitted\": \"too big for a listing; GET /jobs/ID shows it\"}' END AS payload, "
    "CASE WHEN run_payload IS NULL THEN NULL ELSE '{}' END AS run_payload"
)


def loads_or_note(text: Any, default: Any) -> Any:
    """A JSON column decoded (`default` when empty); a value that is not JSON reads as
    `{"unreadable": ...}` instead of failing every listing that holds it."""
    if text is None or text == "":
        return default
    try:
        return json.loads(text)
    except (TypeError, ValueError, RecursionError):
        return {"unreadable": f"stored value is not JSON ({len(str(text)):,} characters)"}


def text_or_replacement(raw: bytes) -> str:
    """SQLite TEXT as str (a connection's text_factory); bytes that are not UTF-8 become U+FFFD."""
    return raw.decode("utf-8", "replace")
