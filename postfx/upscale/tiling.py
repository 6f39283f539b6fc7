"""Tiled inference with overlap, exact stitching, and tile halving on CUDA out-of-memory.

Each tile is run with `overlap` pixels of real context on every side (less at the image edge,
where the untiled network sees its own zero padding too) and only its core is kept, so tiles meet
without seams or blending.  When the network's receptive field fits inside the overlap (the
Compact net: 18 px) the result equals the untiled one up to float rounding.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

log = logging.getLogger(__name__)

Forward = Callable[[torch.Tensor], torch.Tensor]

MIN_TILE = 32


class UpscaleOOMError(RuntimeError):
    """The GPU ran out of memory even at the smallest tile."""


def tile_count(h: int, w: int, tile: int, align: int = 1) -> int:
    """How many tiles `tiled_forward` runs for an h×w input (1 when untiled)."""
    if tile == 0 or (h <= tile and w <= tile):
        return 1
    tile = -(-tile // align) * align
    return -(-h // tile) * -(-w // tile)


def tiled_forward(fn: Forward, x: torch.Tensor, scale: int, tile: int, overlap: int,
                  align: int = 1, on_tile: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Run `fn` (N×C×h×w -> N×C'×h·s×w·s) over `x` in tiles of `tile` px (0 = whole image).

    Tile starts are multiples of `tile`; `overlap` and `tile` are rounded up to `align` so that
    networks that fold pixels (pixel-unshuffle) see aligned crops.  `on_tile(k, total)` is
    called after each tile (k from 1); it may raise to stop between tiles (cancel).
    """
    if tile < 0 or overlap < 0:
        raise ValueError(f"tile={tile!r} and overlap={overlap!r} must be >= 0")
    n, _, h, w = x.shape
    total = tile_count(h, w, tile, align)
    if total == 1:
        y = fn(x)
        if on_tile is not None:
            on_tile(1, 1)
        return y
    tile = -(-tile // align) * align
    overlap = -(-overlap // align) * align
    out: torch.Tensor | None = None
    done = 0
    for y0 in range(0, h, tile):
        y1 = min(y0 + tile, h)
        for x0 in range(0, w, tile):
            x1 = min(x0 + tile, w)
            py0, py1 = max(y0 - overlap, 0), min(y1 + overlap, h)
            px0, px1 = max(x0 - overlap, 0), min(x1 + overlap, w)
            o = fn(x[:, :, py0:py1, px0:px1])
            if out is None:
                out = o.new_empty((n, o.shape[1], h * scale, w * scale))
            oy, ox = (y0 - py0) * scale, (x0 - px0) * scale
            out[:, :, y0 * scale:y1 * scale, x0 * scale:x1 * scale] = \
                o[:, :, oy:oy + (y1 - y0) * scale, ox:ox + (x1 - x0) * scale]
            done += 1
            if on_tile is not None:
                on_tile(done, total)
    assert out is not None
    return out


def _free_cuda() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def forward_with_backoff(fn: Forward, x: torch.Tensor, scale: int, tile: int, overlap: int,
                         min_tile: int = MIN_TILE, align: int = 1,
                         on_tile: Callable[[int, int], None] | None = None) -> tuple[torch.Tensor, int]:
    """`tiled_forward`, halving the tile on torch.cuda.OutOfMemoryError down to `min_tile`.

    Returns (output, tile actually used) so callers keep the smaller tile for later frames.
    Raises UpscaleOOMError, saying what to do, once even `min_tile` does not fit.
    """
    h, w = x.shape[-2:]
    while True:
        try:
            return tiled_forward(fn, x, scale, tile, overlap, align, on_tile), tile
        except torch.cuda.OutOfMemoryError:
            pass  # handled below, once the exception (and the tensors its frames hold) is gone
        _free_cuda()
        current = min(tile, max(h, w)) if tile else max(h, w)
        smaller = (current // 2) // align * align
        if smaller < min_tile:
            raise UpscaleOOMError(
                f"out of GPU memory upscaling {x.shape[0]} frame(s) of {w}×{h} even with "
                f"{current} px tiles (the floor is {min_tile} px); free GPU memory (close other "
                f"jobs or unload models) or run the upscale on the CPU")
        log.warning("CUDA out of memory at tile %s px; retrying with %s px tiles", tile or "full", smaller)
        tile = smaller
