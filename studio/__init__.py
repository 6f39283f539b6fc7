"""Image-to-video creative studio: core package (requests, engines, chain, outputs)."""

from __future__ import annotations

__version__ = "0.1.0"
