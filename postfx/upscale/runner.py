"""Load a Real-ESRGAN network and run it over uint8 frames: pre-pad, tiles, batches, fp16 on CUDA."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from studio import weights as W

from ..cuda_io import HostPipe, PipeCache
from .archs import ArchInfo, build_model
from .tiling import forward_with_backoff, tile_count
from .weights import MODEL_WEIGHTS

log = logging.getLogger(__name__)

# rough activation bytes per input pixel per frame (fp16 on CUDA), used to pick tile and batch
_BYTES_PER_PX = {"rrdb": 12_000, "compact": 1_200}
_MAX_BATCH = {"rrdb": 8, "compact": 32}
_CPU_TILE = {"rrdb": 192, "compact": 512}
PostFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(source frames, upscaled frames) uint8 NHWC on the device -> final uint8 frames (same shape)."""


def find_weights(model: str) -> Path | None:
    """The weight file for a model name ('animevideov3', 'x4plus', 'x4plus-anime'), or None."""
    if model not in MODEL_WEIGHTS:
        raise ValueError(f"unknown Real-ESRGAN model {model!r} (known: {', '.join(MODEL_WEIGHTS)})")
    for wid in MODEL_WEIGHTS[model]:
        if (p := W.find(wid)) is not None:
            return p
    return None


def require_weights(model: str) -> Path:
    """The weight file for `model`, or WeightsError naming the fetch command."""
    p = find_weights(model)
    if p is None:
        W.require(MODEL_WEIGHTS[model][0])  # raises WeightsError with the exact command
    assert p is not None
    return p


@dataclass
class LoadedNet:
    """A network ready to run: module, detected architecture, source file, device and dtype."""

    net: nn.Module
    info: ArchInfo
    name: str
    path: Path
    device: torch.device
    dtype: torch.dtype


def load_net(model: str, device: str = "cpu", path: Path | None = None) -> LoadedNet:
    """Load `model`'s weights (or `path`) onto `device`: fp16 on CUDA, fp32 elsewhere; channels_last
    on both (on 2 CPU cores it ran animevideov3 at 512² in 3.6 s instead of 5.6 s, same fp32 math).

    Missing, corrupt or foreign weight files raise WeightsError saying what to do.
    """
    path = path or require_weights(model)
    state = W.load_state_dict(path)
    try:
        net, info = build_model(state)
    except (ValueError, RuntimeError, KeyError) as e:
        raise W.WeightsError(f"weight file {path} does not hold a Real-ESRGAN network ({e}); "
                             f"delete it and run `python -m studio models fetch realesrgan`") from None
    dev = torch.device(device)
    dtype = torch.float16 if dev.type == "cuda" else torch.float32
    net = net.to(dev, dtype).to(memory_format=torch.channels_last)
    log.info("loaded %s (%s) from %s on %s/%s", model, info.label(), path, dev, dtype)
    return LoadedNet(net, info, model, Path(path), dev, dtype)


class Upscaler:
    """Runs a `LoadedNet` over frames.  `forward` may be replaced (torch.compile, tests)."""

    def __init__(self, loaded: LoadedNet, tile: int = 0, batch: int = 0, pre_pad: int = 10,
                 compile: bool | None = None) -> None:
        if tile and tile < 32:
            raise ValueError(f"tile={tile!r} must be 0 (auto) or at least 32 px")
        if batch < 0 or pre_pad < 0:
            raise ValueError(f"batch={batch!r} and pre_pad={pre_pad!r} must be >= 0")
        self.loaded = loaded
        self.forward: Callable[[torch.Tensor], torch.Tensor] = loaded.net
        # optional: the ×4 net followed by the 2×2 area downscale, run as one (ncnn does this)
        self.forward_x2: Callable[[torch.Tensor], torch.Tensor] | None = None
        self.tile, self.batch, self.pre_pad = tile, batch, pre_pad
        self.scale = loaded.info.scale
        self.align = {4: 1, 2: 2, 1: 4}[self.scale] if loaded.info.arch == "rrdb" else 1
        self.overlap = loaded.info.context_px
        self.min_tile = 32
        # torch.compile on CUDA: None = auto (the Compact net: ~4 s to compile, 2× faster on an
        # H100; RRDBNet takes ~70 s to compile for 1.6×, so only when asked)
        self.compile = compile
        self._compile_checked = False
        self._pipes = PipeCache()   # pinned transfer buffers kept between runs (CUDA)

    def _maybe_compile(self) -> bool:
        """Swap `forward` for a torch.compile'd net once (CUDA only); True when compiled."""
        if self._compile_checked:
            return self.forward is not self.loaded.net
        self._compile_checked = True
        want = self.compile if self.compile is not None else self.loaded.info.arch == "compact"
        if not want or self.loaded.device.type != "cuda" or self.forward is not self.loaded.net:
            return False
        eager = self.loaded.net
        compiled = torch.compile(eager)

        def forward(x: torch.Tensor) -> torch.Tensor:
            try:
                return compiled(x)
            except torch.cuda.OutOfMemoryError:
                raise
            except Exception as e:  # noqa: BLE001 - a compiler failure must not fail the upscale
                log.warning("torch.compile failed (%s: %s); running eagerly", type(e).__name__, e)
                self.forward = eager
                return eager(x)

        self.forward = forward
        return True

    # -- choosing tile and batch ------------------------------------------------------------
    def plan(self, h: int, w: int) -> tuple[int, int]:
        """(tile, batch) for frames of h×w: the user's values, else from free memory/device."""
        arch = self.loaded.info.arch
        dev = self.loaded.device
        if dev.type != "cuda":
            tile = self.tile or (0 if max(h, w) <= _CPU_TILE[arch] else _CPU_TILE[arch])
            return tile, self.batch or 1
        free, _total = torch.cuda.mem_get_info(dev)
        budget = 0.6 * free
        per_frame = (h + 2 * self.pre_pad) * (w + 2 * self.pre_pad) * _BYTES_PER_PX[arch]
        if self.tile:
            tile = self.tile
            per_frame = min(per_frame, (tile + 2 * self.overlap) ** 2 * _BYTES_PER_PX[arch])
        elif per_frame <= budget:
            tile = 0
        else:
            tile = max(64, int(math.sqrt(budget / _BYTES_PER_PX[arch])) // 64 * 64)
            per_frame = (tile + 2 * self.overlap) ** 2 * _BYTES_PER_PX[arch]
        batch = self.batch or int(max(1, min(_MAX_BATCH[arch], budget // max(per_frame, 1))))
        return tile, batch

    def tiles_per_frame(self, h: int, w: int) -> int:
        """Tiles one h×w frame is cut into under `plan` (1 when untiled)."""
        tile, _ = self.plan(h, w)
        pad = min(self.pre_pad, h - 1, w - 1)
        ph, pw = h + 2 * pad, w + 2 * pad
        return tile_count(ph + (-ph) % self.align, pw + (-pw) % self.align, tile, self.align)

    @property
    def backend(self) -> str:
        """What runs the network: e.g. 'torch CPU', 'torch CUDA', or the ncnn forward's label."""
        label = getattr(self.forward, "label", None)
        if isinstance(label, str):
            return label
        return f"torch {self.loaded.device.type.upper()}"

    def _batches(self, frames: np.ndarray, out: np.ndarray, out_scale: int, batch: int, tile: int,
                 fixed: bool, pipe: HostPipe | None, on_batch: Callable[[int, int], None] | None,
                 on_tile: Callable[[float, int], None] | None = None,
                 check: Callable[[], None] | None = None, post: PostFn | None = None) -> int:
        """The batch loop of `run`: fills `out`, returns the tile size it ended with.

        With a `pipe` (CUDA), uploads, downloads and host copies overlap the next batch's compute.
        """
        t, h, w, _ = frames.shape
        dev, dtype = self.loaded.device, self.loaded.dtype
        pending = None
        futs = []
        for i in range(0, t, batch):
            part = frames[i:i + batch]
            k = len(part)
            if fixed and k < batch and t > batch:
                part = np.concatenate([part, np.repeat(part[-1:], batch - k, 0)])
            if pipe is not None:
                chunk = pipe.upload(part)
            else:
                chunk = torch.from_numpy(np.ascontiguousarray(part)).to(dev)
            x = chunk.permute(0, 3, 1, 2).to(dtype).div_(255.0)
            cb = None
            if on_tile is not None:
                def cb(j: int, n_tiles: int, i: int = i, k: int = k) -> None:
                    on_tile(i + k * j / n_tiles, t)
            half = self.forward_x2 is not None and out_scale * 2 == self.scale
            y, tile = self.upscale_tensor(x, tile, cb, half, check)
            y = y[:k]
            if out_scale * 2 == self.scale and not half:   # exact INTER_AREA for a factor of 2
                y = F.avg_pool2d(y, 2)
            q = y.clamp_(0, 1).mul_(255.0).round_().to(torch.uint8).permute(0, 2, 3, 1).contiguous()
            if post is not None:   # e.g. colour match, on the device, before the download
                if q.shape[1] != h * out_scale:
                    raise ValueError(f"post needs the net's ×4 or ×2 output, not ×{out_scale}")
                q = post(chunk[:k], q)
            if pipe is not None:
                handle = pipe.download(q)
                if pending is not None:
                    futs += pipe.finish(pending[0], out[pending[1]:pending[1] + pending[2]])
                    if on_batch is not None:
                        on_batch(pending[1] + pending[2], t)
                pending = (handle, i, k)
                continue
            if q.shape[1] == h * out_scale:
                torch.from_numpy(out[i:i + k]).copy_(q)    # straight into the result, no extra copy
            else:
                out[i:i + k] = [cv2.resize(f, (w * out_scale, h * out_scale), interpolation=cv2.INTER_AREA)
                                for f in q.cpu().numpy()]
            if on_batch is not None:
                on_batch(min(i + batch, t), t)
        if pending is not None:
            futs += pipe.finish(pending[0], out[pending[1]:pending[1] + pending[2]])
            for f in futs:
                f.result()
            if on_batch is not None:
                on_batch(t, t)
        return tile

    # -- tensors --------------------------------------------------------------------------
    @torch.inference_mode()
    def upscale_tensor(self, x: torch.Tensor, tile: int, on_tile: Callable[[int, int], None] | None = None,
                       half: bool = False, check: Callable[[], None] | None = None
                       ) -> tuple[torch.Tensor, int]:
        """N×3×H×W float in [0, 1] on the net's device -> (N×3×H·s×W·s, tile used).

        `on_tile(k, total)` runs after each tile (see `tiling.tiled_forward`); `half` runs
        `forward_x2` (s is then half the net's scale); `check()` raises to cancel inside a CPU tile."""
        _, _, h, w = x.shape
        pad = min(self.pre_pad, h - 1, w - 1)
        mh, mw = (-(h + 2 * pad)) % self.align, (-(w + 2 * pad)) % self.align
        if pad or mh or mw:
            x = F.pad(x, (pad, pad + mw, pad, pad + mh), mode="reflect")
        x = x.contiguous(memory_format=torch.channels_last)
        fn, s = (self.forward_x2, self.scale // 2) if half and self.forward_x2 else (self.forward, self.scale)
        if self.loaded.device.type != "cuda":   # a CPU tile takes seconds: cancel may land inside it
            from ..cancel import interruptible
            fn = interruptible(fn, check)
        y, tile = forward_with_backoff(fn, x, s, tile, self.overlap, self.min_tile, self.align, on_tile)
        return y[:, :, pad * s:(pad + h) * s, pad * s:(pad + w) * s], tile

    @torch.inference_mode()
    def run(self, frames: np.ndarray, out_scale: int | None = None,
            on_batch: Callable[[int, int], None] | None = None,
            on_tile: Callable[[float, int], None] | None = None,
            check: Callable[[], None] | None = None, post: PostFn | None = None) -> np.ndarray:
        """Upscale uint8 T×H×W×3 frames to ×out_scale (≤ the net's; smaller ones area-downscale).

        `on_batch(done, total)` is called after each batch and `on_tile(frames_done, total)`
        (fractional) after each tile; the stage reports progress and honours cancel there.
        `check()` raises to cancel; on the CPU it is also called while a tile runs.
        `post(sources, upscaled)` (uint8 N×H×W×3 and N×H·s×W·s×3 tensors on the net's device)
        returns the batch's final uint8 frames before they leave the device (×4 and ×2 only).
        """
        out_scale = out_scale or self.scale
        if not 1 <= out_scale <= self.scale:
            raise ValueError(f"out_scale={out_scale!r} must be between 1 and the network's ×{self.scale}")
        t, h, w, _ = frames.shape
        planned, batch = self.plan(h, w)
        tile = planned
        dev = self.loaded.device
        fixed = self._maybe_compile()   # compiled: keep every batch the same shape (no recompiles)
        out = np.empty((t, h * out_scale, w * out_scale, 3), np.uint8)
        if dev.type == "cuda" and (out_scale == self.scale or 2 * out_scale == self.scale):
            with self._pipes.get(dev, (batch, h, w, 3), (batch, h * out_scale, w * out_scale, 3)) as pipe:
                tile = self._batches(frames, out, out_scale, batch, tile, fixed, pipe, on_batch, on_tile,
                                     check, post)
        else:
            tile = self._batches(frames, out, out_scale, batch, tile, fixed, None, on_batch, on_tile, check,
                                 post)
        if tile != planned:   # an OOM back-off happened: later runs start from the smaller tile
            self.tile = tile
        return out
