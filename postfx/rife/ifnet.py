"""Our IFNet for RIFE 4.25 (Practical-RIFE layout), state-dict compatible with its `flownet.pkl`.

Layout (learned from the public RIFE 4.25 design): a small feature `Head` (`encode`) turns each
frame into 4 feature channels at full size; five `IFBlock`s (192/128/96/64/32 channels) refine a
bidirectional flow (4 ch), a blend mask (1 ch) and 8 feature channels, coarse to fine at flow
scales 16, 8, 4, 2, 1 (divided by the user's `scale`).  The timestep is an input channel, so any
t in (0, 1) works.  Each block sees the two frames and their features backward-warped by the
current flow.

Differences from the reference implementation (same maths, cheaper):
- features of each frame are computed once and can be shared by every pair that uses the frame;
- each block's inputs are downsampled piece by piece (bilinear resizing is per channel, so this
  equals resizing the concatenation) and the constant timestep plane is made at the small size;
- a frame and its features are warped together, from a float32 copy made once per frame: warps
  sample in float32 even when the convolutions run in float16 (a half-precision sampling grid
  is off by up to ~0.25 px on 1080p frames);
- a block that reads warped frames downsampled by s warps only the 4 pixel sub-grids that the
  bilinear downsampling reads (4/s² of a full warp, same numbers);
- optionally (`pad_for_tensor_cores`, used on CUDA) conv channel counts are zero-padded to
  multiples of 8.
tests/test_rife_reference.py checks all of this against the reference code (~135 dB PSNR).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FLOW_SCALES = (16.0, 8.0, 4.0, 2.0, 1.0)
"""Flow scales of the five blocks at user scale 1.0 (each is divided by the user's scale)."""

VALID_SCALES = (0.25, 0.5, 1.0, 2.0)
"""User flow scales accepted: 0.5 for 4K input, 1.0 for up to 1080p, 2.0 for small frames."""


def pad_multiple(scale: float) -> int:
    """Frame sides must be a multiple of this for flow scale `scale` (coarsest block / 4 / 2 / 2)."""
    return max(int(round(4 * FLOW_SCALES[0] / scale)), 1)


def _act() -> nn.LeakyReLU:
    return nn.LeakyReLU(0.2, inplace=True)


def _conv_act(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), _act())


class Head(nn.Module):
    """Per-frame feature encoder: 3 RGB channels -> 4 feature channels at the same size."""

    def __init__(self) -> None:
        super().__init__()
        self.cnn0 = nn.Conv2d(3, 16, 3, 2, 1)
        self.cnn1 = nn.Conv2d(16, 16, 3, 1, 1)
        self.cnn2 = nn.Conv2d(16, 16, 3, 1, 1)
        self.cnn3 = nn.ConvTranspose2d(16, 4, 4, 2, 1)
        self.relu = _act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features of frames `x` (B, 3, H, W) in 0..1."""
        x = self.relu(self.cnn0(x))
        x = self.relu(self.cnn1(x))
        x = self.relu(self.cnn2(x))
        return self.cnn3(x)


class ResConv(nn.Module):
    """3×3 conv with a learned per-channel gain `beta`, a skip connection and LeakyReLU."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 1, 1)
        self.beta = nn.Parameter(torch.ones((1, c, 1, 1)))
        self.relu = _act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x + beta * conv(x), then LeakyReLU."""
        return self.relu(self.conv(x) * self.beta + x)


class IFBlock(nn.Module):
    """One coarse-to-fine step: inputs at 1/scale -> (flow delta, mask logit, features) at full size."""

    OUT_CHANNELS = 13  # 4 flow + 1 mask + 8 features

    def __init__(self, cin: int, c: int) -> None:
        super().__init__()
        self.conv0 = nn.Sequential(_conv_act(cin, c // 2, 2), _conv_act(c // 2, c, 2))
        self.convblock = nn.Sequential(*[ResConv(c) for _ in range(8)])
        self.lastconv = nn.Sequential(nn.ConvTranspose2d(c, 4 * self.OUT_CHANNELS, 4, 2, 1),
                                      nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`x` is already at 1/scale of the frame; returns flow (×scale), mask logit and features."""
        out = self.lastconv(self.convblock(self.conv0(x)))
        if scale != 1.0:
            out = F.interpolate(out, scale_factor=scale, mode="bilinear", align_corners=False)
        return out[:, :4] * scale, out[:, 4:5], out[:, 5:13]


def _down(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Bilinear resize by 1/scale, exactly as the reference resizes block inputs."""
    if scale == 1.0:
        return x
    return F.interpolate(x, scale_factor=1.0 / scale, mode="bilinear", align_corners=False)


_GRIDS: dict[tuple, torch.Tensor] = {}


def _base_grid(h: int, w: int, device: torch.device) -> torch.Tensor:
    """Normalised sampling grid (1, H, W, 2) in float32 for align_corners=True, cached."""
    compiling = torch.compiler.is_compiling()  # under torch.compile the grid fuses; no cache
    key = (h, w, str(device))
    g = None if compiling else _GRIDS.get(key)
    if g is None:
        xs = torch.linspace(-1.0, 1.0, w, device=device).view(1, w).expand(h, w)
        ys = torch.linspace(-1.0, 1.0, h, device=device).view(h, 1).expand(h, w)
        g = torch.stack((xs, ys), dim=-1).unsqueeze(0)
        if not compiling:
            if len(_GRIDS) > 16:
                _GRIDS.clear()
            _GRIDS[key] = g.contiguous()
    return g


def _sample(x: torch.Tensor, base: torch.Tensor, flow: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """grid_sample of float32 `x` at `base` (normalised grid) + `flow` (pixels of an H×W frame)."""
    f = flow.float()
    fx = f[:, 0] / ((w - 1.0) / 2.0)
    fy = f[:, 1] / ((h - 1.0) / 2.0)
    grid = base + torch.stack((fx, fy), dim=-1)
    return F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border", align_corners=True)


def backward_warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample `x` (B, C, H, W) at pixel + `flow` (B, 2, H, W, in pixels), bilinear, border padding.

    The grid is built and sampled in float32; the result is float32.
    """
    _, _, h, w = flow.shape
    return _sample(x, _base_grid(h, w, flow.device), flow, h, w)


def warp_down(x: torch.Tensor, flow: torch.Tensor, s: float) -> torch.Tensor:
    """`_down(backward_warp(x, flow), s)`, computed only where the downsampling reads.

    For an even integer s, bilinear resizing by 1/s (align_corners=False) reads each output
    pixel from full-size pixels s·d + s/2 - 1 and s·d + s/2 with weights 1/2 each, so warping
    just those four sub-grids costs 4/s² of a full warp and gives the same numbers.
    """
    if s < 2 or s != int(s) or int(s) % 2:
        return _down(backward_warp(x, flow), s)
    k = int(s)
    o = k // 2 - 1
    _, _, h, w = flow.shape
    base = _base_grid(h, w, flow.device)
    v = [[_sample(x, base[:, o + dy::k, o + dx::k], flow[:, :, o + dy::k, o + dx::k], h, w)
          for dx in (0, 1)] for dy in (0, 1)]
    return 0.5 * (0.5 * v[0][0] + 0.5 * v[0][1]) + 0.5 * (0.5 * v[1][0] + 0.5 * v[1][1])


def _pad_in(conv: nn.Conv2d, cin: int) -> nn.Conv2d:
    """The same conv taking `cin` input channels; the extra ones have zero weights."""
    new = nn.Conv2d(cin, conv.out_channels, conv.kernel_size, conv.stride, conv.padding)
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, :conv.in_channels] = conv.weight
        new.bias.copy_(conv.bias)
    return new.to(conv.weight.device, conv.weight.dtype)


def _pad_out(conv: nn.ConvTranspose2d, cout: int) -> nn.ConvTranspose2d:
    """The same transposed conv with `cout` outputs; the extra ones are always zero."""
    new = nn.ConvTranspose2d(conv.in_channels, cout, conv.kernel_size, conv.stride, conv.padding)
    with torch.no_grad():
        new.weight.zero_()
        new.bias.zero_()
        new.weight[:, :conv.out_channels] = conv.weight
        new.bias[:conv.out_channels] = conv.bias
    return new.to(conv.weight.device, conv.weight.dtype)


class IFNet(nn.Module):
    """RIFE 4.25 flow network: two frames and a timestep -> the frame at that time."""

    def __init__(self) -> None:
        super().__init__()
        self.block0 = IFBlock(3 + 3 + 4 + 4 + 1, c=192)
        self.block1 = IFBlock(3 + 3 + 4 + 4 + 1 + 1 + 8 + 4, c=128)
        self.block2 = IFBlock(3 + 3 + 4 + 4 + 1 + 1 + 8 + 4, c=96)
        self.block3 = IFBlock(3 + 3 + 4 + 4 + 1 + 1 + 8 + 4, c=64)
        self.block4 = IFBlock(3 + 3 + 4 + 4 + 1 + 1 + 8 + 4, c=32)
        self.encode = Head()
        self.padded = False

    def pad_for_tensor_cores(self) -> IFNet:
        """Zero-pad conv channels to multiples of 8 (15->16 / 28->32 inputs, 52->56 outputs).

        Same results; NHWC half-precision kernels want channel counts divisible by 8.  Call
        after loading weights (the state dict no longer matches the checkpoint afterwards).
        """
        if not self.padded:
            for i, blk in enumerate((self.block0, self.block1, self.block2, self.block3, self.block4)):
                blk.conv0[0][0] = _pad_in(blk.conv0[0][0], 16 if i == 0 else 32)
                blk.lastconv[0] = _pad_out(blk.lastconv[0], 56)
            self.padded = True
        return self

    def features(self, img: torch.Tensor) -> torch.Tensor:
        """What `forward` takes as `x0`/`x1`: float32 (B, 8, H, W) = RGB, 4 features, a zero plane.

        Computed once per frame and shareable between pairs; float32 because the warps sample it.
        """
        f = self.encode(img)
        return torch.cat((img.float(), f.float(), torch.zeros_like(f[:, :1], dtype=torch.float32)), 1)

    def forward(self, x0: torch.Tensor, x1: torch.Tensor, timestep: torch.Tensor | float,
                scale: float = 1.0) -> torch.Tensor:
        """The frame at `timestep` between frames 0 and 1 (see `flow_mask` for the arguments)."""
        if x0.shape[1] == 3:
            x0 = self.features(x0.to(self.block0.conv0[0][0].weight.dtype))
        if x1.shape[1] == 3:
            x1 = self.features(x1.to(self.block0.conv0[0][0].weight.dtype))
        flow, mask = self.flow_mask(x0, x1, timestep, scale)
        w0 = backward_warp(x0[:, :3], flow[:, :2])
        w1 = backward_warp(x1[:, :3], flow[:, 2:4])
        m = torch.sigmoid(mask.float())
        return w0 * m + w1 * (1 - m)

    def flow_mask(self, x0: torch.Tensor, x1: torch.Tensor, timestep: torch.Tensor | float,
                  scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """(flow B×4×H×W in pixels: to frame 0, then to frame 1; blend-mask logit B×1×H×W).

        The frame at `timestep` is sigmoid(mask)·warp(frame 0) + (1 - sigmoid(mask))·warp(frame 1).

        `x0`, `x1`: (B, 3, H, W) frames in 0..1, or (B, 8, H, W) from `features` (shareable
        between pairs).  H and W must be multiples of `pad_multiple(scale)`.  `timestep`: a float
        or a tensor of B values in (0, 1).
        """
        dt = self.block0.conv0[0][0].weight.dtype
        if x0.shape[1] == 3:
            x0 = self.features(x0.to(dt))
        if x1.shape[1] == 3:
            x1 = self.features(x1.to(dt))
        b = x0.shape[0]
        if not torch.is_tensor(timestep):
            timestep = torch.full((b,), float(timestep), device=x0.device)
        t = timestep.to(device=x0.device, dtype=dt).reshape(-1, 1, 1, 1)
        if t.shape[0] != b:
            raise ValueError(f"timestep has {t.shape[0]} values for a batch of {b}")
        scales = [s / scale for s in FLOW_SCALES]
        blocks = (self.block0, self.block1, self.block2, self.block3, self.block4)
        nin = 16 if self.padded else 15

        flow = mask = feat = None
        for block, s in zip(blocks, scales, strict=True):
            if flow is None:
                a0, a1 = _down(x0, s).to(dt), _down(x1, s).to(dt)
            else:  # frames and features warped by the current flow, at this block's size
                a0, a1 = warp_down(x0, flow[:, :2], s).to(dt), warp_down(x1, flow[:, 2:4], s).to(dt)
            tt = t.expand(b, 1, a0.shape[2], a0.shape[3])
            parts = [a0[:, :3], a1[:, :3], a0[:, 3:7], a1[:, 3:7], tt]
            if flow is None:
                parts.append(a0[:, 7:nin - 8])  # the zero plane when padded, else nothing
                flow, mask, feat = block(torch.cat(parts, 1), s)
            else:
                parts += [_down(mask, s), _down(feat, s), _down(flow, s) * (1.0 / s)]
                if self.padded:
                    parts += [a0[:, 7:8], a1[:, 7:8], a0[:, 7:8], a1[:, 7:8]]
                fd, mask, feat = block(torch.cat(parts, 1), s)
                flow = flow + fd
        return flow, mask


def load_ifnet(state: dict[str, torch.Tensor]) -> IFNet:
    """An IFNet in eval mode with `state` loaded strictly (teacher/caltime/`module.` already stripped)."""
    net = IFNet()
    net.load_state_dict(state, strict=True)
    return net.eval().requires_grad_(False)
