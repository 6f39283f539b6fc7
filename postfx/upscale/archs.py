"""Real-ESRGAN networks with the official state-dict key layout, and loading from a state dict.

* `RRDBNet` (RealESRGAN_x4plus: 23 blocks; x4plus_anime_6B: 6 blocks): keys `conv_first`,
  `body.N.rdbK.convJ`, `conv_body`, `conv_up1`, `conv_up2`, `conv_hr`, `conv_last`.
* `SRVGGNetCompact` (realesr-animevideov3): keys `body.0` … `body.K` alternating conv and PReLU,
  a pixel shuffle, plus the nearest-upsampled input.

`build_model(state)` recognises the architecture from the keys and reads every hyperparameter
from tensor shapes, so a state dict from the official .pth, from our ncnn import or from our
safetensors all load the same way.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3×3 convs; output scaled by 0.2 and added to the input."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32) -> None:
        super().__init__()
        g = num_grow_ch
        self.conv1 = nn.Conv2d(num_feat, g, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + g, g, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * g, g, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * g, g, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * g, num_feat, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x + 0.2 · dense(x)."""
        feats = [x]
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            feats.append(self.lrelu(conv(torch.cat(feats, 1))))
        return x + 0.2 * self.conv5(torch.cat(feats, 1))


class RRDB(nn.Module):
    """Residual-in-residual dense block: three dense blocks, scaled residual."""

    def __init__(self, num_feat: int, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x + 0.2 · rdb3(rdb2(rdb1(x)))."""
        return x + 0.2 * self.rdb3(self.rdb2(self.rdb1(x)))


class RRDBNet(nn.Module):
    """ESRGAN's generator; scale 4 natively (scale 2/1 fold the input with pixel-unshuffle)."""

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, scale: int = 4, num_feat: int = 64,
                 num_block: int = 23, num_grow_ch: int = 32) -> None:
        super().__init__()
        if scale not in (1, 2, 4):
            raise ValueError(f"RRDBNet scale={scale!r} must be 1, 2 or 4")
        self.scale = scale
        self.unshuffle = {4: 1, 2: 2, 1: 4}[scale]
        self.conv_first = nn.Conv2d(num_in_ch * self.unshuffle ** 2, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(num_feat, num_grow_ch) for _ in range(num_block)])
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """N×C×H×W in [0, 1] -> N×C×(H·s)×(W·s)."""
        if self.unshuffle > 1:
            x = F.pixel_unshuffle(x, self.unshuffle)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2.0, mode="nearest")))
        feat = self.lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2.0, mode="nearest")))
        return self.conv_last(self.lrelu(self.conv_hr(feat)))


class SRVGGNetCompact(nn.Module):
    """A plain VGG-style stack (conv, PReLU)×(num_conv+1), conv, pixel shuffle, plus nearest input."""

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64, num_conv: int = 16,
                 upscale: int = 4) -> None:
        super().__init__()
        self.upscale = upscale
        self.num_out_ch = num_out_ch
        layers: list[nn.Module] = [nn.Conv2d(num_in_ch, num_feat, 3, 1, 1), nn.PReLU(num_parameters=num_feat)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), nn.PReLU(num_parameters=num_feat)]
        layers.append(nn.Conv2d(num_feat, num_out_ch * upscale * upscale, 3, 1, 1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """N×C×H×W in [0, 1] -> N×C×(H·s)×(W·s)."""
        out = F.pixel_shuffle(self.body(x), self.upscale)
        return out + F.interpolate(x, scale_factor=float(self.upscale), mode="nearest")


@dataclass(frozen=True)
class ArchInfo:
    """What `detect` read from a state dict."""

    arch: str                 # "rrdb" or "compact"
    scale: int                # the network's own upscale factor
    params: dict[str, Any]    # constructor keyword arguments
    context_px: int           # input pixels of context a tile needs for an (almost) exact result

    def label(self) -> str:
        """e.g. 'RRDBNet(23 blocks, 64 feat)'."""
        p = self.params
        if self.arch == "rrdb":
            return f"RRDBNet({p['num_block']} blocks, {p['num_feat']} feat, grow {p['num_grow_ch']})"
        return f"SRVGGNetCompact({p['num_conv']} convs, {p['num_feat']} feat, ×{p['upscale']})"


def _indices(state: dict[str, torch.Tensor], pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in state if (m := rx.fullmatch(k))})


def detect(state: dict[str, torch.Tensor]) -> ArchInfo:
    """Recognise the architecture from keys and infer hyperparameters from shapes.

    Raises ValueError naming what was missing when the keys fit neither network.
    """
    if "conv_first.weight" in state and "body.0.rdb1.conv1.weight" in state:
        first = state["conv_first.weight"]
        num_feat, in_folded = int(first.shape[0]), int(first.shape[1])
        num_out_ch = int(state["conv_last.weight"].shape[0])
        num_grow_ch = int(state["body.0.rdb1.conv1.weight"].shape[0])
        num_block = len(_indices(state, r"body\.(\d+)\.rdb1\.conv1\.weight"))
        # in_ch·unshuffle² channels enter conv_first; output channels tell in_ch (3 for RGB).
        fold = in_folded // num_out_ch
        scale = {1: 4, 4: 2, 16: 1}.get(fold)
        if scale is None or in_folded % num_out_ch:
            raise ValueError(f"RRDBNet conv_first takes {in_folded} channels; cannot infer the scale")
        params = dict(num_in_ch=num_out_ch, num_out_ch=num_out_ch, scale=scale, num_feat=num_feat,
                      num_block=num_block, num_grow_ch=num_grow_ch)
        return ArchInfo("rrdb", scale, params, context_px=24)
    if "body.0.weight" in state and "body.1.weight" in state and state["body.1.weight"].ndim == 1:
        idx = _indices(state, r"body\.(\d+)\.weight")
        last = idx[-1]
        if idx != list(range(last + 1)) or last % 2:
            raise ValueError(f"SRVGGNetCompact body indices {idx[:3]}…{idx[-2:]} are not 0..2k")
        num_feat = int(state["body.0.weight"].shape[0])
        num_in_ch = int(state["body.0.weight"].shape[1])
        num_conv = (last - 2) // 2
        out_ch = int(state[f"body.{last}.weight"].shape[0])
        num_out_ch = num_in_ch
        upscale = math.isqrt(out_ch // num_out_ch)
        if upscale * upscale * num_out_ch != out_ch:
            raise ValueError(f"SRVGGNetCompact last conv has {out_ch} outputs; not 3·s²")
        params = dict(num_in_ch=num_in_ch, num_out_ch=num_out_ch, num_feat=num_feat, num_conv=num_conv,
                      upscale=upscale)
        # every 3×3 conv widens the receptive field by one low-res pixel each side
        return ArchInfo("compact", upscale, params, context_px=num_conv + 2)
    some = ", ".join(sorted(state)[:4])
    raise ValueError(f"state dict is neither RRDBNet nor SRVGGNetCompact (keys start: {some})")


def build_model(state: dict[str, torch.Tensor]) -> tuple[nn.Module, ArchInfo]:
    """A float32 eval-mode network with `state` loaded strictly, and what was detected."""
    info = detect(state)
    model: nn.Module = RRDBNet(**info.params) if info.arch == "rrdb" else SRVGGNetCompact(**info.params)
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    model.eval().requires_grad_(False)
    return model, info
