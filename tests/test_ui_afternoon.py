"""Issue 20 (part A) in AppTest: title cards keep their lines, readable names and labels, Continue and
Re-run open at the clip's own settings, a cancelled notice is said once, estimates learn."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from apptest_util import (
    fresh_queue,  # noqa: F401 (an autouse fixture: a fresh job queue per test)
    poll,
)
from streamlit.testing.v1 import AppTest

from studio.pipeline import generate
from studio.request import GenerationRequest

ROOT = Path(__file__).resolve().parent.parent
GEN = str(ROOT / "app_pages" / "1_Generate.py")
SEQ = str(ROOT / "app_pages" / "2_Sequence.py")


def _clip(photo: Path, **kw) -> Path:
    """A finished studio output (camera engine) with its manifest, as the gallery lists it."""
    req = GenerationRequest(image=str(photo), prompt="pan right", frames=kw.pop("frames", 4),
                            width=kw.pop("width", 64), height=kw.pop("height", 64), **kw)
    return generate(req).output


def test_a_multi_line_title_card_keeps_its_line_break():
    at = AppTest.from_file(SEQ, default_timeout=60).run()
    at.text_area(key="seq_title_text").set_value("Launch day\nCape Canaveral").run()
    at.button(key="seq_add_title").click().run()
    item = at.session_state["seq_items"][0]
    box = at.text_area(key=f"seq_{item['_id']}_title")        # a text area, not a one-line input
    assert box.value == "Launch day\nCape Canaveral" and box.label == "Title text"
    box.set_value("Launch day\nCape Canaveral\n2026").run()
    assert at.session_state["seq_items"][0]["title"] == "Launch day\nCape Canaveral\n2026"
    labels = [c.label for c in at.color_picker]
    assert labels[:2] == ["Text colour", "Background"]            # not two fields called "Text"


def test_names_and_labels_read_as_words(photo):
    from studio.ui.names import display_name
    from studio.ui.views import job_title
    out = "/o/20261202-154730-camera-slowly-zooming-in-ab12cd.mp4"
    assert display_name(out) == "15:47:30 · camera-slowly-zooming-in"
    assert display_name(out + ".json") == "15:47:30 · camera-slowly-zooming-in"
    assert display_name("/u/0123456789ab-coffee.jpg") == "coffee.jpg"
    job = SimpleNamespace(id="abc", kind="rerun", status="done", payload={"manifest": out + ".json"})
    assert ".mp4.json" not in job_title(job) and "camera-slowly-zooming-in" in job_title(job)
    at = AppTest.from_file(GEN, default_timeout=60).run()
    labels = {w.key: w.label for w in [*at.slider, *at.number_input, *at.text_input, *at.checkbox]}
    assert labels["gen_camera_fps"] == "FPS" and labels["gen_post_crf"] == "CRF"
    assert labels["gen_camera_motion"] == "Camera moves"    # not "Motion" right under "Motion prompt"
    chips = [b.label for b in at.button if b.key and b.key.startswith("chip_")]
    assert "💡 slow orbit left around the subject" in chips               # whole examples


def test_continue_takes_the_source_clips_size_fps_and_post_settings(photo):
    src = _clip(photo, frames=4, fps=16.0, width=96, height=64, interpolate=2, upscale=2, upscaler="lanczos")
    at = AppTest.from_file(GEN, default_timeout=60)
    at.session_state["_continue"] = {"image": str(photo), "clip": str(src)}
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    ss = at.session_state
    assert (ss["gen_camera_width"], ss["gen_camera_height"], ss["gen_camera_fps"]) == (96, 64, 16.0)
    assert ss["gen_post_interp_mode"] == "×2" and ss["gen_post_up_on"] is True
    assert ss["gen_post_upscaler"] == "lanczos" and ss["gen_post_upscale"] == 2
    final = at.table[0].value.to_dict("records")[-1]
    assert final["size"] == "192×128" and final["fps"] == "32"      # the source clip's shape


def test_rerun_opens_at_the_clips_own_settings_and_shows_its_ledger(photo):
    at = AppTest.from_file(GEN, default_timeout=60).run()
    at.file_uploader(key="gen_upload").set_value((photo.name, photo.read_bytes(), "image/jpeg")).run()
    for k, v in (("frames", 4), ("width", 64), ("height", 64)):
        next(w for w in at.slider if w.key == f"gen_camera_{k}").set_value(v)
    at.run()
    at.radio(key="gen_post_interp_mode").set_value("×4").run()
    at.toggle(key="gen_post_up_on").set_value(True).run()
    at.selectbox(key="gen_post_upscaler").set_value("lanczos").run()
    at.button(key="generate").click().run()
    at = poll(at, lambda a: any(b.label == "Re-run" for b in a.button), timeout=90)
    jid = at.session_state["job"]
    ss = at.session_state
    assert ss[f"rr_{jid}_interp_mode"] == "×4" and ss[f"rr_{jid}_up_on"] is True
    assert ss[f"rr_{jid}_upscaler"] == "lanczos"
    rr = at.dataframe[0].value.to_dict("records")                 # the re-run's own ledger
    assert rr[0]["step"] == "saved base clip" and rr[-1]["size"] == "128×128" and rr[-1]["frames"] == 13


def test_a_cancelled_notice_is_said_once(photo, monkeypatch):
    monkeypatch.setenv("STUDIO_JOBS_WORKERS", "0")
    from studio.jobs import JobQueue
    q = JobQueue()
    job = q.submit("generate", {"request": GenerationRequest(image=str(photo), frames=4).to_dict()})
    q.cancel(job.id)
    at = AppTest.from_file(GEN, default_timeout=60)
    at.session_state["job"] = job.id
    at.run()
    assert any("was cancelled" in w.value for w in at.warning)
    at.run()                                                      # back to the page: no old notice
    assert not any("was cancelled" in w.value for w in at.warning)
    assert not [b for b in at.button if b.label == "Show result"]


def test_estimates_learn_from_this_machines_runs(photo):
    from studio.estimates import history_path
    from studio.pipeline import make_ledger
    req = GenerationRequest(image=str(photo), frames=6, width=96, height=64, interpolate=2, upscale=2,
                            upscaler="lanczos")
    cold = make_ledger(req)
    assert all("est_runs" not in r for r in cold.rows)
    for _ in range(2):
        generate(req)
    lines = [json.loads(x) for x in history_path().read_text().splitlines()]
    assert [x["key"] for x in lines[:4]] == ["engine:camera@cpu", "interpolate@cpu", "upscale@cpu",
                                             "encode:h264@cpu"]
    warm = make_ledger(req)
    assert all(r.get("est_runs") in (1, 2) for r in warm.rows)       # warm runs (or all) of each step
    assert [r["est_formula"] for r in warm.rows] == [r["est_formula"] for r in cold.rows]


def test_a_learned_ratio_is_the_median_of_the_latest_warm_runs_of_that_step():
    from studio.estimates import learned, record
    row = {"stage": "upscale", "label": "Real-ESRGAN", "frames": 16, "width": 512, "height": 512,
           "est_seconds": 2.0}
    enc = {"stage": "encode", "label": "encode h264", "frames": 16, "width": 512, "height": 512,
           "est_seconds": 0.5}
    for up_s, total in ((30.0, 40.0), (8.0, 10.0), (10.0, 12.0), (12.0, 14.5)):   # the first is cold
        record([row, enc], {"0:upscale": up_s, "encode": 1.0}, "cuda", total)
    got = learned([row, enc], "cuda")                  # on a GPU the load factor is 1: exact numbers
    assert got[0]["est_seconds"] == 2.0 * 5.0 and got[0]["est_runs"] == 3          # median 10 s / 2 s
    assert got[1]["est_seconds"] == 2.0       # encode 1 s + what the total holds beyond the rows: 2, 2, 2.5
    other = dict(row, frames=4000)                     # far bigger: no run of that size yet, all sizes used
    assert learned([other], "cuda")[0]["est_runs"] == 3


def test_eta_follows_the_plan_then_the_pace():
    from studio.estimates import eta_seconds
    rows = [{"stage": "engine", "est_seconds": 10.0}, {"stage": "upscale", "est_seconds": 10.0},
            {"stage": "encode", "est_seconds": 0.0}]
    assert eta_seconds(rows, None, 0, 0, 0.0) == 20.0
    assert eta_seconds(rows, "camera", 5, 10, 5.0) == 15.0          # on plan: 25 % done after 5 s
    # half done in 30 s, where the plan said 10: the plan has nothing left, the pace says 30 s
    assert eta_seconds(rows, "upscale", 0, 16, 30.0) == 15.0
    assert eta_seconds(rows, "upscale", 16, 16, 20.0) < 1.0


def test_upscale_counts_frames_not_tiles(photo, tmp_path):
    """257 frames counted 'of 2313' (tiles) before; now the count is the frames."""
    from studio.weights import status
    if not status("animevideov3-x2").present:
        import pytest
        pytest.skip("animevideov3 weights are not installed")
    import numpy as np

    from postfx.upscale import Upscale
    from studio.clip import Clip
    from studio.context import RunContext
    seen = []
    up = Upscale(scale=2, model="animevideov3", tile=32).resolved("cpu")
    frames = np.random.default_rng(0).integers(0, 255, (3, 64, 64, 3), dtype=np.uint8)
    up.apply(Clip(frames, 8.0), RunContext(progress=lambda s, i, n: seen.append((s, i, n))))
    ups = [(i, n) for s, i, n in seen if s == "upscale"]
    assert {n for _, n in ups} == {3} and ups[-1] == (3, 3) and len(ups) > 4     # per tile, in frames


def test_manifest_keeps_the_formula_beside_the_learned_estimate(photo):
    out = _clip(photo)
    m = json.loads(Path(str(out) + ".json").read_text())
    assert all("est_formula" in r for r in m["ledger"]["rows"])
