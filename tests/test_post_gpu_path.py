"""The post chain's device path (issue #19): torch colour match and scene stats against the
OpenCV/numpy path, the faster CPU colour match against the one it replaced, the calibration table
behind the ledger's GPU estimates and the CUDA default order."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from postfx import calibration
from postfx.color import color_match
from postfx.interpolate import Interpolate, scene_score
from postfx.tensor_ops import color_match_t, frame_hists_t, pair_stats

DATA = Path(__file__).resolve().parent / "data"


def _photo(name: str = "astronaut.jpg") -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(DATA / name)), cv2.COLOR_BGR2RGB)


def _clip(t: int, h: int, w: int) -> np.ndarray:
    """t panned crops of the photo, h×w."""
    img = _photo()
    return np.ascontiguousarray(np.stack([img[9 * i:9 * i + h, 13 * i:13 * i + w] for i in range(t)]))


def _upscaled(src: np.ndarray, k: int, cast: int = 14, seed: int = 0) -> np.ndarray:
    """An 'upscaler' output with a colour cast and noise: cubic ×k, + cast, + noise."""
    rng = np.random.default_rng(seed)
    h, w = src.shape[1:3]
    big = np.stack([cv2.resize(f, (w * k, h * k), interpolation=cv2.INTER_CUBIC) for f in src])
    big = big.astype(np.int32) + cast + rng.integers(-12, 13, big.shape)
    return np.clip(big, 0, 255).astype(np.uint8)


def _color_match_before(reference: np.ndarray, frames: np.ndarray, sigma: float = 3.0) -> np.ndarray:
    """The colour match as it was before issue #19 (two float blurs a frame), the reference result."""
    ref = reference if reference.ndim == 4 else reference[None]
    h, w = ref.shape[1:3]
    oh, ow = frames.shape[1:3]
    out = np.empty_like(frames)
    for i, frame in enumerate(frames):
        ref_low = cv2.GaussianBlur(ref[min(i, len(ref) - 1)].astype(np.float32), (0, 0), sigma)
        small = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA) if (oh, ow) != (h, w) else frame
        delta = ref_low - cv2.GaussianBlur(small.astype(np.float32), (0, 0), sigma)
        if (oh, ow) != (h, w):
            delta = cv2.resize(delta, (ow, oh), interpolation=cv2.INTER_LINEAR)
        out[i] = np.clip(frame.astype(np.float32) + delta + 0.5, 0, 255).astype(np.uint8)
    return out


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_cpu_color_match_within_one_level_of_the_previous_path(k):
    """One blur of the difference at the source size gives the old result within 1 level."""
    src = _clip(3, 40, 56)
    big = _upscaled(src, k)
    new, old = color_match(src, big), _color_match_before(src, big)
    assert new.shape == old.shape == big.shape
    assert int(np.abs(new.astype(np.int16) - old).max()) <= 1
    assert float((new != old).mean()) < 0.01            # off by one only at rare rounding ties
    # and it did correct the cast: the mean moved back towards the source's
    assert abs(float(new.mean()) - float(src.mean())) < 2 < abs(float(big.mean()) - float(src.mean()))


@pytest.mark.parametrize("k", [2, 3, 4])
def test_torch_color_match_equals_numpy_within_one_level(k):
    """The device colour match (run here on CPU tensors) is the numpy one within 1 level."""
    src = _clip(3, 40, 56)
    big = _upscaled(src, k, cast=-20, seed=k)
    want = color_match(src, big)
    got = color_match_t(torch.from_numpy(src), torch.from_numpy(big)).numpy()
    assert got.shape == want.shape and got.dtype == np.uint8
    assert int(np.abs(got.astype(np.int16) - want).max()) <= 1
    one = color_match_t(torch.from_numpy(src[:1]), torch.from_numpy(big)).numpy()   # one reference for all
    assert int(np.abs(one.astype(np.int16) - color_match(src[0], big)).max()) <= 1


def test_torch_color_match_rejects_bad_inputs():
    """Wrong dtype, frame counts and a reference too small to blur are named."""
    src = torch.from_numpy(_clip(2, 40, 56))
    with pytest.raises(ValueError, match="uint8"):
        color_match_t(src.float(), src)
    with pytest.raises(ValueError, match="reference has 2 frames but frames has 3"):
        color_match_t(src, torch.from_numpy(_clip(3, 40, 56)))
    with pytest.raises(ValueError, match="too small"):
        color_match_t(src[:, :8, :8], src)


@pytest.mark.parametrize("size", [(256, 256), (300, 200), (333, 129)])
def test_scene_stats_on_tensors_equal_the_cpu_ones(size):
    """Histogram scores and mean differences from `pair_stats` equal scene_score / absdiff, so cuts
    and static pairs come out the same (whole-factor and fractional thumbnail ratios)."""
    w, h = size
    img = _photo()
    other = _photo("coffee.jpg")
    frames = np.stack([cv2.resize(x, (w, h), interpolation=cv2.INTER_AREA)
                       for x in (img, img, img[20:], other, img[::-1])])
    stats = pair_stats(frames, [0, 1, 2, 3], "cpu", batch=2)     # batches split the pairs
    for i in range(4):
        s, mad = stats[i]
        assert s == pytest.approx(scene_score(frames[i], frames[i + 1]), abs=2e-3)
        assert mad == pytest.approx(float(cv2.absdiff(frames[i], frames[i + 1]).mean()), abs=1e-9)
    assert stats[0][1] == 0.0 and stats[2][0] > 0.35               # a copy, then a cut
    h2 = frame_hists_t(torch.from_numpy(frames))
    assert torch.allclose(h2.sum(1), torch.ones(len(frames), dtype=torch.float64))
    with pytest.raises(ValueError, match="only shrinks"):     # classify keeps such frames on the CPU
        pair_stats(frames[:, :100], [0], "cpu")


def test_classify_finds_the_same_cuts_and_static_pairs():
    """Interpolate.classify (CPU, histograms once a frame) and the tensor stats agree."""
    img, other = _photo(), _photo("coffee.jpg")
    frames = np.stack([cv2.resize(x, (160, 128)) for x in (img, img, img[4:], other, img)])
    st = Interpolate(factor=2, model="dis")
    pos = st.positions(len(frames), 8.0)
    pairs, cuts, static = st.classify(frames, pos)
    stats = pair_stats(frames, pairs, "cpu")
    assert cuts == [i for i in pairs if stats[i][0] > st.scene_threshold] == [2, 3]
    assert static == [0]


@pytest.fixture
def table(tmp_path, monkeypatch):
    """Point postfx.calibration at a temporary table; returns a writer."""
    path = tmp_path / "cal.json"
    monkeypatch.setattr(calibration, "TABLE", path)
    calibration._load.cache_clear()

    def write(**over) -> Path:
        path.write_text(json.dumps({**calibration.DEFAULTS, **over}))
        calibration._load.cache_clear()
        return path
    yield write
    calibration._load.cache_clear()


def test_committed_calibration_table_is_valid():
    """bench/results/post_calibration.json holds every key, and the ledger reads it."""
    d = json.loads(calibration.TABLE.read_text())
    t = calibration.check_table(d)
    assert t["order_cuda"]["order"] in calibration.ORDERS and t["order_cuda"]["reason"]
    assert set(calibration.DEFAULTS) <= set(d)


def test_calibration_drives_the_cuda_estimates(table):
    """Interpolate's CUDA seconds are new frames × MP × the table's rate; bad tables fall back."""
    from studio.clip import ClipSpec
    spec = ClipSpec(frames=11, fps=24.0, width=1000, height=500)
    st = Interpolate(factor=2, model="rife")
    table(rife_cuda_s_per_mp=0.01)
    assert st.estimate(spec, "cuda")["seconds"] == pytest.approx(10 * 0.5 * 0.01, abs=1e-3)
    table(rife_cuda_s_per_mp=0.1)
    assert st.estimate(spec, "cuda")["seconds"] == pytest.approx(10 * 0.5 * 0.1, abs=1e-3)
    table(rife_cuda_s_per_mp=-1)                       # unusable: the defaults, not a negative time
    assert st.estimate(spec, "cuda")["seconds"] == pytest.approx(10 * 0.5 * 0.0031, abs=1e-3)
    with pytest.raises(ValueError, match="order_cuda"):
        calibration.check_table({"order_cuda": {"order": "sideways", "reason": "x"}})


@pytest.mark.parametrize("order,names", [("upscale-carry", ["interpolate-upscaled"]),
                                         ("interpolate-first", ["interpolate", "upscale"])])
def test_cuda_auto_order_comes_from_the_table_with_its_reason(table, order, names):
    """build_stages on CUDA takes the measured order; the ledger note carries the table's reason."""
    from postfx.upscale.runner import find_weights
    from studio.pipeline import build_stages, post_settings
    from studio.post_order import order_notes
    if find_weights("animevideov3") is None:
        pytest.skip("no animevideov3 weights (python -m studio models fetch realesrgan)")
    table(order_cuda={"order": order, "reason": f"measured: {order} won by 0.42 s", "measured": None})
    req = post_settings({"interpolate": 2, "upscale": 2, "upscaler": "animevideov3"})
    stages = build_stages(req, device="cuda")
    assert [s.name for s in stages] == names
    notes = order_notes(req, stages, "cuda")
    assert notes == [f"order auto on CUDA = {order}: measured: {order} won by 0.42 s"]
    pinned = post_settings({"interpolate": 2, "upscale": 2, "upscaler": "animevideov3",
                            "order": "interpolate-first"})
    assert order_notes(pinned, build_stages(pinned, device="cuda"), "cuda") == []   # nothing chosen


def test_ledger_text_shows_the_order_note(table):
    """plan_post's ledger lists the note under the table (here: the CPU's reason)."""
    from postfx.upscale.runner import find_weights
    from studio.clip import ClipSpec
    from studio.pipeline import plan_post
    if find_weights("animevideov3") is None:
        pytest.skip("no animevideov3 weights")
    led = plan_post(ClipSpec(5, 8.0, 64, 48), {"interpolate": 2, "upscale": 2, "upscaler": "animevideov3"},
                    "out.mp4", device="cpu")
    assert led.notes and "order auto on CPU = upscale-carry" in led.to_text()
    assert led.to_dict()["notes"] == led.notes


@pytest.mark.gpu
def test_cuda_chain_equals_the_cpu_maths():
    """On CUDA: the upscale stage's on-device colour match equals the numpy one on the same net
    output (within 1 level), and classify's GPU stats give the CPU's cuts."""
    from postfx.upscale import Upscale
    from postfx.upscale.runner import find_weights
    from studio.clip import Clip
    from studio.context import ModelCache, RunContext
    if find_weights("animevideov3") is None:
        pytest.skip("no animevideov3 weights")
    src = _clip(5, 96, 128)
    ctx = RunContext(device="cuda", cache=ModelCache())
    stage = Upscale(scale=2, model="animevideov3", color_match=True, backend="torch")
    got = stage.apply(Clip(src, 8.0), ctx)
    raw = stage._upscaler(ctx).run(src, 2)        # the same cached runner, no colour match
    want = color_match(src, raw)                  # today's host colour match of that output
    assert got.frames.shape == want.shape
    assert int(np.abs(got.frames.astype(np.int16) - want).max()) <= 1
    img, other = _photo(), _photo("coffee.jpg")
    frames = np.stack([cv2.resize(x, (320, 180)) for x in (img, img, img[4:], other)])
    st = Interpolate(factor=2, model="dis")
    pos = st.positions(len(frames), 8.0)
    assert st.classify(frames, pos, "cuda") == st.classify(frames, pos, "cpu")


@pytest.mark.gpu
def test_cuda_runners_keep_their_pinned_buffers_between_runs():
    """A second run reuses the first run's pinned pipe and gives the same frames (±1: another batch
    size may pick other fp16 kernels)."""
    from postfx.rife.interpolator import RifeInterpolator
    from postfx.rife.weights import WEIGHT_ID
    from studio.weights import find
    if find(WEIGHT_ID) is None:
        pytest.skip("no RIFE weights")
    src = _clip(6, 96, 128)
    r = RifeInterpolator.from_weights(device="cuda")
    jobs = [(i, 0.5) for i in range(5)]
    a = r.run(src, jobs)
    pipes = dict(r._pipes._pipes)
    b = r.run(src, jobs[1:4])                    # fewer pairs: the same buffers still fit
    assert len(pipes) == 1 and dict(r._pipes._pipes) == pipes
    assert all(int(np.abs(x.astype(np.int16) - y).max()) <= 1 for x, y in zip(a[1:4], b, strict=True))
