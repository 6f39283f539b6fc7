"""The Ray executor through the real Dispatcher and a JobStore, on a local Ray cluster started here with
two fake GPUs (`ray.init(num_cpus=2, num_gpus=2)`: the work runs on the CPU).  One actor per "GPU".

Covers issue #11's Ray items: 8 jobs spread over 2 actors (the store names both); a job for an engine
already loaded on one actor goes to that actor; a model stays resident (no load on the second job);
cancel of a running job lands within 2 s; killing an actor mid-job requeues its job, which finishes on
the other; ray.shutdown() under a live dispatcher loses no queued or running job, and a new cluster
runs them.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from studio.jobs import JobStore  # noqa: E402
from studio.jobs.dispatch import Dispatcher  # noqa: E402
from studio.jobs.ray_executor import RayExecutor  # noqa: E402
from tests import ray_kinds  # noqa: E402

pytestmark = pytest.mark.slow   # slow but CPU-only: CI runs it (~1-2 min on 2 cores)
ray_kinds.register()


def _init() -> None:
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False)


@pytest.fixture(scope="module")
def cluster():
    if ray.is_initialized():
        ray.shutdown()
    _init()
    yield
    ray.shutdown()


@pytest.fixture
def stack(cluster, tmp_path):
    """A store in tmp_path, a RayExecutor on the cluster (2 actors) and a Dispatcher running in a thread."""
    if not ray.is_initialized():
        _init()
    store = JobStore(tmp_path / "jobs.sqlite")
    ex = RayExecutor(worker="test")
    end = time.monotonic() + 90
    while len(ex.slots()) < 2 and time.monotonic() < end:
        ex.poll()
        time.sleep(0.1)
    assert len(ex.slots()) == 2, ex.slots()
    disp = Dispatcher(store, ex, poll_s=0.02)
    t = threading.Thread(target=disp.run, daemon=True)
    t.start()
    yield store, ex, disp
    disp.stop()
    t.join(30)
    assert not t.is_alive()


def _wait(store, job_id, statuses=("done", "failed", "cancelled"), timeout=60.0, cond=None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        j = store.get(job_id)
        if (cond(j) if cond else j.status in statuses):
            return j
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} still {store.get(job_id).status} ({store.get(job_id).message})")


def _count(tmp_path, name, n, sleep):
    return {"out": str(tmp_path / f"{name}.txt"), "n": n, "sleep": sleep}


def test_eight_jobs_spread_over_two_actors(stack, tmp_path):
    store, ex, _ = stack
    actors = {s.id for s in ex.slots()}
    jobs = [store.add("ray-test-count", _count(tmp_path, f"c{i}", 5, 0.1)) for i in range(8)]
    ends = [_wait(store, j.id) for j in jobs]
    assert [e.status for e in ends] == ["done"] * 8, [e.error for e in ends]
    assert [e.result["count"] for e in ends] == [5] * 8
    assert {e.worker for e in ends} == actors            # both actors ran some of them
    assert len({e.result["pid"] for e in ends}) == 2     # two actor processes, not this one
    assert all(e.attempts == 1 and (e.stage, e.i, e.n) == ("count", 5, 5) for e in ends)
    assert all(e.device.startswith("cpu#gpu") for e in ends)   # fake GPUs: work on the CPU
    assert all(Path(e.preview).is_file() for e in ends)        # previews streamed back to the store
    assert all((tmp_path / f"c{i}.txt").read_text() == "5" for i in range(8))


def test_affinity_residency_and_cancel_within_two_seconds(stack, tmp_path, photo):
    store, ex, _ = stack
    first, second = (s.id for s in ex.slots())   # a lone job goes to the first free slot
    long = store.add("ray-test-count", _count(tmp_path, "long", 400, 0.05))   # ~20 s
    _wait(store, long.id, cond=lambda j: j.status == "running" and j.i >= 2, timeout=30)
    assert store.get(long.id).worker == first
    req = {"image": str(photo), "prompt": "camera slowly zooming in", "engine": "camera",
           "frames": 4, "width": 64, "height": 64, "fps": 8}
    cam = _wait(store, store.add("generate", {"request": req, "out": str(tmp_path / "a.mp4")}).id)
    assert cam.status == "done", cam.error
    assert cam.worker == second and Path(cam.result["output"]).stat().st_size > 0
    # model residency: the first load takes its time, the second job on the same actor none
    loads = [_wait(store, store.add("ray-test-load", {"model": "m", "load_s": 0.6}).id) for _ in range(2)]
    assert [j.worker for j in loads] == [second, second]
    assert loads[0].result["model_load_s"] >= 0.6 and loads[0].result["models_loaded"]
    assert loads[1].result["model_load_s"] == 0 and loads[1].result["models_loaded"] == []
    assert loads[1].result["took_s"] < 0.3
    # cancel the long job as the REST API would (another store object), and time it
    assert store.get(long.id).status == "running"
    t0 = time.monotonic()
    JobStore(store.path).request_cancel(long.id)
    end = _wait(store, long.id, timeout=10)
    latency = time.monotonic() - t0
    assert end.status == "cancelled" and end.i < 400
    assert latency <= 2.0, f"cancel took {latency:.2f}s"
    assert not (tmp_path / "long.txt").exists()
    # both actors free now; the engine is loaded on the second only: the job goes there, not to the first
    _wait(store, long.id, cond=lambda j: all(s.busy is None for s in ex.slots()), timeout=10)
    assert [s.id for s in ex.slots()] == [first, second]
    assert "engine:camera" in ex._actors[second].slot.loaded
    assert "engine:camera" not in ex._actors[first].slot.loaded
    again = _wait(store, store.add("generate", {"request": req, "out": str(tmp_path / "b.mp4")}).id)
    assert again.status == "done" and again.worker == second


def test_killed_actor_requeues_and_cluster_restart_keeps_the_queue(stack, tmp_path):
    store, ex, disp = stack
    a, b = (s.id for s in ex.slots())
    job = store.add("ray-test-count", _count(tmp_path, "k", 60, 0.05))   # ~3 s
    _wait(store, job.id, cond=lambda j: j.status == "running" and j.i >= 3, timeout=30)
    victim = store.get(job.id).worker
    ray.kill(ex.handle(victim))
    end = _wait(store, job.id, timeout=60)
    assert end.status == "done", (end.error, end.message)
    assert end.worker == ({a, b} - {victim}).pop() and end.attempts == 2
    assert end.result["count"] == 60

    # the cluster goes away under a running dispatcher: nothing is lost, a new cluster runs it all
    jobs = [store.add("ray-test-count", _count(tmp_path, f"q{i}", 60, 0.05)) for i in range(4)]
    end_t = time.monotonic() + 30
    while store.counts()["running"] < 2 and time.monotonic() < end_t:
        time.sleep(0.02)
    assert store.counts()["running"] == 2
    with ex._lock:   # not while the dispatcher's thread is inside a Ray call
        ray.shutdown()
    end_t = time.monotonic() + 20
    while store.counts()["queued"] < 4 and time.monotonic() < end_t:
        time.sleep(0.05)
    assert {store.get(j.id).status for j in jobs} == {"queued"}
    assert store.counts()["failed"] == 0 and ex.slots() == []
    time.sleep(1.0)
    assert {store.get(j.id).status for j in jobs} == {"queued"}   # no actors: they wait in the store
    old = {a, b}
    _init()
    ends = [_wait(store, j.id, timeout=120) for j in jobs]
    assert [e.status for e in ends] == ["done"] * 4, [e.error for e in ends]
    assert {e.worker for e in ends}.isdisjoint(old) and len({e.worker for e in ends}) == 2
    assert all(e.result["count"] == 60 for e in ends)
