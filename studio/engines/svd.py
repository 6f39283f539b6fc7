"""`svd` / `svd-xt`: Stable Video Diffusion (image only).

SVD takes no text.  The prompt's intensity words choose the motion bucket (unless `motion_bucket`
is given) and the user is told, in the log and `clip.meta["notes"]`, that other text is ignored.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, ClassVar

from ..params import SPEC, Param
from .diffusion import DiffusionEngine

if TYPE_CHECKING:
    from ..request import GenerationRequest

# (words, bucket): the first group whose word appears wins; no word -> 127 (the model default)
INTENSITY: tuple[tuple[tuple[str, ...], int], ...] = (
    (("extreme", "chaotic", "explosive", "very fast", "frantic"), 255),
    (("fast", "strong", "dramatic", "intense", "wild", "rapid", "energetic"), 200),
    (("slight", "subtle", "gentle", "slow", "slowly", "calm", "soft", "barely", "still"), 50),
)


def motion_bucket_from_prompt(prompt: str) -> tuple[int, str | None]:
    """(motion bucket, the intensity word that chose it) from a prompt's words."""
    text = prompt.lower()
    for words, bucket in INTENSITY:
        for w in words:
            if re.search(rf"\b{re.escape(w)}\b", text):
                return bucket, w
    return 127, None


class SVDEngine(DiffusionEngine):
    """Stable Video Diffusion (14 frames)."""

    id = "svd"
    family = "svd"
    embed_methods = ("_encode_image",)
    cfg_batched = True
    label = "Stable Video Diffusion"
    description = "Image-only motion (the prompt only sets motion intensity)."
    repo = "stabilityai/stable-video-diffusion-img2vid"
    engine_dir = "svd"
    pipeline_class = "StableVideoDiffusionPipeline"
    uses_prompt = False
    ignores: ClassVar[tuple[str, ...]] = ("negative_prompt",)
    native_frames: ClassVar[int] = 14
    spec_overrides: ClassVar[dict[str, Param]] = {
        "steps": SPEC["steps"].override(default=25),
        "guidance": SPEC["guidance"].override(default=3.0, min=1.0, max=10.0,
                                              help="Maximum guidance (rises from 1 over the frames)."),
        "frames": SPEC["frames"].override(default=14, max=32),
        "fps": SPEC["fps"].override(default=7.0, max=30),
        "width": SPEC["width"].override(default=512, min=64, max=1024, step=64, multiple_of=64),
        "height": SPEC["height"].override(default=320, min=64, max=1024, step=64, multiple_of=64),
    }
    extra_params: ClassVar[dict[str, Param]] = {
        "motion_bucket": Param("motion_bucket", int, None, "Motion amount 1–255 (default: from the "
                               "prompt's intensity words, else 127).", min=1, max=255, optional=True),
        "noise_aug": Param("noise_aug", float, 0.02, "Noise added to the conditioning image (more = "
                           "less like the image, more motion).", min=0.0, max=1.0, step=0.01, advanced=True),
        "decode_chunk": Param("decode_chunk", int, 8, "Frames the VAE decodes at once (less = less "
                              "memory).", min=1, max=32, advanced=True),
    }

    def bucket(self, req: GenerationRequest) -> int:
        """The motion bucket: explicit, else from the prompt."""
        mb = req.extra.get("motion_bucket")
        return int(mb) if mb is not None else motion_bucket_from_prompt(req.prompt)[0]

    def notes(self, req: GenerationRequest) -> list[str]:
        """Tell the user what of the prompt was used."""
        if not req.prompt.strip() and not req.negative_prompt.strip():
            return []
        bucket, word = motion_bucket_from_prompt(req.prompt)
        used = (f"motion bucket {self.bucket(req)} (set explicitly)" if req.extra.get("motion_bucket")
                is not None else f"motion bucket {bucket} from the word {word!r}" if word
                else f"motion bucket {bucket} (no intensity word found)")
        return [f"SVD ignores text: only intensity words are used ({used}); the rest of the prompt "
                f"and the negative prompt have no effect"]

    def pipe_kwargs(self, pipe: Any, image: Any, req: GenerationRequest, generator: Any) -> dict[str, Any]:
        """SVD arguments: guidance ramps from 1 to `guidance` over the frames."""
        return dict(image=image, height=req.height, width=req.width, num_frames=req.frames,
                    num_inference_steps=req.steps, min_guidance_scale=1.0, max_guidance_scale=req.guidance,
                    fps=max(1, int(round(req.fps)) - 1), motion_bucket_id=self.bucket(req),
                    noise_aug_strength=float(req.extra.get("noise_aug", 0.02)),
                    decode_chunk_size=int(req.extra.get("decode_chunk", 8)), generator=generator)


class SVDXTEngine(SVDEngine):
    """Stable Video Diffusion XT (25 frames)."""

    id = "svd-xt"
    label = "Stable Video Diffusion XT"
    repo = "stabilityai/stable-video-diffusion-img2vid-xt"
    engine_dir = "svd-xt"
    native_frames = 25
    spec_overrides: ClassVar[dict[str, Param]] = {
        **SVDEngine.spec_overrides,
        "frames": SPEC["frames"].override(default=25, max=48),
    }
