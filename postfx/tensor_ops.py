"""The post chain's pixel maths as torch code that runs wherever the frames are (CUDA or CPU).

Each function reproduces its OpenCV/numpy twin in `postfx.color` / `postfx.interpolate` to float
rounding, so the CPU tests check one against the other (within 1 level of 255):

* `area_resize` — OpenCV's INTER_AREA for any downscale ratio, as two small matrix products
  (each output pixel is the overlap-weighted mean of the source pixels it covers).
* `gaussian_blur` — `cv2.GaussianBlur(x, (0, 0), sigma)` on float32 (kernel size
  round(8·sigma + 1) | 1, BORDER_REFLECT_101), as two 1-D convolutions.
* `color_match_t` — `postfx.color.color_match` on uint8 N×H×W×3 device tensors.  Its blurs run
  at the reference (source) resolution, a quarter of the pixels of a ×2 upscale; only the final
  bilinear upsample and the add touch the full size.
* `frame_hists_t`, `mean_abs_diff_t` — the scene-cut histograms (128×128 thumbnails, 8 levels
  per channel) and the static-pair test of `Interpolate.classify`, a batch of frames at a time.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

THUMB = 128
"""Side of the scene-detection thumbnails (as `postfx.interpolate.scene_score`)."""


def _area_matrix(n_in: int, n_out: int, device: torch.device) -> torch.Tensor:
    """n_out × n_in weights of OpenCV's INTER_AREA along one axis (downscale, n_out <= n_in)."""
    if n_out > n_in:
        raise ValueError(f"area_resize only shrinks: {n_in} -> {n_out} px")
    scale = n_in / n_out
    lo = torch.arange(n_out, dtype=torch.float64) * scale
    hi = lo + scale
    src = torch.arange(n_in, dtype=torch.float64)
    overlap = (torch.minimum(hi[:, None], src[None, :] + 1) - torch.maximum(lo[:, None], src[None, :]))
    return (overlap.clamp_(min=0) / scale).to(device, torch.float32)


def area_resize(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Float N×C×H×W -> N×C×height×width by INTER_AREA weights (no rounding)."""
    h, w = x.shape[-2:]
    if (h, w) == (height, width):
        return x
    if h % height == 0 and w % width == 0:   # whole factors: a plain box mean (same weights, faster)
        return F.avg_pool2d(x, (h // height, w // width))
    ry = _area_matrix(h, height, x.device)
    rx = _area_matrix(w, width, x.device)
    return torch.matmul(torch.matmul(ry, x), rx.T)


def gaussian_kernel(sigma: float, device: torch.device) -> torch.Tensor:
    """OpenCV's float32 Gaussian for `sigma` (size round(8·sigma + 1) | 1), normalised, 1-D."""
    k = int(round(sigma * 8 + 1)) | 1
    r = torch.arange(k, dtype=torch.float64) - (k - 1) / 2
    g = torch.exp(-(r * r) / (2 * sigma * sigma))
    return (g / g.sum()).to(device, torch.float32)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """`cv2.GaussianBlur(x, (0, 0), sigma)` of float N×C×H×W (reflect-101 borders)."""
    g = gaussian_kernel(sigma, x.device)
    pad = len(g) // 2
    n, c, h, w = x.shape
    if min(h, w) <= pad:
        raise ValueError(f"gaussian_blur: a {w}x{h} image is too small for sigma={sigma} (needs > {pad} px)")
    y = x.reshape(n * c, 1, h, w)
    y = F.conv2d(F.pad(y, (pad, pad, 0, 0), mode="reflect"), g.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, pad, pad), mode="reflect"), g.view(1, 1, -1, 1))
    return y.reshape(n, c, h, w)


def blur_fits(height: int, width: int, sigma: float) -> bool:
    """Whether `gaussian_blur` can run on a height×width image (reflect padding needs the room)."""
    return min(height, width) > (int(round(sigma * 8 + 1)) | 1) // 2


def _nchw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2).float()


def _to_levels(x: torch.Tensor) -> torch.Tensor:
    """Round like OpenCV's uint8 INTER_AREA output (halves up: its whole-factor path adds area/2)."""
    return x.add(0.5).floor_().clamp_(0, 255)


@torch.inference_mode()
def color_match_t(reference: torch.Tensor, frames: torch.Tensor, sigma: float = 3.0) -> torch.Tensor:
    """uint8 N×H×W×3 `frames` with their low frequencies pulled to uint8 N×h×w×3 `reference`'s.

    The same maths as `postfx.color.color_match` (blur(ref) − blur(frame brought to h×w), upsampled
    bilinearly and added), done as one blur of the difference (the blur is linear).  `reference`
    may hold one frame for all.  Returns uint8 N×H×W×3 on the frames' device.
    """
    if not sigma > 0:
        raise ValueError(f"sigma={sigma!r} must be > 0")
    if reference.dtype != torch.uint8 or frames.dtype != torch.uint8:
        raise ValueError(f"color_match_t takes uint8 tensors, got {reference.dtype} and {frames.dtype}")
    n, oh, ow, _ = frames.shape
    if reference.shape[0] not in (1, n):
        raise ValueError(f"reference has {reference.shape[0]} frames but frames has {n}")
    h, w = reference.shape[1:3]
    if not blur_fits(h, w, sigma):
        raise ValueError(f"a {w}x{h} reference is too small to blur with sigma={sigma}")
    out = _nchw(frames)
    small = out if (oh, ow) == (h, w) else _to_levels(area_resize(out, h, w))
    delta = gaussian_blur(_nchw(reference.to(frames.device)) - small, sigma)
    if (oh, ow) != (h, w):
        delta = F.interpolate(delta, size=(oh, ow), mode="bilinear", align_corners=False)
    y = out.add_(delta).add_(0.5).clamp_(0, 255).floor_().to(torch.uint8)
    return y.permute(0, 2, 3, 1).contiguous()


@torch.inference_mode()
def frame_hists_t(frames: torch.Tensor) -> torch.Tensor:
    """uint8 N×H×W×3 -> N×512 float64: joint RGB histograms (8 levels a channel) of 128² thumbnails,
    as fractions; `0.5·|h_a − h_b|.sum()` is `postfx.interpolate.scene_score`."""
    thumb = _to_levels(area_resize(_nchw(frames), THUMB, THUMB)).to(torch.int64) >> 5
    idx = (thumb[:, 0] << 6) | (thumb[:, 1] << 3) | thumb[:, 2]
    counts = torch.zeros((frames.shape[0], 512), dtype=torch.float64, device=frames.device)
    counts.scatter_add_(1, idx.reshape(frames.shape[0], -1),
                        torch.ones(idx.shape[0], THUMB * THUMB, dtype=torch.float64, device=frames.device))
    return counts / (THUMB * THUMB)


@torch.inference_mode()
def mean_abs_diff_t(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference (grey levels) of uint8 frames `a` and `b` (N×H×W×3), per frame."""
    d = (a.to(torch.int16) - b.to(torch.int16)).abs_()
    return d.flatten(1).sum(1, dtype=torch.int64).double() / math.prod(a.shape[1:])


@torch.inference_mode()
def pair_stats(frames, pairs: list[int], device: str | torch.device, batch: int = 16
               ) -> dict[int, tuple[float, float]]:
    """{i: (scene score, mean absolute difference)} of each pair (i, i+1) of uint8 T×H×W×3 numpy
    `frames`, computed on `device` `batch` frames at a time (each frame goes up once)."""
    if not pairs:
        return {}
    dev = torch.device(device)
    lo, hi = min(pairs), max(pairs) + 1
    want = set(pairs)
    out: dict[int, tuple[float, float]] = {}
    prev_frame = prev_hist = None
    for a in range(lo, hi + 1, batch):
        b = min(a + batch, hi + 1)
        x = torch.from_numpy(frames[a:b]).to(dev, non_blocking=True)
        hists = frame_hists_t(x)
        if prev_frame is not None:
            x_all, h_all = torch.cat((prev_frame, x)), torch.cat((prev_hist, hists))
            first = a - 1
        else:
            x_all, h_all, first = x, hists, a
        scores = 0.5 * (h_all[:-1] - h_all[1:]).abs().sum(1)
        mads = mean_abs_diff_t(x_all[:-1], x_all[1:])
        for j, (s, m) in enumerate(zip(scores.tolist(), mads.tolist(), strict=True)):
            if first + j in want:
                out[first + j] = (s, m)
        prev_frame, prev_hist = x[-1:], hists[-1:]
    return out


__all__ = ["THUMB", "area_resize", "blur_fits", "color_match_t", "frame_hists_t", "gaussian_blur",
           "gaussian_kernel", "mean_abs_diff_t", "pair_stats"]
