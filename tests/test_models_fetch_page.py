"""The Models page downloads an engine's weights from a local server in the Hub's shape: size and
free disk first, a progress bar, Cancel, Resume (a Range request), and the engine ready after."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hubserver import HubServer, tiny_svd_repo
from streamlit.testing.v1 import AppTest

from studio.ui.common import shutdown_queues

ROOT = Path(__file__).resolve().parent.parent
MODELS = str(ROOT / "app_pages" / "4_Models.py")
REPO = "stabilityai/stable-video-diffusion-img2vid"
BIG = "unet/diffusion_pytorch_model.safetensors"


@pytest.fixture
def hub(tmp_path, monkeypatch):
    shutdown_queues()
    srv = HubServer({REPO: tiny_svd_repo()}, chunk=32 << 10, delay=0.02).start()
    env = {"HF_ENDPOINT": srv.url, "STUDIO_MODELS_DIR": str(tmp_path / "models"),
           "HF_HUB_CACHE": str(tmp_path / "hf"), "STUDIO_JOBS_DB": str(tmp_path / "jobs.sqlite"),
           "STUDIO_OUTPUTS_DIR": str(tmp_path / "out"), "STUDIO_LORAS_DIR": str(tmp_path / "loras")}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    yield srv
    shutdown_queues()
    srv.stop()


def _job():
    from studio.ui.common import studio_queue
    jobs = studio_queue().list(kind="weights", limit=5)
    return jobs[0] if jobs else None


def _wait(cond, timeout=120.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if v := cond():
            return v
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def _texts(at: AppTest) -> list[str]:
    return [e.value for kind in ("markdown", "caption", "success", "warning", "error", "info")
            for e in getattr(at, kind)]


def test_models_page_downloads_with_size_progress_cancel_and_resume(hub, tmp_path):
    at = AppTest.from_file(MODELS, default_timeout=90).run()
    assert not at.exception, at.exception
    assert not [r for r in hub.requests if r[1].startswith("/api/models")]   # nothing asked unasked
    at.button(key="fetch_size_svd").click().run()
    size = sum(len(b) for b in hub.repos[REPO].values())
    line = next(t for t in _texts(at) if t.startswith("**Size:**"))
    assert f"{size / 1e6:.1f} MB in 4 files" in line and "free disk **" in line and "here already —" in line
    assert not [r for r in hub.requests if "/resolve/" in r[1]]              # sizes only

    at.button(key="fetch_go_svd").click().run()
    job = _wait(lambda: (j := _job()) and j.stage == "download" and j.i > 0 and j)
    at.run()
    bars = at.get("progress")
    assert bars and "Downloading diffusers folder:" in bars[0].proto.text
    at.button(key="fetch_cancel_svd").click().run()
    done = _wait(lambda: (j := _job()) and not j.is_active and j)
    assert done.id == job.id and done.status == "cancelled"
    at.run()
    assert any(t.startswith("Download cancelled;") for t in _texts(at))
    go = at.button(key="fetch_go_svd")
    assert go.label.startswith("Resume download (")
    part = tmp_path / "models" / "svd" / ".studio-partial" / f"{BIG}.part"
    kept = part.stat().st_size
    assert kept > 0

    hub.delay = 0.0
    go.click().run()
    done = _wait(lambda: (j := _job()) and j.id != job.id and not j.is_active and j)
    assert done.status == "done", done.error
    assert any(r[2] == f"bytes={kept}-" for r in hub.requests)             # resumed, not restarted
    at.run()
    assert not at.exception
    assert "✅ **Stable Video Diffusion** (`svd`)" in [m.value for m in at.markdown]
    assert not [b for b in at.button if b.key == "fetch_go_svd"]           # ready: nothing to fetch
