"""The `StartOn` stage: make a continued clip begin on exactly the frame it continues from.

Continuing a clip feeds its last frame (at the final, upscaled size) back as the next input.  The
engine starts on it (`anchor_start`), but at the base size; interpolation keeps that frame and the
upscaler then redraws it, so the seam differs from the previous clip by the upscaler's own error
(mean ~5 of 255 for animevideov3 ×2).  `StartOn` measures that residual, start image minus frame 0,
and adds it back to the first frames with a smooth fade (weight 1 on frame 0, 0 after `fade`
seconds): frame 0 is then the start image itself and the correction eases out while the camera
eases into its move.  A start image of another size (nothing to correct against) leaves the clip
as it is, and says so in the log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from postfx import register_stage
from studio.clip import Clip, ClipSpec
from studio.context import RunContext


def fade_weights(n: int, fps: float, fade: float) -> np.ndarray:
    """Per-frame weights of the residual: 1 at frame 0, smoothstep down to 0 at `fade` seconds."""
    m = max(1, round(fade * fps))
    t = np.clip(np.arange(n) / m, 0.0, 1.0)
    return 1.0 - t * t * (3.0 - 2.0 * t)


@register_stage
@dataclass(frozen=True)
class StartOn:
    """Start the clip on exactly `image` (same size), fading the correction out over `fade` seconds."""

    name: ClassVar[str] = "start_on"
    image: str = ""
    fade: float = 0.5

    def __post_init__(self) -> None:
        if not self.image:
            raise ValueError("start_on image='' must name the start frame's file")
        if not 0.0 < self.fade <= 10.0:
            raise ValueError(f"start_on fade={self.fade!r} must be in (0, 10] seconds")

    def describe(self) -> str:
        """A human label for the ledger."""
        return f"start on the input frame (residual faded over {self.fade:g} s)"

    def plan(self, spec: ClipSpec) -> ClipSpec:
        """Same frames, fps and size."""
        return spec

    def estimate(self, spec: ClipSpec, device: str) -> dict[str, float]:
        """A few float passes over the first `fade` seconds of frames."""
        n = min(spec.frames, max(1, round(self.fade * spec.fps)))
        px = n * spec.width * spec.height
        return {"seconds": round(px / 5e7, 3), "memory_mb": round(spec.width * spec.height * 12 / 1e6, 1)}

    def apply(self, clip: Clip, ctx: RunContext) -> Clip:
        """Add (start − frame 0) × fade weight to the first frames; unchanged if the sizes differ."""
        from PIL import Image
        ctx.step("start_on", 0, 1)
        with Image.open(self.image) as im:
            start = np.asarray(im.convert("RGB"))
        frames = clip.frames
        if start.shape != frames.shape[1:]:
            ctx.log.info("start_on: start frame is %d×%d, the clip %d×%d; left as it is",
                         start.shape[1], start.shape[0], frames.shape[2], frames.shape[1])
            ctx.step("start_on", 1, 1)
            return clip
        weights = fade_weights(len(frames), clip.fps, self.fade)
        residual = start.astype(np.float32) - frames[0].astype(np.float32)
        out = frames.copy()
        for i in np.flatnonzero(weights > 0):
            out[i] = np.clip(frames[i] + weights[i] * residual + 0.5, 0, 255).astype(np.uint8)
        ctx.log.info("start_on: seam residual mean %.2f of 255, faded over %d frame(s)",
                     float(np.abs(residual).mean()), int((weights > 0).sum()))
        ctx.step("start_on", 1, 1)
        return clip.replace(frames=out)


def start_on_for(req: Any, upscale: Any) -> list[StartOn]:
    """[StartOn(req.image)] for a continuation (`anchor_start`) that is upscaled, else []."""
    if upscale is None or not (req.extra or {}).get("anchor_start") or not req.image:
        return []
    return [StartOn(image=str(req.image))]


__all__ = ["StartOn", "fade_weights", "start_on_for"]
