"""The home page (app.py): what the studio does, readiness of engines and models, the queue."""

from __future__ import annotations

import streamlit as st

from .common import engines_info, human_size, studio_queue
from .views import queue_table

PAGES = (("pages/1_Generate.py", "Generate", "🎬"), ("pages/2_Sequence.py", "Sequence", "🎞️"),
         ("pages/3_Gallery.py", "Gallery", "🖼️"), ("pages/4_Models.py", "Models & LoRAs", "🧩"))


def weights_rows() -> list[dict[str, str]]:
    """One row per post-processing weight file: id, group, status, size, and the fetch command."""
    from ..weights import all_weights, status
    rows = []
    for wid, wf in sorted(all_weights().items()):
        s = status(wid)
        rows.append({"model": wid, "group": wf.group, "ready": "✅" if s.present else "⛔",
                     "size": human_size(s.size_bytes), "how to get it": "" if s.present else wf.command})
    return rows


def render() -> None:
    """Draw the home page."""
    st.title("🎞️ Image-to-video studio")
    st.markdown(
        "Turn a still image into a short clip: pick an image and a **motion prompt**, choose an "
        "**engine** (the built-in `camera` engine needs no weights; diffusion engines need theirs), "
        "add **LoRAs** for style, then **interpolate** (RIFE) and **upscale** (Real-ESRGAN). "
        "Every output has a manifest, so you can reuse its settings or re-run post-processing.")
    from ..weights import REPO_ROOT
    pages = [(p, label, icon) for p, label, icon in PAGES if (REPO_ROOT / p).is_file()]
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
    counts = q.store.counts()
    m = st.columns(5)
    for col, name in zip(m, ("queued", "running", "done", "failed", "cancelled"), strict=True):
        col.metric(name.capitalize(), counts[name])
    st.caption(f"{len(q.devices or [])} worker(s) on {', '.join(q.devices or []) or 'no device'} · "
               f"store {q.store.path}")
    queue_table(q.list(limit=10))
