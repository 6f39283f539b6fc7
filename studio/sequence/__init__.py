"""Sequences: multi-clip short videos with transitions, title cards, an audio bed and continuation.

    from studio.sequence import load_spec, render_file
    render_file("docs/sequence-example.json", "outputs/short.mp4")

Names are imported lazily so that `import studio.sequence` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "load_spec": "spec", "SequenceSpec": "spec", "ClipItem": "spec", "Transition": "spec",
    "AudioBed": "spec", "OutputSpec": "spec", "TitleOver": "spec", "PRESETS": "spec",
    "TRANSITIONS": "spec",
    "plan_sequence": "plan", "SequencePlan": "plan",
    "render_sequence": "render", "render_file": "render", "preview_spec": "render",
    "storyboard": "render", "run_sequence_job": "render",
    "continue_from_last_frame": "continuation", "color_drift": "continuation",
}


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        return getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_NAMES)
