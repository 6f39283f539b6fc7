"""The denoising loop's helpers for the diffusers engines: progress and cancel per step
(`StepReporter`), classifier-free guidance cut after N steps (`cfg_truncation`), the input image
fitted to the request's size and the pipelines' frames as uint8."""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..context import RunContext


@contextmanager
def cfg_truncation(model: Any, cfg_steps: int):
    """After `cfg_steps` calls, run the batched-CFG denoiser `model` on the conditional half only.

    The pipelines batch [unconditional, conditional] (batch 2 for one video) and mix the halves as
    uncond + g·(cond − uncond); returning the conditional prediction for both halves makes that
    mix equal to the conditional prediction, as with guidance 1.  Every batch-2 tensor argument is
    cut to its second half.  Yields the list of batch sizes the model was run at.
    """
    import torch
    orig = model.forward
    sizes: list[int] = []

    def half(v: Any) -> Any:
        return v[1:] if torch.is_tensor(v) and v.dim() > 0 and v.shape[0] == 2 else v

    def twice(v: Any) -> Any:
        return torch.cat((v, v)) if torch.is_tensor(v) and v.dim() > 0 and v.shape[0] == 1 else v

    def forward(*a: Any, **k: Any) -> Any:
        sample = a[0] if a else k.get("sample")
        if len(sizes) < cfg_steps or sample is None or sample.shape[0] != 2:
            sizes.append(int(sample.shape[0]) if sample is not None else -1)
            return orig(*a, **k)
        sizes.append(1)
        out = orig(*[half(v) for v in a], **{n: half(v) for n, v in k.items()})
        if isinstance(out, tuple):
            return tuple(twice(v) for v in out)
        out.sample = twice(out.sample)
        return out
    model.forward = forward
    try:
        yield sizes
    finally:
        del model.forward  # the instance attribute; the class method shows again


def to_uint8_frames(frames: Any) -> np.ndarray:
    """Pipeline output (float T×H×W×3 in [0,1], or a list of PIL images) -> uint8 T×H×W×3."""
    if isinstance(frames, list):
        return np.stack([np.asarray(f.convert("RGB")) for f in frames]).astype(np.uint8)
    arr = np.asarray(frames, dtype=np.float32)
    if arr.ndim == 5:
        arr = arr[0]
    return (np.clip(arr, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def fit_image(image: np.ndarray, width: int, height: int) -> Any:
    """Centre-crop to the target aspect ratio and resize (a PIL image for the pipelines)."""
    from PIL import Image
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 H×W×3, got shape={image.shape} dtype={image.dtype}")
    h, w = image.shape[:2]
    target = width / height
    if w / h > target:
        nw = max(1, round(h * target))
        x0 = (w - nw) // 2
        image = image[:, x0:x0 + nw]
    else:
        nh = max(1, round(w / target))
        y0 = (h - nh) // 2
        image = image[y0:y0 + nh]
    return Image.fromarray(np.ascontiguousarray(image)).resize((width, height), Image.Resampling.LANCZOS)


class StepReporter:
    """Progress and cancel per denoising step: `callback_on_step_end`, or a scheduler hook.

    `ctx.step` raises `Cancelled` when the cancel flag is set; with a callback the pipeline's
    `_interrupt` is also set so the loop stops at the step boundary.
    """

    def __init__(self, ctx: RunContext, total: int, previewer: Any = None) -> None:
        self.ctx, self.total, self.i, self.previewer = ctx, total, 0, previewer
        self.step_log: Any = None  # a speed tier's StepLog, closed at each step

    def callback(self, pipe: Any, i: int, t: Any, kw: dict) -> dict:
        """A `callback_on_step_end` that reports step i+1 of total (and shows a latent preview)."""
        self.i = i + 1
        if self.step_log is not None:
            self.step_log.end_step()
        if self.previewer is not None and kw.get("latents") is not None:
            self.previewer(self.i, kw["latents"])
        if self.ctx.cancel.is_set():
            pipe._interrupt = True
        self.ctx.step("denoise", self.i, self.total)
        return {}

    @contextmanager
    def scheduler_hook(self, pipe: Any):
        """Wrap `pipe.scheduler.step` for pipelines without callbacks (I2VGen-XL)."""
        sched = pipe.scheduler
        orig = sched.step

        def step(*a: Any, **k: Any) -> Any:
            out = orig(*a, **k)
            self.i += 1
            self.ctx.step("denoise", min(self.i, self.total), self.total)
            return out
        sched.step = step
        try:
            yield
        finally:
            del sched.step  # the instance attribute; the class method shows again
