"""Real browser: the Sequence page's plan table fits its column (no horizontal scrolling)."""

from __future__ import annotations

import time

import pytest
from test_browser import ROOT, _button, _choose, _heading, _metric, _number, _shot, _wait, driver, server

pytestmark = pytest.mark.browser
__all__ = ["driver", "server"]   # the fixtures, shared with test_browser.py


def test_sequence_plan_table_shows_every_column(server, driver):
    from selenium.webdriver.common.by import By

    from studio.pipeline import generate
    from studio.request import GenerationRequest
    from studio.ui.names import display_name
    url, out = server
    names = ("20261122-043847-pan-right-clouds-drifting-55b33e.mp4", "plan-b-zoom-in.mp4")
    for name in names:
        generate(GenerationRequest(image=str(ROOT / "tests" / "data" / "astronaut.jpg"), prompt="pan right",
                                   frames=8, fps=8, width=96, height=64), out=out / name)
    driver.get(url + "/Sequence")
    _wait(lambda: any("Sequence" in h.text for h in driver.find_elements(By.TAG_NAME, "h1")), 30, "the title")
    for i, name in enumerate(names, 1):
        _choose(driver, "Clip", display_name(name))
        _wait(lambda: _button(driver, "Add clip"), 10, "Add clip").click()
        _wait(lambda h=f"Timeline ({i})": _heading(driver, h), 20, f"Timeline ({i})")
    driver.find_element(By.XPATH, "//label[.//p[normalize-space()='Custom size']]").click()
    _number(driver, "FPS", 8)
    _choose(driver, "Transition to next", "fade_black")
    _number(driver, "Transition (s)", 0.5)
    _wait(lambda: _metric(driver, "Duration") == "1.50 s", 20, "Duration 1.50 s")
    time.sleep(1.0)
    grid = driver.execute_script("""
        const g = document.querySelector('[data-testid=stDataFrame]');
        const s = g.querySelector('.dvn-scroller');
        return {heads: [...g.querySelectorAll('th')].map(t => t.textContent.trim()),
                cells: [...g.querySelectorAll('td')].map(t => t.textContent.trim()),
                scroll: s.scrollWidth, client: s.clientWidth};""")
    # the readable name (time first, so two clips of one prompt differ where the cell is cut)
    assert grid["cells"][0] == "04:38:47 · pan-right-clouds-drifting" == display_name(names[0])
    assert grid["heads"] == ["entry", "time (s)", "from previous"]
    assert "fade_black 0.5 s" in grid["cells"] and "0.50–1.50" in grid["cells"]
    assert grid["scroll"] <= grid["client"], grid          # every column inside the visible width
    driver.execute_script("window.scrollTo(0, 0)")
    time.sleep(0.5)
    _shot(driver, "sequence-plan")
