"""Assembly: exact frame counts, codecs, even sizes, faststart, audio, atomic writes."""

from __future__ import annotations

import math
import wave
from pathlib import Path

import numpy as np
import pytest

from postfx.assemble import AudioSpec, codec_for, mp4_atom_order, probe_video, read_video, write_video
from studio.clip import Clip
from studio.context import Cancelled, RunContext


def _clip(t=12, h=48, w=64, fps=8.0):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (1, h, w, 3), dtype=np.uint8)
    frames = np.repeat(base, t, axis=0).copy()
    for i in range(t):  # a moving bright bar so frames differ
        frames[i, :, (i * 3) % w] = 255
    return Clip(frames, fps)


def test_h264_exact_frames_fps_yuv420p_faststart(tmp_path):
    out = write_video(_clip(t=16, fps=8.0), tmp_path / "a.mp4")
    info = probe_video(out)
    assert info["frames"] == 16 and math.isclose(info["fps"], 8.0)
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p"
    order = mp4_atom_order(out)
    assert order.index("moov") < order.index("mdat")


def test_odd_size_padded_to_even_and_ntsc_rate(tmp_path):
    out = write_video(_clip(t=10, h=33, w=45, fps=24000 / 1001), tmp_path / "odd.mp4")
    info = probe_video(out)
    assert (info["width"], info["height"]) == (46, 34)
    assert info["frames"] == 10 and abs(info["fps"] - 23.976) < 0.01


@pytest.mark.parametrize("ext,codec", [(".webm", "vp9"), (".gif", "gif"), (".mov", "prores")])
def test_other_codecs(tmp_path, ext, codec):
    out = write_video(_clip(t=6), tmp_path / f"x{ext}")
    info = probe_video(out)
    assert info["codec"] == codec and info["frames"] == 6


def test_h265(tmp_path):
    out = write_video(_clip(t=5), tmp_path / "x.mp4", codec="h265")
    assert probe_video(out)["codec"] == "hevc"


def test_png_folder_roundtrip_is_lossless(tmp_path):
    c = _clip(t=4, fps=12.5)
    out = write_video(c, str(tmp_path / "frames") + "/")
    assert sorted(p.name for p in out.iterdir())[:2] == ["fps.txt", "frame_00000.png"]
    back = read_video(out)
    assert np.array_equal(back.frames, c.frames) and back.fps == 12.5


def test_codec_mismatch_and_unknown_extension():
    with pytest.raises(ValueError, match="codec=gif cannot be written to a .mp4"):
        codec_for("a.mp4", "gif")
    with pytest.raises(ValueError, match="unknown extension '.avi'"):
        codec_for("a.avi")


def test_cancel_leaves_no_file(tmp_path):
    ctx = RunContext()

    def progress(stage, i, n):
        if i == 3:
            ctx.cancel.set()
    ctx.progress = progress
    with pytest.raises(Cancelled):
        write_video(_clip(t=10), tmp_path / "c.mp4", ctx=ctx)
    assert list(tmp_path.iterdir()) == []


def _tone(path: Path, secs: float, sr=44100):
    t = np.arange(int(secs * sr)) / sr
    x = (0.5 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(x.tobytes())
    return path


def _decode_audio(path: Path, sr=44100) -> np.ndarray:
    import subprocess

    from postfx.assemble import ffmpeg_exe
    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "s16le", "-ac", "1",
                          "-ar", str(sr), "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, "<i2").astype(np.float32) / 32767


def test_audio_loops_to_video_length_and_fades(tmp_path):
    tone = _tone(tmp_path / "tone.wav", 0.8)
    out = write_video(_clip(t=24, fps=8.0), tmp_path / "a.mp4",
                      audio=AudioSpec(str(tone), fade_in=0.5, fade_out=0.5, loop=True))
    assert probe_video(out)["has_audio"]
    a = _decode_audio(out)
    assert abs(len(a) / 44100 - 3.0) < 0.1          # 3 s video, 0.8 s tone looped
    rms = lambda s: float(np.sqrt(np.mean(s ** 2)))  # noqa: E731
    sr = 44100
    assert rms(a[int(1.4 * sr):int(1.6 * sr)]) > 0.2    # looped, still sounding mid-way (downmix ~0.25)
    assert rms(a[:int(0.05 * sr)]) < 0.5 * rms(a[int(1.4 * sr):int(1.6 * sr)])  # fade in
    assert rms(a[-int(0.05 * sr):]) < 0.5 * rms(a[int(1.4 * sr):int(1.6 * sr)])  # fade out


def test_audio_no_loop_goes_silent(tmp_path):
    tone = _tone(tmp_path / "tone.wav", 1.0)
    out = write_video(_clip(t=24, fps=8.0), tmp_path / "b.mp4",
                      audio=AudioSpec(str(tone), fade_in=0, fade_out=0.2, loop=False))
    a = _decode_audio(out)
    assert float(np.abs(a[int(2.0 * 44100):]).max()) < 0.02


def test_missing_audio_named(tmp_path):
    with pytest.raises(ValueError, match="audio file '.*nope.wav' does not exist"):
        write_video(_clip(), tmp_path / "x.mp4", audio=AudioSpec(str(tmp_path / "nope.wav")))
    assert not (tmp_path / "x.mp4").exists()


def test_fit_audio_no_loop_ramps_down_where_sound_stops():
    from postfx.assemble import fit_audio
    sr = 1000
    arr = np.ones((500, 1), np.float32)
    out = fit_audio(arr, sr, 1.0, loop=False, join_fade=0.02)
    assert out.shape == (1000, 1)
    assert out[480 - 1, 0] > 0.99 and out[499, 0] < 0.01      # ramps to ~0 at the end of the sound
    assert np.all(np.diff(out[480:500, 0]) <= 1e-6)            # monotonic ramp, no step
    assert np.all(out[500:] == 0)
