"""Real browser (headless Chromium): the Gallery's cards tell an original from its re-run, and the
opened re-run shows the before/after wipe of its base clip against the result.  Screenshot:
before-after.png (docs/screenshots/ with STUDIO_DOCS_SCREENSHOTS=1).  Uses test_browser.py's server."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_browser import ROOT, _shot, _wait, driver, server

pytestmark = pytest.mark.browser
__all__ = ["driver", "server"]
PHOTO = ROOT / "tests" / "data" / "astronaut.jpg"


def _make_pair(out: Path):
    from studio.context import RunContext
    from studio.pipeline import generate, rerun
    from studio.request import GenerationRequest
    # RIFE and Real-ESRGAN from the models folder when present, else the labelled fallbacks
    orig = generate(GenerationRequest(image=str(PHOTO), prompt="slow zoom in on the astronaut", frames=8,
                                      fps=8.0, width=192, height=192),
                    out=out / "astronaut-zoom.mp4", ctx=RunContext())
    again = rerun(orig.manifest_path, {"interpolate": 2, "upscale": 2, "upscaler": "animevideov3"},
                  out=out / "astronaut-zoom-x2.mp4", ctx=RunContext())
    return orig, again


def test_gallery_before_after_in_the_browser(server, driver):
    from selenium.webdriver.common.by import By
    url, out = server
    orig, again = _make_pair(out)
    driver.get(url + "/Gallery")
    _wait(lambda: any(c.text.startswith("1.00 s · 192×192 · 8 fps") for c in
                      driver.find_elements(By.CSS_SELECTOR, "[data-testid=stCaptionContainer]")), 60,
          "the original's card facts")
    caps = [c.text for c in driver.find_elements(By.CSS_SELECTOR, "[data-testid=stCaptionContainer]")]
    assert any(c.startswith("0.94 s · 384×384 · 16 fps · ×2 interp, ×2 up · re-run of astronaut-zoom.mp4")
               for c in caps), caps
    _shot(driver, "gallery-cards")
    # open the re-run (the newest card comes first) and turn the before/after view on
    _wait(lambda: [b for b in driver.find_elements(By.TAG_NAME, "button") if b.text.strip() == "Open"], 30,
          "Open buttons")[0].click()
    _wait(lambda: driver.find_elements(By.XPATH, "//h3[contains(., 'astronaut-zoom-x2.mp4')]"), 60,
          "the opened re-run")
    toggle = _wait(lambda: driver.find_element(By.XPATH, "//label[.//p[normalize-space()='Before / after']]"),
                   30, "the Before / after toggle")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", toggle)
    toggle.click()
    cap = _wait(lambda: next((c for c in driver.find_elements(By.CSS_SELECTOR,
                                                              "[data-testid=stCaptionContainer]")
                              if c.text.startswith("left: before")), None), 90, "the before/after view")
    assert "the base clip 192×192 at 8 fps" in cap.text and "right: after, 384×384 at 16 fps" in cap.text
    img = cap.find_element(By.XPATH, "preceding::img[1]")
    _wait(lambda: driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img), 30,
          "the compared frame to load")
    assert driver.execute_script("return arguments[0].naturalWidth", img) == 384
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", img)
    _shot(driver, "before-after")
