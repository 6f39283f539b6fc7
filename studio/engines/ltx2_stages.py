"""LTX-2's two-stage recipe (diffusers' documented one): stage 1 at half the size with the request's
steps and guidance, returning latents; the ×2 spatial latent upsampler; stage 2 at full size with 3
steps on the distilled sigmas (re-noised to the first), CFG 1 and no STG/modality passes, with an
optional distilled LoRA switched on for it.  The upsampler comes from `models/ltx2/latent_upsampler/`
(a diffusers folder, config shipped in `studio/configs/ltx2/latent_upsampler/`) or the weights'
folder; it is loaded once per pipeline."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..request import GenerationRequest

log = logging.getLogger(__name__)

STAGE2_SIGMAS = [0.909375, 0.725, 0.421875]
UPSAMPLER_FETCH = 'hf download Lightricks/LTX-2 --include "latent_upsampler/*" --local-dir models/ltx2'


def stage_requests(engine: Any, req: GenerationRequest) -> tuple[GenerationRequest, GenerationRequest]:
    """The two stages as requests (for the estimate): half size at the request's steps, then full size
    at 3 steps with one pass each."""
    one = copy.copy(req)
    one.width, one.height = req.width // 2, req.height // 2
    two = copy.copy(req)
    two.steps, two.guidance = engine.STAGE2_STEPS, 1.0
    two.extra = dict(req.extra, stg_scale=0.0, modality_scale=1.0)
    return one, two


def upsampler_dir(engine: Any) -> Path | None:
    """A diffusers `latent_upsampler/` folder: models/ltx2/, then the weights' folder."""
    from .. import modelmgr
    from .loading import _folder_ok

    st = engine.status()
    cands = [modelmgr.models_dir() / engine.engine_dir / "latent_upsampler"]
    if st.present and st.path:
        cands.append(Path(st.path) / "latent_upsampler")
    return next((c for c in cands if c.is_dir() and _folder_ok(c)), None)


def _upsampler(engine: Any, pipe: Any) -> Any:
    cached = pipe.__dict__.get("_studio_upsampler")
    if cached is not None:
        return cached
    from diffusers.pipelines.ltx2 import LTX2LatentUpsamplePipeline
    from diffusers.pipelines.ltx2.latent_upsampler import LTX2LatentUpsamplerModel

    from ..weights import WeightsError

    d = upsampler_dir(engine)
    if d is None:
        raise WeightsError(
            f"two_stage=True needs LTX-2's latent upsampler in models/{engine.engine_dir}/"
            f"latent_upsampler/; get it with: {UPSAMPLER_FETCH}"
        )
    model = LTX2LatentUpsamplerModel.from_pretrained(
        str(d), torch_dtype=pipe.vae.dtype, local_files_only=True
    )
    model.to(pipe._execution_device)
    up = LTX2LatentUpsamplePipeline(vae=pipe.vae, latent_upsampler=model)
    up.set_progress_bar_config(disable=True)
    pipe.__dict__["_studio_upsampler"] = up
    return up


def run_two_stage(engine: Any, pipe: Any, kwargs: dict[str, Any], req: GenerationRequest) -> Any:
    """Stage 1 → ×2 latent upsample → stage 2; returns stage 2's output (frames and sound)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    from .. import loras
    from ..request import LoraRef

    up = _upsampler(engine, pipe)
    one = dict(kwargs, width=req.width // 2, height=req.height // 2, output_type="latent", return_dict=False)
    video_latents, audio_latents = pipe(**one)
    big = up(latents=video_latents, output_type="latent", return_dict=False)[0]
    orig = pipe.scheduler
    pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(
        orig.config, use_dynamic_shifting=False, shift_terminal=None
    )
    stage2_lora = str(req.extra.get("stage2_lora") or "")
    if stage2_lora:
        loras.apply_loras(pipe, engine, [*req.loras, LoraRef(stage2_lora, 1.0)])
    two = dict(
        kwargs,
        latents=big,
        audio_latents=audio_latents,
        width=req.width,
        height=req.height,
        num_inference_steps=len(STAGE2_SIGMAS),
        sigmas=STAGE2_SIGMAS,
        noise_scale=STAGE2_SIGMAS[0],
        guidance_scale=1.0,
        stg_scale=0.0,
        modality_scale=1.0,
        audio_guidance_scale=1.0,
        audio_stg_scale=0.0,
        audio_modality_scale=1.0,
    )
    cb, n1 = kwargs.get("callback_on_step_end"), int(kwargs["num_inference_steps"])
    if cb is not None:  # stage 2's steps count on from stage 1's
        two["callback_on_step_end"] = lambda p, i, t, kw: cb(p, i + n1, t, kw)
    try:
        return pipe(**two)
    finally:
        pipe.scheduler = orig
        if stage2_lora:
            loras.apply_loras(pipe, engine, list(req.loras))
