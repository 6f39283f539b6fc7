"""A clip's sound on disk and through ffmpeg: probe, read, tempo change, WAV, and the mux input.

Decoding goes through `postfx.assemble.decode_audio` (the one audio decode entry point); this
module only asks ffmpeg what a file holds and hands float samples to the encoder losslessly.
"""

from __future__ import annotations

import logging
import re
import subprocess
from pathlib import Path

import numpy as np

from studio.audio import Audio, SoundSpec, fit_length, resample, samples_for

from .mux import AUDIO_CODEC, BESIDE, MUX_RATE, beside_path, for_mux, mux_args, write_wav

__all__ = ["AUDIO_CODEC", "BESIDE", "MUX_RATE", "audio_streams", "beside_path", "for_mux", "mux_args",
           "probe_sound", "read_sound", "stretch", "write_wav"]

log = logging.getLogger(__name__)

_STREAM = re.compile(r"Stream #\d+:\d+.*?Audio: [^,]+, (\d+) Hz, ([^,]+),")
_CHANNELS = {"mono": 1, "stereo": 2, "2.1": 3, "quad": 4, "5.0": 5, "5.1": 6, "6.1": 7, "7.1": 8}


def _ffmpeg() -> str:
    from .assemble import ffmpeg_exe
    return ffmpeg_exe()


def probe_sound(path: str | Path) -> SoundSpec | None:
    """The first audio stream's rate, channels (at most 2) and the file's duration; None when it has
    no sound or is not a file the studio reads.  One header read through `postfx.media` (the format
    sniffed from its bytes and forced, `file` protocol only: nothing a file names is followed)."""
    from .media import MediaRefused, probe
    p = Path(path)
    if not p.is_file():
        return None
    try:
        facts = probe(p)
    except MediaRefused:
        return None
    return sound_of_facts(facts.to_dict())


def sound_of_facts(facts: dict) -> SoundSpec | None:
    """A `SoundSpec` from recorded media facts (an upload's), or None when they hold no sound."""
    if not facts.get("has_audio") or not facts.get("audio_rate"):
        return None
    return SoundSpec(int(facts["audio_rate"]), min(max(int(facts.get("audio_channels") or 2), 1), 2),
                     float(facts.get("duration") or 0.0))


def read_sound(path: str | Path, rate: int | None = None) -> Audio | None:
    """A file's sound as `Audio` (its own rate unless `rate`, at most stereo), or None without sound."""
    from .assemble import decode_audio
    spec = probe_sound(path)
    if spec is None:
        return None
    r = int(rate or spec.rate)
    return Audio(np.ascontiguousarray(decode_audio(path, r, spec.channels)), r)


def stretch(samples: np.ndarray, rate: int, speed: float, keep_pitch: bool) -> np.ndarray:
    """Play `samples` `speed` times as fast: ffmpeg's atempo (pitch kept) or resampling (pitch moves).

    The result is exactly round(n / speed) samples long.
    """
    n_out = max(1, samples_for(samples.shape[0] / rate / speed, rate))
    if abs(speed - 1.0) < 1e-9 or samples.shape[0] == 0:
        return fit_length(samples, n_out, rate, declick=False)
    if not keep_pitch:   # the samples played at rate·speed: time and pitch move together
        from fractions import Fraction
        fr = Fraction(speed).limit_denominator(64)    # e.g. 1.5 = 3/2: keep 2 samples of every 3
        out = resample(samples, fr.numerator, fr.denominator)
        return fit_length(out, n_out, rate, declick=False)
    chain, s = [], float(speed)
    while s > 2.0:       # atempo takes 0.5..2 per instance on every ffmpeg; chain for more
        chain.append(2.0)
        s /= 2.0
    while s < 0.5:
        chain.append(0.5)
        s /= 0.5
    chain.append(s)
    ch = samples.shape[1]
    af = ",".join(f"atempo={x:.9f}" for x in chain)
    proc = subprocess.run([_ffmpeg(), "-v", "error", "-f", "f32le", "-ar", str(rate), "-ac", str(ch),
                           "-i", "-", "-af", af, "-f", "f32le", "-ar", str(rate), "-ac", str(ch), "-"],
                          input=np.ascontiguousarray(samples, np.float32).tobytes(), capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg atempo={speed:g} failed: {proc.stderr.decode(errors='replace')[-300:]}")
    out = np.frombuffer(proc.stdout, np.float32).reshape(-1, ch)
    return fit_length(out, n_out, rate)


def audio_streams(path: str | Path) -> dict[str, float | int] | None:
    """The decoded sound of a written file: rate, channels, samples and seconds (None without sound)."""
    spec = probe_sound(path)
    if spec is None:
        return None
    a = read_sound(path)
    assert a is not None
    return {"rate": a.rate, "channels": a.channels, "samples": int(a.samples.shape[0]),
            "duration": a.samples.shape[0] / a.rate}
