"""The home page: what the studio does, readiness of engines and models, the queue at a glance."""

from __future__ import annotations

import streamlit as st

from ..jobs import STATUSES
from ..jobs.store import LOCAL_OWNER
from .common import engines_info, human_size, studio_queue
from .service import repo_file, weight_rows
from .views import queue_table

HOME = ("Home", "🏠")
# (script, sidebar label, icon, URL path): the studio's pages, in sidebar order (app.py's navigation)
PAGES = (("app_pages/1_Generate.py", "Generate", "🎬", "Generate"),
         ("app_pages/2_Sequence.py", "Sequence", "🎞️", "Sequence"),
         ("app_pages/3_Gallery.py", "Gallery", "🖼️", "Gallery"),
         ("app_pages/4_Models.py", "Models & LoRAs", "🧩", "Models"))
COUNT_LIMIT = 100_000


def weights_rows() -> list[dict[str, str]]:
    """One row per post-processing weight file: id, group, status, size, and the fetch command."""
    return [{"model": r.id, "group": r.group, "ready": "✅" if r.present else "⛔",
             "size": human_size(r.size_bytes), "how to get it": "" if r.present else r.command}
            for r in weight_rows()]


def workers_line(live: list[dict]) -> str:
    """'2 worker(s) alive (1 busy) on cpu, cuda:0', or why nothing will run queued jobs."""
    if not live:
        return ("⛔ No worker is alive: queued jobs wait. Start one with `python -m studio worker` "
                "(the studio page runs its own unless STUDIO_JOBS_WORKERS=0).")
    devs = sorted({w["device"] for w in live})
    busy = sum(1 for w in live if w["busy"])
    return f"✅ {len(live)} worker(s) alive ({busy} busy) on {', '.join(devs)}"


def owner_counts(by_status: dict[str, list]) -> list[dict[str, object]]:
    """One row per owner: how many of its jobs are in each status (busiest owner first)."""
    rows: dict[str, dict[str, object]] = {}
    for status, jobs in by_status.items():
        for j in jobs:
            row = rows.setdefault(j.owner, {"owner": j.owner, **dict.fromkeys(by_status, 0)})
            row[status] = int(row[status]) + 1  # type: ignore[call-overload]
    return sorted(rows.values(), key=lambda r: (-sum(int(r[s]) for s in by_status), str(r["owner"])))


def render() -> None:
    """Draw the home page."""
    st.title("🎞️ Image-to-video studio")
    st.markdown(
        "Turn a still image into a short clip: pick an image and a **motion prompt**, choose an "
        "**engine** (the built-in `camera` engine needs no weights; diffusion engines need theirs), "
        "add **LoRAs** for style, then **interpolate** (RIFE) and **upscale** (Real-ESRGAN). "
        "Every output has a manifest, so you can reuse its settings or re-run post-processing.")
    pages = [(p, label, icon) for p, label, icon, _ in PAGES if repo_file(p)]
    for col, (p, label, icon) in zip(st.columns(max(1, len(pages))), pages, strict=False):
        col.page_link(p, label=label, icon=icon)

    st.subheader("Engines")
    infos = engines_info()
    st.dataframe([{"engine": e.id, "label": e.label, "ready": "✅" if e.ready else "⛔", "status": e.detail,
                   "how to install": e.command or ""} for e in infos], hide_index=True, width="stretch")
    st.subheader("Post-processing models")
    rows = weights_rows()
    if rows:
        st.dataframe(rows, hide_index=True, width="stretch")
    else:
        st.caption("No post-processing models are registered.")

    st.subheader("Queue")
    q = studio_queue()
    m = st.columns(5)
    names = ("queued", "running", "done", "failed", "cancelled")
    by_status = {n: q.list(status=n, limit=COUNT_LIMIT) if n in STATUSES else [] for n in names}
    for col, name in zip(m, names, strict=True):
        col.metric(name.capitalize(), len(by_status[name]))
    owners = owner_counts(by_status)
    if len(owners) > 1 or (owners and owners[0]["owner"] != LOCAL_OWNER):
        st.caption("By owner (the desk studio is `local`; API clients by their token's owner)")
        st.dataframe(owners, hide_index=True, width="stretch")
    st.caption(workers_line(q.workers()))
    queue_table(q.list(limit=10))
