"""Sequences mix sound: each clip's tone under its own span only, the bed ducked while a clip
sounds, crossfades, speed with and without pitch, and the export normalised to its loudness target.

Everything is measured in the encoded file, decoded again with the bundled ffmpeg: tones by FFT
per window, loudness with pyloudnorm, durations by counting frames and samples.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from postfx.assemble import decode_audio, probe_video, write_video
from postfx.loudness import integrated_lufs, true_peak_dbtp
from postfx.sound import audio_streams, write_wav
from studio.audio import Audio
from studio.clip import Clip
from studio.sequence import render_sequence

SR = 48_000
FPS = 10
A_HZ, B_HZ, BED_HZ = 600.0, 1500.0, 200.0


def tone(seconds: float, freq: float, amp: float = 0.3, rate: int = SR) -> np.ndarray:
    """A stereo sine as float32."""
    t = np.arange(int(round(seconds * rate))) / rate
    x = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([x, x], axis=1)


def clip_with(path: Path, seconds: float, freq: float | None, rate: int = SR) -> Path:
    """A tiny grey clip of `seconds` at 10 fps carrying a tone (or no sound)."""
    frames = np.full((int(round(seconds * FPS)), 32, 48, 3), 90, np.uint8)
    audio = None if freq is None else Audio(tone(seconds, freq, rate=rate), rate)
    return write_video(Clip(frames, float(FPS), audio=audio), path, preset="ultrafast")


def level_db(x: np.ndarray, t0: float, t1: float, freq: float) -> float:
    """The amplitude of `freq` in [t0, t1) in dB (1.0 = 0 dB)."""
    seg = x[int(round(t0 * SR)):int(round(t1 * SR)), 0].astype(np.float64)
    w = np.hanning(len(seg))                     # Hann-windowed DFT at exactly `freq` (no bin scalloping)
    ph = 2 * np.pi * freq * np.arange(len(seg)) / SR
    amp = 2 * np.hypot(np.dot(seg * w, np.cos(ph)), np.dot(seg * w, np.sin(ph))) / w.sum()
    return float(20 * np.log10(amp + 1e-12))


def spec_of(clips: list[dict], bed: Path | None = None, **bed_kw) -> dict:
    d = {"version": 1, "output": {"size": [48, 32], "fps": FPS, "encoder_preset": "ultrafast"},
         "clips": clips}
    if bed is not None:
        d["audio"] = {"path": str(bed), "fade_in": 0, "fade_out": 0, **bed_kw}
    return d


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("mix")
    return {"a": clip_with(d / "a.mp4", 1.5, A_HZ, rate=24_000),   # LTX-2's rate: resampled on the way
            "b": clip_with(d / "b.mp4", 1.5, B_HZ),
            "bed": write_wav(d / "bed.wav", Audio(tone(2.0, BED_HZ, 0.2), SR)),   # loops under 4.5 s
            "dir": d}


def test_two_tones_and_a_ducked_bed(media, tmp_path):
    """A (600 Hz) 1.5 s, a 1.5 s title, B (1500 Hz) 1.5 s; the bed (200 Hz) ducks 12 dB under A and B."""
    spec = spec_of([{"path": str(media["a"])}, {"title": "between", "duration": 1.5},
                    {"path": str(media["b"])}], media["bed"], duck_db=12.0, duck_attack=0.2,
                   duck_release=0.3)
    out = render_sequence(spec, tmp_path / "mix.mp4")
    v, a = probe_video(out), audio_streams(out)
    assert v["frames"] == 45 and v["fps"] == FPS
    assert a["samples"] == 45 * SR // FPS          # 4.5 s to the sample: exactly the video's length
    x = decode_audio(out, SR, 2)
    spans = {A_HZ: (0.0, 1.5), B_HZ: (3.0, 4.5)}
    for t0 in np.arange(0.0, 4.5, 0.1):
        t1 = t0 + 0.1
        for f, (s, e) in spans.items():
            lv = level_db(x, t0, t1, f)
            if s + 0.02 <= t0 and t1 <= e - 0.02:
                assert lv > -25, f"{f:g} Hz missing at {t0:.1f}-{t1:.1f} s ({lv:.1f} dB)"
            elif t1 <= s - 0.02 or t0 >= e + 0.02:
                assert lv < -70, f"{f:g} Hz heard outside its clip at {t0:.1f}-{t1:.1f} s ({lv:.1f} dB)"
    # the bed: full under the title once released (1.8 s) until the attack before B (2.8 s)
    free = level_db(x, 1.9, 2.7, BED_HZ)
    for s, e in spans.values():
        ducked = level_db(x, s + 0.3, e - 0.3, BED_HZ)
        assert free - ducked == pytest.approx(12.0, abs=1.0)
    assert integrated_lufs(x, SR) == pytest.approx(-14.0, abs=1.0)
    assert true_peak_dbtp(x, SR) <= -1.0 + 0.3     # AAC adds a little: the mix itself is capped at -1
    m = __import__("json").loads(Path(str(out) + ".json").read_text())
    assert m["audio"]["loudness"]["after_lufs"] == pytest.approx(-14.0, abs=0.1)
    assert m["plan"]["audio"]["clip_sounds"] == [0, 2]


def test_crossfade_speed_and_pitch(media, tmp_path):
    """A crossfades into B; B at speed 2 keeps its pitch; A at speed 2 without it sounds an octave up."""
    spec = spec_of([{"path": str(media["a"]), "transition": {"type": "crossfade", "duration": 0.5}},
                    {"path": str(media["b"]), "speed": 2.0},
                    {"path": str(media["a"]), "speed": 2.0, "keep_pitch": False}])
    spec["output"]["loudness"] = None
    out = render_sequence(spec, tmp_path / "x.mp4")
    x = decode_audio(out, SR, 2)
    # A 1.5 s; B×2 0.75 s = 8 frames from 1.0 s (0.5 s overlap); then A×2, 8 frames from 1.8 s: 2.6 s
    assert probe_video(out)["frames"] == 26 and x.shape[0] == 26 * SR // FPS
    assert level_db(x, 0.2, 0.9, A_HZ) > -13 and level_db(x, 0.2, 0.9, B_HZ) < -70
    early, late = level_db(x, 1.05, 1.2, A_HZ), level_db(x, 1.3, 1.45, A_HZ)
    assert early > late + 3                        # A fades out across the overlap ...
    assert level_db(x, 1.05, 1.2, B_HZ) < level_db(x, 1.3, 1.45, B_HZ) - 3   # ... while B fades in
    assert level_db(x, 1.55, 1.7, B_HZ) > -13      # B×2 with its pitch kept: still 1500 Hz
    assert level_db(x, 1.9, 2.5, 2 * A_HZ) > -13   # A×2, pitch moved: 1200 Hz ...
    assert level_db(x, 1.9, 2.5, A_HZ) < -40       # ... and no 600 Hz


def test_no_sound_anywhere_writes_no_track(tmp_path):
    v = clip_with(tmp_path / "silent.mp4", 0.5, None)
    out = render_sequence(spec_of([{"path": str(v)}]), tmp_path / "s.mp4")
    assert audio_streams(out) is None


def test_gif_export_saves_the_mix_beside(media, tmp_path):
    out = render_sequence(spec_of([{"path": str(media["b"])}]), tmp_path / "s.gif")
    wav = tmp_path / "s.gif.wav"
    assert wav.is_file()
    a = audio_streams(wav)
    assert a["samples"] == 15 * SR // FPS and probe_video(out)["frames"] == 15


def test_true_peak_sees_between_samples_and_the_limiter_keeps_the_target():
    from postfx.loudness import normalise
    n = np.arange(SR)
    between = np.sin(np.pi / 2 * n + np.pi / 4).astype(np.float32)[:, None]   # fs/4: samples at ±0.707
    assert np.abs(between).max() == pytest.approx(0.7071, abs=1e-3)
    assert true_peak_dbtp(between, SR) == pytest.approx(0.0, abs=0.2)          # the wave between them is 1.0
    # a quiet tone with loud clicks: reaching -14 LUFS by gain alone would put the clicks at +10 dBTP
    x = tone(3.0, 440.0, amp=0.05)
    x[::SR // 4] = 0.9
    out, rep = normalise(x, SR, -14.0, -1.0)
    assert rep.limited and true_peak_dbtp(out, SR) <= -1.0
    assert integrated_lufs(out, SR) == pytest.approx(-14.0, abs=0.5)
    # between the clicks (every 0.25 s) the tone is untouched by the limiter: just the gain
    assert level_db(out, 0.32, 0.43, 440.0) == pytest.approx(20 * np.log10(0.05) + rep.gain_db, abs=0.5)


def test_ducking_attack_ends_where_the_sound_starts_and_release_follows_its_end():
    from studio.sequence.mix import duck_gain
    active = np.zeros(4 * SR, bool)
    active[SR:2 * SR] = True                                           # a clip sounds from 1 s to 2 s
    g = 20 * np.log10(duck_gain(active, 12.0, attack_s=0.25, release_s=0.5))
    at = lambda t: g[int(round(t * SR))]   # noqa: E731
    assert at(0.5) == pytest.approx(0.0, abs=1e-6) and at(3.5) == pytest.approx(0.0, abs=1e-6)
    assert at(0.75 - 0.01) == pytest.approx(0.0, abs=0.01)              # the dip starts 0.25 s early ...
    assert at(0.875) == pytest.approx(-6.0, abs=0.1)                    # ... is half-way mid-attack ...
    assert at(1.0) == pytest.approx(-12.0, abs=0.01)                    # ... and complete when it sounds
    assert np.allclose(g[SR:2 * SR], -12.0, atol=1e-4)
    assert at(2.25) == pytest.approx(-6.0, abs=0.1) and at(2.5) == pytest.approx(0.0, abs=0.01)
    assert np.all(np.diff(g[int(0.5 * SR):SR]) <= 1e-6)                 # smooth: only down, then only up
    assert np.all(np.diff(g[2 * SR:3 * SR]) >= -1e-6)
