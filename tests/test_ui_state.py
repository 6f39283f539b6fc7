"""Generate page state in AppTest: Reuse settings, Continue from last frame, reloads, a second tab."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from apptest_util import (
    fresh_queue,  # noqa: F401 (an autouse fixture: a fresh job queue per test)
    poll,
)
from streamlit.testing.v1 import AppTest

from studio.jobs import JobStore
from studio.ui.common import shutdown_queues

ROOT = Path(__file__).resolve().parent.parent
GEN = str(ROOT / "app_pages" / "1_Generate.py")


def _page() -> AppTest:
    return AppTest.from_file(GEN, default_timeout=60).run()


def _num(at: AppTest, key: str, value) -> None:
    w = [x for x in list(at.slider) + list(at.number_input) if x.key == key]
    assert w, f"no widget {key}"
    w[0].set_value(value)


def _configure(at: AppTest, photo: Path, size: tuple[int, int] = (96, 64), crf: int = 23,
               preset: str = "fast") -> AppTest:
    """Non-default settings everywhere the page has them: size, frames, fps, seed, ×2, ×2 Lanczos, CRF."""
    at.file_uploader(key="gen_upload").set_value((photo.name, photo.read_bytes(), "image/jpeg")).run()
    at.text_area(key="gen_prompt").set_value("pan right, clouds drifting").run()
    for k, v in (("frames", 5), ("fps", 12.0), ("width", size[0]), ("height", size[1]), ("seed", 7)):
        _num(at, f"gen_camera_{k}", v)
    at.run()
    at.radio(key="gen_post_interp_mode").set_value("×2").run()
    at.toggle(key="gen_post_up_on").set_value(True).run()
    at.selectbox(key="gen_post_upscaler").set_value("lanczos").run()
    _num(at, "gen_post_crf", crf)
    at.selectbox(key="gen_post_preset").set_value(preset).run()
    return at


def _ledger(at: AppTest) -> list[dict]:
    """The ledger's rows, without the estimate (it learns from each finished run)."""
    return [{k: v for k, v in r.items() if k != "estimate"} for r in at.table[0].value.to_dict("records")]


def test_reuse_restores_every_setting_from_a_result_and_from_a_fresh_session(photo):
    at = _configure(_page(), photo)
    assert not at.exception and not at.error, [e.value for e in at.error]
    original = _ledger(at)
    assert [r["frames"] for r in original] == [5, 9, 9, 9] and original[-1]["size"] == "192×128"
    at.button(key="generate").click().run()
    at = poll(at, lambda a: any(b.label == "♻ Reuse settings" for b in a.button))
    job = JobStore().get(at.session_state["job"])
    manifest = json.loads(Path(job.result["manifest"]).read_text())
    # change settings away from the manifest's, then reuse them back
    at.radio(key="gen_post_interp_mode").set_value("off").run()
    at.toggle(key="gen_post_up_on").set_value(False).run()
    _num(at, "gen_camera_frames", 9)
    at.run()
    assert _ledger(at) != original
    at.button(key=f"reuse_{job.id}").click().run()
    assert not at.error, [e.value for e in at.error]
    assert _ledger(at) == original
    ss = at.session_state
    assert ss["gen_post_interp_mode"] == "×2" and ss["gen_post_up_on"] is True
    assert (ss["gen_post_upscaler"], ss["gen_post_crf"], ss["gen_post_preset"]) == ("lanczos", 23, "fast")
    assert ss["gen_source"] == "From the gallery"              # the uploader no longer shows the old file
    # from the Gallery: a new session gets the manifest's request and draws the same ledger
    shutdown_queues()
    fresh = AppTest.from_file(GEN, default_timeout=60)
    fresh.session_state["_reuse"] = manifest["request"]
    fresh.run()
    assert not fresh.exception and not fresh.error, [e.value for e in fresh.error]
    assert _ledger(fresh) == original
    assert fresh.text_area(key="gen_prompt").value == "pan right, clouds drifting"


def test_continue_shows_the_last_frame_as_input_and_anchors_the_next_clip(photo):
    from postfx.assemble import read_video
    at = _configure(_page(), photo, size=(128, 128), crf=18, preset="medium")   # the default encode
    at.button(key="generate").click().run()
    at = poll(at, lambda a: any(b.label.startswith("⏭") for b in a.button))
    first = JobStore().get(at.session_state["job"])
    at.button(key=f"cont_{first.id}").click().run()
    assert not at.exception
    ss = at.session_state
    assert ss["gen_source"] == "Last frame of a clip" and ss["gen_last_pick"] == first.result["output"]
    assert ss["gen_camera_x_anchor_start"] is True
    assert not [u for u in at.get("file_uploader") if u.key == "gen_upload"]   # the old upload is gone
    assert Path(ss["gen_image"]).name.endswith("-last.png")
    assert any("Continuing from the last frame of" in s.value for s in at.success)
    rows = _ledger(at)
    assert rows[-2]["step"].startswith("start on the input frame")    # StartOn runs after the upscale
    at.button(key="generate").click().run()
    at = poll(at, lambda a: JobStore().get(a.session_state["job"]).status == "done", timeout=60)
    second = JobStore().get(at.session_state["job"])
    a = read_video(first.result["output"]).frames[-1].astype(int)
    b = read_video(second.result["output"]).frames[0].astype(int)
    assert np.abs(a - b).mean() <= 2.0
    m = json.loads(Path(second.result["manifest"]).read_text())
    assert m["request"]["extra"]["anchor_start"] is True
    assert [s["stage"] for s in m["stages"]] == ["interpolate", "upscale", "start_on"]


def test_a_new_upload_ends_the_continuation(photo):
    at = _page()
    at.session_state["_continue"] = {"image": str(photo), "clip": None}
    at.run()
    assert at.session_state["gen_camera_x_anchor_start"] is True
    at.radio(key="gen_source").set_value("Upload").run()
    at.file_uploader(key="gen_upload").set_value((photo.name, photo.read_bytes(), "image/jpeg")).run()
    assert at.session_state["gen_camera_x_anchor_start"] is False


def test_a_reload_keeps_the_image_and_prompt(photo):
    at = _page()
    at.file_uploader(key="gen_upload").set_value((photo.name, photo.read_bytes(), "image/jpeg")).run()
    at.text_area(key="gen_prompt").set_value("slow orbit left").run()
    q = dict(at.query_params)
    img = at.session_state["gen_image"]
    assert q["image"] == [Path(img).name] or q["image"] == Path(img).name
    assert "slow orbit left" in str(q["prompt"])
    # a reload: a new session with the same URL
    shutdown_queues()
    again = AppTest.from_file(GEN, default_timeout=60)
    for k, v in q.items():
        again.query_params[k] = v[0] if isinstance(v, list) else v
    again.run()
    assert again.session_state["gen_image"] == img
    assert again.text_area(key="gen_prompt").value == "slow orbit left"
    assert len(again.get("image")) >= 1                     # the input image is drawn again


def test_the_url_cannot_point_the_page_outside_the_uploads_folder(photo):
    at = AppTest.from_file(GEN, default_timeout=60)
    at.query_params["image"] = str(photo)                  # an absolute path: refused
    at.run()
    assert "gen_image" not in at.session_state


def test_a_second_tab_shows_the_result_of_a_job_it_saw_running(photo, monkeypatch):
    from studio.jobs import JobQueue
    from studio.request import GenerationRequest
    monkeypatch.setenv("STUDIO_JOBS_WORKERS", "0")           # hold the job queued while the tab opens
    tab2 = _page()
    q = JobQueue()
    req = GenerationRequest(image=str(photo), prompt="zoom in", frames=4, width=64, height=64)
    job = q.submit("generate", {"request": req.to_dict()})
    tab2.run()
    assert tab2.session_state["job"] == job.id              # it adopted the job it shows
    shutdown_queues()
    monkeypatch.delenv("STUDIO_JOBS_WORKERS")
    tab2 = poll(tab2, lambda a: len(a.get("video")) == 1)
    from studio.ui.names import display_name
    assert any(display_name(JobStore().get(job.id).result["output"]) in c.value for c in tab2.caption)
