"""The stage protocol, a stage registry (for manifests) and the chain runner."""

from __future__ import annotations

import dataclasses
import time
from typing import Any, ClassVar, Protocol, runtime_checkable

from postfx import STAGE_TYPES, register_stage

from .audio import fit_to
from .clip import Clip, ClipSpec
from .context import RunContext

__all__ = ["STAGE_TYPES", "Stage", "plan_chain", "register_stage", "run_chain", "stage_from_dict",
           "stage_to_dict", "stage_types"]


@runtime_checkable
class Stage(Protocol):
    """A post-processing step: a frozen dataclass whose fields are all its parameters.

    `plan` maps the input clip's shape to the output's (exactly: the ledger relies on it);
    `estimate` gives a rough cost; `apply` does the work, calling `ctx.step` as it goes.
    Stages hand frames on losslessly (uint8 arrays); only `Assemble` encodes.
    """

    name: ClassVar[str]

    def plan(self, spec: ClipSpec) -> ClipSpec: ...

    def estimate(self, spec: ClipSpec, device: str) -> dict[str, float]: ...

    def apply(self, clip: Clip, ctx: RunContext) -> Clip: ...


def stage_types() -> dict[str, type]:
    """Every registered stage by name, the built-in ones loaded (importing a module registers it)."""
    from postfx import anchor, color, interpolate, upscale  # noqa: F401
    return dict(STAGE_TYPES)


def stage_to_dict(stage: Stage) -> dict[str, Any]:
    """A JSON-ready record of a stage: its name and every parameter."""
    d = getattr(stage, "describe", None)
    return {"stage": stage.name, "label": d() if callable(d) else stage.name,
            "params": dataclasses.asdict(stage)}  # type: ignore[call-overload]


def stage_from_dict(d: dict[str, Any]) -> Stage:
    """Rebuild a stage from `stage_to_dict`'s record; unknown names raise ValueError."""
    types = stage_types()
    name = d.get("stage")
    if name not in types:
        raise ValueError(f"unknown stage {name!r} (known: {', '.join(sorted(types))})")
    return types[name](**d.get("params", {}))


def plan_chain(spec: ClipSpec, stages: list[Stage]) -> list[ClipSpec]:
    """Specs after each stage (not including the input)."""
    out = []
    for s in stages:
        spec = s.plan(spec)
        out.append(spec)
    return out


def run_chain(clip: Clip, stages: list[Stage], ctx: RunContext,
              timings: dict[str, float] | None = None) -> Clip:
    """Apply stages in order; check each result against its plan; record seconds per stage.

    A clip's sound survives every stage, trimmed or padded to the frames' new duration.
    """
    for i, s in enumerate(stages):
        ctx.check_cancel()
        expect = s.plan(clip.spec)
        t0 = time.perf_counter()
        sound = clip.audio
        clip = s.apply(clip, ctx)
        if sound is not None:   # the sound stays as long as the frames (a stage that dropped it gets it back)
            clip = dataclasses.replace(clip, audio=fit_to(clip.audio or sound, clip.spec.duration))
        if timings is not None:
            timings[f"{i}:{s.name}"] = round(time.perf_counter() - t0, 4)
        if ctx.preview is not None:
            ctx.preview(clip.frames[-1])
        got = clip.spec
        if (got.frames, got.width, got.height) != (expect.frames, expect.width, expect.height) or \
                abs(got.fps - expect.fps) > 1e-6:
            raise RuntimeError(f"stage {s.name} produced {got} but its plan said {expect}")
    return clip
