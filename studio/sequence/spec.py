"""The sequence spec (JSON, "version": 1): clips, title cards, transitions, audio bed, output.

`load_spec(path_or_dict)` validates every field and raises ValueError naming the bad field by its
path, e.g. ``clips[2].transition.duration=-1 must be ≥ 0``.  It checks shapes and ranges only;
whether files exist and clips are long enough for their transitions is checked by
`studio.sequence.render.plan_sequence`, still before anything is decoded or encoded.

Timeline: `clips` is an ordered list; an entry with "path" is a video clip, an entry with "title"
is a title card.  Each entry's `transition` leads into the next entry; every transition except
"cut" overlaps the two neighbours by its duration, so the total length is the sum of the entries'
lengths minus the sum of the transition durations.  The last entry's transition must be a cut.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

VERSION = 1

TRANSITIONS = ("cut", "crossfade", "fade_black", "fade_white", "slide_left", "slide_right",
               "slide_up", "slide_down", "wipe_left", "wipe_right")
PRESETS: dict[str, tuple[int, int]] = {"16:9": (1920, 1080), "9:16": (1080, 1920), "1:1": (1080, 1080)}
FITS = ("letterbox", "crop")
RESAMPLES = ("nearest", "rife")
CODECS = ("h264", "h265", "vp9", "prores", "gif", "png")
ENCODER_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
                   "veryslow")
_HEX = re.compile(r"^#?([0-9a-fA-F]{6})$")


@dataclass
class Transition:
    """How an entry leads into the next: a type and its duration in seconds (0 for a cut)."""

    type: str = "cut"
    duration: float = 0.0


@dataclass
class TitleOver:
    """A title's background taken from a frame of a video entry, dimmed."""

    clip: int = 0          # index into `clips` (must be a video entry)
    time: float = 0.0      # seconds into that clip after its trim (before its speed change)
    dim: float = 0.4       # 0 keeps the frame, 1 makes it black


@dataclass
class ClipItem:
    """One timeline entry: a video clip (`path`) or a title card (`title`)."""

    path: str | None = None
    trim_in: float = 0.0
    trim_out: float | None = None   # None = to the end of the file
    speed: float = 1.0
    fit: str | None = None          # None = the output's fit
    color_match: bool = False       # match colours to the previous video clip's last frame
    volume: float = 1.0             # the clip's own sound (0 mutes it)
    keep_pitch: bool = True         # a speed change keeps the pitch (atempo) or moves it (resampling)
    title: str | None = None
    duration: float = 2.0           # title cards only
    font_size: int | None = None    # None = height / 12
    color: str = "#ffffff"          # title text colour
    background: str = "#000000"     # title background colour
    over: TitleOver | None = None   # title over a frame instead of a colour
    transition: Transition = field(default_factory=Transition)

    @property
    def is_title(self) -> bool:
        """True for a title card."""
        return self.title is not None


@dataclass
class AudioBed:
    """Music under the whole sequence: trimmed or looped to the video's length, with fades."""

    path: str = ""
    offset: float = 0.0     # seconds skipped at the start of the audio file
    volume: float = 1.0
    fade_in: float = 0.5
    fade_out: float = 0.5
    loop: bool = True       # shorter audio loops (True) or stops, followed by silence (False)
    duck_db: float = 12.0   # how far the bed dips while a clip's own sound plays (0 = no ducking)
    duck_attack: float = 0.25   # seconds the dip takes, ending where the clip's sound starts
    duck_release: float = 0.5   # seconds the bed takes to come back after it ends


@dataclass
class OutputSpec:
    """Size (a preset, or an explicit size), fps, codec and how clips are conformed."""

    preset: str = "16:9"
    size: tuple[int, int] | None = None   # (width, height) overriding the preset
    fps: float = 24.0
    codec: str | None = None               # None = from the output file's extension
    crf: int = 18
    encoder_preset: str = "medium"
    fit: str = "letterbox"
    pad_color: str = "#000000"
    resample: str = "nearest"              # fps change: "nearest" (duplicate/drop) or "rife"
    loudness: float | None = -14.0         # the export's integrated loudness, LUFS (None = as mixed)
    true_peak: float = -1.0                # its true-peak ceiling, dBTP

    @property
    def width(self) -> int:
        """Output width in pixels."""
        return (self.size or PRESETS[self.preset])[0]

    @property
    def height(self) -> int:
        """Output height in pixels."""
        return (self.size or PRESETS[self.preset])[1]


@dataclass
class SequenceSpec:
    """A whole sequence; `base_dir` resolves relative paths (the spec file's folder)."""

    clips: list[ClipItem]
    output: OutputSpec = field(default_factory=OutputSpec)
    audio: AudioBed | None = None
    drift_threshold: float = 8.0       # mean ΔE (Lab) between adjacent clips that warns
    version: int = VERSION
    base_dir: Path = field(default_factory=Path.cwd)

    def resolve(self, path: str) -> Path:
        """A path from the spec, resolved against `base_dir`."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.base_dir / p

    def to_dict(self) -> dict[str, Any]:
        """The JSON form `load_spec` accepts (without `base_dir`)."""
        d = asdict(self)
        d.pop("base_dir")
        if d["output"]["size"] is not None:
            d["output"]["size"] = list(d["output"]["size"])
        for c in d["clips"]:
            if c["title"] is None:
                for k in ("title", "duration", "font_size", "color", "background", "over"):
                    c.pop(k)
            else:
                for k in ("path", "trim_in", "trim_out", "speed", "fit", "color_match", "volume",
                          "keep_pitch"):
                    c.pop(k)
        return d


def parse_color(value: Any, where: str) -> tuple[int, int, int]:
    """'#rrggbb' (or 'rrggbb', or [r, g, b]) as an RGB tuple; ValueError naming `where` otherwise."""
    if isinstance(value, list | tuple) and len(value) == 3 and \
            all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in value):
        return int(value[0]), int(value[1]), int(value[2])
    m = _HEX.match(value) if isinstance(value, str) else None
    if not m:
        raise ValueError(f"{where}={value!r} is not a colour like '#rrggbb'")
    h = m.group(1)
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


class _Reader:
    """Pulls typed, range-checked fields out of one JSON object, naming each by its path."""

    def __init__(self, d: Any, where: str, known: tuple[str, ...]) -> None:
        if not isinstance(d, dict):
            raise ValueError(f"{where or 'spec'}={d!r} must be an object")
        unknown = sorted(set(d) - set(known))
        if unknown:
            prefix = f"{where}." if where else ""
            raise ValueError(f"{prefix}{unknown[0]} is not a known field (known: {', '.join(known)})")
        self.d, self.where = d, where

    def name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def num(self, key: str, default: float | None, lo: float | None = None, hi: float | None = None,
            lo_open: bool = False, optional: bool = False) -> float | None:
        v = self.d.get(key, default)
        if v is None and optional:
            return None
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ValueError(f"{self.name(key)}={v!r} must be a number")
        if lo is not None and (v <= lo if lo_open else v < lo):
            raise ValueError(f"{self.name(key)}={v:g} must be {'>' if lo_open else '≥'} {lo:g}")
        if hi is not None and v > hi:
            raise ValueError(f"{self.name(key)}={v:g} must be ≤ {hi:g}")
        return float(v)

    def int_(self, key: str, default: int | None, lo: int, hi: int, optional: bool = False) -> int | None:
        v = self.d.get(key, default)
        if v is None and optional:
            return None
        if isinstance(v, bool) or not isinstance(v, int | float) or float(v) != int(v):
            raise ValueError(f"{self.name(key)}={v!r} must be a whole number")
        if not lo <= v <= hi:
            raise ValueError(f"{self.name(key)}={v} must be between {lo} and {hi}")
        return int(v)

    def str_(self, key: str, default: str | None, choices: tuple[str, ...] | None = None,
             optional: bool = False) -> str | None:
        v = self.d.get(key, default)
        if v is None and optional:
            return None
        if not isinstance(v, str) or (not choices and not v.strip()):
            raise ValueError(f"{self.name(key)}={v!r} must be a non-empty string")
        if choices and v not in choices:
            raise ValueError(f"{self.name(key)}={v!r} must be one of {', '.join(choices)}")
        return v

    def path_(self, key: str) -> str:
        v = self.d.get(key)
        return self.str_(key, None) if not isinstance(v, Path) else str(v)

    def bool_(self, key: str, default: bool) -> bool:
        v = self.d.get(key, default)
        if not isinstance(v, bool):
            raise ValueError(f"{self.name(key)}={v!r} must be true or false")
        return v

    def color(self, key: str, default: str) -> str:
        v = self.d.get(key, default)
        r, g, b = parse_color(v, self.name(key))
        return f"#{r:02x}{g:02x}{b:02x}"


def _transition(d: Any, where: str) -> Transition:
    r = _Reader(d, where, ("type", "duration"))
    kind = r.str_("type", "cut", TRANSITIONS)
    dur = r.num("duration", 0.0 if kind == "cut" else 0.5, lo=0.0, hi=10.0)
    if kind == "cut" and dur:
        raise ValueError(f"{where}.duration={dur:g} must be 0 for a cut")
    if kind != "cut" and dur == 0:
        raise ValueError(f"{where}.duration=0 must be > 0 for a {kind} (or use type 'cut')")
    return Transition(kind, dur)


def _clip(d: Any, where: str) -> ClipItem:
    if isinstance(d, dict) and "title" in d:
        r = _Reader(d, where, ("title", "duration", "font_size", "color", "background", "over",
                               "transition"))
        title = d["title"]
        if not isinstance(title, str) or not title.strip():
            raise ValueError(f"{where}.title={title!r} must be non-empty text")
        over = None
        if d.get("over") is not None:
            ro = _Reader(d["over"], f"{where}.over", ("clip", "time", "dim"))
            over = TitleOver(clip=ro.int_("clip", None, 0, 10_000), time=ro.num("time", 0.0, lo=0.0),
                             dim=ro.num("dim", 0.4, lo=0.0, hi=1.0))
        return ClipItem(title=title, duration=r.num("duration", 2.0, lo=0.0, hi=600.0, lo_open=True),
                        font_size=r.int_("font_size", None, 4, 1000, optional=True),
                        color=r.color("color", "#ffffff"), background=r.color("background", "#000000"),
                        over=over, transition=_transition(d.get("transition", {}), f"{where}.transition"))
    r = _Reader(d, where, ("path", "trim_in", "trim_out", "speed", "fit", "color_match", "volume",
                           "keep_pitch", "transition"))
    if "path" not in d:
        raise ValueError(f"{where} needs a 'path' (a video clip) or a 'title' (a title card)")
    item = ClipItem(path=r.path_("path"), trim_in=r.num("trim_in", 0.0, lo=0.0),
                    trim_out=r.num("trim_out", None, lo=0.0, lo_open=True, optional=True),
                    speed=r.num("speed", 1.0, lo=0.05, hi=20.0), fit=r.str_("fit", None, FITS, optional=True),
                    color_match=r.bool_("color_match", False), volume=r.num("volume", 1.0, lo=0.0, hi=4.0),
                    keep_pitch=r.bool_("keep_pitch", True),
                    transition=_transition(d.get("transition", {}), f"{where}.transition"))
    if item.trim_out is not None and item.trim_out <= item.trim_in:
        raise ValueError(f"{where}.trim_out={item.trim_out:g} must be > trim_in={item.trim_in:g}")
    return item


def _output(d: Any) -> OutputSpec:
    r = _Reader(d, "output", ("preset", "size", "fps", "codec", "crf", "encoder_preset", "fit",
                              "pad_color", "resample", "loudness", "true_peak"))
    size = d.get("size")
    if size is not None:
        if not (isinstance(size, list | tuple) and len(size) == 2 and
                all(isinstance(v, int) and not isinstance(v, bool) for v in size)):
            raise ValueError(f"output.size={size!r} must be [width, height] in whole pixels")
        for axis, v in zip(("width", "height"), size, strict=True):
            if not 16 <= v <= 8192 or v % 2:
                raise ValueError(f"output.size {axis}={v} must be an even number from 16 to 8192")
        size = (int(size[0]), int(size[1]))
    return OutputSpec(preset=r.str_("preset", "16:9", tuple(PRESETS)), size=size,
                      fps=r.num("fps", 24.0, lo=1.0, hi=240.0), codec=r.str_("codec", None, CODECS, True),
                      crf=r.int_("crf", 18, 0, 51), encoder_preset=r.str_("encoder_preset", "medium",
                                                                          ENCODER_PRESETS),
                      fit=r.str_("fit", "letterbox", FITS), pad_color=r.color("pad_color", "#000000"),
                      resample=r.str_("resample", "nearest", RESAMPLES),
                      loudness=r.num("loudness", -14.0, lo=-40.0, hi=-5.0, optional=True),
                      true_peak=r.num("true_peak", -1.0, lo=-9.0, hi=0.0))


def _audio(d: Any) -> AudioBed:
    r = _Reader(d, "audio", ("path", "offset", "volume", "fade_in", "fade_out", "loop", "duck_db",
                             "duck_attack", "duck_release"))
    return AudioBed(path=r.path_("path"), offset=r.num("offset", 0.0, lo=0.0),
                    volume=r.num("volume", 1.0, lo=0.0, hi=4.0), fade_in=r.num("fade_in", 0.5, lo=0.0, hi=60),
                    fade_out=r.num("fade_out", 0.5, lo=0.0, hi=60), loop=r.bool_("loop", True),
                    duck_db=r.num("duck_db", 12.0, lo=0.0, hi=60.0),
                    duck_attack=r.num("duck_attack", 0.25, lo=0.0, hi=10.0),
                    duck_release=r.num("duck_release", 0.5, lo=0.0, hi=10.0))


def load_spec(src: str | Path | dict[str, Any], base_dir: str | Path | None = None) -> SequenceSpec:
    """Read and validate a sequence spec from a JSON file or a dict; ValueError names the bad field.

    Relative paths in the spec resolve against `base_dir`: by default the spec file's folder, or
    the current directory for a dict.
    """
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    if isinstance(src, SequenceSpec):
        return src
    if isinstance(src, dict):
        d = src
    else:
        path = Path(src)
        if not path.is_file():
            raise ValueError(f"sequence spec {str(path)!r} does not exist")
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"sequence spec {str(path)!r} is not valid JSON: {e}") from None
        if base_dir is None:
            base = path.resolve().parent
    r = _Reader(d, "", ("version", "clips", "output", "audio", "drift_threshold"))
    if d.get("version") != VERSION:
        raise ValueError(f"version={d.get('version')!r} must be {VERSION}")
    clips_raw = d.get("clips")
    if not isinstance(clips_raw, list) or not clips_raw:
        raise ValueError(f"clips={clips_raw!r} must be a non-empty list")
    clips = [_clip(c, f"clips[{i}]") for i, c in enumerate(clips_raw)]
    if not any(not c.is_title for c in clips) and any(c.over for c in clips):
        raise ValueError("clips: a title over a frame needs a video clip")
    for i, c in enumerate(clips):
        if c.over is not None:
            j = c.over.clip
            if j >= len(clips) or clips[j].is_title:
                raise ValueError(f"clips[{i}].over.clip={j} must be the index of a video clip")
    last = clips[-1].transition
    if last.type != "cut":
        raise ValueError(f"clips[{len(clips) - 1}].transition.type={last.type!r} must be 'cut': "
                         "the last entry has no next entry")
    out = _output(d.get("output", {}))
    audio = None if d.get("audio") is None else _audio(d["audio"])
    return SequenceSpec(clips=clips, output=out, audio=audio,
                        drift_threshold=r.num("drift_threshold", 8.0, lo=0.0), base_dir=base)
