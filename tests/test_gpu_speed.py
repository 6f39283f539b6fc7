"""Speed tiers on CUDA (skipped without a GPU; run on the device machine): previews and progress
add no host<->GPU synchronisation to the denoising loop, compiled exact blocks match eager, fp8
runs on fp8 tensor cores."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("diffusers")
torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)

import tiny_models as tm  # noqa: E402

from studio.context import RunContext  # noqa: E402
from studio.engines import get_engine  # noqa: E402
from studio.request import GenerationRequest  # noqa: E402

pytestmark = pytest.mark.gpu
IMAGE = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)


def _req(steps: int, **extra) -> GenerationRequest:
    eng = get_engine("wan-i2v")
    req = GenerationRequest(image="in.png", prompt="a cat", engine="wan-i2v", frames=5, width=32, height=32,
                            steps=steps, guidance=3.0, seed=0)
    req.extra = {k: p.default for k, p in eng.extra_spec().items()} | extra
    return req


def test_previews_and_progress_do_not_synchronise_the_loop():
    eng = get_engine("wan-i2v")
    pipe = tm.tiny_wan().to("cuda")
    shown: list = []
    syncs: dict = {"n": None, "log": None}
    cm = warnings.catch_warnings(record=True)

    def progress(stage, i, n):
        if stage != "denoise":
            return
        if i == 1:  # the scheduler finds its first index with one sync: count from the end of step 1
            syncs["log"] = cm.__enter__()
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode(1)
        if i == n and syncs["log"] is not None:
            torch.cuda.set_sync_debug_mode(0)
            syncs["n"] = sum(1 for w in syncs["log"] if "synchroniz" in str(w.message))
            cm.__exit__(None, None, None)
    ctx = RunContext(device="cuda", progress=progress, preview=shown.append)
    clip = eng.run(pipe, IMAGE, _req(8, preview_every=1), ctx)
    assert clip.frames.shape == (5, 32, 32, 3)
    assert syncs["n"] == 0, syncs
    assert len(shown) >= 4 and clip.meta["previews"] == len(shown)  # they still arrive (late, not lost)


def test_fp8_tier_runs_on_fp8_tensor_cores_close_to_bf16():
    from studio.speed.fp8 import RowwiseFp8Linear, fp8_unsupported
    why = fp8_unsupported("cuda")
    if why:
        pytest.skip(why)
    torch.manual_seed(0)
    lin = torch.nn.Linear(512, 1024, device="cuda", dtype=torch.bfloat16)
    x = torch.randn(4, 300, 512, device="cuda", dtype=torch.bfloat16)
    ref = lin(x).float()
    out = RowwiseFp8Linear(lin)(x).float()
    rel = ((out - ref).norm() / ref.norm()).item()
    assert out.dtype == torch.float32 and 0 < rel < 0.06, rel
