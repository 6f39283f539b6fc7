"""The Models & LoRAs page: status, size and hash of every engine and model, fetch buttons, LoRAs."""

from __future__ import annotations

import streamlit as st

from .common import engines_info, human_size, studio_queue
from .fetch import fetch_block
from .loras import library_block
from .service import engine, engine_inventory, human_bytes, weight_rows


def _needed(inv) -> int:
    return sum(1 for p in inv.parts.values() if p.source not in ("config", "none"))


def _short(sha: str | None) -> str:
    return f"{sha[:12]}…" if sha else "—"


def _inventory(engine_id: str):
    """The engine's per-component inventory (None for engines without one or a diffusers folder)."""
    return engine_inventory(engine_id)


def parts_block(inv) -> None:
    """Per component: the file found, its format and size, or that it is missing; then commands."""
    rows = [{"component": n, "found": "✅" if p.present else "⛔", "format": p.format,
             "size": human_bytes(p.size_bytes) if p.present else "—",
             "file": str(p.path) if p.path else p.detail}
            for n, p in inv.parts.items() if p.source not in ("none", "config")]
    st.dataframe(rows, hide_index=True, width="stretch")
    for r in inv.rejected:
        st.caption(f"not used: {r}")


def engines_block() -> None:
    """Each engine: ready or not, size, hash, per-component files, and the exact command when missing."""
    st.subheader("Engines")
    for e in engines_info():
        with st.container(border=True):
            st.markdown(f"{'✅' if e.ready else '⛔'} **{e.label}** (`{e.id}`)")
            inv = _inventory(e.id) if e.id != "camera" else None
            if inv is not None:
                parts_block(inv)
            else:
                detail = e.detail.split("; get them with:")[0]   # the command is in the block below
                st.caption(f"{detail} · size {human_size(e.size_bytes)} · sha256 {_short(e.sha256)}")
            eng = engine(e.id)
            if not e.ready and getattr(eng, "repo", None):
                partial = inv is not None and not inv.present and len(inv.missing) < _needed(inv)
                fetch_block(eng, inv.missing if partial else None)


def weights_block() -> None:
    """Post-processing weights: status, size, hash; a fetch button per missing group (runs as a job)."""
    st.subheader("Post-processing models")
    items = weight_rows()
    if not items:
        st.caption("No post-processing models are registered.")
        return
    missing_groups: dict[str, str] = {}
    rows = []
    for r in items:
        rows.append({"model": r.id, "group": r.group, "ready": "✅" if r.present else "⛔",
                     "size": human_size(r.size_bytes), "sha256": _short(r.sha256),
                     "from": r.source, "description": r.description})
        if not r.present:
            missing_groups[r.group] = r.command
    st.dataframe(rows, hide_index=True, width="stretch")
    for group, cmd in sorted(missing_groups.items()):
        c = st.columns([3, 1])
        c[0].code(cmd, language="bash")
        if c[1].button(f"Fetch {group} weights", key=f"fetch_{group}"):
            job = studio_queue().submit("weights", {"group": group})
            st.toast(f"Fetching {group} weights as job {job.id}")
    fetches = studio_queue().list(kind="weights", limit=3)
    for j in fetches:
        if j.status == "failed":
            st.error(f"Fetching {j.payload.get('group')} failed: {j.error}")
        elif j.is_active:
            st.info(f"Fetching {j.payload.get('group')} weights… ({j.status})")


def render() -> None:
    """Draw the Models & LoRAs page."""
    st.title("🧩 Models & LoRAs")
    engines_block()
    weights_block()
    library_block()
