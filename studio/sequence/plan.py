"""Plan a sequence before any decoding or encoding: probe sources, place every entry on the timeline.

`plan_sequence(spec, out)` checks that every file exists and is long enough, that each transition
fits between its neighbours, that the audio bed is readable and that the output codec suits the
path; each failure is a ValueError naming the field (``clips[1].path='a.mp4' does not exist``).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..audio import SoundSpec
from ..clip import ClipSpec
from .conform import frame_count
from .spec import SequenceSpec

# A video source's frames, fps and size: the same shape as any clip's.
SourceInfo = ClipSpec


_PROBES: dict[tuple[str, int, int], SourceInfo] = {}


def probe_source(path: Path, where: str) -> SourceInfo:
    """Frames, fps and size of a video file or PNG frame folder; ValueError naming `where`.

    Results for files are remembered by (path, size, mtime), so re-planning (the page) is cheap.
    """
    if path.is_file():
        st = path.stat()
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
        if key not in _PROBES:
            if len(_PROBES) > 256:
                _PROBES.clear()
            _PROBES[key] = _probe(path, where)
        return _PROBES[key]
    return _probe(path, where)


_SOUNDS: dict[tuple[str, int, int], SoundSpec | None] = {}


def probe_sound_of(path: Path, known: dict[str, Any] | None = None) -> SoundSpec | None:
    """A source's own sound (a PNG folder's `audio.wav`), from its recorded facts when given (an
    upload's: no ffmpeg), else read once and remembered by (path, size, mtime)."""
    from postfx.sound import probe_sound, sound_of_facts
    recorded = isinstance(known, dict) and "has_audio" in known
    if recorded and (not known["has_audio"] or known.get("audio_rate")):
        return sound_of_facts(known)

    if path.is_dir():
        path = path / "audio.wav"
    if not path.is_file():
        return None
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SOUNDS:
        if len(_SOUNDS) > 256:
            _SOUNDS.clear()
        _SOUNDS[key] = probe_sound(path)
    return _SOUNDS[key]


def _probe(path: Path, where: str) -> SourceInfo:
    if path.is_dir():
        import cv2

        pngs = sorted(p for p in path.iterdir() if p.suffix.lower() == ".png")
        if not pngs:
            raise ValueError(f"{where}={str(path)!r} is a folder with no PNG frames")
        first = cv2.imread(str(pngs[0]), cv2.IMREAD_COLOR)
        if first is None:
            raise ValueError(f"{where}={str(path)!r}: {pngs[0].name} is not a readable PNG")
        fps_file = path / "fps.txt"
        fps = float(fps_file.read_text().strip()) if fps_file.is_file() else 8.0
        return SourceInfo(len(pngs), fps, int(first.shape[1]), int(first.shape[0]))
    if not path.is_file():
        raise ValueError(f"{where}={str(path)!r} does not exist")
    from postfx.assemble import probe_video

    try:
        info = probe_video(path)
    except (ValueError, RuntimeError, OSError) as e:
        raise ValueError(f"{where}={str(path)!r} is not a readable video ({e})") from None
    if not info.get("frames") or not info.get("fps"):
        raise ValueError(f"{where}={str(path)!r} has no video frames")
    return SourceInfo(int(info["frames"]), float(info["fps"]), int(info["width"]), int(info["height"]))


@dataclass
class EntryPlan:
    """One timeline entry placed on the output: its frames and where they start."""

    index: int
    kind: str                    # "clip" or "title"
    label: str
    frames: int                  # output frames of this entry
    start: int                   # first output frame
    overlap_in: int              # frames shared with the previous entry (its transition)
    transition_in: str           # type of that transition ("cut" for the first entry)
    path: Path | None = None
    source: SourceInfo | None = None
    sound: SoundSpec | None = None   # the clip's own sound (None: silent, or a title card)

    @property
    def end(self) -> int:
        """One past the last output frame."""
        return self.start + self.frames


@dataclass
class SequencePlan:
    """The whole timeline: entries, output size, fps, frame count, codec and warnings."""

    spec: SequenceSpec
    entries: list[EntryPlan]
    width: int
    height: int
    fps: float
    frames: int
    codec: str
    audio_path: Path | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def duration(self) -> float:
        """Seconds of output."""
        return self.frames / self.fps

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (for manifests and the page)."""
        return {"width": self.width, "height": self.height, "fps": self.fps, "frames": self.frames,
                "duration": round(self.duration, 4), "codec": self.codec, "warnings": list(self.warnings),
                "audio": self.audio_summary(),
                "entries": [{"index": e.index, "kind": e.kind, "label": e.label, "frames": e.frames,
                             "start": e.start, "overlap_in": e.overlap_in,
                             "transition_in": e.transition_in,
                             "sound": None if e.sound is None else {"rate": e.sound.rate,
                                                                     "channels": e.sound.channels}}
                            for e in self.entries]}

    def audio_summary(self) -> dict[str, Any] | None:
        """What the export's sound is made of (None: it has none)."""
        clips = [e.index for e in self.entries if e.sound is not None and self.spec.clips[e.index].volume > 0]
        bed = self.spec.audio
        if not clips and bed is None:
            return None
        o = self.spec.output
        return {"clip_sounds": clips, "bed": bed is not None,
                "ducking_db": bed.duck_db if bed is not None and clips else 0.0,
                "loudness_lufs": o.loudness, "true_peak_dbtp": o.true_peak, "rate": 48_000,
                "beside": self.codec in ("gif", "png")}

    def to_text(self) -> str:
        """A readable table of the timeline."""
        rows = [f"{'#':>2}  {'entry':<34} {'start':>7} {'frames':>6} {'in':<12}"]
        for e in self.entries:
            rows.append(f"{e.index:>2}  {e.label[:34]:<34} {e.start / self.fps:>6.2f}s {e.frames:>6} "
                        f"{e.transition_in}{f' {e.overlap_in}f' if e.overlap_in else ''}")
        rows.append(f"total {self.frames} frames, {self.duration:.2f} s at {self.fps:g} fps, "
                    f"{self.width}×{self.height}, {self.codec}")
        a = self.audio_summary()
        if a:
            loud = "as mixed" if a["loudness_lufs"] is None else \
                f"normalised to {a['loudness_lufs']:g} LUFS, true peak ≤ {a['true_peak_dbtp']:g} dBTP"
            bed = f", bed ducked {a['ducking_db']:g} dB under them" if a["bed"] else ""
            rows.append(f"sound: clips {a['clip_sounds'] or 'none'} with their own sound{bed}"
                        f"; {loud}{'; saved beside as WAV' if a['beside'] else ''}")
        return "\n".join(rows + [f"warning: {w}" for w in self.warnings])


def _clip_frames(spec: SequenceSpec, i: int, src: SourceInfo, where: str) -> int:
    c = spec.clips[i]
    half = 0.5 / src.fps
    if c.trim_in >= src.duration - 1e-9:
        raise ValueError(f"{where}.trim_in={c.trim_in:g} is at or past the end of the clip "
                         f"({src.duration:.3f} s)")
    end = src.duration if c.trim_out is None else c.trim_out
    if end > src.duration + half:
        raise ValueError(f"{where}.trim_out={c.trim_out:g} is past the end of the clip "
                         f"({src.duration:.3f} s)")
    return frame_count((end - c.trim_in) / c.speed, spec.output.fps)


def plan_sequence(spec: SequenceSpec, out: str | Path | None = None, *,
                  known: dict[str, Any] | None = None) -> SequencePlan:
    """Probe every source and place every entry; ValueError naming the field if anything is off.

    `known` maps a source path (as resolved from the spec) to facts already recorded for it (an
    upload's: a `SourceInfo` for a video, seconds for the audio bed); those files are not probed.
    """
    known = known or {}
    from postfx.assemble import codec_for

    o = spec.output
    try:
        codec = codec_for(out if out is not None else "x.mp4", o.codec)
    except ValueError as e:
        raise ValueError(f"output.codec: {e}") from None
    if o.resample == "rife" and importlib.util.find_spec("postfx.interpolate") is None:
        raise ValueError("output.resample='rife' needs postfx.interpolate, which is not available")
    for i, c in enumerate(spec.clips):
        if c.color_match and importlib.util.find_spec("postfx.color") is None:
            raise ValueError(f"clips[{i}].color_match needs postfx.color, which is not available")
    entries: list[EntryPlan] = []
    sources: dict[int, SourceInfo] = {}
    for i, c in enumerate(spec.clips):
        where = f"clips[{i}]"
        if c.is_title:
            n = frame_count(c.duration, o.fps)
            label = f"title: {c.title.splitlines()[0] if c.title.strip() else ''}"
            entries.append(EntryPlan(i, "title", label, n, 0, 0, "cut"))
            continue
        path = spec.resolve(c.path)
        src = known.get(str(path)) or probe_source(path, f"{where}.path")
        sources[i] = src
        n = _clip_frames(spec, i, src, where)
        entries.append(EntryPlan(i, "clip", path.name, n, 0, 0, "cut", path, src,
                                 probe_sound_of(path, known.get("sound:" + str(path)))))
    for i, c in enumerate(spec.clips):
        if c.over is not None:
            src = sources[c.over.clip]
            if c.over.time >= src.duration:
                raise ValueError(f"clips[{i}].over.time={c.over.time:g} is past the end of clip "
                                 f"{c.over.clip} ({src.duration:.3f} s)")
    # transitions: overlap the neighbours by round(duration * fps) frames
    overlaps = [0] * len(entries)
    for i, c in enumerate(spec.clips[:-1]):
        t = c.transition
        if t.type == "cut":
            continue
        k = int(round(t.duration * o.fps))
        where = f"clips[{i}].transition.duration={t.duration:g}"
        if k < 1:
            raise ValueError(f"{where} is shorter than one frame at {o.fps:g} fps")
        if k > entries[i].frames - overlaps[i]:
            raise ValueError(f"{where} is longer than what is left of entry {i} "
                             f"({(entries[i].frames - overlaps[i]) / o.fps:.3f} s)")
        if k > entries[i + 1].frames:
            raise ValueError(f"{where} is longer than entry {i + 1} ({entries[i + 1].frames / o.fps:.3f} s)")
        overlaps[i + 1] = k
    pos = 0
    for i, e in enumerate(entries):
        e.overlap_in = overlaps[i]
        e.transition_in = spec.clips[i - 1].transition.type if i else "cut"
        pos -= e.overlap_in
        e.start = pos
        pos += e.frames
    audio_path = None
    if spec.audio is not None:
        from .audio import audio_duration

        audio_path = spec.resolve(spec.audio.path)
        secs = audio_duration(audio_path, "audio.path", known=known.get(str(audio_path)))
        if spec.audio.offset >= secs:
            raise ValueError(f"audio.offset={spec.audio.offset:g} is at or past the end of the audio "
                             f"({secs:.3f} s)")
    return SequencePlan(spec, entries, o.width, o.height, o.fps, pos, codec, audio_path)
