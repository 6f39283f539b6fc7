"""RIFE 4.25 on CUDA with the memory-bound glue fused into three Triton kernels (`FusedIFNet`).

The convolutions stay cuDNN's; everything between them is ours:

- `block_input`: warps both frames and their features by the current flow, takes the mask,
  features and flow of the previous block, adds the timestep plane, downsamples it all by the
  block's scale and writes the block's (padded) input channels straight into one NHWC buffer.
  For a scale s ≥ 2 only the 4 full-size pixels each output pixel reads are sampled.
- `block_output`: upsamples the block's output (13 channels at 1/s) to full size, adds the flow
  delta (×s) to the running flow (float32, in place) and stores mask and features (float16).
- `final`: warps the two frames by the final flow, blends them with the sigmoid mask and writes
  rounded uint8 RGB, cropped to the caller's size.

Same maths as `IFNet.forward` (bilinear, border padding, align_corners=True warps; bilinear,
align_corners=False resizes) with the flow kept in float32 and the sampling positions computed
in float32; frames and features are stored as float16.  `tests/test_rife_fused.py` compares
it with the eager net.

Needs `triton` (it ships with CUDA builds of torch).  Works for user flow scales ≤ 1, where
every block scale is an integer.  With `TRITON_INTERPRET=1` in the environment before import,
the kernels run on CPU tensors through Triton's interpreter (slow; for tests only).
"""

from __future__ import annotations

import copy
import importlib.util

import torch
import torch.nn.functional as F

from .ifnet import FLOW_SCALES, IFNet

BLOCK = 256
"""Pixels per Triton program."""


def available() -> bool:
    """True when triton can be imported."""
    return importlib.util.find_spec("triton") is not None


def supports(scale: float) -> bool:
    """True when every block scale at user flow scale `scale` is an integer ≥ 1."""
    return all(float(s / scale).is_integer() and s / scale >= 1 for s in FLOW_SCALES)


def _launch(name: str, total: int, *args, block: int = BLOCK, **meta) -> None:
    from . import _fused_kernels as k
    getattr(k, name)[(-(-total // block),)](*args, BLOCK=block, **meta)


def _add_leaky(y: torch.Tensor, x: torch.Tensor, triton_glue: bool) -> torch.Tensor:
    """leaky_relu(y + x, 0.2), in place into y (one Triton pass when the layouts allow)."""
    n = y.numel()
    if (triton_glue and y.stride() == x.stride() and y.dtype == x.dtype and n < 2**31
            and y.is_contiguous(memory_format=torch.channels_last)):
        _launch("add_leaky", n, y, x, n, block=1024)
        return y
    return F.leaky_relu_(y.add_(x), 0.2)


def _folded(conv: torch.nn.Conv2d, beta: torch.Tensor) -> torch.nn.Conv2d:
    """`conv` with the per-channel gain `beta` multiplied into its weights and bias (in float32)."""
    new = copy.deepcopy(conv)
    g = beta.detach().reshape(-1).float()
    with torch.no_grad():
        new.weight.copy_((conv.weight.float() * g.view(-1, 1, 1, 1)).to(conv.weight.dtype))
        new.bias.copy_((conv.bias.float() * g).to(conv.bias.dtype))
    return new


class _FastBlock(torch.nn.Module):
    """One IFBlock's convolutions for the fused path: the first conv permuted to the kernels'
    channel order, each ResConv's gain folded into its conv, and no PixelShuffle (the
    `block_output`/`final` kernels read the transposed conv's output in place)."""

    def __init__(self, block, perm: list[int]) -> None:
        super().__init__()
        self.first = _permuted(block.conv0[0][0], perm)
        self.second = block.conv0[1][0]
        self.res = torch.nn.ModuleList(_folded(r.conv, r.beta) for r in block.convblock)
        self.last = block.lastconv[0]

    def forward(self, x: torch.Tensor, triton_glue: bool = True) -> torch.Tensor:
        """(B, C, h, w) channels_last block input -> the transposed conv's (B, 56, h/2, w/2)."""
        x = F.leaky_relu_(self.first(x), 0.2)
        x = F.leaky_relu_(self.second(x), 0.2)
        for conv in self.res:
            x = _add_leaky(conv(x), x, triton_glue)
        return self.last(x)


# Block-input channel order of the kernels (see _fused_kernels) -> the IFNet's padded order.
_PERM_FIRST = [0, 1, 2, 6, 7, 8, 9, 14, 3, 4, 5, 10, 11, 12, 13, 15]
_PERM_REST = [0, 1, 2, 6, 7, 8, 9, 14, 3, 4, 5, 10, 11, 12, 13, 28,
              24, 25, 26, 27, 15, 16, 17, 18, 19, 20, 21, 22, 23, 29, 30, 31]


def _permuted(conv: torch.nn.Conv2d, perm: list[int]) -> torch.nn.Conv2d:
    """A copy of `conv` whose input channel j is the original's channel perm[j]."""
    new = copy.deepcopy(conv)
    with torch.no_grad():
        new.weight.copy_(conv.weight[:, perm])
    return new


class FusedIFNet(torch.nn.Module):
    """`IFNet` with its glue in Triton kernels: `features` then `forward_uint8`.

    `net` must have `pad_for_tensor_cores()` applied; it is used as it is (dtype, device,
    memory format), normally float16 channels_last on CUDA.  Each block's first conv is copied
    with its input channels permuted to the kernels' order; `net` itself is not changed.
    """

    def __init__(self, net: IFNet) -> None:
        super().__init__()
        if not net.padded:
            raise ValueError("FusedIFNet needs an IFNet with pad_for_tensor_cores() applied")
        self.net = net
        blocks = (net.block0, net.block1, net.block2, net.block3, net.block4)
        self.fast = torch.nn.ModuleList(_FastBlock(b, _PERM_FIRST if k == 0 else _PERM_REST)
                                        for k, b in enumerate(blocks))

    def features(self, img: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) frames in 0..1 -> (B, H, W, 8) float16: RGB, 4 features, a zero channel."""
        f = self.net.encode(img.to(self.net.block0.conv0[0][0].weight.dtype))
        x = torch.cat((img.half(), f.half(), torch.zeros_like(f[:, :1], dtype=torch.float16)), 1)
        return x.permute(0, 2, 3, 1).contiguous()

    @staticmethod
    def block_convs(fast: _FastBlock, x: torch.Tensor) -> torch.Tensor:
        """A block's convolutions in plain torch ops (what `torch.compile` is given to fuse)."""
        return fast(x, triton_glue=False)

    def forward_uint8(self, x0: torch.Tensor, x1: torch.Tensor, timestep: torch.Tensor, h: int, w: int,
                      scale: float = 1.0, convs=None) -> torch.Tensor:
        """uint8 (B, h, w, 3) frames at `timestep` (B values) between feature maps `x0`/`x1`.

        `x0`, `x1`: (B, H, W, 8) float16 from `features`; H, W multiples of `pad_multiple(scale)`.
        `convs(fast_block, x)`: how to run a block's convolutions (default: eagerly, with a
        Triton add+LeakyReLU; pass a compiled `block_convs` to fuse its activations).
        """
        if not supports(scale):
            raise ValueError(f"scale={scale!r} is not supported by the fused kernels (needs ≤ 1)")
        convs = convs or (lambda fast, x: fast(x))
        b, hh, ww, c = x0.shape
        if c != 8 or x1.shape != x0.shape:
            raise ValueError(f"x0/x1 must both be (B, H, W, 8) features, got {tuple(x0.shape)} "
                             f"and {tuple(x1.shape)}")
        dev = x0.device
        x0, x1 = x0.contiguous(), x1.contiguous()
        t = timestep.to(device=dev, dtype=torch.float32).reshape(-1).contiguous()
        if t.shape[0] != b:
            raise ValueError(f"timestep has {t.shape[0]} values for a batch of {b}")
        flow = torch.empty((b, hh, ww, 4), device=dev, dtype=torch.float32)
        mf = torch.empty((b, hh, ww, 16), device=dev, dtype=torch.float16)
        total = b * hh * ww
        wdt = self.fast[0].first.weight.dtype
        last = len(FLOW_SCALES) - 1
        for k, s0 in enumerate(FLOW_SCALES):
            s = int(s0 / scale)
            h2, w2 = hh // s, ww // s
            cin = 16 if k == 0 else 32
            inp = torch.empty((b, h2, w2, cin), device=dev, dtype=torch.float16)
            nsub = 1 if s == 1 else 2
            off = 0 if s == 1 else s // 2 - 1
            _launch("block_input", b * h2 * w2, x0, x1, flow, mf, t, inp, b * h2 * w2, hh, ww, h2, w2,
                    s, off, 1.0 / s, HAS_FLOW=k > 0, NSUB=nsub, C_OUT=cin)
            out = convs(self.fast[k], inp.permute(0, 3, 1, 2).to(wdt))
            sn, sc, sy, sx = out.stride()
            if k == last and s == 1:  # the final kernel reads this output in place
                break
            _launch("block_output", total, out, sn, sc, sy, sx, flow, mf, total, hh, ww,
                    2 * out.shape[2], 2 * out.shape[3], float(s), HAS_PREV=k > 0, UP=s != 1, SHUF=True)
        res = torch.empty((b, h, w, 3), device=dev, dtype=torch.uint8)
        _launch("final", b * h * w, x0, x1, out, sn, sc, sy, sx, flow, mf, res, b * h * w, hh, ww, h, w,
                FROM_SRC=s == 1)
        return res
