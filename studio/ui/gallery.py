"""The Gallery page: every output with a thumbnail, filters, the manifest, and delete with confirmation."""

from __future__ import annotations

import datetime as dt
from typing import Any

import streamlit as st

from .common import thumbnail
from .results import show_result

COLS = 3


def record_facts(rec: Any) -> dict[str, Any]:
    """Prompt, engine, LoRA names and date of an output record, for filtering."""
    m = rec.manifest or {}
    req = m.get("request") or {}
    eng = m.get("engine") or {}
    return {"prompt": str(req.get("prompt") or ""),
            "engine": str((eng.get("id") if isinstance(eng, dict) else eng) or req.get("engine") or "post"),
            "loras": [lr.get("name", "") for lr in req.get("loras") or []],
            "date": dt.date.fromtimestamp(rec.created)}


def filter_records(recs: list[Any], text: str = "", engines: list[str] | None = None,
                   loras: list[str] | None = None, dates: tuple[dt.date, dt.date] | None = None) -> list[Any]:
    """Records whose prompt contains `text`, engine is in `engines`, use one of `loras`, within `dates`."""
    out = []
    for r in recs:
        f = record_facts(r)
        if text and text.lower() not in f["prompt"].lower():
            continue
        if engines and f["engine"] not in engines:
            continue
        if loras and not set(loras) & set(f["loras"]):
            continue
        if dates and not (dates[0] <= f["date"] <= dates[-1]):
            continue
        out.append(r)
    return out


def _delete_controls(rec: Any, key: str) -> None:
    from ..outputs import delete_output
    ck = f"confirm_del_{key}"
    if st.session_state.get(ck):
        st.warning(f"Delete {rec.path.name}, its manifest and saved base clip?")
        a, b = st.columns(2)
        if a.button("Yes, delete", key=f"yes_{key}", type="primary"):
            delete_output(rec.path)
            st.session_state.pop(ck, None)
            st.session_state.pop("gallery_open", None)
            st.toast(f"Deleted {rec.path.name}")
            st.rerun()
        if b.button("Keep it", key=f"no_{key}"):
            st.session_state.pop(ck, None)
            st.rerun()
    elif st.button("🗑 Delete", key=f"del_{key}"):
        st.session_state[ck] = True
        st.rerun()


def render() -> None:
    """Draw the gallery."""
    from ..outputs import list_outputs
    st.title("🖼️ Gallery")
    recs = list_outputs()
    if not recs:
        st.info("No outputs yet — make one on the Generate page.")
        return
    facts = [record_facts(r) for r in recs]
    c = st.columns([3, 2, 2, 3])
    text = c[0].text_input("Prompt contains", key="gal_text")
    engines = c[1].multiselect("Engine", sorted({f["engine"] for f in facts}), key="gal_engines")
    lora_names = sorted({n for f in facts for n in f["loras"]})
    loras = c[2].multiselect("LoRA", lora_names, key="gal_loras", disabled=not lora_names)
    lo, hi = min(f["date"] for f in facts), max(f["date"] for f in facts)
    dates = c[3].date_input("Date", value=(lo, hi), key="gal_dates")
    dates = tuple(dates) if isinstance(dates, (tuple, list)) and dates else None
    shown = filter_records(recs, text, engines, loras, dates)
    st.caption(f"{len(shown)} of {len(recs)} outputs")
    open_name = st.session_state.get("gallery_open")
    for i in range(0, len(shown), COLS):
        cols = st.columns(COLS)
        for col, rec in zip(cols, shown[i:i + COLS], strict=False):
            with col.container(border=True):
                f = record_facts(rec)
                th = thumbnail(rec.path)
                if th:
                    st.image(str(th), width="stretch")
                st.markdown(f"**{f['prompt'] or rec.path.name}**")
                st.caption(f"{f['engine']} · {f['date']} · {rec.path.name}")
                if st.button("Open", key=f"open_{rec.path.name}"):
                    st.session_state["gallery_open"] = rec.path.name
                    st.rerun()
                _delete_controls(rec, rec.path.name)
    sel = next((r for r in recs if r.path.name == open_name), None)
    if sel is not None:
        st.divider()
        st.subheader(sel.path.name)
        show_result(sel.path, sel.manifest_path, key=f"gal_{sel.path.name}", actions=False)
        if st.button("♻ Reuse these settings on the Generate page", key="gal_reuse"):
            st.session_state["_reuse"] = (sel.manifest or {}).get("request") or {}
            st.switch_page("pages/1_Generate.py")
