"""`hunyuanvideo1.5-i2v`: HunyuanVideo 1.5 image-to-video 480p (diffusers
`HunyuanVideo15ImageToVideoPipeline`, 8.3B).

The pipeline takes no size: it picks a bucket of about `target_size`² pixels on the VAE's 16-pixel
grid from the image's aspect (848×480 for 16:9, 640×640 for 1:1).  `plan` computes the same bucket
from the image's header, so the ledger shows the size before anything runs; the request's own
width/height are ignored (hidden in the UI).  Guidance goes through the pipeline's guider
(classifier-free, 6.0 by default), which runs the transformer twice a step at batch 1.
diffusers has no LoRA loader for HunyuanVideo 1.5, so this engine takes no LoRAs.
"""

from __future__ import annotations

import copy
import json
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..clip import ClipSpec
from ..params import SPEC, Param
from .diffusion import DiffusionEngine

if TYPE_CHECKING:
    from ..context import RunContext
    from ..request import GenerationRequest

NO_LORA = (
    "HunyuanVideo 1.5 takes no LoRAs here: diffusers 0.42.1 has no LoRA loader for "
    "HunyuanVideo15ImageToVideoPipeline"
)


def bucket_size(width: int, height: int, target: int = 640, grid: int = 16) -> tuple[int, int]:
    """(width, height) of the bucket the pipeline picks for an image of this size (diffusers'
    `HunyuanVideo15ImageProcessor.calculate_default_height_width`)."""
    from diffusers.pipelines.hunyuan_video1_5.image_processor import HunyuanVideo15ImageProcessor

    proc = HunyuanVideo15ImageProcessor(vae_scale_factor=grid, do_resize=False)
    h, w = proc.calculate_default_height_width(height=height, width=width, target_size=target)
    return int(w), int(h)


class HunyuanVideo15I2VEngine(DiffusionEngine):
    """HunyuanVideo 1.5 I2V 480p: the size follows the image's aspect."""

    id = "hunyuanvideo1.5-i2v"
    family = "hunyuanvideo1.5-i2v"
    label = "HunyuanVideo 1.5 I2V 480p"
    description = "8.3B image-to-video; the size follows the image's aspect (848x480 for 16:9). Frames 4k+1."
    # as the diffusers docs name the t2v repo ("HunyuanVideo-1.5-Diffusers-480p_t2v"); the pipeline
    # docstring's "HunyuanVideo-1.5-480p_i2v" lacks "Diffusers-"
    repo = "hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-480p_i2v"
    engine_dir = "hunyuanvideo1.5-i2v"
    pipeline_class = "HunyuanVideo15ImageToVideoPipeline"
    denoiser = "transformer"
    dtype_pref = "bf16"
    supports_loras = False
    no_lora_reason = NO_LORA
    uses_callbacks = False  # the pipeline has no callback_on_step_end: steps are seen at the scheduler
    embed_methods = ("encode_prompt", "encode_image")
    tokenizer_repos: ClassVar[tuple[str, ...]] = ("Qwen/Qwen2.5-VL-7B-Instruct",)
    extra_tokenizer_repos: ClassVar[dict[str, tuple[str, ...]]] = {"tokenizer_2": ("google/byt5-small",)}
    single_files = ""
    ignores: ClassVar[tuple[str, ...]] = ("width", "height")
    spec_overrides: ClassVar[dict[str, Param]] = {
        "steps": SPEC["steps"].override(default=50),
        "guidance": SPEC["guidance"].override(default=6.0),
        "frames": SPEC["frames"].override(default=121, min=5, max=241, step=4, frame_rule=(4, 1)),
        "fps": SPEC["fps"].override(default=24.0, max=60),
    }

    def latent_ratios(self) -> tuple[int, int]:
        """16× space, 4× time."""
        return 16, 4

    def bucket_args(self, pipe: Any = None) -> tuple[int, int]:
        """(target_size, grid): from a loaded pipeline, else the shipped configs (640 and 16 for 480p)."""
        if pipe is not None:
            return int(pipe.target_size), int(pipe.vae_scale_factor_spatial)
        from .loading import configs_dir

        def cfg(name: str) -> dict[str, Any]:
            p = configs_dir(self.id) / name / "config.json"
            return json.loads(p.read_text()) if p.is_file() else {}

        return (
            int(cfg("transformer").get("target_size", 640)),
            int(cfg("vae").get("spatial_compression_ratio", 16)),
        )

    def sized(self, req: GenerationRequest) -> GenerationRequest:
        """The request with width/height set to the bucket of its image."""
        from PIL import Image

        try:
            with Image.open(req.image) as im:
                w, h = im.size
        except (OSError, ValueError) as e:
            raise ValueError(
                f"image={req.image!r} could not be read to pick HunyuanVideo's size: {e}"
            ) from None
        out = copy.copy(req)
        out.width, out.height = bucket_size(w, h, *self.bucket_args())
        return out

    def plan(self, req: GenerationRequest) -> ClipSpec:
        """The bucket size of the image (what the pipeline will make), known before the run."""
        s = self.sized(req)
        return ClipSpec(frames=req.frames, fps=float(req.fps), width=s.width, height=s.height)

    def estimate(self, req: GenerationRequest, device: str) -> dict[str, Any]:
        """The estimate at the bucket size."""
        return super().estimate(self.sized(req), device)

    def generate(self, image: np.ndarray, req: GenerationRequest, ctx: RunContext) -> Any:
        """Run at the bucket size of this image (the array, so it need not be re-read)."""
        from .profiles import generate

        sized = copy.copy(req)
        sized.width, sized.height = bucket_size(image.shape[1], image.shape[0], *self.bucket_args())
        return generate(self, image, sized, ctx)

    def run(self, pipe: Any, image: np.ndarray, req: GenerationRequest, ctx: RunContext) -> Any:
        """Guidance through the guider for this run; the image goes in whole (the pipeline crops)."""
        if req.loras:
            from ..loras import LoraError

            raise LoraError(NO_LORA)
        sized = copy.copy(req)
        sized.width, sized.height = bucket_size(image.shape[1], image.shape[0], *self.bucket_args(pipe))
        orig = pipe.guider
        pipe.guider = orig.new(guidance_scale=float(req.guidance))
        try:
            return super().run(pipe, image, sized, ctx)
        finally:
            pipe.guider = orig

    def pipe_kwargs(self, pipe: Any, image: Any, req: GenerationRequest, generator: Any) -> dict[str, Any]:
        """HunyuanVideo 1.5 arguments (no size: the pipeline picks the same bucket as `plan`)."""
        return dict(
            image=image,
            prompt=req.prompt,
            negative_prompt=req.negative_prompt or "",
            num_frames=req.frames,
            num_inference_steps=req.steps,
            generator=generator,
        )
