"""The job service as a hostile client meets it: a live server on 127.0.0.1, real tokens, real requests.

Every attack from the job-service issue is tried and answered with an exact status and message; canary
files outside the owners' folders must be unchanged at the end, and never readable through any route.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid

import httpx
import pytest

from tests.live_api import start_api, wait_job

TINY = {"prompt": "camera slowly zooming in", "engine": "camera", "frames": 4, "width": 32, "height": 32}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("api-security")
    canary = root / "canary"
    canary.mkdir()
    (canary / "notes.txt").write_text("do not touch\n")
    (canary / "frame_00000.png").write_bytes(b"not a frame")
    from tests.conftest import DATA

    shutil.copy(DATA / "chelsea.jpg", root / "canary.jpg")
    watched = [canary / "notes.txt", canary / "frame_00000.png", root / "canary.jpg"]
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in watched}
    api = start_api(
        root / "outputs",
        {
            "alice": ["--submits", "500", "--rate", "2000"],
            "bob": ["--submits", "500", "--rate", "2000"],
            "boss": ["--admin", "--rate", "2000"],
            "tight": ["--max-seconds", "5", "--max-frames", "100", "--max-temp-gb", "0.001"],
            "ratey": ["--rate", "5"],
        },
        extra_env={"STUDIO_MAX_UPLOAD_MB": "2"},
    )
    yield {
        "api": api,
        "root": root,
        "canary": canary,
        "canary_image": root / "canary.jpg",
        "watched": watched,
        "before": before,
    }
    api.stop()


def _upload(c: httpx.Client, path, name: str | None = None) -> dict:
    r = c.post("/uploads", files={"file": (name or path.name, path.read_bytes(), "application/octet-stream")})
    assert r.status_code == 201, r.text
    return r.json()


def _job(c: httpx.Client, kind: str, payload: dict) -> httpx.Response:
    return c.post("/jobs", json={"kind": kind, "payload": payload})


@pytest.fixture(scope="module")
def alice_done(env):
    """Alice's upload and one finished generation of hers."""
    from tests.conftest import DATA

    api = env["api"]
    with api.client("alice") as c:
        up = _upload(c, DATA / "astronaut.jpg")
        r = _job(c, "generate", {"request": {**TINY, "image": up["id"]}})
        assert r.status_code == 201, r.text
        job = wait_job(c, r.json()["id"])
    assert job["status"] == "done", job
    return up, job


ROUTES = [
    ("GET", "/jobs"),
    ("GET", "/jobs/0123456789ab"),
    ("POST", "/jobs"),
    ("POST", "/ledger"),
    ("GET", "/outputs"),
    ("GET", "/uploads"),
    ("POST", "/uploads"),
    ("GET", "/models"),
    ("GET", "/metrics"),
    ("GET", "/me"),
    ("GET", "/openapi.json"),
    ("POST", "/jobs/0123456789ab/cancel"),
    ("GET", "/no-such-route"),
]


def test_health_is_open_every_other_route_needs_a_token(env):
    api = env["api"]
    assert httpx.get(api.url + "/health").json()["status"] == "ok"
    for method, path in ROUTES:
        r = httpx.request(method, api.url + path, json={} if method == "POST" else None)
        assert r.status_code == 401, (method, path, r.status_code)
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert r.json()["detail"] == "a valid API token is required: Authorization: Bearer <token>"
        for auth in (
            "Bearer st_wrong-token",
            "Bearer " + api.tokens["alice"] + "x",
            "Basic " + api.tokens["alice"],
            "Bearer",
        ):
            r = httpx.request(method, api.url + path, headers={"Authorization": auth})
            assert r.status_code == 401, (method, path, auth)
    with api.client("alice") as c:
        assert c.get("/me").json()["name"] == "alice"


def test_text_plain_and_form_bodies_are_415(env):
    api = env["api"]
    with api.client("alice") as c:
        n = len(c.get("/jobs").json())
        body = json.dumps({"kind": "generate", "payload": {"request": TINY}})
        for ctype in (
            "text/plain",
            "application/x-www-form-urlencoded",
            "text/plain; charset=utf-8",
            "application/xml",
        ):
            r = c.post("/jobs", content=body, headers={"Content-Type": ctype})
            assert r.status_code == 415, (ctype, r.text)
            assert "is not accepted" in r.json()["detail"]
        r = c.post("/uploads", json={"file": "x"})
        assert r.status_code == 415 and "multipart/form-data" in r.json()["detail"]
        r = c.post("/jobs", files={"file": ("a.txt", b"x")})
        assert r.status_code == 415 and "application/json" in r.json()["detail"]
        assert len(c.get("/jobs").json()) == n


def test_foreign_host_is_421(env):
    api = env["api"]
    port = api.url.rsplit(":", 1)[1]
    with api.client("alice") as c:
        for host in ("evil.example", "evil.example:" + port, "attacker.localhost", "127.0.0.1.nip.io"):
            r = c.get("/jobs", headers={"Host": host})
            assert r.status_code == 421, host
            assert "is not served here" in r.json()["detail"]
        for host in ("localhost:" + port, "127.0.0.1:" + port, "[::1]:" + port):
            assert c.get("/jobs", headers={"Host": host}).status_code == 200, host
    r = httpx.get(api.url + "/health", headers={"Host": "evil.example"})
    assert r.status_code == 421


def test_paths_and_out_fields_are_422_naming_the_field(env, alice_done):
    api = env["api"]
    up, job = alice_done
    canary = str(env["canary_image"])
    cases = [
        (
            "generate",
            {"request": {**TINY, "image": up["id"]}, "out": str(env["canary"]) + "/"},
            "payload.out",
        ),
        ("generate", {"request": {**TINY, "image": "/etc/passwd"}}, "payload.request.image: paths are not"),
        ("generate", {"request": {**TINY, "image": canary}}, "payload.request.image: paths are not"),
        (
            "generate",
            {"request": {**TINY, "image": "../../canary.jpg"}},
            "payload.request.image: paths are not",
        ),
        ("generate", {"request": {**TINY, "image": "~/x.png"}}, "payload.request.image: paths are not"),
        (
            "generate",
            {"request": {**TINY, "image": up["id"], "audio": "/etc/passwd"}},
            "payload.request.audio: paths are not",
        ),
        ("post", {"input": canary, "settings": {"codec": "png"}}, "payload.input: paths are not"),
        (
            "post",
            {"input": job["id"], "settings": {"codec": "png"}, "out": str(env["canary"])},
            "payload.out",
        ),
        ("rerun", {"manifest": "/tmp/x.mp4.json"}, "payload.manifest: paths are not"),
        ("rerun", {"manifest": job["id"], "out": "/tmp/x.mp4"}, "payload.out"),
        (
            "sequence",
            {"spec": {"version": 1, "clips": [{"path": canary}]}},
            "payload.spec.clips[0].path: paths",
        ),
        (
            "sequence",
            {"spec": {"version": 1, "clips": [{"path": job["id"]}], "audio": {"path": "/etc/passwd"}}},
            "payload.spec.audio.path: paths are not",
        ),
        (
            "sequence",
            {"spec": {"version": 1, "clips": [{"path": job["id"]}]}, "base_dir": "/"},
            "payload.base_dir",
        ),
        ("sequence", {"spec": {"version": 1, "clips": [{"path": job["id"]}]}, "out": "x.mp4"}, "payload.out"),
        (
            "generate",
            {"request": {**TINY, "image": up["id"], "loras": [{"name": "../../canary", "strength": 1}]}},
            "takes no LoRAs",
        ),
        (
            "generate",
            {"request": {**TINY, "image": up["id"], "loras": [{"name": "/etc/passwd", "strength": 1}]}},
            "takes no LoRAs",
        ),
        (
            "generate",
            {
                "request": {
                    **TINY,
                    "engine": "i2vgen-xl",
                    "image": up["id"],
                    "loras": [{"name": "../../canary", "strength": 1}],
                }
            },
            "LoRA name '../../canary' is not allowed",
        ),
    ]
    with api.client("alice") as c:
        for kind, payload, want in cases:
            r = _job(c, kind, payload)
            assert r.status_code == 422, (kind, payload, r.text)
            assert want in r.json()["detail"], (want, r.json()["detail"])
        r = _job(c, "generate", {"request": {**TINY, "image": up["id"]}})  # the same, with ids: fine
        assert r.status_code == 201
        jid = r.json()["id"]
        assert wait_job(c, jid)["status"] == "done"
    log = (api.outputs / ".logs" / "worker-cpu.log").read_text()
    tagged = [ln for ln in log.splitlines() if f"job={jid}" in ln]
    assert any("done in" in ln for ln in tagged), log[-2000:]  # lines written while it ran carry its id


def test_weights_jobs_need_an_admin_token(env):
    api = env["api"]
    with api.client("alice") as c:
        r = _job(c, "weights", {"group": "all"})
        assert r.status_code == 403 and "needs an admin token" in r.json()["detail"]
    with api.client("boss") as c:
        r = _job(c, "weights", {"group": "../../etc"})
        assert r.status_code == 422 and "payload.group" in r.json()["detail"]


def test_another_owners_job_output_and_upload_are_404(env, alice_done):
    api = env["api"]
    up, job = alice_done
    jid, uid = job["id"], up["id"]
    with api.client("alice") as a:
        r = a.get(f"/jobs/{jid}/result")
        assert r.status_code == 200 and r.content[4:8] == b"ftyp"
        assert a.get(f"/outputs/{jid}").json()["manifest"]["request"]["frames"] == 4
        assert not any(
            str(api.outputs) in json.dumps(x)
            for x in (a.get(f"/outputs/{jid}").json(), a.get(f"/jobs/{jid}").json())
        )
    assert (api.outputs / "alice" / "uploads").is_dir()
    assert any((api.outputs / "alice").glob("*.mp4"))
    with api.client("bob") as b:
        for method, path in [
            ("GET", f"/jobs/{jid}"),
            ("GET", f"/jobs/{jid}/result"),
            ("GET", f"/outputs/{jid}"),
            ("GET", f"/outputs/{jid}/file"),
            ("POST", f"/jobs/{jid}/cancel"),
            ("GET", f"/jobs/{jid}/preview"),
            ("DELETE", f"/outputs/{jid}"),
            ("GET", f"/uploads/{uid}"),
            ("DELETE", f"/uploads/{uid}"),
        ]:
            r = b.request(method, path)
            assert r.status_code == 404, (method, path, r.status_code)
            ghost = b.request(method, path.replace(jid, "0" * 12).replace(uid, "up_" + "0" * 16))
            assert ghost.status_code == 404
            assert r.json()["detail"].replace(jid, "X").replace(uid, "X") == ghost.json()["detail"].replace(
                "up_" + "0" * 16, "X"
            ).replace("0" * 12, "X")
        assert jid not in {j["id"] for j in b.get("/jobs").json()}
        assert jid not in {o["id"] for o in b.get("/outputs").json()}
        assert uid not in {u["id"] for u in b.get("/uploads").json()}
        r = b.get("/jobs", params={"owner": "alice"})
        assert r.status_code == 403
        r = _job(b, "generate", {"request": {**TINY, "image": uid}})
        assert r.status_code == 422 and r.json()["detail"] == f"payload.request.image={uid!r}: no such upload"
        r = _job(b, "post", {"input": jid, "settings": {"upscale": 2, "upscaler": "lanczos"}})
        assert r.status_code == 422 and r.json()["detail"] == f"payload.input={jid!r}: no such output"
        r = _job(b, "rerun", {"manifest": jid})
        assert r.status_code == 422 and "no such output" in r.json()["detail"]
    with api.client("boss") as admin:
        assert jid in {j["id"] for j in admin.get("/jobs", params={"owner": "alice"}).json()}
        assert jid not in {j["id"] for j in admin.get("/jobs", params={"owner": "bob"}).json()}
        assert admin.get(f"/jobs/{jid}").status_code == 200
    with api.client("alice") as a:  # still there after bob's attempts
        assert a.get(f"/outputs/{jid}/file").status_code == 200
        assert a.get(f"/uploads/{uid}").status_code == 200


def test_post_and_rerun_by_output_id_write_under_the_owner(env, alice_done):
    api = env["api"]
    _, job = alice_done
    with api.client("alice") as c:
        r = _job(
            c, "post", {"input": job["id"], "settings": {"upscale": 2, "upscaler": "lanczos", "codec": "png"}}
        )
        assert r.status_code == 201, r.text
        post = wait_job(c, r.json()["id"])
        assert post["status"] == "done", post
        z = c.get(f"/outputs/{post['id']}/file")
        assert z.status_code == 200 and z.content[:2] == b"PK"  # a PNG-frame folder comes as a zip
        r = _job(c, "rerun", {"manifest": job["id"], "overrides": {"upscale": 2, "upscaler": "lanczos"}})
        assert r.status_code == 201, r.text
        rr = wait_job(c, r.json()["id"])
        assert rr["status"] == "done", rr
        m = c.get(f"/outputs/{rr['id']}").json()["manifest"]
        assert (m["output"]["width"], m["output"]["height"], m["output"]["frames"]) == (64, 64, 4)
    folders = [p for p in (api.outputs / "alice").iterdir() if p.is_dir() and p.name != "uploads"]
    assert len(folders) == 1 and len(list(folders[0].glob("frame_*.png"))) == 4


def test_a_post_reruns_from_its_input_and_refuses_once_the_input_is_gone(env, alice_done):
    """A post of a video keeps no copy of its input: its manifest shows the input's name (never a
    server path), a re-run decodes the input again, another owner's re-run is refused like a
    missing id, and once the input is deleted a re-run fails with the reason (no path, no 500)."""
    from tests.conftest import DATA

    api = env["api"]
    with api.client("alice") as c:
        up = _upload(c, DATA / "coffee.jpg")
        src = wait_job(c, _job(c, "generate", {"request": {**TINY, "image": up["id"]}}).json()["id"])
        assert src["status"] == "done", src
        settings = {"upscale": 2, "upscaler": "lanczos"}
        post = wait_job(c, _job(c, "post", {"input": src["id"], "settings": settings}).json()["id"])
        assert post["status"] == "done", post
        m = c.get(f"/outputs/{post['id']}").json()["manifest"]
        assert m["base_clip"] is None and "/" not in m["base_source"]["path"]
        assert len(m["base_source"]["sha256"]) == 64
        assert not (api.outputs / "alice" / (m["output"]["path"] + ".base.npz")).exists()
        rr = wait_job(c, _job(c, "rerun", {"manifest": post["id"], "overrides": {"upscale": 1}}).json()["id"])
        assert rr["status"] == "done", rr
    with api.client("bob") as b:
        r = _job(b, "rerun", {"manifest": post["id"], "overrides": {"upscale": 1}})
        assert r.status_code == 422
        assert r.json()["detail"] == f"payload.manifest={post['id']!r}: no such output"
    with api.client("alice") as c:
        assert c.delete(f"/outputs/{src['id']}").status_code == 200
        r = _job(c, "rerun", {"manifest": post["id"], "overrides": {"upscale": 1}})
        assert r.status_code == 201, r.text
        gone = wait_job(c, r.json()["id"])
        assert gone["status"] == "failed" and "was deleted or changed" in gone["error"], gone
        assert "/" not in gone["error"], gone["error"]


def test_oversized_bodies_and_uploads_are_413_and_leave_nothing(env, alice_done):
    api = env["api"]
    up, _ = alice_done
    uploads = api.outputs / "alice" / "uploads"
    with api.client("alice") as c:
        c.get("/me")
        before = sorted(p.name for p in uploads.iterdir()) if uploads.exists() else []
        big = json.dumps({"kind": "generate", "payload": {"request": {**TINY, "prompt": "x" * 1_200_000}}})
        r = c.post("/jobs", content=big, headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and "over the limit of 1,000,000" in r.json()["detail"]

        def chunks():
            for _ in range(40):
                yield b" " * 50_000

        r = c.post("/jobs", content=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and "over the limit of 1,000,000" in r.json()["detail"]
        blob = os.urandom(3_000_000)
        r = c.post("/uploads", files={"file": ("big.png", blob, "image/png")})
        assert r.status_code == 413 and "over the limit" in r.json()["detail"]
        boundary = "b" + uuid.uuid4().hex

        def multipart():
            yield (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.mp4"\r\n'
                "Content-Type: video/mp4\r\n\r\n"
            ).encode()
            for i in range(0, len(blob), 100_000):
                yield blob[i : i + 100_000]
            yield f"\r\n--{boundary}--\r\n".encode()

        r = c.post(
            "/uploads",
            content=multipart(),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        assert r.status_code == 413 and "over the limit" in r.json()["detail"]
        r = c.post(
            "/jobs",
            json={
                "kind": "generate",
                "payload": {"request": {**TINY, "image": up["id"], "prompt": "x" * 5000}},
            },
        )
        assert r.status_code == 422 and "over the limit of 2,000" in r.json()["detail"]
    after = sorted(p.name for p in uploads.iterdir()) if uploads.exists() else []
    assert after == before


def test_absurd_work_is_422_with_the_number_and_the_limit(env, alice_done):
    api = env["api"]
    up, job = alice_done
    with api.client("alice") as c:
        r = _job(c, "generate", {"request": {**TINY, "image": up["id"], "frames": 257, "interpolate": 16}})
        assert r.status_code == 422
        assert r.json()["detail"] == (
            "this job needs 4,097 output frames, over this token's limit of 3,600 (max_frames)"
        )
    with api.client("tight") as c:
        from tests.conftest import DATA

        t_up = _upload(c, DATA / "astronaut.jpg")
        r = _job(c, "generate", {"request": {**TINY, "image": t_up["id"], "frames": 16, "interpolate": 8}})
        assert (
            r.status_code == 422 and "121 output frames, over this token's limit of 100" in r.json()["detail"]
        )
        r = _job(
            c,
            "generate",
            {
                "request": {
                    **TINY,
                    "image": t_up["id"],
                    "frames": 16,
                    "width": 512,
                    "height": 512,
                    "upscale": 4,
                    "upscaler": "x4plus",
                }
            },
        )
        assert r.status_code == 422
        d = r.json()["detail"]
        assert (
            d.startswith("this job needs estimated time ")
            and "over this token's limit of 5 (max_seconds)" in d
        )
        led = c.post(
            "/ledger", json={"kind": "generate", "payload": {"request": {**TINY, "image": t_up["id"]}}}
        )
        assert led.status_code == 200 and led.json()["frames"] == 4
        r = _job(
            c,
            "generate",
            {"request": {**TINY, "image": t_up["id"], "frames": 16, "width": 256, "height": 256}},
        )
        assert (
            r.status_code == 422
            and "bytes of frame buffers, over this token's limit of 1,000,000" in r.json()["detail"]
        )


def test_rate_limit_is_429_with_retry_after(env):
    api = env["api"]
    with api.client("ratey") as c:
        codes = [c.get("/me").status_code for _ in range(5)]
        assert codes == [200] * 5
        r = c.get("/me")
        assert r.status_code == 429
        assert int(r.headers["retry-after"]) >= 1
        assert "over 5 requests a minute for token 'ratey'" in r.json()["detail"]


MALFORMED = [
    b"",
    b"{",
    b"[]",
    b"null",
    b"42",
    b'"abc"',
    b"{}",
    b'{"kind": 5}',
    b'{"kind": "generate"}',
    b'{"kind": "generate", "payload": "abc"}',
    b'{"kind": "generate", "payload": 5}',
    b'{"kind": "generate", "payload": []}',
    b'{"kind": "generate", "payload": {"request": 123}}',
    b'{"kind": "generate", "payload": {"request": {"image": 123}}}',
    b'{"kind": "generate", "payload": {"request": {"image": ["a"]}}}',
    b'{"kind": "generate", "payload": {"request": {"image": {"x": 1}}}}',
    b'{"kind": "generate", "payload": {"request": {"image": null}}}',
    b'{"kind": "generate", "payload": {"request": {"image": "up_0000000000000000", "frames": "many"}}}',
    b'{"kind": "generate", "payload": {"request": {"frames": [1]}}}',
    b'{"kind": "generate", "payload": {"request": {"loras": "abc"}}}',
    b'{"kind": "generate", "payload": {"request": {"loras": [1, 2]}}}',
    b'{"kind": "generate", "payload": {"request": {"loras": [{"name": "../../x", "strength": "a"}]}}}',
    b'{"kind": "generate", "payload": {"request": {"extra": [1]}}}',
    b'{"kind": "generate", "payload": {"request": {"extra": {"a": {"b": 1}}}}}',
    b'{"kind": "generate", "payload": {"request": {"fps": NaN}}}',
    b'{"kind": "generate", "payload": {"request": {"fps": 1e999}}}',
    b'{"kind": "generate", "payload": {"request": {"seed": 1' + b"0" * 5000 + b"}}}",
    b'{"kind": "generate", "payload": {"request": {"nope": 1}}}',
    b'{"kind": "post", "payload": {"input": 5}}',
    b'{"kind": "post", "payload": {}}',
    b'{"kind": "post", "payload": {"input": "0123456789ab", "settings": "x"}}',
    b'{"kind": "rerun", "payload": {"manifest": null}}',
    b'{"kind": "sequence", "payload": {"spec": []}}',
    b'{"kind": "sequence", "payload": {"spec": {"clips": "x"}}}',
    b'{"kind": "sequence", "payload": {"spec": {"clips": [5]}}}',
    b'{"kind": "sequence", "payload": {"spec": {"clips": [{"title": 5}]}}}',
    b'{"kind": "sequence", "payload": {"spec": {"version": 1, "clips": [{"title": "a"}], "output": 7}}}',
    b'{"kind": "../etc", "payload": {}}',
    b'{"kind": "generate", "payload": {}, "x": 1}',
    b"[" * 100_000 + b"]" * 100_000,
    b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    b"\xff\xfe\x00garbage",
    '{"kind": "gén\u00e9rate"}'.encode(),
    b'{"kind": "sequence", "payload": {"spec": {"version": 1, "clips": ['
    + b'{"title": "a"},' * 150
    + b'{"title": "b"}]}}}',
]


def test_malformed_bodies_answer_400_or_422_never_500(env):
    api = env["api"]
    assert len(MALFORMED) >= 30
    with api.client("alice") as c:
        for body in MALFORMED:
            for route in ("/jobs", "/ledger"):
                r = c.post(route, content=body, headers={"Content-Type": "application/json"})
                assert r.status_code in (400, 422), (body[:80], route, r.status_code, r.text[:200])
                detail = r.json()["detail"]
                assert isinstance(detail, str) and detail
                assert str(api.outputs) not in detail and "Traceback" not in detail
        for files in (
            {"nofile": ("a", b"x")},
            {"file": ("a.png", b"")},
            {"file": ("x.mp4", b"not a video")},
            {"file": ("x.wav", b"RIFF....WAVEfmt ")},
            {"file": ("a.jpg", b"\xff\xd8\xff\xe0junk" * 50)},
        ):
            r = c.post("/uploads", files=files)
            assert r.status_code in (400, 422), (files, r.status_code, r.text)
            assert str(api.outputs) not in r.text
        r = c.post("/uploads", files={"file": ("clip.mp4", b"hello, this is text\n" * 20)})
        assert r.json()["detail"] == "clip.mp4 is not an image, video or audio file the studio can read"
        for q in ("limit=0", "limit=100000", "limit=abc", "status=sleeping"):
            r = c.get("/jobs?" + q)
            assert r.status_code == 422, q
    log = api.log.read_text()
    assert " 500 " not in log and "Traceback" not in log


def test_zz_canaries_unchanged_and_never_served(env):
    """Last: the files outside every owner's folder are as they were, and their bytes never came back."""
    for p in env["watched"]:
        assert (p.read_bytes(), p.stat().st_mtime_ns) == env["before"][p], p
    assert sorted(x.name for x in env["canary"].iterdir()) == ["frame_00000.png", "notes.txt"]
    want = hashlib.sha256(env["canary_image"].read_bytes()).hexdigest()
    for f in env["api"].outputs.rglob("*"):
        if f.is_file() and f.stat().st_size == env["canary_image"].stat().st_size:
            assert hashlib.sha256(f.read_bytes()).hexdigest() != want, f
    for owner in ("alice", "bob", "boss"):
        with env["api"].client(owner) as c:
            for o in c.get("/outputs").json():
                m = c.get(f"/outputs/{o['id']}").json()["manifest"] or {}
                assert (m.get("input") or {}).get("sha256") != want
