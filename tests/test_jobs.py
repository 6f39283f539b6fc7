"""The SQLite job store and the worker queue: run, progress, preview, cancel, failure, crash recovery."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.context import Cancelled
from studio.jobs import JobQueue, JobStore, register_job_kind


def _count_job(payload, ctx):
    """Counts to n with a progress step each time and writes the count; removes its file on cancel."""
    out = Path(payload["out"])
    n = int(payload["n"])
    try:
        for i in range(1, n + 1):
            time.sleep(float(payload.get("sleep", 0)))
            ctx.step("count", i, n)
            if ctx.preview:
                ctx.preview(np.full((300, 400, 3), i * 20 % 256, np.uint8))
            out.write_text(str(i))
    except Cancelled:
        out.unlink(missing_ok=True)
        raise
    return {"output": str(out), "count": int(out.read_text())}


def _fail_job(payload, ctx):
    raise ValueError(f"frames={payload['frames']} is above the maximum 257")


def _late_job(payload, ctx):
    """Writes its output, then (past its last progress step) waits until a cancel arrives."""
    out = Path(payload["out"])
    ctx.step("write", 1, 1)
    out.write_text("complete")
    t0 = time.monotonic()
    while not ctx.cancel.is_set() and time.monotonic() - t0 < 10:
        time.sleep(0.01)
    return {"output": str(out)}


register_job_kind("test-count", _count_job)
register_job_kind("test-fail", _fail_job)
register_job_kind("test-late", _late_job)


@pytest.fixture
def queue(tmp_path):
    q = JobQueue(tmp_path / "jobs.sqlite", devices=["cpu"], poll_s=0.02).start()
    yield q
    q.stop()


def test_job_runs_with_progress_and_preview(queue, tmp_path):
    job = queue.submit("test-count", {"out": str(tmp_path / "c.txt"), "n": 5})
    assert job.status == "queued"
    done = queue.wait(job.id, timeout=20)
    assert done.status == "done", done.error
    assert done.result["count"] == 5 and (tmp_path / "c.txt").read_text() == "5"
    assert (done.stage, done.i, done.n) == ("count", 5, 5)
    assert done.started >= done.created and done.finished >= done.started
    assert done.preview and Path(done.preview).is_file()
    with Image.open(done.preview) as im:  # the 400×300 frame was shrunk to at most 256 px
        assert im.format == "JPEG" and max(im.size) == 256


def test_cancel_running_job_stops_it_and_leaves_no_file(queue, tmp_path):
    out = tmp_path / "slow.txt"
    job = queue.submit("test-count", {"out": str(out), "n": 400, "sleep": 0.01})
    t0 = time.monotonic()
    while queue.get(job.id).i < 3 and time.monotonic() - t0 < 10:
        time.sleep(0.01)
    assert queue.get(job.id).status == "running"
    queue.cancel(job.id)
    end = queue.wait(job.id, timeout=10)
    assert end.status == "cancelled"
    assert end.i < 400
    assert not out.exists()


def test_a_cancel_after_the_output_is_written_keeps_it_as_done(queue, tmp_path):
    """Too late to stop: the job is done, its complete file kept, and the result says so (it was
    'cancelled' with the file left behind, against the card's "cancelled; nothing was written")."""
    out = tmp_path / "late.txt"
    job = queue.submit("test-late", {"out": str(out)})
    t0 = time.monotonic()
    while not out.exists() and time.monotonic() - t0 < 10:
        time.sleep(0.01)
    queue.cancel(job.id)
    end = queue.wait(job.id, timeout=10)
    assert end.status == "done" and out.read_text() == "complete"
    assert end.result["note"] == "the cancel came after the output was written; it was kept"


def test_cancel_from_another_process_view(queue, tmp_path):
    """A cancel flag written by another store (e.g. the REST server) reaches the running worker."""
    out = tmp_path / "x.txt"
    job = queue.submit("test-count", {"out": str(out), "n": 400, "sleep": 0.01})
    while queue.get(job.id).status != "running":
        time.sleep(0.01)
    JobStore(queue.store.path).request_cancel(job.id)
    assert queue.wait(job.id, timeout=10).status == "cancelled"


def test_queued_job_cancelled_before_it_runs(tmp_path):
    q = JobQueue(tmp_path / "q.sqlite", devices=[])  # no workers: jobs stay queued
    q.start()
    job = q.submit("test-count", {"out": str(tmp_path / "never.txt"), "n": 1})
    assert q.cancel(job.id).status == "cancelled"
    q.stop()
    q2 = JobQueue(tmp_path / "q.sqlite", devices=["cpu"], poll_s=0.02).start()
    time.sleep(0.3)
    assert q2.get(job.id).status == "cancelled" and not (tmp_path / "never.txt").exists()
    q2.stop()


def test_failed_job_records_the_reason(queue):
    job = queue.submit("test-fail", {"frames": 999})
    end = queue.wait(job.id, timeout=10)
    assert end.status == "failed"
    assert end.error == "ValueError: frames=999 is above the maximum 257"


def test_unknown_kind_is_refused(queue):
    with pytest.raises(ValueError, match="'nope' is not registered"):
        queue.submit("nope", {})


def test_crash_recovery_requeues_the_running_job_and_keeps_queued(tmp_path):
    db = tmp_path / "jobs.sqlite"
    store = JobStore(db)
    running = store.add("test-count", {"out": str(tmp_path / "a.txt"), "n": 2})
    waiting = store.add("test-count", {"out": str(tmp_path / "b.txt"), "n": 2})
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    import socket
    claimed = store.claim(f"{socket.gethostname()}:{dead}:gone")   # the process that "crashed"
    assert claimed.id == running.id and store.get(running.id).status == "running"
    q = JobQueue(db, devices=["cpu"], poll_s=0.02).start()  # the studio restarts
    try:
        assert q.recovered == [running.id]
        again = q.wait(running.id, timeout=10)     # requeued (attempt 1 of 2 was lost), then run
        assert again.status == "done" and again.attempts == 2 and (tmp_path / "a.txt").read_text() == "2"
        assert q.wait(waiting.id, timeout=10).status == "done"   # the queued one was not lost
        assert (tmp_path / "b.txt").read_text() == "2"
        store.claim(f"{socket.gethostname()}:{dead}:gone")      # nothing queued: claims nothing
        last = store.add("test-count", {"out": str(tmp_path / "c.txt"), "n": 2})
        q.stop()
        store.update(last.id, status="running", worker=f"{socket.gethostname()}:{dead}:gone", attempts=2)
        q = JobQueue(db, devices=["cpu"], poll_s=0.02).start()
        failed = q.get(last.id)                    # out of attempts: failed, saying why
        assert failed.status == "failed" and failed.error.startswith("worker lost: its worker ")
    finally:
        q.stop()


def test_live_queue_jobs_are_not_recovered(queue, tmp_path):
    """A second queue over the same store must not fail jobs a live queue is running."""
    job = queue.submit("test-count", {"out": str(tmp_path / "l.txt"), "n": 200, "sleep": 0.01})
    while queue.get(job.id).status != "running":
        time.sleep(0.01)
    other = JobQueue(queue.store.path, devices=[]).start()
    assert other.recovered == []
    queue.cancel(job.id)
    assert queue.wait(job.id, timeout=10).status == "cancelled"
    other.stop()


def test_claim_is_exclusive_between_workers(tmp_path):
    store = JobStore(tmp_path / "c.sqlite")
    ids = {store.add("test-count", {"n": 1}).id for _ in range(30)}
    got: list[str] = []
    lock = threading.Lock()

    def grab(owner):
        s = JobStore(store.path)
        while (j := s.claim(owner)) is not None:
            with lock:
                got.append(j.id)

    threads = [threading.Thread(target=grab, args=(f"h:1:{k}",)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == sorted(ids)   # every job exactly once
    assert store.counts()["running"] == 30


def test_generate_job_makes_a_camera_clip(queue, photo):
    from postfx.assemble import probe_video
    req = {"image": str(photo), "prompt": "camera slowly zooming in", "engine": "camera",
           "frames": 4, "width": 64, "height": 64, "fps": 8}
    job = queue.submit("generate", {"request": req})
    end = queue.wait(job.id, timeout=60)
    assert end.status == "done", end.error
    out = Path(end.result["output"])
    info = probe_video(out)
    assert (info["frames"], info["width"], info["height"]) == (4, 64, 64)
    assert Path(end.result["manifest"]).is_file()


def test_generate_job_with_bad_value_fails_with_its_name(queue, photo):
    job = queue.submit("generate", {"request": {"image": str(photo), "frames": 1}})
    end = queue.wait(job.id, timeout=30)
    assert end.status == "failed" and "frames=1" in end.error


def test_generate_job_picks_the_codecs_extension(queue, photo):
    req = {"image": str(photo), "prompt": "pan left", "frames": 3, "width": 32, "height": 32,
           "codec": "gif"}
    end = queue.wait(queue.submit("generate", {"request": req}).id, timeout=60)
    assert end.status == "done", end.error
    assert end.result["output"].endswith(".gif") and Path(end.result["output"]).is_file()


def test_failed_job_keeps_an_earlier_file_at_its_out_path(queue, photo, tmp_path):
    (tmp_path / "renders").mkdir()
    out = tmp_path / "renders" / "keep.mp4"
    out.write_bytes(b"an earlier render")
    req = {"image": str(photo), "prompt": "pan left", "frames": 3, "width": 32, "height": 32,
           "audio": str(tmp_path / "missing.wav")}   # fails at encode, after the engine ran
    end = queue.wait(queue.submit("generate", {"request": req, "out": str(out)}).id, timeout=60)
    assert end.status == "failed" and "missing.wav" in end.error
    assert out.read_bytes() == b"an earlier render"
    assert sorted(p.name for p in out.parent.iterdir()) == ["keep.mp4"]
