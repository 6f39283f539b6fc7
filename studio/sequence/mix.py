"""The sequence's sound: each clip's own sound under its span, the bed ducked under them, normalised.

- A clip's sound is cut by its trim, played at its speed (pitch kept with ffmpeg's atempo, or
  moved with it by resampling: `keep_pitch`), set to its `volume` and laid exactly under the
  clip's frames.  A transition crossfades the two sounds (equal power) across the overlap; fades
  through black or white dip through silence, as the picture does; a cut gets 5 ms ramps.
- The bed (`audio`) dips by `duck_db` while any clip has sound: the dip takes `duck_attack`
  seconds and is complete where the clip's sound starts, and takes `duck_release` to recover.
- The mix is then normalised to `output.loudness` LUFS integrated with a true peak at or under
  `output.true_peak` dBTP (`postfx.loudness`).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..audio import DECLICK_S, Audio, fit_length, level_dbfs, samples_for, to_channels
from ..context import RunContext
from .plan import EntryPlan, SequencePlan

log = logging.getLogger(__name__)

RATE = 48_000
CHANNELS = 2


def _span(plan: SequencePlan, e: EntryPlan) -> tuple[int, int]:
    """First sample and sample count of an entry on the output (the frames' own edges)."""
    a = samples_for(e.start / plan.fps, RATE)
    b = samples_for(e.end / plan.fps, RATE)
    return a, b - a


def clip_sound(plan: SequencePlan, e: EntryPlan) -> np.ndarray | None:
    """A clip entry's own sound after trim, speed (pitch kept or not) and volume, as long as its span."""
    from postfx.sound import read_sound, stretch

    c = plan.spec.clips[e.index]
    if e.sound is None or c.volume <= 0 or e.path is None or e.source is None:
        return None
    src = e.path / "audio.wav" if e.path.is_dir() else e.path
    a = read_sound(src, RATE)
    if a is None:
        return None
    end = e.source.duration if c.trim_out is None else c.trim_out
    want = samples_for(end - c.trim_in, RATE)
    start = samples_for(c.trim_in, RATE)
    seg = fit_length(a.samples[start:start + want], want, RATE)
    seg = stretch(seg, RATE, c.speed, c.keep_pitch)
    seg = fit_length(seg, _span(plan, e)[1], RATE)
    return to_channels(seg, CHANNELS) * np.float32(c.volume)


def _fade(n: int, kind: str, rising: bool) -> np.ndarray:
    """The gain across a transition's n samples for the sound coming in (rising) or going out."""
    p = (np.arange(n, dtype=np.float64) + 0.5) / max(n, 1)
    if kind in ("fade_black", "fade_white"):   # out in the first half, in in the second: a dip
        g = np.clip(2 * p - 1, 0, 1) if rising else np.clip(1 - 2 * p, 0, 1)
        g = np.sin(g * math.pi / 2) ** 2
    else:                                      # equal power: the sum keeps its level
        g = np.sin(p * math.pi / 2) if rising else np.cos(p * math.pi / 2)
    return g.astype(np.float32)


def _edge_gains(plan: SequencePlan, i: int, n: int) -> np.ndarray:
    """Entry i's gain over its n samples: transitions in and out, 5 ms ramps at cuts."""
    e = plan.entries[i]
    g = np.ones(n, np.float32)
    k_in = min(n, samples_for(e.overlap_in / plan.fps, RATE))
    if k_in:
        g[:k_in] *= _fade(k_in, e.transition_in, True)
    else:
        d = min(n // 2, int(DECLICK_S * RATE))
        g[:d] *= np.linspace(0, 1, d, dtype=np.float32)
    nxt = plan.entries[i + 1] if i + 1 < len(plan.entries) else None
    k_out = min(n, samples_for(nxt.overlap_in / plan.fps, RATE)) if nxt is not None else 0
    if k_out:
        g[n - k_out:] *= _fade(k_out, nxt.transition_in, False)
    else:
        d = min(n // 2, int(DECLICK_S * RATE))
        g[n - d:] *= np.linspace(1, 0, d, dtype=np.float32)
    return g


def duck_gain(active: np.ndarray, duck_db: float, attack_s: float, release_s: float) -> np.ndarray:
    """The bed's gain per sample: -duck_db where `active`, ramping down over the attack before each
    active run and back up over the release after it (raised-cosine ramps)."""
    n = active.shape[0]
    if duck_db <= 0 or not active.any():
        return np.ones(n, np.float32)
    idx = np.flatnonzero(active)
    t = np.arange(n)
    pos = np.searchsorted(idx, t)
    nxt = np.where(pos < len(idx), idx[np.minimum(pos, len(idx) - 1)], np.iinfo(np.int64).max // 2)
    prv = np.where(pos > 0, idx[np.maximum(pos - 1, 0)], -(np.iinfo(np.int64).max // 2))
    att, rel = max(1, int(attack_s * RATE)), max(1, int(release_s * RATE))
    depth = np.maximum(1.0 - (nxt - t) / att, 1.0 - (t - prv) / rel)
    depth = np.where(active, 1.0, np.clip(depth, 0.0, 1.0))
    depth = 0.5 - 0.5 * np.cos(np.pi * depth)
    return np.power(10.0, -duck_db * depth / 20.0).astype(np.float32)


def bed_samples(plan: SequencePlan, tmpdir: Path) -> np.ndarray | None:
    """The bed cut to the export's length (offset, loop, volume, fades) at the mix rate, or None."""
    from postfx.assemble import decode_audio

    from .audio import bed_audio_spec
    if plan.spec.audio is None or plan.audio_path is None:
        return None
    wav = bed_audio_spec(plan.spec.audio, plan.audio_path, plan.duration, tmpdir)
    return fit_length(decode_audio(wav.path, RATE, CHANNELS), samples_for(plan.duration, RATE), RATE)


def mix_sequence(plan: SequencePlan, tmpdir: Path, ctx: RunContext | None = None
                 ) -> tuple[Audio | None, dict[str, Any] | None]:
    """The export's sound (exactly as long as its frames) and a report, or (None, None) if silent."""
    total = samples_for(plan.duration, RATE)
    out = np.zeros((total, CHANNELS), np.float32)
    active = np.zeros(total, bool)
    levels: dict[int, float] = {}
    for i, e in enumerate(plan.entries):
        if ctx is not None:
            ctx.check_cancel()
        if e.kind != "clip":
            continue
        seg = clip_sound(plan, e)
        if seg is None:
            continue
        a, n = _span(plan, e)
        n = min(n, total - a)
        seg = seg[:n] * _edge_gains(plan, i, n)[:, None]
        out[a:a + n] += seg
        active[a:a + n] = True
        levels[e.index] = round(level_dbfs(seg), 2)
    bed = bed_samples(plan, tmpdir)
    if bed is None and not levels:
        return None, None
    report: dict[str, Any] = {"rate": RATE, "channels": CHANNELS, "samples": total,
                              "clip_levels_dbfs": levels}
    if bed is not None:
        b = plan.spec.audio
        out += bed * duck_gain(active, b.duck_db, b.duck_attack, b.duck_release)[:, None]
        report["bed"] = {"duck_db": b.duck_db, "attack_s": b.duck_attack, "release_s": b.duck_release}
    o = plan.spec.output
    if o.loudness is not None:
        from postfx.loudness import normalise
        out, rep = normalise(out, RATE, o.loudness, o.true_peak)
        report["loudness"] = rep.to_dict()
    return Audio(np.ascontiguousarray(out, np.float32), RATE), report


def mix_preview(plan: SequencePlan, tmpdir: Path) -> tuple[np.ndarray, int]:
    """The mix alone (no video) as samples and rate, for the page's player."""
    audio, _ = mix_sequence(plan, tmpdir)
    if audio is None:
        return np.zeros((samples_for(plan.duration, RATE), CHANNELS), np.float32), RATE
    return audio.samples, RATE


__all__ = ["RATE", "bed_samples", "clip_sound", "duck_gain", "mix_preview", "mix_sequence"]
