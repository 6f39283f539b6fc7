"""A finished output: the player, its actions (reuse, continue, downloads), then re-run and manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import streamlit as st

from .common import studio_queue
from .compare import before_after
from .names import display_name
from .service import engine, extra_paths, make_extras, save_last_frame

VIDEO_SUFFIXES = (".mp4", ".webm", ".mov")


def show_media(out: Path, alt: str | None = None) -> None:
    """A video player for video files, the image for a GIF, a note for a PNG folder.

    Streamlit autoplays an unkeyed player only the first time its element id mounts; `alt` is part
    of that id, so a caller that shows a new result passes a new `alt` and it plays again.
    """
    if out.suffix.lower() in VIDEO_SUFFIXES:
        st.video(str(out), loop=True, autoplay=True, muted=True, alt=alt or display_name(out))
    elif out.suffix.lower() == ".gif":
        st.image(str(out))
    else:
        st.info(f"Output is a PNG frame folder: {out.name}")


def downloads(out: Path, manifest_path: Path, key: str, columns: int = 2) -> None:
    """Download buttons (the output, GIF, frames zip, manifest) in a grid of `columns`."""
    buttons: list[tuple[str, Any]] = []
    if out.is_file():
        buttons.append(("vid", lambda c: c.download_button(
            f"⬇ {out.suffix.lstrip('.').upper()}", out.read_bytes(), file_name=out.name,
            key=f"dl_vid_{key}", width="stretch")))
    gif, zp = extra_paths(out)
    if gif.is_file() and zp.is_file():
        buttons.append(("gif", lambda c: c.download_button("⬇ GIF", gif.read_bytes(), file_name=gif.name,
                                                           key=f"dl_gif_{key}", width="stretch")))
        buttons.append(("zip", lambda c: c.download_button(
            "⬇ Frames (zip)", zp.read_bytes(), file_name=zp.name, key=f"dl_zip_{key}", width="stretch")))
    elif out.is_file() and out.suffix.lower() in VIDEO_SUFFIXES:
        buttons.append(("mk", lambda c: _prepare_button(c, out, key)))
    if manifest_path.is_file():
        buttons.append(("man", lambda c: c.download_button(
            "⬇ Manifest", manifest_path.read_bytes(), file_name=manifest_path.name, mime="application/json",
            key=f"dl_man_{key}", width="stretch")))
    for i in range(0, len(buttons), columns):
        for col, (_, draw) in zip(st.columns(columns), buttons[i:i + columns], strict=False):
            draw(col)


def _prepare_button(col: Any, out: Path, key: str) -> None:
    if col.button("Make GIF + zip", key=f"mk_{key}", width="stretch",
                  help="Write a GIF and a zip of PNG frames of this output, to download."):
        with st.spinner("Writing GIF and frames…"):
            try:
                make_extras(out)
            except Exception as e:  # noqa: BLE001 - show the reason, keep the page
                st.error(f"Could not prepare the GIF/frames: {e}")
        st.rerun()


def _actions(out: Path, manifest_path: Path, manifest: dict[str, Any], key: str) -> None:
    req = manifest.get("request") or {}
    c = st.columns(2)
    if c[0].button("♻ Reuse settings", key=f"reuse_{key}", disabled=not req, width="stretch",
                 help="Put every setting of this output back into the form."):
        st.session_state["_reuse"] = req
        st.rerun()
    if c[1].button("⏭ Continue from last frame", key=f"cont_{key}", width="stretch",
                 disabled=out.suffix.lower() not in VIDEO_SUFFIXES,
                 help="Make this clip's last frame the next input; the next clip starts exactly on it."):
        st.session_state["_continue"] = {"image": str(save_last_frame(out)), "clip": str(out)}
        st.rerun()


def _rerun_section(manifest: dict[str, Any], manifest_path: Path, key: str) -> None:
    from .form_load import POST_NAMES, load_post
    from .generate import follow_job, post_section
    from .service import rerun_ledger
    from .views import ledger_rows
    req = manifest.get("request") or {}
    if not (manifest.get("base_clip") or manifest.get("base_source")) or not req.get("engine"):
        return
    prefix = f"rr_{key}_"
    spec = engine(req["engine"]).spec()
    if not st.session_state.get(prefix + "loaded"):       # open at the clip's own post settings
        st.session_state[prefix + "loaded"] = True
        for err in load_post(spec, {k: req.get(k) for k in POST_NAMES if k in req}, prefix):
            st.warning(f"Re-run: {err}")
    with st.expander("Re-run post-processing (without regenerating)"):
        vals = post_section(spec, prefix, float(req.get("fps") or 8))
        st.caption("Ledger of the re-run (from the saved base clip):")
        try:
            led = rerun_ledger(manifest, vals)
            st.dataframe(ledger_rows(led), hide_index=True, width="stretch")
            f = led.final
            st.caption(f"→ {f.frames} frames · {f.fps:g} fps · {f.width}×{f.height} · "
                       f"est. {led.total_seconds:.1f} s")
            ok = True
        except ValueError as e:
            st.error(f"Settings refused: {e}")
            ok = False
        if st.button("Re-run", key=f"rr_go_{key}", type="primary", disabled=not ok):
            job = studio_queue().submit("rerun", {"manifest": str(manifest_path), "overrides": vals})
            follow_job(job.id)
            st.rerun()


def show_result(out: Path, manifest_path: Path, key: str, *, actions: bool = True,
                alt: str | None = None) -> None:
    """The whole result block for one output: the player at the block's full width (a half-column
    player was ~190 px wide on the Generate page), its facts, then the buttons in a row."""
    manifest: dict[str, Any] = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    final = manifest.get("output") or {}
    show_media(out, alt)
    if final:
        st.caption(f"{display_name(out)} · {final.get('frames')} frames · {final.get('fps'):g} fps · "
                   f"{final.get('width')}×{final.get('height')} · {final.get('codec')}")
    if actions and manifest:
        _actions(out, manifest_path, manifest, key)
    downloads(out, manifest_path, key, columns=2)
    if manifest:
        before_after(out, manifest_path, manifest, key)
    if actions and manifest:
        _rerun_section(manifest, manifest_path, key)
    if manifest:
        with st.expander("Manifest"):
            st.json(manifest, expanded=False)
