"""The `Upscale` stage: Real-ESRGAN (animevideov3, x4plus, x4plus-anime) or Lanczos.

All three networks are ×4; ×2 and ×3 area-downscale the ×4 result.  With `color_match` the
upscaled frames' low frequencies are pulled back to the source clip (`postfx.color`).
`resolved()` swaps a model whose weights are missing for Lanczos, labelled as a fallback; without
that call, missing weights raise WeightsError naming `python -m studio models fetch realesrgan`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from postfx import register_stage
from studio.clip import Clip, ClipSpec
from studio.context import RunContext

MODELS = ("animevideov3", "x4plus", "x4plus-anime", "lanczos")

# input pixels per second, rough: CPU measured on 2 cores (fp32; compact from bench/results/e2e_cpu.json,
# 31 frames of 512² in 60.0 s), CUDA on an H100 (fp16)
_RATE = {("compact", "cpu"): 1.35e5, ("rrdb", "cpu"): 3.0e3, ("rrdb6", "cpu"): 8.0e3,
         ("compact", "cuda"): 1.5e8, ("rrdb", "cuda"): 1.0e7, ("rrdb6", "cuda"): 3.5e7}
_KIND = {"animevideov3": "compact", "x4plus": "rrdb", "x4plus-anime": "rrdb6"}


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

    def __post_init__(self) -> None:
        if isinstance(self.scale, bool) or self.scale not in (2, 3, 4):
            raise ValueError(f"upscale scale={self.scale!r} must be 2, 3 or 4")
        if self.model not in MODELS:
            raise ValueError(f"upscale model={self.model!r} is not one of {', '.join(MODELS)}")
        if self.tile != 0 and self.tile < 32:
            raise ValueError(f"upscale tile={self.tile!r} must be 0 (auto) or at least 32 px")

    # -- ledger ---------------------------------------------------------------------------
    def resolved(self) -> Upscale:
        """This stage, or Lanczos (labelled as a fallback) when the model's weights are missing."""
        if self.model == "lanczos":
            return self
        from .runner import find_weights
        if find_weights(self.model) is None:
            return dataclasses.replace(self, model="lanczos", fallback_from=self.model)
        return self

    def describe(self) -> str:
        """A human label, e.g. 'Real-ESRGAN animevideov3 ×2 (×4 net, area-downscaled)'."""
        if self.model == "lanczos":
            if self.fallback_from:
                return (f"Lanczos ×{self.scale} (fallback: no Real-ESRGAN weights for {self.fallback_from}; "
                        f"run `python -m studio models fetch realesrgan`)")
            return f"Lanczos ×{self.scale}"
        how = "native ×4" if self.scale == 4 else "×4 net, area-downscaled"
        cm = ", colour-matched" if self.color_match else ""
        return f"Real-ESRGAN {self.model} ×{self.scale} ({how}{cm})"

    def plan(self, spec: ClipSpec) -> ClipSpec:
        """Same frames and fps; width and height × scale."""
        return spec.with_(width=spec.width * self.scale, height=spec.height * self.scale)

    def estimate(self, spec: ClipSpec, device: str) -> dict[str, float]:
        """Rough seconds and peak memory (MB) from measured throughputs."""
        px = spec.width * spec.height
        out_mb = spec.frames * px * self.scale ** 2 * 3 / 1e6
        if self.model == "lanczos":
            return {"seconds": spec.frames * px * self.scale ** 2 / 4e7, "memory_mb": out_mb}
        kind = _KIND[self.model]
        dev = "cuda" if str(device).startswith("cuda") else "cpu"
        seconds = spec.frames * px / _RATE[(kind, dev)] + (2.0 if dev == "cuda" else 0.5)
        per_px = {"compact": 1.2e3, "rrdb": 1.2e4, "rrdb6": 1.2e4}[kind] * (1 if dev == "cuda" else 2)
        work_mb = min(px, 512 * 512) * per_px / 1e6
        return {"seconds": round(seconds, 2), "memory_mb": round(out_mb + work_mb, 1)}

    # -- work -----------------------------------------------------------------------------
    def apply(self, clip: Clip, ctx: RunContext) -> Clip:
        """Upscale the clip; progress per batch via ctx.step('upscale', done, n), which also cancels."""
        frames = clip.frames
        n = len(frames)
        ctx.step("upscale", 0, n)
        if self.model == "lanczos":
            out = _lanczos(frames, self.scale, ctx)
        else:
            up = self._upscaler(ctx)
            out = up.run(frames, self.scale, on_batch=lambda done, total: ctx.step("upscale", done, total))
            if self.color_match:
                from postfx.color import color_match
                out = color_match(frames, out)
        ctx.log.info("upscale: %s -> %d×%d", self.describe(), out.shape[2], out.shape[1])
        return clip.replace(frames=out)

    def _upscaler(self, ctx: RunContext):
        from .runner import Upscaler, load_net, require_weights
        path = require_weights(self.model)
        key = ("realesrgan", self.model, str(ctx.device), str(path), path.stat().st_mtime_ns)
        ctx.cache.evict(lambda k: isinstance(k, tuple) and k[:3] == key[:3] and k[:5] != key)
        loaded = ctx.cache.get(key, lambda: load_net(self.model, ctx.device, path))
        # the runner is cached too: it keeps a backed-off tile and its compiled forward
        return ctx.cache.get(key + ("runner", self.tile), lambda: Upscaler(loaded, tile=self.tile))


def _lanczos(frames: np.ndarray, scale: int, ctx: RunContext) -> np.ndarray:
    import cv2
    t, h, w, _ = frames.shape
    out = np.empty((t, h * scale, w * scale, 3), np.uint8)
    for i, f in enumerate(frames):
        out[i] = cv2.resize(f, (w * scale, h * scale), interpolation=cv2.INTER_LANCZOS4)
        ctx.step("upscale", i + 1, t)
    return out


__all__ = ["MODELS", "Upscale"]
