"""Media against a live `python -m studio serve` and its worker, tried the way an attacker would.

* every field that names a file, in every job kind (walked from the payload schemas), takes only an
  id: a path, a relative name or a URL answers 422 naming the field, on /jobs and on /ledger;
* an upload that points elsewhere (an HLS playlist naming a server file, then MP3 bytes; ffconcat and
  PLS lists) is refused at upload;
* /ledger plans from the uploads' stored facts (no ffmpeg runs: every launch is counted by a wrapper
  the server is started with) and is metered with submissions (429 with Retry-After);
* a variable-frame-rate video gives the frame count its ledger promised.
"""

from __future__ import annotations

import re
import stat
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from postfx.media import ffmpeg_exe
from studio.jobs.intake import CLIENT_KINDS, file_fields
from studio.params import SPEC
from studio.request import GenerationRequest
from tests.live_api import start_api, wait_job

TINY = {"prompt": "camera slowly zooming in", "engine": "camera", "frames": 4, "width": 32, "height": 32}
HOSTILE = ["/etc/passwd", "../../../etc/passwd", "etc/passwd", "secret.wav", "~/secret.wav",
           "file:///etc/passwd", "http://127.0.0.1:1/secret.mp3", "up_../../etc/passwd"]


def ff(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-y", "-v", "error", *args], check=True, timeout=300)


def post_retry(c: httpx.Client, url: str, **kw) -> httpx.Response:
    """POST, honouring 429 Retry-After (the suite may share the machine with others)."""
    end = time.monotonic() + 120
    while True:
        r = c.post(url, **kw)
        if r.status_code != 429 or time.monotonic() > end:
            return r
        time.sleep(float(r.headers.get("Retry-After", "1")))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("api-media")
    launches = root / "ffmpeg-launches.txt"
    wrapper = root / "ffmpeg"
    wrapper.write_text(f"#!/bin/sh\necho x >> '{launches}'\nexec '{ffmpeg_exe()}' \"$@\"\n")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    media = root / "media"
    media.mkdir()
    ff("-f", "lavfi", "-i", "testsrc=size=32x32:rate=8", "-frames:v", "8", "-pix_fmt", "yuv420p",
       str(media / "clip.mp4"))
    ff("-f", "lavfi", "-i", "sine=frequency=300:duration=1", str(media / "tone.wav"))
    ff("-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-c:a", "libmp3lame", str(root / "secret.mp3"))
    ff("-f", "lavfi", "-i", "sine=frequency=1000:duration=1", "-c:a", "libmp3lame", str(media / "own.mp3"))
    # 40 frames: 20 at 24 fps, a 5 s gap, 20 more (a variable frame rate)
    ff("-f", "lavfi", "-i", "testsrc=size=32x32:rate=24", "-frames:v", "40",
       "-vf", "setpts='if(lt(N,20),N/24/TB,(N+120)/24/TB)'", "-fps_mode", "passthrough",
       "-pix_fmt", "yuv420p", str(media / "vfr.mp4"))
    api = start_api(root / "outputs", {"alice": ["--submits", "5000", "--rate", "20000"],
                                       "meter": ["--submits", "5", "--rate", "20000"]},
                    extra_env={"IMAGEIO_FFMPEG_EXE": str(wrapper)})
    yield {"api": api, "root": root, "media": media, "launches": launches}
    api.stop()


def upload(c: httpx.Client, path: Path, name: str | None = None) -> httpx.Response:
    files = {"file": (name or path.name, path.read_bytes(), "application/octet-stream")}
    return post_retry(c, "/uploads", files=files)


@pytest.fixture(scope="module")
def ids(env):
    """An image, video and audio upload of alice's and one finished generation (an output id)."""
    from tests.conftest import DATA
    api = env["api"]
    with api.client("alice") as c:
        out = {k: upload(c, p).json()["id"] for k, p in (("image", DATA / "astronaut.jpg"),
                                                           ("video", env["media"] / "clip.mp4"),
                                                           ("audio", env["media"] / "tone.wav"))}
        gen = {"kind": "generate", "payload": {"request": {**TINY, "image": out["image"]}}}
        r = post_retry(c, "/jobs", json=gen)
        assert r.status_code == 201, r.text
        job = wait_job(c, r.json()["id"])
        assert job["status"] == "done", job
        out["output"] = job["id"]
    return out


def base_payload(kind: str, ids: dict[str, str]) -> dict:
    """A valid payload of `kind` that uses every file field it has."""
    return {
        "generate": {"request": {**TINY, "image": ids["image"], "audio": ids["audio"]}},
        "post": {"input": ids["video"], "settings": {"audio": ids["audio"]}},
        "rerun": {"manifest": ids["output"], "overrides": {"audio": ids["audio"]}},
        "sequence": {"spec": {"version": 1, "clips": [{"path": ids["video"]}],
                              "output": {"size": [32, 32], "fps": 8}, "audio": {"path": ids["audio"]}}},
    }[kind]


def set_field(payload: dict, where: str, value) -> str:
    """Put `value` at field path `where` ('payload.a.b', '[]' = the first item); return its shown name."""
    parts = where.split(".")[1:]
    node = payload
    for p in parts[:-1]:
        node = node[p[:-2]][0] if p.endswith("[]") else node[p]
    node[parts[-1]] = value
    return where.replace("[]", "[0]")


def test_the_file_field_walk_covers_every_schema():
    """The list the live test walks is complete: every kind, every file-like field of the spec and request."""
    fields = file_fields()
    assert {k for k, _, _ in fields} == set(CLIENT_KINDS)
    for name, prm in SPEC.items():
        free_text = prm.type is str and prm.choices is None  # a fixed set of words can't name a file
        if free_text and re.search(r"audio|image|video|path|file|mask|input|manifest", name):
            assert prm.upload, f"SPEC[{name!r}] names a file but is not marked as an upload field"
            assert ("generate", f"payload.request.{name}", prm.upload) in fields
    req_only = [f.name for f in GenerationRequest.__dataclass_fields__.values()
                if f.name not in SPEC and str(f.type).startswith("str")]
    assert req_only == ["image"] and ("generate", "payload.request.image", ("image",)) in fields
    assert ("post", "payload.settings.audio", ("audio",)) in fields
    assert ("rerun", "payload.overrides.audio", ("audio",)) in fields


def test_every_file_field_refuses_paths_and_urls(env, ids):
    api = env["api"]
    with api.client("alice") as c:
        for kind in CLIENT_KINDS:
            r = post_retry(c, "/ledger", json={"kind": kind, "payload": base_payload(kind, ids)})
            assert r.status_code == 200, (kind, r.text)      # the ids themselves are fine
        tried = 0
        for kind, where, _takes in file_fields():
            for value in HOSTILE:
                payload = base_payload(kind, ids)
                shown = set_field(payload, where, value)
                for route in ("/ledger", "/jobs"):
                    r = post_retry(c, route, json={"kind": kind, "payload": payload})
                    assert r.status_code == 422, (route, where, value, r.status_code, r.text)
                    detail = r.json()["detail"]
                    assert detail.startswith(shown), (where, value, detail)
                    assert str(api.outputs) not in detail and "/etc" not in detail.replace(value, "")
                    tried += 1
        assert tried == len(file_fields()) * len(HOSTILE) * 2 >= 8 * len(HOSTILE) * 2
        # nothing was queued by any of them: the only job is the generation the fixture made
        assert [j["id"] for j in c.get("/jobs").json()] == [ids["output"]]


def test_playlists_and_lists_are_refused_at_upload(env):
    api, root, media = env["api"], env["root"], env["media"]
    playlist = (b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n" + str(root / "secret.mp3").encode()
                + b"\n#EXT-X-ENDLIST\n") + (media / "own.mp3").read_bytes()
    lists = {"ffconcat": f"ffconcat version 1.0\nfile '{root / 'secret.mp3'}'\n".encode(),
             "PLS": f"[playlist]\nFile1={root / 'secret.mp3'}\nNumberOfEntries=1\n".encode()}
    with api.client("alice") as c:
        before = len(c.get("/uploads").json())
        for name in ("song.m3u8", "song.mp3", "song.wav", "song"):
            r = post_retry(c, "/uploads", files={"file": (name, playlist, "audio/mpeg")})
            assert r.status_code == 400, (name, r.text)
            assert r.json()["detail"] == (f"{name} is an M3U/HLS playlist; files that name other files "
                                          "or URLs are refused")
        for what, body in lists.items():
            r = post_retry(c, "/uploads", files={"file": ("list.mp3", body + (media / "own.mp3").read_bytes(),
                                                          "audio/mpeg")})
            assert r.status_code == 400 and what in r.json()["detail"], r.text
            assert str(root) not in r.text
        assert len(c.get("/uploads").json()) == before
        ok = upload(c, media / "own.mp3", "own.mp3")            # the same MP3 bytes alone are fine
        assert ok.status_code == 201 and ok.json()["format"] == "mp3" and ok.json()["duration"] > 0.9


def test_ledger_runs_no_ffmpeg_and_is_metered(env, ids):
    api, launches = env["api"], env["launches"]
    with api.client("alice") as c:
        vids = [ids["video"]] + [upload(c, env["media"] / "clip.mp4", f"c{i}.mp4").json()["id"]
                                 for i in range(3)]
        spec = {"version": 1, "clips": [{"path": vids[i % len(vids)], "trim_in": 0.25} for i in range(100)],
                "output": {"size": [32, 32], "fps": 8}, "audio": {"path": ids["audio"], "loop": True}}
        count = launches.read_text().count("x") if launches.exists() else 0
        t0 = time.monotonic()
        r = post_retry(c, "/ledger", json={"kind": "sequence", "payload": {"spec": spec}})
        elapsed = time.monotonic() - t0
        assert r.status_code == 200, r.text
        assert r.json()["frames"] == 100 * 6           # 1 s clips trimmed by 0.25 s, at 8 fps
        assert launches.read_text().count("x") == count, "the ledger launched ffmpeg"
        assert elapsed < 20
    with api.client("meter") as c:                       # 5 submissions a minute: ledgers count too
        codes = [c.post("/ledger", json={"kind": "post", "payload": {"input": "up_" + "0" * 16}})
                 for _ in range(7)]
    assert [r.status_code for r in codes[:5]] == [422] * 5
    assert codes[5].status_code == 429 and int(codes[5].headers["Retry-After"]) >= 1
    assert "submissions a minute" in codes[5].json()["detail"]


def test_variable_frame_rate_video_gives_the_frames_its_ledger_promised(env, tmp_path):
    from postfx.assemble import probe_video
    api = env["api"]
    with api.client("alice") as c:
        up = upload(c, env["media"] / "vfr.mp4").json()
        assert up["frames"] == round(up["duration"] * up["fps"])
        for kind, payload in (("post", {"input": up["id"], "settings": {}}),
                              ("sequence", {"spec": {"version": 1,
                                                     "clips": [{"path": up["id"], "trim_in": 1.0}],
                                                     "output": {"size": [32, 32], "fps": 12}}})):
            led = post_retry(c, "/ledger", json={"kind": kind, "payload": payload})
            assert led.status_code == 200, led.text
            r = post_retry(c, "/jobs", json={"kind": kind, "payload": payload})
            assert r.status_code == 201, r.text
            job = wait_job(c, r.json()["id"])
            assert job["status"] == "done", job
            out = tmp_path / f"{kind}.mp4"
            out.write_bytes(c.get(f"/jobs/{job['id']}/result").content)
            assert probe_video(out)["frames"] == led.json()["frames"], kind


def vm_hwm(pid: int) -> int:
    """A process's peak resident memory (VmHWM) in bytes, from /proc."""
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", text).group(1)) * 1024


def test_worker_peak_memory_is_bounded_by_the_plan_not_the_source(tmp_path):
    """A sequence that uses 0.2 s of a 100 s, 320×240 video (553 MB decoded) under 1 s of a 590 s
    audio bed (208 MB decoded): the worker's peak RSS grows by what the plan uses, not the sources."""
    media = tmp_path / "media"
    media.mkdir()
    for name, n in (("short.mp4", 48), ("long.mp4", 2400)):
        ff("-f", "lavfi", "-i", "testsrc=size=320x240:rate=24", "-frames:v", str(n), "-c:v", "libx264",
           "-preset", "ultrafast", "-crf", "45", "-pix_fmt", "yuv420p", str(media / name))
    for name, secs in (("short.flac", 2), ("long.flac", 590), ("too-long.flac", 700)):
        ff("-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono", "-t", str(secs), str(media / name))
    api = start_api(tmp_path / "outputs", {"alice": ["--submits", "500", "--rate", "5000"]})
    try:
        worker = api.workers[0].pid
        with api.client("alice") as c:
            up = {p.name: upload(c, p) for p in sorted(media.iterdir())}
            assert up["too-long.flac"].status_code == 400
            assert up["too-long.flac"].json()["detail"] == (
                "too-long.flac lasts 700.0 s; audio and video may be at most 600 s")
            assert up["long.mp4"].json()["frames"] == 2400 and up["long.flac"].json()["duration"] == 590

            def run(video: str, audio: str, trim_in: float) -> dict:
                spec = {"version": 1, "clips": [{"path": up[video].json()["id"], "trim_in": trim_in,
                                                 "trim_out": trim_in + 0.2}],
                        "output": {"size": [64, 48], "fps": 24, "encoder_preset": "ultrafast"},
                        "audio": {"path": up[audio].json()["id"], "offset": 1.0}}
                r = post_retry(c, "/jobs", json={"kind": "sequence", "payload": {"spec": spec}})
                assert r.status_code == 201, r.text
                job = wait_job(c, r.json()["id"], timeout=300)
                assert job["status"] == "done", job
                return job

            run("short.mp4", "short.flac", 1.0)   # warm-up: the worker's imports and caches are in place
            before = vm_hwm(worker)
            run("long.mp4", "long.flac", 60.0)
            grew = vm_hwm(worker) - before
    finally:
        api.stop()
    print(f"worker VmHWM grew by {grew / 2**20:.1f} MiB for a 0.2 s trim of a 553 MB-decoded source")
    assert grew < 120 * 2**20, f"worker peak RSS grew by {grew / 2**20:.0f} MiB"


def test_killed_api_leaves_incoming_that_the_next_start_sweeps(tmp_path):
    """kill -9 of the API while uploads are being validated leaves `.incoming-*`; a restart removes them."""
    import os
    import signal
    import threading

    from PIL import Image
    png = tmp_path / "big.png"
    Image.new("RGB", (6000, 6000), (40, 80, 120)).save(png, compress_level=1)   # slow to validate
    outputs = tmp_path / "outputs"
    api = start_api(outputs, {"alice": ["--submits", "500", "--rate", "5000"]}, workers=0)
    uploads = outputs / "alice" / "uploads"

    def send() -> None:
        try:
            with api.client("alice", timeout=120) as c:
                c.post("/uploads", files={"file": ("big.png", png.read_bytes(), "image/png")})
        except httpx.HTTPError:
            pass

    threads = [threading.Thread(target=send, daemon=True) for _ in range(6)]
    for t in threads:
        t.start()
    end = time.monotonic() + 120
    try:
        while time.monotonic() < end and not list(uploads.glob(".incoming-*")):
            time.sleep(0.005)
        os.kill(api.proc.pid, signal.SIGKILL)
        api.proc.wait(30)
    finally:
        api.stop()
    left = list(uploads.glob(".incoming-*"))
    assert left, "no upload was in validation when the API was killed"
    assert all(d.name.startswith(f".incoming-{api.proc.pid}-") for d in left)
    for t in threads:
        t.join(60)
    again = start_api(outputs, {}, workers=0)
    try:
        assert not list(uploads.glob(".incoming-*"))
        with httpx.Client(base_url=again.url) as c:
            assert c.get("/health").status_code == 200
    finally:
        again.stop()
