"""A finished output: video player, downloads (video, GIF, frames zip, manifest), reuse, re-run, continue."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import streamlit as st

from .common import studio_queue

VIDEO_SUFFIXES = (".mp4", ".webm", ".mov")


def extras_dir() -> Path:
    """Where GIF and frame-zip downloads are kept: <outputs>/.downloads."""
    from ..outputs import outputs_dir
    p = outputs_dir() / ".downloads"
    p.mkdir(parents=True, exist_ok=True)
    return p


def extra_paths(out: Path) -> tuple[Path, Path]:
    """The GIF and frames-zip paths for an output."""
    d = extras_dir()
    return d / f"{out.name}.gif", d / f"{out.name}.frames.zip"


def make_extras(out: Path) -> tuple[Path, Path]:
    """Write (once) the GIF and the zip of PNG frames for an output."""
    import io

    from PIL import Image

    from postfx.assemble import read_video, write_video
    gif, zp = extra_paths(out)
    if gif.is_file() and zp.is_file():
        return gif, zp
    clip = read_video(out)
    if not gif.is_file():
        write_video(clip, gif)
    if not zp.is_file():
        tmp = zp.with_name(f".{zp.name}.tmp")
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as z:
            for i, fr in enumerate(clip.frames):
                buf = io.BytesIO()
                Image.fromarray(fr).save(buf, format="PNG")
                z.writestr(f"frame_{i:05d}.png", buf.getvalue())
        tmp.replace(zp)
    return gif, zp


def show_media(out: Path) -> None:
    """A video player for video files, the image for a GIF, a note for a PNG folder."""
    if out.suffix.lower() in VIDEO_SUFFIXES:
        st.video(str(out), loop=True, autoplay=True, muted=True)
    elif out.suffix.lower() == ".gif":
        st.image(str(out))
    else:
        st.info(f"Output is a PNG frame folder: {out}")


def downloads(out: Path, manifest_path: Path, key: str) -> None:
    """Download buttons: the output, GIF, frames zip and manifest."""
    c = st.columns(4)
    if out.is_file():
        c[0].download_button(f"⬇ {out.suffix.lstrip('.').upper()}", out.read_bytes(), file_name=out.name,
                             key=f"dl_vid_{key}", width="stretch")
    gif, zp = extra_paths(out)
    if gif.is_file() and zp.is_file():
        c[1].download_button("⬇ GIF", gif.read_bytes(), file_name=gif.name, key=f"dl_gif_{key}",
                             width="stretch")
        c[2].download_button("⬇ Frames (zip)", zp.read_bytes(), file_name=zp.name, key=f"dl_zip_{key}",
                             width="stretch")
    elif out.is_file() and out.suffix.lower() in VIDEO_SUFFIXES:
        if c[1].button("Prepare GIF + frames", key=f"mk_{key}", width="stretch"):
            with st.spinner("Writing GIF and frames…"):
                try:
                    make_extras(out)
                except Exception as e:  # noqa: BLE001 - show the reason, keep the page
                    st.error(f"Could not prepare the GIF/frames: {e}")
            st.rerun()
    if manifest_path.is_file():
        c[3].download_button("⬇ Manifest", manifest_path.read_bytes(), file_name=manifest_path.name,
                             mime="application/json", key=f"dl_man_{key}", width="stretch")


def show_result(out: Path, manifest_path: Path, key: str, *, actions: bool = True) -> None:
    """The whole result block for one output."""
    from ..engines import get_engine
    from .generate import follow_job, post_section
    show_media(out)
    manifest: dict[str, Any] = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    final = manifest.get("output") or {}
    if final:
        st.caption(f"{out.name} · {final.get('frames')} frames · {final.get('fps'):g} fps · "
                   f"{final.get('width')}×{final.get('height')} · {final.get('codec')}")
    downloads(out, manifest_path, key)
    if manifest:
        with st.expander("Manifest"):
            st.json(manifest, expanded=False)
    if not actions or not manifest:
        return
    req = manifest.get("request") or {}
    c = st.columns(2)
    if c[0].button("♻ Reuse settings", key=f"reuse_{key}", disabled=not req, width="stretch"):
        st.session_state["_reuse"] = req
        st.rerun()
    if c[1].button("⏭ Continue from last frame", key=f"cont_{key}", width="stretch",
                   disabled=out.suffix.lower() not in VIDEO_SUFFIXES):
        from postfx.assemble import last_frame

        from .common import save_frame
        st.session_state["_continue"] = str(save_frame(last_frame(out), out.stem))
        st.rerun()
    if manifest.get("base_clip"):
        with st.expander("Re-run post-processing (without regenerating)"):
            spec = get_engine(req.get("engine", "camera")).spec() if req.get("engine") else {}
            if spec:
                vals = post_section(spec, f"rr_{key}_", float(req.get("fps") or 8))
                if st.button("Re-run", key=f"rr_go_{key}", type="primary"):
                    job = studio_queue().submit("rerun", {"manifest": str(manifest_path), "overrides": vals})
                    follow_job(job.id)
                    st.rerun()
