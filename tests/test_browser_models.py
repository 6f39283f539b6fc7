"""Real browser (headless Chromium): the Models page downloads an engine's weights from a local
server in the Hub's shape (never the real Hub): Check size, Download, the progress bar, Cancel,
Resume, and the engine ready after.  Screenshots: models.png (running), models-download-done.png."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hubserver import HubServer, tiny_svd_repo
from test_browser import (
    ARTIFACTS,
    CHROMIUM,
    DRIVER,
    ROOT,
    _free_port,
    _shot,
    _wait,
    driver,
    wait_healthy,
)

pytestmark = pytest.mark.browser
__all__ = ["driver"]
REPO = "stabilityai/stable-video-diffusion-img2vid"
BIG = "unet/diffusion_pytorch_model.safetensors"


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    if not (Path(CHROMIUM).is_file() and Path(DRIVER).is_file()):
        pytest.skip("Chromium/chromedriver are not installed")
    pytest.importorskip("selenium")
    hub = HubServer({REPO: tiny_svd_repo(big=6 << 20)}, chunk=32 << 10, delay=0.3).start()
    out = tmp_path_factory.mktemp("browser-models")
    port = _free_port()
    env = dict(os.environ, STUDIO_OUTPUTS_DIR=str(out / "outputs"), STUDIO_JOBS_DB=str(out / "jobs.sqlite"),
               STUDIO_MODELS_DIR=str(out / "models"), HF_HUB_CACHE=str(out / "hf"), HF_ENDPOINT=hub.url)
    env.pop("HF_HUB_OFFLINE", None)
    log = open(out / "streamlit.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                             "--server.headless", "true", "--server.address", "127.0.0.1"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, 60, lambda: (out / "streamlit.log").read_text())
        yield url, out, hub
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        hub.stop()
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "streamlit-browser-models.log").write_bytes((out / "streamlit.log").read_bytes())


def _svd_box(driver):
    """The bordered container of the SVD engine (its heading names `svd`)."""
    from selenium.webdriver.common.by import By
    head = _svd_heading(driver)
    if head is None:
        return None
    return head.find_element(By.XPATH, "ancestor::div[@data-testid='stVerticalBlock'][1]")


def _svd_heading(driver):
    from selenium.webdriver.common.by import By
    return next((p for p in driver.find_elements(By.CSS_SELECTOR, "[data-testid=stMarkdownContainer] p")
                 if p.text.endswith("(svd)")), None)


def _in_box(driver, label: str):
    from selenium.webdriver.common.by import By
    box = _svd_box(driver)
    if box is None:
        return None
    for b in box.find_elements(By.TAG_NAME, "button"):
        if b.text.strip().startswith(label) and b.is_enabled() and b.is_displayed():
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", b)
            return b
    return None


def _box_text(driver) -> str:
    box = _svd_box(driver)
    return box.text if box is not None else ""


def test_models_page_download_in_the_browser(studio, driver):
    from selenium.webdriver.common.by import By
    url, out, hub = studio
    driver.get(url + "/Models")
    _wait(lambda: _in_box(driver, "Check size"), 60, "the SVD engine's Check size button").click()
    _wait(lambda: "free disk" in _box_text(driver) and "in 4 files" in _box_text(driver), 60, "the size line")
    text = _box_text(driver)
    assert f"--local-dir {(out / 'models' / 'svd').resolve()}" in text and "/hf download " + REPO in text
    _in_box(driver, "Download").click()
    bar = _wait(lambda: (b := _svd_box(driver)) and b.find_elements(By.CSS_SELECTOR,
                                                                     "[data-testid=stProgress]"),
                60, "the progress bar")
    # the bar moves on its own (a fragment redraws it): two readings, the second further on
    first = _wait(lambda: "Downloading diffusers folder:" in _box_text(driver) and _box_text(driver), 30,
                  "the bar's text")
    _wait(lambda: _box_text(driver) != first and "Downloading" in _box_text(driver), 30, "the bar to move")
    assert bar
    _shot(driver, "models")                    # docs/screenshots/models.png: a download running
    _wait(lambda: _in_box(driver, "Cancel download"), 30, "Cancel").click()
    _wait(lambda: "Download cancelled;" in _box_text(driver), 60, "the cancelled note")
    part = out / "models" / "svd" / ".studio-partial" / f"{BIG}.part"
    kept = part.stat().st_size
    assert 0 < kept < len(hub.repos[REPO][BIG])
    hub.delay = 0.0
    _wait(lambda: _in_box(driver, "Resume download ("), 30, "Resume").click()
    _wait(lambda: (h := _svd_heading(driver)) is not None and h.text.startswith("✅"), 120, "SVD ready")
    assert any(r[2] == f"bytes={kept}-" for r in hub.requests)
    assert (out / "models" / "svd" / BIG).read_bytes() == hub.repos[REPO][BIG]
    assert _in_box(driver, "Download") is None and _in_box(driver, "Resume") is None   # nothing left to fetch
    _shot(driver, "models-download-done")
