"""`wan-i2v` (Wan 2.1 I2V 14B 480P) and `wan2.2-ti2v` (Wan 2.2 TI2V 5B): frames 4k+1."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from ..params import SPEC, Param
from .diffusion import DiffusionEngine

if TYPE_CHECKING:
    from ..request import GenerationRequest


def _ensure_ftfy() -> None:
    """diffusers' Wan prompt cleaning calls `ftfy.fix_text`; without ftfy, pass text through as is."""
    import importlib.util
    import logging
    from types import SimpleNamespace

    from diffusers.pipelines.wan import pipeline_wan_i2v as mod
    if hasattr(mod, "ftfy"):
        return
    if importlib.util.find_spec("ftfy") is not None:
        import ftfy
        mod.ftfy = ftfy
        return
    logging.getLogger(__name__).warning("ftfy is not installed: Wan prompts are used without text fixing")
    mod.ftfy = SimpleNamespace(fix_text=lambda text: text)


FEW_STEP_STEPS, FEW_STEP_SHIFT = 4, 5.0
FEW_STEP = Param("few_step", bool, False, "Fast preset (changes the output): 4 steps, CFG 1 and flow shift 5 "
                 "for a step-distill LoRA you provide (lightx2v-style); needs that LoRA in the request.",
                 advanced=True)


def _shift_kw(sched: Any, shift: float) -> dict[str, Any]:
    """The scheduler config key that holds the flow shift (UniPC: flow_shift; Euler: shift)."""
    return {"flow_shift": shift} if "flow_shift" in sched.config else {"shift": shift}


class WanI2VEngine(DiffusionEngine):
    """Wan 2.1 image-to-video 14B (480P); LoRAs through the pipeline's loader."""

    id = "wan-i2v"
    family = "wan2.1-i2v-14b"
    label = "Wan 2.1 I2V 14B 480P"
    description = "High-quality image-to-video; 40 GB+ GPU or offload. Frames 4k+1."
    repo = "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers"
    engine_dir = "wan-i2v"
    pipeline_class = "WanImageToVideoPipeline"
    denoiser = "transformer"
    lora_mode = "pipeline"
    speed_tiers = True
    embed_methods = ("encode_prompt", "encode_image")
    dtype_pref = "bf16"
    tokenizer_repos: ClassVar[tuple[str, ...]] = ("google/umt5-xxl",)
    single_files: ClassVar[str] = (
        "hf download Comfy-Org/Wan_2.1_ComfyUI_repackaged "
        "split_files/diffusion_models/wan2.1_i2v_480p_14B_fp8_e4m3fn.safetensors "
        "split_files/text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors "
        "split_files/clip_vision/clip_vision_h.safetensors split_files/vae/wan_2.1_vae.safetensors")
    spec_overrides: ClassVar[dict[str, Param]] = {
        "steps": SPEC["steps"].override(default=40),
        "guidance": SPEC["guidance"].override(default=5.0),
        "frames": SPEC["frames"].override(default=33, min=5, max=161, step=4, frame_rule=(4, 1)),
        "fps": SPEC["fps"].override(default=16.0, max=60),
        "width": SPEC["width"].override(default=832, min=16, max=1280, step=16, multiple_of=16),
        "height": SPEC["height"].override(default=480, min=16, max=1280, step=16, multiple_of=16),
    }

    preview_layout = "bcthw"

    def normalize_latents(self, pipe: Any, z: Any) -> Any:
        """(z − mean) / std with the VAE's per-channel statistics, as the pipeline does."""
        import torch
        cfg = pipe.vae.config
        mean = torch.tensor(cfg.latents_mean).view(1, -1, 1, 1, 1)
        std = torch.tensor(cfg.latents_std).view(1, -1, 1, 1, 1)
        return (z.cpu() - mean) / std

    extra_params: ClassVar[dict[str, Param]] = {"few_step": FEW_STEP}

    def check_request(self, req: GenerationRequest) -> None:
        """The few-step preset needs the user's step-distill LoRA (lightx2v-style) in the request."""
        super().check_request(req)
        if self.speed_tier(req) == "few_step" and not req.loras:
            raise ValueError("few_step=True (speed=few_step) needs a step-distill LoRA (e.g. a lightx2v "
                             "4-step LoRA) in loras; none was given")

    def fast_notes(self, req: GenerationRequest) -> list[str]:
        """The few-step preset changes the output (and what it sets)."""
        notes = super().fast_notes(req)
        if self.speed_tier(req) == "few_step":
            notes.append(f"fast preset few_step: {FEW_STEP_STEPS} steps, CFG 1, shift {FEW_STEP_SHIFT} "
                         f"with the distill LoRA {', '.join(lr.name for lr in req.loras)}; this changes the "
                         f"output (the request's steps {req.steps} and guidance {req.guidance} are replaced)")
        return notes

    @staticmethod
    def _few_step(req: GenerationRequest) -> GenerationRequest:
        """The request as the few-step preset runs it (4 steps, CFG 1)."""
        import copy
        fast = copy.copy(req)
        fast.steps, fast.guidance = FEW_STEP_STEPS, 1.0
        return fast

    def seconds_estimate(self, req: GenerationRequest, device: str) -> float:
        """With `few_step`, the estimate of the 4 steps at CFG 1 that really run (the ledger and the
        service's max_seconds limit see the preset's cost, not the replaced steps')."""
        few = self.speed_tier(req) == "few_step"
        return super().seconds_estimate(self._few_step(req) if few else req, device)

    def run(self, pipe: Any, image: Any, req: GenerationRequest, ctx: Any) -> Any:
        """With `few_step`, the run uses 4 steps, CFG 1 and the preset's flow shift."""
        if not self.speed_tier(req) == "few_step":
            return super().run(pipe, image, req, ctx)
        fast = self._few_step(req)
        orig = pipe.scheduler
        pipe.scheduler = type(orig).from_config(orig.config, **_shift_kw(orig, FEW_STEP_SHIFT))
        try:
            return super().run(pipe, image, fast, ctx)
        finally:
            pipe.scheduler = orig

    def pipe_kwargs(self, pipe: Any, image: Any, req: GenerationRequest, generator: Any) -> dict[str, Any]:
        """Wan arguments."""
        _ensure_ftfy()
        return dict(image=image, prompt=req.prompt, negative_prompt=req.negative_prompt or None,
                    height=req.height, width=req.width, num_frames=req.frames,
                    num_inference_steps=req.steps, guidance_scale=req.guidance, generator=generator)


class Wan22TI2VEngine(WanI2VEngine):
    """Wan 2.2 TI2V 5B: first-frame conditioning via expanded timesteps, no image encoder."""

    id = "wan2.2-ti2v"
    family = "wan2.2-ti2v-5b"
    label = "Wan 2.2 TI2V 5B"
    description = "Text+image to video at 720P/24 fps on a 24 GB GPU. Frames 4k+1, sizes multiple of 32."
    repo = "Wan-AI/Wan2.2-TI2V-5B-Diffusers"
    engine_dir = "wan2.2-ti2v"
    single_files = ""
    spec_overrides: ClassVar[dict[str, Param]] = {
        **WanI2VEngine.spec_overrides,
        "fps": SPEC["fps"].override(default=24.0, max=60),
        "width": SPEC["width"].override(default=704, min=32, max=1280, step=32, multiple_of=32),
        "height": SPEC["height"].override(default=480, min=32, max=1280, step=32, multiple_of=32),
    }

    def load_kwargs(self) -> dict[str, Any]:
        """The 5B folder is a WanPipeline layout: no image encoder, expanded timesteps."""
        return {"image_encoder": None, "image_processor": None, "expand_timesteps": True}


class Wan22I2VA14BEngine(WanI2VEngine):
    """Wan 2.2 I2V A14B: two 14B experts, the high-noise one above `boundary_ratio` of the
    schedule and the low-noise one below (diffusers' `transformer` / `transformer_2`)."""

    id = "wan2.2-i2v-a14b"
    family = "wan2.2-i2v-a14b"
    label = "Wan 2.2 I2V A14B"
    description = "Two-expert 14B image-to-video (high/low noise); 480P/720P. Frames 4k+1."
    repo = "Wan-AI/Wan2.2-I2V-A14B-Diffusers"
    engine_dir = "wan2.2-i2v-a14b"
    single_files = ""
    experts: ClassVar[tuple[str, ...]] = ("transformer", "transformer_2")
    """The denoisers a LoRA pair goes into (high-noise, low-noise): the hook for the LoRA loader."""

    def load_kwargs(self) -> dict[str, Any]:
        """No CLIP image encoder; the boundary ratio comes from the model_index."""
        return {"image_encoder": None, "image_processor": None}

    def expert_modules(self, pipe: Any) -> dict[str, Any]:
        """{'high_noise': transformer, 'low_noise': transformer_2} of a loaded pipeline."""
        return {"high_noise": pipe.transformer, "low_noise": pipe.transformer_2}
