"""Flow carry: make RIFE's in-between frames at an upscaled size without upscaling them.

RIFE 4.25 ends by warping its two input frames with a bidirectional flow and blending them with
a mask.  Here the flow and mask are computed on the source frames, upsampled to the upscaled size
(flow values × the scale), and applied to the *upscaled* source frames.  So only the source
frames go through the upscaler: for ×2 interpolation about half the upscaler's work.  The result
differs from interpolate-then-upscale where the upscaler would have sharpened the blend differently
(bench/results/carry_cpu.json measures it on the real photos).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .rife.interpolator import check_jobs

Job = tuple[int, float]


def carry_pair(flow: torch.Tensor, mask: torch.Tensor, hi0: torch.Tensor, hi1: torch.Tensor) -> torch.Tensor:
    """Blend upscaled frames `hi0`, `hi1` (B×3×H×W float in 0..1) by a low-res flow and mask.

    `flow` is B×4×h×w in source pixels (to frame 0, then to frame 1), `mask` the B×1×h×w logit;
    both are resized to H×W (bilinear, pixel centres aligned) and the flow scaled by H/h, W/w.
    Returns B×3×H×W float32.
    """
    from .rife.ifnet import backward_warp
    big_h, big_w = hi0.shape[-2:]
    h, w = flow.shape[-2:]
    f = F.interpolate(flow.float(), size=(big_h, big_w), mode="bilinear", align_corners=False)
    f = f * torch.tensor([big_w / w, big_h / h, big_w / w, big_h / h], device=f.device).view(1, 4, 1, 1)
    m = torch.sigmoid(F.interpolate(mask.float(), size=(big_h, big_w), mode="bilinear", align_corners=False))
    return backward_warp(hi0, f[:, :2]) * m + backward_warp(hi1, f[:, 2:4]) * (1 - m)


@torch.inference_mode()
def carry_run(interp, low: Sequence[np.ndarray], high: Sequence[np.ndarray], jobs: Sequence[Job],
              on_job: Callable[[Job], None] | None = None) -> list[np.ndarray]:
    """One uint8 frame at `high`'s size per job (i, t), in job order.

    `interp` is a `RifeInterpolator` (its eager IFNet, device, dtype and flow scale are used);
    `low` are the source frames RIFE sees, `high` the same frames upscaled.  Jobs should be
    sorted by i (features of frames no longer needed are dropped as it goes).
    """
    if not jobs:
        return []
    if len(low) != len(high):
        raise ValueError(f"low has {len(low)} frames but high has {len(high)}")
    h, w = low[0].shape[:2]
    big_h, big_w = high[0].shape[:2]
    check_jobs(jobs, len(low))
    dev, net = interp.device, interp.net
    feats: dict[int, torch.Tensor] = {}
    his: dict[int, torch.Tensor] = {}
    out = []
    for i, t in jobs:
        for k in [k for k in feats if k not in (i, i + 1)]:
            del feats[k], his[k]
        for k in (i, i + 1):
            if k not in feats:
                x = torch.from_numpy(np.ascontiguousarray(low[k]))[None].to(dev)
                feats[k] = net.features(interp._to_net(x))
                hi = torch.from_numpy(np.ascontiguousarray(high[k]))[None].to(dev)
                his[k] = hi.permute(0, 3, 1, 2).float().div_(255.0)
        tt = torch.full((1,), float(t), device=dev, dtype=interp.dtype)
        flow, mask = net.flow_mask(feats[i], feats[i + 1], tt, interp.scale)
        y = carry_pair(flow[:, :, :h, :w], mask[:, :, :h, :w], his[i], his[i + 1])
        assert y.shape[-2:] == (big_h, big_w)
        q = y.clamp_(0, 1).mul_(255.0).round_().to(torch.uint8)[0].permute(1, 2, 0)
        out.append(q.cpu().numpy())
        if on_job is not None:
            on_job((i, t))
    return out
