"""Live workers, as the API and the Home page see them: `serve` alone says why a job waits."""

from __future__ import annotations

import time

from tests.live_api import start_api


def _until(fn, timeout: float = 90.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = fn()
        if v:
            return v
        time.sleep(0.3)
    raise AssertionError("condition not reached")


def test_serve_alone_reports_no_worker_and_the_job_says_why_it_waits(tmp_path, photo):
    api = start_api(tmp_path / "outputs", {"alice": []}, workers=0)
    try:
        c = api.client("alice")
        h = c.get("/health").json()
        assert h["status"] == "ok" and h["workers"] == 0 and h["devices"] == []
        img = c.post("/uploads", files={"file": ("a.jpg", photo.read_bytes(), "image/jpeg")}).json()["id"]
        body = {"kind": "generate", "payload": {"request": {"image": img, "frames": 3, "width": 32,
                                                            "height": 32}}}
        job = c.post("/jobs", json=body).json()
        j = c.get(f"/jobs/{job['id']}").json()
        assert j["status"] == "queued" and "no worker is running" in j["message"]
        assert "python -m studio worker" in j["message"]
        api.add_worker("--device", "cpu")
        h = _until(lambda: (lambda d: d if d["workers"] == 1 else None)(c.get("/health").json()))
        assert h["devices"] == ["cpu"]
        def finished():
            d = c.get(f"/jobs/{job['id']}").json()
            return d if d["status"] == "done" else None
        done = _until(finished, timeout=120)
        assert "no worker" not in (done["message"] or "")
    finally:
        api.stop()


def test_home_page_counts_the_live_worker_of_its_own_queue():
    """The Home page's line comes from the workers table its queue's dispatcher beats into."""
    from studio.jobs import JobQueue
    from studio.ui.home import workers_line
    q = JobQueue(devices=["cpu"]).start()
    try:
        live = _until(q.workers, timeout=30)
        assert [w["device"] for w in live] == ["cpu"]
        assert workers_line(live).startswith("✅ 1 worker(s) alive (0 busy) on cpu")
        assert JobQueue(q.store, devices=[]).workers() == live      # another process's view, no dispatcher
    finally:
        q.stop()
    assert q.workers() == [] and workers_line([]).startswith("⛔ No worker is alive")
