"""RIFE 4.25 frame interpolation: our IFNet (`ifnet`), its weights (`weights`), the batched
runner (`interpolator.RifeInterpolator`) and the no-weights fallback (`flow_fallback`).

Submodules are imported lazily so that importing `postfx.rife` does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "RifeInterpolator": "postfx.rife.interpolator",
    "IFNet": "postfx.rife.ifnet",
    "DisInterpolator": "postfx.rife.flow_fallback",
}

__all__ = sorted(_EXPORTS) + ["default_batch"]


def default_batch(device: str, height: int, width: int) -> int:
    """Pairs per forward: about 16 megapixels of frames on CUDA (8 at 1080p), one on CPU."""
    if not device.startswith("cuda"):
        return 1
    return int(max(1, min(16, round(16e6 / (height * width)))))


def __getattr__(name: str) -> Any:
    """Lazy access to the public classes."""
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'postfx.rife' has no attribute {name!r}")
