"""Camera engine: measured from pixels — zoom, pan/tilt signs, roll, dolly zoom, borders, smoothness."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from studio.context import Cancelled, RunContext
from studio.engines import check_request, get_engine
from studio.engines.camera import CameraEngine, render
from studio.engines.motion import MOVES, MotionPlan, canonical_moves, parse_motion
from studio.request import GenerationRequest

DATA = Path(__file__).parent / "data"
MAGENTA = (255, 0, 255)


def _plan(moves: str, speed: float = 1.0, easing: str = "ease-in-out") -> MotionPlan:
    return MotionPlan(moves=canonical_moves(moves), speed=speed, easing=easing, source="motion")


def _texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth random texture, RGB uint8 (good for phase correlation)."""
    rng = np.random.default_rng(seed)
    g = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 3)
    g = (g - g.min()) / (g.max() - g.min())
    return np.repeat((g * 255).astype(np.uint8)[..., None], 3, axis=2)


def _shifts(frames: np.ndarray) -> np.ndarray:
    """(dx, dy) of each frame's content relative to the previous frame (+x right, +y down)."""
    g = frames.mean(axis=3).astype(np.float32)
    win = cv2.createHanningWindow(g.shape[1:][::-1], cv2.CV_32F)
    return np.array([cv2.phaseCorrelate(g[i], g[i + 1], win)[0] for i in range(len(g) - 1)])


def test_registry_and_attributes() -> None:
    eng = get_engine("camera")
    assert isinstance(eng, CameraEngine)
    assert (eng.id, eng.family, eng.label, eng.needs_weights) == (
        "camera", "camera", "Camera motion (no weights)", False)
    assert eng.status().present


@pytest.mark.parametrize("moves,sign", [("zoom_in", 1), ("zoom_out", -1)])
def test_zoom_changes_field_of_view_monotonically(moves: str, sign: int) -> None:
    # white source with a black centred square: its apparent area grows (zoom in) or shrinks (out)
    src = np.full((240, 320, 3), 255, np.uint8)
    src[90:150, 130:190] = 0
    fr, _ = render(src, _plan(moves), 64, 48, 8, 8.0)
    area = (255.0 - fr.mean(axis=3)).sum(axis=(1, 2)) / 255.0  # sub-pixel area of the square
    assert np.all(sign * np.diff(area) > 0), area
    ratio = area.max() / area.min()
    assert 1.3 ** 2 * 0.85 < ratio < 1.3 ** 2 * 1.15  # 1.3x linear zoom at speed 1


@pytest.mark.parametrize("moves,axis,sign", [
    ("pan_right", 0, -1), ("pan_left", 0, 1),  # viewport right -> content shifts LEFT
    ("pan_up", 1, 1), ("pan_down", 1, -1),     # viewport up -> content shifts DOWN
    ("tilt_up", 1, 1), ("truck_left", 0, 1),
])
def test_pan_direction_measured_by_phase_correlation(moves: str, axis: int, sign: int) -> None:
    fr, _ = render(_texture(200, 260), _plan(moves), 64, 64, 8, 8.0)
    s = _shifts(fr)
    assert np.all(sign * s[:, axis] > 0.2), s        # every step moves, in the right direction
    assert np.all(np.abs(s[:, 1 - axis]) < 0.2), s   # and only along its axis


def test_linear_pan_is_smooth_subpixel_and_jitter_free() -> None:
    # a Gaussian blob tracked by its intensity centroid moves ~0.3 px per frame; a renderer that
    # rounded positions to pixels would move it in 0 / 1 px steps (second differences ~1 px)
    yy, xx = np.mgrid[0:200, 0:400]
    blob = np.exp(-((xx - 200.0) ** 2 + (yy - 100.0) ** 2) / (2 * 12.0 ** 2))
    src = np.repeat((255 * blob).astype(np.uint8)[..., None], 3, axis=2)
    fr, _ = render(src, _plan("pan_right", speed=0.3, easing="linear"), 64, 64, 16, 8.0)
    w = fr[..., 0].astype(float)
    cx = (w * np.arange(64)).sum(axis=(1, 2)) / w.sum(axis=(1, 2))
    cy = (w * np.arange(64)[:, None]).sum(axis=(1, 2)) / w.sum(axis=(1, 2))
    dx = np.diff(cx)
    assert np.all(dx < -0.2) and np.all(dx > -0.5), dx   # content moves left, sub-pixel steps
    # second differences are tiny: no jitter (what is left is OpenCV's 1/32-pixel kernel tables)
    assert np.abs(np.diff(dx)).max() < 0.1, dx
    assert dx.std() < 0.03, dx
    assert np.abs(cy - cy[0]).max() < 0.01


def test_roll_direction_from_a_tracked_dot() -> None:
    src = np.zeros((200, 200, 3), np.uint8)
    cv2.circle(src, (150, 100), 8, (255, 255, 255), -1)  # a dot right of centre
    angles = {}
    for mv in ("roll_cw", "roll_ccw"):
        fr, _ = render(src, _plan(mv, speed=2.0), 96, 96, 6, 8.0)
        pts = []
        for f in fr:
            ys, xs = np.nonzero(f[..., 0] > 128)
            pts.append(math.atan2(ys.mean() - 47.5, xs.mean() - 47.5))
        angles[mv] = np.degrees(np.array(pts))
    # on screen with y down, a clockwise turn increases atan2(y, x)
    assert np.all(np.diff(angles["roll_cw"]) > 0.5) and np.all(np.diff(angles["roll_ccw"]) < -0.5)
    assert angles["roll_cw"][-1] - angles["roll_cw"][0] == pytest.approx(20.0, abs=1.5)


@pytest.mark.parametrize("move,marker", [("dolly_zoom_in", 150), ("dolly_zoom_out", 80)])
def test_dolly_zoom_keeps_the_subject_and_moves_the_background(move: str, marker: int) -> None:
    src = np.full((400, 400, 3), 255, np.uint8)
    cv2.rectangle(src, (185, 185), (215, 215), (0, 0, 0), -1)          # subject
    for dx, dy in ((-1, 0), (1, 0), (0, -1), (0, 1)):                # background markers (blue)
        cv2.circle(src, (200 + dx * marker, 200 + dy * marker), 6, (0, 0, 255), -1)
    fr, _ = render(src, _plan(move, speed=2.0), 128, 128, 5, 8.0)
    subj = (255.0 - fr[:, 44:84, 44:84].mean(axis=3)).sum(axis=(1, 2)) / 255.0  # sub-pixel area
    assert subj.max() / subj.min() < 1.06, subj    # the subject's size stays (roughly) constant
    blue = [np.argwhere((f[..., 2] > 150) & (f[..., 0] < 100)) for f in fr]
    dist = np.array([np.hypot(b[:, 0] - 63.5, b[:, 1] - 63.5).mean() for b in blue])
    if move == "dolly_zoom_in":   # the background is magnified: markers move outwards
        assert np.all(np.diff(dist) > 0) and dist[-1] > 1.15 * dist[0], dist
    else:                         # the background shrinks: markers move inwards
        assert np.all(np.diff(dist) < 0) and dist[-1] < 0.95 * dist[0], dist


ALL_MOVES = [m for m in MOVES if m != "static"] + [
    "zoom_in+pan_right", "orbit_left+sway", "zoom_out+roll_ccw+pan_up+sway",
    "dolly_zoom_out+roll_cw+pan_left",
]


@pytest.mark.parametrize("speed", [1.0, 4.0])
@pytest.mark.parametrize("size", [(64, 48), (40, 72)])
def test_never_shows_outside_pixels(speed: float, size: tuple[int, int]) -> None:
    # the source has R = B = 0 everywhere, so any sample touching the magenta border shows in R or B
    rng = np.random.default_rng(3)
    src = np.zeros((150, 110, 3), np.uint8)
    src[..., 1] = rng.integers(60, 255, (150, 110), dtype=np.uint8)
    for moves in ALL_MOVES:
        fr, _ = render(src, _plan(moves, speed), size[0], size[1], 7, 8.0, seed=5, border=MAGENTA)
        assert fr[..., 0].max() == 0 and fr[..., 2].max() == 0, moves


def test_edges_not_black_on_a_bright_photo() -> None:
    src = cv2.imread(str(DATA / "chelsea.jpg"))[:, :, ::-1]
    src = (128 + src.astype(np.uint16) // 2).astype(np.uint8)  # brightened: every pixel >= 128
    for moves in ("zoom_out+roll_cw+sway", "pan_left+dolly_zoom_out", "orbit_right"):
        fr, _ = render(src, _plan(moves, 3.0), 80, 60, 6, 8.0, seed=1, border=(0, 0, 0))
        edges = np.concatenate([fr[:, 0], fr[:, -1], fr[:, :, 0], fr[:, :, -1]], axis=1)
        assert edges.min() >= 120, moves


def test_amplitude_is_reduced_when_moves_cannot_fit(caplog: pytest.LogCaptureFixture) -> None:
    src = _texture(100, 100)
    src[..., 0] = src[..., 2] = 0
    with caplog.at_level(logging.WARNING):
        fr, info = render(src, _plan("zoom_out+pan_right+pan_up+roll_cw", 4.0), 64, 64, 5, 8.0,
                          border=MAGENTA)
    assert 0 < info["amplitude"] < 1 and info["crop"] >= 0.44
    assert any("amplitude reduced" in r.getMessage() for r in caplog.records)
    assert fr[..., 0].max() == 0 and fr[..., 2].max() == 0


def test_engine_generate_frames_size_fps_meta_progress_and_determinism() -> None:
    src = cv2.imread(str(DATA / "astronaut.jpg"))[:, :, ::-1]
    req = check_request(GenerationRequest(
        image="x.jpg", prompt="camera slowly zooming in and panning right, handheld",
        frames=9, fps=12.0, width=96, height=64, seed=11))
    steps: list[tuple[str, int, int]] = []
    ctx = RunContext(progress=lambda s, i, n: steps.append((s, i, n)))
    eng = get_engine("camera")
    clip = eng.generate(src, req, ctx)
    assert clip.frames.shape == (9, 64, 96, 3) and clip.frames.dtype == np.uint8 and clip.fps == 12.0
    assert steps == [("camera", i, 9) for i in range(1, 10)]
    m = clip.meta["motion"]
    assert m["moves"] == ["zoom_in", "pan_right", "sway"] and m["speed"] == 0.6 and m["fallback"] is False
    assert m["easing"] == "ease-in-out" and 0 < m["crop"] <= 1 and m["source"] == "prompt"
    assert m["source_size"] == [512, 512] and m["amplitude"] == 1.0
    again = eng.generate(src, req, RunContext())
    assert np.array_equal(clip.frames, again.frames)
    other = eng.generate(src, GenerationRequest(**{**req.to_dict(), "seed": 12, "loras": []}), RunContext())
    assert not np.array_equal(clip.frames, other.frames)  # the sway is seeded
    assert np.abs(np.diff(clip.frames.astype(np.int16), axis=0)).mean() > 0.5  # it moves


def test_engine_fallback_meta_and_explicit_motion() -> None:
    src = _texture(120, 160)
    eng = get_engine("camera")
    req = check_request(GenerationRequest(prompt="", frames=3, width=64, height=64))
    clip = eng.generate(src, req, RunContext())
    assert clip.meta["motion"]["fallback"] is True and clip.meta["motion"]["moves"] == ["zoom_in"]
    req = GenerationRequest(prompt="zoom in", motion="pan_left", speed=2.0, frames=4, width=64, height=64)
    clip = eng.generate(src, check_request(req), RunContext())
    assert clip.meta["motion"]["moves"] == ["pan_left"] and clip.meta["motion"]["speed"] == 2.0
    with pytest.raises(ValueError, match="'sideways'"):
        check_request(GenerationRequest(prompt="", motion="sideways", frames=4))


def test_cancel_stops_the_render() -> None:
    ctx = RunContext()
    ctx.cancel.set()
    req = check_request(GenerationRequest(prompt="pan left", frames=4, width=64, height=64))
    with pytest.raises(Cancelled):
        get_engine("camera").generate(_texture(64, 64), req, ctx)


def test_static_and_bad_inputs() -> None:
    src = _texture(64, 64)
    fr, _ = render(src, _plan("static"), 32, 32, 4, 8.0)
    assert np.array_equal(fr[0], fr[-1])
    with pytest.raises(ValueError, match="RGB uint8"):
        render(src.astype(np.float32), _plan("zoom_in"), 32, 32, 2, 8.0)
    with pytest.raises(ValueError, match="interpolation='nearest'"):
        render(src, _plan("zoom_in"), 32, 32, 2, 8.0, interpolation="nearest")


def test_estimate_scales_with_output_size() -> None:
    eng = get_engine("camera")
    small = eng.estimate(GenerationRequest(frames=16, width=512, height=512), "cpu")
    big = eng.estimate(GenerationRequest(frames=32, width=1024, height=1024), "cpu")
    assert 0 < small["seconds"] < big["seconds"] and big["memory_mb"] > small["memory_mb"] > 0


def test_large_source_uses_a_reduced_level() -> None:
    # a 4x larger source than needed is sampled from a pre-filtered reduction, not the full image
    src = _texture(512, 512)
    _, info = render(src, parse_motion("slow zoom in"), 64, 64, 4, 8.0)
    assert max(info["levels"]) < 0.3


def test_zoom_sharpness_has_no_level_pops() -> None:
    # zooming into a 4x-upscaled (soft) photo can only lose sharpness; sampling one pyramid level at a
    # time makes it jump back up (~13% here) where a frame switches to a finer level; blending two
    # levels does not
    src = cv2.imread(str(DATA / "astronaut.jpg"))[:, :, ::-1]
    src = cv2.resize(src, (2048, 2048), interpolation=cv2.INTER_CUBIC)
    fr, info = render(src, _plan("zoom_in"), 512, 512, 16, 8.0, blend=True)
    assert len(info["levels"]) >= 3 and info["blend_levels"] is True
    sharp = np.array([cv2.Laplacian(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), cv2.CV_32F).var() for f in fr])
    rise = sharp[1:] / sharp[:-1] - 1.0
    assert rise.max() < 0.03, np.round(rise, 3)
    assert sharp[-1] < 0.95 * sharp[0]


@pytest.mark.parametrize("prompt", ["pan right", "zoom in", "roll clockwise", "orbit left handheld",
                                    "dolly zoom", "zoom out fast"])
def test_anchor_start_begins_exactly_on_the_input_and_never_leaks(prompt):
    from studio.engines.camera import render
    from studio.engines.motion import parse_motion
    rng = np.random.default_rng(1)
    img = np.zeros((64, 96, 3), np.uint8)
    img[..., 1] = (rng.random((64, 96)) * 200 + 20).astype(np.uint8)   # R = B = 0 everywhere
    fr, info = render(img, parse_motion(prompt), 96, 64, 9, 8, border=(255, 0, 255), anchor_start=True)
    assert np.array_equal(fr[0], img) and info["anchor_start"] is True
    assert int(fr[..., 0].max()) == 0 and int(fr[..., 2].max()) == 0   # no sentinel pixel ever
    assert float(np.abs(fr[-1].astype(int) - img.astype(int)).mean()) > 5  # it still moves
