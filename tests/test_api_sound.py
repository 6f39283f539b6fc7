"""The API takes a creator's track by upload id only: generate mixes it at its gain, the ledger shows
the audio row, the manifest names no server path, and a path in its place is refused (422)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient

from postfx.assemble import decode_audio
from postfx.sound import audio_streams, write_wav
from studio.audio import Audio
from studio.jobs import JobQueue
from studio.jobs.api import ApiConfig, create_app
from tests.sound_engine import tone

TINY = {"prompt": "camera slowly zooming in", "engine": "camera", "frames": 8, "fps": 8, "width": 64,
        "height": 64}
SR = 48_000


@pytest.fixture
def client(tmp_path):
    q = JobQueue(tmp_path / "jobs.sqlite", devices=["cpu"], poll_s=0.02).start()
    app = create_app(q, ApiConfig(allowed_hosts={"testserver"}))
    token = app.state.tokens.create("alice")
    yield TestClient(app, headers={"Authorization": f"Bearer {token}"}), q
    q.stop()


def test_track_by_upload_id_only(client, photo, tmp_path):
    c, q = client
    img = c.post("/uploads", files={"file": ("a.jpg", photo.read_bytes(), "image/jpeg")}).json()["id"]
    wav = write_wav(tmp_path / "song.wav", Audio(tone(2.0, 1000.0, rate=SR, amp=0.4), SR))
    up = c.post("/uploads", files={"file": ("song.wav", io.BytesIO(wav.read_bytes()), "audio/wav")})
    assert up.status_code == 201, up.text
    assert up.json()["kind"] == "audio"
    body = {"kind": "generate", "payload": {"request": {**TINY, "image": img, "audio": up.json()["id"],
                                                        "audio_mode": "mix", "audio_gain": -6,
                                                        "audio_fade": 0}}}
    led = c.post("/ledger", json=body)
    assert led.status_code == 200, led.text
    row = led.json()["ledger"]["audio"]
    assert row["rate"] == SR and row["duration"] == 1.0 and "your track under the clip (-6 dB" in row["label"]
    r = c.post("/jobs", json=body)
    assert r.status_code == 201, r.text
    assert q.wait(r.json()["id"], timeout=120).status == "done"
    res = c.get(f"/jobs/{r.json()['id']}/result")
    out = tmp_path / "got.mp4"
    out.write_bytes(res.content)
    a = audio_streams(out)
    assert a["samples"] == SR                                  # 8 frames at 8 fps: 1 s of sound
    x = decode_audio(out, SR, 2)[int(0.1 * SR):int(0.9 * SR), 0]
    assert np.sqrt(2 * np.mean(x ** 2)) == pytest.approx(0.4 * 10 ** (-6 / 20), rel=0.06)
    man = c.get(f"/outputs/{r.json()['id']}").json()["manifest"]
    assert man["audio"]["track"]["file"].startswith(up.json()["id"])     # named by its id, no server path
    assert "/" not in man["audio"]["track"]["file"]
    assert man["audio"]["track"]["mode"] == "mix" and man["audio"]["made"] == "track"
    bad = {"kind": "generate", "payload": {"request": {**TINY, "image": img, "audio": str(wav)}}}
    r = c.post("/jobs", json=bad)
    assert r.status_code == 422 and "paths are not accepted" in r.json()["detail"]
    r = c.post("/jobs", json={"kind": "generate", "payload": {"request": {**TINY, "image": img,
                                                                          "audio_mode": "louder"}}})
    assert r.status_code == 422 and "audio_mode='louder' is not one of replace, mix" in r.json()["detail"]


def test_post_and_rerun_take_the_track_by_id_too(client, photo, tmp_path):
    c, q = client
    img = c.post("/uploads", files={"file": ("a.jpg", photo.read_bytes(), "image/jpeg")}).json()["id"]
    wav = write_wav(tmp_path / "t.wav", Audio(tone(2.0, 700.0, rate=SR, amp=0.3), SR))
    aid = c.post("/uploads", files={"file": ("t.wav", wav.read_bytes(), "audio/wav")}).json()["id"]
    r = c.post("/jobs", json={"kind": "generate", "payload": {"request": {**TINY, "image": img}}})
    gid = r.json()["id"]
    assert q.wait(gid, timeout=120).status == "done"
    for kind, payload in (("post", {"input": gid, "settings": {"audio": aid, "audio_fade": 0}}),
                          ("rerun", {"manifest": gid, "overrides": {"audio": aid, "audio_fade": 0}})):
        r = c.post("/jobs", json={"kind": kind, "payload": payload})
        assert r.status_code == 201, r.text
        assert q.wait(r.json()["id"], timeout=120).status == "done"
        out = tmp_path / f"{kind}.mp4"
        out.write_bytes(c.get(f"/jobs/{r.json()['id']}/result").content)
        x = decode_audio(out, SR, 2)[int(0.1 * SR):int(0.9 * SR), 0]
        assert np.sqrt(2 * np.mean(x ** 2)) == pytest.approx(0.3, rel=0.06)   # the track, at 0 dB
    for kind, payload, where in (
            ("post", {"input": gid, "settings": {"audio": str(wav)}}, "payload.settings.audio"),
            ("rerun", {"manifest": gid, "overrides": {"audio": "/etc/passwd"}}, "payload.overrides.audio")):
        r = c.post("/jobs", json={"kind": kind, "payload": payload})
        assert r.status_code == 422 and r.json()["detail"].startswith(f"{where}: paths are not accepted")
    r = c.post("/jobs", json={"kind": "post", "payload": {"input": gid, "settings": {"audio": img}}})
    assert r.status_code == 422 and "payload.settings.audio" in r.json()["detail"]   # an image is no track
