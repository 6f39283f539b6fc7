"""Estimates against wall time on this machine: cold (no history) and after a few runs.

In a fresh outputs folder (so the history starts empty), one after another in one process:
- the Generate page's default: camera engine, 16 frames 512², no post-processing;
- with --chain, the same with RIFE ×2 and upscale ×2 (upscaler=auto: animevideov3 on the CPU);
- a 3-clip sequence of the latest default clips (crossfades, 1280×720, 24 fps, H.264).
Each kind runs `--runs` times; before each run the ledger (or the sequence plan) is drawn as the page
does and its estimate recorded beside the run's wall time.  Run 1 is "cold" (the formulas alone, model
loads included in the real time); later runs use what the earlier ones taught.

    python bench/bench_estimates.py --out bench/results/estimates_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--chain", action="store_true", help="also RIFE x2 + upscale x2 (slow on 2 cores)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "estimates_cpu.json")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-estimates-"))
    os.environ["STUDIO_OUTPUTS_DIR"] = str(tmp)
    from studio.estimates import sequence_estimate
    from studio.pipeline import generate, make_ledger
    from studio.request import GenerationRequest
    from studio.sequence import render_sequence
    from studio.sequence.plan import plan_sequence
    from studio.sequence.spec import load_spec

    photo = str(ROOT / "tests" / "data" / "astronaut.jpg")
    kinds = {"default generate": GenerationRequest(image=photo, prompt="camera slowly zooming in")}
    if args.chain:
        kinds["default chain (RIFE x2, upscale x2)"] = GenerationRequest(
            image=photo, prompt="pan right, clouds drifting", interpolate=2, upscale=2)
    results: dict[str, list[dict[str, float]]] = {k: [] for k in [*kinds, "3-clip sequence"]}
    clips: list[str] = []
    load0 = os.getloadavg()
    for i in range(args.runs):
        for name, req in kinds.items():
            est = make_ledger(req).total_seconds
            t0 = time.perf_counter()
            res = generate(req)
            real = time.perf_counter() - t0
            results[name].append({"run": i + 1, "estimate_s": round(est, 2), "real_s": round(real, 2),
                                  "ratio": round(est / real, 3)})
            print(name, results[name][-1], flush=True)
            if name == "default generate":
                clips.append(str(res.output))
        spec = {"version": 1, "output": {"size": [1280, 720], "fps": 24, "codec": "h264"},
                "clips": [{"path": c, "transition": {"type": "crossfade", "duration": 0.5}}
                          for c in clips[-3:]] * (3 // len(clips[-3:]))}
        spec["clips"] = [dict(c) for c in spec["clips"][:3]]
        spec["clips"][-1]["transition"] = {"type": "cut", "duration": 0.0}
        loaded = load_spec(spec)
        out = tmp / f"seq-{i}.mp4"
        plan = plan_sequence(loaded, out)
        est = sequence_estimate(plan.frames, plan.width, plan.height, plan.codec)[0]
        t0 = time.perf_counter()
        render_sequence(loaded, out)
        real = time.perf_counter() - t0
        results["3-clip sequence"].append({"run": i + 1, "estimate_s": round(est, 2),
                                           "real_s": round(real, 2), "ratio": round(est / real, 3)})
        print("3-clip sequence", results["3-clip sequence"][-1], flush=True)
    summary = {k: {"cold_ratio": v[0]["ratio"],
                   "warm_ratios": [r["ratio"] for r in v[1:]],
                   "warm_within_30pct": all(0.7 <= r["ratio"] <= 1.3 for r in v[1:])}
               for k, v in results.items()}
    doc = {"what": "ledger/plan estimate vs wall time, cold (run 1) and after earlier runs",
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                       "loadavg_start": [round(x, 2) for x in load0],
                       "loadavg_end": [round(x, 2) for x in os.getloadavg()]},
           "runs": results, "summary": summary}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
