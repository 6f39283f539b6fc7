"""The engine protocol: (image, prompt, params) -> `Clip`, plus what weights it needs."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ..audio import SoundSpec
from ..clip import Clip, ClipSpec
from ..context import RunContext
from ..params import Param, merged_spec
from ..weights import WeightsStatus

if TYPE_CHECKING:
    from ..request import GenerationRequest

__all__ = ["Engine", "WeightsStatus"]


class Engine(ABC):
    """One engine adapter.  Subclasses set the class attributes and implement `generate`."""

    id: ClassVar[str]
    family: ClassVar[str]              # LoRA family, e.g. "i2vgen-xl", "svd", "camera"
    label: ClassVar[str]
    description: ClassVar[str] = ""
    needs_weights: ClassVar[bool] = True
    uses_prompt: ClassVar[bool] = True
    supports_loras: ClassVar[bool] = False
    no_lora_reason: ClassVar[str] = ""  # said by the LoRA check when supports_loras is False
    spec_overrides: ClassVar[dict[str, Param]] = {}
    ignores: ClassVar[tuple[str, ...]] = ()  # core settings this engine does not use (hidden in the UI)
    extra_params: ClassVar[dict[str, Param]] = {}

    def spec(self) -> dict[str, Param]:
        """The core spec with this engine's ranges and defaults."""
        return merged_spec(self.spec_overrides)

    def extra_spec(self) -> dict[str, Param]:
        """Engine-only settings (e.g. SVD's motion bucket), validated into `request.extra`."""
        return dict(self.extra_params)

    def check_request(self, req: GenerationRequest) -> None:
        """Engine-specific checks beyond the spec (raise ValueError naming the value)."""

    def status(self) -> WeightsStatus:
        """Whether this engine can run now."""
        return WeightsStatus(present=True, detail="built in, no weights needed")

    def plan(self, req: GenerationRequest) -> ClipSpec:
        """The base clip's shape for this request (exact)."""
        return ClipSpec(frames=req.frames, fps=float(req.fps), width=req.width, height=req.height)

    def plan_audio(self, req: GenerationRequest) -> SoundSpec | None:
        """The sound this engine makes with the clip (rate, channels, seconds); None: it makes none.

        An engine that returns a `SoundSpec` here puts that sound in `Clip.audio`, as long as the
        frames to the sample; the ledger's audio row is made from it before the run.
        """
        return None

    def estimate(self, req: GenerationRequest, device: str) -> dict[str, float]:
        """A rough cost: {'seconds': s, 'memory_mb': mb}."""
        return {"seconds": 0.0, "memory_mb": 0.0}

    @abstractmethod
    def generate(self, image: np.ndarray, req: GenerationRequest, ctx: RunContext) -> Clip:
        """Make the base clip from an RGB uint8 H×W×3 image.  Call `ctx.step` per frame/step."""
