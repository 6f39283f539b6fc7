"""Wan 2.1 I2V 14B VRAM profiles under per-process memory caps (random full-size weights).

Builds the transformer from `studio/configs/wan-i2v/transformer/config.json` with random bf16
weights (cost does not depend on their values) and times denoising steps at 832×480, 81 frames
(21×60×104 latents, 32 760 tokens): one step = the conditional and the unconditional forward, as
the pipeline runs CFG.  For each profile and each cap (`torch.cuda.set_per_process_memory_fraction`)
it records seconds per step, the allocator's peak, the estimate of `studio.engines.memory` and
what `auto` picks under that cap.  Stock diffusers `enable_model_cpu_offload` and
`enable_sequential_cpu_offload` run in the same process (our `model_offload`/`sequential` profiles
call exactly these, so they are measured once and labelled stock).

    python bench/bench_wan_memory.py --out bench/results/wan_memory_h200.json [--steps 2]
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
log = logging.getLogger("bench_wan_memory")
GIB = 1 << 30


def build_state(cfg_dir: Path) -> tuple[dict, dict]:
    """Random bf16 weights (on the CPU) for the config's transformer, made on the GPU in chunks."""
    import torch
    from accelerate import init_empty_weights
    from diffusers import WanTransformer3DModel
    cfg = WanTransformer3DModel.load_config(str(cfg_dir))
    with init_empty_weights():
        m = WanTransformer3DModel.from_config(cfg)
    sd = {}
    g = torch.Generator("cuda").manual_seed(0)
    for k, p in m.state_dict().items():
        t = torch.empty(p.shape, device="cuda", dtype=torch.bfloat16)
        t.normal_(0.0, 0.02, generator=g) if t.dim() > 1 else t.fill_(1.0 if "norm" in k else 0.0)
        sd[k] = t.to("cpu")
    return cfg, sd


def fresh_model(cfg: dict, sd: dict) -> Any:
    """A transformer whose parameters are the CPU tensors of `sd` (no copy)."""
    from accelerate import init_empty_weights
    from diffusers import WanTransformer3DModel
    with init_empty_weights():
        m = WanTransformer3DModel.from_config(cfg)
    m.load_state_dict(sd, assign=True, strict=True)
    return m.eval()


def inputs(frames: int, width: int, height: int) -> dict:
    """Latents (36 channels for I2V: noise + mask + image latents), text and image embeddings."""
    import torch
    t = (frames - 1) // 4 + 1
    g = torch.Generator("cuda").manual_seed(1)
    kw = dict(device="cuda", dtype=torch.bfloat16, generator=g)
    return {"hidden_states": torch.randn(1, 36, t, height // 8, width // 8, **kw),
            "timestep": torch.tensor([500.0], device="cuda"),
            "encoder_hidden_states": torch.randn(1, 512, 4096, **kw),
            "encoder_hidden_states_image": torch.randn(1, 257, 1280, **kw)}


def step(model: Any, x: dict) -> None:
    """One CFG denoising step: the conditional and the unconditional forward."""
    import torch
    with torch.inference_mode():
        model(**x, return_dict=False)
        model(**x, return_dict=False)


def measure(model: Any, x: dict, cap_gb: float | None, steps: int, total: int) -> dict:
    """Seconds per step (after one warm-up step) and the allocator's peak under `cap_gb`."""
    import torch
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(1.0 if cap_gb is None else cap_gb * GIB / total)
    torch.cuda.reset_peak_memory_stats()
    try:
        step(model, x)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(steps):
            step(model, x)
        torch.cuda.synchronize()
        dt = (time.perf_counter() - t0) / steps
        return {"status": "ok", "seconds_per_step": round(dt, 3), "steps_timed": steps,
                "peak_gb": round(torch.cuda.max_memory_allocated() / GIB, 2)}
    except torch.cuda.OutOfMemoryError as e:
        peak = round(torch.cuda.max_memory_allocated() / GIB, 2)
        msg = str(e).splitlines()[0][:200]
        return {"status": "oom", "seconds_per_step": None, "peak_gb": peak, "error": msg}
    finally:
        torch.cuda.synchronize()
        torch.cuda.set_per_process_memory_fraction(1.0)


def main() -> int:
    import diffusers
    import torch
    from diffusers.hooks import apply_group_offloading

    from studio.engines import memory
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "wan_memory_h200.json"))
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--frames", type=int, default=81)
    ap.add_argument("--width", type=int, default=832)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--caps", default="24,16,12")
    ap.add_argument("--profiles", default="full,group_block,group_leaf,fp8_layerwise,stock_model_offload,"
                                          "stock_sequential")
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    caps = [float(c) for c in a.caps.split(",")]
    total = torch.cuda.get_device_properties(0).total_memory
    cfg_dir = ROOT / "studio" / "configs" / "wan-i2v" / "transformer"
    t0 = time.perf_counter()
    cfg, sd = build_state(cfg_dir)
    log.info("random weights built in %.1f s", time.perf_counter() - t0)
    x = inputs(a.frames, a.width, a.height)
    n_params = sum(v.numel() for v in sd.values())
    s = memory.sizes_from_config(dict(cfg), {"transformer": n_params * 2}, ("transformer",), a.frames,
                                 a.width, a.height, True)
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0), "total_gb": round(total / GIB, 1),
        "torch": torch.__version__, "diffusers": diffusers.__version__,
        "what": f"Wan 2.1 I2V 14B transformer ({n_params / 1e9:.2f}B params, random bf16 weights from "
                f"studio/configs/wan-i2v), {a.width}x{a.height}, {a.frames} frames ({s.tokens} tokens); "
                "one step = cond + uncond forward; transformer only (text/image encoders, VAE not loaded)",
        "rows": []}
    rows = result["rows"]

    def add(profile: str, cap: float | None, r: dict, est_profile: str | None = None) -> None:
        row = {"profile": profile, "cap_gb": cap, **r}
        if est_profile:
            row["est_peak_gb"] = round(memory.estimate(est_profile, s) / GIB, 2)
        if cap is not None:
            row["auto_choice"] = memory.choose("auto", s, int(cap * GIB)).profile
        rows.append(row)
        log.info("%s", row)
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(result, indent=2))

    for prof in a.profiles.split(","):
        m = fresh_model(cfg, sd)
        t1 = time.perf_counter()
        if prof == "full":
            m.to("cuda")
        elif prof == "fp8_layerwise":
            m.to("cuda")
            m.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.bfloat16)
        elif prof in ("group_block", "group_leaf"):
            kw = dict(onload_device=torch.device("cuda"), offload_device=torch.device("cpu"), use_stream=True)
            if prof == "group_block":
                apply_group_offloading(m, offload_type="block_level", num_blocks_per_group=1, **kw)
            else:
                apply_group_offloading(m, offload_type="leaf_level", **kw)
        elif prof.startswith("stock_"):
            from diffusers import WanImageToVideoPipeline
            pipe = WanImageToVideoPipeline(tokenizer=None, text_encoder=None, vae=None, scheduler=None,
                                           image_encoder=None, image_processor=None, transformer=m)
            (pipe.enable_model_cpu_offload if prof == "stock_model_offload"
             else pipe.enable_sequential_cpu_offload)(device="cuda")
        setup = round(time.perf_counter() - t1, 1)
        est = {"stock_model_offload": "model_offload", "stock_sequential": "sequential"}.get(prof, prof)
        label = "stock" if prof.startswith("stock_") else prof
        for cap in ([None] + caps if prof in ("full", "fp8_layerwise", "group_block") else caps):
            r = measure(m, x, cap, 1 if prof == "stock_sequential" else a.steps, total)
            r["setup_s"] = setup
            if label == "stock":
                r["stock"] = prof.removeprefix("stock_")
            add(label, cap, r, est)
        del m
        if prof.startswith("stock_"):
            del pipe
        gc.collect()
        torch.cuda.empty_cache()
    full = next((r for r in rows if r["profile"] == "full" and r["cap_gb"] is None and r["status"] == "ok"),
                None)
    if full:
        for r in rows:
            if r.get("seconds_per_step"):
                r["x_full"] = round(r["seconds_per_step"] / full["seconds_per_step"], 3)
        fit12 = [r for r in rows if r["cap_gb"] == 12 and r["status"] == "ok" and r.get("x_full", 9) <= 1.5]
        result["target"] = {"fits_12gb_within_1.5x": [r["profile"] for r in fit12],
                            "auto_at_12gb": memory.choose("auto", s, int(12 * GIB)).profile}
    Path(a.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result.get("target", {})))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
