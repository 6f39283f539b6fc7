"""Sound belongs to a clip: generated sound survives RIFE ×2, a target fps and an upscale; the file's
sound is exactly as long as its video (AAC in MP4, Opus in WebM, a WAV beside a GIF or PNG folder);
manifests and the base clip record it, `rerun` keeps it; the creator's track replaces it or mixes
under it.  The engine is the camera engine plus a 600 Hz tone at 24 kHz (`tests/sound_engine.py`).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from postfx.assemble import decode_audio, probe_video, write_video
from postfx.sound import audio_streams, write_wav
from studio.audio import Audio
from studio.clip import Clip
from studio.context import RunContext
from studio.engines import register
from studio.pipeline import generate, load_base, make_ledger, post_process, rerun
from studio.request import GenerationRequest
from tests.sound_engine import TONE_HZ, tone

SR = 48_000
TRACK_HZ = 1500.0


@pytest.fixture(autouse=True, scope="module")
def _tone_engine():
    register("tone-camera", "tests.sound_engine:ToneEngine")


def level_db(x: np.ndarray, freq: float, t0: float = 0.1, t1: float | None = None) -> float:
    seg = x[int(t0 * SR):None if t1 is None else int(t1 * SR), 0].astype(np.float64)
    w = np.hanning(len(seg))                     # Hann-windowed DFT at exactly `freq` (no bin scalloping)
    ph = 2 * np.pi * freq * np.arange(len(seg)) / SR
    amp = 2 * np.hypot(np.dot(seg * w, np.cos(ph)), np.dot(seg * w, np.sin(ph))) / w.sum()
    return float(20 * np.log10(amp + 1e-12))


def same_length(path) -> dict:
    """The file's video and audio durations agree to the sample (audio decoded, frames counted)."""
    v, a = probe_video(path), audio_streams(path)
    assert a is not None, f"{path} has no sound"
    assert a["samples"] == round(v["frames"] / v["fps"] * a["rate"]), (v, a)
    return {"frames": v["frames"], "fps": v["fps"], **a}


def _req(photo, **kw) -> GenerationRequest:
    return GenerationRequest(image=str(photo), engine="tone-camera", prompt="pan right", frames=9, fps=8,
                             width=48, height=32, **kw)


def test_sound_survives_rife_upscale_and_target_fps(tmp_path, photo, rife_weights):
    req = _req(photo, interpolate=2, upscale=2, upscaler="animevideov3")
    led = make_ledger(req, "cpu", tmp_path / "o.mp4")
    assert led.audio["rate"] == 24_000 and led.audio["channels"] == 2
    assert led.audio["duration"] == pytest.approx(17 / 16)
    assert "generated 24000 Hz stereo, 1.125 s" in led.audio["label"] and "AAC" in led.audio["label"]
    assert "audio" in led.to_text()
    res = generate(req, tmp_path / "o.mp4", RunContext())
    assert [s["stage"] for s in res.manifest["stages"]][0] in ("interpolate", "interpolate-upscaled")
    got = same_length(res.output)
    assert (got["frames"], got["fps"], got["rate"]) == (17, 16.0, SR)
    x = decode_audio(res.output, SR, 2)
    assert level_db(x, TONE_HZ) > -15                      # the 0.3-amplitude tone (-10.5 dB) is there
    m = json.loads(res.manifest_path.read_text())
    assert m["audio"]["base"] == {"rate": 24_000, "channels": 2, "duration": 1.125}
    assert m["audio"]["output"] == {"codec": "aac", "rate": SR, "channels": 2, "duration": 1.0625}
    assert m["ledger"]["audio"]["rate"] == 24_000
    base = load_base(res.output.with_name(res.output.name + ".base.npz"))
    assert base.audio is not None and base.audio.samples.shape == (27_000, 2)   # 1.125 s at 24 kHz
    assert np.allclose(base.audio.samples, tone(1.125))

    r2 = rerun(res.manifest_path, {"interpolate": 1, "target_fps": 20, "upscale": 1}, tmp_path / "t.webm")
    got = same_length(r2.output)                            # Opus in WebM
    assert (got["frames"], got["fps"]) == (22, 20.0)
    assert level_db(decode_audio(r2.output, SR, 2), TONE_HZ) > -15
    assert "Audio: opus" in __import__("subprocess").run(
        [__import__("postfx.assemble", fromlist=["x"]).ffmpeg_exe(), "-hide_banner", "-i", str(r2.output)],
        capture_output=True, text=True).stderr


def test_gif_and_png_save_the_sound_beside(tmp_path, photo):
    res = generate(_req(photo, codec="gif"), tmp_path / "o.gif", RunContext())
    wav = tmp_path / "o.gif.wav"
    assert res.manifest["audio"]["output"]["file"] == "o.gif.wav"
    assert "beside the GIF" in res.manifest["ledger"]["audio"]["label"]
    assert audio_streams(wav)["samples"] == 9 * SR // 8 and probe_video(res.output)["frames"] == 9
    r2 = rerun(res.manifest_path, {"codec": "png"}, str(tmp_path / "frames") + "/")
    assert audio_streams(tmp_path / "frames" / "audio.wav")["samples"] == 9 * SR // 8
    r3 = post_process(str(r2.output) + "/", {"interpolate": 2}, tmp_path / "p.mp4", RunContext())
    assert same_length(r3.output)["frames"] == 17          # a PNG folder's sound comes back in


def test_post_of_a_video_with_sound_keeps_it(tmp_path):
    frames = np.zeros((6, 32, 48, 3), np.uint8)
    frames[:, :, :, 0] = np.arange(6)[:, None, None] * 40
    src = write_video(Clip(frames, 6.0, audio=Audio(tone(1.0, rate=SR), SR)), tmp_path / "s.mp4")
    res = post_process(src, {"target_fps": 15}, tmp_path / "p.mp4", RunContext())
    got = same_length(res.output)
    assert (got["frames"], got["fps"]) == (15, 15.0)
    assert level_db(decode_audio(res.output, SR, 2), TONE_HZ) > -15


@pytest.mark.parametrize("mode", ["replace", "mix"])
def test_own_track_replaces_or_mixes_under(tmp_path, photo, mode):
    track = write_wav(tmp_path / "t.wav", Audio(tone(2.0, TRACK_HZ, rate=SR, amp=0.3), SR))   # cut to 1.125 s
    req = _req(photo, audio=str(track), audio_mode=mode, audio_gain=-6.0, audio_fade=0.0)
    led = make_ledger(req, "cpu", tmp_path / "o.mp4")
    assert ("replaces it" if mode == "replace" else "mixed under it") in led.audio["label"]
    res = generate(req, tmp_path / "o.mp4", RunContext())
    same_length(res.output)
    x = decode_audio(res.output, SR, 2)
    assert level_db(x, TRACK_HZ) == pytest.approx(20 * np.log10(0.3) - 6.0, abs=1.0)   # at -6 dB
    if mode == "replace":
        assert level_db(x, TONE_HZ) < -60
    else:
        assert level_db(x, TONE_HZ) == pytest.approx(20 * np.log10(0.3), abs=1.0)
    m = res.manifest["audio"]
    assert m["made"] == ("track" if mode == "replace" else "mix") and m["track"]["gain_db"] == -6.0
    r2 = rerun(res.manifest_path, {"audio_mode": "mix" if mode == "replace" else "replace"},
               tmp_path / "r.mp4")
    y = decode_audio(r2.output, SR, 2)
    assert (level_db(y, TONE_HZ) > -15) == (mode == "replace")    # the rerun switched the mode


def test_cli_flags_come_from_the_spec():
    from studio.cli import build_parser
    ns = build_parser().parse_args(["generate", "x.png", "--audio", "t.wav", "--audio-mode", "mix",
                                    "--audio-gain", "-9"])
    assert (ns.audio, ns.audio_mode, ns.audio_gain) == ("t.wav", "mix", "-9")
    with pytest.raises(ValueError, match=r"audio_mode='under' is not one of replace, mix"):
        from studio.params import SPEC
        SPEC["audio_mode"].check("under")


def test_cli_post_to_gif_says_where_the_sound_went(tmp_path):
    import subprocess
    import sys
    from pathlib import Path
    frames = np.zeros((6, 32, 48, 3), np.uint8)
    src = write_video(Clip(frames, 6.0, audio=Audio(tone(1.0, rate=SR), SR)), tmp_path / "s.mp4")
    root = Path(__file__).resolve().parent.parent
    p = subprocess.run([sys.executable, "-m", "studio", "post", str(src), "--out", str(tmp_path / "x.gif"),
                        "--audio-gain", "-3"], cwd=root, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    wav = tmp_path / "x.gif.wav"
    assert f"sound {wav} (a GIF cannot carry sound)" in p.stdout
    assert audio_streams(wav)["samples"] == SR


def test_a_missing_track_is_refused_before_the_run(tmp_path, photo):
    req = _req(photo, audio=str(tmp_path / "gone.wav"))
    with pytest.raises(ValueError, match=r"audio: the track 'gone.wav' does not exist"):
        make_ledger(req, "cpu", tmp_path / "o.mp4")
    with pytest.raises(ValueError, match=r"audio: the track 'gone.wav' does not exist"):
        generate(req, tmp_path / "o.mp4", RunContext())
    assert not (tmp_path / "o.mp4").exists()
