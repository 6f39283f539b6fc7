"""The `Upscale` stage: Real-ESRGAN (animevideov3, x4plus, x4plus-anime) or Lanczos.

All three networks are ×4; ×2 and ×3 area-downscale the ×4 result.  With `color_match` the
upscaled frames' low frequencies are pulled back to the source clip (`postfx.color`).
`resolved(device)` makes `model="auto"` and `backend="auto"` concrete and swaps a model whose
weights are missing for Lanczos, labelled as a fallback; without that call, missing weights raise
WeightsError naming `python -m studio models fetch realesrgan`.

Backends: `torch` (CUDA, and the fallback), `ncnn` (the ncnn runtime on the CPU) and
`ncnn-vulkan` (ncnn on a Vulkan GPU, chosen when there is one and no CUDA).  All run the same
weights through the same pre-pad, tiling, area downscale, colour match, progress and cancel.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from postfx import register_stage
from studio.clip import Clip, ClipSpec
from studio.context import RunContext

log = logging.getLogger(__name__)

MODELS = ("auto", "animevideov3", "x4plus", "x4plus-anime", "lanczos")
BACKENDS = ("auto", "torch", "ncnn", "ncnn-vulkan")

# input pixels per second.  CPU: 2 cores of an AMD EPYC (bench/results/e2e_cpu.json and
# upscale_look_cpu.json); CUDA: an H100 (fp16); Vulkan: compact measured on an H200 through Vulkan,
# float32 (bench/results/upscale_vulkan.json: 0.092 s a 512² frame), RRDBNet scaled by its ~30× the
# FLOPs; a laptop's integrated GPU will be several times slower.  The CUDA rates used are
# postfx.calibration's table (bench/results/post_calibration.json), which bench_post_app refits.
_RATE = {("compact", "torch-cpu"): 1.35e5, ("rrdb", "torch-cpu"): 3.0e3, ("rrdb6", "torch-cpu"): 8.0e3,
         ("compact", "ncnn"): 2.6e5, ("rrdb", "ncnn"): 6.0e3, ("rrdb6", "ncnn"): 1.6e4,
         ("compact", "ncnn-vulkan"): 2.8e6, ("rrdb", "ncnn-vulkan"): 9.0e4, ("rrdb6", "ncnn-vulkan"): 3.5e5,
         ("compact", "cuda"): 1.5e8, ("rrdb", "cuda"): 1.0e7, ("rrdb6", "cuda"): 3.5e7}
_KIND = {"animevideov3": "compact", "x4plus": "rrdb", "x4plus-anime": "rrdb6"}
# what `model="auto"` picks and why (bench/results/upscale_look_cpu.json measures the look)
AUTO_GPU, AUTO_CPU = "x4plus", "animevideov3"
AUTO_CPU_WHY = ("auto on CPU: an anime model, sharp edges but flattened fine photo texture (0.92× "
                "Lanczos's vs x4plus 1.37× on the test photos); x4plus costs ~20× its CPU time")


def _is_cuda(device: str | None) -> bool:
    return str(device or "").startswith("cuda")


def pick_backend(device: str) -> str:
    """The backend `auto` means on `device`: torch on CUDA; else ncnn (Vulkan GPU if one) or torch."""
    from .ncnn_backend import ncnn_available, vulkan_gpu
    if _is_cuda(device) or not ncnn_available():
        return "torch"
    import torch
    if not torch.cuda.is_available() and vulkan_gpu() is not None:
        return "ncnn-vulkan"
    return "ncnn"


@register_stage
@dataclass(frozen=True)
class Upscale:
    """Upscale every frame ×`scale` with a Real-ESRGAN `model` (or Lanczos); `tile` 0 = auto."""

    name: ClassVar[str] = "upscale"
    scale: int = 2
    model: str = "animevideov3"
    color_match: bool = True
    tile: int = 0
    fallback_from: str | None = None   # set by resolved(): the model whose weights were missing
    backend: str = "auto"
    auto_model: bool = False           # set by resolved(): `model` was picked by "auto"

    def __post_init__(self) -> None:
        if isinstance(self.scale, bool) or self.scale not in (2, 3, 4):
            raise ValueError(f"upscale scale={self.scale!r} must be 2, 3 or 4")
        if self.model not in MODELS:
            raise ValueError(f"upscale model={self.model!r} is not one of {', '.join(MODELS)}")
        if self.tile != 0 and self.tile < 32:
            raise ValueError(f"upscale tile={self.tile!r} must be 0 (auto) or at least 32 px")
        if self.backend not in BACKENDS:
            raise ValueError(f"upscale backend={self.backend!r} is not one of {', '.join(BACKENDS)}")

    # -- ledger ---------------------------------------------------------------------------
    def resolved(self, device: str | None = None) -> Upscale:
        """Concrete model and backend for `device` (default: CUDA if usable, else CPU), or Lanczos
        (labelled as a fallback) when the model's weights are missing."""
        st = self._concrete(device, model_only=True)
        if st.model == "lanczos":
            return st
        from .runner import find_weights
        if find_weights(st.model) is None:
            return dataclasses.replace(st, model="lanczos", fallback_from=st.model)
        return st._concrete(device)

    def _concrete(self, device: str | None, model_only: bool = False) -> Upscale:
        """`auto` model (and, unless `model_only`, backend) made concrete; weights not checked."""
        if device is None and (self.model == "auto" or self.backend == "auto"):
            import torch
            device = "cuda" if torch.cuda.is_available() else "cpu"
        st = self
        if st.model == "auto":
            st = dataclasses.replace(st, model=AUTO_GPU if _is_cuda(device) else AUTO_CPU, auto_model=True)
        if not model_only and st.model != "lanczos" and st.backend == "auto":
            st = dataclasses.replace(st, backend=pick_backend(str(device)))
        return st

    def describe(self) -> str:
        """A human label, e.g. 'Real-ESRGAN animevideov3 ×2 (×4 net, area-downscaled)'."""
        if self.model == "lanczos":
            if self.fallback_from:
                return (f"Lanczos ×{self.scale} (fallback: no Real-ESRGAN weights for {self.fallback_from}; "
                        f"run `python -m studio models fetch realesrgan`)")
            return f"Lanczos ×{self.scale}"
        how = "native ×4" if self.scale == 4 else "×4 net, area-downscaled"
        cm = ", colour-matched" if self.color_match else ""
        on = {"torch": "torch", "ncnn": "ncnn CPU", "ncnn-vulkan": "ncnn Vulkan GPU"}.get(self.backend)
        label = f"Real-ESRGAN {self.model} ×{self.scale} ({how}{cm}" + (f"; {on})" if on else ")")
        if self.auto_model:
            label += f" [{AUTO_CPU_WHY}]" if self.model == AUTO_CPU else " [auto on GPU: the photo model]"
        return label

    def plan(self, spec: ClipSpec) -> ClipSpec:
        """Same frames and fps; width and height × scale."""
        return spec.with_(width=spec.width * self.scale, height=spec.height * self.scale)

    def estimate(self, spec: ClipSpec, device: str) -> dict[str, float]:
        """Rough seconds and peak memory (MB) from measured throughputs."""
        px = spec.width * spec.height
        out_mb = spec.frames * px * self.scale ** 2 * 3 / 1e6
        if self.model == "lanczos":
            return {"seconds": spec.frames * px * self.scale ** 2 / 4e7, "memory_mb": out_mb}
        if self.model == "auto" or (self.backend == "auto" and self.model != "lanczos"):
            return self._concrete(device).estimate(spec, device)
        kind = _KIND[self.model]
        dev = "cuda" if _is_cuda(device) else "cpu"
        where = {"ncnn": "ncnn", "ncnn-vulkan": "ncnn-vulkan"}.get(self.backend, "cuda" if dev == "cuda"
                                                                   else "torch-cpu")
        out_mp = spec.frames * px * self.scale ** 2 / 1e6
        if where == "cuda":   # the calibration table (bench/results/post_calibration.json)
            from postfx.calibration import table
            cal = table()
            seconds = spec.frames * px / cal["upscale_cuda_px_per_s"][kind] + cal["upscale_cuda_overhead_s"]
            seconds += out_mp * cal["color_cuda_s_per_mp"] if self.color_match else 0.0
        else:
            seconds = spec.frames * px / _RATE[(kind, where)] + 0.5
            if self.color_match:
                from postfx.calibration import table
                seconds += out_mp * table()["color_cpu_s_per_mp"]
        per_px = {"compact": 1.2e3, "rrdb": 1.2e4, "rrdb6": 1.2e4}[kind] * (1 if dev == "cuda" else 2)
        work_mb = min(px, 512 * 512) * per_px / 1e6
        return {"seconds": round(seconds, 2), "memory_mb": round(out_mb + work_mb, 1)}

    # -- work -----------------------------------------------------------------------------
    def apply(self, clip: Clip, ctx: RunContext) -> Clip:
        """Upscale the clip; progress per batch via ctx.step('upscale', done, n), which also cancels."""
        if self.model == "auto" or (self.backend == "auto" and self.model != "lanczos"):
            return self._concrete(ctx.device).apply(clip, ctx)
        frames = clip.frames
        n = len(frames)
        backend = "lanczos"
        if self.model == "lanczos":
            ctx.step("upscale", 0, n)
            out = _lanczos(frames, self.scale, ctx)
        else:
            up = self._upscaler(ctx)
            backend = up.backend
            ctx.step("upscale", 0, n)

            def on_tile(done: float, total: int) -> None:
                # progress in frames (257 frames count "of 257", not "of 2313" tiles); called per
                # tile, so a cancel set meanwhile stops the next tile
                ctx.step("upscale", min(int(done), n), n)
                ctx.check_cancel()

            post = self._device_color_match(up, frames, ctx)
            out = up.run(frames, self.scale, on_tile=on_tile, check=ctx.check_cancel, post=post)
            if self.color_match and post is None:
                from postfx.color import color_match
                out = color_match(frames, out, on_frame=lambda i, n: ctx.step("color", i, n))
        ctx.log.info("upscale: %s -> %d×%d", self.describe(), out.shape[2], out.shape[1])
        meta = dict(clip.meta)
        meta["upscale"] = {"label": self.describe(), "backend": backend, "model": self.model}
        return clip.replace(frames=out, meta=meta)

    def _device_color_match(self, up, frames: np.ndarray, ctx: RunContext):
        """The colour match as the runner's on-device `post` step (CUDA, ×2/×4), else None.

        The same maths as `postfx.color.color_match` (within 1 level), run by
        `postfx.tensor_ops.color_match_t` on each batch before it leaves the GPU."""
        if not self.color_match or up.loaded.device.type != "cuda" or self.scale not in (2, 4) \
                or up.scale != 4:
            return None
        from postfx.tensor_ops import blur_fits, color_match_t
        n, h, w = frames.shape[:3]
        if not blur_fits(h, w, 3.0):
            return None
        done = [0]

        def post(src, out):
            y = color_match_t(src, out)
            done[0] += len(src)
            ctx.step("color", min(done[0], n), n)
            return y
        return post

    def _upscaler(self, ctx: RunContext):
        from .runner import Upscaler, load_net, require_weights
        path = require_weights(self.model)
        on_torch = self.backend == "torch"
        dev = str(ctx.device) if on_torch else "cpu"
        key = ("realesrgan", self.model, dev, str(path), path.stat().st_mtime_ns)
        ctx.cache.evict(lambda k: isinstance(k, tuple) and k[:3] == key[:3] and k[:5] != key)
        loaded = ctx.cache.get(key, lambda: load_net(self.model, dev, path))
        # the runner is cached too: it keeps a backed-off tile and its compiled forward
        return ctx.cache.get(key + ("runner", self.tile, self.backend),
                             lambda: self._runner(Upscaler(loaded, tile=self.tile)))

    def _runner(self, up):
        """`up` with its forward swapped for ncnn's when the backend is ncnn / ncnn-vulkan."""
        if self.backend == "torch":
            return up
        from .ncnn_backend import NcnnForward, vulkan_gpu
        gpu = None
        if self.backend == "ncnn-vulkan":
            found = vulkan_gpu()
            if found is None:
                log.warning("upscale: no Vulkan GPU found; ncnn runs on the CPU")
            gpu = found[0] if found else None
        state, info = up.loaded.net.state_dict(), up.loaded.info
        up.forward = NcnnForward(state, info, gpu=gpu)
        if info.scale % 2 == 0:   # ×2 from the ×4 net: the area downscale runs inside ncnn
            up.forward_x2 = NcnnForward(state, info, gpu=gpu, pool2=True)
        return up


def _lanczos(frames: np.ndarray, scale: int, ctx: RunContext) -> np.ndarray:
    import cv2
    t, h, w, _ = frames.shape
    out = np.empty((t, h * scale, w * scale, 3), np.uint8)
    for i, f in enumerate(frames):
        out[i] = cv2.resize(f, (w * scale, h * scale), interpolation=cv2.INTER_LANCZOS4)
        ctx.step("upscale", i + 1, t)
    return out


__all__ = ["AUTO_CPU", "AUTO_GPU", "BACKENDS", "MODELS", "Upscale", "pick_backend"]
