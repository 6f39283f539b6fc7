"""Several devices for one clip: a gang of two CPU rank processes (gloo) runs a tiny Wan with
diffusers' context parallelism (Ulysses, ring) and CFG-parallel and gives the single-process frames; a
one-device job runs on one rank meanwhile; cancel, progress and a real kill of a rank behave as for
one device; the store never lets small jobs starve a gang job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from studio.engines.parallel import Plan, plan_for
from studio.jobs.store import JobStore
from tests.conftest import DATA, ROOT

REQ = {"engine": "wan-i2v", "prompt": "a cat", "frames": 5, "width": 32, "height": 32, "steps": 2,
       "guidance": 5.0, "seed": 7, "fps": 8.0, "image": str(DATA / "astronaut.jpg")}
TOL = 2  # of 255: gathered attention sums in another order than one process's


def test_auto_plan_and_mode_errors():
    wan480 = dict(tokens=21 * 30 * 52, heads=40)  # Wan 2.1 I2V 14B at 832x480, 81 frames
    assert plan_for("auto", 2, cfg_on=True, **wan480) == Plan(cfg=2)
    assert plan_for("auto", 4, cfg_on=True, **wan480) == Plan(cfg=2, ulysses=2)
    assert plan_for("auto", 8, cfg_on=True, **wan480) == Plan(cfg=2, ulysses=4)
    assert plan_for("auto", 2, cfg_on=False, **wan480) == Plan(ulysses=2)
    assert plan_for("auto", 6, cfg_on=False, tokens=32760, heads=40) == Plan(ring=6)  # 40 heads / 6: no
    assert plan_for("ulysses+ring", 8, cfg_on=True, **wan480) == Plan(ring=4, ulysses=2)
    assert plan_for("ulysses", 2, cfg_on=True, tokens=9, heads=2) == Plan(ulysses=2, anything=True)
    with pytest.raises(ValueError, match="splits the CFG branches, but this run has none"):
        plan_for("cfg", 2, cfg_on=False, **wan480)
    with pytest.raises(ValueError, match="mode='cfg' uses 2 devices, got 4"):
        plan_for("cfg", 4, cfg_on=True, **wan480)
    with pytest.raises(ValueError, match="40 attention heads do not split over 3"):
        plan_for("ulysses", 3, cfg_on=False, **wan480)
    with pytest.raises(ValueError, match="parallel mode='tensor' is not one of"):
        plan_for("tensor", 2, cfg_on=True, **wan480)


def _add(store: JobStore, gpus: int, owner: str = "ann") -> str:
    return store.add("test-count", {"n": 1, "gpus": gpus}, owner=owner).id


def test_store_never_passes_a_gang_job_over(tmp_path):
    """A two-device worker with one rank busy claims nothing while the next job in fair order needs
    both ranks (it drains); single-device workers never see that job; hostile values count as 1."""
    store = JobStore(tmp_path / "jobs.sqlite")
    small0 = _add(store, 1)
    big = _add(store, 2)
    small = [_add(store, 1) for _ in range(3)]
    assert store.claim("w", free_gpus=1, max_gpus=2).id == small0        # one rank now busy
    assert store.claim("w", free_gpus=1, max_gpus=2) is None             # big is next: drain
    assert store.claim("single").id == small[0]                          # a 1-GPU worker skips big
    store.finish(small0, "done")
    assert store.claim("w", free_gpus=None, max_gpus=2).id == big        # both ranks free
    assert store.claim("w", max_gpus=2).id == small[1]
    huge, odd = _add(store, 8), store.add("test-count", {"gpus": "many"}, owner="ann").id
    assert store.claim("w", max_gpus=2).id == small[2]
    assert store.claim("w", max_gpus=2).id == odd                        # 'many' counts as 1
    assert store.claim("w", max_gpus=2) is None and store.get(huge).status == "queued"


# -- a real gang: two CPU rank processes ----------------------------------------------------------
def _ranks(pid: int) -> dict[str, int]:
    """The worker's rank processes by name ('studio-rank0', ...), from /proc."""
    out = {}
    for d in Path("/proc").iterdir():
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid and comm.startswith("studio-rank") and fields[0] != "Z":
            out[comm] = int(d.name)
    return out


@pytest.fixture(scope="module")
def gang(tmp_path_factory):
    """`python -m studio worker --devices cpu,cpu`: a real gang worker on a store of its own."""
    import tests.tiny_models as tm

    root = tmp_path_factory.mktemp("gang")
    tm.tiny_wan().save_pretrained(str(root / "models" / "wan-i2v"), safe_serialization=True)
    env = {**os.environ, "STUDIO_MODELS_DIR": str(root / "models"),
           "STUDIO_OUTPUTS_DIR": str(root / "outputs"), "STUDIO_JOBS_DB": str(root / "jobs.sqlite")}
    store = JobStore(root / "jobs.sqlite")
    log = open(root / "worker.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "studio", "worker", "--devices", "cpu,cpu"], env=env,
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield store, proc, root
    finally:
        ranks = _ranks(proc.pid)
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = None
        log.close()
        assert rc == 0, (root / "worker.log").read_text()[-3000:]
        assert not any(_alive(p) for p in ranks.values()), ranks  # the ranks stop with their worker


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait(store: JobStore, job_id: str, timeout: float = 300.0, until=None):
    end = time.monotonic() + timeout
    job = store.get(job_id)
    while time.monotonic() < end and (job.is_active if until is None else not until(job)):
        time.sleep(0.05)
        job = store.get(job_id)
    return job


def _frames(job) -> np.ndarray:
    from pathlib import Path

    from studio.outputs import base_clip_path
    from studio.pipeline import load_base
    return load_base(base_clip_path(Path(job.result["output"]))).frames


def _submit(store, root, name, gpus=1, **kw):
    payload = {"request": {**REQ, **kw.pop("request", {})}, "out": str(root / "outputs" / f"{name}.mp4"),
               "gpus": gpus, **kw}
    return store.add("generate", payload).id


def test_gang_frames_match_one_process(gang):
    store, proc, root = gang
    single = _submit(store, root, "single")
    ids = {m: _submit(store, root, m, gpus=2, parallel=m) for m in ("cfg", "ulysses", "ring", "auto")}
    ref = _wait(store, single)
    assert ref.status == "done", ref.error
    assert "#" in ref.worker and "+" not in ref.device            # one rank, one device
    want = _frames(ref)
    assert want.shape == (5, 32, 32, 3)
    for mode, jid in ids.items():
        job = _wait(store, jid)
        assert job.status == "done", (mode, job.error)
        assert job.device == "cpu+cpu" and job.worker.endswith("/cpu+cpu"), job.worker
        got = _frames(job)
        diff = np.abs(got.astype(int) - want.astype(int)).max()
        assert diff <= TOL, (mode, diff)
        assert job.stage and job.n > 0  # rank 0 reported progress


def test_a_failing_gang_job_leaves_the_gang_ready(gang):
    store, proc, root = gang
    job = _wait(store, _submit(store, root, "no-cfg", gpus=2, parallel="cfg", request={"guidance": 1.0}))
    assert job.status == "failed"
    assert "parallel mode='cfg' splits the CFG branches, but this run has none" in job.error
    ok = _wait(store, _submit(store, root, "after-fail", gpus=2, parallel="ulysses"))
    assert ok.status == "done", ok.error  # no rank is left waiting in a collective


def test_gang_cancel_and_rank_kill(gang):
    store, proc, root = gang
    long = {"request": {"steps": 200}}
    jid = _submit(store, root, "cancel", gpus=2, parallel="ulysses", **long)
    job = _wait(store, jid, until=lambda j: j.stage == "denoise" and j.i >= 2)
    assert job.status == "running" and job.stage == "denoise", job
    t0 = time.monotonic()
    store.request_cancel(jid)
    job = _wait(store, jid, timeout=60)
    assert job.status == "cancelled" and time.monotonic() - t0 < 5.0
    ok = _wait(store, _submit(store, root, "after-cancel", gpus=2, parallel="ulysses"))
    assert ok.status == "done", ok.error  # the followers stopped at the same step

    jid = _submit(store, root, "kill", gpus=2, parallel="cfg", **long)
    job = _wait(store, jid, until=lambda j: j.stage == "denoise" and j.i >= 2)
    ranks = _ranks(proc.pid)
    assert sorted(ranks) == ["studio-rank0", "studio-rank1"], ranks   # one process per device
    os.kill(ranks["studio-rank1"], signal.SIGKILL)
    job = _wait(store, jid, until=lambda j: j.attempts > 1, timeout=60)  # requeued, then claimed again
    assert job.status == "running" and job.attempts == 2, job
    end = time.monotonic() + 120
    while len(new := _ranks(proc.pid)) < 2 and time.monotonic() < end:  # named once they start
        time.sleep(0.1)
    assert len(new) == 2 and not set(new.values()) & set(ranks.values()), (ranks, new)  # all restarted
    store.request_cancel(jid)  # the rerun would take minutes: the requeue is what is tested
    assert _wait(store, jid, timeout=120).status == "cancelled"
