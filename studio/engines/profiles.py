"""Engine glue for the VRAM profiles (`memory`): sizes from the shipped configs, the choice for a
request, and the run with one out-of-memory fallback."""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol

from . import memory

if TYPE_CHECKING:
    import numpy as np

    from ..clip import Clip
    from ..context import RunContext
    from ..request import GenerationRequest

log = logging.getLogger(__name__)


class DiffusionEngine(Protocol):
    """What the profiles need of an engine (`studio.engines.diffusion.DiffusionEngine` has it); a
    protocol, so that this module does not import the engine module that imports it."""

    id: str
    cfg_batched: bool

    def load(self, device: str, opts: dict[str, Any]) -> Any: ...

    def run(self, pipe: Any, image: np.ndarray, req: GenerationRequest, ctx: RunContext) -> Clip: ...


@lru_cache(maxsize=32)
def _param_counts(engine_id: str, cfg_root: str) -> tuple[dict[str, int], dict[str, Any], int]:
    """Parameter counts per component, the denoiser config and the largest non-denoiser leaf's
    parameter count, from the shipped configs (built on the meta device)."""
    from . import loading
    counts: dict[str, int] = {}
    den_cfg: dict[str, Any] = {}
    leaf = 0
    for name, (lib, cls) in loading._component_classes(engine_id).items():
        if lib is None or cls is None or name in loading.CONFIG_ONLY or name.startswith("tokenizer"):
            continue
        model = loading.empty_model(engine_id, name, cls)
        counts[name] = sum(p.numel() for p in model.parameters())
        if name == "transformer":
            den_cfg = dict(model.config)
        elif not name.startswith("transformer"):
            own = [sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules()]
            leaf = max([leaf, *own])
    return counts, den_cfg, leaf


def sizes(engine: DiffusionEngine, req: GenerationRequest, device: str) -> memory.Sizes | None:
    """`memory.Sizes` of this request from the shipped configs (None for engines without them)."""
    import json

    from . import loading
    root = loading.configs_dir(engine.id)
    if not (root / "model_index.json").is_file():
        return None
    counts, den_cfg, leaf = _param_counts(engine.id, str(root))
    dbytes = 2 if str(device).startswith("cuda") else 4
    params = {k: v * dbytes for k, v in counts.items()}
    vae_cfg = json.loads((root / "vae" / "config.json").read_text()) if (root / "vae").is_dir() else {}
    ltx = "LTX" in str(vae_cfg.get("_class_name"))
    spatial = int(vae_cfg.get("scale_factor_spatial") or vae_cfg.get("spatial_compression_ratio")
                  or (32 if ltx else 8))
    temporal = int(vae_cfg.get("scale_factor_temporal") or vae_cfg.get("temporal_compression_ratio")
                   or (8 if ltx else 4))
    dens = tuple(d for d in ("transformer", "transformer_2") if d in params)
    one_call = engine.cfg_batched or getattr(engine, "cfg_in_one_call", False)
    return memory.sizes_from_config(den_cfg, params, dens, req.frames, req.width, req.height,
                                    req.guidance > 1.0, spatial, temporal, batched_cfg=one_call,
                                    largest_leaf=leaf * dbytes)


def choice(engine: DiffusionEngine, req: GenerationRequest, device: str,
           budget_bytes: int | None = None) -> memory.Choice | None:
    """The profile for this request (`memory_mode`, `auto` by the free VRAM); None without sizes."""
    s = sizes(engine, req, device)
    if s is None:
        return None
    budget = memory.free_vram(device) if budget_bytes is None else budget_bytes
    mode = str(req.extra.get("memory_mode", "auto"))
    return memory.choose(mode, s, budget, vae_tiling=bool(req.extra.get("vae_tiling")))


def generate(engine: DiffusionEngine, image: np.ndarray, req: GenerationRequest, ctx: RunContext) -> Clip:
    """Load under the chosen profile and run; on CUDA out-of-memory, the next profile once."""
    import torch

    from .. import modelmgr
    ch = choice(engine, req, ctx.device)
    extra = dict(req.extra)
    if ch is not None:
        extra.update(memory_mode=ch.profile, vae_tiling=ch.vae_tiling)
    tried = []
    for _attempt in range(2):
        tried.append(extra.get("memory_mode"))
        try:
            loaded = engine.load(ctx.device, extra)
            with modelmgr.MANAGER.lock:
                clip = engine.run(loaded.pipe, image, req, ctx)
        except torch.cuda.OutOfMemoryError as e:
            modelmgr.MANAGER.evict()
            nxt = memory.next_profile(memory.LEGACY.get(extra["memory_mode"], extra["memory_mode"]))
            if ch is None or nxt is None or len(tried) == 2:
                est = "" if ch is None else f"; estimates: {_gib(ch.estimates)}"
                free = (memory.free_vram(ctx.device) or 0) / memory.GIB
                modes = " then ".join(map(str, tried))
                raise RuntimeError(f"{engine.id} ran out of GPU memory with memory_mode {modes} "
                                   f"({free:.1f} GiB free now{est}): {e}") from None
            ctx.log.warning("%s: out of memory under %s, retrying once with %s", engine.id,
                            extra["memory_mode"], nxt)
            extra["memory_mode"] = nxt
            continue
        clip.meta["speedups"] = loaded.info
        clip.meta["memory"] = {"profile": extra.get("memory_mode"), "tried": tried,
                               "estimate": ch.describe() if ch is not None else None}
        return clip
    raise AssertionError("unreachable")


def _gib(d: dict[str, int]) -> str:
    return ", ".join(f"{k} {v / memory.GIB:.1f} GiB" for k, v in d.items())
