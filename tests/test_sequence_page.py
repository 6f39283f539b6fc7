"""The Sequence page in AppTest: gallery clips, titles, reorder, remove, plan, storyboard, export job."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from apptest_util import fresh_queue  # noqa: F401 (an autouse fixture: a fresh job queue per test)
from apptest_util import poll as _poll
from streamlit.testing.v1 import AppTest

from postfx.assemble import probe_video, write_video
from studio.clip import Clip
from studio.outputs import outputs_dir, write_manifest

PAGE = str(Path(__file__).resolve().parent.parent / "app_pages" / "2_Sequence.py")


def gallery_clip(name: str, seconds: float, color) -> Path:
    """A clip in the outputs folder with a manifest, as the gallery lists it."""
    f = np.zeros((int(seconds * 8), 64, 96, 3), np.uint8)
    f[:] = color
    out = write_video(Clip(f, 8.0), outputs_dir() / name, preset="ultrafast")
    write_manifest(out, {"kind": "studio-manifest", "version": 1, "request": {"prompt": name}})
    return out


def _metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def test_sequence_page_builds_previews_and_exports():
    a = gallery_clip("a.mp4", 1.0, (200, 30, 30))
    b = gallery_clip("b.mp4", 1.5, (30, 200, 30))
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    for clip in (a, b):
        at.selectbox(key="seq_gallery_pick").set_value(str(clip)).run()
        at.button(key="seq_add_gallery").click().run()
    at.text_area(key="seq_title_text").set_value("The end").run()
    at.button(key="seq_add_title").click().run()
    items = at.session_state["seq_items"]
    names = [Path(i["path"]).name if "path" in i else i["title"] for i in items]
    assert names == ["a.mp4", "b.mp4", "The end"]
    # small output for speed; crossfade a → b 0.5 s; 1.0 + 1.5 + 2.0 - 0.5 = 4.0 s
    at.checkbox(key="seq_custom_size").check().run()
    at.number_input(key="seq_w").set_value(96).run()
    at.number_input(key="seq_h").set_value(64).run()
    at.number_input(key="seq_fps").set_value(8.0).run()
    ia = items[0]["_id"]
    at.selectbox(key=f"seq_{ia}_tr").set_value("crossfade").run()
    at.number_input(key=f"seq_{ia}_trd").set_value(0.5).run()
    assert not at.error, [e.value for e in at.error]
    assert _metric(at, "Duration") == "4.00 s" and _metric(at, "Size") == "96×64"
    # reorder: title to the front, then remove it → 1.0 + 1.5 - 0.5 = 2.0 s
    it = items[2]["_id"]
    at.button(key=f"seq_up_{it}").click().run()
    at.button(key=f"seq_up_{it}").click().run()
    assert at.session_state["seq_items"][0]["_id"] == it
    at.button(key=f"seq_rm_{it}").click().run()
    assert len(at.session_state["seq_items"]) == 2 and _metric(at, "Duration") == "2.00 s"
    # a bad value is refused with the field named
    at.number_input(key=f"seq_{items[1]['_id']}_tin").set_value(5.0).run()
    assert any("clips[1].trim_in=5 is at or past the end" in e.value for e in at.error)
    at.number_input(key=f"seq_{items[1]['_id']}_tin").set_value(0.0).run()
    # storyboard: one tile per entry
    at.button(key="seq_storyboard").click().run()
    board = at.session_state["seq_board"]
    assert board.shape[0] == 90 and board[45, 10, 0] > 150 and board[45, -10, 1] > 150
    # export as a job; the page follows it to the result
    at.button(key="seq_export").click().run()
    assert at.session_state["seq_job"]
    at = _poll(at, lambda x: len(x.get("video")) > 0)
    outs = sorted(p for p in outputs_dir().glob("*sequence*.mp4"))
    assert len(outs) == 1
    info = probe_video(outs[0])
    assert (info["width"], info["height"], info["frames"]) == (96, 64, 16)


def test_a_text_file_named_mp4_or_wav_is_refused_at_upload_with_a_plain_message():
    a = gallery_clip("a.mp4", 1.0, (200, 30, 30))
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.selectbox(key="seq_gallery_pick").set_value(str(a)).run()
    at.button(key="seq_add_gallery").click().run()
    at.file_uploader(key="seq_upload").set_value(("notes.mp4", b"just text\n" * 50, "video/mp4")).run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert errors == ["Cannot use this clip — notes.mp4 is not a video the studio can read"]
    assert at.button(key="seq_add_upload").disabled                     # it cannot reach the timeline
    at.file_uploader(key="seq_audio").set_value(("song.wav", b"not audio\n" * 50, "audio/wav")).run()
    errors = [e.value for e in at.error]
    assert "Cannot use this audio — song.wav is not readable audio (no audio stream in it)" in errors
    assert "seq_audio_path" not in at.session_state
    assert not any("/" in e for e in errors)                               # no server paths
    assert len(at.session_state["seq_items"]) == 1
    assert any(b.key == "seq_export" for b in at.button)                   # the plan still renders


def test_an_export_offers_its_download():
    a = gallery_clip("a.mp4", 1.0, (200, 30, 30))
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.selectbox(key="seq_gallery_pick").set_value(str(a)).run()
    at.button(key="seq_add_gallery").click().run()
    at.checkbox(key="seq_custom_size").check().run()
    at.number_input(key="seq_w").set_value(96).run()
    at.number_input(key="seq_h").set_value(64).run()
    at.button(key="seq_export").click().run()
    at = _poll(at, lambda x: len(x.get("video")) > 0)
    jid = at.session_state["seq_job"]
    dl = [d for d in at.get("download_button") if d.proto.label.startswith("⬇ MP4")]
    assert dl, "no download button for the export"
    out = sorted(outputs_dir().glob("*sequence*.mp4"))
    assert len(out) == 1 and jid
