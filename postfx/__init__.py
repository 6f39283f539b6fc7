"""Post-processing stages: interpolation (RIFE), upscaling (Real-ESRGAN), colour, assembly.

The stage registry lives here, at the foot of `postfx`: a stage module registers itself without
importing `studio.stages` (which runs the chain, so sits above `postfx`), and this file imports
no stage module (`studio.stages.stage_types` loads the built-in ones).
"""

from __future__ import annotations

STAGE_TYPES: dict[str, type] = {}


def register_stage(cls: type) -> type:
    """Class decorator: make a stage reconstructible from a manifest by its `name`."""
    STAGE_TYPES[cls.name] = cls  # type: ignore[attr-defined]
    return cls

