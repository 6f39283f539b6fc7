"""Worker processes that survive crashes: kill -9 mid-encode requeues the job onto a new worker, which
finishes it; nothing is left behind (no .part file, temp folder or ffmpeg process).  Owners are served
round-robin.  Per-worker gauges appear in /metrics."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from studio.jobs import JobQueue, JobStore
from tests.conftest import DATA
from tests.live_api import get_json, start_api, wait_job, wait_until


def _children(pid: int) -> list[tuple[int, str]]:
    """(pid, command name) of the processes whose parent is `pid`, from /proc."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == pid:
            out.append((int(d.name), comm))
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def test_kill9_worker_mid_encode_requeues_and_leaves_nothing(tmp_path):
    api = start_api(tmp_path / "outputs", {"ann": [], "ops": ["--admin"]})
    try:
        with api.client("ann") as c:
            up = c.post("/uploads", files={"file": ("a.jpg", (DATA / "astronaut.jpg").read_bytes())}).json()
            req = {
                "prompt": "camera slowly zooming in",
                "frames": 150,
                "width": 640,
                "height": 640,
                "image": up["id"],
                "preset": "veryslow",
            }
            job = c.post("/jobs", json={"kind": "generate", "payload": {"request": req}}).json()
            worker = api.workers[0]
            j = wait_until(c, job["id"], lambda j: j["stage"] == "encode" and j["i"] >= 5, timeout=120)
            ffmpegs = [p for p, comm in _children(worker.pid) if "ffmpeg" in comm]
            assert ffmpegs, _children(worker.pid)
            owner_dir = api.outputs / "ann"
            assert list(owner_dir.glob(f".*.part-{worker.pid}-*")), "the encoder writes a .part file"
            assert list(Path("/tmp").glob(f"studio-enc-{worker.pid}-*"))
            first_worker = j.get("worker")
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait(10)
            t0 = time.monotonic()
            while any(_alive(p) for p in ffmpegs) and time.monotonic() - t0 < 5:
                time.sleep(0.05)
            assert not any(_alive(p) for p in ffmpegs), "ffmpeg outlived its worker"
            assert get_json(c, f"/jobs/{job['id']}")["status"] == "running"  # until its lease lapses
            new = api.add_worker("--device", "cpu")
            done = wait_job(c, job["id"], timeout=240)
            assert done["status"] == "done", done
            assert done["result"]["name"].endswith(".mp4")
        with api.client("ops") as admin:
            rec = get_json(admin, f"/jobs/{job['id']}")
            metrics = admin.get("/metrics").text
        store = JobStore(api.outputs / "jobs.sqlite")
        row = store.get(job["id"])
        assert row.attempts == 2 and row.worker != first_worker and f":{new.pid}:" in row.worker
        assert rec["status"] == "done"
        assert not list(owner_dir.glob(".*.part-*")), list(owner_dir.glob(".*"))
        assert not list(Path("/tmp").glob(f"studio-enc-{worker.pid}-*"))
        assert not [p for p, comm in _children(worker.pid)]
        assert 'studio_worker_jobs_total{device="cpu",executor="local",worker="' in metrics
        assert f":{new.pid}:" in metrics
    finally:
        api.stop()


def test_two_owners_are_served_round_robin(tmp_path):
    import tests.test_jobs  # noqa: F401 - registers the test-count kind

    db = tmp_path / "jobs.sqlite"
    idle = JobQueue(db, devices=[]).start()
    ids = {}
    for owner in ("ann", "bob"):  # ann's 10 are all older than bob's
        for k in range(10):
            ids[
                idle.submit("test-count", {"out": str(tmp_path / f"{owner}{k}.txt"), "n": 1}, owner=owner).id
            ] = owner
    q = JobQueue(db, devices=["cpu"], poll_s=0.01).start()
    try:
        for jid in ids:
            assert q.wait(jid, timeout=30).status == "done"
        order = sorted(ids, key=lambda j: q.get(j).started)
        assert [ids[j] for j in order] == ["ann", "bob"] * 10
        assert [j for j in order if ids[j] == "ann"] == [j for j in ids if ids[j] == "ann"]  # FIFO within
    finally:
        q.stop()
        idle.stop()
