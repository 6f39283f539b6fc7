"""A running job's time left, from its ledger (learned from this machine's runs) and its progress."""

from __future__ import annotations

import time
from typing import Any

import streamlit as st

from ..estimates import eta_seconds
from ..jobs import Job
from . import service


def job_rows(job: Job) -> list[dict[str, Any]] | None:
    """The ledger rows of a studio generate or re-run job (planned once per tab), else None."""
    cache = st.session_state.setdefault("_job_ledgers", {})
    if job.id in cache:
        return cache[job.id]
    rows = None
    try:
        p = job.payload
        if job.kind == "generate" and isinstance(p.get("request"), dict):
            rows = service.ledger_for(service.build_request(p["request"])).rows
        elif job.kind == "rerun" and p.get("manifest"):
            import json
            from pathlib import Path
            m = json.loads(Path(str(p["manifest"])).read_text())
            rows = service.rerun_ledger(m, dict(p.get("overrides") or {})).rows
    except Exception:  # noqa: BLE001 - no plan: the card shows the elapsed time only
        rows = None
    cache[job.id] = rows
    return rows


def eta_text(job: Job) -> str:
    """'running for 12 s · about 40 s left' (the second part once there is a plan)."""
    if not job.started:
        return ""
    elapsed = time.time() - job.started
    text = f"running for {elapsed:.0f} s"
    rows = job_rows(job)
    left = eta_seconds(rows, job.stage, job.i, job.n, elapsed) if rows else None
    if left is not None:
        text += f" · about {left:.0f} s left" if left >= 1 else " · finishing"
    return text
