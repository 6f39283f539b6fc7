"""The Streamlit pages driven by AppTest: upload, generate, result, bad input, cancel, restart, gallery."""

from __future__ import annotations

import time
from pathlib import Path

from apptest_util import fresh_queue  # noqa: F401 (an autouse fixture: a fresh job queue per test)
from apptest_util import poll as _poll
from streamlit.testing.v1 import AppTest

from studio.jobs import JobStore
from studio.ui.common import shutdown_queues

ROOT = Path(__file__).resolve().parent.parent
GEN = str(ROOT / "app_pages" / "1_Generate.py")


def _page(path: str = GEN) -> AppTest:
    at = AppTest.from_file(path, default_timeout=60)
    return at.run()


def _upload(at: AppTest, path: Path, name: str | None = None, data: bytes | None = None) -> AppTest:
    at.file_uploader(key="gen_upload").set_value((name or path.name, data or path.read_bytes(), "image/jpeg"))
    return at.run()


def _set(at: AppTest, **vals) -> AppTest:
    for k, v in vals.items():
        key = f"gen_camera_{k}"
        widgets = [w for w in list(at.slider) + list(at.number_input) if w.key == key]
        assert widgets, f"no widget {key}"
        widgets[0].set_value(v)
    return at.run()


def _outputs() -> Path:
    from studio.outputs import outputs_dir
    return outputs_dir()


def test_home_page_shows_engines_and_queue():
    at = _page(str(ROOT / "app.py"))
    assert not at.exception
    engines = at.dataframe[0].value
    assert "camera" in list(engines["engine"])
    assert {m.label for m in at.metric} >= {"Queued", "Running", "Done", "Failed", "Cancelled"}


def test_upload_generate_camera_and_result_is_shown(photo):
    at = _page()
    assert not at.exception
    assert at.button(key="generate").disabled  # no image yet
    _upload(at, photo)
    _set(at, frames=4, width=64, height=64)
    ledger = at.table[0].value                 # the ledger: a static table that wraps to its column
    assert list(ledger["frames"]) == [4, 4] and list(ledger["size"]) == ["64×64", "64×64"]
    at.text_area(key="gen_prompt").set_value("camera slowly zooming in").run()
    at.button(key="generate").click().run()
    assert not at.exception and not at.error
    at = _poll(at, lambda a: len(a.get("video")) > 0)
    outs = sorted(_outputs().glob("*.mp4"))
    assert len(outs) == 1
    from postfx.assemble import probe_video
    assert probe_video(outs[0])["frames"] == 4
    from studio.ui.names import display_name
    assert any(display_name(outs[0]) in c.value for c in at.caption)   # the page names the file it shows
    labels = {b.label for b in at.button}
    assert {"♻ Reuse settings", "⏭ Continue from last frame"} <= labels
    # Re-run post-processing with ×2 interpolation, without regenerating: 4 frames -> 7 at 16 fps
    first = at.session_state["job"]
    at.radio(key=f"rr_{first}_interp_mode").set_value("×2").run()
    at.button(key=f"rr_go_{first}").click().run()
    second = at.session_state["job"]
    assert second != first and JobStore().get(second).kind == "rerun"
    at = _poll(at, lambda a: any("· 7 frames · 16 fps · 64×64" in c.value for c in a.caption))
    assert len(list(_outputs().glob("*.mp4"))) == 2
    # Continue from last frame: the next input is that frame, saved as a PNG
    at.button(key=next(b.key for b in at.button if b.label.startswith("⏭"))).click().run()
    nxt = at.session_state["gen_image"]
    assert nxt.endswith("-last.png") and Path(nxt).is_file()


def test_bad_image_shows_error_not_traceback():
    at = _page()
    _upload(at, Path("broken.jpg"), data=b"\xff\xd8\xff\xe0" + b"garbage" * 50)
    assert not at.exception
    assert len(at.error) == 1
    msg = at.error[0].value
    assert msg.startswith("Cannot use this image") and "broken.jpg" in msg
    assert at.button(key="generate").disabled


def test_over_limit_upload_is_refused(photo, monkeypatch):
    monkeypatch.setenv("STUDIO_MAX_UPLOAD_MB", "0.01")
    at = _upload(_page(), photo)
    assert not at.exception
    assert "over the 0.01 MB upload limit" in at.error[0].value


def test_out_of_range_reused_value_is_an_error(photo):
    at = _page()
    at.session_state["_reuse"] = {"engine": "camera", "prompt": "pan right", "frames": 9999, "fps": 12.0}
    at.run()
    assert not at.exception
    assert any("frames=9999 is above the maximum" in e.value for e in at.error)
    assert at.slider(key="gen_camera_fps").value == 12.0   # the valid value was taken
    assert at.text_area(key="gen_prompt").value == "pan right"


def test_cancel_stops_a_running_job(photo):
    at = _upload(_page(), photo)
    _set(at, frames=200, width=512, height=512)
    at.button(key="generate").click().run()
    jid = at.session_state["job"]
    store = JobStore()
    _poll(at, lambda a: store.get(jid).status == "running" and store.get(jid).i >= 1, timeout=30)
    cancel = [b for b in at.button if b.label == "Cancel"]
    assert cancel, "no Cancel button while running"
    cancel[0].click().run()
    said = lambda a: any("was cancelled" in w.value for w in a.warning)   # noqa: E731
    if not said(at):                                  # the click's own run may already say it
        at = _poll(at, said, timeout=30)
    job = store.get(jid)
    assert (job.stage, job.n) == ("camera", 200) and 1 <= job.i < 200   # stopped mid-engine
    assert not list(_outputs().glob("*.mp4")) and not list(_outputs().glob("*.json"))
    at.run()                                          # said once: it does not follow you back
    assert not any("was cancelled" in w.value for w in at.warning)


def test_queue_survives_an_app_restart(photo, monkeypatch):
    monkeypatch.setenv("STUDIO_JOBS_WORKERS", "0")     # no worker: the job stays queued
    at = _upload(_page(), photo)
    _set(at, frames=4, width=64, height=64)
    at.button(key="generate").click().run()
    jid = at.session_state["job"]
    assert JobStore().get(jid).status == "queued"
    shutdown_queues()                                   # the server stops
    monkeypatch.delenv("STUDIO_JOBS_WORKERS")
    at2 = _page()                                       # a new session over the same store
    assert any(jid in m.value for m in at2.markdown), "the queued job is not shown after restart"
    store = JobStore()
    end = time.monotonic() + 30
    while store.get(jid).status != "done" and time.monotonic() < end:
        time.sleep(0.1)
    assert store.get(jid).status == "done"              # and the restarted worker ran it


def test_gallery_lists_filters_and_deletes(photo):
    from studio.pipeline import generate
    from studio.request import GenerationRequest
    res = generate(GenerationRequest(image=str(photo), prompt="pan right, clouds drifting", frames=4,
                                     width=64, height=64))
    at = _page(str(ROOT / "app_pages" / "3_Gallery.py"))
    assert not at.exception
    assert "1 of 1 outputs" in [c.value for c in at.caption]
    assert len(at.get("image")) >= 1                      # the thumbnail
    at.text_input(key="gal_text").set_value("zoom").run()
    assert "0 of 1 outputs" in [c.value for c in at.caption]
    at.text_input(key="gal_text").set_value("clouds").run()
    at.button(key=f"open_{res.output.name}").click().run()
    assert len(at.get("video")) == 1 and at.json                 # player and manifest view
    at.button(key=f"del_{res.output.name}").click().run()
    assert res.output.exists()                                    # not before confirming
    at.button(key=f"yes_{res.output.name}").click().run()
    assert not res.output.exists() and not res.manifest_path.exists()
    assert any("No outputs yet" in i.value for i in at.info)


def test_models_page_shows_status_and_commands():
    at = _page(str(ROOT / "app_pages" / "4_Models.py"))
    assert not at.exception
    text = " ".join(m.value for m in at.markdown)
    assert "`camera`" in text and "✅" in text
    from studio.weights import all_weights, status
    missing = [w for w in all_weights() if not status(w).present]
    codes = [c.value for c in at.code]
    for wid in missing:
        assert all_weights()[wid].command in codes


def test_lora_upload_refuses_pickles_and_incompatible_files(tmp_path, monkeypatch):
    import torch
    from safetensors.torch import save
    monkeypatch.setenv("STUDIO_LORAS_DIR", str(tmp_path / "loras"))
    at = _page(str(ROOT / "app_pages" / "4_Models.py"))
    assert at.file_uploader(key="lora_upload").allowed_type == [".safetensors"]   # no pickles
    not_a_lora = save({"conv.weight": torch.zeros(4, 4)})
    at.file_uploader(key="lora_upload").set_value(("odd.safetensors", not_a_lora, "application/octet-stream"))
    at.run()
    assert not at.exception
    assert at.error[0].value.startswith("odd.safetensors was refused")
    assert not list((tmp_path / "loras").glob("*.safetensors"))
