"""The Models page's download block for one engine: choose a layout, see its size and the free
disk, download as a `weights` job, watch progress, cancel and resume (`studio.hubfetch`).

Nothing is asked of the Hub until the person presses "Check size" or "Download"."""

from __future__ import annotations

import streamlit as st

from .. import hubfetch
from .common import human_size, studio_queue
from .service import WeightsError


def _job_for(engine_id: str):
    """The newest weights job for this engine (or None)."""
    for j in studio_queue().list(kind="weights", limit=20):
        if j.payload.get("engine") == engine_id:
            return j
    return None


def _sizes(eid: str, lay: hubfetch.Layout) -> None:
    """The layout's size (after "Check size"), what is here already, and the free disk."""
    free = hubfetch.free_bytes(lay.dest)
    key = f"fetch_plan_{eid}_{lay.key}"
    if st.button("Check size", key=f"fetch_size_{eid}", help="Asks the Hub for the file list and sizes; "
                 "downloads nothing"):
        try:
            p = hubfetch.plan(lay)
            st.session_state[key] = (p.total, p.have, len(p.files), None)
        except (WeightsError, ValueError) as e:
            st.session_state[key] = (0, 0, 0, str(e))
    got = st.session_state.get(key)
    if got and got[3]:
        st.error(got[3])
    elif got:
        total, have, n, _ = got
        need = max(0, total - have)
        st.markdown(f"**Size:** {human_size(total)} in {n} files · here already {human_size(have)} · "
                    f"to fetch **{human_size(need)}** · free disk **{human_size(free)}**")
        if need > free:
            st.error(f"Not enough disk: {human_size(need)} to fetch, {human_size(free)} free at {lay.dest}")
    else:
        st.caption(f"Free disk at `{lay.dest}`: {human_size(free)}")


def _progress(eid: str, lay: hubfetch.Layout) -> None:
    """The running download's bar with a Cancel button; the last one's outcome; Download/Resume."""
    job = _job_for(eid)
    if job is not None and job.is_active:
        frac = job.i / job.n if job.n else 0.0
        text = (f"Downloading {lay.label}: {human_size(job.i)} of {human_size(job.n)}" if job.n
                else f"Download {job.status}…")
        st.progress(min(1.0, frac), text=text)
        if st.button("Cancel download", key=f"fetch_cancel_{eid}"):
            studio_queue().cancel(job.id)
            st.rerun()
        return
    if job is not None and job.status == "failed":
        st.error(f"The last download failed: {job.error}")
    elif job is not None and job.status == "cancelled":
        st.warning(f"Download cancelled; {human_size(hubfetch.partial_bytes(lay))} of partial files kept: "
                   f"Resume continues where it stopped.")
    elif job is not None and job.status == "done" and job.result.get("layout") == lay.key:
        st.success(f"Downloaded {human_size(job.result.get('bytes'))} into {job.result.get('dest')}")
    partial = hubfetch.partial_bytes(lay)
    label = f"Resume download ({human_size(partial)} here)" if partial else "Download"
    if st.button(label, key=f"fetch_go_{eid}", type="primary"):
        payload: dict = {"engine": eid, "layout": lay.key}
        if lay.key == "diffusers" and lay.sources[0].patterns:   # only the components still missing
            payload["missing"] = [p.removesuffix("/*") for p in lay.sources[0].patterns]
        studio_queue().submit("weights", payload)
        st.rerun()


def fetch_block(engine, missing: list[str] | None = None) -> None:
    """Layout choice, the exact commands, size and free disk, and the download job for `engine`."""
    eid = engine.id
    try:
        lays = hubfetch.layouts(engine, missing)
    except ValueError as e:
        st.error(str(e))
        return
    labels = [x.label for x in lays]
    pick = st.radio("Layout", labels, key=f"fetch_layout_{eid}", horizontal=True,
                    help="The diffusers folder, or the ComfyUI single files (fp8/GGUF) the engine knows")
    lay = lays[labels.index(pick)] if pick in labels else lays[0]
    for cmd in hubfetch.command(lay):
        st.code(cmd, language="bash", wrap_lines=True)
    _sizes(eid, lay)
    job = _job_for(eid)
    if job is not None and job.is_active:
        @st.fragment(run_every=1.0)
        def live() -> None:
            j = _job_for(eid)
            _progress(eid, lay)
            if j is not None and not j.is_active:
                st.rerun()
        live()
    else:
        _progress(eid, lay)
