"""The audio bed: checked before encoding, rendered to a WAV as long as the video, muxed by write_video.

Looping and trimming use `postfx.assemble.fit_audio` (short fades at loop joins, fades in/out).
A non-looping bed shorter than the video is faded out where its sound ends — not at the video's
end, on silence — so the sound never stops with a click; silence follows it.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

RATE = 44_100
JOIN_FADE = 0.01   # seconds: the shortest fade where a non-looping bed stops before the video ends


def audio_duration(path: str | Path, where: str = "audio.path", *, known: float | None = None) -> float:
    """Seconds of sound in a file, from its header (`postfx.media.probe`: a sniffed, allowed container;
    nothing decoded); ValueError naming `where` (and the file's base name only) otherwise.

    `known`: the duration already recorded for this file (an upload's stored facts): no ffmpeg runs.
    """
    if known is not None:
        return float(known)
    from postfx.media import MediaRefused, probe
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{where}={p.name!r} does not exist")
    try:
        facts = probe(p)
    except MediaRefused as e:
        raise ValueError(f"{where}={p.name!r} {e.reason}") from None
    if not facts.has_audio:
        raise ValueError(f"{where}={p.name!r} has no audio stream")
    if facts.duration <= 0:
        raise ValueError(f"{where}={p.name!r}: cannot read its duration")
    return facts.duration


def build_bed(samples: np.ndarray, duration: float, *, loop: bool, volume: float, fade_in: float,
              fade_out: float, rate: int = RATE) -> np.ndarray:
    """The bed as float32 samples×channels, exactly round(duration × rate) long.

    Longer sound is cut at the video's end and faded out there; shorter sound loops (short fades
    at each join) or plays once, faded in and out (at least `JOIN_FADE` out), followed by silence.
    """
    from postfx.assemble import fit_audio

    want = int(round(duration * rate))
    if loop or len(samples) >= want:
        return fit_audio(samples, rate, duration, loop=loop, fade_in=fade_in, fade_out=fade_out,
                         volume=volume)
    sound = fit_audio(samples, rate, len(samples) / rate, loop=False, fade_in=fade_in,
                      fade_out=max(fade_out, JOIN_FADE), volume=volume)[:len(samples)]
    out = np.zeros((want, samples.shape[1]), np.float32)
    out[:len(sound)] = sound
    return out


def write_wav(samples: np.ndarray, path: str | Path, rate: int = RATE) -> Path:
    """Write float samples×channels (-1..1) as a 16-bit PCM WAV."""
    pcm = np.rint(np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(samples.shape[1])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return Path(path)


def bed_audio_spec(bed, path: Path, duration: float, tmpdir: Path):
    """Render the bed for `duration` seconds into `tmpdir` and return write_video's AudioSpec for it.

    The WAV already has its offset, length, volume and fades, so the AudioSpec changes nothing.
    """
    from postfx.assemble import AudioSpec, decode_audio

    samples = decode_audio(path, RATE, start=bed.offset, duration=duration)   # only what is heard
    data = build_bed(samples, duration, loop=bed.loop, volume=bed.volume, fade_in=bed.fade_in,
                     fade_out=bed.fade_out)
    wav = write_wav(data, tmpdir / "bed.wav")
    return AudioSpec(path=str(wav), offset=0.0, volume=1.0, fade_in=0.0, fade_out=0.0, loop=False)
