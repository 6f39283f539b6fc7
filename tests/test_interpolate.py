"""The interpolate stage: exact ledger, scene cuts, static pairs, DIS fallback, cancel, weights errors."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from imagemath import psnr

from postfx.interpolate import Interpolate, scene_score
from studio.clip import Clip, ClipSpec
from studio.context import Cancelled, ModelCache, RunContext
from studio.stages import stage_from_dict, stage_to_dict
from studio.weights import WeightsError

DATA = Path(__file__).parent / "data"


def _photo(name: str) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(DATA / name)), cv2.COLOR_BGR2RGB)


def _pan(n: int, h: int = 48, w: int = 64, d: int = 4, name: str = "coffee.jpg") -> np.ndarray:
    """n crops of a photo panned right by d px per frame."""
    img = _photo(name)
    return np.stack([img[80:80 + h, 100 + k * d:100 + k * d + w] for k in range(n)])


@pytest.fixture
def no_models(tmp_path, monkeypatch):
    """An empty models dir: no RIFE weights anywhere."""
    monkeypatch.setenv("STUDIO_MODELS_DIR", str(tmp_path))
    return tmp_path


# -- the ledger --------------------------------------------------------------------------------
@pytest.mark.parametrize("k, frames, fps", [(2, 31, 16.0), (4, 61, 32.0), (3, 46, 24.0), (1, 16, 8.0)])
def test_factor_ledger(k, frames, fps):
    out = Interpolate(factor=k).plan(ClipSpec(frames=16, fps=8.0, width=64, height=48))
    assert (out.frames, out.fps, out.width, out.height) == (frames, fps, 64, 48)


@pytest.mark.parametrize("n, f, target", [(8, 8.0, 24.0), (16, 8.0, 24.0), (10, 8.0, 30.0),
                                          (7, 12.0, 25.0), (25, 24.0, 60.0)])
def test_target_fps_keeps_duration(n, f, target):
    st = Interpolate(target_fps=target)
    out = st.plan(ClipSpec(frames=n, fps=f, width=32, height=32))
    assert out.fps == target
    assert out.frames == round(n * target / f)
    assert abs(out.frames / target - n / f) <= 1.0 / target + 1e-9
    pos = st.positions(n, f)
    assert pos[0] == (0, 0.0) and all(0 <= i <= n - 1 and 0 <= t < 1 for i, t in pos)
    assert [i + t for i, t in pos] == sorted(i + t for i, t in pos)


def test_target_fps_24_from_8_positions():
    pos = Interpolate(target_fps=24).positions(8, 8.0)
    assert len(pos) == 24
    assert pos[:4] == [(0, 0.0), (0, pytest.approx(1 / 3)), (0, pytest.approx(2 / 3)), (1, 0.0)]
    assert pos[-2:] == [(7, 0.0), (7, 0.0)]  # past the last frame: held


@pytest.mark.parametrize("stage, n", [(Interpolate(factor=2, model="dis"), 5),
                                      (Interpolate(factor=3, model="dis"), 4),
                                      (Interpolate(target_fps=20, model="dis"), 6),
                                      (Interpolate(factor=1, model="dis"), 3),
                                      (Interpolate(factor=2, model="dis"), 1)])
def test_plan_equals_apply(stage, n):
    clip = Clip(_pan(n), fps=8.0)
    out = stage.apply(clip, RunContext())
    assert out.spec == stage.plan(clip.spec)
    # frames at whole source positions are the source frames, untouched
    for j, (i, t) in enumerate(stage.positions(n, 8.0)):
        if t == 0:
            assert np.array_equal(out.frames[j], clip.frames[i])


def test_rife_apply_matches_plan_and_truth(rife_weights):
    """RIFE through the stage: ledger exact; the in-between of a known pan is near the truth."""
    truth = _pan(7, h=64, w=96, d=3)
    clip = Clip(truth[::2].copy(), fps=8.0)  # 4 frames, 6 px per frame
    stage = Interpolate(factor=2, model="rife")
    steps = []
    ctx = RunContext(progress=lambda s, i, n: steps.append((s, i, n)), cache=ModelCache())
    out = stage.apply(clip, ctx)
    assert out.spec == stage.plan(clip.spec) == ClipSpec(7, 16.0, 96, 64)
    assert out.meta["interpolate"]["method"] == "rife-4.25"
    assert out.meta["interpolate"]["interpolated_frames"] == 3
    assert steps[-1] == ("interpolate", 3, 3)
    for j in (1, 3, 5):
        blend = (truth[j - 1].astype(np.float64) + truth[j + 1]) / 2
        assert psnr(out.frames[j], truth[j]) > psnr(blend, truth[j]) + 8


# -- scene cuts and static pairs ---------------------------------------------------------------
def _two_photos() -> np.ndarray:
    a = cv2.resize(_photo("astronaut.jpg"), (64, 48), interpolation=cv2.INTER_AREA)
    b = cv2.resize(_photo("coffee.jpg"), (64, 48), interpolation=cv2.INTER_AREA)
    return np.stack([a, b])


@pytest.mark.parametrize("model", ["dis", "rife"])
def test_scene_cut_makes_no_blend(model, request):
    if model == "rife":
        request.getfixturevalue("rife_weights")
    frames = _two_photos()
    assert scene_score(frames[0], frames[1]) > 0.35
    out = Interpolate(factor=4, model=model).apply(Clip(frames, fps=8.0), RunContext())
    assert out.frames.shape[0] == 5
    for f in out.frames:
        assert np.array_equal(f, frames[0]) or np.array_equal(f, frames[1])
    # times up to the midpoint hold the earlier frame, later ones the next
    assert [int(np.array_equal(f, frames[1])) for f in out.frames] == [0, 0, 0, 1, 1]
    assert out.meta["interpolate"]["scene_cuts"] == [0]


def test_scene_threshold_one_disables_cuts():
    frames = _two_photos()
    out = Interpolate(factor=2, model="dis", scene_threshold=1.0).apply(Clip(frames, fps=8.0), RunContext())
    mid = out.frames[1]
    assert not np.array_equal(mid, frames[0]) and not np.array_equal(mid, frames[1])
    assert out.meta["interpolate"]["scene_cuts"] == []


def test_camera_motion_is_not_a_cut():
    img = _photo("rocket.jpg")
    a = img[100:356, 200:392]
    zoomed = cv2.resize(img[110:346, 210:382], (192, 256), interpolation=cv2.INTER_AREA)
    assert scene_score(a, img[100:356, 207:399]) < 0.2
    assert scene_score(a, zoomed) < 0.3


def test_static_frames_copied_exactly(rife_weights):
    f = _pan(1)[0]
    frames = np.stack([f, f, f])
    cache = ModelCache()
    out = Interpolate(factor=3, model="rife").apply(Clip(frames, fps=8.0), RunContext(cache=cache))
    assert out.frames.shape[0] == 7
    assert all(np.array_equal(x, f) for x in out.frames)
    assert out.meta["interpolate"]["static_pairs"] == [0, 1]
    assert out.meta["interpolate"]["interpolated_frames"] == 0
    assert not cache._items  # the model was never loaded


# -- fallback, cancel, weights errors ----------------------------------------------------------
def test_dis_fallback_runs_and_is_labelled(no_models):
    st = Interpolate(factor=2)
    assert st.resolved().model == "dis"
    assert "OpenCV DIS optical flow" in st.describe() and "fallback: no RIFE weights" in st.describe()
    assert "fallback" not in Interpolate(model="dis").describe()
    truth = _pan(3, h=64, w=96, d=3)
    out = st.apply(Clip(truth[::2].copy(), fps=8.0), RunContext())
    assert out.meta["interpolate"]["method"] == "opencv-dis"
    assert "fallback" in out.meta["interpolate"]["label"]
    blend = (truth[0].astype(np.float64) + truth[2]) / 2
    assert psnr(out.frames[1], truth[1]) > psnr(blend, truth[1]) + 5


def test_rife_label(rife_weights):
    assert Interpolate(factor=2).describe() == "RIFE 4.25 ×2"
    assert Interpolate(target_fps=24).describe() == "RIFE 4.25 → 24 fps"
    assert Interpolate().resolved().model == "rife"


def test_cancel_raises():
    clip = Clip(_pan(4), fps=8.0)
    ctx = RunContext()
    ctx.cancel.set()
    with pytest.raises(Cancelled):
        Interpolate(model="dis").apply(clip, ctx)
    # cancelled mid-run, from the progress callback
    ev = threading.Event()
    seen = []

    def progress(stage, i, n):
        seen.append(i)
        if i >= 1:
            ev.set()
    with pytest.raises(Cancelled):
        Interpolate(model="dis").apply(clip, RunContext(progress=progress, cancel=ev))
    assert seen == [0, 1]


def test_missing_weights_names_the_command(no_models):
    with pytest.raises(WeightsError, match="python -m studio models fetch rife"):
        Interpolate(model="rife").apply(Clip(_pan(2), fps=8.0), RunContext(cache=ModelCache()))


@pytest.mark.parametrize("where", ["rife/flownet-4.25.safetensors", "flownet.pkl", "rife/flownet.pkl"])
def test_corrupt_weights_give_weights_error(no_models, where):
    p = no_models / where
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"this is not a weight file \x00\x01\x02" * 40)
    st = Interpolate(model="auto")
    assert st.resolved().model == "rife"  # present, so auto picks it ...
    with pytest.raises(WeightsError, match="corrupt"):  # ... and loading says what is wrong
        st.apply(Clip(_pan(2), fps=8.0), RunContext(cache=ModelCache()))


# -- parameters --------------------------------------------------------------------------------
@pytest.mark.parametrize("kw, text", [({"factor": 0}, "factor=0"), ({"target_fps": -5.0}, "target_fps=-5"),
                                      ({"scene_threshold": 1.5}, "scene_threshold=1.5"),
                                      ({"model": "flowy"}, "model='flowy'"), ({"scale": 0.3}, "scale=0.3")])
def test_bad_parameters(kw, text):
    with pytest.raises(ValueError, match=text):
        Interpolate(**kw)


def test_manifest_round_trip_and_estimate():
    st = Interpolate(factor=3, scene_threshold=0.5, model="dis")
    assert stage_from_dict(stage_to_dict(st)) == st
    spec = ClipSpec(frames=16, fps=8.0, width=1280, height=720)
    e2, e4 = Interpolate(factor=2).estimate(spec, "cpu"), Interpolate(factor=4).estimate(spec, "cpu")
    assert e2["seconds"] > 0 and e4["seconds"] == pytest.approx(3 * e2["seconds"], rel=1e-3)
    assert e2["memory_mb"] > 0


def test_runner_batches_agree_and_validate(rife_weights):
    from postfx.rife.interpolator import RifeInterpolator
    from postfx.rife.weights import load_model
    frames = list(_pan(4, h=64, w=64, d=3))
    net = load_model()
    jobs = [(i, t) for i in range(3) for t in (0.25, 0.5)]
    one = RifeInterpolator(net, batch=1).run(frames, jobs)
    four = RifeInterpolator(net, batch=4).run(frames, jobs)
    assert max(int(np.abs(a.astype(int) - b).max()) for a, b in zip(one, four, strict=True)) <= 2
    with pytest.raises(ValueError, match="timestep 1.0"):
        RifeInterpolator(net).interpolate(frames[0], frames[1], [1.0])
    with pytest.raises(ValueError, match="scale=3"):
        RifeInterpolator(net, scale=3)


@pytest.mark.gpu
def test_cuda_fp16_close_to_cpu(rife_weights):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from postfx.rife.interpolator import RifeInterpolator
    from postfx.rife.weights import load_model
    frames = list(_pan(3, h=128, w=192, d=4))
    cpu = RifeInterpolator(load_model()).run(frames, [(0, 0.5), (1, 0.5)])
    gpu = RifeInterpolator(load_model(), device="cuda", batch=2).run(frames, [(0, 0.5), (1, 0.5)])
    assert all(psnr(a, b) > 38 for a, b in zip(cpu, gpu, strict=True))
