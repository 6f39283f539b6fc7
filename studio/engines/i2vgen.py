"""`i2vgen-xl`: Alibaba's I2VGen-XL (text + image), DDIM, 50 steps and guidance 9 by default.

The diffusers pipeline is deprecated but works; it has no step callback, so progress and cancel
come from a scheduler hook, and with transformers 5 it needs `clip_skip=None`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from ..params import SPEC, Param
from .diffusion import DiffusionEngine

if TYPE_CHECKING:
    from ..request import GenerationRequest


class I2VGenXLEngine(DiffusionEngine):
    """I2VGen-XL image-to-video."""

    id = "i2vgen-xl"
    family = "i2vgen-xl"
    label = "I2VGen-XL"
    description = "Text + image to video (DDIM, 50 steps, CFG 9). 16 GB+ GPU recommended."
    repo = "ali-vilab/i2vgen-xl"
    engine_dir = "i2vgen-xl"
    pipeline_class = "I2VGenXLPipeline"
    uses_callbacks = False
    cfg_batched = True
    embed_methods = ("encode_prompt", "_encode_image")
    spec_overrides: ClassVar[dict[str, Param]] = {
        "steps": SPEC["steps"].override(default=50),
        "guidance": SPEC["guidance"].override(default=9.0),
        "frames": SPEC["frames"].override(default=16, max=64),
        "fps": SPEC["fps"].override(default=16.0, max=60),
        "width": SPEC["width"].override(default=512, min=32, max=1280, step=32, multiple_of=32),
        "height": SPEC["height"].override(default=512, min=32, max=1280, step=32, multiple_of=32),
    }
    extra_params: ClassVar[dict[str, Param]] = {
        "decode_chunk": Param("decode_chunk", int, 1, "Frames the VAE decodes at once (more is faster "
                              "but uses more memory; same output).", min=1, max=64, advanced=True),
    }

    def pipe_kwargs(self, pipe: Any, image: Any, req: GenerationRequest, generator: Any) -> dict[str, Any]:
        """I2VGen-XL arguments; the fps is also the model's frame-rate micro-condition."""
        return dict(prompt=req.prompt, negative_prompt=req.negative_prompt or None, image=image,
                    height=req.height, width=req.width, target_fps=int(round(req.fps)),
                    num_frames=req.frames, num_inference_steps=req.steps, guidance_scale=req.guidance,
                    decode_chunk_size=int(req.extra.get("decode_chunk", 1)), generator=generator,
                    clip_skip=None)
