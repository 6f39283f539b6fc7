"""LTX-2 and HunyuanVideo 1.5 I2V: stock diffusers against the studio engine, in the same run, each
with its peak VRAM (random full-size weights: cost does not depend on their values).

Full size (a CUDA GPU; prepared, not yet run): every component is built from the shipped configs
(`studio/configs/ltx2/`, `studio/configs/hunyuanvideo1.5-i2v/`) with random bf16 weights, directly on
the GPU for the uncapped runs and on the CPU for the capped ones (the offload profiles stream from
there).  Tokenizers are a word-level stand-in (no download; the token ids fall inside every vocabulary).
- LTX-2 at 768×512, 121 frames, 30 steps (CFG 3 + STG + modality: 4 passes a step).
- HunyuanVideo 1.5 I2V at 848×480 (a 16:9 image), 121 frames, 50 steps, CFG 6.
- Each again under a 24 GiB per-process cap (`--cap-gb`) with the profile that `auto` picks there.
Rows: stock `pipe(...)`, ours `engine.run(...)` (the same pipeline object after `engine.prepare`),
seconds, peak allocated GiB, seconds per step.  `--steps N` runs N steps and extrapolates to the full
count from the per-step time (steps after the first) plus what is not a step (encoders, decode).

    python bench/bench_new_engines.py --out bench/results/new_engines_h200.json [--steps 3]
    python bench/bench_new_engines.py --tiny     # CPU, tiny random models: proves the script runs
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
log = logging.getLogger("bench_new_engines")
GIB = 1 << 30
FULL = {
    "ltx2": dict(width=768, height=512, frames=121, steps=30, guidance=3.0, fps=24.0),
    "hunyuanvideo1.5-i2v": dict(width=848, height=480, frames=121, steps=50, guidance=6.0, fps=24.0),
}
TINY = {
    "ltx2": dict(width=32, height=32, frames=9, steps=2, guidance=3.0, fps=24.0),
    "hunyuanvideo1.5-i2v": dict(width=32, height=32, frames=9, steps=2, guidance=6.0, fps=24.0),
}


def build_full(eid: str, device: str, dtype: Any) -> Any:
    """The engine's pipeline with random weights from the shipped configs, built on `device`."""
    import diffusers
    import tiny_models as tm
    import torch

    from studio.engines import get_engine, loading

    eng = get_engine(eid)
    comps: dict[str, Any] = {}
    for name, (lib, cls_name) in loading._component_classes(eid).items():
        if lib is None or cls_name is None:
            comps[name] = None
        elif name in loading.CONFIG_ONLY:
            comps[name] = loading._lib_class(cls_name).from_pretrained(
                str(loading.configs_dir(eid)), subfolder=name
            )
        elif name.startswith("tokenizer"):
            if cls_name == "ByT5Tokenizer":
                from transformers import ByT5Tokenizer

                comps[name] = ByT5Tokenizer()
            else:
                tok = tm.t5_tokenizer()
                tok.chat_template = "{% for m in messages %}{{ m['content'] }} {% endfor %}"
                comps[name] = tok
        else:
            with torch.device(device):
                m = loading.empty_model(eid, name, cls_name).to_empty(device=device)
            for p in m.parameters():
                torch.nn.init.normal_(p.data, std=0.02)
            comps[name] = m.to(dtype).eval()
    cls = getattr(diffusers, eng.pipeline_class)
    import inspect

    ok = set(inspect.signature(cls.__init__).parameters)
    return cls(**{k: v for k, v in comps.items() if k in ok})


def build_tiny(eid: str) -> Any:
    """The tests' tiny random pipeline."""
    import tiny_av_models as ta

    return ta.tiny_ltx2() if eid == "ltx2" else ta.tiny_hunyuan15()


def request(eid: str, shape: dict[str, Any], steps: int, image_path: str) -> Any:
    """A studio request for this shape (memory_mode filled in by the caller)."""
    from studio.engines import get_engine
    from studio.request import GenerationRequest

    eng = get_engine(eid)
    req = GenerationRequest(
        image=image_path,
        prompt="a cat walks along the beach, waves",
        engine=eid,
        frames=shape["frames"],
        width=shape["width"],
        height=shape["height"],
        fps=shape["fps"],
        steps=steps,
        guidance=shape["guidance"],
        seed=0,
    )
    req.extra = {k: p.default for k, p in eng.extra_spec().items()}
    return req


class StepClock:
    """Wall-clock at each scheduler step of the video scheduler (both pipelines call it once a step)."""

    def __init__(self, pipe: Any) -> None:
        self.pipe, self.times = pipe, []

    def __enter__(self) -> StepClock:
        import types

        sched, times = self.pipe.scheduler, self.times

        def step(s: Any, *a: Any, **k: Any) -> Any:
            out = type(s).step(s, *a, **k)
            if s is sched:  # LTX-2 deep-copies the scheduler for its audio: that copy is not timed
                _sync()
                times.append(time.perf_counter())
            return out

        sched.step = types.MethodType(step, sched)  # a bound method: a deepcopy rebinds it to the copy
        self._sched = sched
        return self

    def __exit__(self, *exc: Any) -> None:
        self._sched.__dict__.pop("step", None)


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn: Any, pipe: Any, steps: int, full_steps: int) -> dict[str, Any]:
    """Run `fn()`; seconds, peak GiB, per-step seconds and the full-step extrapolation."""
    import torch

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    with StepClock(pipe) as clock:
        t0 = time.perf_counter()
        fn()
        _sync()
        total = time.perf_counter() - t0
    ts = [t0] + clock.times[:steps]
    per = [b - a for a, b in zip(ts, ts[1:], strict=False)]
    per_step = sum(per[1:]) / max(1, len(per) - 1) if len(per) > 1 else (per[0] if per else 0.0)
    other = total - sum(per)
    return {
        "seconds": round(total, 3),
        "steps_run": len(per),
        "seconds_per_step": round(per_step, 4),
        "extrapolated_seconds": round(other + per_step * full_steps + (per[0] - per_step if per else 0), 3),
        "peak_gib": round(torch.cuda.max_memory_allocated() / GIB, 2) if cuda else None,
    }


def stock_kwargs(eng: Any, pipe: Any, req: Any) -> dict[str, Any]:
    """The very arguments the studio passes, for the stock call (same work, same seed)."""
    import torch

    from studio.engines.steps import fit_image
    from studio.images import load_image

    image = load_image(req.image)
    if eng.id != "ltx2":
        from studio.engines.hunyuan15 import bucket_size

        req.width, req.height = bucket_size(image.shape[1], image.shape[0], *eng.bucket_args(pipe))
    kw = eng.pipe_kwargs(
        pipe, fit_image(image, req.width, req.height), req, torch.Generator("cpu").manual_seed(0)
    )
    kw["output_type"] = "np"
    return kw


def one_engine(eid: str, args: argparse.Namespace, image_path: str) -> list[dict[str, Any]]:
    """Stock and ours, uncapped and under the cap."""
    import torch

    from studio.context import RunContext
    from studio.engines import get_engine, memory, profiles
    from studio.images import load_image

    eng = get_engine(eid)
    shape = (TINY if args.tiny else FULL)[eid]
    steps = args.steps or shape["steps"]
    device = "cpu" if args.tiny else "cuda"
    dtype = torch.float32 if args.tiny else torch.bfloat16
    rows = []
    caps = [None] if args.tiny else [None, args.cap_gb]
    image = load_image(image_path)
    for cap in caps:
        if cap is not None:
            total = torch.cuda.get_device_properties(0).total_memory
            torch.cuda.set_per_process_memory_fraction(min(1.0, cap * GIB / total))
        for who in ("stock", "ours"):
            req = request(eid, shape, steps, image_path)
            ch = profiles.choice(eng, req, device, budget_bytes=None if cap is None else int(cap * GIB))
            profile = "full" if cap is None else ch.profile
            pipe = build_tiny(eid) if args.tiny else build_full(eid, "cuda" if cap is None else "cpu", dtype)
            pipe.set_progress_bar_config(disable=True)
            if who == "stock":
                if cap is not None:  # stock diffusers' own offload (what a user of diffusers would call)
                    if profile == "model_offload":
                        pipe.enable_model_cpu_offload()
                    else:
                        pipe.enable_sequential_cpu_offload()
                else:
                    pipe.to(device)
                kw = stock_kwargs(eng, pipe, req)
                fn = lambda p=pipe, k=kw: p(**k)
                label = "stock diffusers" + (
                    ""
                    if cap is None
                    else (
                        " enable_model_cpu_offload"
                        if profile == "model_offload"
                        else " enable_sequential_cpu_offload"
                    )
                )
            else:
                req.extra.update(memory_mode=profile, vae_tiling=bool(ch and ch.vae_tiling and cap))
                eng.prepare(pipe, device, req.extra)
                fn = lambda p=pipe, r=req: eng.run(p, image, r, RunContext(device=device))
                label = f"studio {eid} [{profile}]"
            try:
                row = timed(fn, pipe, steps, shape["steps"])
            except torch.cuda.OutOfMemoryError as e:
                row = {"error": f"out of memory: {str(e)[:200]}"}
            row.update(
                engine=eid,
                who=label,
                cap_gib=cap,
                profile=profile,
                estimate_gib=None
                if args.tiny
                # (the estimate is of the full-size configs)
                else round(memory.estimate(profile, profiles.sizes(eng, req, device)) / GIB, 2),
                shape={**shape, "steps": shape["steps"]},
                steps_timed=steps,
            )
            log.info("%s", row)
            rows.append(row)
            del pipe
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        if cap is not None:
            torch.cuda.set_per_process_memory_fraction(1.0)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run, write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", choices=("ltx2", "hunyuanvideo1.5-i2v", "all"), default="all")
    ap.add_argument("--steps", type=int, default=0, help="time N steps and extrapolate (0: all of them)")
    ap.add_argument("--cap-gb", type=float, default=24.0, help="the capped run's per-process VRAM (GiB)")
    ap.add_argument("--tiny", action="store_true", help="CPU, tiny random models (checks the script)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import torch

    if not args.tiny and not torch.cuda.is_available():
        ap.error("full size needs a CUDA GPU (use --tiny on a CPU)")
    import numpy as np
    from PIL import Image

    tmp = Path(__import__("tempfile").mkdtemp())
    size = (64, 36) if args.tiny else (1280, 720)  # 16:9: HunyuanVideo picks 848x480 from it
    img = tmp / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(
        img
    )
    eids = ["ltx2", "hunyuanvideo1.5-i2v"] if args.engine == "all" else [args.engine]
    rows = [r for e in eids for r in one_engine(e, args, str(img))]
    dev = "cpu (tiny)" if args.tiny else torch.cuda.get_device_name(0)
    out = {
        "device": dev,
        "platform": platform.platform(),
        "torch": torch.__version__,
        "diffusers": __import__("diffusers").__version__,
        "rows": rows,
    }
    text = json.dumps(out, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
