"""One parameter spec: name, type, default, range, step and help for every setting.

The spec drives validation (`check`), CLI flags (`studio.cli`), the manifest and the UI widgets.
Nothing else repeats a range by hand.  Engines may override entries (`Param.override`).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Param:
    """One setting: its type, default, bounds and the text a user sees."""

    name: str
    type: type
    default: Any
    help: str
    min: float | None = None
    max: float | None = None
    step: float | None = None
    choices: tuple[Any, ...] | None = None
    multiple_of: int | None = None   # e.g. 8 for sizes a VAE needs
    frame_rule: tuple[int, int] | None = None  # (k, r): value % k == r, e.g. LTX 8k+1
    advanced: bool = False
    group: str = "generate"
    optional: bool = False          # None is allowed and means "not set"
    max_len: int | None = 256       # the longest text a str setting takes
    upload: tuple[str, ...] | None = None   # names a file: the API takes only ids of uploads of these kinds

    def override(self, **kw: Any) -> Param:
        """A copy with some fields changed (engines narrow ranges this way)."""
        return replace(self, **kw)

    def check(self, value: Any) -> Any:
        """Return `value` converted to the type, or raise ValueError naming the bad value."""
        if value is None:
            if self.optional:
                return None
            raise ValueError(f"{self.name} is required")
        try:
            if self.type is bool:
                if isinstance(value, str):
                    low = value.strip().lower()
                    if low not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                        raise ValueError
                    v: Any = low in ("1", "true", "yes", "on")
                else:
                    v = bool(value)
            elif self.type is int:
                if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                    raise ValueError
                v = int(value)
            elif self.type is str:
                if not isinstance(value, str):
                    raise ValueError
                if self.max_len is not None and len(value) > self.max_len:
                    raise ValueError(f"{self.name} is {len(value):,} characters long, over the limit of "
                                     f"{self.max_len:,}") from None
                v = value
            elif self.type is float:
                if isinstance(value, bool):
                    raise ValueError
                v = float(value)
                if v != v or v in (float("inf"), float("-inf")):
                    raise ValueError
            else:
                v = self.type(value)
        except (TypeError, ValueError) as e:
            if str(e).startswith(f"{self.name} is "):
                raise
            raise ValueError(f"{self.name}={_short(value)} is not a valid {self.type.__name__}") from None
        if self.choices is not None and v not in self.choices:
            raise ValueError(f"{self.name}={v!r} is not one of {', '.join(map(str, self.choices))}")
        if self.min is not None and v < self.min:
            raise ValueError(f"{self.name}={v!r} is below the minimum {self.min:g}")
        if self.max is not None and v > self.max:
            raise ValueError(f"{self.name}={v!r} is above the maximum {self.max:g}")
        if self.multiple_of and v % self.multiple_of:
            raise ValueError(f"{self.name}={v!r} must be a multiple of {self.multiple_of}")
        if self.frame_rule:
            k, r = self.frame_rule
            if v % k != r:
                raise ValueError(f"{self.name}={v!r} must be {k}k+{r} (e.g. {k * ((v - r) // k) + r})")
        return v


def _short(value: Any, n: int = 60) -> str:
    r = repr(value)
    return r if len(r) <= n else r[:n] + "…"


def _p(name: str, typ: type, default: Any, help: str, **kw: Any) -> Param:
    return Param(name=name, type=typ, default=default, help=help, **kw)


# The core request spec.  Engines override entries (ranges, defaults, frame rules).
SPEC: dict[str, Param] = {p.name: p for p in [
    _p("prompt", str, "", "Motion prompt, e.g. 'camera slowly zooming in, clouds drifting'.", max_len=2000),
    _p("negative_prompt", str, "", "What to avoid (diffusion engines only).", advanced=True, max_len=2000),
    _p("engine", str, "camera", "Engine id (see `python -m studio models`)."),
    _p("frames", int, 16, "Frames in the base clip.", min=2, max=257, step=1),
    _p("fps", float, 8.0, "Frame rate of the base clip.", min=1, max=120, step=1),
    _p("width", int, 512, "Base clip width in pixels.", min=16, max=4096, step=16, multiple_of=2),
    _p("height", int, 512, "Base clip height in pixels.", min=16, max=4096, step=16, multiple_of=2),
    _p("seed", int, 0, "Random seed; the same seed gives the same frames.", min=0, max=2**32 - 1),
    _p("steps", int, 25, "Denoising steps (diffusion engines).", min=1, max=200, advanced=True),
    _p("guidance", float, 7.5, "Classifier-free guidance scale (diffusion engines).",
       min=0, max=30, step=0.5, advanced=True),
    # camera engine moves; None means "from the prompt"
    _p("motion", str, None, "Explicit camera moves, overriding the prompt, e.g. 'zoom_in+pan_right'.",
       optional=True, group="camera"),
    _p("speed", float, None, "Camera speed multiplier, overriding the prompt's words (0.1–4).",
       min=0.1, max=4.0, step=0.1, optional=True, group="camera"),
    # post-processing
    _p("interpolate", int, 1, "RIFE frame interpolation factor (1 = off).", min=1, max=16, group="post"),
    _p("target_fps", float, None, "Interpolate to this fps, keeping the duration (instead of a factor).",
       min=1, max=240, optional=True, group="post"),
    _p("upscale", int, 1, "Upscale factor (1 = off).", choices=(1, 2, 3, 4), group="post"),
    _p("upscaler", str, "auto",
       "Upscale model. x4plus: the photo model, keeps and adds fine texture (skin, crema, foliage: "
       "1.4× Lanczos's on the test photos) at ~20× animevideov3's cost, for a GPU. animevideov3: "
       "an anime/cartoon model that runs on a CPU; on photos it sharpens edges but paints texture "
       "flat (0.92× Lanczos's). x4plus-anime: anime stills. auto: x4plus on a CUDA GPU, "
       "animevideov3 on the CPU (the ledger says which and why).",
       choices=("auto", "animevideov3", "x4plus", "x4plus-anime", "lanczos"), group="post"),
    _p("color_match", bool, True, "Match upscaled colours to the base clip.", group="post", advanced=True),
    _p("order", str, "auto",
       "Post-processing order. interpolate-first: upscale every frame. upscale-first: interpolate "
       "at the upscaled size. upscale-carry: upscale the source frames only and make the new "
       "frames by carrying RIFE's flow up to the upscaled size (about half the upscaling for ×2; "
       "a small change, measured in bench/results/carry_cpu.json). auto: upscale-carry on the "
       "CPU, interpolate-first on a GPU.",
       choices=("auto", "interpolate-first", "upscale-first", "upscale-carry"), group="post",
       advanced=True),
    _p("scene_threshold", float, 0.35, "Scene-cut threshold for interpolation (0–1; 1 disables).",
       min=0, max=1, step=0.05, group="post", advanced=True),
    # output
    _p("codec", str, None, "Output codec (default from the file extension: .mp4 H.264, .webm VP9, "
       ".gif, .mov ProRes; a path ending in / is a PNG folder).",
       choices=("h264", "h265", "vp9", "prores", "gif", "png"), optional=True, group="output"),
    _p("crf", int, 18, "Constant rate factor (lower is better quality, bigger file).",
       min=0, max=51, group="output", advanced=True),
    _p("preset", str, "medium", "Encoder speed preset.",
       choices=("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
                "veryslow"), group="output", advanced=True),
    _p("audio", str, None, "Your own audio track (a file; an upload id in the API): looped or trimmed "
       "to the video, with fades. It replaces the clip's own (generated) sound or goes under it "
       "(audio_mode).", optional=True, group="output", advanced=True, upload=("audio",)),
    _p("audio_mode", str, "replace", "What your track does to the clip's own sound: replace it, or mix "
       "under it.", choices=("replace", "mix"), group="output", advanced=True),
    _p("audio_gain", float, 0.0, "Level of your track in dB (0 = as it is).", min=-60, max=12, step=1,
       group="output", advanced=True),
    _p("audio_fade", float, 0.5, "Audio fade in/out seconds.", min=0, max=10, step=0.1,
       group="output", advanced=True),
]}


def merged_spec(overrides: dict[str, Param] | None = None) -> dict[str, Param]:
    """The core spec with an engine's overrides applied."""
    out = dict(SPEC)
    for k, p in (overrides or {}).items():
        out[k] = p
    return out


def check_values(values: dict[str, Any], spec: dict[str, Param] | None = None) -> dict[str, Any]:
    """Validate `values` against `spec`, filling defaults; unknown names are an error."""
    spec = spec or SPEC
    unknown = sorted(set(values) - set(spec))
    if unknown:
        raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
    return {name: p.check(values.get(name, p.default)) for name, p in spec.items()}


def add_arguments(parser: argparse.ArgumentParser, names: list[str] | None = None,
                  spec: dict[str, Param] | None = None) -> None:
    """Add `--flag` options for spec entries.  Defaults are None so only given flags override."""
    spec = spec or SPEC
    for name in names or list(spec):
        p = spec[name]
        flag = "--" + name.replace("_", "-")
        extra = ""
        if p.min is not None or p.max is not None:
            extra = f" [{'' if p.min is None else f'{p.min:g}'}..{'' if p.max is None else f'{p.max:g}'}]"
        dflt = "" if p.default in (None, "") else f" (default {p.default})"
        if p.type is bool:
            parser.add_argument(flag, dest=name, default=None, action=argparse.BooleanOptionalAction,
                                help=p.help + dflt)
        else:
            parser.add_argument(flag, dest=name, default=None, metavar=name.upper(),
                                help=p.help + extra + dflt)

