"""What the Ray executor adds per job against the local executor, on this machine's CPUs.

    python bench/bench_ray_overhead.py --jobs 20 --out bench/results/ray_overhead_cpu.json

Both run in the same process and the same run, through the real Dispatcher and a JobStore in a temp
folder: LocalExecutor (one slot, cpu) and RayExecutor on a local Ray cluster started here with
`ray.init(num_cpus=N)` and no GPU (so one CPU actor per 2 CPUs: one actor on 2 cores).  Each kind of
job is timed two ways: one at a time (submit -> done wall time per job, as a client sees it) and a
batch of `--jobs` submitted at once (wall time / jobs).  Kinds: `tiny` (a job that does nothing but
one progress step) and `camera` (a real generate job: camera engine, 4 frames at 64², H.264).
Load average is recorded before and after, since other work may share the cores.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

log = logging.getLogger("bench_ray_overhead")
PHOTO = ROOT / "tests" / "data" / "coffee.jpg"


def tiny(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """A job that does nothing but one progress step."""
    ctx.step("tiny", 1, 1)
    return {"pid": os.getpid()}


def _payload(kind: str, out: Path, i: int) -> tuple[str, dict[str, Any]]:
    if kind == "tiny":
        return "bench-tiny", {}
    req = {"image": str(PHOTO), "prompt": "camera slowly zooming in", "engine": "camera",
           "frames": 4, "width": 64, "height": 64, "fps": 8}
    return "generate", {"request": req, "out": str(out / f"cam-{i}.mp4")}


def _wait(store: Any, job_id: str, timeout: float = 120.0) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        j = store.get(job_id)
        if j.status in ("done", "failed", "cancelled"):
            if j.status != "done":
                raise RuntimeError(f"job {job_id} {j.status}: {j.error}")
            return j
        time.sleep(0.02)
    raise TimeoutError(f"job {job_id} not done in {timeout}s")


def _stats(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {"median_s": round(statistics.median(xs), 4), "mean_s": round(statistics.fmean(xs), 4),
            "p90_s": round(xs[int(0.9 * (len(xs) - 1))], 4), "min_s": round(xs[0], 4),
            "max_s": round(xs[-1], 4)}


def measure(executor: Any, store_dir: Path, jobs: int, poll_s: float) -> dict[str, Any]:
    """One executor: per kind, sequential submit->done times and a batch's wall time per job."""
    from studio.jobs import JobStore
    from studio.jobs.dispatch import Dispatcher

    store = JobStore(store_dir / "jobs.sqlite")
    disp = Dispatcher(store, executor, poll_s=poll_s)
    t = threading.Thread(target=disp.run, daemon=True)
    t.start()
    out: dict[str, Any] = {}
    try:
        for kind in ("tiny", "camera"):
            k, p = _payload(kind, store_dir, -1)     # a warm-up job (first camera run imports the engine)
            _wait(store, store.add(k, p).id)
            seq = []
            for i in range(jobs):
                k, p = _payload(kind, store_dir, i)
                e = _wait(store, store.add(k, p).id)
                seq.append(e.finished - e.created)     # the store's own submit and done times
            ids = [store.add(*_payload(kind, store_dir, 1000 + i)).id for i in range(jobs)]
            ends = [_wait(store, j) for j in ids]
            batch = max(e.finished for e in ends) - min(e.created for e in ends)
            run_s = [float(e.result.get("seconds", 0.0)) for e in ends]
            out[kind] = {"sequential": seq, "batch_per_job_s": batch / jobs,
                         "job_own_seconds": run_s, "workers": sorted({e.worker for e in ends})}
    finally:
        disp.stop()
        t.join(30)
    return out


def _pool(rounds: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    seq = [x for r in rounds for x in r[kind]["sequential"]]
    own = [x for r in rounds for x in r[kind]["job_own_seconds"]]
    return {"submit_to_done": _stats(seq), "jobs_timed": len(seq),
            "batch_per_job_s": [round(r[kind]["batch_per_job_s"], 4) for r in rounds],
            "job_own_seconds_median": round(statistics.median(own), 4),
            "workers": sorted({w for r in rounds for w in r[kind]["workers"]})}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2, help="local, ray, local, ray, ... (alternating)")
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    ap.add_argument("--poll-s", type=float, default=0.1, help="the dispatcher's idle poll (its default)")
    ap.add_argument("--device", default="2-core CPU")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/ray_overhead_cpu.json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    import ray

    from studio.jobs import register_job_kind
    from studio.jobs.executors import LocalExecutor
    from studio.jobs.ray_executor import RayExecutor

    register_job_kind("bench-tiny", "bench.bench_ray_overhead:tiny")
    load_before = os.getloadavg()
    rounds: dict[str, list[dict[str, Any]]] = {"local": [], "ray": []}
    starts = []
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        os.environ["STUDIO_OUTPUTS_DIR"] = tmp
        t0 = time.perf_counter()
        ray.init(num_cpus=args.cpus, num_gpus=0, include_dashboard=False, log_to_driver=False)
        cluster_s = time.perf_counter() - t0
        for r in range(args.rounds):
            for name in ("local", "ray"):
                d = Path(tmp) / f"{name}-{r}"
                d.mkdir()
                t0 = time.perf_counter()
                ex = LocalExecutor(["cpu"], "bench") if name == "local" else RayExecutor(worker="bench")
                if name == "ray":
                    starts.append(round(time.perf_counter() - t0, 2))
                    n_actors = len(ex.slots())
                rounds[name].append(measure(ex, d, args.jobs, args.poll_s))
                log.warning("round %d %s done", r, name)
        ray.shutdown()
    res = {name: {k: _pool(rs, k) for k in ("tiny", "camera")} for name, rs in rounds.items()}
    res["ray"].update(cluster_start_s=round(cluster_s, 2), actor_start_s=starts, actors=n_actors)
    overhead = {}
    for kind in ("tiny", "camera"):
        lo, ra = res["local"][kind]["submit_to_done"], res["ray"][kind]["submit_to_done"]
        b_ray, b_loc = res["ray"][kind]["batch_per_job_s"], res["local"][kind]["batch_per_job_s"]
        overhead[kind] = {"median_s": round(ra["median_s"] - lo["median_s"], 4),
                          "mean_s": round(ra["mean_s"] - lo["mean_s"], 4),
                          "batch_per_job_s": round(statistics.fmean(b_ray) - statistics.fmean(b_loc), 4)}
    doc = {
        "benchmark": "ray executor overhead per job vs the local executor (same run)",
        "device": args.device, "cpus": os.cpu_count(), "platform": platform.platform(),
        "python": platform.python_version(), "ray_version": ray.__version__,
        "jobs_per_measure": args.jobs, "rounds": args.rounds, "dispatcher_poll_s": args.poll_s,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "note": "submit_to_done = the store's finished - created per job, jobs submitted one at a time "
                "(the next after the last is done); batch_per_job_s = a batch of `jobs` submitted at once, "
                "last finished - first created, / jobs, one value per round. Both through the Dispatcher "
                "(its idle poll counts for both). local = LocalExecutor, 1 slot, jobs in threads of the "
                "dispatcher's process; ray = RayExecutor, 1 CPU actor on a local cluster of this machine. "
                "Rounds alternate local, ray. Cluster and actor start are one-off, not in per-job times",
        "local": res["local"], "ray": res["ray"], "overhead_ray_minus_local": overhead,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(overhead, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
