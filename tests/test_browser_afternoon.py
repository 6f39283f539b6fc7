"""Real browser (issue 20, part A): settings survive a switch to the Gallery and back, and the
result player is as wide as the result block and plays by itself."""

from __future__ import annotations

import time

import pytest
from test_browser import (
    ROOT,
    _button,
    _click_when,
    _shot,
    _upload_photo,
    _wait,
    _widget,
    driver,
    server,
)
from test_browser_flows import _slider_to

pytestmark = pytest.mark.browser
__all__ = ["driver", "server"]
PHOTO = ROOT / "tests" / "data" / "astronaut.jpg"


def _by():
    from selenium.webdriver.common.by import By
    return By


def _checked_radio(driver, group: str) -> str:
    """The checked option's text in the radio group labelled `group`."""
    w = _widget(driver, "stRadio", group)
    for lab in w.find_elements(_by().CSS_SELECTOR, "label"):
        inp = lab.find_elements(_by().CSS_SELECTOR, "input")
        if inp and inp[0].is_selected():
            return lab.text.strip()
    return ""


def _slider_value(driver, label: str) -> str:
    w = _widget(driver, "stSlider", label)
    return str(int(float(w.find_element(_by().CSS_SELECTOR, "input[type=range]").get_attribute("value"))))


def _nav(driver, label: str) -> None:
    """Click the sidebar link to url path `label` (a page switch inside the app, not a reload)."""
    def go():
        for a in driver.find_elements(_by().CSS_SELECTOR, "a[data-testid=stSidebarNavLink]"):
            if (a.get_attribute("href") or "").rstrip("/").endswith("/" + label):
                a.click()
                return True
        return False
    _wait(go, 20, f"the {label!r} link")


def test_settings_survive_a_page_switch_and_the_player_is_wide_and_plays(server, driver):
    from selenium.webdriver.common.keys import Keys
    url, out = server
    driver.get(url + "/Generate")
    _upload_photo(driver, PHOTO)
    # the prompt, Frames 24 (arrow keys on the slider), Interpolation ×2
    area = _wait(lambda: driver.find_element(_by().CSS_SELECTOR, "textarea"), 20, "the prompt")
    area.click()
    area.send_keys("pan right, clouds drifting", Keys.TAB)
    _wait(lambda: "clouds" in (driver.current_url or ""), 20, "the prompt in the URL")

    _slider_to(driver, "Frames", 24)
    _click_when(lambda: driver.find_element(
        _by().XPATH, "//label[.//p[normalize-space()='×2']]"), 20, "Interpolation ×2")
    _wait(lambda: _checked_radio(driver, "Interpolation") == "×2", 20, "×2 chosen")
    # the server has taken ×2 (its rerun drew the RIFE row), not only the radio in the browser
    _wait(lambda: "RIFE" in driver.find_element(_by().CSS_SELECTOR, "[data-testid=stTable]").text, 60,
          "the ledger's RIFE row")
    _wait(lambda: "24" in driver.find_element(_by().CSS_SELECTOR, "[data-testid=stTable]").text, 30,
          "24 frames in the ledger")
    _wait(lambda: _slider_value(driver, "Frames") == "24", 20, "Frames 24 drawn")
    # away to the Gallery and back, through the sidebar
    _nav(driver, "Gallery")
    _wait(lambda: any("Gallery" in h.text for h in driver.find_elements(_by().TAG_NAME, "h1")), 30, "Gallery")
    time.sleep(1.0)
    _nav(driver, "Generate")
    _wait(lambda: _widget(driver, "stSlider", "Frames"), 30, "the Generate page again")
    time.sleep(1.5)
    assert _slider_value(driver, "Frames") == "24"
    assert _checked_radio(driver, "Interpolation") == "×2"
    assert "pan right, clouds drifting" in driver.find_element(_by().CSS_SELECTOR, "textarea").get_attribute(
        "value")
    assert _checked_radio(driver, "Input image") in ("Upload", "From the gallery")
    assert driver.find_elements(_by().CSS_SELECTOR, "[data-testid=stImageCaption]")   # the photo
    # every example chip is whole and inside the form's column (they were cut before)
    chips = driver.execute_script("""
        const area = document.querySelector('textarea').getBoundingClientRect();
        return [...document.querySelectorAll('button')].filter(b => b.textContent.includes('💡'))
            .map(b => { const r = b.getBoundingClientRect(); const p = b.querySelector('p') || b;
                        return [b.textContent.trim(), r.left >= area.left - 1 && r.right <= area.right + 1,
                                p.scrollWidth <= p.clientWidth + 1]; });""")
    assert len(chips) == 4 and all(c[1] and c[2] for c in chips), chips
    driver.execute_script("window.scrollTo(0, 0)")
    time.sleep(0.5)
    _shot(driver, "generate")
    # generate (interpolation off: quick): the player spans the result block and plays by itself
    _click_when(lambda: driver.find_element(
        _by().XPATH, "//label[.//p[normalize-space()='off']]"), 20, "Interpolation off")
    _wait(lambda: _checked_radio(driver, "Interpolation") == "off", 20, "off chosen")
    _click_when(lambda: _button(driver, "🎬 Generate"), 60, "Generate")
    _wait(lambda: driver.find_element(_by().TAG_NAME, "video"), 90, "the <video>")
    col = driver.execute_script("""
        const v = document.querySelector('video');
        const block = v.closest('[data-testid=stVerticalBlockBorderWrapper]') || v.parentElement;
        return [v.getBoundingClientRect().width, block.getBoundingClientRect().width];""")
    assert col[0] >= 0.85 * col[1] and col[0] >= 400, col            # was ~190 px in a half column
    # looked up afresh each time (a rerun may replace the element); no script calls play()
    state = ("const v = document.querySelector('video'); "
             "return v && [v.readyState, v.currentTime, v.paused, v.autoplay, v.outerHTML.slice(0, 300)];")
    _wait(lambda: (driver.execute_script(state) or [0])[0] >= 2, 30, "video data")
    t0 = driver.execute_script(state)[1]
    _wait(lambda: driver.execute_script(state)[1] != t0, 20, f"it plays ({driver.execute_script(state)})")
    _shot(driver, "generate-result")
