"""A clip's final sound: its own (generated) sound, a creator's track replacing it or mixed under it.

The request's `audio` names the creator's track (a file; the API only ever resolves it from an
upload id), `audio_mode` says whether it replaces the clip's sound or goes under it, `audio_gain`
sets its level in dB and `audio_fade` fades it in and out.  `plan_sound` is the ledger's audio row
(nothing is decoded), `final_sound` makes the samples the encode muxes and the manifest's record.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from studio.audio import Audio, SoundSpec, conform, db_to_gain, peak_dbfs, samples_for, to_channels
from studio.clip import ClipSpec

log = logging.getLogger(__name__)

TRACK_RATE = 48_000
TRACK_CHANNELS = 2
AUDIO_MODES = ("replace", "mix")


def _where(codec: str) -> str:
    from .mux import AUDIO_CODEC, MUX_RATE
    if codec == "gif":
        return "saved beside the GIF as <out>.wav (a GIF cannot carry sound)"
    if codec == "png":
        return "saved beside the frames as audio.wav (a PNG folder cannot carry sound)"
    name = {"aac": "AAC", "libopus": "Opus"}[AUDIO_CODEC[codec]]
    return f"muxed as {name} {MUX_RATE // 1000} kHz"


def plan_sound(own: SoundSpec | None, req: Any, base: ClipSpec, final: ClipSpec, codec: str,
               source: str = "generated") -> dict[str, Any] | None:
    """The ledger's audio row: rate, channels, duration, and what happens to the sound (None: silent)."""
    track = getattr(req, "audio", None)
    mode = getattr(req, "audio_mode", "replace")
    if own is None and not track:
        return None
    if track and not Path(str(track)).is_file():   # said before the run, not after it (file name only)
        raise ValueError(f"audio: the track {Path(str(track)).name!r} does not exist")
    steps = []
    if own is not None:
        steps.append(f"{source} {own.describe()}")
        if abs(final.duration - base.duration) > 0.5 / max(own.rate, 1):
            steps.append(f"kept through the stages, fitted to {final.duration:.3f} s")
        elif track is None or mode == "mix":
            steps.append("kept through the stages")
    if track:
        gain = float(getattr(req, "audio_gain", 0.0))
        how = "replaces it" if own is not None and mode == "replace" else \
            "mixed under it" if own is not None else "under the clip"
        steps.append(f"your track {how} ({gain:+g} dB, fades {float(req.audio_fade):g} s)")
    steps.append(_where(codec))
    out_rate = own.rate if own is not None and (not track or mode == "mix") else TRACK_RATE
    if track and not (own is not None and mode == "mix"):
        ch = TRACK_CHANNELS
    else:
        ch = max(own.channels if own else 1, TRACK_CHANNELS if track else 1)
    return {"stage": "audio", "label": "audio: " + "; ".join(steps), "rate": int(out_rate),
            "channels": int(ch), "duration": round(final.duration, 6),
            "source": (source if own is not None else "") + ("+track" if track else "")}


def track_samples(req: Any, seconds: float, rate: int, channels: int) -> np.ndarray:
    """The creator's track, looped or trimmed to `seconds`, at `audio_gain` with `audio_fade` fades."""
    from .assemble import AudioSpec, decode_audio, fit_audio
    from .sound import probe_sound
    spec = AudioSpec(req.audio, fade_in=req.audio_fade, fade_out=req.audio_fade).check()
    own = probe_sound(spec.path)     # a mono track is copied to both sides (ffmpeg's upmix is -3 dB)
    arr = to_channels(decode_audio(spec.path, rate, own.channels if own else channels), channels)
    return fit_audio(arr, rate, seconds, loop=True, fade_in=spec.fade_in, fade_out=spec.fade_out,
                     volume=db_to_gain(float(getattr(req, "audio_gain", 0.0))))


def final_sound(own: Audio | None, req: Any, seconds: float
                ) -> tuple[Audio | None, dict[str, Any] | None]:
    """The sound to encode under a clip of `seconds`, and the manifest's record of how it was made."""
    track = getattr(req, "audio", None)
    mode = getattr(req, "audio_mode", "replace")
    if mode not in AUDIO_MODES:
        raise ValueError(f"audio_mode={mode!r} is not one of {', '.join(AUDIO_MODES)}")
    rec: dict[str, Any] = {}
    if own is not None:
        rec["own"] = {"rate": int(own.rate), "channels": own.channels, "duration": round(own.duration, 6),
                      "samples": int(own.samples.shape[0])}
    if not track:
        return own, ({**rec, "made": "own"} if own is not None else None)
    rec["track"] = {"file": str(track), "mode": mode, "gain_db": float(getattr(req, "audio_gain", 0.0)),
                    "fade": float(req.audio_fade)}
    if own is None or mode == "replace":
        data = track_samples(req, seconds, TRACK_RATE, TRACK_CHANNELS)
        return Audio(data, TRACK_RATE), {**rec, "made": "track"}
    ch = max(own.channels, TRACK_CHANNELS)
    data = conform(own, own.rate, ch)
    n = samples_for(seconds, own.rate)
    data = np.pad(data, ((0, max(0, n - data.shape[0])), (0, 0)))[:n]
    mix = data + track_samples(req, seconds, own.rate, ch)
    peak = peak_dbfs(mix)
    if peak > -0.1:   # the sum would clip: lower the whole mix just under full scale, and record it
        g = db_to_gain(-0.1 - peak)
        mix *= g
        rec["scaled_db"] = round(-0.1 - peak, 2)
        log.info("own sound + track peaked at %.2f dBFS: lowered by %.2f dB", peak, -0.1 - peak)
    return Audio(mix.astype(np.float32), int(own.rate)), {**rec, "made": "mix"}
