"""Real browser: Debian's headless Chromium (Selenium) against `streamlit run app.py` (via studio.ui.serve).

Uploads a photo on the Generate page, generates with the camera engine, and checks that the
<video> element plays (readyState >= 2 and currentTime advances).  On the Sequence page, adds two
gallery clips, crossfades them, exports as a job and checks the result plays and has the planned
frame count.  Screenshots go to test-artifacts/ (and docs/screenshots/ with STUDIO_DOCS_SCREENSHOTS=1).
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


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float, log_text) -> None:
    """Wait until Streamlit at `url` answers its health check; RuntimeError with the tail of its
    log (`log_text()`) when `proc` exits or `timeout` seconds pass first."""
    end = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > end:
            raise RuntimeError("streamlit did not start: " + log_text()[-2000:])
        time.sleep(0.2)


@pytest.fixture(scope="module")
def server(tmp_path_factory, request):
    if not (Path(CHROMIUM).is_file() and Path(DRIVER).is_file()):
        pytest.skip("Chromium/chromedriver are not installed and scripts/ensure_browser.sh could not "
                    "install them (needs apt and Debian's chromium, chromium-driver packages)")
    pytest.importorskip("selenium", reason="selenium is not installed (requirements-dev.txt)")
    out = tmp_path_factory.mktemp("browser-outputs")
    port = _free_port()
    env = dict(os.environ, STUDIO_OUTPUTS_DIR=str(out), STUDIO_JOBS_DB=str(out / "jobs.sqlite"))
    # `streamlit run app.py` behind the studio's Host check (studio.ui.serve), as `make run` serves it
    cmd = [sys.executable, "-m", "studio.ui.serve", "--server.port", str(port),
           "--server.headless", "true", "--server.address", "127.0.0.1"]
    if os.environ.get("STUDIO_BROWSER_DEBUG"):
        cmd += ["--logger.level", "debug"]
    log = open(out / "streamlit.log", "wb")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, 30, lambda: (out / "streamlit.log").read_text())
        yield url, out
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copyfile(out / "streamlit.log", ARTIFACTS / f"streamlit-{request.module.__name__}.log")


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


# Polling deadlines only (no test asserts a time with them): a page that redraws in under a second on a
# quiet machine took over 20-30 s in some loaded full-suite runs, so every wait gets this much slack.
WAIT_SLACK = 3.0


def _click_when(fn, timeout: float, what: str) -> None:
    """Find an element with `fn()` and click it as one retried step (a rerun can replace it with an
    equal new one between a lookup and a later click, leaving the old reference stale)."""
    def go() -> bool:
        el = fn()
        if el is None:
            return False
        el.click()
        return True
    _wait(go, timeout, f"a click on {what}")


def _wait(fn, timeout: float, what: str):
    end = time.monotonic() + timeout * WAIT_SLACK
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


def _upload_photo(driver, photo: Path) -> None:
    """Upload `photo` on the Generate page as a person does: until its preview is drawn.

    In a loaded CI run the file sent to the page's <input type=file> was lost (the uploader was
    redrawn under it, most likely): the page said "Pick an input image" for good and the wait for
    the Generate button timed out.  So the upload is repeated until the preview shows, at most
    three times; each retry is printed and screenshotted.
    """
    from selenium.webdriver.common.by import By
    for attempt in range(3):
        up = _wait(lambda: driver.find_element(By.CSS_SELECTOR, "input[type=file]"), 30, "the uploader")
        up.send_keys(str(photo))
        try:
            _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "[data-testid=stImageCaption]"), 20,
                  "the uploaded photo's preview")
            return
        except AssertionError:
            print(f"upload {attempt + 1}: no preview; uploading again")
            _shot(driver, f"upload-lost-{attempt + 1}")
    raise AssertionError(f"the preview of {photo.name} never appeared after 3 uploads")


def test_upload_generate_and_video_plays(server, driver):
    from selenium.webdriver.common.by import By
    url, out = server
    driver.get(url + "/Generate")
    _upload_photo(driver, ROOT / "tests" / "data" / "astronaut.jpg")

    def gen_button():
        for b in driver.find_elements(By.TAG_NAME, "button"):
            if "Generate" in b.text and "🎬" in b.text and b.is_enabled():
                return b
        return None
    _wait(gen_button, 30, "an enabled Generate button")
    _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "[data-testid=stTable]"), 20, "the ledger")
    driver.execute_script("window.scrollTo(0, 0)")
    time.sleep(0.5)
    _shot(driver, "generate")
    before = set(out.glob("*.mp4"))
    _click_when(gen_button, 30, "the Generate button")
    _wait(lambda: driver.find_element(By.TAG_NAME, "video"), 45, "the <video> element")
    _plays(driver)
    assert driver.execute_script("return arguments[0].videoWidth", _video(driver)) == 512
    assert len(set(out.glob("*.mp4")) - before) == 1
    driver.execute_script("window.scrollTo(0, 0)")      # the result sits at the top of the right column
    time.sleep(1.5)
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


def _video(driver):
    from selenium.webdriver.common.by import By
    return driver.find_element(By.TAG_NAME, "video")


def _plays(driver) -> None:
    """Start the page's <video> muted and wait until it has data and its currentTime advances.

    The element is looked up on every poll: a Streamlit rerun can replace it with an equal new
    one, leaving an older reference stale; play() is repeated so a replacement plays too.
    """
    def js(script: str):
        return driver.execute_script(script, _video(driver))
    play = "arguments[0].muted = true; arguments[0].play(); "
    _wait(lambda: js("arguments[0].scrollIntoView(); " + play) or True, 10, "play()")
    _wait(lambda: js(play + "return arguments[0].readyState") >= 2, 20, "readyState >= 2")
    t0 = _wait(lambda: [js("return arguments[0].currentTime")], 10, "currentTime")[0]
    _wait(lambda: js("return arguments[0].currentTime") != t0, 10, "currentTime to advance")


def _button(driver, label: str):
    """The enabled <button> whose text is `label` (None while there is none)."""
    from selenium.webdriver.common.by import By
    for b in driver.find_elements(By.TAG_NAME, "button"):
        if b.text.strip() == label and b.is_enabled() and b.is_displayed():
            return b
    return None


def _widget(driver, testid: str, label: str):
    """The Streamlit widget (by data-testid) whose label text is `label`."""
    from selenium.webdriver.common.by import By
    for w in driver.find_elements(By.CSS_SELECTOR, f"[data-testid={testid}]"):
        lab = w.find_elements(By.CSS_SELECTOR, "[data-testid=stWidgetLabel]")
        if lab and lab[0].text.strip() == label:
            return w
    return None


def _choose(driver, label: str, option: str) -> None:
    """Open the selectbox labelled `label` and click the option whose text is `option`."""
    from selenium.webdriver.common.by import By
    box = _wait(lambda: _widget(driver, "stSelectbox", label), 20, f"the {label!r} selectbox")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", box)
    box.find_element(By.CSS_SELECTOR, "input").click()
    opt = _wait(lambda: next((o for o in driver.find_elements(By.CSS_SELECTOR, "[role=option]")
                              if o.text.strip() == option), None), 10, f"option {option!r}")
    opt.click()

    def chosen():
        inp = _widget(driver, "stSelectbox", label).find_element(By.CSS_SELECTOR, "input")
        return inp.get_property("value") == option and inp.get_attribute("aria-expanded") == "false"
    _wait(chosen, 10, f"{label!r} = {option!r}")


def _number(driver, label: str, value: float | int) -> None:
    """Type `value` into the number input labelled `label` and commit it with Enter.

    Find, click and type are retried together: a rerun from the previous widget can redraw the
    input (zero size or stale for a moment); select-all then type makes a retry idempotent.
    """
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    def enter() -> bool:
        inputs = _widget(driver, "stNumberInput", label).find_elements(By.CSS_SELECTOR, "input")
        field = next(f for f in inputs if f.is_enabled())
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", field)
        field.click()
        field.send_keys(Keys.CONTROL, "a")
        field.send_keys(str(value), Keys.ENTER)
        return True
    _wait(enter, 20, f"an enabled {label!r} input to take {value}")
    _wait(lambda: float(_widget(driver, "stNumberInput", label).find_element(
        By.CSS_SELECTOR, "input").get_attribute("value")) == float(value), 10, f"{label!r} = {value}")


def _metric(driver, label: str) -> str:
    from selenium.webdriver.common.by import By
    for m in driver.find_elements(By.CSS_SELECTOR, "[data-testid=stMetric]"):
        if m.find_element(By.CSS_SELECTOR, "[data-testid=stMetricLabel]").text.strip() == label:
            return m.find_element(By.CSS_SELECTOR, "[data-testid=stMetricValue]").text.strip()
    raise LookupError(f"no metric {label!r}")


def _heading(driver, text: str) -> bool:
    from selenium.webdriver.common.by import By
    return any(h.text.strip() == text for h in driver.find_elements(By.CSS_SELECTOR, "h1, h2, h3"))


def test_sequence_gallery_crossfade_export_plays(server, driver):
    from selenium.webdriver.common.by import By

    from postfx.assemble import probe_video
    from studio.pipeline import generate
    from studio.request import GenerationRequest
    url, out = server
    # two 1 s clips (8 frames at 8 fps) in the server's outputs folder, with manifests
    for name, prompt in (("seq-a-pan-right.mp4", "pan right"), ("seq-b-zoom-in.mp4", "zoom in")):
        generate(GenerationRequest(image=str(ROOT / "tests" / "data" / "astronaut.jpg"), prompt=prompt,
                                   frames=8, fps=8, width=96, height=64), out=out / name)
    driver.get(url + "/Sequence")
    _wait(lambda: any("Sequence" in h.text for h in driver.find_elements(By.TAG_NAME, "h1")), 30, "the title")
    for i, name in enumerate(("seq-a-pan-right.mp4", "seq-b-zoom-in.mp4"), 1):
        _choose(driver, "Clip", name)
        _click_when(lambda: _button(driver, "Add clip"), 10, "Add clip")
        heading, entry = f"Timeline ({i})", f"{i}. 🎞️ {name}"
        _wait(lambda h=heading: _heading(driver, h), 20, heading)
        _wait(lambda e=entry: any(p.text.strip() == e for p in driver.find_elements(
            By.CSS_SELECTOR, "[data-testid=stMarkdownContainer] p")), 10, entry)
    # a small output, so the export is quick: 96×64 at 8 fps, crossfade 0.5 s between the clips
    driver.find_element(By.XPATH, "//label[.//p[normalize-space()='Custom size']]").click()
    _number(driver, "Width", 96)
    _number(driver, "Height", 64)
    _number(driver, "FPS", 8)
    _choose(driver, "Transition to next", "crossfade")
    _number(driver, "Transition (s)", 0.5)
    # the plan: 1 s + 1 s - 0.5 s = 1.5 s = 12 frames at 8 fps
    _wait(lambda: _metric(driver, "Duration") == "1.50 s", 20, "Duration 1.50 s")
    frames = int(_metric(driver, "Frames"))
    assert frames == 8 + 8 - 4
    assert _metric(driver, "Size") == "96×64"
    before = set(out.glob("*sequence*.mp4"))
    _click_when(lambda: _button(driver, "Export"), 10, "Export")
    _wait(lambda: driver.find_element(By.TAG_NAME, "video"), 45, "the exported <video>")
    _plays(driver)  # the page may rerun once more after the export
    assert driver.execute_script("return arguments[0].videoWidth", _video(driver)) == 96
    assert any("Wrote " in e.text for e in driver.find_elements(By.CSS_SELECTOR, "[data-testid=stAlert]"))
    new = sorted(set(out.glob("*sequence*.mp4")) - before)
    assert len(new) == 1
    info = probe_video(new[0])
    assert (info["width"], info["height"], info["frames"]) == (96, 64, frames)
    assert abs(info["duration"] - 1.5) < 0.01
    assert not driver.find_elements(By.CSS_SELECTOR, "[data-testid=stException]")
    driver.execute_script("arguments[0].scrollIntoView()", driver.find_element(By.TAG_NAME, "h1"))
    time.sleep(0.5)
    _shot(driver, "sequence")
