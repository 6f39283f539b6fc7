"""Short ledger labels: a few plain words per row ("upscale ×2 (Real-ESRGAN)"); the stage's full
description (`describe()`: model, how, fallbacks, why) is the row's `detail`.

The pages show the label in the ledger table and the details behind an expander; the API, the CLI
and the manifest keep both."""

from __future__ import annotations

from typing import Any


def _how(interp: Any) -> str:
    tf = getattr(interp, "target_fps", None)
    return f"→ {tf:g} fps" if tf is not None else f"×{interp.factor}"


def _interp_label(interp: Any) -> str:
    r = interp.resolved()
    return f"interpolate {_how(interp)} ({'RIFE' if r.model == 'rife' else 'optical flow'})"


def _upscale_label(up: Any) -> str:
    return f"upscale ×{up.scale} ({'Lanczos' if up.model == 'lanczos' else 'Real-ESRGAN'})"


def short_label(stage: Any) -> str:
    """A few words naming what `stage` does, for the ledger's label column."""
    name = getattr(stage, "name", type(stage).__name__)
    if name == "interpolate":
        return _interp_label(stage)
    if name == "upscale":
        return _upscale_label(stage)
    if name == "interpolate-upscaled":
        return f"interpolate {_how(stage.interpolate)} + upscale ×{stage.upscale.scale}"
    if name == "start_on":
        return "start on the input frame"
    return str(name).replace("_", " ")


def detail_of(stage: Any) -> str:
    """The stage's full description (its `describe()`, else its name)."""
    d = getattr(stage, "describe", None)
    return d() if callable(d) else str(getattr(stage, "name", stage))
