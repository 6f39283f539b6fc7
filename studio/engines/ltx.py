"""`ltx-video`: Lightricks LTX-Video image-to-video (frames 8k+1, sizes a multiple of 32)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from ..params import SPEC, Param
from .diffusion import DiffusionEngine

if TYPE_CHECKING:
    from ..request import GenerationRequest


class LTXVideoEngine(DiffusionEngine):
    """LTX-Video 0.9 (2B) image-to-video; LoRAs through the pipeline's loader."""

    id = "ltx-video"
    family = "ltx-video"
    label = "LTX-Video"
    description = "Fast DiT video model; frames must be 8k+1, sizes multiples of 32."
    repo = "Lightricks/LTX-Video"
    engine_dir = "ltx-video"
    pipeline_class = "LTXImageToVideoPipeline"
    denoiser = "transformer"
    speed_tiers = True
    lora_mode = "pipeline"
    dtype_pref = "bf16"
    tokenizer_repos: ClassVar[tuple[str, ...]] = ("google/t5-v1_1-xxl",)
    spec_overrides: ClassVar[dict[str, Param]] = {
        "steps": SPEC["steps"].override(default=40),
        "guidance": SPEC["guidance"].override(default=3.0),
        "frames": SPEC["frames"].override(default=49, min=9, max=257, step=8, frame_rule=(8, 1)),
        "fps": SPEC["fps"].override(default=24.0, max=60),
        "width": SPEC["width"].override(default=704, min=32, max=1280, step=32, multiple_of=32),
        "height": SPEC["height"].override(default=480, min=32, max=1280, step=32, multiple_of=32),
    }

    preview_layout = "packed"

    def normalize_latents(self, pipe: Any, z: Any) -> Any:
        """(z − mean) · scaling_factor / std, as the pipeline's `_normalize_latents`."""
        vae = pipe.vae
        mean = vae.latents_mean.view(1, -1, 1, 1, 1).cpu().float()
        std = vae.latents_std.view(1, -1, 1, 1, 1).cpu().float()
        return (z.cpu() - mean) * float(vae.config.scaling_factor) / std

    def spatial_ratio(self, pipe: Any) -> int:
        """LTX's VAE: 32 pixels per latent pixel (the tiny test VAE: fewer)."""
        return int(pipe.vae_spatial_compression_ratio)

    def pipe_kwargs(self, pipe: Any, image: Any, req: GenerationRequest, generator: Any) -> dict[str, Any]:
        """LTX arguments (frame_rate conditions the RoPE timing)."""
        return dict(image=image, prompt=req.prompt, negative_prompt=req.negative_prompt or None,
                    height=req.height, width=req.width, num_frames=req.frames,
                    frame_rate=int(round(req.fps)), num_inference_steps=req.steps,
                    guidance_scale=req.guidance, generator=generator, max_sequence_length=128)
