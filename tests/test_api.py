"""The REST API (FastAPI TestClient) over a real queue and the camera engine."""

from __future__ import annotations

import base64
import json

import pytest
from fastapi.testclient import TestClient

from studio.jobs import JobQueue
from studio.jobs.api import create_app

TINY = {"prompt": "camera slowly zooming in", "engine": "camera", "frames": 4, "width": 64, "height": 64}


@pytest.fixture
def queue(tmp_path):
    q = JobQueue(tmp_path / "jobs.sqlite", devices=["cpu"], poll_s=0.02).start()
    yield q
    q.stop()


@pytest.fixture
def client(queue):
    return TestClient(create_app(queue))


def _b64(path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def test_generate_with_base64_image_then_fetch_result(client, queue, photo):
    r = client.post("/jobs", json={"request": TINY, "image_base64": _b64(photo), "image_name": "a.jpg"})
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["kind"] == "generate" and job["status"] == "queued"
    assert job["payload"]["request"]["frames"] == 4
    assert queue.wait(job["id"], timeout=60).status == "done"
    got = client.get(f"/jobs/{job['id']}").json()
    assert got["status"] == "done" and got["result"]["output"].endswith(".mp4")
    res = client.get(f"/jobs/{job['id']}/result")
    assert res.status_code == 200 and res.content[4:8] == b"ftyp"   # an MP4 file
    outs = client.get("/outputs").json()
    assert len(outs) == 1 and outs[0]["manifest"]["request"]["frames"] == 4
    listed = client.get("/jobs", params={"status": "done"}).json()
    assert [j["id"] for j in listed] == [job["id"]]


def test_generate_with_multipart_upload(client, queue, photo):
    files = {"image": ("astro.jpg", photo.read_bytes(), "image/jpeg")}
    r = client.post("/jobs", data={"request": json.dumps(TINY)}, files=files)
    assert r.status_code == 201, r.text
    assert r.json()["payload"]["request"]["image"].endswith("astro.jpg")
    assert queue.wait(r.json()["id"], timeout=60).status == "done"


def test_out_of_range_value_is_422_naming_it(client, photo):
    r = client.post("/jobs", json={"request": {**TINY, "frames": 999}, "image_base64": _b64(photo)})
    assert r.status_code == 422
    assert "frames=999" in r.json()["detail"]


def test_corrupt_image_is_400_naming_the_file(client):
    bad = base64.b64encode(b"\xff\xd8\xff\xe0 not really a jpeg" * 10).decode()
    r = client.post("/jobs", json={"request": TINY, "image_base64": bad, "image_name": "broken.jpg"})
    assert r.status_code == 400
    assert "broken.jpg" in r.json()["detail"]


def test_missing_image_and_bad_base64_are_400(client):
    assert client.post("/jobs", json={"request": TINY}).status_code == 400
    r = client.post("/jobs", json={"request": TINY, "image_base64": "@@not base64@@"})
    assert r.status_code == 400 and "base64" in r.json()["detail"]


def test_unknown_job_is_404_and_unfinished_result_is_409(client, tmp_path):
    assert client.get("/jobs/nope").status_code == 404
    idle = JobQueue(tmp_path / "idle.sqlite", devices=[]).start()
    c2 = TestClient(create_app(idle))
    job = idle.submit("weights", {"group": "all"})
    assert c2.get(f"/jobs/{job.id}/result").status_code == 409
    r = c2.post(f"/jobs/{job.id}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    idle.stop()


def test_ledger_endpoint(client):
    r = client.post("/ledger", json={"request": {**TINY, "upscale": 2, "upscaler": "lanczos"}})
    assert r.status_code == 200, r.text
    led = r.json()
    assert led["final"]["frames"] == 4
    assert (led["final"]["width"], led["final"]["height"]) == (128, 128)
    assert led["rows"][0]["stage"] == "engine"
    bad = client.post("/ledger", json={"request": {**TINY, "upscale": 5}})
    assert bad.status_code == 422 and "upscale=5" in bad.json()["detail"]


def test_models_lists_camera_ready(client):
    r = client.get("/models").json()
    assert r["engines"]["camera"]["present"] is True
    assert isinstance(r["weights"], dict)


def test_bad_status_filter(client):
    r = client.get("/jobs", params={"status": "sleeping"})
    assert r.status_code == 422 and "sleeping" in r.json()["detail"]
