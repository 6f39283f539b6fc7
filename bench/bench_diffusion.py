"""Full-size diffusion benchmark with RANDOM weights built from the real configs (cost does not
depend on weight values): stock diffusers against our output-preserving path, same run, same seed.

    python bench/bench_diffusion.py --device cuda --out bench/results/diffusion_h100.json

Rows: I2VGen-XL 512², 16 frames, 50 DDIM steps, CFG 9 (stock / ours eager / ours compiled),
time to first video in a fresh process (cold and warm compile cache), SVD-XT 576×1024 25 frames
(stock / ours), and the peak VRAM of each memory mode.  Needs diffusers (carried as a wheel).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

T_START = time.perf_counter()

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
log = logging.getLogger("bench_diffusion")


def configs_dir() -> Path:
    """Where the full-size configs are (the carried copy first)."""
    for p in (ROOT / ".cache" / "configs", ROOT.parent / "shared" / "configs", Path("/work/shared/configs")):
        if p.is_dir():
            return p
    raise SystemExit("full-size configs not found (.cache/configs or ../shared/configs)")


def _cfg(name: str, comp: str) -> dict:
    return json.loads((configs_dir() / name / f"{comp}.json").read_text())


def _vision_config(name: str):
    from transformers import CLIPVisionConfig
    cfg = {k: v for k, v in _cfg(name, "image_encoder").items() if k not in ("torch_dtype", "dtype")}
    return CLIPVisionConfig(**cfg)


def build_i2vgen(device: str, dtype: torch.dtype):
    """I2VGen-XL pipeline with random weights, built directly on the device in `dtype`."""
    from diffusers import AutoencoderKL, DDIMScheduler, I2VGenXLPipeline, I2VGenXLUNet
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection
    torch.manual_seed(0)
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            unet = I2VGenXLUNet.from_config(_cfg("i2vgen-xl", "unet"))
            vae = AutoencoderKL.from_config(_cfg("i2vgen-xl", "vae"))
            enc = CLIPVisionModelWithProjection(_vision_config("i2vgen-xl"))
    finally:
        torch.set_default_dtype(old)
    fe = CLIPImageProcessor(**{k: v for k, v in _cfg("i2vgen-xl", "feature_extractor").items()
                               if not k.startswith("_") and k != "image_processor_type"})
    sched = DDIMScheduler.from_config(_cfg("i2vgen-xl", "scheduler"))
    pipe = I2VGenXLPipeline(vae=vae, text_encoder=None, tokenizer=None, unet=unet, scheduler=sched,
                            image_encoder=enc, feature_extractor=fe)
    for m in (unet, vae, enc):
        m.to(device, dtype).eval().requires_grad_(False)
    return pipe


def build_svd(device: str, dtype: torch.dtype):
    """SVD-XT pipeline with random weights on the device."""
    from diffusers import (
        AutoencoderKLTemporalDecoder,
        EulerDiscreteScheduler,
        StableVideoDiffusionPipeline,
        UNetSpatioTemporalConditionModel,
    )
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection
    torch.manual_seed(0)
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            unet = UNetSpatioTemporalConditionModel.from_config(_cfg("svd-xt", "unet"))
            vae = AutoencoderKLTemporalDecoder.from_config(_cfg("svd-xt", "vae"))
            enc = CLIPVisionModelWithProjection(_vision_config("svd-xt"))
    finally:
        torch.set_default_dtype(old)
    fe = CLIPImageProcessor(**{k: v for k, v in _cfg("svd-xt", "feature_extractor").items()
                               if not k.startswith("_") and k != "image_processor_type"})
    sched = EulerDiscreteScheduler.from_config(_cfg("svd-xt", "scheduler"))
    pipe = StableVideoDiffusionPipeline(vae=vae, image_encoder=enc, unet=unet, scheduler=sched,
                                        feature_extractor=fe)
    for m in (unet, vae, enc):
        m.to(device, dtype).eval().requires_grad_(False)
    return pipe


def test_image(w: int, h: int):
    """A deterministic RGB test picture (a real photo when present)."""
    from PIL import Image
    p = ROOT / "tests" / "data" / "astronaut.jpg"
    if p.is_file():
        return Image.open(p).convert("RGB").resize((w, h))
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


def timed(fn, device: str):
    """(result, seconds, peak GB) of one call."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    out = fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    dt = time.perf_counter() - t
    peak = torch.cuda.max_memory_allocated() / 1e9 if device.startswith("cuda") else 0.0
    return out, dt, peak


def compare(a: np.ndarray, b: np.ndarray) -> dict:
    """Difference between two float videos in [0,1]."""
    d = np.abs(a.astype(np.float32) - b.astype(np.float32))
    return {"max_abs": float(d.max()), "mean_abs": float(d.mean()),
            "max_abs_255": float(d.max() * 255),
            "finite": bool(np.isfinite(a).all() and np.isfinite(b).all()),
            "std_a": float(a.std()), "std_b": float(b.std())}


def i2vgen_kwargs(pipe, device, steps=50, frames=16, size=512, seed=0, **kw):
    """The benchmark request: 512², 16 frames, 50 DDIM steps, CFG 9, fixed embeddings and seed."""
    torch.manual_seed(seed)  # the pipeline samples the image latents from the global RNG
    g = torch.Generator("cpu").manual_seed(1234)
    dt = pipe.unet.dtype
    pe = torch.randn(1, 77, 1024, generator=g).to(device, dt)
    ne = torch.randn(1, 77, 1024, generator=g).to(device, dt)
    return dict(image=test_image(size, size), prompt_embeds=pe, negative_prompt_embeds=ne, height=size,
                width=size, num_frames=frames, num_inference_steps=steps, guidance_scale=9.0,
                generator=torch.Generator("cpu").manual_seed(seed), output_type="np", clip_skip=None, **kw)


def unet_profile(pipe, device, rows: int = 25) -> str:
    """Top CUDA kernels of one batched-CFG UNet call at the benchmark size."""
    from torch.profiler import ProfilerActivity, profile
    dt = pipe.unet.dtype
    x = torch.randn(2, 4, 16, 64, 64, device=device, dtype=dt)
    il = torch.randn(2, 4, 16, 64, 64, device=device, dtype=dt)
    ehs = torch.randn(2, 77, 1024, device=device, dtype=dt)
    ie = torch.randn(2, 1024, device=device, dtype=dt)
    fps = torch.tensor([16, 16], device=device)

    def call():
        return pipe.unet(x, 500, encoder_hidden_states=ehs, fps=fps, image_latents=il, image_embeddings=ie,
                         return_dict=False)[0]
    call()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
        call()
        torch.cuda.synchronize()
    return prof.key_averages().table(sort_by="cuda_time_total", row_limit=rows, max_name_column_width=60)


def _uncompile(model) -> None:
    import torch._dynamo
    for m in model.modules():
        if getattr(m, "_compiled_call_impl", None) is not None:
            m._compiled_call_impl = None
    torch._dynamo.reset()


UNET_VARIANTS = {
    "eager": {},
    "blocks": {"compile": True},
    "blocks_cl": {"compile": True, "denoiser_channels_last": True},
    "full": {"compile": True, "scope": "full"},
    "full_cl": {"compile": True, "scope": "full", "denoiser_channels_last": True},
    "full_ma": {"compile": True, "scope": "full", "denoiser_channels_last": True,
                "compile_mode": "max-autotune-no-cudagraphs"},
}


def unet_sweep(args, pipe, res: dict) -> str:
    """Per-step UNet time of each output-preserving variant on one pipeline; returns the fastest."""
    import torch.nn as nn

    from studio.modelmgr import optimize
    dev = args.device
    dt = pipe.unet.dtype
    g = torch.Generator(dev).manual_seed(0)
    x = torch.randn(2, 4, 16, 64, 64, device=dev, dtype=dt, generator=g)
    il = torch.randn(2, 4, 16, 64, 64, device=dev, dtype=dt, generator=g)
    ehs = torch.randn(2, 77, 1024, device=dev, dtype=dt, generator=g)
    ie = torch.randn(2, 1024, device=dev, dtype=dt, generator=g)
    fps = torch.tensor([16, 16], device=dev)
    out, base = {}, None
    names = args.only.split(",") if args.only else list(UNET_VARIANTS)
    for name in names:
        kw = UNET_VARIANTS[name]
        _uncompile(pipe.unet)
        for m in pipe.unet.modules():
            if isinstance(m, nn.Conv2d):
                m.to(memory_format=torch.contiguous_format)
        applied = optimize(pipe, pad_heads=False, channels_last=False, **kw)
        t0 = time.perf_counter()
        try:
            for _ in range(2):
                ref = pipe.unet(x, 500, encoder_hidden_states=ehs, fps=fps, image_latents=il,
                                image_embeddings=ie, return_dict=False)[0].float()
            torch.cuda.synchronize()
        except Exception as e:  # a variant that does not compile is recorded, not fatal
            out[name] = {"error": f"{type(e).__name__}: {e}"[:300]}
            log.info("sweep %s failed: %s", name, e)
            continue
        warm = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(10):
            pipe.unet(x, 500, encoder_hidden_states=ehs, fps=fps, image_latents=il, image_embeddings=ie,
                      return_dict=False)
        torch.cuda.synchronize()
        step = (time.perf_counter() - t0) / 10
        base = ref if base is None else base
        out[name] = {"step_ms": round(step * 1000, 1), "compile_warmup_s": round(warm, 1),
                     "applied": applied, "max_abs_vs_eager": float((ref - base).abs().max()),
                     "ref_absmax": float(base.abs().max())}
        res["unet_sweep"] = out
        _save(args, res)
        log.info("sweep %s: %.1f ms/step, warm-up %.1fs, diff %.4g", name, step * 1000, warm,
                 out[name]["max_abs_vs_eager"])
    _uncompile(pipe.unet)
    res["unet_sweep"] = out
    ok = {k: v for k, v in out.items() if "step_ms" in v and v["max_abs_vs_eager"] < 0.05 * v["ref_absmax"]}
    return min(ok, key=lambda k: ok[k]["step_ms"])


def bench_i2vgen(args, res: dict) -> None:
    """Stock against ours on the same random-weight pipeline, same seed."""
    from studio.modelmgr import optimize
    dev = args.device
    t0 = time.perf_counter()
    pipe = build_i2vgen(dev, torch.float16)
    res["i2vgen_build_s"] = round(time.perf_counter() - t0, 2)
    pipe.set_progress_bar_config(disable=True)
    pipe(**i2vgen_kwargs(pipe, dev, steps=2))  # warm-up (cuDNN autotune, allocator)
    stock, t, peak = timed(lambda: pipe(**i2vgen_kwargs(pipe, dev)).frames[0], dev)
    res["i2vgen_stock"] = {"seconds": round(t, 3), "peak_gb": round(peak, 3),
                           "setting": "512x512, 16 frames, 50 DDIM steps, CFG 9, fp16, decode_chunk 1"}
    log.info("stock %.2fs %.2fGB", t, peak)
    # the cfg_cutoff fast preset, on the eager pipeline (before any compile): cost vs stock
    from studio.engines.steps import cfg_truncation
    for cut, steps in ((0.5, 50), (0.3, 50), (0.5, 30)):
        with cfg_truncation(pipe.unet, math.ceil(cut * steps)):
            fast, t, peak = timed(lambda s=steps: pipe(**i2vgen_kwargs(pipe, dev, steps=s)).frames[0], dev)
        res[f"i2vgen_fast_cfg_cutoff_{cut}_{steps}steps_eager"] = {
            "seconds": round(t, 3), "peak_gb": round(peak, 3),
            "stock_eager_s": res["i2vgen_stock"]["seconds"], "quality_cost_vs_stock": compare(stock, fast)}
        log.info("cfg_cutoff %.1f, %d steps: %.2fs", cut, steps, t)
    _save(args, res)
    best = args.variant or unet_sweep(args, pipe, res)
    kw = dict(UNET_VARIANTS[best])
    t0 = time.perf_counter()
    applied = optimize(pipe, channels_last=True, **kw)
    pipe(**i2vgen_kwargs(pipe, dev, steps=2))
    ctime = time.perf_counter() - t0
    ours, t, peak = timed(lambda: pipe(**i2vgen_kwargs(pipe, dev)).frames[0], dev)
    res["i2vgen_ours"] = {"seconds": round(t, 3), "peak_gb": round(peak, 3), "variant": best,
                          "applied": applied, "compile_warmup_s": round(ctime, 1),
                          "vs_stock": compare(stock, ours)}
    log.info("ours (%s) %.2fs %.2fGB", best, t, peak)
    # fast presets (change the output; shown with their cost against the 50-step reference)
    for steps in (30, 20):
        fast, t, peak = timed(lambda s=steps: pipe(**i2vgen_kwargs(pipe, dev, steps=s)).frames[0], dev)
        res[f"i2vgen_fast_{steps}steps"] = {"seconds": round(t, 3), "peak_gb": round(peak, 3),
                                            "quality_cost_vs_50_steps": compare(ours, fast)}


def _uncompile_all() -> None:
    import gc

    import torch._dynamo
    torch._dynamo.reset()
    gc.collect()
    torch.cuda.empty_cache()


def bench_memory(args, res: dict) -> None:
    """Peak VRAM of each memory mode (I2VGen-XL, 512², 16 frames, 2 steps: peaks do not grow with steps)."""
    from studio.modelmgr import place
    dev = args.device
    out = {}
    modes = (("full", False, False), ("full", True, True), ("model_offload", False, False),
             ("sequential_offload", False, False))
    for mode, slicing, tiling in modes:
        pipe = build_i2vgen("cpu" if mode != "full" else dev, torch.float16)
        pipe.set_progress_bar_config(disable=True)
        place(pipe, dev, mode, vae_slicing=slicing, vae_tiling=tiling)
        _, t, peak = timed(lambda p=pipe: p(**i2vgen_kwargs(p, dev, steps=2)).frames[0], dev)
        key = mode + ("+vae_slicing+tiling" if slicing else "")
        out[key] = {"peak_gb": round(peak, 3), "seconds_2_steps": round(t, 2)}
        log.info("memory %s: %.2f GB", key, peak)
        pipe.remove_all_hooks()
        del pipe
        _uncompile_all()
    res["i2vgen_memory_modes"] = out


def bench_svd(args, res: dict) -> None:
    """SVD-XT 576x1024, 25 frames, 25 steps: stock against ours (same seed)."""
    from studio.modelmgr import optimize
    dev = args.device
    pipe = build_svd(dev, torch.float16)
    pipe.set_progress_bar_config(disable=True)

    def kw(steps=25):
        torch.manual_seed(0)
        return dict(image=test_image(1024, 576), height=576, width=1024, num_frames=25,
                    num_inference_steps=steps, decode_chunk_size=8, output_type="np",
                    generator=torch.Generator("cpu").manual_seed(0))
    pipe(**kw(2))
    stock, t, peak = timed(lambda: pipe(**kw()).frames[0], dev)
    res["svd_xt_stock"] = {"seconds": round(t, 3), "peak_gb": round(peak, 3),
                           "setting": "576x1024, 25 frames, 25 steps, fp16, decode_chunk 8"}
    log.info("svd stock %.2fs %.2fGB", t, peak)
    t0 = time.perf_counter()
    applied = optimize(pipe, channels_last=True, compile=True)
    pipe(**kw(2))
    ctime = time.perf_counter() - t0
    ours, t, peak = timed(lambda: pipe(**kw()).frames[0], dev)
    res["svd_xt_ours"] = {"seconds": round(t, 3), "peak_gb": round(peak, 3), "applied": applied,
                          "compile_warmup_s": round(ctime, 1), "vs_stock": compare(stock, ours)}
    log.info("svd ours %.2fs %.2fGB", t, peak)


def first_video(args, res: dict) -> None:
    """Seconds from process start to the first video (ours), cold then warm compile cache."""
    import tempfile
    cache = os.environ.get("STUDIO_COMPILE_CACHE") if args.first_runs == "warm_cache" else None
    cache = cache or tempfile.mkdtemp(prefix="studio-cc-")
    out = {}
    for label in args.first_runs.split(","):
        env = dict(os.environ, STUDIO_COMPILE_CACHE=cache)
        cmd = [sys.executable, __file__, "--device", args.device, "--rows", "child", "--variant",
               args.variant or "blocks", "--out", os.devnull]
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
        line = [x for x in p.stdout.splitlines() if x.startswith("FIRST_VIDEO")]
        out[label] = json.loads(line[-1].split(" ", 1)[1]) if line else {"error": p.stderr[-500:]}
        log.info("first video %s: %s", label, out[label])
    res["i2vgen_time_to_first_video"] = out


def child(args) -> None:
    """Process-start-to-video for `first_video` (random weights built on the GPU stand in for loading)."""
    from studio.modelmgr import optimize
    dev = args.device
    pipe = build_i2vgen(dev, torch.float16)
    pipe.set_progress_bar_config(disable=True)
    t_build = time.perf_counter() - T_START
    optimize(pipe, channels_last=True, **UNET_VARIANTS[args.variant])
    frames = pipe(**i2vgen_kwargs(pipe, dev)).frames[0]
    torch.cuda.synchronize()
    print("FIRST_VIDEO " + json.dumps({"seconds": round(time.perf_counter() - T_START, 2),
                                       "build_s": round(t_build, 2), "frames": int(frames.shape[0])}))


def _row(fn, args, res: dict) -> None:
    """Run one row; a failure is recorded in the JSON and the other rows still run."""
    try:
        fn(args, res)
    except Exception as e:  # noqa: BLE001
        log.exception("row %s failed", fn.__name__)
        res.setdefault("errors", {})[fn.__name__] = f"{type(e).__name__}: {e}"[:500]


def _save(args, res: dict) -> None:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")


def main() -> None:
    """Run the chosen rows and write JSON."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", default="bench/results/diffusion_h100.json")
    ap.add_argument("--rows", default="i2vgen", help="comma list: i2vgen,first,svd,memory")
    ap.add_argument("--only", default="", help="sweep variants to run")
    ap.add_argument("--variant", default="", help="skip the sweep and use this variant")
    ap.add_argument("--first-runs", default="cold_cache,warm_cache",
                    help="'warm_cache' alone reuses $STUDIO_COMPILE_CACHE warmed by the i2vgen row")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    res: dict = {"device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu",
                 "torch": torch.__version__}
    try:
        import diffusers
        res["diffusers"] = diffusers.__version__
    except ImportError:
        raise SystemExit("diffusers is not installed") from None
    rows = args.rows.split(",")
    if "child" in rows:
        child(args)
        return
    if "i2vgen" in rows:
        _row(bench_i2vgen, args, res)
        _save(args, res)
    _uncompile_all()
    if "first" in rows:
        _row(first_video, args, res)
        _save(args, res)
    _uncompile_all()
    if "svd" in rows:
        _row(bench_svd, args, res)
        _save(args, res)
    _uncompile_all()
    if "memory" in rows:
        _row(bench_memory, args, res)
        _save(args, res)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
