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

On the lent GPU machine (no network, no ray, no imageio-ffmpeg, no system ffmpeg): carry .raycarry/
(git-ignored) and models/rife.  .raycarry holds ray 2.60.0 for cp312 (its wheel less jars/,
dashboard/client/build and the data/train/tune/serve/rllib/llm libraries, native binaries stripped:
18 MB as ray-trim.tar.xz), the jsonschema, jsonschema-specifications, referencing and rpds-py wheels,
and imageio-ffmpeg 0.6.0 (its manylinux2014 wheel's package with the bundled ffmpeg 7.0.2 and libx264,
re-packed as imageio_ffmpeg-0.6.0.tar.xz, 21 MB: 0.8.1's 68 MB wheel does not fit a call's 64 MiB).
There, in the repository root:

    S=/tmp/site; python3 -c "import zipfile, glob; [zipfile.ZipFile(w).extractall('$S')
        for w in glob.glob('.raycarry/*.whl')]"
    tar xJf .raycarry/ray-trim.tar.xz -C $S; tar xJf .raycarry/imageio_ffmpeg-0.6.0.tar.xz -C $S
    PYTHONPATH=$S python3 bench/bench_ray_gpus.py --counts 1 --deadline-s 340 \
        --previous bench/results/ray_gpus_h200.json --out $OUT/ray_gpus_h200.json

The input is written once as H.264 (veryfast) straight from the camera engine (no manifest or saved base
clip: it is only the jobs' input); each job writes H.264 with `--preset` (ultrafast by default).  Each
job still does all a post job does, including saving its lossless base clip (.base.npz, zlib) beside
the output.  With PNG folders (the first run here, kept under `previous_partial_run`) a job took ~40 s,
CPU-bound on PNG I/O; with MP4 a later job takes 20-25 s on the H200, 15-20 s of it outside the stage
timings (the input's decode and, mostly, the zlib base clip), so 16 jobs need ~6 min.
`--deadline-s` ends a phase that runs long with what finished (status partial).
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


def make_input(d: Path, width: int, height: int, seconds: float, fps: float, ext: str,
               preset: str) -> tuple[Path, float]:
    """The input clip: the camera engine zooming and panning over a photo, encoded once (H.264 `preset`
    for .mp4, else a PNG folder); no manifest or base clip beside it.  Returns (path, seconds)."""
    from postfx.assemble import write_video
    from studio.context import RunContext
    from studio.engines import check_request, get_engine
    from studio.images import load_image
    from studio.request import GenerationRequest

    req = check_request(GenerationRequest.from_dict({
        "image": str(PHOTO), "prompt": "camera slowly zooming in, panning right", "engine": "camera",
        "frames": int(round(seconds * fps)), "fps": fps, "width": width, "height": height}))
    t0 = time.perf_counter()
    ctx = RunContext(device="cpu")
    clip = get_engine("camera").generate(load_image(req.image), req, ctx)
    codec = "h264" if ext == ".mp4" else "png"
    out = write_video(clip, f"{d}/input{ext}", codec=codec, preset=preset, ctx=ctx)
    return Path(out), time.perf_counter() - t0


def count_frames(out: Path) -> int:
    """Frames in an output: PNG files in a folder, else decoded by ffmpeg."""
    if out.is_dir():
        return len(list(out.glob("*.png")))
    import imageio_ffmpeg

    return int(imageio_ffmpeg.count_frames_and_secs(str(out))[0])


def _gib(b: Any) -> float | None:
    return round(b / 2**30, 3) if b is not None else None


def _vram_now(ex: Any) -> list[dict[str, Any]]:
    """Each actor's peak VRAM so far (torch max_memory_allocated / reserved) and its jobs done."""
    return [{"actor": st["actor_id"], "gpu_ids": st["gpu_ids"], "jobs_done": len(st["jobs"]),
             "peak_vram_allocated_gib": _gib(st.get("peak_vram_allocated_bytes")),
             "peak_vram_reserved_gib": _gib(st.get("peak_vram_reserved_bytes"))} for st in ex.stats()]


def run_phase(n_gpus: int, fake: bool, src: Path, work: Path, jobs: int, ext: str, want_frames: int,
              settings: dict[str, Any], deadline: float, partial: Any = None) -> dict[str, Any]:
    """A Ray head with `n_gpus` GPUs, one actor per GPU, `jobs` post jobs at once (until `deadline`,
    a time.monotonic() value: what finished by then is kept)."""
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
    ids = [store.add("post", {"input": str(src), "settings": dict(settings),
                              "out": f"{outs}/job{i:02d}{ext}"}).id for i in range(jobs)]
    pending, ends, vram_after = set(ids), {}, {}
    while pending and time.monotonic() < deadline:
        for j in list(pending):
            job = store.get(j)
            if job.status not in ("done", "failed", "cancelled"):
                continue
            pending.discard(j)
            ends[j] = job
            if job.status != "done":
                raise RuntimeError(f"job {j} {job.status}: {job.error}")
            out = Path(job.result["output"])
            frames = count_frames(out)
            if frames != want_frames:
                raise RuntimeError(f"job {j} wrote {frames} frames, the ledger said {want_frames}")
            job.result["frames_written"] = frames
            job.result["output_bytes"] = sum(f.stat().st_size for f in out.iterdir()) if out.is_dir() \
                else out.stat().st_size
            for extra in (out.with_name(out.name + ".base.npz"), out.with_name(out.name + ".json")):
                extra.unlink(missing_ok=True)
            shutil.rmtree(out) if out.is_dir() else out.unlink()   # keep the disk free
            vram_after[j] = _vram_now(ex)   # peak VRAM per actor, read after every job
            if partial is not None:   # what finished so far, should the run be cut short
                done_now = [{"id": e.id, "actor": e.worker, "created": e.created, "finished": e.finished,
                             "result": e.result, "vram_after": vram_after[e.id]} for e in ends.values()]
                partial({"gpus": n_gpus, "done": done_now})
        time.sleep(0.05)
    stats = ex.stats()
    disp.stop()
    th.join(60)
    ray.shutdown()
    for k in env:
        os.environ.pop(k, None)
    done = sorted(ends.values(), key=lambda e: e.finished)
    if not done:
        raise RuntimeError(f"no job of {jobs} finished before the deadline")
    t_first = min(store.get(j).created for j in ids)
    wall = max(e.finished for e in done) - t_first
    fin = [e.finished - t_first for e in done]
    gaps = [b - a for a, b in zip(fin, fin[1:], strict=False)]
    per_job = []
    for e in done:
        t = e.result.get("timings") or {}
        per_job.append({
            "id": e.id, "actor": e.worker, "device": e.device,
            "finished_after_s": round(e.finished - t_first, 2),
            "seconds": e.result.get("seconds"), "wall_s": round(e.finished - e.started, 3),
            "model_load_s": e.result.get("model_load_s"), "models_loaded": e.result.get("models_loaded"),
            "timings": t, "outside_timings_s": round(e.result["seconds"] - sum(t.values()), 3)
            if e.result.get("seconds") is not None else None,
            "frames_written": e.result.get("frames_written"), "output_bytes": e.result.get("output_bytes"),
            "vram_after": vram_after[e.id]})
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
            "peak_vram_allocated_gib": _gib(st.get("peak_vram_allocated_bytes")),
            "peak_vram_reserved_gib": _gib(st.get("peak_vram_reserved_bytes")),
        })
    return {"gpus": n_gpus, "actors": len(stats), "jobs_submitted": jobs, "jobs_done": len(done),
            "status": "complete" if len(done) == jobs
            else f"partial: {len(done)} of {jobs} before the deadline",
            "wall_s": round(wall, 2), "jobs_per_hour": round(len(done) / wall * 3600, 1),
            "jobs_per_hour_steady": round(3600 / statistics.mean(gaps[1:]), 1) if len(gaps) > 1 else None,
            "jobs_per_hour_note": "jobs done / (last finished - first submitted); steady = 3600 / mean gap "
                                  "between finishes after the second (the first job includes GPU warm-up)",
            "cluster_start_s": round(cluster_s, 2), "actors_start_s": round(actors_s, 2),
            "per_actor": actors, "per_job": per_job}


def main() -> int:
    """Parse the flags, make the input, run each GPU count's phase, write the JSON."""
    t_start = time.monotonic()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=16)
    ap.add_argument("--width", type=int, default=1920)
    ap.add_argument("--height", type=int, default=1080)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--fps", type=float, default=24.0)
    ap.add_argument("--fake-gpus", type=int, default=0, help="a CPU dry run with this many fake GPUs")
    ap.add_argument("--counts", default=None,
                    help="GPU counts to run, e.g. '2,1' (default: all visible, then 1)")
    ap.add_argument("--format", choices=("auto", "mp4", "png"), default="auto")
    ap.add_argument("--preset", default="ultrafast", help="H.264 preset of the jobs' outputs (mp4)")
    ap.add_argument("--input-preset", default="veryfast", help="H.264 preset of the input clip (mp4)")
    ap.add_argument("--deadline-s", type=float, default=None,
                    help="stop waiting this many seconds after the start; keep what finished (partial)")
    ap.add_argument("--previous", type=Path, default=None,
                    help="an earlier result JSON to keep under 'previous_partial_run'")
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
    previous = None
    if args.previous is not None:
        previous = json.loads(args.previous.read_text())
        previous = previous.get("previous_partial_run", previous)   # a file that already keeps one
    try:
        import imageio_ffmpeg
        ffmpeg = {"imageio_ffmpeg": imageio_ffmpeg.__version__, "ffmpeg": imageio_ffmpeg.get_ffmpeg_version()}
    except ImportError:
        ffmpeg = None
    fmt = ("mp4" if ffmpeg else "png") if args.format == "auto" else args.format
    ext = ".mp4" if fmt == "mp4" else "/"
    settings: dict[str, Any] = {"interpolate": 2}
    if fmt == "mp4":
        settings.update(codec="h264", preset=args.preset)
    device = args.device or ("CPU (fake Ray GPUs)" if fake else
                             f"{n_all}x {torch.cuda.get_device_name(0)} "
                             f"({torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB)")
    counts = [int(c) for c in args.counts.split(",")] if args.counts else [n_all] + ([1] if n_all > 1 else [])
    if any(c < 1 or c > n_all for c in counts):
        raise SystemExit(f"--counts {args.counts!r}: each must be 1..{n_all} (the GPUs here)")
    deadline = t_start + args.deadline_s if args.deadline_s else float("inf")
    doc: dict[str, Any] = {
        "benchmark": "Ray executor: post jobs (RIFE x2) through the Dispatcher, one actor per GPU",
        "device": device, "gpus_visible": n_all, "cpus": os.cpu_count(), "platform": platform.platform(),
        "python": platform.python_version(), "torch": torch.__version__, "ray_version": ray.__version__,
        "ffmpeg": ffmpeg,
        "job": {"kind": "post", "settings": settings, "input": f"{args.width}x{args.height}, "
                f"{args.seconds:g} s at {args.fps:g} fps (camera engine)", "output_format": fmt,
                "input_format": fmt + (f" (h264 {args.input_preset}, crf 18)" if fmt == "mp4" else "")},
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
    }

    def write(extra: dict[str, Any] | None = None) -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        body = {**doc, **(extra or {})}
        if previous is not None:
            body["previous_partial_run"] = previous
        args.out.write_text(json.dumps(body, indent=2) + "\n")

    with tempfile.TemporaryDirectory(prefix="bench-ray-gpus-") as tmp:
        work = Path(tmp)
        os.environ["STUDIO_OUTPUTS_DIR"] = str(work)
        src, gen_s = make_input(work, args.width, args.height, args.seconds, args.fps, ext, args.input_preset)
        doc["job"]["input_frames"] = int(round(args.seconds * args.fps))
        doc["job"]["input_make_s"] = round(gen_s, 2)
        doc["job"]["input_bytes"] = src.stat().st_size if src.is_file() else None
        phases = []
        for n in counts:
            log.info("phase: %d GPU(s), %d jobs", n, args.jobs)
            phases.append(run_phase(n, fake, src, work, args.jobs, ext, 2 * doc["job"]["input_frames"] - 1,
                                    settings, deadline, lambda p: write({"partial_phase": p})))
            log.info("phase %d GPU(s): %s, %.1f jobs/hour", n, phases[-1]["status"],
                     phases[-1]["jobs_per_hour"])
            doc["phases"] = phases
            write()   # keep what ran, should a later phase fail
    by_n = {p["gpus"]: p["jobs_per_hour"] for p in phases}
    doc["status"] = "complete" if all(p["status"] == "complete" for p in phases) else "partial"
    doc["jobs_per_hour"] = {str(k): v for k, v in by_n.items()}
    def pick(*keys: str) -> dict[str, Any]:
        return {f"{p['gpus']}gpu": [{k: a[k] for k in keys} for a in p["per_actor"]] for p in phases}

    doc["residency"] = pick("actor", "first_job_model_load_s", "later_jobs_model_load_s")
    doc["peak_vram_gib"] = pick("actor", "gpu_ids", "peak_vram_allocated_gib", "peak_vram_reserved_gib")
    top = max(by_n)
    doc["scaling"] = round(by_n[top] / by_n[1], 3) if top > 1 and 1 in by_n else None
    if doc["scaling"] is None:
        doc["scaling_note"] = (f"null: phases run on {sorted(by_n)} GPU(s) only; scaling (multi-GPU over "
                               "1-GPU jobs/hour) needs a multi-GPU phase in the same run" +
                               ("" if fake or n_all > 1 else ", and this machine has one GPU (nvidia-h200-x2 "
                                "not lent to this session)"))
        doc["not_run"] = ["the 2-GPU phase, so no scaling"] if not fake and n_all == 1 else \
            [f"phases for counts other than {sorted(by_n)}"]
    doc["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    doc["bench_wall_s"] = round(time.monotonic() - t_start, 1)
    write()
    print(json.dumps({"device": device, "status": doc["status"], "jobs_per_hour": doc["jobs_per_hour"],
                      "scaling": doc["scaling"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
