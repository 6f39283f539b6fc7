"""Batches (several seeds or prompts from one submit), queue reordering, named presets (AppTest)."""

from __future__ import annotations

from pathlib import Path

from apptest_util import fresh_queue  # noqa: F401 (an autouse fixture: a fresh job queue per test)
from streamlit.testing.v1 import AppTest

from studio.jobs import JobQueue, JobStore

GEN = str(Path(__file__).resolve().parent.parent / "app_pages" / "1_Generate.py")


def _page(photo: Path) -> AppTest:
    at = AppTest.from_file(GEN, default_timeout=60).run()
    at.file_uploader(key="gen_upload").set_value((photo.name, photo.read_bytes(), "image/jpeg")).run()
    for k, v in (("frames", 4), ("width", 64), ("height", 64)):
        next(w for w in at.slider if w.key == f"gen_camera_{k}").set_value(v)
    next(w for w in at.number_input if w.key == "gen_camera_seed").set_value(5)
    return at.run()


def _queued() -> list:
    return sorted(JobStore().list(status="queued"), key=lambda j: j.created)


def test_one_submit_queues_every_seed_and_prompt(photo, monkeypatch):
    monkeypatch.setenv("STUDIO_JOBS_WORKERS", "0")            # keep them queued to look at
    at = _page(photo)
    at.number_input(key="gen_batch_seeds").set_value(3).run()
    at.button(key="generate").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    seeds = [j.payload["request"]["seed"] for j in _queued()]
    assert seeds == [5, 6, 7]
    at.number_input(key="gen_batch_seeds").set_value(2).run()
    at.text_area(key="gen_batch_prompts").set_value("zoom in\n\npan left\n").run()
    assert any("queues 4 jobs" in c.value for c in at.caption)
    at.button(key="generate").click().run()
    new = [(j.payload["request"]["prompt"], j.payload["request"]["seed"]) for j in _queued()[3:]]
    assert new == [("zoom in", 5), ("zoom in", 6), ("pan left", 5), ("pan left", 6)]
    at.number_input(key="gen_batch_seeds").set_value(9).run()       # 2 prompts × 9 seeds > 16
    assert any("18 jobs, over the 16" in e.value for e in at.error)
    assert at.button(key="generate").disabled


def test_arrows_reorder_the_queue(photo, monkeypatch):
    monkeypatch.setenv("STUDIO_JOBS_WORKERS", "0")
    at = _page(photo)
    at.number_input(key="gen_batch_seeds").set_value(3).run()
    at.button(key="generate").click().run()
    a, b, c = (j.id for j in _queued())
    at.button(key=f"move_up_{c}").click().run()                    # c before b
    assert [j.id for j in _queued()] == [a, c, b]
    at.button(key=f"move_up_{c}").click().run()                    # c first
    assert [j.id for j in _queued()] == [c, a, b]
    assert JobQueue().move(c, up=True) is False                    # nothing before the first
    assert JobQueue().move(c, up=False) is True and [j.id for j in _queued()] == [a, c, b]
    # a worker now takes them in that order
    monkeypatch.delenv("STUDIO_JOBS_WORKERS")
    store = JobStore()
    assert store.claim("test-worker").id == a and store.claim("test-worker").id == c


def test_a_named_preset_saves_and_loads_the_settings_but_not_the_input(photo):
    at = _page(photo)
    at.radio(key="gen_post_interp_mode").set_value("×2").run()
    at.text_area(key="gen_prompt").set_value("pan right").run()
    at.text_input(key="gen_preset_name").set_value("small x2").run()
    at.button(key="gen_preset_save").click().run()
    assert not at.error, [e.value for e in at.error]
    at.radio(key="gen_post_interp_mode").set_value("off").run()
    next(w for w in at.slider if w.key == "gen_camera_frames").set_value(9).run()
    at.text_area(key="gen_prompt").set_value("zoom in").run()
    at.selectbox(key="gen_preset_pick").set_value("small x2").run()
    at.button(key="gen_preset_load").click().run()
    ss = at.session_state
    assert ss["gen_post_interp_mode"] == "×2" and ss["gen_camera_frames"] == 4
    assert ss["gen_prompt"] == "zoom in"                            # the input stays
    assert at.session_state["gen_image"]
    at.text_input(key="gen_preset_name").set_value("../evil").run()
    at.button(key="gen_preset_save").click().run()
    assert any("preset name '../evil'" in e.value for e in at.error)
