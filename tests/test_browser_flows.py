"""Real browser (headless Chromium): Reuse settings, Continue from last frame, Sequence uploads and
export download, and metrics that are never cut.  Uses the server and driver of test_browser.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from test_browser import (
    ROOT,
    _button,
    _choose,
    _click_when,
    _heading,
    _number,
    _shot,
    _upload_photo,
    _wait,
    _widget,
    driver,
    server,
)

pytestmark = pytest.mark.browser
__all__ = ["driver", "server"]
PHOTO = ROOT / "tests" / "data" / "astronaut.jpg"


def _by():
    from selenium.webdriver.common.by import By
    return By


def _open_generate(driver, url: str) -> None:
    driver.get(url + "/Generate")
    _upload_photo(driver, PHOTO)
    _wait(lambda: _ledger(driver), 30, "the ledger")


def _ledger(driver) -> list[list[str]]:
    """The ledger table's body rows as cell texts."""
    return driver.execute_script("""
        const t = document.querySelector('[data-testid=stTable] table');
        if (!t) return null;
        return [...t.querySelectorAll('tbody tr')].map(r => [...r.querySelectorAll('td,th')]
            .map(c => c.textContent.trim()));""")


def _click_label(driver, text: str) -> None:
    """Click the radio/toggle/checkbox whose visible label is `text` (find and click as one retried
    step: a rerun can redraw it in between)."""
    def go() -> bool:
        el = driver.find_element(_by().XPATH, f"//label[.//p[normalize-space()='{text}']]")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", el)
        el.click()
        return True
    _wait(go, 20, f"a click on the {text!r} control")


def _slider_to(driver, label: str, value: int) -> None:
    """Move the slider labelled `label` to `value` with the arrow keys on its range input.

    The input is looked up again for every press: a step reruns the page and may redraw it.
    """
    from selenium.webdriver.common.keys import Keys

    def step() -> bool:
        inp = _widget(driver, "stSlider", label).find_element(_by().CSS_SELECTOR, "input[type=range]")
        cur = int(float(inp.get_attribute("value")))
        if cur == value:
            return True
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'}); arguments[0].focus()", inp)
        driver.switch_to.active_element.send_keys(Keys.ARROW_LEFT if cur > value else Keys.ARROW_RIGHT)
        time.sleep(0.1)
        return False
    end = time.monotonic() + 120
    while time.monotonic() < end:
        try:
            if step():
                break
        except Exception:  # noqa: BLE001 - redrawn under us: look it up again
            time.sleep(0.2)
    time.sleep(1.5)                               # the rerun that takes the value
    _wait(lambda: step(), 20, f"{label!r} = {value}")


def _press(driver, label: str, timeout: float = 30) -> None:
    """Find and click the button `label` as one retried step (a rerun can redraw it in between)."""
    def go() -> bool:
        b = _button(driver, label)
        if b is None:
            return False
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", b)
        b.click()
        return True
    _wait(go, timeout, f"a click on {label!r}")


def _clips(out: Path) -> set[Path]:
    return {p for p in out.glob("*.mp4") if not p.name.startswith(".")}    # not a file being written


def _generate_and_wait(driver, out: Path) -> Path:
    before = _clips(out)
    t0 = time.monotonic()
    try:
        _wait(lambda: next((b for b in driver.find_elements(_by().TAG_NAME, "button")
                                  if "🎬" in b.text and "Generate" in b.text and b.is_enabled()), None), 90,
                    "an enabled Generate button")
    except AssertionError:
        _shot(driver, "generate-button-timeout")     # what the page showed instead
        raise
    print(f"Generate button enabled after {time.monotonic() - t0:.1f} s")
    _click_when(lambda: next((b for b in driver.find_elements(_by().TAG_NAME, "button")
                              if "🎬" in b.text and "Generate" in b.text and b.is_enabled()), None), 30,
                "the Generate button")
    new = _wait(lambda: sorted(_clips(out) - before), 240, "the new clip")
    _wait(lambda: Path(str(new[0]) + ".json").is_file(), 30, "its manifest")
    _wait(lambda: _button(driver, "♻ Reuse settings"), 60, "the result's buttons")
    return new[0]


def test_sidebar_names_the_home_page_when_a_page_is_opened_first(server, driver):
    """A fresh server, /Generate opened by its URL before anything else: the sidebar says Home."""
    url, _ = server
    driver.get(url + "/Generate")
    _wait(lambda: any("Generate" in h.text for h in driver.find_elements(_by().TAG_NAME, "h1")), 30,
          "the page")
    links = _wait(lambda: [a.text.split("\n")[-1] for a in driver.find_elements(
        _by().CSS_SELECTOR, "[data-testid=stSidebarNavLink]")], 20, "the sidebar links")
    assert links == ["Home", "Generate", "Sequence", "Gallery", "Models & LoRAs"]


def test_reuse_settings_restores_the_ledger(server, driver):
    url, out = server
    _open_generate(driver, url)
    _click_label(driver, "×2")                                     # interpolation
    _click_label(driver, "Upscale")
    _choose(driver, "Upscale model", "lanczos")
    _number(driver, "Seed", 7)
    _wait(lambda: len(_ledger(driver)) == 4, 20, "a 4-row ledger")
    original = _ledger(driver)
    assert [r[1] for r in original] == ["16", "31", "31", "31"] and original[-1][4] == "1024×1024"
    plan = [r[:5] for r in original]  # steps, frames, fps, seconds, size (estimates learn from the run)
    clip = _generate_and_wait(driver, out)
    manifest = json.loads(Path(str(clip) + ".json").read_text())
    assert [r["frames"] for r in manifest["ledger"]["rows"]] == [16, 31, 31, 31]
    _click_label(driver, "off")
    _click_label(driver, "Upscale")
    _wait(lambda: _ledger(driver) != original and len(_ledger(driver)) == 2, 20, "the changed ledger")
    _press(driver, "♻ Reuse settings")
    _wait(lambda: [r[:5] for r in (_ledger(driver) or [])] == plan, 30, "the original ledger back")
    inp = _widget(driver, "stNumberInput", "Seed").find_element(_by().CSS_SELECTOR, "input")
    assert inp.get_attribute("value") == "7"
    driver.execute_script("window.scrollTo(0, 0)")
    time.sleep(0.5)
    _shot(driver, "generate-result")


def test_continue_from_last_frame_meets_the_previous_clip(server, driver):
    from postfx.assemble import read_video
    url, out = server
    _open_generate(driver, url)
    _slider_to(driver, "Frames", 8)
    _slider_to(driver, "Width", 256)
    _slider_to(driver, "Height", 256)
    _click_label(driver, "×2")
    _click_label(driver, "Upscale")                              # ×2, the default model
    _wait(lambda: _ledger(driver)[-1][4] == "512×512", 20, "a 512×512 ledger")
    first = _generate_and_wait(driver, out)
    _press(driver, "⏭ Continue from last frame")
    # the page shows the new input: the radio moved, the saved last frame is drawn, a note says so
    _wait(lambda: any("Continuing from the last frame of" in a.text for a in
                      driver.find_elements(_by().CSS_SELECTOR, "[data-testid=stAlert]")), 30, "the note")
    radio = driver.find_element(_by().XPATH, "//label[.//p[normalize-space()='Last frame of a clip']]//input")
    assert radio.is_selected()
    caps = [c.text for c in driver.find_elements(_by().CSS_SELECTOR, "[data-testid=stImageCaption]")]
    # readable names: "HH:MM:SS · <the clip's name>-last (png)"
    assert any(c.endswith(f"{first.stem.split('-', 2)[2]}-last (png)") for c in caps), caps
    _wait(lambda: any(r[0].startswith("start on the input frame") for r in _ledger(driver)), 20,
          "StartOn in the ledger")
    time.sleep(0.5)
    _shot(driver, "generate-continue")
    second = _generate_and_wait(driver, out)
    a = read_video(first).frames[-1].astype(int)
    b = read_video(second).frames[0].astype(int)
    diff = float(np.abs(a - b).mean())
    assert a.shape == b.shape == (512, 512, 3)
    assert diff <= 2.0, diff


def _uploader(driver, label: str):
    return _widget(driver, "stFileUploader", label).find_element(_by().CSS_SELECTOR, "input[type=file]")


def test_sequence_refuses_a_text_mp4_and_offers_the_export(server, driver, tmp_path):
    from studio.pipeline import generate
    from studio.request import GenerationRequest
    url, out = server
    generate(GenerationRequest(image=str(PHOTO), prompt="pan right", frames=8, fps=8, width=96, height=64),
             out=out / "seq-one.mp4")
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is a text file, not a video\n" * 20)
    driver.get(url + "/Sequence")
    _wait(lambda: any("Sequence" in h.text for h in driver.find_elements(_by().TAG_NAME, "h1")), 30, "title")
    _choose(driver, "Clip", "seq-one.mp4")
    _press(driver, "Add clip")
    _wait(lambda: _heading(driver, "Timeline (1)"), 20, "Timeline (1)")
    _click_when(lambda: driver.find_element(_by().XPATH, "//*[@role='tab'][normalize-space()='Upload']"), 10,
                "the Upload tab")
    _uploader(driver, "Video").send_keys(str(fake))
    msg = "Cannot use this clip — notes.mp4 is not a video the studio can read"
    _wait(lambda: any(a.text.strip() == msg for a in driver.find_elements(
        _by().CSS_SELECTOR, "[data-testid=stAlert]")), 30, "the refusal")
    alerts = [a.text for a in driver.find_elements(_by().CSS_SELECTOR, "[data-testid=stAlert]")]
    assert not any("/" in t or "ffmpeg" in t.lower() for t in alerts), alerts
    assert _heading(driver, "Timeline (1)")                            # not added
    driver.find_element(_by().XPATH, "//label[.//p[normalize-space()='Custom size']]").click()
    _number(driver, "Width", 96)
    _number(driver, "Height", 64)
    _press(driver, "Export")
    # found and checked as one retried step: the job panel's reruns replace the button with an equal
    # new one, and a reference taken a moment earlier goes stale (a CI run failed on exactly that)
    _wait(lambda: next((b for b in driver.find_elements(_by().CSS_SELECTOR, "[data-testid=stDownloadButton]")
                        if "MP4" in b.text and b.is_displayed()), None), 60, "the export's download button")
    driver.execute_script("window.scrollTo(0, 0)")
    time.sleep(0.5)
    _shot(driver, "sequence-export")


def _cut_metrics(driver) -> list[str]:
    """Metric values whose text does not fit their box (shown with an ellipsis)."""
    return driver.execute_script("""
        return [...document.querySelectorAll('[data-testid=stMetricValue]')].filter(v => {
            const els = [v, ...v.querySelectorAll('*')];
            return els.some(e => e.scrollWidth > e.clientWidth + 1);
        }).map(v => v.textContent.trim());""")


def test_size_metrics_are_never_cut(server, driver):
    url, _ = server
    _open_generate(driver, url)
    _click_label(driver, "Upscale")
    _choose(driver, "Scale", "×4")
    _wait(lambda: _ledger(driver)[-1][4] == "2048×2048", 20, "a 2048×2048 ledger")
    time.sleep(0.5)
    assert not _cut_metrics(driver)
    cols = driver.execute_script("""
        const t = document.querySelector('[data-testid=stTable] table');
        return {table: t.scrollWidth, box: t.parentElement.clientWidth,
                heads: [...t.querySelectorAll('thead th')].map(h => h.textContent.trim())};""")
    assert "estimate" in cols["heads"] and cols["table"] <= cols["box"] + 1, cols   # every column shows
    driver.get(url + "/Sequence")
    _wait(lambda: any("Sequence" in h.text for h in driver.find_elements(_by().TAG_NAME, "h1")), 30, "title")
    from studio.pipeline import generate
    from studio.request import GenerationRequest
    generate(GenerationRequest(image=str(PHOTO), prompt="zoom in", frames=4, width=64, height=64),
             out=server[1] / "metric-clip.mp4")
    driver.refresh()
    _choose(driver, "Clip", "metric-clip.mp4")
    _press(driver, "Add clip")
    _wait(lambda: driver.find_elements(_by().CSS_SELECTOR, "[data-testid=stMetric]"), 20, "the plan")
    time.sleep(0.5)
    assert not _cut_metrics(driver)
