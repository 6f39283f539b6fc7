"""Putting recorded settings back into the Generate form (and the re-run form) before it is drawn.

"Reuse settings" loads a whole request; "Continue from last frame" loads the source clip's shape and
post-processing (so the continuation matches it unless the creator changes it); "Re-run
post-processing" opens at the clip's own post settings.  Every value is checked against the spec
first; refused ones come back as error texts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import streamlit as st

from ..params import Param
from .service import engine
from .widgets import load_values

POST_NAMES = ("interpolate", "target_fps", "upscale", "upscaler", "color_match", "order", "scene_threshold")
OUTPUT_NAMES = ("codec", "crf", "preset")
AUDIO_NAMES = ("audio", "audio_mode", "audio_gain", "audio_fade")
# what a continuation takes from its source clip: its base shape and everything after the engine
CONTINUE_NAMES = ("width", "height", "fps", *POST_NAMES, *OUTPUT_NAMES)


def interp_options(p: Param) -> list[str]:
    """'off', the power-of-two factors the spec allows, and 'target fps'."""
    hi = int(p.max or 1)
    facs, f = [], 2
    while f <= hi:
        if p.min is None or f >= p.min:
            facs.append(f)
        f *= 2
    return ["off", *[f"×{f}" for f in facs], "target fps"]


def load_post(spec: dict[str, Param], post: dict[str, Any], prefix: str) -> list[str]:
    """Post-processing values into the post section's widgets (`post_section`) under `prefix`."""
    errors = load_values(spec, post, prefix)
    mode = ("target fps" if post.get("target_fps") else
            f"×{post['interpolate']}" if (post.get("interpolate") or 1) > 1 else "off")
    if mode not in interp_options(spec["interpolate"]):
        errors.append(f"interpolate={post['interpolate']} has no button here (×2, ×4, … or a "
                      "target fps); interpolation is off")
        mode = "off"
    st.session_state[prefix + "interp_mode"] = mode
    st.session_state[prefix + "up_on"] = (post.get("upscale") or 1) > 1
    if post.get("target_fps"):
        st.session_state[prefix + "tfps"] = float(post["target_fps"])
    return errors


def load_request(reuse: dict[str, Any], *, only: tuple[str, ...] | None = None,
                 keep_input: bool = False) -> list[str]:
    """A recorded request's settings into the Generate form; `only` limits it to those names (and
    then leaves the prompt, input, audio, engine settings and LoRAs as they are); `keep_input`
    (a preset) loads everything but the prompt, input image and audio."""
    try:
        eng = engine(reuse.get("engine", "camera"))
    except ValueError as e:
        return [str(e)]
    ss = st.session_state
    ss["gen_engine"] = eng.id
    spec = eng.spec()
    vals = {k: v for k, v in reuse.items() if k in spec and k not in ("prompt", "engine")}
    if only is not None:
        vals = {k: v for k, v in vals.items() if k in only}
    post = {k: vals.pop(k) for k in list(vals) if k in POST_NAMES or k in OUTPUT_NAMES + AUDIO_NAMES}
    errors = load_values(spec, vals, f"gen_{eng.id}_")
    audio = post.pop("audio", None)
    if only is None and not keep_input:
        ss["gen_prompt"] = reuse.get("prompt", "")
        if reuse.get("image") and Path(reuse["image"]).is_file():
            ss["gen_image"] = reuse["image"]
            ss["gen_source"] = "From the gallery"     # shown as an earlier image, not an upload
        ss["gen_audio"] = audio if audio and Path(audio).is_file() else None
        ss.pop("gen_audio_id", None)
    if only is None:
        xspec = eng.extra_spec()   # every engine setting: the manifest's, else its default
        xvals = {k: q.default for k, q in xspec.items()} | dict(reuse.get("extra") or {})
        errors += load_values(xspec, xvals, f"gen_{eng.id}_x_")
        ss["gen_loras"] = [lr["name"] for lr in reuse.get("loras") or []]
        for lr in reuse.get("loras") or []:
            ss[f"gen_lora_{lr['name']}"] = float(lr.get("strength", 1.0))
    errors += load_post(spec, post, "gen_post_")
    return errors


def source_request(clip: str | Path) -> dict[str, Any] | None:
    """The request recorded in a clip's manifest (`<clip>.json`), or None when it has none."""
    mpath = Path(str(clip).rstrip("/") + ".json")
    try:
        m = json.loads(mpath.read_text())
    except (OSError, ValueError):
        return None
    req = m.get("request") if isinstance(m, dict) else None
    return req if isinstance(req, dict) and req.get("engine") else None
