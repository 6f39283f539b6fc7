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
- a frame and its features are warped together by one `grid_sample` call;
- warps sample in float32 even when the network runs in float16 (a half-precision sampling grid
  is off by up to ~0.25 px on 1080p frames).
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
        return out[:, :4] * scale, out[:, 4:5], out[:, 5:]


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


def backward_warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample `x` (B, C, H, W) at pixel + `flow` (B, 2, H, W, in pixels), bilinear, border padding.

    The grid is built and sampled in float32; the result has `x`'s dtype.
    """
    _, _, h, w = flow.shape
    f = flow.float()
    fx = f[:, 0] / ((w - 1.0) / 2.0)
    fy = f[:, 1] / ((h - 1.0) / 2.0)
    grid = _base_grid(h, w, flow.device) + torch.stack((fx, fy), dim=-1)
    out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.to(x.dtype)


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

    def features(self, img: torch.Tensor) -> torch.Tensor:
        """Frame plus its features (B, 7, H, W): what `forward` takes as `x0`/`x1`."""
        return torch.cat((img, self.encode(img)), 1)

    def forward(self, x0: torch.Tensor, x1: torch.Tensor, timestep: torch.Tensor | float,
                scale: float = 1.0) -> torch.Tensor:
        """The frame at `timestep` between frames 0 and 1.

        `x0`, `x1`: (B, 3, H, W) frames in 0..1, or (B, 7, H, W) from `features` (shareable
        between pairs).  H and W must be multiples of `pad_multiple(scale)`.  `timestep`: a float
        or a tensor of B values in (0, 1).  Returns (B, 3, H, W).
        """
        if x0.shape[1] == 3:
            x0 = self.features(x0)
        if x1.shape[1] == 3:
            x1 = self.features(x1)
        b, _, h, w = x0.shape
        if not torch.is_tensor(timestep):
            timestep = torch.full((b,), float(timestep), device=x0.device)
        t = timestep.to(device=x0.device, dtype=x0.dtype).reshape(-1, 1, 1, 1)
        if t.shape[0] != b:
            raise ValueError(f"timestep has {t.shape[0]} values for a batch of {b}")
        scales = [s / scale for s in FLOW_SCALES]
        blocks = (self.block0, self.block1, self.block2, self.block3, self.block4)

        flow = mask = feat = None
        w0, w1 = x0, x1
        for i, (block, s) in enumerate(zip(blocks, scales, strict=True)):
            a0, a1 = _down(w0, s), _down(w1, s)
            tt = t.expand(b, 1, a0.shape[2], a0.shape[3])
            if flow is None:
                inp = torch.cat((a0[:, :3], a1[:, :3], a0[:, 3:], a1[:, 3:], tt), 1)
                flow, mask, feat = block(inp, s)
            else:
                inp = torch.cat((a0[:, :3], a1[:, :3], a0[:, 3:], a1[:, 3:], tt, _down(mask, s),
                                 _down(feat, s), _down(flow, s) * (1.0 / s)), 1)
                fd, mask, feat = block(inp, s)
                flow = flow + fd
            last = i == len(blocks) - 1
            # frames (and, before the last block, their features) warped by the current flow
            w0 = backward_warp(x0[:, :3] if last else x0, flow[:, :2])
            w1 = backward_warp(x1[:, :3] if last else x1, flow[:, 2:4])
        m = torch.sigmoid(mask)
        return w0 * m + w1 * (1 - m)


def load_ifnet(state: dict[str, torch.Tensor]) -> IFNet:
    """An IFNet in eval mode with `state` loaded strictly (teacher/caltime/`module.` already stripped)."""
    net = IFNet()
    net.load_state_dict(state, strict=True)
    return net.eval().requires_grad_(False)
