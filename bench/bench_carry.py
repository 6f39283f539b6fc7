"""Flow carry vs interpolate-then-upscale on the real photos: how far the output moves, what it saves.

For every photo in tests/data and two camera moves, the camera engine makes a base clip; then
RIFE ×2 + Real-ESRGAN ×2 run both ways on it: interpolate-then-upscale (every frame upscaled) and
upscale-carry (the source frames upscaled, in-between frames warped from them by RIFE's flow and
mask carried up).  Source frames come out identical; the JSON has the PSNR of the in-between
frames of one against the other, and both ways' seconds (run interleaved).

    python bench/bench_carry.py --out bench/results/carry_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import psnr  # noqa: E402

PHOTOS = ("astronaut.jpg", "chelsea.jpg", "coffee.jpg", "motorcycle_left.jpg", "rocket.jpg")
MOVES = ("camera slowly zooming in", "pan right")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "bench/results/carry_cpu.json"))
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--frames", type=int, default=5)
    ap.add_argument("--upscaler", default="animevideov3")
    args = ap.parse_args()

    import torch

    from postfx.interpolate import Interpolate, InterpolateUpscaled
    from postfx.upscale import Upscale
    from studio.context import RunContext
    from studio.engines import get_engine
    from studio.images import load_image
    from studio.request import GenerationRequest
    from studio.stages import run_chain

    ctx = RunContext(device="cpu")
    interp = Interpolate(factor=2).resolved()
    up = Upscale(scale=2, model=args.upscaler).resolved("cpu")
    ways = {"interpolate-first": [interp, up], "upscale-carry": [InterpolateUpscaled(interp, up)]}
    rows, secs = [], {k: 0.0 for k in ways}
    new_px = 0
    for name in PHOTOS:
        for move in MOVES:
            req = GenerationRequest(image=str(ROOT / "tests/data" / name), prompt=move, frames=args.frames,
                                    fps=8, width=args.size, height=args.size)
            base = get_engine("camera").generate(load_image(req.image), req, ctx)
            if not rows:   # warm both ways once (model loads, graph build)
                for stages in ways.values():
                    run_chain(base, stages, ctx)
            out = {}
            for way, stages in ways.items():
                t0 = time.perf_counter()
                out[way] = run_chain(base, stages, ctx).frames
                secs[way] += time.perf_counter() - t0
            a, b = out["interpolate-first"], out["upscale-carry"]
            assert a.shape == b.shape and np.array_equal(a[::2], b[::2])
            per = [psnr(x, y) for x, y in zip(a[1::2], b[1::2], strict=True)]
            # context: how far the in-between frame is from simply holding its left neighbour
            hold = [psnr(a[2 * i], a[2 * i + 1]) for i in range(len(per))]
            rows.append({"photo": name, "move": move,
                         "psnr_db_new_frames_mean": round(float(np.mean(per)), 2),
                         "psnr_db_new_frames_min": round(float(min(per)), 2),
                         "psnr_db_hold_previous_frame_mean": round(float(np.mean(hold)), 2)})
            new_px += len(per) * a.shape[1] * a.shape[2]
            print(rows[-1], flush=True)
    result = {
        "bench": "carry_cpu", "device": "cpu", "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "load_average_1_5_15": os.getloadavg(), "base": f"{args.frames} frames {args.size}² (camera engine)",
        "chain": f"RIFE 4.25 ×2 + Real-ESRGAN {args.upscaler} ×2 ({up.backend})",
        "method": __doc__.split("\n\n")[1].replace("\n", " "),
        "psnr_db_new_frames_mean_all": round(float(np.mean([r["psnr_db_new_frames_mean"] for r in rows])), 2),
        "psnr_db_new_frames_min_all": round(float(min(r["psnr_db_new_frames_min"] for r in rows)), 2),
        "seconds_total": {k: round(v, 2) for k, v in secs.items()},
        "carry_speedup": round(secs["interpolate-first"] / secs["upscale-carry"], 3),
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=2))


if __name__ == "__main__":
    main()
