"""Real browser: Debian's headless Chromium (Selenium) against `streamlit run app.py`.

Uploads a photo on the Generate page, generates with the camera engine, and checks that the
<video> element plays (readyState >= 2 and currentTime advances).  Screenshots go to test-artifacts/.
Skipped only when Chromium or chromedriver is not installed (scripts/ensure_browser.sh installs them).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
DOCS = ROOT / "docs" / "screenshots"   # refreshed when STUDIO_DOCS_SCREENSHOTS=1
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,1800", "--autoplay-policy=no-user-gesture-required"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not (Path(CHROMIUM).is_file() and Path(DRIVER).is_file()):
        pytest.skip("Chromium/chromedriver are not installed and scripts/ensure_browser.sh could not "
                    "install them (needs apt and Debian's chromium, chromium-driver packages)")
    pytest.importorskip("selenium", reason="selenium is not installed (requirements-dev.txt)")
    out = tmp_path_factory.mktemp("browser-outputs")
    port = _free_port()
    env = dict(os.environ, STUDIO_OUTPUTS_DIR=str(out), STUDIO_JOBS_DB=str(out / "jobs.sqlite"))
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
           "--server.headless", "true", "--server.address", "127.0.0.1"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        end = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError("streamlit did not start: " + proc.stdout.read().decode()[-2000:])
            time.sleep(0.2)
        yield url, out
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for f in FLAGS:
        opts.add_argument(f)
    profile = tempfile.mkdtemp(prefix="studio-chromium-")
    opts.add_argument(f"--user-data-dir={profile}")
    d = webdriver.Chrome(service=Service(executable_path=DRIVER), options=opts)
    d.set_page_load_timeout(30)
    yield d
    d.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _shot(driver, name: str) -> Path:
    """Save a screenshot to test-artifacts/ (and docs/screenshots/ when asked)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    if os.environ.get("STUDIO_DOCS_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS / path.name)
    return path


def _wait(fn, timeout: float, what: str):
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            last = fn()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - the page is still drawing
            last = e
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def test_upload_generate_and_video_plays(server, driver):
    from selenium.webdriver.common.by import By
    url, out = server
    driver.get(url + "/Generate")
    upload = _wait(lambda: driver.find_element(By.CSS_SELECTOR, "input[type=file]"), 30, "the uploader")
    upload.send_keys(str(ROOT / "tests" / "data" / "astronaut.jpg"))

    def gen_button():
        for b in driver.find_elements(By.TAG_NAME, "button"):
            if "Generate" in b.text and "🎬" in b.text and b.is_enabled():
                return b
        return None
    button = _wait(gen_button, 30, "an enabled Generate button")
    _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "[data-testid=stDataFrame]"), 20, "the ledger")
    driver.execute_script("window.scrollTo(0, 0)")
    time.sleep(0.5)
    _shot(driver, "generate")
    button.click()
    video = _wait(lambda: driver.find_element(By.TAG_NAME, "video"), 45, "the <video> element")
    driver.execute_script("arguments[0].scrollIntoView(); arguments[0].muted = true; "
                          "arguments[0].play();", video)
    _wait(lambda: driver.execute_script("return arguments[0].readyState", video) >= 2, 20, "readyState >= 2")
    t0 = driver.execute_script("return arguments[0].currentTime", video)
    _wait(lambda: driver.execute_script("return arguments[0].currentTime", video) != t0, 10,
          "currentTime to advance")
    assert driver.execute_script("return arguments[0].videoWidth", video) == 512
    assert len(list(out.glob("*.mp4"))) == 1
    time.sleep(0.5)
    _shot(driver, "generate-result")


@pytest.mark.parametrize("page", ["", "Gallery", "Models"])
def test_pages_render_in_browser(server, driver, page):
    from selenium.webdriver.common.by import By
    url, _ = server
    driver.get(f"{url}/{page}")
    title = {"": "Image-to-video studio", "Gallery": "Gallery", "Models": "Models & LoRAs"}[page]
    _wait(lambda: any(title in h.text for h in driver.find_elements(By.TAG_NAME, "h1")), 30, f"'{title}'")
    time.sleep(1.0)
    assert not driver.find_elements(By.CSS_SELECTOR, "[data-testid=stException]")
    _shot(driver, page.lower() or "home")
