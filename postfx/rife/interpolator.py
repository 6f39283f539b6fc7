"""`RifeInterpolator`: runs our IFNet on uint8 frames (padding, batching, fp16 + channels_last on CUDA)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .ifnet import VALID_SCALES, IFNet, pad_multiple

log = logging.getLogger(__name__)

Job = tuple[int, float]
"""(i, t): the frame at time t in (0, 1) between frames[i] and frames[i + 1]."""


def _check_frame(name: str, a: np.ndarray) -> None:
    if not isinstance(a, np.ndarray) or a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"{name} must be a uint8 H×W×3 array, got shape={getattr(a, 'shape', None)} "
                         f"dtype={getattr(a, 'dtype', None)}")


def default_batch(device: str, height: int, width: int) -> int:
    """Pairs per forward: about 16 megapixels of frames on CUDA (8 at 1080p), one on CPU."""
    if not device.startswith("cuda"):
        return 1
    return int(max(1, min(16, round(16e6 / (height * width)))))


class RifeInterpolator:
    """Makes in-between frames with RIFE 4.25 at any timestep in (0, 1).

    On CUDA the net runs in float16 with channels_last tensors and several pairs per forward;
    on CPU in float32.  Frames are zero-padded (right/bottom) to the model's multiple and cropped
    back.  Each source frame's features are computed once, however many pairs and timesteps
    use it.
    """

    def __init__(self, net: IFNet, device: str = "cpu", scale: float = 1.0, batch: int | None = None,
                 half: bool | None = None, channels_last: bool | None = None, multiple: int | None = None,
                 compile: bool = False) -> None:
        if scale not in VALID_SCALES:
            raise ValueError(f"scale={scale!r} is not one of {VALID_SCALES}")
        if batch is not None and batch < 1:
            raise ValueError(f"batch={batch!r} must be >= 1")
        need = pad_multiple(scale)
        if multiple is not None and (multiple < need or multiple % need):
            raise ValueError(f"multiple={multiple!r} must be a multiple of {need} for scale {scale}")
        cuda = str(device).startswith("cuda")
        self.device = torch.device(device)
        self.scale = scale
        self.batch = batch
        self.half = cuda if half is None else half
        self.channels_last = cuda if channels_last is None else channels_last
        self.multiple = multiple or need
        self.dtype = torch.float16 if self.half else torch.float32
        net = net.to(self.device, self.dtype)
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.net = net.eval().requires_grad_(False)
        self._forward: Callable = self.net
        self._features: Callable = self.net.features
        self.compiled = compile
        if cuda:
            torch.backends.cudnn.benchmark = True
        if compile:
            self._forward = torch.compile(self.net, dynamic=False)
            self._features = torch.compile(self.net.features, dynamic=False)

    @classmethod
    def from_weights(cls, path: Path | None = None, device: str = "cpu", **kw) -> RifeInterpolator:
        """Load RIFE 4.25 weights (default: the fetched file; WeightsError if missing/corrupt)."""
        from .weights import load_model
        return cls(load_model(path), device=device, **kw)

    # -- tensors in and out ------------------------------------------------------------------
    def _upload(self, frames: list[np.ndarray]) -> torch.Tensor:
        h, w = frames[0].shape[:2]
        x = torch.from_numpy(np.stack(frames))
        if self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)
        x = x.permute(0, 3, 1, 2).to(self.dtype) / 255.0
        m = self.multiple
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        mf = torch.channels_last if self.channels_last else torch.contiguous_format
        return x.contiguous(memory_format=mf)

    @staticmethod
    def _download(y: torch.Tensor, h: int, w: int) -> list[np.ndarray]:
        y = (y[:, :, :h, :w].float().clamp_(0, 1) * 255.0).round_().to(torch.uint8)
        arr = y.permute(0, 2, 3, 1).contiguous().cpu().numpy()
        return list(arr)

    # -- public API ----------------------------------------------------------------------------
    def interpolate(self, img0: np.ndarray, img1: np.ndarray, timesteps: Sequence[float]) -> list[np.ndarray]:
        """Frames at each of `timesteps` (each in (0, 1)) between uint8 H×W×3 `img0` and `img1`."""
        _check_frame("img0", img0)
        _check_frame("img1", img1)
        if img0.shape != img1.shape:
            raise ValueError(f"img0 {img0.shape} and img1 {img1.shape} differ in size")
        return self.run([img0, img1], [(0, float(t)) for t in timesteps])

    @torch.inference_mode()
    def run(self, frames: Sequence[np.ndarray], jobs: Sequence[Job],
            on_batch: Callable[[list[Job]], None] | None = None) -> list[np.ndarray]:
        """One uint8 frame per job (i, t), in job order; `on_batch(jobs_done)` after each forward.

        Jobs should be sorted by i (features of frames no longer needed are dropped as it goes).
        """
        if not jobs:
            return []
        h, w = frames[0].shape[:2]
        for i, t in jobs:
            if not 0 <= i < len(frames) - 1:
                raise ValueError(f"job pair index {i} is outside 0..{len(frames) - 2}")
            if not 0.0 < t < 1.0:
                raise ValueError(f"timestep {t!r} is not inside (0, 1)")
        bsz = self.batch or default_batch(self.device.type, h, w)
        feats: dict[int, torch.Tensor] = {}
        out: list[np.ndarray] = []
        for start in range(0, len(jobs), bsz):
            chunk = list(jobs[start:start + bsz])
            need = sorted({i for i, _ in chunk} | {i + 1 for i, _ in chunk})
            for k in [k for k in feats if k not in need]:
                del feats[k]
            new = [k for k in need if k not in feats]
            if new:
                fx = self._features(self._upload([frames[k] for k in new]))
                for j, k in enumerate(new):
                    feats[k] = fx[j:j + 1]
            run_chunk = chunk
            if self.compiled and len(chunk) < bsz:  # keep one static shape for the compiled graph
                run_chunk = chunk + [chunk[-1]] * (bsz - len(chunk))
            x0 = torch.cat([feats[i] for i, _ in run_chunk])
            x1 = torch.cat([feats[i + 1] for i, _ in run_chunk])
            t = torch.tensor([t for _, t in run_chunk], device=self.device, dtype=self.dtype)
            y = self._forward(x0, x1, t, self.scale)
            out.extend(self._download(y[:len(chunk)], h, w))
            if on_batch is not None:
                on_batch(chunk)
        return out
