"""Sequence audio bed: loop or stop when shorter, trim with a fade when longer, measured in the output."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from postfx.assemble import decode_audio, write_video
from studio.clip import Clip
from studio.sequence import render_sequence
from studio.sequence.audio import build_bed

SR = 44_100
AMP = 0.5


def sine_wav(path: Path, seconds: float, freq: float = 441.0) -> Path:
    """A constant-amplitude mono sine (AMP) as a 16-bit WAV."""
    t = np.arange(int(seconds * SR)) / SR
    pcm = np.rint(AMP * np.sin(2 * np.pi * freq * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes(pcm.tobytes())
    return path


def video(path: Path, seconds: float, fps: float = 10) -> Path:
    n = int(round(seconds * fps))
    f = np.full((n, 32, 48, 3), 90, np.uint8)
    return write_video(Clip(f, fps), path, preset="ultrafast")


def rms(x: np.ndarray, t0: float, t1: float) -> float:
    seg = x[int(t0 * SR):int(t1 * SR)]
    return float(np.sqrt(np.mean(seg.astype(np.float64) ** 2)))


def render_with(tmp_path: Path, audio: dict, video_s: float) -> np.ndarray:
    v = video(tmp_path / "v.mp4", video_s)
    spec = {"version": 1, "output": {"size": [48, 32], "fps": 10, "encoder_preset": "ultrafast",
                                     "loudness": None},   # the bed's own levels, not normalised
            "clips": [{"path": str(v)}], "audio": audio}
    out = render_sequence(spec, tmp_path / "out.mp4")
    return decode_audio(out, SR, 1)[:, 0]


FULL = AMP / np.sqrt(2)   # RMS of the sine


@pytest.mark.parametrize("loop", [True, False])
def test_short_audio_loops_or_stops(tmp_path, loop):
    a = sine_wav(tmp_path / "a.wav", 1.0)
    x = render_with(tmp_path, {"path": str(a), "loop": loop, "fade_in": 0.1, "fade_out": 0.1}, 2.5)
    assert abs(len(x) / SR - 2.5) < 0.05
    assert rms(x, 0.3, 0.7) == pytest.approx(FULL, rel=0.08)
    if loop:   # the second and third passes sound; the faded video end is quiet
        assert rms(x, 1.3, 1.7) == pytest.approx(FULL, rel=0.08)
        assert rms(x, 2.0, 2.3) == pytest.approx(FULL, rel=0.08)
    else:      # silence after the sound stops, which fades out before it ends
        assert rms(x, 1.1, 2.4) < 0.01
        assert rms(x, 0.95, 1.0) < 0.5 * FULL


def test_long_audio_is_trimmed_with_a_fade(tmp_path):
    a = sine_wav(tmp_path / "a.wav", 4.0)
    x = render_with(tmp_path, {"path": str(a), "fade_in": 0.0, "fade_out": 0.5, "volume": 1.0}, 1.5)
    assert abs(len(x) / SR - 1.5) < 0.05
    assert rms(x, 0.2, 0.9) == pytest.approx(FULL, rel=0.08)
    # the fade covers the last 0.5 s: amplitude falls across it, to near zero at the end
    windows = [rms(x, t, t + 0.1) for t in (1.0, 1.1, 1.2, 1.3, 1.4)]
    assert all(b < a for a, b in zip(windows, windows[1:], strict=False))
    assert windows[0] > 0.75 * FULL and windows[-1] < 0.2 * FULL
    assert rms(x, 1.2, 1.3) == pytest.approx(0.5 * FULL, abs=0.15 * FULL)   # mid-fade: half


def test_offset_and_volume(tmp_path):
    a = tmp_path / "a.wav"
    t = np.arange(2 * SR) / SR
    sig = np.where(t < 1.0, 0.1, 0.6) * np.sin(2 * np.pi * 441 * t)   # quiet first second, loud after
    with wave.open(str(a), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes(np.rint(sig * 32767).astype("<i2").tobytes())
    x = render_with(tmp_path, {"path": str(a), "offset": 1.0, "volume": 0.5, "fade_in": 0, "fade_out": 0,
                               "loop": False}, 1.0)
    assert rms(x, 0.2, 0.8) == pytest.approx(0.3 / np.sqrt(2), rel=0.1)


def test_bed_joins_have_no_clicks():
    # a rising ramp 0 → 0.5 would jump by 0.5 at every hard join; faded joins keep steps small
    sig = np.linspace(0.0, 0.5, SR // 2, dtype=np.float32)[:, None]
    looped = build_bed(sig, 2.0, loop=True, volume=1.0, fade_in=0.0, fade_out=0.0)
    stopped = build_bed(sig, 2.0, loop=False, volume=1.0, fade_in=0.0, fade_out=0.0)
    assert looped.shape == stopped.shape == (2 * SR, 1)
    for bed in (looped, stopped):
        assert np.abs(np.diff(bed[:, 0])).max() < 0.01
    assert stopped[SR // 2:].max() == 0.0 and looped[SR + SR // 4] == pytest.approx(0.25, abs=1e-3)


def test_missing_audio_fails_before_encoding(tmp_path):
    v = video(tmp_path / "v.mp4", 0.5)
    spec = {"version": 1, "output": {"size": [48, 32], "fps": 10}, "clips": [{"path": str(v)}],
            "audio": {"path": str(tmp_path / "song.mp3")}}
    with pytest.raises(ValueError, match=r"audio\.path='.*song\.mp3' does not exist"):
        render_sequence(spec, tmp_path / "out.mp4")
    spec["audio"] = {"path": str(v)}   # a video without sound
    with pytest.raises(ValueError, match=r"audio\.path='.*v\.mp4' has no audio stream"):
        render_sequence(spec, tmp_path / "out.mp4")
    assert not (tmp_path / "out.mp4").exists()
