"""The Sequence page in headless Chromium: two clips with their own sound (a 600 Hz and a 1500 Hz
tone) show their waveform strips and levels on the timeline; "Play the mix" gives an <audio> player
whose source is the mix.  Screenshot: test-artifacts/sequence-sound.png."""

from __future__ import annotations

import time

import numpy as np
import pytest
from test_browser import _button, _choose, _click_when, _heading, _shot, _wait, driver, server

__all__ = ["driver", "server"]   # the fixtures, shared with test_browser.py
pytestmark = pytest.mark.browser


def test_sequence_page_shows_clip_sound_and_plays_the_mix(server, driver):
    from selenium.webdriver.common.by import By

    from postfx.assemble import write_video
    from studio.audio import Audio
    from studio.clip import Clip
    from studio.outputs import write_manifest
    from tests.sound_engine import tone
    url, out = server
    for name, freq, amp, col in (("tone-a-600hz.mp4", 600.0, 0.3, (200, 60, 40)),
                                 ("tone-b-1500hz.mp4", 1500.0, 0.1, (40, 90, 200))):
        t = np.linspace(0, 1, 16)[:, None, None, None]
        frames = (np.array(col, np.float32) * (0.5 + 0.5 * t) * np.ones((16, 64, 96, 3))).astype(np.uint8)
        sound = tone(2.0, freq, rate=48_000, amp=amp)
        sound[:, :] *= np.linspace(1.0, 0.3, sound.shape[0], dtype=np.float32)[:, None]   # a shape to see
        p = write_video(Clip(frames, 8.0, audio=Audio(sound, 48_000)), out / name, preset="ultrafast")
        write_manifest(p, {"kind": "studio-manifest", "version": 1, "request": {"prompt": name}})
    driver.get(url + "/Sequence")
    _wait(lambda: any("Sequence" in h.text for h in driver.find_elements(By.TAG_NAME, "h1")), 30, "the title")
    for i, name in enumerate(("tone-a-600hz.mp4", "tone-b-1500hz.mp4"), 1):
        _choose(driver, "Clip", name)
        _click_when(lambda: _button(driver, "Add clip"), 10, "Add clip")
        _wait(lambda h=f"Timeline ({i})": _heading(driver, h), 20, f"Timeline ({i})")

    def levels() -> list[str]:
        caps = driver.find_elements(By.CSS_SELECTOR, "[data-testid=stCaptionContainer]")
        return [c.text.strip() for c in caps if c.text.strip().startswith("🔊")]
    got = _wait(lambda: len(levels()) == 2 and levels(), 30, "two clip sound levels")
    db = [float(s.split()[1]) for s in got]
    assert db[0] - db[1] == pytest.approx(20 * np.log10(3), abs=0.5)     # the louder tone reads 9.5 dB up
    assert all("48 kHz stereo" in s for s in got)
    strips = driver.find_elements(By.CSS_SELECTOR, "[data-testid=stImage] img")
    assert len(strips) >= 2
    _click_when(lambda: _button(driver, "▶ Play the mix"), 10, "Play the mix")
    audio = _wait(lambda: driver.find_element(By.TAG_NAME, "audio"), 30, "the mix <audio>")
    _wait(lambda: driver.execute_script("return arguments[0].duration", audio) > 0, 20, "the mix loaded")
    assert driver.execute_script("return arguments[0].duration", audio) == pytest.approx(4.0, abs=0.05)
    _wait(lambda: any("LUFS integrated" in c.text for c in driver.find_elements(
        By.CSS_SELECTOR, "[data-testid=stCaptionContainer]")), 10, "the mix's loudness")
    assert not driver.find_elements(By.CSS_SELECTOR, "[data-testid=stException]")
    first = driver.find_elements(By.CSS_SELECTOR, "[data-testid=stImage] img")[0]
    driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", first)
    driver.execute_script("window.scrollBy(0, -260)")
    time.sleep(0.5)
    _shot(driver, "sequence-sound")
