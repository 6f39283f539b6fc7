"""Ray executor on real GPUs: jobs/hour on N GPUs and on 1, model residency, peak VRAM (issue #14).

    python bench/bench_ray_gpus.py --out bench/results/ray_gpus_h200.json            # all GPUs, then 1
    python bench/bench_ray_gpus.py --fake-gpus 2 --width 320 --height 192 --seconds 1 --jobs 4 \
        --out /tmp/ray_dry.json                                                       # a CPU dry run

For each GPU count (all visible, then 1) it starts a Ray head on this machine (`ray.init(num_gpus=n)`),
makes one actor per GPU through the studio's RayExecutor, and submits `--jobs` post jobs at once through
the studio's Dispatcher and a JobStore: RIFE ×2 (`interpolate=2`) on a generated clip (camera engine,
1080p, 4 s at 24 fps by default), written as an H.264 .mp4 where imageio-ffmpeg is installed, else as
a PNG frame folder (the GPU machine has no ffmpeg).  jobs/hour = jobs / (last finished - first
submitted).  Per job: the actor, wall seconds, the seconds its actor spent loading models for it (the
actor's timed model cache: first job vs later jobs = residency), the stage timings.  Per actor: peak
VRAM (torch max_memory_allocated / reserved).  `scaling` = jobs/hour on N GPUs / on 1 GPU (null where
only one GPU is there).  Needs models/rife/flownet-4.25.safetensors (`python -m studio models fetch rife`).

On the lent GPU machine (no network, no ray, no ffmpeg): carry models/rife and ray 2.60.0 for cp312
(its wheel less jars/, dashboard/client/build and the data/train/tune/serve/rllib/llm libraries, native
binaries stripped: 18 MB as .tar.xz) plus jsonschema, jsonschema-specifications, referencing and rpds-py
wheels; unpack them into a folder on PYTHONPATH.  Measured there (bench/results/ray_gpus_h200.json):
a job takes ~40 s, CPU-bound on PNG I/O, so 16 jobs on one GPU need ~11 min: run one `--counts` per
call where a call is limited to 10 minutes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

log = logging.getLogger("bench_ray_gpus")
PHOTO = ROOT / "tests" / "data" / "astronaut.jpg"


def make_input(d: Path, width: int, height: int, seconds: float, fps: float, ext: str) -> tuple[Path, float]:
    """The input clip: the camera engine zooming and panning over a photo; returns (path, seconds)."""
    from studio.context import RunContext
    from studio.engines import check_request
    from studio.pipeline import generate
    from studio.request import GenerationRequest

    req = check_request(GenerationRequest.from_dict({
        "image": str(PHOTO), "prompt": "camera slowly zooming in, panning right", "engine": "camera",
        "frames": int(round(seconds * fps)), "fps": fps, "width": width, "height": height}))
    t0 = time.perf_counter()
    res = generate(req, out=f"{d}/input{ext}", ctx=RunContext(device="cpu"))   # "/": a PNG folder
    return Path(res.output), time.perf_counter() - t0


def run_phase(n_gpus: int, fake: bool, src: Path, work: Path, jobs: int, ext: str,
              want_frames: int, partial: Any = None) -> dict[str, Any]:
    """A Ray head with `n_gpus` GPUs, one actor per GPU, `jobs` post jobs at once."""
    import ray

    from studio.jobs import JobStore
    from studio.jobs.dispatch import Dispatcher
    from studio.jobs.ray_executor import RayExecutor

    env = {} if fake else {"CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in range(n_gpus))}
    os.environ.update(env)
    t0 = time.perf_counter()
    ray.init(num_gpus=n_gpus, include_dashboard=False, log_to_driver=False,
             object_store_memory=1 << 30)
    cluster_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ex = RayExecutor(worker=f"bench-{n_gpus}gpu")
    end = time.monotonic() + 120
    while len(ex.slots()) < n_gpus and time.monotonic() < end:
        ex.poll()
        time.sleep(0.05)
    actors_s = time.perf_counter() - t0
    if len(ex.slots()) != n_gpus:
        raise RuntimeError(f"{len(ex.slots())} actor(s) started, wanted {n_gpus}")
    store = JobStore(work / f"jobs-{n_gpus}.sqlite")
    disp = Dispatcher(store, ex)
    th = threading.Thread(target=disp.run, daemon=True)
    th.start()
    outs = work / f"out-{n_gpus}"
    outs.mkdir()
    ids = [store.add("post", {"input": str(src), "settings": {"interpolate": 2},
                              "out": f"{outs}/job{i:02d}{ext}"}).id for i in range(jobs)]
    pending, ends = set(ids), {}
    deadline = time.monotonic() + 3600
    while pending and time.monotonic() < deadline:
        for j in list(pending):
            job = store.get(j)
            if job.status in ("done", "failed", "cancelled"):
                pending.discard(j)
                ends[j] = job
                if job.status != "done":
                    raise RuntimeError(f"job {j} {job.status}: {job.error}")
                out = Path(job.result["output"])
                frames = len(list(out.glob("*.png"))) if out.is_dir() else None
                if frames is not None and frames != want_frames:
                    raise RuntimeError(f"job {j} wrote {frames} PNG frames, the ledger said {want_frames}")
                job.result["png_frames"] = frames
                shutil.rmtree(out) if out.is_dir() else out.unlink()   # keep the disk free
                if partial is not None:   # what finished so far (and VRAM), should the run be cut short
                    vram = [{"actor": st["actor_id"], "gpu_ids": st["gpu_ids"],
                             "peak_vram_allocated_bytes": st.get("peak_vram_allocated_bytes")}
                            for st in ex.stats()]
                    done_now = [{"id": e.id, "actor": e.worker, "created": e.created, "finished": e.finished,
                                 "result": e.result} for e in ends.values()]
                    partial({"gpus": n_gpus, "vram": vram, "done": done_now})
        time.sleep(0.05)
    stats = ex.stats()
    disp.stop()
    th.join(60)
    ray.shutdown()
    for k in env:
        os.environ.pop(k, None)
    done = [ends[j] for j in ids]
    wall = max(e.finished for e in done) - min(e.created for e in done)
    per_job = [{"id": e.id, "actor": e.worker, "device": e.device, "seconds": e.result.get("seconds"),
                "wall_s": round(e.finished - e.started, 3), "model_load_s": e.result.get("model_load_s"),
                "models_loaded": e.result.get("models_loaded"), "timings": e.result.get("timings"),
                "png_frames": e.result.get("png_frames")} for e in done]
    actors = []
    for st in stats:
        mine = st["jobs"]
        actors.append({
            "actor": st["actor_id"], "device": st["device"], "gpu_ids": st["gpu_ids"],
            "gpu_name": st.get("gpu_name"), "jobs": len(mine),
            "first_job_model_load_s": mine[0]["model_load_s"] if mine else None,
            "later_jobs_model_load_s": [j["model_load_s"] for j in mine[1:]],
            "first_job_seconds": mine[0]["seconds"] if mine else None,
            "later_jobs_seconds_median": round(statistics.median(j["seconds"] for j in mine[1:]), 3)
            if len(mine) > 1 else None,
            "peak_vram_allocated_gib": round(st.get("peak_vram_allocated_bytes", 0) / 2**30, 3),
            "peak_vram_reserved_gib": round(st.get("peak_vram_reserved_bytes", 0) / 2**30, 3),
        })
    return {"gpus": n_gpus, "actors": len(stats), "jobs": jobs, "wall_s": round(wall, 2),
            "jobs_per_hour": round(jobs / wall * 3600, 1), "cluster_start_s": round(cluster_s, 2),
            "actors_start_s": round(actors_s, 2), "per_actor": actors, "per_job": per_job}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=16)
    ap.add_argument("--width", type=int, default=1920)
    ap.add_argument("--height", type=int, default=1080)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--fps", type=float, default=24.0)
    ap.add_argument("--fake-gpus", type=int, default=0, help="a CPU dry run with this many fake GPUs")
    ap.add_argument("--counts", default=None,
                    help="GPU counts to run, e.g. '2,1' (default: all visible, then 1); one per call if a "
                         "call's time limit is short")
    ap.add_argument("--format", choices=("auto", "mp4", "png"), default="auto")
    ap.add_argument("--device", default=None, help="device name for the JSON (default: the GPU's name)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    import ray
    import torch

    fake = args.fake_gpus > 0
    n_all = args.fake_gpus if fake else torch.cuda.device_count()
    if n_all < 1:
        raise SystemExit("no CUDA GPU here; use --fake-gpus N for a CPU dry run")
    try:
        import imageio_ffmpeg  # noqa: F401
        has_ffmpeg = True
    except ImportError:
        has_ffmpeg = False
    fmt = ("mp4" if has_ffmpeg else "png") if args.format == "auto" else args.format
    ext = ".mp4" if fmt == "mp4" else "/"
    device = args.device or ("CPU (fake Ray GPUs)" if fake else
                             f"{n_all}x {torch.cuda.get_device_name(0)} "
                             f"({torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB)")
    counts = [int(c) for c in args.counts.split(",")] if args.counts else [n_all] + ([1] if n_all > 1 else [])
    if any(c < 1 or c > n_all for c in counts):
        raise SystemExit(f"--counts {args.counts!r}: each must be 1..{n_all} (the GPUs here)")
    doc: dict[str, Any] = {
        "benchmark": "Ray executor: post jobs (RIFE x2) through the Dispatcher, one actor per GPU",
        "device": device, "gpus_visible": n_all, "cpus": os.cpu_count(), "platform": platform.platform(),
        "python": platform.python_version(), "torch": torch.__version__, "ray_version": ray.__version__,
        "job": {"kind": "post", "settings": {"interpolate": 2}, "input": f"{args.width}x{args.height}, "
                f"{args.seconds:g} s at {args.fps:g} fps (camera engine)", "output_format": fmt},
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
    }
    with tempfile.TemporaryDirectory(prefix="bench-ray-gpus-") as tmp:
        work = Path(tmp)
        os.environ["STUDIO_OUTPUTS_DIR"] = str(work)
        src, gen_s = make_input(work, args.width, args.height, args.seconds, args.fps, ext)
        doc["job"]["input_frames"] = int(round(args.seconds * args.fps))
        doc["job"]["input_make_s"] = round(gen_s, 2)
        phases = []
        for n in counts:
            log.info("phase: %d GPU(s), %d jobs", n, args.jobs)
            def partial(p: dict[str, Any]) -> None:
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps({**doc, "partial_phase": p}, indent=2) + "\n")

            phases.append(run_phase(n, fake, src, work, args.jobs, ext, 2 * doc["job"]["input_frames"] - 1,
                                    partial))
            log.info("phase %d GPU(s): %.1f jobs/hour", n, phases[-1]["jobs_per_hour"])
            doc["phases"] = phases
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(doc, indent=2) + "\n")   # keep what ran, should a later phase fail
    by_n = {p["gpus"]: p["jobs_per_hour"] for p in phases}
    doc["jobs_per_hour"] = {str(k): v for k, v in by_n.items()}
    top = max(by_n)
    doc["scaling"] = round(by_n[top] / by_n[1], 3) if top > 1 and 1 in by_n else None
    if doc["scaling"] is None:
        doc["not_run"] = f"phases run: {sorted(by_n)} GPU(s); scaling needs a multi-GPU phase and a 1-GPU one"
    doc["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps({"device": device, "jobs_per_hour": doc["jobs_per_hour"], "scaling": doc["scaling"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
