"""Putting a clip's sound into the file: the mux input and codec, and the WAV written beside a GIF
or a PNG folder (neither can carry sound).  No decoding here (that is `postfx.sound`)."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from studio.audio import Audio, fit_length, resample, samples_for

MUX_RATE = 48_000          # the rate every muxed track is written at (AAC and Opus both take it)
AUDIO_CODEC = {"h264": "aac", "h265": "aac", "prores": "aac", "vp9": "libopus"}
BESIDE = ("gif", "png")    # outputs that cannot carry sound: it is saved as a WAV beside them


def write_wav(path: str | Path, audio: Audio) -> Path:
    """Write `audio` as a 16-bit PCM WAV at its own rate."""
    pcm = np.rint(np.clip(audio.samples, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(audio.channels)
        w.setsampwidth(2)
        w.setframerate(int(audio.rate))
        w.writeframes(pcm.tobytes())
    return Path(path)


def for_mux(audio: Audio, seconds: float) -> Audio:
    """`audio` at `MUX_RATE`, exactly `seconds` long (the video's duration, to the sample)."""
    samples = resample(audio.samples, int(audio.rate), MUX_RATE)
    return Audio(fit_length(samples, samples_for(seconds, MUX_RATE), MUX_RATE), MUX_RATE)


def mux_args(audio: Audio, raw: Path, codec: str) -> tuple[list[str], list[str]]:
    """(input args, output args) that put `audio` (already `for_mux`) under the video as track 1."""
    raw.write_bytes(np.ascontiguousarray(audio.samples, np.float32).tobytes())
    inp = ["-f", "f32le", "-ar", str(audio.rate), "-ac", str(audio.channels), "-i", str(raw)]
    ac = AUDIO_CODEC[codec]
    out = ["-map", "0:v:0", "-map", "1:a:0", "-c:a", ac, "-b:a", "192k" if ac == "aac" else "160k"]
    return inp, out


def beside_path(out: Path, codec: str) -> Path:
    """Where the WAV of a GIF (`<out>.wav`) or a PNG folder (`<folder>/audio.wav`) goes."""
    return out / "audio.wav" if codec == "png" else out.with_name(out.name + ".wav")
