"""The Generate page: input image, prompt, engine, LoRAs, spec-driven parameters, post-processing,
the live ledger, and a job submitted to the shared queue whose progress is polled by a fragment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from ..params import Param
from .batch import load_preset
from .common import EngineInfo
from .form_load import CONTINUE_NAMES, POST_NAMES, interp_options, load_request, source_request
from .loras import check_for_engine, list_loras
from .names import display_name
from .service import (
    AUDIO_TYPES,
    accept_audio,
    accept_image,
    anchor_keys,
    list_outputs,
    lora_ref,
    save_last_frame,
    uploads_dir,
    upscaler_notes,
)
from .widgets import widget, widgets

EXAMPLES = ("camera slowly zooming in", "pan right, clouds drifting", "slow orbit left around the subject",
            "dolly out, gentle handheld sway")
SOURCES = ("Upload", "From the gallery", "Last frame of a clip")
AUDIO_CODECS = (None, "h264", "h265", "vp9", "prores")   # None = the default (.mp4, H.264): these mux sound
LORA_STRENGTH_RANGE = (-4.0, 4.0)  # GenerationRequest.check's bounds for a LoRA strength
POLL_S = 1.0


def current_job_id() -> str | None:
    """The job this tab follows (kept in the URL too, so a reload finds it again)."""
    jid = st.session_state.get("job") or st.query_params.get("job")
    return str(jid) if jid else None


def follow_job(job_id: str) -> None:
    """Make this tab follow `job_id` (a followed job's result is shown here, so it never gets a
    'Show result' row in the queue panel afterwards)."""
    st.session_state["job"] = job_id
    st.query_params["job"] = job_id
    shown = st.session_state.setdefault("_shown_jobs", [])
    if job_id not in shown:
        shown.append(job_id)


def unfollow_job() -> None:
    """Follow no job (its notice was shown once)."""
    st.session_state.pop("job", None)
    if "job" in st.query_params:
        del st.query_params["job"]


def apply_pending() -> list[str]:
    """Apply 'reuse settings' / 'continue from last frame' requested on the previous run.

    Must run before any widget is drawn.  Returns error texts for refused values.
    """
    errors: list[str] = []
    cont = st.session_state.pop("_continue", None)
    if cont:
        errors += continue_from(cont["image"], cont.get("clip"))
    trig = st.session_state.pop("_insert_trigger", None)
    if trig:
        cur = str(st.session_state.get("gen_prompt", "")).strip()
        st.session_state["gen_prompt"] = f"{cur}, {trig}" if cur else trig
    reuse = st.session_state.pop("_reuse", None)
    if reuse:
        errors += load_request(reuse)
    preset = st.session_state.pop("_preset", None)
    if preset:
        try:
            errors += load_request(load_preset(preset), keep_input=True)
        except ValueError as e:
            errors.append(str(e))
    return errors


def continue_from(image: str, clip: str | None) -> list[str]:
    """Make `image` (a clip's saved last frame) the input, shown under 'Last frame of a clip'.

    The engines' `anchor_start` setting is turned on, so the next clip starts exactly on that
    frame (after interpolation and upscaling too).  The source clip's size, fps and post-processing
    are loaded too, so the continuation matches it unless the creator changes them.  Must run
    before any widget is drawn; returns error texts for refused values.
    """
    ss = st.session_state
    src = source_request(clip) if clip else None
    errors = load_request(src, only=CONTINUE_NAMES) if src else []
    ss["gen_image"] = image
    ss["gen_source"] = SOURCES[2]
    if clip:
        ss["gen_last_pick"] = clip
    for key in anchor_keys():
        ss[key] = True
    ss["_continued"] = display_name(clip or image)
    return errors


def _image_source(src: str) -> None:
    if src == SOURCES[0]:
        up = st.file_uploader("Photo", type=["png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff"],
                              key="gen_upload", help="The still image to animate.")
        if up is not None and st.session_state.get("gen_upload_id") != up.file_id:
            keep_upload(up, "gen_image", "gen_upload_id", accept_image, "image")
            for key in anchor_keys():          # a new photo: no longer a continuation
                st.session_state[key] = False
    elif src == SOURCES[1]:
        imgs = sorted((p for p in uploads_dir().iterdir() if p.is_file() and not p.name.startswith(".")),
                      key=lambda p: p.stat().st_mtime, reverse=True)
        if not imgs:
            st.info("No images yet: upload one first.")
            return
        opts = [str(p) for p in imgs]
        if st.session_state.get("gen_pick") not in opts:
            cur = st.session_state.get("gen_image")
            st.session_state["gen_pick"] = cur if cur in opts else opts[0]
        pick = st.selectbox("Earlier image", opts, key="gen_pick", format_func=display_name)
        if st.button("Use this image", key="gen_use_pick"):
            st.session_state["gen_image"] = pick
    else:
        recs = [r for r in list_outputs() if r.path.is_file()]
        if not recs:
            st.info("No clips yet.")
            return
        opts = [str(r.path) for r in recs]
        if st.session_state.get("gen_last_pick") not in opts:
            st.session_state["gen_last_pick"] = opts[0]
        pick = st.selectbox("Clip", opts, key="gen_last_pick", format_func=display_name)
        if st.button("Use its last frame", key="gen_use_last"):
            use_last_frame(Path(pick))


def input_section() -> str | None:
    """Pick the input image; returns its path (validated) or None.

    The chosen image is kept in the URL too (`?image=<name in the uploads folder>`), so a browser
    reload finds it again.
    """
    restore_from_url()
    src = st.radio("Input image", SOURCES, key="gen_source", horizontal=True)
    _image_source(src)
    done = st.session_state.pop("_continued", None)
    if done:
        st.success(f"Continuing from the last frame of {done}: it is the new input image.")
    img = st.session_state.get("gen_image")
    if img and Path(img).is_file():
        st.image(img, caption=display_name(img), width=256)
        remember_in_url("image", _upload_name(img))
        return img
    remember_in_url("image", None)
    return None


def _upload_name(path: str) -> str | None:
    """`path`'s name when it lies directly in the uploads folder (what the URL may carry), else None."""
    p = Path(path).resolve()
    return p.name if p.parent == uploads_dir().resolve() else None


def remember_in_url(key: str, value: str | None) -> None:
    """Keep `value` in the page's URL query (removed when None or empty)."""
    if value:
        if st.query_params.get(key) != value:
            st.query_params[key] = value
    elif key in st.query_params:
        del st.query_params[key]


def restore_from_url() -> None:
    """After a reload (a fresh session), take the input image and prompt back from the URL.

    Only a plain file name inside the uploads folder is accepted for the image.
    """
    ss = st.session_state
    if ss.get("_url_restored"):
        return
    ss["_url_restored"] = True
    name = st.query_params.get("image")
    if name and "gen_image" not in ss and Path(name).name == name:
        cand = uploads_dir() / name
        if cand.is_file():
            ss["gen_image"] = str(cand)
            ss["gen_source"] = SOURCES[1]
    prompt = st.query_params.get("prompt")
    if prompt and not ss.get("gen_prompt"):
        ss["gen_prompt"] = prompt


def use_last_frame(clip_path: Path) -> None:
    """Make the last frame of a clip the next input image (starting exactly on it)."""
    st.session_state["_continue"] = {"image": str(save_last_frame(clip_path)), "clip": str(clip_path)}
    st.rerun()


def prompt_section(uses_prompt: bool) -> str:
    """The motion prompt and its example chips."""
    st.session_state.setdefault("gen_prompt", "")
    text = st.text_area("Motion prompt", key="gen_prompt", height=80,
                        help="Describe the motion, e.g. 'camera slowly zooming in'." +
                        ("" if uses_prompt else " This engine ignores the prompt."))
    def _set(text: str) -> None:
        st.session_state["gen_prompt"] = text
    # chips sized to their text in a row that wraps: whole examples, never cut to a grid column
    with st.container(horizontal=True, wrap=True, gap="small"):
        for i, ex in enumerate(EXAMPLES):
            st.button(f"💡 {ex}", key=f"chip_{i}", on_click=_set, args=(ex,), width="content")
    remember_in_url("prompt", text.strip()[:500] or None)
    return text


def engine_section(infos: list[EngineInfo]) -> EngineInfo:
    """The engine picker; engines that are not ready are greyed with their install command."""
    by_id = {e.id: e for e in infos}
    if st.session_state.get("gen_engine") not in by_id:
        st.session_state["gen_engine"] = infos[0].id
    eid = st.selectbox("Engine", list(by_id), key="gen_engine",
                       format_func=lambda i: by_id[i].label + ("" if by_id[i].ready else " — not installed"))
    with st.expander("All engines", expanded=False):
        for e in infos:
            if e.ready:
                st.markdown(f"✅ **{e.label}** (`{e.id}`) — {e.detail}")
            else:
                st.markdown(f":gray[⛔ {e.label} (`{e.id}`) — {e.detail}]")
                if e.command:
                    st.code(e.command, language="bash")
    eng = by_id[eid]
    if not eng.ready:
        st.warning(f"Engine {eng.label} is not installed: {eng.detail}")
        if eng.command:
            st.code(eng.command, language="bash")
    return eng


def lora_section(eng: EngineInfo) -> tuple[list[dict[str, Any]], list[str]]:
    """The LoRA picker with strengths; returns (loras, errors for incompatible ones)."""
    if not eng.supports_loras:  # checked first: an engine without LoRAs invites no uploads
        st.caption(f"The {eng.label} engine takes no LoRAs.")
        return [], []
    lib = list_loras()
    if not lib:
        st.caption("No LoRAs in the library (add some on the Models & LoRAs page).")
        st.session_state["gen_loras"] = []
        return [], []
    by_name = {lv.name: lv for lv in lib}
    chosen = [n for n in st.session_state.get("gen_loras", []) if n in by_name]
    st.session_state["gen_loras"] = chosen
    def label(n: str) -> str:
        lv = by_name[n]
        return f"{n} ({lv.family or '?'}" + (f", {lv.expert.replace('_', '-')} expert)" if lv.expert else ")")
    names = st.multiselect("LoRAs", list(by_name), key="gen_loras", format_func=label)
    out, errors = [], []
    for n in names:
        lv = by_name[n]
        why = check_for_engine(n, eng.id)  # family and keys against the engine's layers (no weights)
        if why:
            errors.append(why)
        key = f"gen_lora_{n}"
        st.session_state.setdefault(key, lv.default_strength)
        c = st.columns([3, 2])
        s = c[0].slider(f"{n} strength", *LORA_STRENGTH_RANGE, step=0.05, key=key)
        if lv.trigger_words and c[1].button(f"Insert “{', '.join(lv.trigger_words)}”", key=f"trig_{n}"):
            st.session_state["_insert_trigger"] = ", ".join(lv.trigger_words)
            st.rerun()
        out.append(lora_ref(n, float(s)))
    return out, errors


def post_section(spec: dict[str, Param], prefix: str, base_fps: float) -> dict[str, Any]:
    """Interpolation (×N or target fps) and upscaling (model, ×N) toggles, plus advanced settings."""
    vals: dict[str, Any] = {"interpolate": 1, "target_fps": None, "upscale": 1}
    c = st.columns(2)
    with c[0]:
        mode = st.radio("Interpolation", interp_options(spec["interpolate"]), key=prefix + "interp_mode",
                        horizontal=True, help=spec["interpolate"].help)
        if mode == "target fps":
            tp = spec["target_fps"]
            guess = min(float(tp.max or 240), max(base_fps * 2, float(tp.min or 1)))
            st.session_state.setdefault(prefix + "tfps", guess)
            vals["target_fps"] = widget(tp.override(optional=False), prefix + "tfps", label="Target FPS")
        elif mode != "off":
            vals["interpolate"] = int(mode.lstrip("×"))
    with c[1]:
        if st.toggle("Upscale", key=prefix + "up_on", help=spec["upscale"].help):
            up = spec["upscale"]
            scales = [s for s in (up.choices or ()) if s != 1]
            if st.session_state.get(prefix + "upscale") not in scales:
                st.session_state[prefix + "upscale"] = scales[0]
            vals["upscale"] = st.selectbox("Scale", scales, key=prefix + "upscale",
                                           format_func=lambda s: f"×{s}")
            up_p = spec["upscaler"]
            vals["upscaler"] = widget(up_p.override(help=upscaler_notes(up_p)), prefix + "upscaler",
                                      label="Upscale model")
    extra = [n for n in POST_NAMES if n not in ("interpolate", "target_fps", "upscale", "upscaler")]
    vals.update(widgets(spec, extra, prefix, advanced_label="Advanced post-processing"))
    return vals


def keep_upload(up: Any, path_key: str, id_key: str, accept: Any, what: str) -> None:
    """Save a new upload once (by its file id) with `accept(name, data)`; its path goes to
    `st.session_state[path_key]`, or None and an error naming the problem."""
    if st.session_state.get(id_key) == up.file_id:
        return
    try:
        st.session_state[path_key] = str(accept(up.name, up.getvalue()))
        st.session_state[id_key] = up.file_id
    except ValueError as e:
        st.session_state[path_key] = None
        st.error(f"Cannot use this {what} — {e}")


def audio_section(spec: dict[str, Param], prefix: str, codec: str | None) -> dict[str, Any]:
    """An optional audio track (upload): whether it replaces the clip's own sound or goes under it,
    its gain and its fades.  A GIF or PNG folder gets the sound beside it as a WAV (said here).

    The accepted file's path is kept in `st.session_state["gen_audio"]` (also set by "reuse
    settings"); removing the upload drops it.  Returns the request's audio settings.
    """
    up = st.file_uploader("Audio track (optional)", type=list(AUDIO_TYPES), key="gen_audio_upload",
                          help=spec["audio"].help)
    if codec not in AUDIO_CODECS:
        what = "A GIF" if codec == "gif" else "A PNG frame folder"
        st.caption(f"{what} cannot carry sound: the clip's sound is saved beside it as a WAV file.")
    if up is not None:
        keep_upload(up, "gen_audio", "gen_audio_id", accept_audio, "audio")
    elif up is None and st.session_state.pop("gen_audio_id", None):
        st.session_state["gen_audio"] = None          # the upload was removed
    path = st.session_state.get("gen_audio")
    if path and not Path(path).is_file():
        st.warning(f"The audio file {Path(path).name} is gone; no audio will be added.")
        path = None
    if path:
        st.caption(f"🎵 {Path(path).name} — looped or trimmed to the video's length, faded in and out.")
    c = st.columns(2)
    with c[0]:
        mode = widget(spec["audio_mode"], prefix + "audio_mode", label="Your track", disabled=not path)
    with c[1]:
        gain = widget(spec["audio_gain"], prefix + "audio_gain", label="Track gain (dB)", disabled=not path)
    fade = widget(spec["audio_fade"], prefix + "audio_fade", label="Audio fade (s)", disabled=not path)
    return {"audio": path or None, "audio_mode": mode, "audio_gain": gain, "audio_fade": fade}
