"""`RifeInterpolator`: runs our IFNet on uint8 frames (padding, batching, fp16 + channels_last on CUDA)."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..cuda_io import HostPipe, PipeCache
from . import default_batch
from .ifnet import VALID_SCALES, IFNet, pad_multiple

log = logging.getLogger(__name__)

Job = tuple[int, float]
"""(i, t): the frame at time t in (0, 1) between frames[i] and frames[i + 1]."""


def check_jobs(jobs: Sequence[tuple[int, float]], n_frames: int) -> None:
    """Each job (i, t) names a frame pair inside `n_frames` and a timestep strictly inside (0, 1)."""
    for i, t in jobs:
        if not 0 <= i < n_frames - 1:
            raise ValueError(f"job pair index {i} is outside 0..{n_frames - 2}")
        if not 0.0 < t < 1.0:
            raise ValueError(f"timestep {t!r} is not inside (0, 1)")


def _check_frame(name: str, a: np.ndarray) -> None:
    if not isinstance(a, np.ndarray) or a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"{name} must be a uint8 H×W×3 array, got shape={getattr(a, 'shape', None)} "
                         f"dtype={getattr(a, 'dtype', None)}")


class RifeInterpolator:
    """Makes in-between frames with RIFE 4.25 at any timestep in (0, 1).

    On CUDA the net runs in float16 with channels_last tensors and several pairs per forward;
    on CPU in float32, channels_last.  Frames are zero-padded (right/bottom) to the model's
    multiple and cropped back.  Each source frame's features are computed once, however many
    pairs and timesteps use it.  On CUDA conv channels are zero-padded to multiples of 8
    (`pad_channels`, same results).
    """

    def __init__(self, net: IFNet, device: str = "cpu", scale: float = 1.0, batch: int | None = None,
                 half: bool | None = None, channels_last: bool | None = None, multiple: int | None = None,
                 compile: bool = False, pad_channels: bool | None = None, fused: bool | None = None) -> None:
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
        # channels_last on CPU too: 512² pair 9.7 s -> 6.1 s on 2 cores, same fp32 results
        self.channels_last = True if channels_last is None else channels_last
        self.multiple = multiple or need
        self.dtype = torch.float16 if self.half else torch.float32
        net = copy.deepcopy(net)  # moved, cast and maybe padded below: keep the caller's net as it is
        if cuda if pad_channels is None else pad_channels:
            net.pad_for_tensor_cores()
        net = net.to(self.device, self.dtype)
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.net = net.eval().requires_grad_(False)
        self._forward: Callable = self.net
        self._features: Callable = self.net.features
        self.compiled = compile
        if cuda:
            torch.backends.cudnn.benchmark = True
        self._pipes = PipeCache()   # pinned transfer buffers kept between runs (CUDA)
        self.fused = self._want_fused(fused, cuda)
        self._fnet = None
        self._convs = None
        if self.fused:
            from .fused import FusedIFNet
            self._fnet = FusedIFNet(self.net)
            self._features = self._fnet.features
        if compile:
            if self.fused:  # the Triton glue stays as it is; each block's convs become one graph
                self._convs = torch.compile(self._fnet.block_convs, dynamic=False)
            else:
                self._forward = torch.compile(self.net, dynamic=False)
            self._features = torch.compile(self._features, dynamic=False)

    def _want_fused(self, fused: bool | None, cuda: bool) -> bool:
        """Whether to run the Triton-fused path (default: on CUDA when triton and the scale allow)."""
        from .fused import available, supports
        ok = self.net.padded and available() and supports(self.scale)
        if fused and not ok:
            raise ValueError(f"fused=True needs padded channels, triton and a flow scale ≤ 1 "
                             f"(padded={self.net.padded}, triton={available()}, scale={self.scale})")
        return bool(ok and cuda) if fused is None else bool(fused)

    @classmethod
    def from_weights(cls, path: Path | None = None, device: str = "cpu", **kw) -> RifeInterpolator:
        """Load RIFE 4.25 weights (default: the fetched file; WeightsError if missing/corrupt)."""
        from .weights import load_model
        return cls(load_model(path), device=device, **kw)

    # -- tensors in and out ------------------------------------------------------------------
    def _to_net(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 N×H×W×3 on the device -> padded N×3×H'×W' in 0..1 (net dtype and layout)."""
        h, w = x.shape[1:3]
        x = x.permute(0, 3, 1, 2).to(self.dtype) / 255.0
        m = self.multiple
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        mf = torch.channels_last if self.channels_last else torch.contiguous_format
        return x.contiguous(memory_format=mf)

    def _step(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """uint8 N×h×w×3 frames at `t` between feature maps `x0` and `x1` (from `_features`)."""
        if self._fnet is not None:
            return self._fnet.forward_uint8(x0, x1, t, h, w, self.scale, convs=self._convs)
        return self._to_uint8(self._forward(x0, x1, t, self.scale), h, w)

    @staticmethod
    def _to_uint8(y: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """N×3×H'×W' in 0..1 -> cropped, rounded uint8 N×H×W×3 (same device)."""
        y = (y[:, :, :h, :w].clamp(0, 1) * 255.0).round_().to(torch.uint8)
        return y.permute(0, 2, 3, 1).contiguous()
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
            on_batch: Callable[[list[Job]], None] | None = None,
            check: Callable[[], None] | None = None) -> list[np.ndarray]:
        """One uint8 frame per job (i, t), in job order; `on_batch(jobs_done)` after each forward.
        `check()` raises to cancel; on the CPU it is also called while a forward runs.

        Jobs should be sorted by i (features of frames no longer needed are dropped as it goes).
        On CUDA, uploads and downloads go through pinned buffers on a side stream, overlapping
        the next batch's compute.
        """
        if not jobs:
            return []
        h, w = frames[0].shape[:2]
        check_jobs(jobs, len(frames))
        bsz = self.batch or default_batch(self.device.type, h, w)
        # a batch uploads its pairs' frames: bsz + 1 when its pairs are consecutive, up to 2 * bsz
        # where static pairs or scene cuts leave gaps between them
        most = max(len({i for i, _ in jobs[s:s + bsz]} | {i + 1 for i, _ in jobs[s:s + bsz]})
                   for s in range(0, len(jobs), bsz))
        if self.device.type != "cuda":
            return self._run(frames, jobs, bsz, h, w, _CpuIO(self.device), on_batch, check)
        # pinned buffers sized for the worst batch (2 * bsz frames), so one kept pipe fits every run
        with self._pipes.get(self.device, (max(most, 2 * bsz), h, w, 3), (bsz, h, w, 3)) as io:
            return self._run(frames, jobs, bsz, h, w, io, on_batch, check)

    def _run(self, frames: Sequence[np.ndarray], jobs: Sequence[Job], bsz: int, h: int, w: int,
             io: _CpuIO | HostPipe, on_batch: Callable[[list[Job]], None] | None,
             check: Callable[[], None] | None = None) -> list[np.ndarray]:
        """The batch loop of `run` (arguments checked there)."""
        feats: dict[int, torch.Tensor] = {}
        out: list = []  # arrays, or futures of arrays (CUDA copies finish on worker threads)
        step = self._step
        if self.device.type != "cuda":   # a CPU forward takes seconds at large sizes: cancel inside it
            from ..cancel import interruptible
            step = interruptible(self._step, check)
        pending = None
        # all timesteps go up once: a per-batch host->device copy would stall the queue
        ts = torch.tensor([t for _, t in jobs], dtype=self.dtype).to(self.device)
        for start in range(0, len(jobs), bsz):
            chunk = list(jobs[start:start + bsz])
            need = sorted({i for i, _ in chunk} | {i + 1 for i, _ in chunk})
            for k in [k for k in feats if k not in need]:
                del feats[k]
            new = [k for k in need if k not in feats]
            if new:
                fx = self._features(self._to_net(io.upload([frames[k] for k in new])))
                for j, k in enumerate(new):
                    feats[k] = fx[j:j + 1]
            run_chunk = chunk
            if self.compiled and len(chunk) < bsz:  # keep one static shape for the compiled graph
                run_chunk = chunk + [chunk[-1]] * (bsz - len(chunk))
            x0 = torch.cat([feats[i] for i, _ in run_chunk])
            x1 = torch.cat([feats[i + 1] for i, _ in run_chunk])
            t = ts[start:start + len(chunk)]
            if len(run_chunk) > len(chunk):
                t = torch.cat((t, t[-1:].expand(len(run_chunk) - len(chunk))))
            handle = io.download(step(x0, x1, t, h, w)[:len(chunk)])
            if pending is not None:
                out.extend(io.finish(pending[0]))
                if on_batch is not None:
                    on_batch(pending[1])
            pending = (handle, chunk)
        out.extend(io.finish(pending[0]))
        if on_batch is not None:
            on_batch(pending[1])
        return [o.result() if isinstance(o, Future) else o for o in out]


class _CpuIO:
    """Plain transfers (CPU device)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def upload(self, frames: list[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.stack(frames)).to(self.device)

    def download(self, y: torch.Tensor) -> torch.Tensor:
        return y

    def finish(self, handle: torch.Tensor) -> list[np.ndarray]:
        return list(handle.cpu().numpy())

    def close(self) -> None:
        pass
