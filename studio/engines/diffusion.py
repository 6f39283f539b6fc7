"""Shared adapter base for the diffusers engines (I2VGen-XL, SVD, LTX-Video, Wan).

An engine subclass names its HF repo, its diffusers pipeline class, its parameter overrides and
how to turn a request into pipeline keyword arguments (`pipe_kwargs`).  This base does the rest:
weights lookup (`studio.modelmgr`), one loaded pipeline, LoRAs (`studio.loras`), progress and
cancel per denoising step, the seed, and frames -> `Clip`.
"""

from __future__ import annotations

import logging
import math
import threading
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .. import modelmgr
from ..clip import Clip
from ..context import RunContext
from ..params import Param
from .base import Engine, WeightsStatus
from .embed_cache import cached_encoders
from .steps import StepReporter, cfg_truncation, fit_image, to_uint8_frames

if TYPE_CHECKING:
    from ..request import GenerationRequest

log = logging.getLogger(__name__)

COMMON_EXTRA: dict[str, Param] = {
    "memory_mode": Param("memory_mode", str, "auto", "VRAM profile: auto (the fastest that fits the free "
                         "GPU memory), full, fp8_layerwise (changes the output), model_offload, group_block, "
                         "group_leaf or sequential (slowest, least memory).",
                         choices=("auto", "full", "fp8_layerwise", "model_offload", "group_block",
                                  "group_leaf", "sequential", "sequential_offload"), advanced=True),
    "vae_slicing": Param("vae_slicing", bool, False, "Decode the VAE one video at a time.", advanced=True),
    "vae_tiling": Param("vae_tiling", bool, False, "Decode the VAE in tiles (large sizes).", advanced=True),
    "preview_every": Param("preview_every", int, 0, "Show a latent preview every N denoising steps "
                           "(0 = about 8 per run; Wan and LTX).", min=0, max=100, advanced=True),
    "compile": Param("compile", bool, False, "torch.compile the denoiser (CUDA; same output, "
                     "first run compiles, later runs use the cache in models/.cache).", advanced=True),
}


CFG_CUTOFF = Param(
    "cfg_cutoff", float, 1.0, "Fast preset (changes the output): the share of denoising steps that use "
    "classifier-free guidance; later steps run the conditional branch only, at about half their cost. "
    "1 = guidance on every step (the model's own output).", min=0.0, max=1.0, step=0.05, advanced=True)


class DiffusionEngine(Engine):
    """Base for engines over a diffusers pipeline."""

    repo: ClassVar[str]               # HF repo id of the weights
    engine_dir: ClassVar[str]         # folder under models/
    pipeline_class: ClassVar[str]     # diffusers class name
    denoiser: ClassVar[str] = "unet"  # the attribute LoRAs go into and compile targets
    lora_mode: ClassVar[str] = "peft"  # "peft" (own injection) or "pipeline" (diffusers loader)
    dtype_pref: ClassVar[str] = "fp16"
    uses_callbacks: ClassVar[bool] = True
    supports_loras = True
    cfg_batched: ClassVar[bool] = False
    """The pipeline batches CFG's two branches into one denoiser call (enables `cfg_cutoff`)."""
    embed_methods: ClassVar[tuple[str, ...]] = ("encode_prompt",)
    """Pipeline methods whose results are reused for equal arguments (see `embed_cache`)."""
    speed_tiers: ClassVar[bool] = False
    """A DiT engine whose denoiser takes the `speed` tiers (`studio.speed`)."""
    preview_layout: ClassVar[str | None] = None
    """Layout of the pipeline's step latents for previews ("bcthw", "packed"); None: no previews."""

    # ---- step previews ------------------------------------------------------------------------
    def normalize_latents(self, pipe: Any, z: Any) -> Any:
        """VAE latents -> the pipeline's denoising space (subclasses)."""
        return z

    def spatial_ratio(self, pipe: Any) -> int:
        """Pixels per latent pixel."""
        return int(getattr(pipe, "vae_scale_factor_spatial", 8))

    def latent_rgb(self, pipe: Any) -> Any:
        """The fitted latent->RGB map of this pipeline's VAE (fitted once per loaded pipeline)."""
        from .previews import fit
        cached = pipe.__dict__.get("_studio_latent_rgb")
        if cached is not None:
            return cached
        import torch
        vae = pipe.vae

        def encode(imgs: Any) -> Any:
            outs = []
            with torch.inference_mode():
                for im in imgs:
                    x = torch.from_numpy(im[None, :, None]).to(vae.device, vae.dtype)
                    z = vae.encode(x).latent_dist.mode()
                    outs.append(self.normalize_latents(pipe, z.float())[:, :, 0].cpu())
            return torch.cat(outs).numpy()
        pipe.__dict__["_studio_latent_rgb"] = fit(encode)
        return pipe.__dict__["_studio_latent_rgb"]

    def previewer(self, pipe: Any, req: GenerationRequest, ctx: RunContext) -> Any:
        """A StepPreviewer for this run, or None (no ctx.preview, or no previews for this engine)."""
        if ctx.preview is None or self.preview_layout is None or not self.uses_callbacks:
            return None
        from .previews import StepPreviewer
        every = int(req.extra.get("preview_every", 0)) or max(1, req.steps // 8)
        return StepPreviewer(ctx, self.latent_rgb(pipe), self.preview_layout, req.width, req.height,
                             self.spatial_ratio(pipe), every)

    # ---- weights ------------------------------------------------------------------------------
    def status(self) -> WeightsStatus:
        """Present weights (a diffusers folder, or single files per component) or the command."""
        from .loading import inventory
        inv = inventory(self)
        if inv.folder is not None or not inv.parts:
            return modelmgr.locate(self.repo, self.engine_dir)
        cmd = " or ".join(inv.commands()) or None
        size = sum(p.size_bytes for p in inv.parts.values())
        if inv.present:
            files = ", ".join(f"{n}: {p.path.name} ({p.format})" for n, p in inv.parts.items()
                              if p.source in ("file", "folder") and p.path)
            return WeightsStatus(True, f"present as parts: {files}", path=str(modelmgr.models_dir() /
                                 self.engine_dir), size_bytes=size)
        return WeightsStatus(False, f"missing {', '.join(inv.missing)}; get them with: {cmd}", command=cmd)

    def inventory(self) -> Any:
        """Per component: the file or folder found, its format and size, or that it is missing."""
        from .loading import inventory
        return inventory(self)

    def extra_spec(self) -> dict[str, Param]:
        """Common memory/compile settings plus the engine's own."""
        fast = {"cfg_cutoff": CFG_CUTOFF} if self.cfg_batched else {}
        if self.speed_tiers:
            from ..speed import SPEED
            fast["speed"] = SPEED
        return {**COMMON_EXTRA, **fast, **self.extra_params}

    def speed_tier(self, req_or_extra: Any) -> str:
        """The request's speed tier ('exact' for engines without tiers)."""
        extra = getattr(req_or_extra, "extra", req_or_extra) or {}
        if not self.speed_tiers:
            return "exact"
        return "few_step" if extra.get("few_step") else str(extra.get("speed", "exact"))

    def denoisers(self, pipe: Any) -> list[Any]:
        """The loaded denoiser modules (both experts of Wan 2.2 A14B)."""
        return [m for m in (getattr(pipe, self.denoiser, None), getattr(pipe, "transformer_2", None))
                if m is not None]

    def cfg_steps(self, req: GenerationRequest) -> int | None:
        """Steps that keep guidance under the `cfg_cutoff` fast preset; None when it is off."""
        cut = float(req.extra.get("cfg_cutoff", 1.0))
        if not self.cfg_batched or cut >= 1.0 or req.guidance <= 1.0:
            return None
        return int(math.ceil(cut * req.steps))

    def fast_notes(self, req: GenerationRequest) -> list[str]:
        """What the fast presets in this request change."""
        notes: list[str] = []
        if self.speed_tiers:
            from .. import speed
            notes += speed.notes(self.speed_tier(req))
        n = self.cfg_steps(req)
        if n is None:
            return notes
        return notes + [
            f"fast preset cfg_cutoff={req.extra.get('cfg_cutoff')}: guidance on {n} of {req.steps} "
            f"steps, the conditional branch alone after that; this changes the output "
            f"(measured cost: README, 'Fast presets')"]

    def load(self, device: str, extra: dict[str, Any]) -> modelmgr.Loaded:
        """The loaded pipeline for these settings (evicting any other)."""
        from .loading import build_pipeline, inventory
        inv = inventory(self)
        if inv.folder is None and not inv.parts:
            modelmgr.require(self.repo, self.engine_dir)  # raises with the download command
        path = inv.folder or modelmgr.models_dir() / self.engine_dir
        key = (self.id, inv.key(), device, extra.get("memory_mode", "full"), bool(extra.get("vae_slicing")),
               bool(extra.get("vae_tiling")), bool(extra.get("compile")),
               self.speed_load_parts(extra, device))

        def _load() -> tuple[Any, Any, dict[str, Any]]:
            import diffusers
            dtype = modelmgr.pick_dtype(device, self.dtype_pref)
            if inv.folder is not None:
                pipe = modelmgr.load_pipeline(getattr(diffusers, self.pipeline_class), inv.folder, device,
                                              dtype, **self.load_kwargs())
            else:
                pipe = build_pipeline(self, inv, dtype)
            info = self.prepare(pipe, device, extra)
            if inv.folder is None:
                info["weights"] = {n: p.format for n, p in inv.parts.items() if p.source == "file"}
            return pipe, path, info
        return modelmgr.MANAGER.get(key, _load)

    def load_kwargs(self) -> dict[str, Any]:
        """Extra `from_pretrained` arguments."""
        return {}

    def prepare(self, pipe: Any, device: str, extra: dict[str, Any]) -> dict[str, Any]:
        """Place a freshly loaded pipeline and apply output-preserving speed-ups."""
        pipe.set_progress_bar_config(disable=True)
        from . import memory
        mode = memory.LEGACY.get(str(extra.get("memory_mode", "full")), str(extra.get("memory_mode", "full")))
        memory.apply(pipe, "full" if mode == "auto" else mode, device,
                     tuple(d for d in (self.denoiser, "transformer_2") if getattr(pipe, d, None) is not None))
        modelmgr.place_vae(pipe, bool(extra.get("vae_slicing")), bool(extra.get("vae_tiling")))
        cuda = str(device).startswith("cuda")
        tiers = self.speed_load_parts(extra, device)
        info = modelmgr.optimize(pipe, denoiser=self.denoiser, channels_last=cuda,
                                 compile=cuda and bool(extra.get("compile")) and "compile" not in tiers)
        if self.speed_tiers:
            from .. import speed
            info.update(speed.prepare(self.denoisers(pipe), self.speed_tier(extra), device))
        return info

    def speed_load_parts(self, extra: dict[str, Any], device: str) -> tuple[str, ...]:
        """What of the speed tier changes the loaded model (compile on CUDA, fp8)."""
        if not self.speed_tiers:
            return ()
        from .. import speed
        return speed.load_parts(self.speed_tier(extra), device)

    def lora_targets(self, attr: str | None = None) -> dict[str, tuple[int, ...]] | None:
        """Weight shapes of the denoiser's layers (`attr`, default `denoiser`) for LoRA checks that
        load no weights: the loaded pipeline's, else its config.json (weights folder, models/,
        then the repo's studio/configs/); None when no config is found."""
        from pathlib import Path

        from .. import loras
        attr = attr or self.denoiser
        loaded = modelmgr.MANAGER.loaded
        if loaded is not None and loaded.key and loaded.key[0] == self.id:
            return loras.module_shapes(getattr(loaded.pipe, attr))
        from ..weights import models_dir
        st = self.status()
        shipped = Path(__file__).resolve().parent.parent / "configs"
        roots = ([Path(st.path)] if st.present and st.path else []) + [
            models_dir() / self.engine_dir, shipped / self.engine_dir]
        for root in roots:
            cfg = root / attr / "config.json"
            if cfg.is_file():
                return loras.shapes_from_config(cfg)
        return None

    def describe_weights(self, req: GenerationRequest) -> dict[str, Any]:
        """Model and LoRA hashes for the manifest."""
        from .. import loras
        st = self.status()
        out: dict[str, Any] = {"engine": self.id, "repo": self.repo, "present": st.present}
        inv = self.inventory() if st.present else None
        if inv is not None and inv.folder is None and inv.parts:
            out["files"] = {n: {"path": str(p.path), "format": p.format, "sha256": modelmgr.file_hash(p.path)}
                            for n, p in inv.parts.items() if p.source == "file" and p.path}
        elif st.present and st.path:
            from pathlib import Path
            out["path"] = st.path
            out["files"] = modelmgr.MANAGER.hashes(Path(st.path))
        out["loras"] = {lr.name: {"strength": lr.strength, "sha256": loras.lora_hash(lr.name)}
                        for lr in req.loras}
        return out

    # ---- running ------------------------------------------------------------------------------
    def pipe_kwargs(self, pipe: Any, image: Any, req: GenerationRequest, generator: Any) -> dict[str, Any]:
        """Keyword arguments for `pipe(...)` (subclasses)."""
        raise NotImplementedError

    def notes(self, req: GenerationRequest) -> list[str]:
        """Things the user should be told about this request (logged and put in clip.meta)."""
        return []

    def generate(self, image: np.ndarray, req: GenerationRequest, ctx: RunContext) -> Clip:
        """Load (or reuse) the pipeline under its VRAM profile and run it (`profiles.generate`)."""
        from .profiles import generate
        return generate(self, image, req, ctx)

    def estimate(self, req: GenerationRequest, device: str) -> dict[str, Any]:
        """The VRAM profile for this request and its estimated peak (shown in the ledger)."""
        from .profiles import choice
        if self.speed_tiers:
            from .. import speed
            speed.check(self.speed_tier(req), device, few_step_ok=bool(self.extra_params.get("few_step")),
                        has_loras=bool(req.loras))
        ch = choice(self, req, device)
        seconds = self.seconds_estimate(req, device)
        out: dict[str, Any] = {"seconds": seconds, "memory_mb": 0.0}
        if ch is not None:
            out.update(memory_mb=ch.peak_bytes / 1e6, profile=ch.profile, memory=ch.describe())
        if self.speed_tiers:
            from .. import speed
            tier = self.speed_tier(req)
            out["speed"] = {"tier": tier, "changes_output": speed.changes_output(tier),
                            "notes": self.fast_notes(req)}
        return out

    # Seconds per denoiser call per (batch × latent frame × latent pixel × billion parameters), from the
    # I2VGen-XL bench on an H100 (0.227 s a CFG-batched step at 16 × 64² latents, 1.4 B; the Wan 2.1
    # 14B H200 bench lands within 1.4× of it).  The CPU factor is an assumption (two cores against a
    # Hopper GPU), not a measurement; it keeps the ledger's order of magnitude for the limits.
    SECONDS_PER_UNIT_CUDA = 1.25e-6
    CPU_SLOWDOWN = 400.0
    DENOISER_PARAMS_B = 1.5          # when no shipped config says how large the denoiser is

    def latent_ratios(self) -> tuple[int, int]:
        """(pixels per latent pixel, frames per latent frame) of this engine's VAE."""
        wan, ltx = "wan" in self.family, self.family.startswith("ltx")
        return (32, 8) if ltx else (8, 4 if wan else 1)

    def passes_per_step(self, req: GenerationRequest) -> int:
        """Denoiser sample-passes per step (2 with classifier-free guidance)."""
        return 2 if float(req.guidance) > 1.0 else 1

    def seconds_estimate(self, req: GenerationRequest, device: str) -> float:
        """A rough time for the denoising loop: steps × calls × latent size × denoiser size.

        A speed-tier engine on CUDA uses the calibration committed with the Wan benchmark
        (`studio.speed.estimate`): the tier's measured per-step ratio, its cache schedule, and the
        fixed time of encoders and VAE; the unit cost is fitted so that the calibration's own shape
        gets the measured stock seconds per step.
        """
        cuda = str(device).startswith("cuda")
        if not (self.speed_tiers and cuda):
            secs = self._stock_seconds(req, device)
            if self.speed_tiers:  # the step cache skips blocks on the CPU too (nothing else applies there)
                from .. import speed
                from ..speed.cache import computed_steps
                if "cache" in speed.parts(self.speed_tier(req)):
                    secs = round(secs * len(computed_steps(int(req.steps))) / max(1, int(req.steps)), 2)
            return secs
        from ..speed import estimate
        cal = estimate.calibration()
        shape = cal["shape"]
        ref = latent_units(shape["engine"], shape["family"], int(shape["frames"]), int(shape["width"]),
                           int(shape["height"]), float(shape["guidance"]))
        per_unit = float(cal["stock_seconds_per_step"]) / ref
        stock = int(req.steps) * self._units(int(req.frames), int(req.width), int(req.height),
                                             float(req.guidance), req) * per_unit
        name = None
        try:
            import torch
            if torch.cuda.is_available():
                name = torch.cuda.get_device_name(torch.device(device).index or 0)
        except Exception:  # noqa: BLE001 - an estimate must never fail the ledger
            name = None
        t = estimate.tier_seconds(self.speed_tier(req), stock * estimate.device_factor(name), int(req.steps),
                                  float(req.width) * float(req.height) * float(req.frames), name)
        return round(t["denoise"] + t["fixed"], 2)

    def _units(self, frames: int, width: int, height: int, guidance: float,
               req: GenerationRequest | None = None) -> float:
        """Denoiser calls × latent frames × latent pixels × billions of parameters, for one step."""
        spatial, temporal = self.latent_ratios()
        lat_frames = (int(frames) - 1) // temporal + 1
        lat_px = max(1, int(width) // spatial) * max(1, int(height) // spatial)
        cfg = self.passes_per_step(req) if req is not None else (2 if float(guidance) > 1.0 else 1)
        return cfg * lat_frames * lat_px * _params_b(self.id)

    def _stock_seconds(self, req: GenerationRequest, device: str) -> float:
        """The size model without tiers (also the CPU estimate)."""
        per_step = self._units(int(req.frames), int(req.width), int(req.height), float(req.guidance), req) \
            * self.SECONDS_PER_UNIT_CUDA
        if not str(device).startswith("cuda"):
            per_step *= self.CPU_SLOWDOWN
        return round(int(req.steps) * per_step, 2)

    def run(self, pipe: Any, image: np.ndarray, req: GenerationRequest, ctx: RunContext) -> Clip:
        """Run an already-loaded pipeline: LoRAs, seed, per-step progress/cancel, frames -> Clip."""
        import torch

        from .. import loras
        applied = loras.apply_loras(pipe, self, req.loras)
        pil = fit_image(image, req.width, req.height)
        generator = torch.Generator("cpu").manual_seed(int(req.seed))
        kwargs = self.pipe_kwargs(pipe, pil, req, generator)
        kwargs.setdefault("output_type", "np")
        prev = self.previewer(pipe, req, ctx)
        if prev is not None:
            kwargs["callback_on_step_end_tensor_inputs"] = ["latents"]
        from .. import speed
        tier = self.speed_tier(req)
        if self.speed_tiers:
            speed.check(tier, ctx.device, few_step_ok=bool(self.extra_params.get("few_step")),
                        has_loras=bool(req.loras))
        rep = StepReporter(ctx, self.total_steps(req, kwargs), prev)
        notes = self.notes(req) + self.fast_notes(req)
        for note in notes:
            ctx.log.warning("%s: %s", self.id, note)
        n_cfg = self.cfg_steps(req)
        trunc = (cfg_truncation(getattr(pipe, self.denoiser), n_cfg) if n_cfg is not None
                 else nullcontext([]))
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        # LoRAs loaded by a pipeline's own loader may reach its encoders: they key the cache too
        salt = tuple((lr.name, lr.strength) for lr in req.loras) if self.lora_mode == "pipeline" else None
        lock = pipe.__dict__.setdefault("_studio_run_lock", threading.Lock())
        stats: dict[str, Any] = {}

        def call() -> Any:
            # one run of a pipeline at a time: a cancelled run still finishing its step holds it
            with lock, torch.random.fork_rng(devices=devices), torch.inference_mode(), \
                    cached_encoders(pipe, self.embed_methods, salt) as cache_stats, trunc as batch_sizes, \
                    speed.run_hooks(self.denoisers(pipe) if self.speed_tiers else [], tier) as step_log:
                stats.update(cache=cache_stats, batches=batch_sizes, steps=step_log)
                rep.step_log = step_log
                # some pipelines sample from the global RNG (I2VGen-XL's image latents): seed it too
                torch.manual_seed(int(req.seed))
                if self.uses_callbacks:
                    return self.call_pipeline(pipe, dict(kwargs, callback_on_step_end=rep.callback), req)
                with rep.scheduler_hook(pipe):
                    return self.call_pipeline(pipe, kwargs, req)

        # a step can take seconds (Wan 14B: 6 s on an H200): the wait for it honours cancel at once,
        # and the abandoned run stops itself at its next step boundary
        from postfx.cancel import interruptible
        out = interruptible(call, ctx.check_cancel)()
        if prev is not None:
            prev.flush()
        cache_stats, batch_sizes = stats["cache"], stats["batches"]
        ctx.check_cancel()
        frames = to_uint8_frames(out.frames[0] if isinstance(out.frames, list) else out.frames)
        meta = {"engine": self.id, "seed": int(req.seed), "steps": rep.total, "loras": applied,
                "notes": notes, "embeddings_reused": cache_stats["hits"],
                "previews": prev.shown if prev is not None else 0}
        if n_cfg is not None:
            meta["cfg_steps"] = sum(1 for b in batch_sizes if b == 2)
        if self.speed_tiers:
            meta["speed"] = {"tier": tier, **(stats["steps"].summary() if stats["steps"] is not None else {})}
        return self.finish(Clip(frames=frames, fps=float(req.fps), meta=meta), out, pipe, req)

    def total_steps(self, req: GenerationRequest, kwargs: dict[str, Any]) -> int:
        """Denoising steps this run reports (a multi-stage recipe counts all its stages)."""
        return int(kwargs.get("num_inference_steps", req.steps))

    def call_pipeline(self, pipe: Any, kwargs: dict[str, Any], req: GenerationRequest) -> Any:
        """One call of the pipeline (a multi-stage recipe chains several)."""
        return pipe(**kwargs)

    def finish(self, clip: Clip, out: Any, pipe: Any, req: GenerationRequest) -> Clip:
        """The clip from the pipeline's output (subclasses add what else it returned, e.g. sound)."""
        return clip


def latent_units(engine_id: str, family: str, frames: int, width: int, height: int, guidance: float) -> float:
    """Denoiser calls × latent frames × latent pixels × billions of parameters, for one step of
    engine `engine_id` (its shipped config gives the denoiser's size)."""
    wan, ltx = "wan" in family, family.startswith("ltx")
    spatial, temporal = (32, 8) if ltx else (8, 4 if wan else 1)
    lat_frames = (int(frames) - 1) // temporal + 1
    lat_px = max(1, int(width) // spatial) * max(1, int(height) // spatial)
    cfg = 2 if float(guidance) > 1.0 else 1
    return cfg * lat_frames * lat_px * _params_b(engine_id)


def _params_b(engine_id: str) -> float:
    """The denoiser's size in billions of parameters, from the shipped config."""
    params_b = DiffusionEngine.DENOISER_PARAMS_B
    try:
        from . import loading
        from .profiles import _param_counts
        root = loading.configs_dir(engine_id)
        if (root / "model_index.json").is_file():
            counts = _param_counts(engine_id, str(root))[0]
            den = [v for k, v in counts.items() if k in ("unet", "transformer", "transformer_2")]
            params_b = max(den) / 1e9 if den else params_b
    except Exception:  # noqa: BLE001 - an estimate must never fail the ledger
        pass
    return params_b
