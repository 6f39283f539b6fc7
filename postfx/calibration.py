"""The post chain's GPU cost constants and the CUDA default order, from one calibration table.

The table is `bench/results/post_calibration.json`; `bench/bench_post_app.py` measures a device
and writes a refit of it (same keys), which is committed in its place to recalibrate the ledger.
`DEFAULTS` is that file's content when it was written (H100 figures from bench/results/rife_h100.json
and upscale_h100*.json), used if the file is missing or unreadable.  Read at call time, cached.
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

TABLE = Path(__file__).resolve().parent.parent / "bench" / "results" / "post_calibration.json"
ORDERS = ("interpolate-first", "upscale-carry")
DEFAULTS: dict[str, Any] = {
    "rife_cuda_s_per_mp": 0.0031,
    "carry_cuda_s_per_mp": 0.002,
    "upscale_cuda_px_per_s": {"compact": 1.5e8, "rrdb": 1.0e7, "rrdb6": 3.5e7},
    "upscale_cuda_overhead_s": 2.0,
    "color_cuda_s_per_mp": 0.0005,
    "color_cpu_s_per_mp": 0.013,
    "order_cuda": {"order": "interpolate-first", "measured": None,
                   "reason": "not measured yet: interpolate-first on CUDA (upscaling is cheap there)"},
}


def check_table(d: dict[str, Any]) -> dict[str, Any]:
    """A calibration table with every key of `DEFAULTS`, numbers positive and a known order."""
    out = {**DEFAULTS, **{k: v for k, v in d.items() if k in DEFAULTS}}
    for k, v in out.items():
        if k.endswith(("_per_mp", "_overhead_s")) and not (isinstance(v, int | float) and v >= 0):
            raise ValueError(f"calibration {k}={v!r} must be a number >= 0")
    rates = out["upscale_cuda_px_per_s"]
    if set(rates) != {"compact", "rrdb", "rrdb6"} or not all(isinstance(r, int | float) and r > 0
                                                               for r in rates.values()):
        raise ValueError(f"calibration upscale_cuda_px_per_s={rates!r} needs compact, rrdb, rrdb6 > 0")
    order = out["order_cuda"]
    if not isinstance(order, dict) or order.get("order") not in ORDERS or not order.get("reason"):
        raise ValueError(f"calibration order_cuda={order!r} needs an order in {ORDERS} and a reason")
    return out


@lru_cache(maxsize=4)
def _load(path: str) -> dict[str, Any]:
    try:
        return check_table(json.loads(Path(path).read_text()))
    except (OSError, ValueError) as e:
        log.warning("calibration table %s unusable (%s); using the built-in defaults", path, e)
        return dict(DEFAULTS)


def table(path: str | Path | None = None) -> dict[str, Any]:
    """The calibration table (the committed JSON, else `DEFAULTS`)."""
    return _load(str(path or TABLE))


def cuda_order(path: str | Path | None = None) -> tuple[str, str]:
    """(order, reason): what `order="auto"` means on CUDA when both interpolation and a Real-ESRGAN
    upscale run, and why (the measurement it came from)."""
    o = table(path)["order_cuda"]
    return o["order"], o["reason"]


__all__ = ["DEFAULTS", "ORDERS", "TABLE", "check_table", "cuda_order", "table"]
