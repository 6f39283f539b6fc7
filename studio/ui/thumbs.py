"""What a clip picker shows of a clip: its thumbnail and its facts (duration, size, fps), so an
original and its re-run are told apart at a glance (Gallery cards, the Sequence page's picker and
timeline)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import streamlit as st

from .service import thumbnail


def manifest_of(path: str | Path) -> dict[str, Any] | None:
    """The manifest beside a clip (None for an upload without one, or an unreadable one)."""
    mp = Path(str(path).rstrip("/") + ".json")
    try:
        return json.loads(mp.read_text()) if mp.is_file() else None
    except (OSError, ValueError):
        return None


def clip_facts(manifest: dict[str, Any] | None) -> str:
    """'2.00 s · 128×128 · 16 fps' (plus '· re-run of X' / '· ×2 interp, ×2 up'), '' when unknown."""
    m = manifest or {}
    if m.get("kind") == "studio-sequence":
        plan = m.get("plan") or {}
        fps, dur = plan.get("fps"), plan.get("duration")
        w, h = plan.get("width"), plan.get("height")
    else:
        out = m.get("output") or {}
        fps, w, h = out.get("fps"), out.get("width"), out.get("height")
        dur = (out.get("frames") or 0) / fps if fps else None
    if not (fps and w and h):
        return ""
    parts = [f"{float(dur or 0):.2f} s", f"{w}×{h}", f"{float(fps):g} fps"]
    req = m.get("request") or {}
    post = []
    if (req.get("interpolate") or 1) > 1:
        post.append(f"×{req['interpolate']} interp")
    elif req.get("target_fps"):
        post.append(f"→{float(req['target_fps']):g} fps interp")
    if (req.get("upscale") or 1) > 1:
        post.append(f"×{req['upscale']} up")
    if post:
        parts.append(", ".join(post))
    if m.get("parent"):
        parts.append(f"re-run of {Path(str(m['parent'])).name.removesuffix('.json')}")
    return " · ".join(parts)


def clip_thumb(path: Path, manifest: dict[str, Any] | None, width: int | str = "stretch") -> None:
    """The clip's first-frame thumbnail (when it has one) and its facts as a caption."""
    th = thumbnail(path) if Path(path).is_file() else None
    if th:
        st.image(str(th), width=width)
    facts = clip_facts(manifest)
    if facts:
        st.caption(facts)
