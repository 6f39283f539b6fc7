"""Ledger estimates per speed tier, from the calibration committed with the Wan benchmark.

`calibration.json` (beside this file) is written by `bench/bench_wan_e2e.py --calibration` from
its H200 run: stock's seconds per step and fixed seconds (encoders, VAE, frames out) at Wan 2.1
I2V 14B, 832×480, 81 frames, and each tier's per-step and fixed time.  A request's estimate is
its stock denoising estimate (the engine's size model) times the tier's measured per-step ratio
to stock, with the cache tier counting only the steps its schedule computes, plus the fixed time
scaled by pixels × frames.

Other devices: the H200 figures are scaled by the ratio of dense bf16 tensor rates (table
below; the tier ratios are kept, fp8 only where the device has fp8); an unlisted CUDA device
counts as half an H200.  CPUs keep the engine's own CPU estimate (no tier but exact runs there).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from . import parts

CALIBRATION = Path(__file__).resolve().parent / "calibration.json"
# dense bf16 TFLOP/s by device name (vendor datasheets), for scaling the H200 calibration
BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "H800": 989.0, "GH200": 989.0, "B200": 2250.0,
               "A100": 312.0, "A800": 312.0, "L40S": 362.0, "L40": 181.0, "RTX 4090": 165.0,
               "RTX 5090": 209.0, "RTX 6000 Ada": 364.0, "A6000": 155.0, "RTX 3090": 71.0}


@functools.lru_cache(maxsize=1)
def calibration() -> dict[str, Any]:
    """The committed calibration table."""
    return json.loads(CALIBRATION.read_text())


def device_factor(device_name: str | None) -> float:
    """How many times slower than the calibration's H200 a device is (1.0 for an H200)."""
    if not device_name:
        return 1.0
    ref = BF16_TFLOPS["H200"]
    for key, tf in sorted(BF16_TFLOPS.items(), key=lambda kv: -len(kv[0])):
        if key.lower() in device_name.lower():
            return ref / tf
    return 2.0


def tier_seconds(tier: str, stock_denoise_s: float, steps: int, pixels_frames: float,
                 device_name: str | None = None) -> dict[str, float]:
    """{'denoise', 'fixed'} seconds for `tier` given the engine's stock denoising estimate.

    `pixels_frames` is width × height × frames of the request (fixed costs scale with it).
    """
    cal = calibration()
    t = cal["tiers"].get(tier) or cal["tiers"]["exact"]
    p = parts(tier)
    share = 1.0
    if "cache" in p:
        from .cache import computed_steps
        share = len(computed_steps(steps)) / max(1, steps)
    denoise = stock_denoise_s * float(t["per_step_ratio"]) * share
    fixed = float(cal["fixed_seconds"]) * pixels_frames / float(cal["pixels_frames"])
    f = device_factor(device_name)
    return {"denoise": round(denoise, 2), "fixed": round(fixed * f, 2)}
