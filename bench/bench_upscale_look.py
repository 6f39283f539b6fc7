"""How each upscaler looks on real photos, and what it costs here: the numbers behind `upscaler=auto`.

No ground truth exists for an upscale of a photo, so three no-reference checks, on a centre crop of
every photo in tests/data (the stage as the app runs it, ×2, colour match on):
- round trip: the output area-downscaled back to the input size, PSNR against the input (does it
  keep what was there: shapes, colours, positions);
- edge energy: RMS of the output's finest detail band (luma minus a Gaussian blur, sigma 1 px)
  over the strongest 10% of edges (by the Lanczos output's gradient), relative to Lanczos
  (> 1 = sharper edges);
- texture energy: the same over pixels of moderate gradient (40th-90th percentile: grain, fur,
  fabric, foliage), and fine-texture energy over low gradient (10th-40th: crema, skin, sky
  noise), relative to Lanczos.  An upscaler that "paints" sharpens edges while flattening these
  bands: edge ratio above 1, texture ratios well below 1.
Cost: input pixels per second of the stage (wall and CPU seconds), for each model and backend,
interleaved per photo; on a shared machine the wall times move with the load (recorded).

    python bench/bench_upscale_look.py --out bench/results/upscale_look_cpu.json
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

PHOTOS = ("astronaut.jpg", "chelsea.jpg", "coffee.jpg", "motorcycle_left.jpg", "rocket.jpg")
CONFIGS = (("lanczos", "auto"), ("animevideov3", "ncnn"), ("animevideov3", "torch"),
           ("x4plus-anime", "ncnn"), ("x4plus", "ncnn"))


def crop(name: str, size: int) -> np.ndarray:
    """A size×size centre crop of a test photo, RGB uint8."""
    img = cv2.cvtColor(cv2.imread(str(ROOT / "tests/data" / name)), cv2.COLOR_BGR2RGB)
    h, w = img.shape[:2]
    y, x = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(img[y:y + size, x:x + size])


def luma(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)


def masks(reference: np.ndarray) -> dict[str, np.ndarray]:
    """Edge, texture and fine-texture masks from the Lanczos output's gradient percentiles."""
    y = luma(reference)
    g = np.hypot(cv2.Sobel(y, cv2.CV_32F, 1, 0), cv2.Sobel(y, cv2.CV_32F, 0, 1))
    p10, p40, p90 = np.percentile(g, [10, 40, 90])
    return {"edge": g >= p90, "texture": (g >= p40) & (g < p90), "fine_texture": (g >= p10) & (g < p40)}


def band_rms(img: np.ndarray, mask: np.ndarray) -> float:
    y = luma(img)
    detail = y - cv2.GaussianBlur(y, (0, 0), 1.0)
    return float(np.sqrt(np.mean(detail[mask] ** 2)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "bench/results/upscale_look_cpu.json"))
    ap.add_argument("--size", type=int, default=160, help="crop side in px (x4plus on a CPU is slow)")
    args = ap.parse_args()

    import torch

    from postfx.upscale import Upscale
    from studio.clip import Clip
    from studio.context import RunContext

    ctx = RunContext(device="cpu")
    rows: dict[str, dict] = {}
    for model, backend in CONFIGS:   # warm: load weights, build graphs
        Upscale(scale=2, model=model, backend=backend).apply(Clip(crop(PHOTOS[0], 32)[None], 8.0), ctx)
    outs: dict[str, dict[str, np.ndarray]] = {}
    for name in PHOTOS:
        src = crop(name, args.size)
        for model, backend in CONFIGS:   # interleaved per photo, so load drifts hit all alike
            key = model if model == "lanczos" else f"{model} ({backend})"
            t0, c0 = time.perf_counter(), time.process_time()
            out = Upscale(scale=2, model=model, backend=backend).apply(Clip(src[None], 8.0), ctx).frames[0]
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            outs.setdefault(key, {})[name] = out
            r = rows.setdefault(key, {"seconds": 0.0, "cpu_seconds": 0.0, "per_photo": {}})
            r["seconds"] += dt
            r["cpu_seconds"] += dc
    for key, r in rows.items():
        r["input_px_per_second"] = round(len(PHOTOS) * args.size ** 2 / r.pop("seconds"), 1)
        r["seconds_per_512_frame"] = round(512 * 512 / r["input_px_per_second"], 2)
        # CPU seconds (all threads) hold up better than wall time on a shared machine
        per_px = r.pop("cpu_seconds") / (len(PHOTOS) * args.size ** 2)
        r["cpu_seconds_per_512_frame"] = round(per_px * 512 * 512, 2)
        for name in PHOTOS:
            out, ref, src = outs[key][name], outs["lanczos"][name], crop(name, args.size)
            back = cv2.resize(out, (args.size, args.size), interpolation=cv2.INTER_AREA)
            r["per_photo"][name] = {"round_trip_psnr_db": round(psnr(back, src), 2)}
            for band, m in masks(ref).items():
                ratio = band_rms(out, m) / band_rms(ref, m)
                r["per_photo"][name][f"{band}_energy_vs_lanczos"] = round(ratio, 3)
        for m in r["per_photo"][PHOTOS[0]]:
            r[f"mean_{m}"] = round(float(np.mean([p[m] for p in r["per_photo"].values()])), 3)
    result = {"bench": "upscale_look_cpu", "device": "cpu",
              "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
              "torch_threads": torch.get_num_threads(), "load_average_1_5_15": os.getloadavg(),
              "photos": list(PHOTOS), "crop_px": args.size, "scale": 2, "color_match": True,
              "method": __doc__.split("\n\n")[1], "results": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    summary = {k: {m: v for m, v in r.items() if m != "per_photo"} for k, r in rows.items()}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
