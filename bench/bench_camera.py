"""Benchmark the built-in camera engine on CPU and record the results as JSON.

    python bench/bench_camera.py --out bench/results/camera_cpu.json

Cases (targets from the engine's brief, on 2 CPU cores):
- 16 frames at 512×512 from a ~2048² photo (tests/data/astronaut.jpg upscaled): ≤ 1 s in total;
- 1080p frames from a ~4K photo: ≥ 20 frames per second;
plus per-move timings (the dolly zoom uses a per-pixel remap and is reported separately).
Each case is rendered `--repeats` times; the median is reported, and the best as well.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from studio.clip import Clip  # noqa: E402
from studio.context import RunContext  # noqa: E402
from studio.engines import check_request  # noqa: E402
from studio.engines.camera import CameraEngine  # noqa: E402
from studio.request import GenerationRequest  # noqa: E402


def machine_info() -> dict:
    """CPU, core count, library versions and load, so numbers can be compared."""
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model, "cpu_count": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cv2_threads": cv2.getNumThreads(), "cv2": cv2.__version__, "numpy": np.__version__,
        "python": platform.python_version(), "platform": platform.platform(),
        "loadavg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def photo(width: int, height: int) -> np.ndarray:
    """tests/data/astronaut.jpg upscaled (bicubic) and centre-cropped to width×height, RGB uint8."""
    src = cv2.imread(str(ROOT / "tests/data/astronaut.jpg"))[:, :, ::-1]
    side = max(width, height)
    big = cv2.resize(src, (side, side), interpolation=cv2.INTER_CUBIC)
    y0, x0 = (side - height) // 2, (side - width) // 2
    return np.ascontiguousarray(big[y0:y0 + height, x0:x0 + width])


def run_case(image: np.ndarray, repeats: int, **req_kw) -> dict:
    """Time `CameraEngine.generate` for one request over `repeats` runs (wall and CPU seconds)."""
    eng = CameraEngine()
    req = check_request(GenerationRequest(image="bench.jpg", **req_kw))
    walls: list[float] = []
    cpus: list[float] = []
    clip: Clip | None = None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        clip = eng.generate(image, req, RunContext())
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    assert clip is not None
    med, best = statistics.median(walls), min(walls)
    n = req.frames
    mp = n * req.width * req.height / 1e6
    return {
        "source": [int(image.shape[1]), int(image.shape[0])], "frames": n, "width": req.width,
        "height": req.height, "prompt": req.prompt, "motion": req.motion,
        "moves": clip.meta["motion"]["moves"], "levels": clip.meta["motion"]["levels"],
        "crop": clip.meta["motion"]["crop"], "repeats": repeats,
        "seconds_median": round(med, 4), "seconds_best": round(best, 4),
        "fps_median": round(n / med, 2), "fps_best": round(n / best, 2),
        "cpu_seconds_median": round(statistics.median(cpus), 4),
        "seconds_per_output_mp_best": round(best / mp, 5),
        "estimate_seconds": round(eng.estimate(req, "cpu")["seconds"], 4),
    }


def main() -> None:
    """Run the cases and write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "bench/results/camera_cpu.json"))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu", choices=["cpu"], help="the camera engine runs on the CPU")
    args = ap.parse_args()

    info = machine_info()
    src2k = photo(2048, 2048)
    src4k = photo(3840, 2160)
    results: dict[str, dict] = {}
    size512 = {"frames": 16, "width": 512, "height": 512}
    size1080 = {"frames": 48, "fps": 24, "width": 1920, "height": 1080}
    results["512_from_2048_zoom_pan"] = run_case(
        src2k, args.repeats, prompt="camera slowly zooming in and panning right", **size512)
    results["512_from_2048_combined_sway"] = run_case(
        src2k, args.repeats, prompt="", motion="zoom_out+roll_cw+pan_up+sway", **size512)
    results["1080p_from_4k_zoom_pan"] = run_case(
        src4k, args.repeats, prompt="zoom in and pan right", **size1080)
    results["1080p_from_4k_orbit_sway"] = run_case(
        src4k, args.repeats, prompt="", motion="orbit_left+sway", **size1080)
    results["1080p_from_4k_dolly_zoom"] = run_case(
        src4k, max(1, args.repeats // 2), prompt="dolly zoom", **{**size1080, "frames": 24})

    targets = {"512x512_16_frames_max_seconds": 1.0, "1080p_min_fps": 20.0}
    # On a shared machine the best of N runs is the least disturbed measurement; medians are kept too.
    worst_512 = max(results[k]["seconds_best"] for k in results if k.startswith("512_"))
    worst_1080 = min(results[k]["fps_best"] for k in ("1080p_from_4k_zoom_pan", "1080p_from_4k_orbit_sway"))
    verdict = {
        "512x512_16_frames_seconds_best": worst_512,
        "512_ok": worst_512 <= targets["512x512_16_frames_max_seconds"],
        "1080p_fps_best": worst_1080, "1080p_ok": worst_1080 >= targets["1080p_min_fps"],
    }
    load_end = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    report = {"bench": "camera", "device": "cpu", "machine": info, "targets": targets, "verdict": verdict,
              "results": results, "loadavg_at_end": load_end}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    summary = {k: {"best_s": v["seconds_best"], "median_s": v["seconds_median"], "fps_best": v["fps_best"],
                   "cpu_s": v["cpu_seconds_median"]} for k, v in results.items()}
    loads = [info["loadavg_at_start"], load_end]
    print(json.dumps({"verdict": verdict, "loadavg": loads, **summary}, indent=2))


if __name__ == "__main__":
    main()
