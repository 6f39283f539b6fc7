"""The before/after view of an output (Gallery and the result panel): the base clip against the
post-processed result at one moment, as a wipe or side by side (`studio.compare`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from .. import compare as cmp


@st.cache_resource(show_spinner=False, max_entries=2)
def _pair(out: str, manifest_path: str, stamp: float) -> cmp.Pair:
    return cmp.load_pair(out, manifest_path)


def before_after(out: Path, manifest_path: Path, manifest: dict[str, Any], key: str) -> None:
    """A 'Before / after' toggle; when on, the time and wipe sliders and the compared frame."""
    if not cmp.has_before(manifest) or not Path(out).is_file():
        return
    if not st.toggle("Before / after", key=f"ba_on_{key}",
                     help="The base clip (before interpolation and upscaling) against this result"):
        return
    try:
        pair = _pair(str(out), str(manifest_path), Path(out).stat().st_mtime)
    except (ValueError, OSError) as e:
        st.error(f"No before/after: {e}")
        return
    c = st.columns([1, 2, 2])
    mode = c[0].radio("View", ["wipe", "side by side"], key=f"ba_mode_{key}")
    last = max(0.0, round(pair.duration - 1.0 / pair.after.fps, 3))
    t = c[1].slider("Time (s)", 0.0, max(last, 0.001), 0.0, step=round(1.0 / pair.after.fps, 4),
                    key=f"ba_t_{key}")
    at = c[2].slider("Wipe (%)", 0, 100, 50, key=f"ba_w_{key}", disabled=mode != "wipe") / 100
    img = cmp.compare(cmp.frame_at(pair.before, t), cmp.frame_at(pair.after, t), mode, at)
    b, a = pair.before.spec, pair.after.spec
    st.image(img, width="stretch")
    st.caption(f"left: before, the base clip {b.width}×{b.height} at {b.fps:g} fps (enlarged, "
               f"nearest-neighbour) · right: after, {a.width}×{a.height} at {a.fps:g} fps · t = {t:.2f} s")
