"""The Sequence page: build a spec from clips (gallery or uploads) and title cards, preview, export as a job.

The page keeps the timeline in `st.session_state["seq_items"]` (spec JSON entries with a stable
`_id` each, so widget state follows an entry when it moves) and builds the spec dict from it and
the output/audio widgets on every run; `load_spec` validates it and `plan_sequence` shows the
timeline.  Export submits a "sequence" job to the shared queue and follows its progress.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import streamlit as st

from . import service
from .common import studio_queue
from .names import display_name
from .results import downloads
from .thumbs import clip_facts, clip_thumb, manifest_of
from .timeline_sound import duck_controls, load_sound_state, loudness_controls, mix_section, sound_row
from .views import job_card

_OPTS = service.sequence_options()
FITS, PRESETS, TRANSITIONS = _OPTS["fits"], _OPTS["presets"], _OPTS["transitions"]
POLL_S = 0.5
PAGE_CODECS = [x for x in _OPTS["codecs"] if x != "png"]   # the page exports files; PNG folders are CLI-only


def _items() -> list[dict[str, Any]]:
    return st.session_state.setdefault("seq_items", [])


def _add(entry: dict[str, Any]) -> None:
    entry["_id"] = uuid.uuid4().hex[:8]
    entry.setdefault("transition", {"type": "cut", "duration": 0.0})
    _items().append(entry)


def add_section() -> None:
    """Add clips from the gallery or uploads, and title cards."""
    st.subheader("Add")
    tabs = st.tabs(["From gallery", "Upload", "Title card"])
    with tabs[0]:
        recs = [r for r in service.list_outputs() if r.path.is_file() or r.path.is_dir()]
        if recs:
            names = {str(r.path): display_name(r.path) for r in recs}
            left, right = st.columns([3, 1])
            pick = left.selectbox("Clip", list(names), format_func=names.get, key="seq_gallery_pick")
            with right:                      # the picked clip's thumbnail and facts
                rec = next((r for r in recs if str(r.path) == pick), None)
                if rec is not None:
                    clip_thumb(rec.path, rec.manifest)
            if left.button("Add clip", key="seq_add_gallery"):
                _add({"path": pick})
        else:
            st.caption("No generated clips yet.")
    with tabs[1]:
        up = st.file_uploader("Video", type=list(service.VIDEO_TYPES), key="seq_upload")
        path = _checked_upload(up, "seq_upload", service.accept_video, "clip")
        if st.button("Add upload", key="seq_add_upload", disabled=path is None):
            _add({"path": path})
            st.rerun()
    with tabs[2]:
        text = st.text_area("Title text", key="seq_title_text", height=68)
        if st.button("Add title", key="seq_add_title", disabled=not text.strip()):
            _add({"title": text, "duration": 2.0})


def _checked_upload(up: Any, key: str, accept: Any, what: str) -> str | None:
    """The accepted path of the file in uploader `key` (checked once per file), or None.

    A refused file gets a plain message naming it; it never reaches the timeline or the spec.
    """
    ss = st.session_state
    if up is None:
        ss.pop(f"{key}_checked", None)
        return None
    fid, path, err = ss.get(f"{key}_checked") or (None, None, None)
    if fid != up.file_id:
        try:
            path, err = str(accept(up.name, up.getvalue())), None
        except ValueError as e:
            path, err = None, service.plain_error(e)
        ss[f"{key}_checked"] = (up.file_id, path, err)
    if err:
        st.error(f"Cannot use this {what} — {err}")
    return path


def _w(kind: Any, label: str, iid: str, name: str, value: Any, **kw: Any) -> Any:
    key = f"seq_{iid}_{name}"
    if key not in st.session_state:
        st.session_state[key] = value
    return kind(label, key=key, **kw)


def _entry_controls(i: int, item: dict[str, Any], last: bool) -> None:
    iid = item["_id"]
    if "title" in item:
        # a text area: a text input would join "Launch day⏎Cape Canaveral" into one line
        item["title"] = _w(st.text_area, "Title text", iid, "title", item["title"], height=68)
        c = st.columns(4)
        with c[0]:
            item["duration"] = _w(st.number_input, "Seconds", iid, "duration",
                                  float(item.get("duration", 2.0)), min_value=0.1, max_value=600.0, step=0.5)
        with c[1]:
            item["font_size"] = int(_w(st.number_input, "Font size (0 = auto)", iid, "font", int(
                item.get("font_size") or 0), min_value=0, max_value=1000, step=4)) or None
        with c[2]:
            item["color"] = _w(st.color_picker, "Text colour", iid, "color", item.get("color", "#ffffff"))
        with c[3]:
            item["background"] = _w(st.color_picker, "Background", iid, "bg",
                                    item.get("background", "#000000"))
    else:
        c = st.columns([1, 1, 1, 1.35])   # the last one fits "Match colours" and its help icon
        with c[0]:
            item["trim_in"] = _w(st.number_input, "Trim in (s)", iid, "tin", float(item.get("trim_in", 0.0)),
                                 min_value=0.0, step=0.1)
        with c[1]:
            tout = _w(st.number_input, "Trim out (s, 0 = end)", iid, "tout",
                      float(item.get("trim_out") or 0.0), min_value=0.0, step=0.1)
            item["trim_out"] = tout or None
        with c[2]:
            item["speed"] = _w(st.number_input, "Speed", iid, "speed", float(item.get("speed", 1.0)),
                               min_value=0.05, max_value=20.0, step=0.25)
        with c[3]:
            item["color_match"] = _w(st.checkbox, "Match colours", iid, "cm", bool(item.get("color_match")),
                                     help="Match this clip's colours to the previous clip's last frame.")
        sound_row(item)
    if last:
        item["transition"] = {"type": "cut", "duration": 0.0}
        return
    c = st.columns(2)
    with c[0]:
        kind = _w(st.selectbox, "Transition to next", iid, "tr", item["transition"]["type"],
                  options=list(TRANSITIONS))
    with c[1]:
        dur = _w(st.number_input, "Transition (s)", iid, "trd", float(item["transition"]["duration"] or 0.5),
                 min_value=0.05, max_value=10.0, step=0.1, disabled=kind == "cut")
    item["transition"] = {"type": kind, "duration": 0.0 if kind == "cut" else float(dur)}


def timeline_section() -> None:
    """The ordered entries: move up/down, remove, and each entry's settings."""
    items = _items()
    st.subheader(f"Timeline ({len(items)})")
    if not items:
        st.caption("Add clips or title cards above.")
    for i, item in enumerate(list(items)):
        with st.container(border=True):
            head = st.columns([1, 5, 1, 1, 1])
            label = (f"📝 {(item['title'].splitlines() or [''])[0][:40]}" if "title" in item
                     else f"🎞️ {display_name(item['path'])}")
            head[1].markdown(f"**{i + 1}.** {label}")
            if "title" not in item:               # the thumbnail left, its facts under the name
                with head[0]:
                    clip_thumb(Path(item["path"]), None)
                facts = clip_facts(manifest_of(item["path"]))
                if facts:
                    head[1].caption(facts)
            head = [head[0], *head[2:]]
            if head[1].button("↑", key=f"seq_up_{item['_id']}", disabled=i == 0):
                items[i - 1], items[i] = items[i], items[i - 1]
                st.rerun()
            if head[2].button("↓", key=f"seq_down_{item['_id']}", disabled=i == len(items) - 1):
                items[i + 1], items[i] = items[i], items[i + 1]
                st.rerun()
            if head[3].button("✕", key=f"seq_rm_{item['_id']}"):
                items.pop(i)
                st.rerun()
            _entry_controls(i, item, i == len(items) - 1)


def _default(key: str, value: Any) -> str:
    """Give widget `key` its first value through session state (so a loaded spec can set it)."""
    st.session_state.setdefault(key, value)
    return key


OUTPUT_DEFAULTS: dict[str, Any] = {"seq_preset": "16:9", "seq_custom_size": False, "seq_fps": 24.0,
                                   "seq_fit": FITS[0], "seq_pad": "#000000", "seq_codec": "h264",
                                   "seq_resample": "nearest", "seq_crf": 18}
AUDIO_DEFAULTS: dict[str, Any] = {"seq_a_off": 0.0, "seq_a_vol": 1.0, "seq_a_fin": 0.5, "seq_a_fout": 0.5,
                                  "seq_a_loop": True}


def output_section() -> dict[str, Any]:
    """Output settings as the spec's `output` object."""
    st.subheader("Output")
    for k, v in OUTPUT_DEFAULTS.items():
        _default(k, v)
    preset = st.selectbox("Shape", list(PRESETS), key="seq_preset",
                          format_func=lambda p: f"{p} ({PRESETS[p][0]}×{PRESETS[p][1]})")
    out: dict[str, Any] = {"preset": preset}
    if st.checkbox("Custom size", key="seq_custom_size"):
        c = st.columns(2)
        w = c[0].number_input("Width", 16, 8192, step=2, key=_default("seq_w", PRESETS[preset][0]))
        h = c[1].number_input("Height", 16, 8192, step=2, key=_default("seq_h", PRESETS[preset][1]))
        out["size"] = [int(w), int(h)]
    c = st.columns(3)
    out["fps"] = float(c[0].number_input("FPS", 1.0, 240.0, step=1.0, key="seq_fps"))
    out["fit"] = c[1].selectbox("Fit", list(FITS), key="seq_fit", help="letterbox pads, crop fills")
    out["pad_color"] = c[2].color_picker("Pad colour", key="seq_pad")
    c = st.columns(3)
    out["codec"] = c[0].selectbox("Codec", PAGE_CODECS, key="seq_codec")
    out["resample"] = c[1].selectbox("FPS change", ["nearest", "rife"], key="seq_resample",
                                     help="nearest duplicates/drops frames; rife interpolates")
    out["crf"] = int(c[2].number_input("CRF", 0, 51, key="seq_crf"))
    if st.session_state.get("seq_encoder_preset"):   # from an opened export; the page has no widget for it
        out["encoder_preset"] = st.session_state["seq_encoder_preset"]
    out.update(loudness_controls())
    return out


def audio_section() -> dict[str, Any] | None:
    """The audio bed (upload), or None."""
    st.subheader("Audio")
    up = st.file_uploader("Music", type=list(service.AUDIO_TYPES), key="seq_audio")
    fresh = _checked_upload(up, "seq_audio", service.accept_audio, "audio")
    if fresh:
        st.session_state["seq_audio_path"] = fresh
    elif up is not None:                      # refused: no audio bed from this file
        st.session_state.pop("seq_audio_path", None)
    path = st.session_state.get("seq_audio_path")
    if not path:
        return None
    st.caption(f"Audio bed: {Path(path).name}")
    for k, v in AUDIO_DEFAULTS.items():
        _default(k, v)
    c = st.columns(5)
    return {"path": path,
            "offset": float(c[0].number_input("Offset (s)", 0.0, 36000.0, key="seq_a_off")),
            "volume": float(c[1].number_input("Volume", 0.0, 4.0, step=0.1, key="seq_a_vol")),
            "fade_in": float(c[2].number_input("Fade in", 0.0, 60.0, key="seq_a_fin")),
            "fade_out": float(c[3].number_input("Fade out", 0.0, 60.0, key="seq_a_fout")),
            "loop": bool(c[4].checkbox("Loop", key="seq_a_loop")), **duck_controls()}


def load_pending() -> None:
    """Load a spec sent here by the Gallery's "Open in Sequence" (`_seq_load`), before any widget.

    Relative paths are resolved against the export's `base_dir`, so the timeline points at the
    same files; a spec that no longer validates is shown as an error and not loaded.
    """
    pend = st.session_state.pop("_seq_load", None)
    if not pend:
        return
    try:
        spec = service.load_sequence(pend["spec"], base_dir=pend.get("base_dir"))
    except ValueError as e:
        st.error(f"Could not open this sequence: {e}")
        return
    d = spec.to_dict()
    items = []
    for c in d["clips"]:
        e = {k: v for k, v in c.items() if v is not None}
        if "path" in e:
            e["path"] = str(spec.resolve(e["path"]))
        e["_id"] = uuid.uuid4().hex[:8]
        items.append(e)
    st.session_state["seq_items"] = items
    o = d["output"]
    ss = st.session_state
    ss["seq_preset"], ss["seq_custom_size"] = o["preset"], o["size"] is not None
    if o["size"] is not None:
        ss["seq_w"], ss["seq_h"] = o["size"]
    ss["seq_fps"], ss["seq_fit"], ss["seq_pad"] = float(o["fps"]), o["fit"], o["pad_color"]
    ss["seq_codec"] = o["codec"] if o["codec"] in PAGE_CODECS else "h264"
    ss["seq_resample"], ss["seq_crf"] = o["resample"], int(o["crf"])
    ss["seq_encoder_preset"] = o["encoder_preset"]
    a = d.get("audio")
    ss.pop("seq_audio_path", None)
    if a:
        ss["seq_audio_path"] = str(spec.resolve(a["path"]))
        ss["seq_a_off"], ss["seq_a_vol"] = float(a["offset"]), float(a["volume"])
        ss["seq_a_fin"], ss["seq_a_fout"] = float(a["fade_in"]), float(a["fade_out"])
        ss["seq_a_loop"] = bool(a["loop"])
    load_sound_state(d, items)
    for k in ("seq_job", "seq_board", "seq_preview_path", "seq_mix_wav"):
        ss.pop(k, None)
    st.toast(f"Opened a sequence of {len(items)} entries")


def spec_dict(output: dict[str, Any], audio: dict[str, Any] | None) -> dict[str, Any]:
    """The spec JSON the page's state describes."""
    clips = []
    for it in _items():
        e = {k: v for k, v in it.items() if k != "_id" and v is not None}
        clips.append(e)
    d: dict[str, Any] = {"version": 1, "output": output, "clips": clips}
    if audio:
        d["audio"] = audio
    return d


# Three fixed-width columns fit the page's narrow right-hand column (~340 px at a 1400 px window); with
# width="stretch" a wider column grows them.  Sized by content, a long file name pushed the last off.
PLAN_COLUMNS = {
    "entry": st.column_config.TextColumn("entry", width=136,   # longer names are cut, not the columns
                                         help="clip file or title card, in timeline order"),
    "time (s)": st.column_config.TextColumn("time (s)", width=84, help="start–end on the output"),
    "from previous": st.column_config.TextColumn(
        "from previous", width=118, help="the transition into this entry and its length"),
}


def plan_rows(plan: Any) -> list[dict[str, str]]:
    """One row per entry: its label, 'start–end' seconds, and the transition into it ('—' for a cut)."""
    rows = []
    for e in plan.entries:
        tr = "—" if e.transition_in == "cut" else f"{e.transition_in} {e.overlap_in / plan.fps:g} s"
        name = display_name(e.label) if e.kind == "clip" else e.label
        rows.append({"entry": name, "time (s)": f"{e.start / plan.fps:.2f}–{e.end / plan.fps:.2f}",
                     "from previous": tr})
    return rows


def plan_section(d: dict[str, Any]) -> bool:
    """Validate and show the timeline; False (with a plain error) if the spec is not renderable."""
    try:
        plan = service.plan_sequence(d)
    except ValueError as e:
        st.error(service.plain_error(e))
        return False
    st.dataframe(plan_rows(plan), hide_index=True, width="stretch", column_config=PLAN_COLUMNS)
    c = st.columns(2)          # two to a row: '1920×1080' is never cut
    c[0].metric("Duration", f"{plan.duration:.2f} s")
    c[1].metric("Frames", plan.frames)
    c = st.columns(2)
    c[0].metric("Size", f"{plan.width}×{plan.height}")
    c[1].metric("FPS", f"{plan.fps:g}")
    secs, runs = service.sequence_estimate(plan)
    st.metric("Est. time", f"{secs:.1f} s", help=f"learned from {runs} export(s) on this machine" if runs
              else "a first guess: it learns from this machine's exports")
    st.session_state["seq_plan"] = plan.to_dict()
    return True


def preview_section(d: dict[str, Any]) -> None:
    """A storyboard strip, or a quick low-resolution render."""
    c = st.columns(2)
    if c[0].button("Storyboard", key="seq_storyboard"):
        st.session_state["seq_board"] = service.storyboard(d)
    if c[1].button("Quick preview", key="seq_preview"):
        with st.spinner("Rendering a low-resolution preview…"):
            st.session_state["seq_preview_path"] = str(service.quick_preview(d))


def board_section() -> None:
    """The storyboard strip and the quick preview at the page's full width (legible, unlike the
    narrow plan column)."""
    if st.session_state.get("seq_board") is not None:
        st.image(st.session_state["seq_board"], caption="Storyboard: one frame per entry", width="stretch")
    if st.session_state.get("seq_preview_path"):
        st.video(st.session_state["seq_preview_path"])


def export_section(d: dict[str, Any]) -> None:
    """Export as a "sequence" job with progress, cancel, and the result with its downloads."""
    q = studio_queue()
    if st.button("Export", key="seq_export", type="primary"):
        job = service.submit_sequence(q, d, Path.cwd())
        st.session_state["seq_job"] = job.id
    jid = st.session_state.get("seq_job")
    if not jid:
        return

    def body() -> None:
        job = q.get(jid)
        with st.container(border=True):
            job_card(job, q, key="seq_")
            if job.status == "done":
                out = Path(job.result["output"])
                st.success(f"Wrote {out.name}")
                if out.exists():
                    st.video(str(out))
                    downloads(out, Path(job.result.get("manifest") or str(out) + ".json"), key=f"seq_{jid}")
        if job.is_active:
            return
        if st.session_state.get("_seq_seen") != (jid, job.status):
            st.session_state["_seq_seen"] = (jid, job.status)
            st.rerun(scope="app")

    st.fragment(run_every=POLL_S if q.get(jid).is_active else None)(body)()


def render() -> None:
    """The whole Sequence page."""
    st.title("🎞️ Sequence")
    load_pending()
    left, right = st.columns([3, 2], gap="large")
    with left:
        add_section()
        timeline_section()
    with right:
        output = output_section()
        audio = audio_section()
        d = spec_dict(output, audio)
        st.subheader("Plan")
        ok = bool(d["clips"]) and plan_section(d)
        with st.expander("Spec JSON"):
            st.code(json.dumps(d, indent=2), language="json")
            st.download_button("Download spec", json.dumps(d, indent=2), "sequence.json", key="seq_dl")
        if ok:
            preview_section(d)
            mix_section(d)
            export_section(d)
    board_section()
