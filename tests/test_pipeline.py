"""Ledger == file written, post on existing video/frames, rerun from a manifest, atomicity."""

from __future__ import annotations

import numpy as np
import pytest

from postfx.assemble import probe_video, read_video, write_video
from studio.clip import Clip
from studio.context import Cancelled, RunContext
from studio.pipeline import generate, make_ledger, post_process, rerun
from studio.request import GenerationRequest


def _req(photo, **kw):
    base = dict(image=str(photo), prompt="pan right", frames=6, fps=8, width=64, height=48)
    base.update(kw)
    return GenerationRequest(**base)


@pytest.mark.parametrize("kw,expect", [
    ({}, (6, 8.0, 64, 48)),
    ({"interpolate": 2}, (11, 16.0, 64, 48)),
    ({"interpolate": 3, "upscale": 2, "upscaler": "lanczos"}, (16, 24.0, 128, 96)),
    ({"target_fps": 24.0}, (18, 24.0, 64, 48)),
    ({"upscale": 2, "upscaler": "lanczos", "order": "upscale-first", "interpolate": 2},
     (11, 16.0, 128, 96)),
])
def test_ledger_equals_written_file(tmp_path, photo, kw, expect):
    req = _req(photo, **kw)
    led = make_ledger(req)
    f = led.final
    assert (f.frames, f.fps, f.width, f.height) == expect
    res = generate(req, tmp_path / "o.mp4", RunContext())
    info = probe_video(res.output)
    assert (info["frames"], info["width"], info["height"]) == (f.frames, f.width, f.height)
    assert abs(info["fps"] - f.fps) < 1e-3
    assert res.manifest["ledger"] == led.to_dict()


def test_ledger_interpolation_formula(photo):
    led = make_ledger(_req(photo, frames=16, interpolate=2))
    rows = {r["stage"]: r for r in led.rows}
    assert rows["engine"]["frames"] == 16 and rows["interpolate"]["frames"] == 31
    assert rows["interpolate"]["fps"] == 16.0
    led = make_ledger(_req(photo, frames=16, fps=8, target_fps=24))
    assert abs(led.final.duration - 16 / 8) <= 1 / 24


def test_post_on_video_and_png_folder(tmp_path):
    frames = np.zeros((5, 32, 48, 3), np.uint8)
    for i in range(5):
        frames[i, :, i * 8:(i * 8) + 8] = 255
    src = write_video(Clip(frames, 10.0), str(tmp_path / "src") + "/")
    res = post_process(src, {"interpolate": 2, "upscale": 2, "upscaler": "lanczos"},
                       tmp_path / "p.mp4", RunContext())
    info = probe_video(res.output)
    assert (info["frames"], info["width"], info["height"]) == (9, 96, 64)
    assert abs(info["fps"] - 20.0) < 1e-3


def test_post_of_a_video_file_keeps_no_copy_and_reruns_from_the_input(tmp_path):
    """A post-processed video file is its own base: no .base.npz beside the output; a re-run decodes
    the input again (the same frames) after checking its sha256, and says so when it changed."""
    from pathlib import Path

    from studio.outputs import base_clip_path
    from studio.weights import sha256_file
    frames = np.random.default_rng(0).integers(0, 256, (6, 32, 48, 3), dtype=np.uint8)
    src = write_video(Clip(frames, 10.0), tmp_path / "in.mp4", codec="h264")
    res = post_process(src, {"upscale": 2, "upscaler": "lanczos"}, tmp_path / "p.mp4", RunContext())
    assert not base_clip_path(res.output).exists() and res.manifest["base_clip"] is None
    want = {"path": str(Path(src).resolve()), "sha256": sha256_file(Path(src))}
    assert res.manifest["base_source"] == want
    again = rerun(res.manifest_path, {"upscale": 1}, tmp_path / "r.mp4", RunContext())
    assert np.array_equal(again.base_clip.frames, res.base_clip.frames)
    assert probe_video(again.output)["width"] == 48 and not base_clip_path(again.output).exists()
    assert again.manifest["base_source"] == res.manifest["base_source"]   # a re-run of a re-run works too
    Path(src).write_bytes(Path(src).read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ValueError, match=r"the input in.mp4 this output was post-processed from was "
                                         r"deleted or changed"):
        rerun(res.manifest_path, {"upscale": 1}, tmp_path / "r2.mp4", RunContext())
    assert not (tmp_path / "r2.mp4").exists()


def test_rerun_changes_post_only(tmp_path, photo):
    res = generate(_req(photo), tmp_path / "g.mp4", RunContext())
    base_frames = res.base_clip.frames
    res2 = rerun(res.manifest_path, {"upscale": 2, "upscaler": "lanczos"}, tmp_path / "r.mp4",
                 RunContext())
    info = probe_video(res2.output)
    assert (info["width"], info["height"], info["frames"]) == (128, 96, 6)
    assert np.array_equal(res2.base_clip.frames, base_frames)
    assert res2.manifest["parent"].endswith("g.mp4.json")
    with pytest.raises(ValueError, match="post-processing settings only, not: frames"):
        rerun(res.manifest_path, {"frames": 9})


def test_cancel_mid_run_leaves_nothing(tmp_path, photo):
    ctx = RunContext()
    ctx.progress = lambda stage, i, n: ctx.cancel.set() if stage == "encode" and i == 2 else None
    with pytest.raises(Cancelled):
        generate(_req(photo), tmp_path / "c.mp4", ctx)
    assert [p.name for p in tmp_path.iterdir()] == []


def test_read_back_base_matches_output_closely(tmp_path, photo):
    res = generate(_req(photo, frames=4), str(tmp_path / "frames") + "/", RunContext())
    back = read_video(res.output)
    assert np.array_equal(back.frames, res.clip.frames)


def test_fallbacks_are_labelled_in_ledger_and_manifest(tmp_path, photo, monkeypatch):
    monkeypatch.setenv("STUDIO_MODELS_DIR", str(tmp_path / "no-models"))
    req = _req(photo, interpolate=2, upscale=2, upscaler="animevideov3")
    led = make_ledger(req)
    labels = [r["detail"] for r in led.rows]   # the label is a few words; the detail says why
    assert any("DIS" in lb and "fallback: no RIFE weights" in lb for lb in labels), labels
    assert any("Lanczos" in lb and "fallback" in lb for lb in labels), labels
    res = generate(req, tmp_path / "f.mp4", RunContext())
    stage_labels = [s["label"] for s in res.manifest["stages"]]
    assert "fallback: no RIFE weights" in stage_labels[0]
    assert "fallback" in stage_labels[1]


def test_post_refuses_factor_and_target_fps_together(tmp_path):
    src = write_video(Clip(np.zeros((3, 16, 16, 3), np.uint8), 8.0), str(tmp_path / "s") + "/")
    with pytest.raises(ValueError, match="give interpolate=2 or target_fps=24.0, not both"):
        post_process(src, {"interpolate": 2, "target_fps": 24.0}, tmp_path / "p.mp4", RunContext())
    assert not (tmp_path / "p.mp4").exists()
