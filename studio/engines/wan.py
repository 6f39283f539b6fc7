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
