"""The Gallery page: every output with a thumbnail, filters, the manifest, and delete with confirmation.

Generation outputs and sequence exports (manifest kind ``studio-sequence``) are listed together;
a sequence is labelled with its number of shots, duration and transitions, and can be opened back
in the Sequence page.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import streamlit as st

from .results import downloads, show_media, show_result
from .service import OUTPUT_KINDS, delete_output, list_outputs, rename_output, thumbnail
from .thumbs import clip_facts

COLS = 3
SEQUENCE = "sequence"   # the "engine" a sequence export is filtered under


def is_sequence(rec: Any) -> bool:
    """True for a sequence export (its manifest's kind is 'studio-sequence')."""
    return (rec.manifest or {}).get("kind") == "studio-sequence"


def sequence_facts(manifest: dict[str, Any]) -> dict[str, Any]:
    """Shots (clips and titles), duration, transitions (in timeline order, cuts left out) and size."""
    plan = manifest.get("plan") or {}
    entries = plan.get("entries") or []
    kinds = [e.get("kind") for e in entries]
    trans = [e.get("transition_in") for e in entries[1:] if e.get("transition_in") not in (None, "cut")]
    return {"shots": len(entries), "clips": kinds.count("clip"), "titles": kinds.count("title"),
            "duration": float(plan.get("duration") or 0.0), "transitions": trans,
            "labels": [str(e.get("label") or "") for e in entries],
            "size": f"{plan.get('width')}×{plan.get('height')}", "fps": plan.get("fps")}


def sequence_label(manifest: dict[str, Any]) -> str:
    """'Sequence · 3 shots · 4.00 s · crossfade, fade_black' (or '· cuts only')."""
    f = sequence_facts(manifest)
    shots = f"{f['shots']} shot{'s' if f['shots'] != 1 else ''}"
    if f["titles"]:
        shots += f" ({f['clips']} clip{'s' if f['clips'] != 1 else ''}, {f['titles']} title" \
                 f"{'s' if f['titles'] != 1 else ''})"
    uniq = list(dict.fromkeys(f["transitions"]))
    trans = ", ".join(uniq) if uniq else "cuts only"
    return f"Sequence · {shots} · {f['duration']:.2f} s · {trans}"


def record_facts(rec: Any) -> dict[str, Any]:
    """Prompt, engine, LoRA names and date of an output record, for filtering.

    A sequence export's "prompt" is its entries' labels (clip names, title text) and its engine
    is 'sequence'.
    """
    m = rec.manifest or {}
    if is_sequence(rec):
        return {"prompt": " · ".join(sequence_facts(m)["labels"]), "engine": SEQUENCE, "loras": [],
                "date": dt.date.fromtimestamp(rec.created)}
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
    ck = f"confirm_del_{key}"
    if st.session_state.get(ck):
        what = " and its manifest" if is_sequence(rec) else ", its manifest and saved base clip"
        st.warning(f"Delete {rec.path.name}{what}?")
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


def _card(rec: Any) -> None:
    f = record_facts(rec)
    th = thumbnail(rec.path) if rec.path.is_file() else None
    if th:
        st.image(str(th), width="stretch")
    if is_sequence(rec):
        st.markdown(f"**🎞️ {sequence_label(rec.manifest)}**")
        st.caption(f"{f['date']} · {rec.path.name}")
    else:
        st.markdown(f"**{f['prompt'] or rec.path.name}**")
        st.caption(f"{f['engine']} · {f['date']} · {rec.path.name}")
    facts = clip_facts(rec.manifest)   # duration, size, fps: an original and its re-run differ here
    if facts:
        st.caption(facts)


def _sequence_detail(sel: Any) -> None:
    """An opened sequence export: player, downloads, its timeline, and 'open in Sequence'."""
    m = sel.manifest or {}
    show_media(sel.path)
    f = sequence_facts(m)
    st.caption(f"{sequence_label(m)} · {f['size']} · {f['fps']:g} fps · "
               f"{(m.get('output') or {}).get('codec')}")
    downloads(sel.path, sel.manifest_path, key=f"gal_{sel.path.name}")
    entries = (m.get("plan") or {}).get("entries") or []
    fps = float((m.get("plan") or {}).get("fps") or 1.0)
    st.dataframe([{"#": e["index"] + 1, "entry": e["label"], "seconds": round(e["frames"] / fps, 2),
                   "in": e["transition_in"]} for e in entries], hide_index=True, width="stretch")
    with st.expander("Manifest"):
        st.json(m, expanded=False)
    if st.button("🎞️ Open in Sequence", key="gal_open_seq", disabled=not m.get("spec")):
        st.session_state["_seq_load"] = {"spec": m["spec"], "base_dir": m.get("base_dir")}
        st.switch_page("app_pages/2_Sequence.py")


def render() -> None:
    """Draw the gallery."""
    st.title("🖼️ Gallery")
    recs = list_outputs(kinds=OUTPUT_KINDS)
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
    sel = next((r for r in recs if r.path.name == open_name), None)
    if sel is not None:            # the opened item comes first, above the grid
        _opened(sel)
    for i in range(0, len(shown), COLS):
        cols = st.columns(COLS)
        for col, rec in zip(cols, shown[i:i + COLS], strict=False):
            with col.container(border=True):
                _card(rec)
                if st.button("Open", key=f"open_{rec.path.name}", disabled=rec.path.name == open_name):
                    st.session_state["gallery_open"] = rec.path.name
                    st.rerun()
                _delete_controls(rec, rec.path.name)


def _rename_controls(sel: Any) -> None:
    """Rename the opened output: its file, manifest and base clip move together (all or nothing)."""
    stem = sel.path.name.removesuffix(sel.path.suffix) if sel.path.is_file() else sel.path.name
    c = st.columns([4, 1])
    new = c[0].text_input("Name", value=stem, key=f"gal_name_{sel.path.name}",
                          help="Letters, digits, spaces, '.', '_' and '-'; the extension stays")
    if c[1].button("Rename", key="gal_rename", width="stretch", disabled=new.strip() == stem):
        try:
            path = rename_output(sel.path, new)
        except (ValueError, OSError) as e:
            st.error(f"Not renamed: {e}")
            return
        st.session_state["gallery_open"] = path.name
        st.toast(f"Renamed to {path.name}")
        st.rerun()


def _opened(sel: Any) -> None:
    """The opened output in a bordered block with a Close button."""
    with st.container(border=True):
        head = st.columns([5, 1])
        head[0].subheader(sel.path.name)
        if head[1].button("✕ Close", key="gal_close", width="stretch"):
            st.session_state.pop("gallery_open", None)
            st.rerun()
        _rename_controls(sel)
        if is_sequence(sel):
            _sequence_detail(sel)
            return
        show_result(sel.path, sel.manifest_path, key=f"gal_{sel.path.name}", actions=False)
        if st.button("♻ Reuse these settings on the Generate page", key="gal_reuse"):
            st.session_state["_reuse"] = (sel.manifest or {}).get("request") or {}
            st.switch_page("app_pages/1_Generate.py")
