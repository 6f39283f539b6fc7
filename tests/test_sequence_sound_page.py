"""The Sequence page shows each clip's sound and level on the timeline, sets its volume, ducks the
bed, and plays the mix (AppTest; the browser screenshot is in test_sequence_sound_browser.py)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from apptest_util import fresh_queue  # noqa: F401 (an autouse fixture: a fresh job queue per test)
from streamlit.testing.v1 import AppTest

from postfx.assemble import decode_audio, write_video
from postfx.loudness import integrated_lufs
from postfx.sound import write_wav
from studio.audio import Audio
from studio.clip import Clip
from studio.outputs import outputs_dir, write_manifest
from tests.sound_engine import tone

PAGE = str(Path(__file__).resolve().parent.parent / "app_pages" / "2_Sequence.py")
SR = 48_000


def sounding_clip(name: str, seconds: float, freq: float | None, color) -> Path:
    """A gallery clip (8 fps, with a manifest) carrying a tone, or no sound."""
    f = np.zeros((int(seconds * 8), 64, 96, 3), np.uint8)
    f[:] = color
    audio = None if freq is None else Audio(tone(seconds, freq, rate=SR, amp=0.3), SR)
    out = write_video(Clip(f, 8.0, audio=audio), outputs_dir() / name, preset="ultrafast")
    write_manifest(out, {"kind": "studio-manifest", "version": 1, "request": {"prompt": name}})
    return out


def amp(x: np.ndarray, freq: float) -> float:
    ph = 2 * np.pi * freq * np.arange(len(x)) / SR
    return float(2 * np.hypot(np.dot(x, np.cos(ph)), np.dot(x, np.sin(ph))) / len(x))


def build(at: AppTest, clips: list[Path]) -> AppTest:
    for c in clips:
        at.selectbox(key="seq_gallery_pick").set_value(str(c)).run()
        at.button(key="seq_add_gallery").click().run()
    at.checkbox(key="seq_custom_size").check().run()
    at.number_input(key="seq_w").set_value(96).run()
    at.number_input(key="seq_h").set_value(64).run()
    return at.number_input(key="seq_fps").set_value(8.0).run()


def test_clip_sound_levels_volume_and_the_mix():
    a = sounding_clip("a.mp4", 1.0, 600.0, (200, 30, 30))
    b = sounding_clip("b.mp4", 1.0, 1500.0, (30, 200, 30))
    quiet = sounding_clip("q.mp4", 1.0, None, (30, 30, 200))
    at = build(AppTest.from_file(PAGE, default_timeout=90).run(), [a, b, quiet])
    assert not at.exception and not at.error, [e.value for e in at.error]
    caps = [c.value for c in at.caption]
    assert sum("🔊" in c and "dBFS · 48 kHz stereo" in c for c in caps) == 2, caps
    assert any(c == "🔇 no sound in this clip" for c in caps)
    level = next(float(c.split()[1]) for c in caps if c.startswith("🔊"))
    assert abs(level - 20 * np.log10(0.3 / np.sqrt(2))) < 0.5          # -13.5 dBFS: the tone's RMS
    items = at.session_state["seq_items"]
    at.number_input(key=f"seq_{items[0]['_id']}_vol").set_value(0.5).run()
    caps = [c.value for c in at.caption if c.value.startswith("🔊")]
    assert abs(float(caps[0].split()[1]) - (level - 6.02)) < 0.3       # the strip follows the volume
    # a bed under them, ducked 10 dB
    bed = write_wav(outputs_dir() / "bed.wav", Audio(tone(3.0, 200.0, rate=SR, amp=0.2), SR))
    at.file_uploader(key="seq_audio").set_value(("bed.wav", bed.read_bytes(), "audio/wav")).run()
    at.number_input(key="seq_a_duck").set_value(10.0).run()
    at.number_input(key="seq_a_fin").set_value(0.0).run()
    at.number_input(key="seq_a_fout").set_value(0.0).run()
    at.button(key="seq_mix").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    wav, report = at.session_state["seq_mix_wav"]
    x = decode_audio(_tmp_wav(wav), SR, 2)
    assert x.shape[0] == 3 * SR
    assert abs(integrated_lufs(x, SR) - (-14.0)) < 0.5
    def part(t0: float, t1: float) -> np.ndarray:
        return x[int(t0 * SR):int(t1 * SR), 0]
    a0, b1, q2 = part(0.3, 0.7), part(1.3, 1.7), part(2.55, 2.95)
    assert abs(20 * np.log10(amp(a0, 600) / amp(b1, 1500)) + 6.02) < 0.5   # a at half volume
    assert abs(20 * np.log10(amp(q2, 200) / amp(b1, 200)) - 10.0) < 1.0     # the bed ducked 10 dB
    assert report["bed"]["duck_db"] == 10.0
    assert any("LUFS integrated" in c.value for c in at.caption)
    assert at.session_state["seq_items"][0]["volume"] == 0.5


def _tmp_wav(data: bytes) -> Path:
    p = outputs_dir() / "mix-got.wav"
    p.write_bytes(io.BytesIO(data).getvalue())
    return p
