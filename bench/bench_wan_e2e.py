"""Wan 2.1 I2V 14B end to end (image in, uint8 frames out): stock diffusers against the studio's
engine at each speed tier, in the same process, same seed, same random full-size weights.

Every component (UMT5-XXL, CLIP-H, the Wan VAE, the 14B transformer) is built on the GPU from the
configs in `studio/configs/wan-i2v/` (identical to `../shared/configs/wan2.1-i2v-14b-480p/`, which
the device machine does not receive) with seeded random weights, in bf16 as the studio loads it.
A word-level tokenizer stands in for UMT5's (prompts are padded to 512 tokens either way).
Cost does not depend on weight values; the frame differences say how far a tier moves the output
of *these* random weights, nothing about quality with real ones.

"ours" is the real engine path: `engine.prepare` (memory profile, output-preserving speed-ups,
`studio.speed.prepare`) then `engine.run` (LoRAs, step callbacks, step cache hooks, frames out).
Weight loading from disk is the one part not run (random weights are built instead).

The GPU session is short, so the work is split into two calls on one warm machine:
    part A: build -> exact (cold compile cache; time to first video) -> cache (40 steps) ->
            stock (40 steps, blocks uncompiled) -> few_step (4 steps, random rank-32 distill LoRA)
    part B: build -> exact (warm compile cache; time to first video) -> exact (40 steps) ->
            fp8 (3 timed steps) -> fp8+cache (40 steps)
Stock's frames are kept in /tmp between the calls for the comparisons of part B.
    python bench/bench_wan_e2e.py --part A --out $OUT/wan_e2e_A.json
    python bench/bench_wan_e2e.py --part B --out $OUT/wan_e2e_B.json
    python bench/bench_wan_e2e.py --merge A.json B.json --out bench/results/wan_e2e_h200.json --calibration
    python bench/bench_wan_e2e.py --tiny --part A --out /tmp/a.json   # the same code on a tiny model (CPU)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

T0 = time.perf_counter()
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
STEPS, FRAMES, WIDTH, HEIGHT, GUIDANCE = 40, 81, 832, 480, 5.0
PROMPT = "a cat camera slowly zooming in clouds drifting"
STOCK_FRAMES = Path(os.environ.get("BENCH_STOCK_FRAMES", "/tmp/wan_e2e_stock_frames.npy"))


class Clock:
    """Step timestamps from the step callback: CUDA events (no sync) or host time on the CPU."""

    def __init__(self, cuda: bool) -> None:
        self.cuda, self.marks = cuda, []

    def mark(self) -> None:
        """Record now (at a step boundary)."""
        import torch

        if self.cuda:
            e = torch.cuda.Event(enable_timing=True)
            e.record()
            self.marks.append(e)
        else:
            self.marks.append(time.perf_counter())

    def seconds(self) -> list[float]:
        """Seconds between consecutive marks (call after a sync)."""
        if self.cuda:
            return [a.elapsed_time(b) / 1000 for a, b in zip(self.marks, self.marks[1:], strict=False)]
        return [b - a for a, b in zip(self.marks, self.marks[1:], strict=False)]


def _sync(cuda: bool) -> None:
    import torch

    if cuda:
        torch.cuda.synchronize()


def build(tiny: bool) -> tuple[Any, str]:
    """The pipeline with seeded random weights (on the GPU, bf16; or a tiny one on the CPU)."""
    import tiny_models as tm
    import torch
    from diffusers import (
        AutoencoderKLWan,
        UniPCMultistepScheduler,
        WanImageToVideoPipeline,
        WanTransformer3DModel,
    )

    torch.manual_seed(0)
    if tiny:
        tr = WanTransformer3DModel(
            patch_size=(1, 2, 2),
            num_attention_heads=2,
            attention_head_dim=16,
            in_channels=36,
            out_channels=16,
            text_dim=32,
            freq_dim=256,
            ffn_dim=64,
            num_layers=2,
            cross_attn_norm=True,
            qk_norm="rms_norm_across_heads",
            rope_max_seq_len=32,
            image_dim=4,
        )
        vae = AutoencoderKLWan(
            base_dim=3,
            z_dim=16,
            dim_mult=[1, 1, 1, 1],
            num_res_blocks=1,
            temperal_downsample=[False, True, True],
        )
        pipe = WanImageToVideoPipeline(
            tokenizer=tm.t5_tokenizer(),
            text_encoder=tm._t5(),
            vae=vae,
            scheduler=UniPCMultistepScheduler(
                flow_shift=3.0, use_flow_sigmas=True, prediction_type="flow_prediction"
            ),
            transformer=tr,
            image_encoder=tm._vision(),
            image_processor=tm._fe(),
        )
        return pipe.to("cpu", torch.float32), "cpu"
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
        UMT5Config,
        UMT5EncoderModel,
    )

    cfg = ROOT / "studio" / "configs" / "wan-i2v"
    dt = torch.bfloat16

    def on_gpu(make: Any, keep_fp32: tuple[str, ...] = ()) -> Any:
        with torch.device("cuda"):
            m = make()
        m = m.to(dt)
        for name, sub in m.named_modules():  # as from_pretrained(torch_dtype=bf16) keeps them
            if keep_fp32 and any(k in name.split(".") for k in keep_fp32):
                sub.float()
        return m.eval()

    tr = on_gpu(
        lambda: WanTransformer3DModel.from_config(WanTransformer3DModel.load_config(cfg / "transformer")),
        tuple(getattr(WanTransformer3DModel, "_keep_in_fp32_modules", None) or ()),
    )
    vae = on_gpu(lambda: AutoencoderKLWan.from_config(AutoencoderKLWan.load_config(cfg / "vae")))
    te = on_gpu(lambda: UMT5EncoderModel(UMT5Config.from_json_file(cfg / "text_encoder" / "config.json")))
    ie = on_gpu(
        lambda: CLIPVisionModelWithProjection(
            CLIPVisionConfig.from_json_file(cfg / "image_encoder" / "config.json")
        )
    )
    ip = CLIPImageProcessor.from_json_file(cfg / "image_processor" / "preprocessor_config.json")
    sched = UniPCMultistepScheduler.from_config(UniPCMultistepScheduler.load_config(cfg / "scheduler"))
    pipe = WanImageToVideoPipeline(
        tokenizer=tm.t5_tokenizer(),
        text_encoder=te,
        image_encoder=ie,
        image_processor=ip,
        transformer=tr,
        vae=vae,
        scheduler=sched,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe, "cuda"


def image(tiny: bool) -> Any:
    """A seeded photo-like input (smooth gradients plus noise), uint8 H×W×3."""
    import numpy as np

    h, w = (40, 56) if tiny else (HEIGHT, WIDTH)
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x / w, y / h, (x + y) / (w + h)], -1) * 200 + rng.normal(0, 12, (h, w, 3))
    return np.clip(base, 0, 255).astype(np.uint8)


def request(tiny: bool, tier: str, steps: int) -> Any:
    from studio.engines import get_engine
    from studio.request import GenerationRequest

    eng = get_engine("wan-i2v")
    f, w, h = (5, 32, 32) if tiny else (FRAMES, WIDTH, HEIGHT)
    req = GenerationRequest(
        image="bench.png",
        prompt=PROMPT,
        engine="wan-i2v",
        frames=f,
        width=w,
        height=h,
        steps=steps,
        guidance=GUIDANCE,
        seed=42,
        fps=16,
    )
    req.extra = {k: p.default for k, p in eng.extra_spec().items()} | {"speed": tier, "memory_mode": "full"}
    return req


class SyncCounter:
    """Counts CUDA synchronisations between the first and the last step callback."""

    def __init__(self, cuda: bool) -> None:
        self.cuda, self.on, self.count = cuda, False, 0
        self._cm: Any = None
        self._rec: list = []

    def start(self) -> None:
        import torch

        if not self.cuda or self.on:
            return
        self._cm = warnings.catch_warnings(record=True)
        self._rec = self._cm.__enter__()
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode(1)
        self.on = True

    def stop(self) -> None:
        import torch

        if not self.on:
            return
        torch.cuda.set_sync_debug_mode(0)
        self.count = sum(1 for w in self._rec if "synchroniz" in str(w.message))
        self._cm.__exit__(None, None, None)
        self.on = False


def run_ours(pipe: Any, tier: str, steps: int, tiny: bool, loras: list | None = None) -> dict[str, Any]:
    """One run through the engine (`engine.run`): wall seconds, per-step seconds, peak memory, frames."""
    import torch

    from studio.context import RunContext
    from studio.engines import get_engine

    eng = get_engine("wan-i2v")
    req = request(tiny, tier, steps)
    req.loras = list(loras or [])
    cuda = not tiny
    clock, syncs = Clock(cuda), SyncCounter(cuda)
    total = {"n": 0}

    def progress(stage: str, i: int, n: int) -> None:
        if stage != "denoise":
            return
        clock.mark()
        total["n"] = n
        if i == 1:
            syncs.start()
        if i == n:
            syncs.stop()

    ctx = RunContext(device=_dev(tiny), progress=progress)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    _sync(cuda)
    t = time.perf_counter()
    clip = eng.run(pipe, image(tiny), req, ctx)
    _sync(cuda)
    wall = time.perf_counter() - t
    syncs.stop()
    return _row(wall, clock, syncs, clip.frames, cuda, meta=clip.meta)


def _dev(tiny: bool) -> str:
    return "cpu" if tiny else "cuda"


def _row(
    wall: float, clock: Clock, syncs: SyncCounter, frames: Any, cuda: bool, meta: dict | None = None
) -> dict[str, Any]:
    import torch

    per = clock.seconds()  # step 2..N (the first mark closes step 1)
    steps_timed = len(per)
    per_step = statistics.median(per) if per else None
    first_steps = statistics.median(per[:3]) if len(per) >= 3 else per_step
    n_steps = steps_timed + 1
    denoise = sum(per) + (per_step or 0.0)  # step 1 counted at the median (its start has no mark)
    row = {
        "seconds_wall": round(wall, 3),
        "steps_run": n_steps,
        "seconds_per_step": _r(per_step),
        "seconds_per_step_first3": _r(first_steps),
        "fixed_seconds": _r(wall - denoise),
        "peak_gb": round(torch.cuda.max_memory_allocated() / 1e9, 2) if cuda else None,
        "syncs_in_loop": syncs.count if cuda else None,
        "_frames": frames,
    }
    if meta is not None:
        sp = meta.get("speed") or {}
        row["steps_computed"] = len(sp["computed_steps"]) if "computed_steps" in sp else n_steps
        row["speed_meta"] = sp
        row["notes"] = meta.get("notes", [])
    return row


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def run_stock(pipe: Any, steps: int, tiny: bool) -> dict[str, Any]:
    """Stock `WanImageToVideoPipeline.__call__` with the same inputs and seed."""
    import torch

    from studio.engines.steps import fit_image, to_uint8_frames

    req = request(tiny, "exact", steps)
    cuda = not tiny
    clock, syncs = Clock(cuda), SyncCounter(cuda)

    def cb(p: Any, i: int, t: Any, kw: dict) -> dict:
        clock.mark()
        if i == 0:
            syncs.start()
        if i == steps - 1:
            syncs.stop()
        return {}

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    gen = torch.Generator("cpu").manual_seed(int(req.seed))
    _sync(cuda)
    t = time.perf_counter()
    with torch.inference_mode():
        torch.manual_seed(int(req.seed))
        out = pipe(
            image=fit_image(image(tiny), req.width, req.height),
            prompt=req.prompt,
            negative_prompt=None,
            height=req.height,
            width=req.width,
            num_frames=req.frames,
            num_inference_steps=steps,
            guidance_scale=req.guidance,
            generator=gen,
            output_type="np",
            callback_on_step_end=cb,
        )
    frames = to_uint8_frames(out.frames[0])
    _sync(cuda)
    wall = time.perf_counter() - t
    syncs.stop()
    row = _row(wall, clock, syncs, frames, cuda)
    row["steps_computed"] = steps
    return row


def compare(a: Any, b: Any) -> dict[str, float | None]:
    """max / mean absolute difference of two uint8 frame stacks (None when shapes differ)."""
    import numpy as np

    if a is None or b is None or a.shape != b.shape:
        return {"max_abs": None, "mean_abs": None}
    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return {"max_abs": int(d.max()), "mean_abs": round(float(d.mean()), 3)}


def distill_lora(pipe: Any, folder: Path) -> Any:
    """A random rank-32 LoRA over every linear layer of the transformer's blocks (lightx2v-like)."""
    import torch
    from safetensors.torch import save_file

    from studio.request import LoraRef

    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(7)
    sd = {}
    for name, m in pipe.transformer.named_modules():
        if isinstance(m, torch.nn.Linear) and name.startswith("blocks."):
            r = 32
            sd[f"transformer.{name}.lora_A.weight"] = (
                torch.randn(r, m.in_features, generator=g) * 0.01
            ).bfloat16()
            sd[f"transformer.{name}.lora_B.weight"] = (
                torch.randn(m.out_features, r, generator=g) * 0.01
            ).bfloat16()
    save_file(sd, str(folder / "distill.safetensors"))
    (folder / "distill.json").write_text(json.dumps({"family": "wan2.1-i2v-14b"}))
    os.environ["STUDIO_LORAS_DIR"] = str(folder)
    return LoraRef("distill", 1.0)


def prepare(eng: Any, pipe: Any, tiny: bool) -> dict[str, Any]:
    """`engine.prepare` for the exact tier (on the CPU of --tiny, the CUDA compile step as well)."""
    info = eng.prepare(pipe, _dev(tiny), request(tiny, "exact", 3).extra)
    if tiny:
        from studio import speed

        info.update(speed.prepare(eng.denoisers(pipe), "exact", "cuda"))
    return info


class Saver:
    """Writes the JSON after every row, so a run cut short keeps what it measured; a failing
    row records its error and the others go on."""

    def __init__(self, res: dict[str, Any], out: str) -> None:
        self.res, self.out = res, out

    def save(self) -> None:
        res = dict(self.res)
        res["rows"] = {
            k: {kk: vv for kk, vv in v.items() if kk != "_frames"} for k, v in self.res["rows"].items()
        }
        res["process_seconds"] = round(time.perf_counter() - T0, 2)
        Path(self.out).write_text(json.dumps(res, indent=1, default=str))

    def step(self, name: str, fn: Any) -> Any:
        import traceback

        t = time.perf_counter()
        try:
            out = fn()
        except Exception as e:  # noqa: BLE001 - keep the other rows
            self.res.setdefault("errors", {})[name] = f"{type(e).__name__}: {e}"[:2000]
            traceback.print_exc()
            out = None
        print(f"[{time.perf_counter() - T0:7.1f}s] {name}: {time.perf_counter() - t:.1f}s", flush=True)
        self.save()
        return out


def part_a(tiny: bool, steps: int, out: str) -> dict[str, Any]:
    import numpy as np

    from studio.engines import get_engine
    from studio.speed.compile import uncompile_blocks

    eng = get_engine("wan-i2v")
    res: dict[str, Any] = {"part": "A", "rows": {}, **device_info(tiny)}
    sv = Saver(res, out)
    pipe, dev = build(tiny)
    _sync(not tiny)
    res["build_seconds"] = round(time.perf_counter() - T0, 2)
    t = time.perf_counter()
    res["prepare_exact"] = prepare(eng, pipe, tiny)
    first = sv.step("exact_3step", lambda: run_ours(pipe, "exact", 3, tiny))
    res["time_to_first_video_cold_s"] = round(time.perf_counter() - T0, 2)
    res["exact_first_run_s"] = round(time.perf_counter() - t, 2)
    res["rows"]["exact_3step"] = first or {}
    cached = sv.step("cache", lambda: run_ours(pipe, "cache", steps, tiny))
    res["rows"]["cache"] = cached or {}
    for m in eng.denoisers(pipe):
        uncompile_blocks(m)
    stock = sv.step("stock", lambda: run_stock(pipe, steps, tiny))
    res["rows"]["stock"] = stock or {}
    if stock:
        np.save(STOCK_FRAMES, stock["_frames"])
        res["stock_frames_file"] = str(STOCK_FRAMES)
        if cached:
            cached.update(_vs(cached["_frames"], stock["_frames"]))
    sv.save()
    lora = distill_lora(pipe, Path("/tmp/bench-loras"))
    few = sv.step("few_step", lambda: run_ours(pipe, "few_step", steps, tiny, loras=[lora]))
    if few:
        few["compiled"] = False
        if stock:
            few.update(_vs(few["_frames"], stock["_frames"]))
        res["rows"]["few_step"] = few
    res["attention"] = sv.step("attention", lambda: attention_probe(tiny))
    sv.save()
    return res


def part_b(tiny: bool, steps: int, out: str) -> dict[str, Any]:
    import numpy as np

    from studio import speed
    from studio.engines import get_engine

    eng = get_engine("wan-i2v")
    res: dict[str, Any] = {"part": "B", "rows": {}, **device_info(tiny)}
    sv = Saver(res, out)
    pipe, dev = build(tiny)
    _sync(not tiny)
    res["build_seconds"] = round(time.perf_counter() - T0, 2)
    t = time.perf_counter()
    res["prepare_exact"] = prepare(eng, pipe, tiny)
    first = sv.step("exact_3step", lambda: run_ours(pipe, "exact", 3, tiny)) or {}
    res["time_to_first_video_warm_s"] = round(time.perf_counter() - T0, 2)
    res["exact_first_run_s"] = round(time.perf_counter() - t, 2)
    res["rows"]["exact_3step"] = first
    stock = np.load(STOCK_FRAMES) if STOCK_FRAMES.is_file() else None
    res["stock_frames_found"] = stock is not None
    exact = sv.step("exact", lambda: run_ours(pipe, "exact", steps, tiny))
    if exact:
        exact.update(_vs(exact["_frames"], stock))
        res["rows"]["exact"] = exact
    sv.save()
    # fp8: quantize the block linears of the loaded model (the tier's load step), then 3 timed steps
    if tiny:
        import studio.speed.fp8 as f8

        f8.fp8_unsupported = lambda device: None  # the emulated layer runs the same code path on the CPU
    t = time.perf_counter()
    res["prepare_fp8"] = sv.step("prepare_fp8", lambda: speed.prepare(eng.denoisers(pipe), "fp8", "cuda"))
    warm = sv.step("fp8_3step", lambda: run_ours(pipe, "fp8", 3, tiny))
    res["fp8_first_run_s"] = round(time.perf_counter() - t, 2)
    if warm:
        warm.update(_vs(warm["_frames"], first.get("_frames"), "exact_3step"))
        res["rows"]["fp8_3step"] = warm
    both = sv.step("fp8+cache", lambda: run_ours(pipe, "fp8+cache", steps, tiny))
    if both:
        both.update(_vs(both["_frames"], stock))
        res["rows"]["fp8+cache"] = both
    sv.save()
    return res


def _vs(frames: Any, ref: Any, name: str = "stock") -> dict[str, Any]:
    c = compare(frames, ref)
    return {f"max_abs_vs_{name}": c["max_abs"], f"mean_abs_vs_{name}": c["mean_abs"]}


def device_info(tiny: bool) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"torch": torch.__version__}
    try:
        import diffusers

        info["diffusers"] = diffusers.__version__
    except ImportError:
        pass
    if not tiny and torch.cuda.is_available():
        info["device"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
    else:
        info["device"] = "cpu (tiny model)"
    return info


def attention_probe(tiny: bool) -> dict[str, Any]:
    """TFLOP/s of each exact SDPA backend at Wan's self-attention shape (the `exact` tier keeps
    torch's default choice; this shows which one it is and that none is faster)."""
    if tiny:
        return {}
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    b, h, s, d = 1, 40, 32760, 128
    q, k, v = (torch.randn(b, h, s, d, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    flops = 4 * b * h * s * s * d
    out: dict[str, Any] = {}
    for name, be in (
        ("default", None),
        ("cudnn", SDPBackend.CUDNN_ATTENTION),
        ("flash", SDPBackend.FLASH_ATTENTION),
        ("efficient", SDPBackend.EFFICIENT_ATTENTION),
    ):
        try:
            ctxm = sdpa_kernel([be]) if be is not None else _null()
            with ctxm:
                for _ in range(2):
                    F.scaled_dot_product_attention(q, k, v)
                torch.cuda.synchronize()
                t = time.perf_counter()
                for _ in range(5):
                    F.scaled_dot_product_attention(q, k, v)
                torch.cuda.synchronize()
            ms = (time.perf_counter() - t) / 5 * 1000
            out[name] = {"ms": round(ms, 2), "tflops": round(flops / ms / 1e9, 1)}
        except Exception as e:  # noqa: BLE001 - a backend that can't run this shape says why
            out[name] = {"error": str(e)[:200]}
    del q, k, v
    return out


def _null() -> Any:
    from contextlib import nullcontext

    return nullcontext()


def strip(res: dict[str, Any]) -> dict[str, Any]:
    for row in res["rows"].values():
        row.pop("_frames", None)
    return res


def merge(paths: list[str], out: str, calibration: bool) -> None:
    """Join parts A and B into the issue's JSON (rows per tier, extrapolation check)."""
    parts = {p["part"]: p for p in (json.loads(Path(x).read_text()) for x in paths)}
    a, b = parts["A"], parts["B"]
    rows: list[dict[str, Any]] = []

    def row(tier: str, src: dict, extrapolated: bool, steps_total: int = STEPS) -> dict[str, Any]:
        r = dict(src)
        per, fixed = r["seconds_per_step"], r["fixed_seconds"]
        out = {
            "tier": tier,
            "seconds_per_step": per,
            "fixed_seconds": fixed,
            "peak_gb": r["peak_gb"],
            "steps_computed": r.get("steps_computed"),
            "max_abs_vs_stock": r.get("max_abs_vs_stock"),
            "mean_abs_vs_stock": r.get("mean_abs_vs_stock"),
            "syncs_in_loop": r.get("syncs_in_loop"),
        }
        if extrapolated:
            out["seconds_total"] = round(fixed + steps_total * per, 2)
            out["seconds_total_kind"] = (
                f"extrapolated: fixed + {steps_total} x median of {r['steps_run'] - 1} timed steps"
            )
        else:
            out["seconds_total"] = r["seconds_wall"]
            out["seconds_total_kind"] = f"measured: one full {r['steps_run']}-step run"
            p3 = r.get("seconds_per_step_first3")
            if p3 and tier in ("stock", "exact"):
                out["extrapolated_from_3_steps"] = round(fixed + r["steps_run"] * p3, 2)
                out["extrapolation_error"] = round(
                    out["extrapolated_from_3_steps"] / r["seconds_wall"] - 1, 4
                )
        for k in ("max_abs_vs_exact_3step", "mean_abs_vs_exact_3step", "speed_meta", "notes", "compiled"):
            if k in r:
                out[k] = r[k]
        return out

    rows.append(row("stock", a["rows"]["stock"], False))
    rows.append(row("exact", b["rows"]["exact"], False))
    fp8 = dict(b["rows"]["fp8_3step"])
    # the 3-step run's first step recompiled the blocks for the fp8 layers: steady-state fixed time
    # (encoders, VAE, frames out) is the same work as exact's, so its full run's fixed time is used
    fp8["fixed_seconds"] = b["rows"]["exact"]["fixed_seconds"]
    rows.append(row("fp8", fp8, True))
    rows[-1]["fixed_seconds_source"] = (
        "exact's full run (same encoders and VAE; the 3-step run's own includes a recompile)"
    )
    rows.append(row("cache", a["rows"]["cache"], False))
    rows.append(row("fp8+cache", b["rows"]["fp8+cache"], False))
    rows.append(row("few_step", a["rows"]["few_step"], False, 4))
    stock_total = rows[0]["seconds_total"]
    for r in rows:
        r["speedup_vs_stock"] = round(stock_total / r["seconds_total"], 3) if r["seconds_total"] else None
    res = {
        "device": b.get("device") or a.get("device"),
        "bench": "bench/bench_wan_e2e.py",
        "shape": {
            "engine": "wan-i2v",
            "width": WIDTH,
            "height": HEIGHT,
            "frames": FRAMES,
            "steps": STEPS,
            "guidance": GUIDANCE,
            "tokens": 21 * 30 * 52,
        },
        "weights": "random, built on the GPU from studio/configs/wan-i2v "
        "(= ../shared/configs/wan2.1-i2v-14b-480p)",
        "rows": rows,
        "time_to_first_video_s": {
            "cold_compile_cache": a.get("time_to_first_video_cold_s"),
            "warm_compile_cache": b.get("time_to_first_video_warm_s"),
            "what": "process start -> random weights built on the GPU -> engine.prepare "
            "(compile) -> a 3-step exact video; loading real weights from disk "
            "would add its own time",
        },
        "attention": a.get("attention"),
        "parts": {"A": a, "B": b},
    }
    Path(out).write_text(json.dumps(res, indent=1))
    if calibration:
        cal_path = ROOT / "studio" / "speed" / "calibration.json"
        fixed = rows[0]["fixed_seconds"]
        tiers = {
            r["tier"]: {
                "per_step_ratio": round(r["seconds_per_step"] / rows[0]["seconds_per_step"], 4),
                "seconds_total": r["seconds_total"],
            }
            for r in rows
        }
        # few_step runs one denoiser call a step (CFG 1): its ratio is to stock's per-call time
        tiers["few_step"]["per_step_ratio"] = round(2 * tiers["few_step"]["per_step_ratio"], 4)
        tiers["cache"]["per_step_ratio"] = tiers["exact"]["per_step_ratio"]
        tiers["fp8+cache"]["per_step_ratio"] = tiers["fp8"]["per_step_ratio"]
        cal = {
            "source": "bench/results/wan_e2e_h200.json (bench/bench_wan_e2e.py --calibration)",
            "device": res["device"],
            "shape": {
                **{k: res["shape"][k] for k in ("engine", "width", "height", "frames", "steps", "guidance")},
                "family": "wan2.1-i2v-14b",
            },
            "pixels_frames": WIDTH * HEIGHT * FRAMES,
            "stock_seconds_per_step": rows[0]["seconds_per_step"],
            "fixed_seconds": fixed,
            "tiers": tiers,
        }
        cal_path.write_text(json.dumps(cal, indent=1) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=("A", "B"))
    ap.add_argument(
        "--tiny", action="store_true", help="a tiny random model on the CPU (checks the code path)"
    )
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--out", required=True)
    ap.add_argument("--merge", nargs=2, metavar="JSON")
    ap.add_argument(
        "--calibration", action="store_true", help="with --merge: write studio/speed/calibration.json"
    )
    ns = ap.parse_args()
    if ns.merge:
        merge(ns.merge, ns.out, ns.calibration)
        return
    os.environ.setdefault("STUDIO_COMPILE_CACHE", "/tmp/studio-compile-cache")
    if ns.tiny:
        os.environ.setdefault("STUDIO_COMPILE_BACKEND", "aot_eager")
    res = (part_a if ns.part == "A" else part_b)(ns.tiny, ns.steps, ns.out)
    Saver(res, ns.out).save()
    summary = {
        k: {
            kk: v.get(kk)
            for kk in (
                "seconds_wall",
                "seconds_per_step",
                "fixed_seconds",
                "peak_gb",
                "steps_computed",
                "syncs_in_loop",
            )
        }
        for k, v in res["rows"].items()
    }
    print(json.dumps({k: v for k, v in res.items() if k not in ("rows",)}, default=str)[:3000])
    print(json.dumps(summary, indent=0))


if __name__ == "__main__":
    main()
