"""Step previews: the current latent as an RGB image, through a linear latent->RGB map (no VAE).

ComfyUI's latent2rgb previews multiply each latent pixel's channels by a fixed C×3 matrix.  Here
the matrix is fitted once per loaded pipeline, from its own VAE: a few smooth random colour
images are encoded, normalised the way the pipeline normalises latents, and a ridge least-squares
fit maps latent channels (+ bias) to the images' mean colour over each latent pixel.  That fit is
a few VAE encodes of small images; every preview after that is one small matrix product, so a
preview every few steps costs nothing next to a denoising step.  The preview is the middle latent
frame, scaled to the request's size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

CALIB_SIDE = 256
CALIB_IMAGES = 8


@dataclass(frozen=True)
class LatentRGB:
    """A fitted latent->RGB map: rgb = latent · matrix + bias (rgb in [0, 1])."""

    matrix: np.ndarray   # C×3
    bias: np.ndarray     # 3
    residual: float      # rms error of the fit on its calibration pixels (0..1 scale)

    def image(self, lat: np.ndarray, width: int, height: int) -> np.ndarray:
        """A C×h×w latent -> uint8 height×width×3 (nearest-neighbour scaled)."""
        c, h, w = lat.shape
        rgb = lat.reshape(c, -1).T @ self.matrix + self.bias
        rgb = np.clip(rgb, 0.0, 1.0).reshape(h, w, 3)
        ys = (np.arange(height) * h // height).clip(0, h - 1)
        xs = (np.arange(width) * w // width).clip(0, w - 1)
        return (rgb[ys][:, xs] * 255.0).round().astype(np.uint8)


def _smooth_images(n: int, side: int, seed: int = 0) -> np.ndarray:
    """n smooth random colour fields, n×side×side×3 in [0, 1] (bilinear-upsampled 4×4 grids)."""
    rng = np.random.default_rng(seed)
    grid = rng.random((n, 4, 4, 3))
    t = np.linspace(0, 3, side)
    i0 = np.floor(t).astype(int).clip(0, 2)
    f = (t - i0)[None, :, None, None]
    rows = grid[:, i0] * (1 - f) + grid[:, i0 + 1] * f                       # n×side×4×3
    g = (t - i0)[None, None, :, None]
    return rows[:, :, i0] * (1 - g) + rows[:, :, i0 + 1] * g                  # n×side×side×3


def fit(encode: Any, side: int = CALIB_SIDE, n: int = CALIB_IMAGES, ridge: float = 0.1) -> LatentRGB:
    """Fit the map from `encode(images n×3×side×side in [-1, 1]) -> normalised latents n×C×h×w`."""
    imgs = _smooth_images(n, side)
    lat = np.asarray(encode(imgs.transpose(0, 3, 1, 2) * 2.0 - 1.0), dtype=np.float64)
    _, c, h, w = lat.shape
    # the images' mean colour over each latent pixel's footprint
    fy, fx = side // h, side // w
    target = imgs[:, : h * fy, : w * fx].reshape(n, h, fy, w, fx, 3).mean(axis=(2, 4))  # n×h×w×3
    x = lat.transpose(0, 2, 3, 1).reshape(-1, c)
    y = target.reshape(-1, 3)
    xb = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    reg = ridge * np.eye(c + 1) * max(1.0, float(np.mean(x * x)))
    reg[-1, -1] = 0.0
    sol = np.linalg.solve(xb.T @ xb + reg, xb.T @ y)
    res = float(np.sqrt(np.mean((xb @ sol - y) ** 2)))
    return LatentRGB(sol[:-1].astype(np.float32), sol[-1].astype(np.float32), res)


def middle_frame(latents: Any, layout: str, width: int, height: int, spatial: int) -> np.ndarray:
    """The middle latent frame as C×h×w float32, from the pipeline's latent tensor.

    layout "bcthw" (Wan), "packed" (LTX: B×(T·h·w)×C, patch size 1) or "btchw" (SVD).
    """
    import torch
    lat = latents.detach().to("cpu", torch.float32)
    return middle_frame_tensor(lat, layout, width, height, spatial).numpy()


def middle_frame_tensor(latents: Any, layout: str, width: int, height: int, spatial: int) -> Any:
    """`middle_frame` as a tensor on the latents' own device (no copy to the host)."""
    import torch
    lat = latents.detach()[0].to(torch.float32)
    if layout == "packed":
        h, w = height // spatial, width // spatial
        lat = lat.reshape(-1, h, w, lat.shape[-1]).permute(3, 0, 1, 2)  # C×T×h×w
        layout = "cthw"
    elif layout == "btchw":
        lat = lat.permute(1, 0, 2, 3)
        layout = "cthw"
    else:
        layout = "cthw"
    return lat[:, lat.shape[1] // 2]


class StepPreviewer:
    """Calls `ctx.preview(image)` every `every` steps with the current latent's RGB preview."""

    def __init__(self, ctx: Any, mapping: LatentRGB, layout: str, width: int, height: int, spatial: int,
                 every: int) -> None:
        self.ctx, self.mapping, self.layout = ctx, mapping, layout
        self.width, self.height, self.spatial, self.every = width, height, spatial, max(1, every)
        self.shown = 0

        self._pending: list[tuple[Any, Any]] = []  # (event, pinned host copy) on CUDA

    def __call__(self, step: int, latents: Any) -> None:
        """After denoising step `step` (1-based).

        On CUDA the middle frame is copied to pinned host memory without waiting, and shown at a
        later step once its copy has landed (or by `flush`): a preview never serialises the GPU.
        """
        self._show_landed(wait=False)
        if self.ctx.preview is None or step % self.every:
            return
        lat = middle_frame_tensor(latents, self.layout, self.width, self.height, self.spatial)
        if not lat.is_cuda:
            self._show(lat.numpy())
            return
        import torch
        host = torch.empty(lat.shape, dtype=lat.dtype, pin_memory=True)
        host.copy_(lat, non_blocking=True)
        ev = torch.cuda.Event()
        ev.record()
        self._pending = [(ev, host)]  # only the newest preview matters

    def flush(self) -> None:
        """Show a preview still in flight (after the loop: waiting then costs nothing)."""
        self._show_landed(wait=True)

    def _show_landed(self, wait: bool) -> None:
        if not self._pending:
            return
        ev, host = self._pending[0]
        if wait:
            ev.synchronize()
        elif not ev.query():
            return
        self._pending = []
        self._show(host.numpy())

    def _show(self, lat: np.ndarray) -> None:
        self.ctx.preview(self.mapping.image(lat, self.width, self.height))
        self.shown += 1
