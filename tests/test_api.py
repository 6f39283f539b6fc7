"""The REST API in-process (FastAPI TestClient) over a real queue and the camera engine.

The attacks run against a live server in test_api_security.py; this file covers the ordinary flow.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from studio.jobs import JobQueue
from studio.jobs.api import ApiConfig, create_app

TINY = {"prompt": "camera slowly zooming in", "engine": "camera", "frames": 4, "width": 64, "height": 64}


@pytest.fixture
def queue(tmp_path):
    q = JobQueue(tmp_path / "jobs.sqlite", devices=["cpu"], poll_s=0.02).start()
    yield q
    q.stop()


def _client(queue) -> TestClient:
    app = create_app(queue, ApiConfig(allowed_hosts={"testserver"}))
    token = app.state.tokens.create("alice")
    return TestClient(app, headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
def client(queue):
    return _client(queue)


def _upload(client, path, name=None) -> str:
    r = client.post("/uploads", files={"file": (name or path.name, path.read_bytes(), "image/jpeg")})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_upload_generate_then_fetch_result(client, queue, photo):
    up = client.post("/uploads", files={"file": ("a.jpg", photo.read_bytes(), "image/jpeg")})
    assert up.status_code == 201, up.text
    rec = up.json()
    assert rec["kind"] == "image" and (rec["width"], rec["height"]) == (512, 512) and rec["name"] == "a.jpg"
    assert "path" not in rec
    r = client.post("/jobs", json={"kind": "generate", "payload": {"request": {**TINY, "image": rec["id"]}}})
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["kind"] == "generate" and job["status"] == "queued" and job["owner"] == "alice"
    assert job["payload"]["request"]["image"] == rec["id"]  # the client's payload, as sent
    assert queue.wait(job["id"], timeout=60).status == "done"
    got = client.get(f"/jobs/{job['id']}").json()
    assert got["status"] == "done" and got["result"]["output_id"] == job["id"]
    assert got["result"]["name"].endswith(".mp4") and "engine" in got["result"]["timings"]
    res = client.get(f"/jobs/{job['id']}/result")
    assert res.status_code == 200 and res.content[4:8] == b"ftyp"  # an MP4 file
    outs = client.get("/outputs").json()
    assert [o["id"] for o in outs] == [job["id"]]
    man = client.get(f"/outputs/{job['id']}").json()["manifest"]
    assert man["request"]["frames"] == 4 and "/" not in man["output"]["path"]
    listed = client.get("/jobs", params={"status": "done"}).json()
    assert [j["id"] for j in listed] == [job["id"]]


def test_out_of_range_value_is_422_naming_it(client, photo):
    up = _upload(client, photo)
    r = client.post(
        "/jobs", json={"kind": "generate", "payload": {"request": {**TINY, "frames": 999, "image": up}}}
    )
    assert r.status_code == 422
    assert "frames=999" in r.json()["detail"]


def test_corrupt_image_is_400_naming_the_file(client):
    r = client.post("/uploads", files={"file": ("broken.jpg", b"\xff\xd8\xff\xe0 not really a jpeg" * 10)})
    assert r.status_code == 400
    assert "broken.jpg" in r.json()["detail"]


def test_missing_image_is_422(client):
    r = client.post("/jobs", json={"kind": "generate", "payload": {"request": TINY}})
    assert r.status_code == 422 and "payload.request.image is required" in r.json()["detail"]


def test_unknown_job_is_404_and_unfinished_result_is_409(client, tmp_path):
    assert client.get("/jobs/nope").status_code == 404
    idle = JobQueue(tmp_path / "idle.sqlite", devices=[]).start()
    c2 = _client(idle)
    from tests.conftest import DATA

    up = _upload(c2, DATA / "astronaut.jpg")
    job = c2.post("/jobs", json={"kind": "generate", "payload": {"request": {**TINY, "image": up}}}).json()
    assert c2.get(f"/jobs/{job['id']}/result").status_code == 409
    r = c2.post(f"/jobs/{job['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    idle.stop()


def test_ledger_endpoint(client, photo):
    up = _upload(client, photo)
    body = {
        "kind": "generate",
        "payload": {"request": {**TINY, "image": up, "upscale": 2, "upscaler": "lanczos"}},
    }
    r = client.post("/ledger", json=body)
    assert r.status_code == 200, r.text
    led = r.json()
    assert led["frames"] == 4 and (led["width"], led["height"]) == (128, 128)
    assert led["ledger"]["rows"][0]["stage"] == "engine"
    assert client.get("/jobs").json() == []  # nothing was queued
    body["payload"]["request"]["upscale"] = 5
    bad = client.post("/ledger", json=body)
    assert bad.status_code == 422 and "upscale=5" in bad.json()["detail"]


def test_models_lists_camera_ready(client):
    r = client.get("/models").json()
    assert r["engines"]["camera"]["present"] is True
    assert isinstance(r["weights"], dict)


def test_bad_status_filter(client):
    r = client.get("/jobs", params={"status": "sleeping"})
    assert r.status_code == 422 and "sleeping" in r.json()["detail"]
