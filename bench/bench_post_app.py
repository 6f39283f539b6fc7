"""The post chain through the app (`studio.pipeline.post_process`, and jobs through the Dispatcher),
warm, beside the same frames through the models alone in the same run (issue #19).

    python bench/bench_post_app.py --device cuda --out bench/results/post_app_h200.json \
        --calibration-out bench/results/post_calibration.json
    python bench/bench_post_app.py --quick --device cpu --out /tmp/post_app_cpu.json   # tiny, end to end

Cases (`rows`, each {case, wall_s, app_fps, model_fps, ...}):
- rife2_1080p: RIFE ×2 of a 1920×1080 clip, 96 -> 191 frames, through `post_process` (decode, scene
  cuts, interpolate, H.264 encode, manifest).  `new_frames_per_s` = interpolated frames / the
  interpolate stage's seconds; peer = `RifeInterpolator.run` alone on the same decoded frames (uint8
  host in and out, as bench_rife's model path): `model_fps` = output frames / its seconds.
- wan_clip_chain: an 832×480, 81-frame clip (a Wan clip's shape) through RIFE ×2 and animevideov3 ×2
  with colour match to 1664×960, in BOTH orders (interpolate-first and upscale-carry); the row is
  the faster, `orders` holds both, and that measurement decides `order_cuda` in the calibration
  table.  Peer = RIFE alone then the upscaler alone (no colour match) on the same frames.
  `device_vs_cpu` checks the device maths against today's CPU path on these frames (colour match
  within 1 level, the same scene cuts and static pairs): the only GPU check of a one-shot run.
- ray_post: `--jobs` post jobs (the rife2_1080p job) submitted at once through the studio's
  Dispatcher and JobStore to the LOCAL executor with one slot on the GPU (not Ray: Ray's wheel does
  not fit the device's 64 MiB carry beside ffmpeg and the weights, and its start-up costs ~30 s of a
  5-minute budget).  jobs_per_hour = jobs / (last finished - first submitted), models warm.
Every timed figure is the best of `--reps` warm runs (all runs are kept).  `--calibration-out` writes
a refit of bench/results/post_calibration.json from these numbers.

On the lent H200 (no network, no imageio-ffmpeg): bench/h200_post.sh runs this and the README's
model benchmarks as one command; its docstring gives the exact `carry` list and command.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

log = logging.getLogger("bench_post_app")
PHOTO = ROOT / "tests" / "data" / "astronaut.jpg"
FULL = {"a": (1920, 1080, 96, 24.0), "b": (832, 480, 81, 16.0), "jobs": 6}
QUICK = {"a": (96, 64, 9, 24.0), "b": (64, 48, 7, 16.0), "jobs": 2}


def make_input(d: Path, name: str, width: int, height: int, frames: int, fps: float) -> Path:
    """A camera-engine clip (zoom and pan over a photo), H.264 veryfast where ffmpeg is, else PNGs."""
    from postfx.assemble import write_video
    from studio.context import RunContext
    from studio.engines import check_request, get_engine
    from studio.images import load_image
    from studio.request import GenerationRequest

    req = check_request(GenerationRequest.from_dict({
        "image": str(PHOTO), "prompt": "camera slowly zooming in, panning right", "engine": "camera",
        "frames": frames, "fps": fps, "width": width, "height": height}))
    ctx = RunContext(device="cpu")
    clip = get_engine("camera").generate(load_image(req.image), req, ctx)
    ext = ".mp4" if have_ffmpeg() else "/"
    return Path(write_video(clip, f"{d}/{name}{ext}", codec="h264" if ext == ".mp4" else "png",
                            preset="veryfast", ctx=ctx))


def have_ffmpeg() -> bool:
    """Whether imageio-ffmpeg (its bundled ffmpeg) is importable."""
    try:
        import imageio_ffmpeg
        imageio_ffmpeg.get_ffmpeg_exe()
        return True
    except Exception:  # noqa: BLE001
        return False


def sync(device: str) -> None:
    """Wait for the device's queued work (CUDA), so timings are honest."""
    if device.startswith("cuda"):
        import torch
        torch.cuda.synchronize()


def timed(fn, reps: int, device: str) -> tuple[float, list[float], Any]:
    """(best seconds, all seconds, last result) of `reps` calls of `fn` after one warm-up call."""
    fn()
    times, out = [], None
    for _ in range(reps):
        sync(device)
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        times.append(round(time.perf_counter() - t0, 4))
    return min(times), times, out


def post_runs(src: Path, settings: dict[str, Any], work: Path, tag: str, ctx, reps: int) -> dict[str, Any]:
    """Warm-up + `reps` timed `post_process` runs of `src`; the best run's figures."""
    from studio.pipeline import post_process

    outs = work / f"out-{tag}"
    outs.mkdir(exist_ok=True)
    ext = ".mp4" if have_ffmpeg() else "/"
    runs: list[dict[str, Any]] = []

    def one(i: int) -> dict[str, Any]:
        sync(ctx.device)
        t0 = time.perf_counter()
        r = post_process(src, dict(settings), out=f"{outs}/run{i}{ext}", ctx=ctx)
        sync(ctx.device)
        wall = time.perf_counter() - t0
        meta = r.clip.meta
        return {"wall_s": round(wall, 4), "frames": int(r.clip.frames.shape[0]),
                "size": [int(r.clip.frames.shape[2]), int(r.clip.frames.shape[1])],
                "timings": dict(r.timings), "ledger_total_est_s": r.manifest["ledger"]["total_est_seconds"],
                "ledger_frames": r.manifest["output"]["frames"],
                "interpolated_frames": (meta.get("interpolate") or {}).get("interpolated_frames"),
                "interpolate_seconds": (meta.get("interpolate") or {}).get("seconds"),
                "stages": [s["label"] for s in r.manifest["stages"]], "notes": r.manifest["ledger"]["notes"],
                "output_bytes": Path(r.output).stat().st_size if Path(r.output).is_file() else None}

    t0 = time.perf_counter()
    one(0)
    warm_s = time.perf_counter() - t0
    for i in range(reps):
        runs.append(one(i + 1))
    best = min(runs, key=lambda r: r["wall_s"])
    if best["frames"] != best["ledger_frames"]:
        raise RuntimeError(f"{tag}: wrote {best['frames']} frames, the ledger said {best['ledger_frames']}")
    return {**best, "first_run_s": round(warm_s, 3), "all_wall_s": [r["wall_s"] for r in runs]}


def _stage_s(timings: dict[str, float], name: str) -> float | None:
    return next((v for k, v in timings.items() if k.split(":", 1)[-1] == name), None)


def case_rife(src: Path, work: Path, ctx, reps: int, frames_hint: int) -> dict[str, Any]:
    """(a) RIFE ×2 through post_process vs RifeInterpolator alone on the same frames."""
    from postfx.assemble import read_video
    from postfx.interpolate import auto_scale
    from postfx.rife.interpolator import RifeInterpolator

    app = post_runs(src, {"interpolate": 2, "codec": "h264", "preset": "ultrafast"}, work, "rife", ctx, reps)
    frames = read_video(src).frames
    h, w = frames.shape[1:3]
    rife = RifeInterpolator.from_weights(device=ctx.device, scale=auto_scale(w, h))
    jobs = [(i, 0.5) for i in range(len(frames) - 1)]
    best, times, _ = timed(lambda: rife.run(frames, jobs), reps, ctx.device)
    interp_s = _stage_s(app["timings"], "interpolate")
    new = app["interpolated_frames"] or len(jobs)
    out_frames = app["frames"]
    return {"case": "rife2_1080p", "input": f"{w}x{h}, {len(frames)} frames", "frames": out_frames,
            "wall_s": app["wall_s"], "app_fps": round(out_frames / app["wall_s"], 2),
            "new_frames_per_s": round(new / interp_s, 2) if interp_s else None,
            "model_fps": round(out_frames / best, 2), "model_new_frames_per_s": round(len(jobs) / best, 2),
            "model_s": best, "model_all_s": times,
            "app_over_model": round(best / app["wall_s"], 3),
            "interpolate_over_model": round(best / interp_s, 3) if interp_s else None, "app": app}


def case_chain(src: Path, work: Path, ctx, reps: int) -> dict[str, Any]:
    """(b) RIFE ×2 + animevideov3 ×2 + colour match, both orders, vs the models alone."""
    import numpy as np

    from postfx.assemble import read_video
    from postfx.interpolate import auto_scale
    from postfx.rife.interpolator import RifeInterpolator
    from postfx.upscale.runner import Upscaler, load_net

    base = {"interpolate": 2, "upscale": 2, "upscaler": "animevideov3", "color_match": True,
            "codec": "h264", "preset": "ultrafast"}
    orders = {}
    for order in ("interpolate-first", "upscale-carry"):
        orders[order] = post_runs(src, {**base, "order": order}, work, order, ctx, reps)
        log.info("wan_clip_chain %s: %.3f s", order, orders[order]["wall_s"])
    fastest = min(orders, key=lambda o: orders[o]["wall_s"])
    app = orders[fastest]
    frames = read_video(src).frames
    h, w = frames.shape[1:3]
    rife = RifeInterpolator.from_weights(device=ctx.device, scale=auto_scale(w, h))
    up = Upscaler(load_net("animevideov3", ctx.device))
    jobs = [(i, 0.5) for i in range(len(frames) - 1)]
    mids = rife.run(frames, jobs)
    allf = np.empty((2 * len(frames) - 1, h, w, 3), np.uint8)
    allf[0::2], allf[1::2] = frames, np.stack(mids)
    t_rife, rife_times, _ = timed(lambda: rife.run(frames, jobs), reps, ctx.device)
    t_up, up_times, big = timed(lambda: up.run(allf, 2), reps, ctx.device)
    color = color_seconds(allf, big, ctx.device, reps)
    check = same_as_cpu(allf, big, ctx.device)
    model_s = t_rife + t_up
    return {"case": "wan_clip_chain", "input": f"{w}x{h}, {len(frames)} frames",
            "frames": app["frames"], "size": app["size"], "order": fastest,
            "wall_s": app["wall_s"], "app_fps": round(app["frames"] / app["wall_s"], 2),
            "model_fps": round(app["frames"] / model_s, 2), "model_s": round(model_s, 4),
            "model_parts_s": {"rife": rife_times, "upscale_x2_no_color": up_times},
            "color_match_alone_s": color, "device_vs_cpu": check,
            "app_over_model": round(model_s / app["wall_s"], 3),
            "orders": orders}


def same_as_cpu(src, big, device: str, n: int = 8) -> dict[str, Any]:
    """The device maths against today's CPU path on these frames: colour match (max level difference)
    and scene-cut / static classification (equal or not)."""
    import numpy as np
    import torch

    from postfx.color import color_match
    from postfx.interpolate import Interpolate
    from postfx.tensor_ops import color_match_t
    s, b = src[:n], big[:n]
    dev = color_match_t(torch.from_numpy(s).to(device), torch.from_numpy(b).to(device)).cpu().numpy()
    diff = int(np.abs(dev.astype(np.int16) - color_match(s, b)).max())
    cut = np.concatenate([src[:4], 255 - src[:4]])       # a scene cut and a static pair, too
    cut[5] = cut[4]
    st = Interpolate(factor=2, model="dis")
    pos = st.positions(len(cut), 8.0)
    same = st.classify(cut, pos, device) == st.classify(cut, pos, "cpu")
    return {"color_match_max_level_diff": diff, "classify_equal": bool(same),
            "ok": diff <= 1 and bool(same)}


def color_seconds(src, big, device: str, reps: int) -> float:
    """Seconds of the colour match alone on these frames: on the device (torch) or the CPU (cv2)."""
    if device.startswith("cuda"):
        import torch

        from postfx.tensor_ops import color_match_t
        s, b = torch.from_numpy(src).to(device), torch.from_numpy(big).to(device)

        def run() -> None:
            for i in range(0, len(s), 16):
                color_match_t(s[i:i + 16], b[i:i + 16])
        return timed(run, reps, device)[0]
    from postfx.color import color_match
    return timed(lambda: color_match(src, big), 1, device)[0]


def case_jobs(src: Path, work: Path, ctx, n_jobs: int, want_frames: int, timeout_s: float) -> dict[str, Any]:
    """(c) post jobs through the Dispatcher and a JobStore on the local executor, one GPU slot."""
    from studio.jobs import JobStore
    from studio.jobs.dispatch import Dispatcher
    from studio.jobs.executors import LocalExecutor

    store = JobStore(work / "jobs.sqlite")
    ex = LocalExecutor([ctx.device], worker="bench", caches={ctx.device: ctx.cache})   # warm models
    disp = Dispatcher(store, ex)
    th = threading.Thread(target=disp.run, daemon=True)
    th.start()
    outs = work / "out-jobs"
    outs.mkdir()
    ext = ".mp4" if have_ffmpeg() else "/"
    settings = {"interpolate": 2, "codec": "h264", "preset": "ultrafast"}
    ids = [store.add("post", {"input": str(src), "settings": settings, "out": f"{outs}/job{i:02d}{ext}"}).id
           for i in range(n_jobs)]
    end = time.monotonic() + timeout_s
    done: dict[str, Any] = {}
    while len(done) < len(ids) and time.monotonic() < end:
        for j in ids:
            if j not in done and (job := store.get(j)).status in ("done", "failed", "cancelled"):
                if job.status != "done":
                    raise RuntimeError(f"job {j} {job.status}: {job.error}")
                done[j] = job
        time.sleep(0.02)
    disp.stop()
    th.join(30)
    ex.close()
    if not done:
        raise RuntimeError(f"no post job of {n_jobs} finished within {timeout_s:.0f} s")
    t_first = min(store.get(j).created for j in ids)
    wall = max(j.finished for j in done.values()) - t_first
    per = [{"wall_s": round(j.finished - j.started, 3), "timings": j.result.get("timings")}
           for j in sorted(done.values(), key=lambda j: j.finished)]
    return {"case": "ray_post", "executor": "local (Dispatcher + JobStore + LocalExecutor, one GPU slot); "
            "not Ray", "jobs": n_jobs, "jobs_done": len(done), "wall_s": round(wall, 3),
            "jobs_per_hour": round(len(done) / wall * 3600, 1),
            "app_fps": round(len(done) * want_frames / wall, 2), "model_fps": None, "per_job": per}


def refit(rows: dict[str, dict[str, Any]], device_name: str) -> dict[str, Any]:
    """A calibration table (postfx.calibration's keys) refitted from this run's rows."""
    from postfx.calibration import table
    cal = {k: v for k, v in table().items()}
    cal = json.loads(json.dumps(cal))
    fitted = []
    a = rows.get("rife2_1080p")
    if a and a.get("new_frames_per_s"):
        w, h = (int(x) for x in a["input"].split(",")[0].split("x"))
        cal["rife_cuda_s_per_mp"] = round(1.0 / (a["new_frames_per_s"] * w * h / 1e6), 6)
        fitted.append("rife_cuda_s_per_mp (rife2_1080p's interpolate stage)")
    b = rows.get("wan_clip_chain")
    if b:
        first, carry = b["orders"]["interpolate-first"], b["orders"]["upscale-carry"]
        w, h = (int(x) for x in b["input"].split(",")[0].split("x"))
        up_s = _stage_s(first["timings"], "upscale")
        big_mp = b["size"][0] * b["size"][1] / 1e6
        color = b["color_match_alone_s"]
        cal["color_cuda_s_per_mp"] = round(color / (first["frames"] * big_mp), 6)
        if up_s and up_s > color:
            cal["upscale_cuda_px_per_s"]["compact"] = float(f"{first['frames'] * w * h / (up_s - color):.3g}")
            cal["upscale_cuda_overhead_s"] = 0.1
        secs = carry.get("interpolate_seconds") or {}
        if secs.get("carry") and carry.get("interpolated_frames"):
            cal["carry_cuda_s_per_mp"] = round(secs["carry"] / (carry["interpolated_frames"] * big_mp), 6)
        fast = b["order"]
        slow = "upscale-carry" if fast == "interpolate-first" else "interpolate-first"
        ta, tb = b["orders"][fast]["wall_s"], b["orders"][slow]["wall_s"]
        cal["order_cuda"] = {
            "order": fast, "measured": {o: b["orders"][o]["wall_s"] for o in b["orders"]},
            "reason": (f"measured faster on {device_name} ({time.strftime('%Y-%m-%d')}) at a Wan clip's "
                       f"shape, {b['input']}, RIFE x2 + animevideov3 x2 + colour match through "
                       f"post_process, warm: {fast} {ta:.2f} s vs {slow} {tb:.2f} s")}
        fitted += ["color_cuda_s_per_mp", "upscale_cuda_px_per_s.compact", "carry_cuda_s_per_mp",
                   "order_cuda"]
    cal.update(kind="studio-post-calibration", device=device_name, fitted=fitted,
               note="refit by bench/bench_post_app.py; copy to bench/results/post_calibration.json")
    return cal


def main(argv: list[str] | None = None) -> int:
    """Parse flags, make the inputs, run the cases, write the JSON after each."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (a CPU check that it all runs)")
    ap.add_argument("--reps", type=int, default=2, help="timed warm runs per measurement (best kept)")
    ap.add_argument("--jobs", type=int, default=None, help="post jobs in ray_post (default 6, quick 2)")
    ap.add_argument("--cases", default="a,b,c", help="which of a (rife2_1080p), b (wan_clip_chain), c")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--calibration-out", type=Path, default=None)
    ap.add_argument("--deadline-s", type=float, default=None,
                    help="skip cases that start later than this many seconds after the start")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    import torch

    from studio.context import ModelCache, RunContext

    t_start = time.perf_counter()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error("--device cuda but no CUDA GPU is visible (use --quick --device cpu)")
    sizes = QUICK if args.quick else FULL
    cuda = args.device.startswith("cuda")
    device_name = (f"{torch.cuda.get_device_name(0)} "
                   f"({torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB)" if cuda
                   else f"CPU {platform.processor() or platform.machine()} ({os.cpu_count()} cores)")
    doc: dict[str, Any] = {"device": device_name, "rows": [], "bench": "post chain through the app vs the "
                           "models alone (issue #19)", "quick": args.quick, "reps": args.reps,
                           "torch": torch.__version__, "python": platform.python_version(),
                           "ffmpeg": have_ffmpeg(), "definitions": {
                               "wall_s": "one warm post_process call (decode, stages, encode, manifest)",
                               "app_fps": "output frames / wall_s",
                               "model_fps": "output frames / seconds of the models alone on the same "
                                            "decoded frames (uint8 host in and out)",
                               "new_frames_per_s": "interpolated frames / the interpolate stage's seconds",
                               "app_over_model": "model seconds / app wall seconds (target >= 0.6)"}}
    targets = {"rife2_1080p": "new_frames_per_s >= 300, wall_s <= 1.5, app_over_model >= 0.6",
               "wan_clip_chain": "app_fps >= 150, app_over_model >= 0.6", "ray_post": "jobs_per_hour >= 600"}
    rows: dict[str, dict[str, Any]] = {}

    def write() -> None:
        doc["rows"] = [{k: v for k, v in r.items()} | {"target": targets[r["case"]]} for r in rows.values()]
        doc["bench_wall_s"] = round(time.perf_counter() - t_start, 1)
        doc["peak_host_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        if cuda:
            doc["peak_vram_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=2) + "\n")
        if args.calibration_out:
            args.calibration_out.write_text(json.dumps(refit(rows, device_name), indent=2) + "\n")

    def left() -> float:
        return (args.deadline_s or 1e9) - (time.perf_counter() - t_start)

    ctx = RunContext(device=args.device, cache=ModelCache())
    cases = set(args.cases.split(","))
    with tempfile.TemporaryDirectory(prefix="bench-post-app-") as tmp:
        work = Path(tmp)
        os.environ["STUDIO_OUTPUTS_DIR"] = str(work)
        wa, ha, na, fa = sizes["a"]
        src_a = make_input(work, "in_a", wa, ha, na, fa) if cases & {"a", "c"} else None
        for key, name, run in (
                ("a", "rife2_1080p", lambda: case_rife(src_a, work, ctx, args.reps, na)),
                ("b", "wan_clip_chain", lambda: case_chain(make_input(work, "in_b", *sizes["b"]), work, ctx,
                                                           args.reps)),
                ("c", "ray_post", lambda: case_jobs(src_a, work, ctx, args.jobs or sizes["jobs"], 2 * na - 1,
                                                    timeout_s=max(10.0, min(150.0, left() - 5))))):
            if key not in cases:
                continue
            if left() < 15:
                rows[name] = {"case": name, "error": f"skipped: {left():.0f} s left of --deadline-s"}
                write()
                continue
            try:
                rows[name] = run()
            except Exception as e:  # noqa: BLE001 - record it, go on with the next case
                log.exception("%s failed", name)
                rows[name] = {"case": name, "error": f"{type(e).__name__}: {e}"[:400]}
            log.info("%s: %s", name, {k: v for k, v in rows[name].items() if not isinstance(v, dict | list)})
            write()
    write()
    print(json.dumps({"device": device_name, "rows": [
        {k: r.get(k) for k in ("case", "wall_s", "app_fps", "new_frames_per_s", "model_fps", "app_over_model",
                               "jobs_per_hour", "order", "error") if r.get(k) is not None}
        for r in doc["rows"]]}, indent=1))
    return 0 if all("error" not in r for r in rows.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
