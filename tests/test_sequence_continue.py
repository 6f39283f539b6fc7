"""Continuation from the last frame, and the colour-drift check/correction between clips."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from postfx.assemble import read_video, write_video
from studio.clip import Clip
from studio.context import RunContext
from studio.engines import get_engine, register
from studio.engines.base import Engine
from studio.request import GenerationRequest
from studio.sequence import continue_from_last_frame, render_sequence
from studio.sequence.continuation import color_drift


class DriftEngine(Engine):
    """A test engine: frame i is the image with its red channel raised by `extra['drift']`·i."""

    id = "test-drift"
    family = "test"
    label = "test: image with a colour drift"
    needs_weights = False
    uses_prompt = False

    def generate(self, image, req, ctx):
        drift = float(req.extra.get("drift", 0) if isinstance(req.extra, dict) else 0)
        frames = np.repeat(image[None], req.frames, axis=0).astype(np.int16)
        frames[..., 0] += (np.arange(req.frames) * drift).astype(np.int16)[:, None, None]
        return Clip(np.clip(frames, 0, 255).astype(np.uint8), float(req.fps))

    def extra_spec(self):
        from studio.params import Param

        return {"drift": Param("drift", float, 0.0, "red added per frame", min=0, max=50)}


@pytest.fixture(autouse=True)
def _engine():
    register(DriftEngine.id, f"{__name__}:DriftEngine")
    yield


def textured(n: int, w: int = 96, h: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 200, (h // 8, w // 8, 3)).astype(np.uint8)
    img = np.kron(base, np.ones((8, 8, 1), np.uint8))
    return np.stack([np.roll(img, 2 * i, axis=1) for i in range(n)])


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.mark.parametrize("prev_kind", ["png", "mp4"])
def test_continuation_starts_from_exactly_the_last_frame(tmp_path, prev_kind):
    prev = tmp_path / ("prev/" if prev_kind == "png" else "prev.mp4")
    prev = write_video(Clip(textured(5), 8.0), str(prev) if prev_kind == "mp4" else str(prev) + "/")
    last = read_video(prev).frames[-1]
    req = GenerationRequest(engine=DriftEngine.id, frames=4, fps=8, width=96, height=64, codec="png")
    res = continue_from_last_frame(prev, req, str(tmp_path / "next") + "/")
    new = read_video(res.output).frames
    assert new.shape == (4, 64, 96, 3)
    assert np.array_equal(new[0], last)                    # lossless PNG folder: exact
    start = tmp_path / "next.start.png"
    assert res.manifest["input"]["sha256"] == sha(start)   # the engine was given that very PNG
    assert res.manifest["continuation"]["start_frame"] == "next.start.png"
    on_disk = json.loads((tmp_path / "next.json").read_text())
    assert on_disk["continuation"]["from"] == str(Path(prev).resolve())


def test_continuation_into_mp4_within_codec_tolerance(tmp_path):
    prev = write_video(Clip(textured(5), 8.0), tmp_path / "prev.mp4")
    last = read_video(prev).frames[-1].astype(int)
    req = GenerationRequest(engine=DriftEngine.id, frames=4, fps=8, width=96, height=64)
    res = continue_from_last_frame(prev, req, tmp_path / "next.mp4")
    first = read_video(res.output).frames[0].astype(int)
    assert np.abs(first - last).mean() < 2.0


def test_camera_engine_continues_from_the_decoded_last_frame(tmp_path):
    """With the camera engine: the new clip is exactly what the engine makes from the last frame."""
    prev = write_video(Clip(textured(5), 8.0), str(tmp_path / "prev") + "/")
    last = read_video(prev).frames[-1]
    req = GenerationRequest(prompt="slow zoom in", frames=4, fps=8, width=96, height=64, codec="png")
    res = continue_from_last_frame(prev, req, str(tmp_path / "next") + "/")
    new = read_video(res.output).frames
    # continuation asks the camera engine to start exactly on the given frame (anchor_start)
    assert res.manifest["request"]["extra"]["anchor_start"] is True
    anchored = GenerationRequest(prompt="slow zoom in", frames=4, fps=8, width=96, height=64,
                                 codec="png", extra={"anchor_start": True})
    direct = get_engine("camera").generate(last, anchored, RunContext())
    assert np.array_equal(new, direct.frames)
    assert np.array_equal(new[0], last)          # the new clip starts on exactly the last frame
    assert np.abs(new[-1].astype(int) - last.astype(int)).mean() > 1.0   # and then moves


def test_drift_warns_and_corrects(tmp_path, caplog):
    prev = write_video(Clip(textured(3), 8.0), str(tmp_path / "prev") + "/")
    req = GenerationRequest(engine=DriftEngine.id, frames=8, fps=8, width=96, height=64, codec="png",
                            extra={"drift": 12.0})
    res = continue_from_last_frame(prev, req, str(tmp_path / "a") + "/")
    rec = res.manifest["continuation"]
    assert rec["drift_end"] > 8.0 and not rec["color_corrected"]
    assert "drifts" in caplog.text
    res = continue_from_last_frame(prev, req, str(tmp_path / "b") + "/", color_correct=True)
    rec = res.manifest["continuation"]
    assert rec["color_corrected"] and rec["drift_after"] < 2.0 < rec["drift_end"]
    last = read_video(prev).frames[-1]
    assert color_drift(read_video(res.output).frames[-1], last) < 2.0


def test_sequence_drift_check_and_color_match(tmp_path):
    a = write_video(Clip(textured(8), 8.0), str(tmp_path / "a") + "/")
    warm = textured(8, seed=1)
    warm[..., 0] = np.clip(warm[..., 0].astype(int) + 60, 0, 255)
    b = write_video(Clip(warm, 8.0), str(tmp_path / "b") + "/")
    spec = {"version": 1, "output": {"size": [96, 64], "fps": 8}, "clips": [{"path": a}, {"path": b}]}
    out = render_sequence(spec, str(tmp_path / "o1") + "/")
    warnings = json.loads((tmp_path / "o1.json").read_text())["plan"]["warnings"]
    assert len(warnings) == 1 and warnings[0].startswith("clips[1] starts") and "ΔE" in warnings[0]
    before = color_drift(read_video(out).frames[7], read_video(out).frames[8])
    spec["clips"][1]["color_match"] = True
    out = render_sequence(spec, str(tmp_path / "o2") + "/")
    assert json.loads((tmp_path / "o2.json").read_text())["plan"]["warnings"] == []
    f = read_video(out).frames
    assert color_drift(f[7], f[8]) < 3.0 < before
