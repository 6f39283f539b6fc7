"""One Wan clip on 1 vs 2/4/8 GPUs: each parallel mode of `studio.engines.parallel` (diffusers' context
parallelism: Ulysses, ring; and CFG-parallel), same seed, in one run.

Wan 2.1 I2V 14B at 832×480, 81 frames (21×60×104 latents, 32 760 tokens) with random full-size bf16
weights built on each GPU from `studio/configs/wan-i2v/` (the same seed on every rank gives the same
weights; cost does not depend on their values).  One step = the conditional and the unconditional
forward and a flow-matching update, as the pipeline runs CFG; after the steps rank 0 decodes the
latents with a random VAE (same seed in every run) and the frames are compared with the 1-GPU run's.
Each mode runs in fresh processes (`torch.multiprocessing`, a rendezvous on 127.0.0.1, NCCL with gloo
for control), with the studio's own `apply_plan` / `cfg_split` — the code a gang worker runs.

    python bench/bench_wan_parallel.py --out bench/results/wan_parallel_h200x8.json   # GPUs
    python bench/bench_wan_parallel.py --tiny --device cpu                            # proves the script

Rows: {mode, gpus, plan, seconds_per_step, seconds_total, peak_gb_per_gpu, max_abs_vs_1gpu}; a mode
that cannot run (Ulysses over more ranks than heads, cfg with more than 2 GPUs, ...) is a row with
`skipped` and why.  On the CPU (`--device cpu`, up to 4 gloo ranks) the times say nothing: the ranks
share the cores.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
log = logging.getLogger("bench_wan_parallel")
GIB = 1 << 30
MODES_BY_GPUS = {2: ("cfg", "ulysses", "ring", "auto"),
                 4: ("cfg+ulysses", "cfg+ring", "ulysses", "ring", "auto"),
                 8: ("cfg+ulysses", "cfg+ring", "ulysses", "ring", "ulysses+ring", "cfg+ulysses+ring",
                     "auto")}


def build(args: argparse.Namespace, device: str) -> tuple[Any, Any]:
    """The transformer and VAE: random full-size (bf16, built on the GPU) or the tests' tiny ones."""
    import torch
    if args.tiny:
        from tests.tiny_models import tiny_wan
        pipe = tiny_wan()
        return pipe.transformer.eval(), pipe.vae.eval()
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    cfg_dir = ROOT / "studio" / "configs" / "wan-i2v"
    torch.manual_seed(0)
    with torch.device(device):
        torch.set_default_dtype(torch.bfloat16)  # 14B built in bf16, on the GPU
        try:
            tcfg = WanTransformer3DModel.load_config(str(cfg_dir / "transformer"))
            tr = WanTransformer3DModel.from_config(tcfg)
        finally:
            torch.set_default_dtype(torch.float32)
        vae = AutoencoderKLWan.from_config(AutoencoderKLWan.load_config(str(cfg_dir / "vae")))
    g = torch.Generator(device).manual_seed(0)
    with torch.no_grad():
        for m in (tr, vae):
            for k, p in m.named_parameters():
                p.normal_(0.0, 0.02, generator=g) if p.dim() > 1 else p.fill_(1.0 if "norm" in k else 0.0)
    return tr.to(torch.bfloat16).eval(), vae.float().eval()


def inputs(args: argparse.Namespace, tr: Any, device: str) -> dict[str, Any]:
    """Latents (noise + mask + image latents), text and image embeddings, from the seed."""
    import torch
    t = (args.frames - 1) // 4 + 1
    g = torch.Generator("cpu").manual_seed(args.seed)
    dt = next(tr.parameters()).dtype
    cfg = tr.config

    def r(*shape: int) -> Any:
        return torch.randn(*shape, generator=g).to(device, dt)
    return {"hidden_states": r(1, cfg.in_channels, t, args.height // 8, args.width // 8),
            "encoder_hidden_states": r(1, 512, cfg.text_dim),
            "negative": r(1, 512, cfg.text_dim),
            "encoder_hidden_states_image": r(1, 257, cfg.image_dim)}


def denoise(tr: Any, x: dict[str, Any], steps: int, guidance: float, sync: Any) -> tuple[Any, list[float]]:
    """`steps` CFG steps as the pipeline runs them (cond, then uncond, then the update); seconds each."""
    import torch
    lat = x["hidden_states"][:, :16].clone()
    cond = x["hidden_states"][:, 16:]
    times = []
    with torch.inference_mode():
        for i in range(steps):
            sync()
            t0 = time.perf_counter()
            ts = torch.tensor([1000.0 * (1 - i / steps)], device=lat.device)
            inp = torch.cat([lat, cond], dim=1)
            kw = dict(hidden_states=inp, timestep=ts, return_dict=False,
                      encoder_hidden_states_image=x["encoder_hidden_states_image"])
            pred = tr(encoder_hidden_states=x["encoder_hidden_states"], **kw)[0]
            unc = tr(encoder_hidden_states=x["negative"], **kw)[0]
            lat = lat - (1.0 / steps) * (unc + guidance * (pred - unc))
            sync()
            times.append(time.perf_counter() - t0)
    return lat, times


def decode(vae: Any, lat: Any) -> Any:
    """uint8 frames of the latents (a random VAE: the numbers say how far the frames moved)."""
    import torch
    with torch.inference_mode():
        v = vae.decode(lat.float(), return_dict=False)[0]
    return ((v.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()


def rank_run(rank: int, world: int, mode: str, args: argparse.Namespace, port: int, outdir: str) -> None:
    """One rank of one measurement (world 1: plain, no process group)."""
    import numpy as np
    import torch
    import torch.distributed as dist
    cuda = args.device == "cuda"
    device = f"cuda:{rank}" if cuda else "cpu"
    if cuda:
        torch.cuda.set_device(rank)
    else:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    tr, vae = build(args, device)
    x = inputs(args, tr, device)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    result: dict[str, Any] = {"mode": mode, "gpus": world, "plan": "single"}
    if world > 1:
        from datetime import timedelta

        from studio.engines.parallel import Gang, apply_plan, cfg_split, plan_for
        dist.init_process_group("cpu:gloo,cuda:nccl" if cuda else "gloo", init_method=f"tcp://127.0.0.1:{port}",
                                rank=rank, world_size=world, timeout=timedelta(minutes=20))
        gang = Gang(rank, world, device, mode)
        tokens = ((args.frames - 1) // 4 + 1) * (args.height // 16) * (args.width // 16)
        try:
            plan = plan_for(mode, world, cfg_on=True, tokens=tokens, heads=tr.config.num_attention_heads)
            apply_plan(tr, plan, gang)
        except ValueError as e:
            result["skipped"] = str(e)
            if rank == 0:
                Path(outdir, "result.json").write_text(json.dumps(result))
            dist.destroy_process_group()
            return
        result["plan"] = plan.describe()
        with cfg_split([tr], plan, gang):
            t0 = time.perf_counter()
            lat, times = denoise(tr, x, args.steps + 1, args.guidance, sync)
    else:
        t0 = time.perf_counter()
        lat, times = denoise(tr, x, args.steps + 1, args.guidance, sync)
    if rank == 0:
        frames = decode(vae, lat)
        sync()
        result["seconds_total"] = round(time.perf_counter() - t0, 3)
        result["seconds_per_step"] = round(sum(times[1:]) / max(1, len(times) - 1), 4)
        np.save(Path(outdir, "frames.npy"), frames)
    peak = torch.cuda.max_memory_allocated() / GIB if cuda else None
    if world > 1:
        peaks = [None] * world
        dist.all_gather_object(peaks, peak)
        dist.destroy_process_group()
    else:
        peaks = [peak]
    if rank == 0:
        result["peak_gb_per_gpu"] = [round(p, 2) for p in peaks] if cuda else None
        Path(outdir, "result.json").write_text(json.dumps(result))


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure(mode: str, world: int, args: argparse.Namespace) -> tuple[dict[str, Any], Any]:
    """One mode on `world` ranks in fresh processes: its row and rank 0's frames."""
    import numpy as np
    import torch.multiprocessing as tmp
    with tempfile.TemporaryDirectory(prefix="studio-benchpar-") as d:
        tmp.spawn(rank_run, args=(world, mode, args, _port(), d), nprocs=world, join=True)
        row = json.loads(Path(d, "result.json").read_text())
        f = Path(d, "frames.npy")
        return row, (np.load(f) if f.is_file() else None)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--tiny", action="store_true", help="the tests' tiny Wan (32x32, 5 frames), not 14B")
    ap.add_argument("--gpus", default="1,2,4,8", help="gang sizes to try (above the devices: skipped)")
    ap.add_argument("--steps", type=int, default=4, help="timed steps (after one warm-up step)")
    ap.add_argument("--guidance", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="JSON path (default bench/results/wan_parallel_<kind>.json)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args.width, args.height, args.frames = (32, 32, 5) if args.tiny else (832, 480, 81)
    import torch
    if args.device == "cuda":
        have = torch.cuda.device_count()
        name = torch.cuda.get_device_name(0) if have else "none"
        kind = f"{name.split()[-1].lower()}x{have}"
    else:
        have, name, kind = 4, f"CPU ({os.cpu_count()} cores, gloo ranks)", "cpu_tiny" if args.tiny else "cpu"
    sizes = [int(g) for g in args.gpus.split(",") if int(g) <= have]
    rows: list[dict[str, Any]] = []
    ref = None
    for n in sizes:
        for mode in (("single",) if n == 1 else MODES_BY_GPUS.get(n, ("auto",))):
            log.info("measuring %s on %d", mode, n)
            row, frames = measure(mode, n, args)
            if n == 1:
                ref = frames
            if frames is not None and ref is not None:
                row["max_abs_vs_1gpu"] = int(abs(frames.astype(int) - ref.astype(int)).max())
            rows.append(row)
            log.info("%s", row)
    base = next((r for r in rows if r["gpus"] == 1 and "seconds_per_step" in r), None)
    for r in rows:
        if base and "seconds_per_step" in r:
            r["speedup_vs_1gpu"] = round(base["seconds_per_step"] / r["seconds_per_step"], 2)
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / f"wan_parallel_{kind}.json"
    doc = {"device": name, "gpus": have, "torch": torch.__version__, "host": platform.node(),
           "size": f"{args.width}x{args.height}, {args.frames} frames", "steps_timed": args.steps,
           "guidance": args.guidance, "tiny": args.tiny, "load_avg": os.getloadavg(), "rows": rows}
    out.write_text(json.dumps(doc, indent=1))
    print(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
