"""Views shared by the pages: the pre-run ledger, a job's progress card, the queue table."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import streamlit as st

from ..jobs import Job, JobQueue
from .eta import eta_text
from .names import display_name

STATUS_ICON = {"queued": "⏳", "running": "▶️", "done": "✅", "failed": "❌", "cancelled": "⏹️"}


def ledger_rows(ledger: Any) -> list[dict[str, Any]]:
    """The ledger's rows as the page shows them: step, frames, fps, seconds, size, estimate."""
    rows = []
    for r in ledger.rows:
        est = r.get("est_seconds")
        mem = r.get("est_memory_mb")
        rows.append({"step": r["label"], "frames": r["frames"], "fps": f"{r['fps']:g}",
                     "secs": f"{r['duration']:.2f}", "size": f"{r['width']}×{r['height']}",
                     "estimate": ("" if est is None else f"{est:.1f} s")
                     + (f" · {mem:.0f} MB" if mem else "")})
    a = getattr(ledger, "audio", None)
    if a:   # the sound: its rate and channels in the fps and size columns, what happens in the step
        ch = {1: "mono", 2: "stereo"}.get(a["channels"], f"{a['channels']} ch")
        rows.append({"step": "🔊 " + a["label"], "frames": None, "fps": f"{a['rate'] / 1000:g} kHz",
                     "secs": f"{a['duration']:.2f}", "size": ch, "estimate": ""})
    return rows


def show_ledger(ledger: Any) -> None:
    """The ledger as a table that wraps to its column (every column visible) plus the totals.

    The totals are metrics two to a row, so a value like '4096×4096' is never cut.
    """
    st.table(ledger_rows(ledger), hide_index=True)
    details = [r for r in ledger.rows if r.get("detail") and r["detail"] != r["label"]]
    if details:
        with st.expander("Details of each step"):
            st.markdown("\n".join(f"- **{r['label']}**: {r['detail']}" for r in details))
    f = ledger.final
    c = st.columns(2)
    c[0].metric("Size", f"{f.width}×{f.height}")
    c[1].metric("Est. time", f"{ledger.total_seconds:.1f} s")
    c = st.columns(3)
    c[0].metric("Frames", f.frames)
    c[1].metric("FPS", f"{f.fps:g}")
    c[2].metric("Duration", f"{f.duration:.1f} s")


def job_title(job: Job) -> str:
    """A one-line label for a job: icon, kind, prompt or input, id."""
    p = job.payload
    src = p.get("manifest") or p.get("input") or p.get("out") or ""
    what = (p.get("request") or {}).get("prompt") or p.get("group") or (display_name(src) if src else "")
    return f"{STATUS_ICON.get(job.status, '')} {job.kind} · {what or '—'} · `{job.id}`"


def job_card(job: Job, queue: JobQueue, key: str = "") -> None:
    """Progress of one job: stage bar, step, live preview, Cancel while it is active."""
    st.markdown(f"**{job_title(job)}** — {job.status}")
    if job.status == "running":
        cols = st.columns([3, 1])
        with cols[0]:
            st.progress(job.fraction, text=f"{job.stage or 'starting'}: step {job.i} of {job.n}"
                        if job.n else (job.message or "starting"))
            if job.started:
                st.caption(eta_text(job))
        with cols[1]:
            if job.preview and Path(job.preview).is_file():
                st.image(job.preview, caption="latest frame", width="stretch")
    elif job.status == "queued":
        c = st.columns([4, 1, 1])
        c[0].caption("waiting for a free worker")
        for col, up, arrow in ((c[1], True, "↑"), (c[2], False, "↓")):
            if col.button(arrow, key=f"move_{'up' if up else 'down'}_{key}{job.id}",
                          help="Run earlier" if up else "Run later"):
                queue.move(job.id, up)
                st.rerun()
    elif job.status == "failed":
        st.error(f"Job {job.id} failed: {job.error}")
    elif job.status == "cancelled":
        st.warning(f"Job {job.id} was cancelled.")
    if job.is_active:
        if st.button("Cancel", key=f"cancel_{key}{job.id}", type="secondary"):
            queue.cancel(job.id)
            st.toast(f"Cancelling job {job.id}")
            st.rerun()


def queue_table(jobs: list[Job]) -> None:
    """A compact table of jobs: id, kind, status, stage and step, age."""
    now = time.time()
    rows: list[dict[str, Any]] = [{
        "id": j.id, "kind": j.kind, "owner": j.owner, "status": f"{STATUS_ICON.get(j.status, '')} {j.status}",
        "stage": j.stage, "step": f"{j.i}/{j.n}" if j.n else "", "age (s)": int(now - j.created),
        "message": j.error or j.message} for j in jobs]
    if rows:
        st.dataframe(rows, hide_index=True, width="stretch")
    else:
        st.caption("No jobs yet.")
