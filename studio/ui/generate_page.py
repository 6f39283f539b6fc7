"""Assembles the Generate page from its sections; `render()` is all app_pages/1_Generate.py calls."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from ..jobs import Job
from . import service
from .batch import batch_requests, batch_section, presets_section
from .common import engines_info, studio_queue
from .form_load import OUTPUT_NAMES
from .generate import (
    POLL_S,
    apply_pending,
    audio_section,
    current_job_id,
    engine_section,
    follow_job,
    input_section,
    lora_section,
    post_section,
    prompt_section,
    unfollow_job,
)
from .results import show_result
from .views import job_card, job_title, show_ledger
from .widgets import widgets

GEN_GROUPS = ("generate", "camera")
FOLLOWED_KINDS = ("generate", "rerun")   # jobs whose result this page shows
SKIP = ("prompt", "engine")


def _param_names(spec: dict, eng_id: str, uses_prompt: bool, ignores: tuple[str, ...] = ()) -> list[str]:
    names = [n for n, p in spec.items() if p.group in GEN_GROUPS and n not in SKIP and n not in ignores]
    if not uses_prompt:
        names = [n for n in names if n != "negative_prompt"]
    if eng_id != "camera":
        names = [n for n in names if spec[n].group != "camera"]
    return names


def build_request(image: str | None, prompt: str, eng_id: str, values: dict[str, Any],
                  loras: list[dict[str, Any]], extra: dict[str, Any]) -> Any:
    """A `GenerationRequest` from the page's values (not yet checked)."""
    return service.build_request({"image": image or "", "prompt": prompt, "engine": eng_id,
                                  "loras": loras, "extra": extra, **values})


def speed_caption(image: str | None, prompt: str, eng_id: str, values: dict[str, Any],
                  loras: list[dict[str, Any]], extra: dict[str, Any]) -> None:
    """Under the Speed box: each tier's estimated time for these settings (or why it can't run)."""
    if "speed" not in extra:
        return
    try:
        rows = service.speed_estimates(build_request(image, prompt, eng_id, values, loras, extra))
    except Exception:  # noqa: BLE001 - settings the ledger will name; nothing to estimate yet
        return
    parts = []
    for tier, secs, why in rows:
        if secs is None:
            parts.append(f"{tier}: not here" + (f" ({why.split(' (')[0].split(';')[0]})" if why else ""))
        else:
            parts.append(f"{tier}: ~{secs:,.0f} s" if secs >= 10 else f"{tier}: ~{secs:.1f} s")
    st.caption("Estimated engine time by speed tier — " + " · ".join(parts))


def ledger_section(req: Any) -> bool:
    """Show the live ledger for `req`; False (with st.error) when the settings are refused."""
    try:   # the job names its output by the codec (.gif, PNG folder, ...): plan for that, not .mp4
        ledger = service.ledger_for(req)
    except ValueError as e:
        st.error(f"Settings refused: {e}")
        return False
    except Exception as e:  # noqa: BLE001 - missing weights and the like: say why, no traceback
        st.error(f"Cannot plan this run: {type(e).__name__}: {e}")
        return False
    show_ledger(ledger)
    return True


def jobs_panel() -> None:
    """Queued and running jobs (polled), and the followed job's outcome once it ends.

    A tab that follows no job adopts the generation it shows running (started in another tab, or
    before a reload), so that job's result appears here when it ends.  Other jobs this tab saw
    running get a "Show result" button when they end, instead of vanishing.
    """
    q = studio_queue()
    active = q.list(status=("queued", "running"))

    def body() -> None:
        ss = st.session_state
        # in the order they run: running first, then the queue oldest first (its arrows move a job)
        jobs = sorted(q.list(status=("queued", "running")), key=lambda j: (j.status != "running", j.created))
        for j in jobs:
            with st.container(border=True):
                job_card(j, q)
        follow = current_job_id()
        mine = [j for j in jobs if j.kind in FOLLOWED_KINDS]
        if not follow and mine:
            follow = mine[0].id                  # the oldest active one: it finishes first
            follow_job(follow)
        seen = ss.setdefault("_seen_active", [])
        seen.extend(j.id for j in mine if j.id not in seen)
        shown = set(ss.get("_shown_jobs", []))
        _finished_elsewhere(q, [i for i in seen if i != follow and i not in shown
                                and i not in {j.id for j in jobs}])
        if follow:
            try:
                job = q.get(follow)
            except KeyError:
                return
            if not job.is_active and ss.get("_seen_status") != (job.id, job.status):
                ss["_seen_status"] = (job.id, job.status)
                st.rerun(scope="app")
        if not jobs:
            st.caption("The queue is empty.")

    st.subheader("Queue")
    st.fragment(run_every=POLL_S if active else None)(body)()


def _finished_elsewhere(q: Any, ids: list[str]) -> None:
    """A 'Show result' button for each job this tab saw running that has since ended (newest 3)."""
    for jid in ids[-3:][::-1]:
        try:
            job = q.get(jid)
        except KeyError:
            continue
        c = st.columns([3, 1])
        c[0].caption(f"{job_title(job)} — {job.status}")
        if job.status == "done" and c[1].button("Show result", key=f"show_{jid}"):
            st.session_state["_seen_active"].remove(jid)
            follow_job(jid)
            st.rerun(scope="app")


def result_section() -> None:
    """The followed job's result (or its failure), at the top of the right-hand column."""
    jid = current_job_id()
    if not jid:
        return
    try:
        job: Job = studio_queue().get(jid)
    except KeyError:
        return
    st.session_state["_seen_status"] = (job.id, job.status)
    if job.status == "done" and job.result.get("output"):
        out = Path(job.result["output"])
        if not out.exists():
            st.warning(f"The output {out.name} was deleted.")
            return
        with st.container(border=True):
            st.subheader("Result")
            if job.result.get("note"):
                st.info(f"Job {job.id}: {job.result['note']}.")
            alt = _player_alt(job.id)
            show_result(out, Path(job.result.get("manifest") or str(out) + ".json"), key=job.id, alt=alt)
            play_when_ready(alt)
    elif job.status == "failed":
        st.error(f"Job {job.id} failed: {job.error}")
    elif job.status == "cancelled":          # said once: it does not follow you back to the page
        st.warning(f"Job {job.id} was cancelled; nothing was written.")
        unfollow_job()


def _player_alt(job_id: str) -> str:
    """The result player's alt text, new on every full run of the page.

    Streamlit's player autoplays only on the first mount of its element id, and the Generate
    page's result is mounted more than once as it arrives (the browser test saw it paused with
    autoplay off), so it never played by itself.  A new id each full run makes it start again after
    a change on the page: a short muted loop, where the Gallery's plays once opened.
    """
    n = st.session_state.get("_page_runs", 0) + 1
    st.session_state["_page_runs"] = n
    return f"Result of job {job_id} (view {n})"


def play_when_ready(alt: str) -> None:
    """Start the muted result player labelled `alt` once it is in the page (Streamlit drops its
    autoplay when the element mounts a second time, which the result's arrival can cause)."""
    label = "".join(c for c in alt if c.isalnum() or c in " ()·-")      # our own text: job id, counter
    st.html(f"""<script>(() => {{ let n = 0; const t = setInterval(() => {{
      const v = document.querySelector('video[aria-label="{label}"]');
      if (v) {{ v.muted = true; if (v.paused) {{ const p = v.play(); if (p) p.catch(() => {{}}); }}
               else clearInterval(t); }}
      if (++n > 60) clearInterval(t); }}, 250); }})();</script>""", unsafe_allow_javascript=True)


def render() -> None:
    """The whole Generate page: settings on the left; result, ledger, Generate and queue on the right."""
    st.title("🎬 Generate")
    for err in apply_pending():
        st.error(f"Could not reuse a setting: {err}")
    left, right = st.columns([1, 1], gap="large")
    with left:
        image = input_section()
        infos = engines_info()
        eng = engine_section(infos)
        try:
            engine = service.engine(eng.id)
        except Exception as e:  # noqa: BLE001 - an engine module that fails to import
            st.error(f"Engine {eng.id} cannot be loaded: {type(e).__name__}: {e}")
            st.stop()
        prompt = prompt_section(bool(getattr(engine, "uses_prompt", True)))
        st.markdown("**LoRAs**")
        loras, lora_errors = lora_section(eng)
        for e in lora_errors:
            st.error(e)
        spec = engine.spec()
        st.markdown("**Parameters**")
        names = _param_names(spec, eng.id, engine.uses_prompt, engine.ignores)
        values = widgets(spec, names, f"gen_{eng.id}_")
        extra = widgets(engine.extra_spec(), list(engine.extra_spec()), f"gen_{eng.id}_x_",
                        advanced_label="Engine settings")
        speed_caption(image, prompt, eng.id, values, loras, extra)
        st.markdown("**Post-processing**")
        values.update(post_section(spec, "gen_post_", float(values.get("fps") or 8)))
        with st.expander("Output and audio"):
            out_spec = {k: spec[k].override(advanced=False) for k in OUTPUT_NAMES}
            values.update(widgets(out_spec, list(OUTPUT_NAMES), "gen_post_"))
            values.update(audio_section(spec, "gen_post_", values.get("codec")))
        seeds, prompts = batch_section()
    with right:
        result_section()
        st.subheader("Ledger")
        req = None
        try:
            req = build_request(image, prompt, eng.id, values, loras, extra)
            ok = ledger_section(req)
        except ValueError as e:
            st.error(f"Settings refused: {e}")
            ok = False
        if image is None:
            st.info("Pick an input image to generate.")
        can = bool(ok and image and eng.ready and not lora_errors)
        batch: list[Any] = []
        if req is not None:
            try:
                batch = batch_requests(req, seeds, prompts)
            except ValueError as e:
                st.error(f"Batch refused: {e}")
                can = False
        if len(batch) > 1:
            st.caption(f"One click queues {len(batch)} jobs: " + ", ".join(
                f"“{r.prompt[:30]}” seed {r.seed}" for r in batch[:4]) + ("…" if len(batch) > 4 else ""))
        if st.button("🎬 Generate", type="primary", disabled=not can, key="generate", width="stretch"):
            submit_batch(batch)
        presets_section(req)
        jobs_panel()


def submit_batch(batch: list[Any]) -> None:
    """Check every request first, then queue them all; the tab follows the first."""
    try:
        for r in batch:
            service.check_request(r)
        jobs = [studio_queue().submit("generate", {"request": r.to_dict()}) for r in batch]
    except ValueError as e:
        st.error(f"Cannot generate: {e}")
        return
    follow_job(jobs[0].id)
    st.session_state["_seen_status"] = (jobs[0].id, jobs[0].status)
    st.toast(f"Queued job {jobs[0].id}" if len(jobs) == 1 else f"Queued {len(jobs)} jobs")
