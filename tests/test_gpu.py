"""CUDA paths (skipped without a GPU; CI never has one — run on the device machine)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from imagemath import psnr

from studio.clip import Clip
from studio.context import RunContext

pytestmark = pytest.mark.gpu
DATA = Path(__file__).resolve().parent / "data"


def _photo(h=96, w=128) -> np.ndarray:
    import cv2
    return cv2.imread(str(DATA / "coffee.jpg"))[:h, :w, ::-1].copy()


def test_upscale_fp16_cuda_matches_cpu_fp32():
    from postfx.upscale import Upscale
    st = Upscale(scale=2, model="animevideov3", color_match=False).resolved()
    if "fallback" in st.describe():
        pytest.skip("no Real-ESRGAN weights (python -m studio models fetch realesrgan)")
    clip = Clip(np.stack([_photo(), _photo()[::-1].copy()]), 8.0)
    gpu = st.apply(clip, RunContext(device="cuda"))
    cpu = st.apply(clip, RunContext(device="cpu"))
    assert gpu.frames.shape == (2, 192, 256, 3)
    assert psnr(gpu.frames, cpu.frames) >= 38.0


def test_upscaler_pipelined_batches_match_cpu():
    """Several batches through the pinned-buffer pipeline (last one short), ×4 and ×2, in order."""
    from postfx.upscale.runner import Upscaler, find_weights, load_net
    if find_weights("animevideov3") is None:
        pytest.skip("no Real-ESRGAN weights (python -m studio models fetch realesrgan)")
    base = _photo(48, 64)
    frames = np.stack([np.roll(base, 7 * k, axis=1) for k in range(5)])
    gpu = Upscaler(load_net("animevideov3", "cuda"), batch=2)
    cpu = Upscaler(load_net("animevideov3", "cpu"))
    for s in (4, 2):
        done = []
        g = gpu.run(frames, s, on_batch=lambda d, t, done=done: done.append((d, t)))
        c = cpu.run(frames, s)
        assert g.shape == c.shape == (5, 48 * s, 64 * s, 3)
        assert min(psnr(g[k], c[k]) for k in range(5)) >= 38.0
        assert done[-1] == (5, 5) and [d for d, _ in done] == sorted(d for d, _ in done)


def test_rife_stage_on_cuda_ledger_exact_and_close_to_cpu():
    from postfx.interpolate import Interpolate
    st = Interpolate(factor=2).resolved()
    if st.model != "rife":
        pytest.skip("no RIFE weights (python -m studio models fetch rife)")
    p = _photo(128, 192)
    frames = np.stack([p, np.roll(p, 3, axis=1), np.roll(p, 6, axis=1)])
    clip = Clip(frames, 8.0)
    gpu = st.apply(clip, RunContext(device="cuda"))
    assert gpu.spec == st.plan(clip.spec) and gpu.frames.shape[0] == 5
    cpu = st.apply(clip, RunContext(device="cpu"))
    assert psnr(gpu.frames[1], cpu.frames[1]) >= 35.0


def test_tiny_i2vgen_on_cuda_fp16_is_deterministic():
    pytest.importorskip("diffusers")
    import torch
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import tiny_models as tm

    from studio.engines import get_engine
    from studio.request import GenerationRequest
    pipe = tm.tiny_i2vgen().to("cuda", torch.float16)
    eng = get_engine("i2vgen-xl")
    req = GenerationRequest(image="in.png", prompt="zoom in", engine="i2vgen-xl", frames=3, width=32,
                            height=32, steps=2, guidance=3.0, seed=7)
    req.extra = {k: p.default for k, p in eng.extra_spec().items()}
    img = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    a = eng.run(pipe, img, req, RunContext(device="cuda"))
    b = eng.run(pipe, img, req, RunContext(device="cuda"))
    assert a.frames.shape == (3, 32, 32, 3)
    assert np.array_equal(a.frames, b.frames)
