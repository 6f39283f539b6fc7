"""The Generate page's audio track in AppTest: upload a WAV, generate, and the file carries it."""

from __future__ import annotations

import io
import json
import wave
from pathlib import Path

import numpy as np
from apptest_util import (
    fresh_queue,  # noqa: F401 (an autouse fixture: a fresh job queue per test)
    poll,
)
from streamlit.testing.v1 import AppTest

GEN = str(Path(__file__).resolve().parent.parent / "app_pages" / "1_Generate.py")
SR = 44_100


def tone_wav(seconds: float, hz: float = 440.0) -> bytes:
    """A mono 16-bit WAV of a sine tone at half scale."""
    t = np.arange(int(seconds * SR)) / SR
    pcm = (0.5 * 32767 * np.sin(2 * np.pi * hz * t)).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def _page(photo: Path) -> AppTest:
    at = AppTest.from_file(GEN, default_timeout=60).run()
    at.file_uploader(key="gen_upload").set_value((photo.name, photo.read_bytes(), "image/jpeg")).run()
    for key, v in (("frames", 8), ("fps", 8.0), ("width", 64), ("height", 64)):
        next(w for w in list(at.slider) + list(at.number_input) if w.key == f"gen_camera_{key}").set_value(v)
    return at.run()


def test_uploaded_audio_is_muxed_for_the_videos_duration(photo):
    from postfx.assemble import decode_audio, probe_video
    at = _page(photo)
    assert at.slider(key="gen_post_audio_fade").disabled             # nothing to fade yet
    at.file_uploader(key="gen_audio_upload").set_value(("tone.wav", tone_wav(0.4), "audio/wav")).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    saved = Path(at.session_state["gen_audio"])
    assert saved.parent.name == "audio" and saved.name.endswith("-tone.wav") and saved.is_file()
    assert any(c.value.startswith("🎵 ") and saved.name in c.value for c in at.caption)
    at.slider(key="gen_post_audio_fade").set_value(0.1).run()
    at.button(key="generate").click().run()
    at = poll(at, lambda a: len(a.get("video")) > 0)
    outs = _outputs("*.mp4")
    assert len(outs) == 1
    out = outs[0]
    info = probe_video(out)
    assert info["has_audio"] and info["frames"] == 8
    assert abs(info["duration"] - 1.0) < 0.01
    sound = decode_audio(out, sr=SR)
    assert abs(sound.shape[0] / SR - 1.0) < 0.05                      # 0.4 s looped to the video's 1 s
    rms = lambda a, b: float(np.sqrt(np.mean(sound[int(a * SR):int(b * SR)] ** 2)))  # noqa: E731
    assert rms(0.55, 0.7) > 0.25                                     # the loop plays (sine 0.5 → RMS 0.35)
    assert rms(0.0, 0.01) < rms(0.3, 0.35) / 3                       # faded in
    req = json.loads(Path(str(out) + ".json").read_text())["request"]
    assert req["audio"] == str(saved) and req["audio_fade"] == 0.1


def _outputs(pattern: str) -> list[Path]:
    from studio.outputs import outputs_dir
    return sorted(outputs_dir().glob(pattern))


def test_gif_saves_the_track_beside_and_bad_audio_is_refused(photo):
    at = _page(photo)
    bad = ("noise.mp3", b"ID3" + b"\0" * 300, "audio/mpeg")
    at.file_uploader(key="gen_audio_upload").set_value(bad).run()
    assert not at.exception
    assert any(e.value == "Cannot use this audio — noise.mp3 is not readable audio (no audio stream in it)"
               for e in at.error)
    assert at.session_state["gen_audio"] is None
    assert not list(_outputs("uploads/audio/*"))                       # nothing half-kept
    assert at.selectbox(key="gen_post_audio_mode").disabled          # no track: nothing to set
    at.file_uploader(key="gen_audio_upload").set_value(("tone.wav", tone_wav(0.2), "audio/wav")).run()
    assert at.session_state["gen_audio"] and not at.error
    at.selectbox(key="gen_post_codec").set_value("gif").run()
    assert not at.file_uploader(key="gen_audio_upload").disabled
    assert any("A GIF cannot carry sound: the clip's sound is saved beside it as a WAV" in c.value
               for c in at.caption)
    at.selectbox(key="gen_post_audio_mode").set_value("mix").run()
    at.slider(key="gen_post_audio_gain").set_value(-6.0).run()
    assert not at.error, [e.value for e in at.error]
    assert any("beside the GIF" in str(v) for t in at.table for v in t.value.to_dict("list")["step"])
    at.button(key="generate").click().run()
    at = poll(at, lambda a: bool(_outputs("*.gif.json")))
    from postfx.assemble import read_video
    from postfx.sound import audio_streams
    gifs = _outputs("*.gif")
    assert len(gifs) == 1 and read_video(gifs[0]).frames.shape[:3] == (8, 64, 64)
    m = json.loads(Path(str(gifs[0]) + ".json").read_text())
    assert (m["request"]["audio_mode"], m["request"]["audio_gain"]) == ("mix", -6.0)
    wav = gifs[0].with_name(gifs[0].name + ".wav")
    assert m["audio"]["output"]["file"] == wav.name and audio_streams(wav)["samples"] == 48_000   # 1 s
