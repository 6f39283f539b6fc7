"""The Upscale stage on ncnn's Vulkan backend: same output as torch, tiling, cancel, and its speed.

Run where a Vulkan GPU is (backend forced to ncnn-vulkan, even beside CUDA):
- PSNR of the stage's output on Vulkan (float32, the stage's default) against torch float32 on
  the CPU, on 512² frames of a real photo, ×2 with colour match; the same for ncnn's GPU default
  (fp16 storage and arithmetic);
- 128 px tiles against untiled on Vulkan; a cancel set after the first tile stops the next;
- seconds per 512² frame on Vulkan (and torch CUDA where there is one), after a warm-up.

    python bench/bench_upscale_vulkan.py --out bench/results/upscale_vulkan.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import psnr  # noqa: E402


def frames(n: int, size: int = 512) -> np.ndarray:
    """n frames: a real photo, resized to 1.25×size, panned 6 px a frame."""
    img = cv2.cvtColor(cv2.imread(str(ROOT / "tests/data/astronaut.jpg")), cv2.COLOR_BGR2RGB)
    big = cv2.resize(img, (size * 5 // 4, size * 5 // 4), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(np.stack([big[20:20 + size, 6 * i:6 * i + size] for i in range(n)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "bench/results/upscale_vulkan.json"))
    ap.add_argument("--frames", type=int, default=16)
    args = ap.parse_args()

    import torch

    from postfx.upscale import Upscale
    from postfx.upscale.ncnn_backend import vulkan_gpu
    from studio.clip import Clip
    from studio.context import Cancelled, ModelCache, RunContext

    gpu = vulkan_gpu()
    result: dict = {"bench": "upscale_vulkan", "vulkan_gpu": gpu and gpu[1], "host": platform.node(),
                    "cpu_cores": os.cpu_count(), "torch": torch.__version__}
    if gpu is None:
        result["error"] = "no hardware Vulkan GPU found"
    else:
        src = frames(args.frames)
        ctx = RunContext(device="cpu", cache=ModelCache())
        vk = Upscale(scale=2, model="animevideov3", backend="ncnn-vulkan")
        ref = Upscale(scale=2, model="animevideov3", backend="torch").apply(Clip(src[:2], 8.0), ctx).frames
        got = vk.apply(Clip(src[:2], 8.0), ctx)
        result["backend_label"] = got.meta["upscale"]["backend"]
        result["ledger_label"] = vk.describe()
        result["psnr_db_vulkan_vs_torch_cpu_fp32"] = round(psnr(got.frames, ref), 2)
        tiled = Upscale(scale=2, model="animevideov3", backend="ncnn-vulkan", tile=128)
        t_out = tiled.apply(Clip(src[:2], 8.0), ctx).frames
        d = np.abs(t_out.astype(int) - got.frames.astype(int))
        worst = np.unravel_index(int(d.argmax()), d.shape)
        result["tiled_128_vs_untiled"] = {
            "max_abs": int(d.max()), "mean_abs": round(float(d.mean()), 4),
            "pixels_over_8": int((d > 8).sum()), "worst_at_tyxc": [int(v) for v in worst],
            "psnr_db": round(psnr(t_out, got.frames), 2)}
        # the same with ncnn's GPU default, fp16 storage and arithmetic (the stage runs float32)
        from postfx.upscale.ncnn_backend import NcnnForward
        outs16, secs16 = [], 0.0
        for st in (vk, tiled):
            c16 = RunContext(device="cpu", cache=ModelCache())
            st.apply(Clip(src[:1], 8.0), c16)
            r16 = next(v for k, v in c16.cache._items.items() if k[-1] == "ncnn-vulkan")
            r16.forward_x2 = NcnnForward(r16.loaded.net.state_dict(), r16.loaded.info, gpu=gpu[0], pool2=True,
                                         gpu_fp16=True)
            st.apply(Clip(src[:1], 8.0), c16)
            t0 = time.perf_counter()
            outs16.append(st.apply(Clip(src[:2], 8.0), c16).frames)
            secs16 += (time.perf_counter() - t0) / 2 if st is vk else 0.0
        d16 = np.abs(outs16[0].astype(int) - outs16[1].astype(int))
        result["gpu_fp16"] = {"psnr_db_vs_torch_cpu_fp32": round(psnr(outs16[0], ref), 2),
                              "tiled_128_vs_untiled_max_abs": int(d16.max()),
                              "tiled_128_vs_untiled_mean_abs": round(float(d16.mean()), 4),
                              "tiled_128_vs_untiled_values_over_8": int((d16 > 8).sum()),
                              "seconds_per_512_frame": round(secs16, 4)}
        cctx = RunContext(device="cpu", cache=ctx.cache)
        steps = []

        def progress(stage, i, n):
            steps.append((i, n))
            if i >= 1:
                cctx.cancel.set()

        cctx.progress = progress
        runner = next(v for k, v in ctx.cache._items.items() if k[-1] == "ncnn-vulkan" and k[-2] == 128)
        before = runner.forward_x2.calls
        try:
            tiled.apply(Clip(src[:1], 8.0), cctx)
            result["cancel_between_tiles"] = "not cancelled"
        except Cancelled:
            result["cancel_between_tiles"] = {"tiles_run": runner.forward_x2.calls - before, "steps": steps}
        t0 = time.perf_counter()
        vk.apply(Clip(src, 8.0), ctx)
        result["vulkan_seconds_per_512_frame"] = round((time.perf_counter() - t0) / len(src), 4)
        if torch.cuda.is_available():
            cu = Upscale(scale=2, model="animevideov3", backend="torch")
            cctx2 = RunContext(device="cuda", cache=ModelCache())
            cu.apply(Clip(src, 8.0), cctx2)   # warm at the timed batch shape (torch.compile)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            cu.apply(Clip(src, 8.0), cctx2)
            result["torch_cuda_seconds_per_512_frame"] = round((time.perf_counter() - t0) / len(src), 4)
            result["cuda_gpu"] = torch.cuda.get_device_name(0)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
