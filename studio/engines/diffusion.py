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
        return {**COMMON_EXTRA, **fast, **self.extra_params}

    def cfg_steps(self, req: GenerationRequest) -> int | None:
        """Steps that keep guidance under the `cfg_cutoff` fast preset; None when it is off."""
        cut = float(req.extra.get("cfg_cutoff", 1.0))
        if not self.cfg_batched or cut >= 1.0 or req.guidance <= 1.0:
            return None
        return int(math.ceil(cut * req.steps))

    def fast_notes(self, req: GenerationRequest) -> list[str]:
        """What the fast presets in this request change."""
        n = self.cfg_steps(req)
        if n is None:
            return []
        return [f"fast preset cfg_cutoff={req.extra.get('cfg_cutoff')}: guidance on {n} of {req.steps} "
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
               bool(extra.get("vae_tiling")), bool(extra.get("compile")))

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
        return modelmgr.optimize(pipe, denoiser=self.denoiser, channels_last=cuda,
                                 compile=cuda and bool(extra.get("compile")))

    def lora_targets(self, attr: str | None = None) -> dict[str, tuple[int, ...]] | None:
        """Weight shapes of the denoiser's layers (`attr`, default `denoiser`) for LoRA checks that
        load no weights: the loaded pipeline's, else its config.json (weights folder, models/,
        then the repo's studio/configs/); None when no config is found."""
        from pathlib import Path

        from .. import lora_formats
        attr = attr or self.denoiser
        loaded = modelmgr.MANAGER.loaded
        if loaded is not None and loaded.key and loaded.key[0] == self.id:
            return lora_formats.module_shapes(getattr(loaded.pipe, attr))
        from ..weights import models_dir
        st = self.status()
        shipped = Path(__file__).resolve().parent.parent / "configs"
        roots = ([Path(st.path)] if st.present and st.path else []) + [
            models_dir() / self.engine_dir, shipped / self.engine_dir]
        for root in roots:
            cfg = root / attr / "config.json"
            if cfg.is_file():
                return lora_formats.shapes_from_config(cfg)
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
        ch = choice(self, req, device)
        seconds = self.seconds_estimate(req, device)
        if ch is None:
            return {"seconds": seconds, "memory_mb": 0.0}
        return {"seconds": seconds, "memory_mb": ch.peak_bytes / 1e6, "profile": ch.profile,
                "memory": ch.describe()}

    # Seconds per denoiser call per (batch × latent frame × latent pixel × billion parameters), from the
    # I2VGen-XL bench on an H100 (0.227 s a CFG-batched step at 16 × 64² latents, 1.4 B; the Wan 2.1
    # 14B H200 bench lands within 1.4× of it).  The CPU factor is an assumption (two cores against a
    # Hopper GPU), not a measurement; it keeps the ledger's order of magnitude for the limits.
    SECONDS_PER_UNIT_CUDA = 1.25e-6
    CPU_SLOWDOWN = 400.0
    DENOISER_PARAMS_B = 1.5          # when no shipped config says how large the denoiser is

    def seconds_estimate(self, req: GenerationRequest, device: str) -> float:
        """A rough time for the denoising loop: steps × calls × latent size × denoiser size."""
        wan, ltx = "wan" in self.family, self.family.startswith("ltx")
        spatial, temporal = (32, 8) if ltx else (8, 4 if wan else 1)
        lat_frames = (int(req.frames) - 1) // temporal + 1
        lat_px = max(1, int(req.width) // spatial) * max(1, int(req.height) // spatial)
        cfg = 2 if float(req.guidance) > 1.0 else 1
        params_b = self.DENOISER_PARAMS_B
        try:
            from . import loading
            from .profiles import _param_counts
            root = loading.configs_dir(self.id)
            if (root / "model_index.json").is_file():
                counts = _param_counts(self.id, str(root))[0]
                den = [v for k, v in counts.items() if k in ("unet", "transformer", "transformer_2")]
                params_b = max(den) / 1e9 if den else params_b
        except Exception:  # noqa: BLE001 - an estimate must never fail the ledger
            pass
        per_step = cfg * lat_frames * lat_px * params_b * self.SECONDS_PER_UNIT_CUDA
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
        rep = StepReporter(ctx, int(kwargs.get("num_inference_steps", req.steps)), prev)
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
                    cached_encoders(pipe, self.embed_methods, salt) as cache_stats, trunc as batch_sizes:
                stats.update(cache=cache_stats, batches=batch_sizes)
                # some pipelines sample from the global RNG (I2VGen-XL's image latents): seed it too
                torch.manual_seed(int(req.seed))
                if self.uses_callbacks:
                    return pipe(**kwargs, callback_on_step_end=rep.callback)
                with rep.scheduler_hook(pipe):
                    return pipe(**kwargs)

        # a step can take seconds (Wan 14B: 6 s on an H200): the wait for it honours cancel at once,
        # and the abandoned run stops itself at its next step boundary
        from postfx.cancel import interruptible
        out = interruptible(call, ctx.check_cancel)()
        cache_stats, batch_sizes = stats["cache"], stats["batches"]
        ctx.check_cancel()
        frames = to_uint8_frames(out.frames[0] if isinstance(out.frames, list) else out.frames)
        meta = {"engine": self.id, "seed": int(req.seed), "steps": rep.total, "loras": applied,
                "notes": notes, "embeddings_reused": cache_stats["hits"],
                "previews": prev.shown if prev is not None else 0}
        if n_cfg is not None:
            meta["cfg_steps"] = sum(1 for b in batch_sizes if b == 2)
        return Clip(frames=frames, fps=float(req.fps), meta=meta)
