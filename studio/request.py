"""`GenerationRequest`: everything one generation needs, validated against the spec."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Protocol

from .params import SPEC, Param


class EngineSpec(Protocol):
    """What `GenerationRequest.check` needs of an engine (`studio.engines.base.Engine` has it)."""

    id: str

    def spec(self) -> dict[str, Param]: ...

    def extra_spec(self) -> dict[str, Param]: ...

    def check_request(self, req: GenerationRequest) -> None: ...


@dataclass
class LoraRef:
    """A LoRA from the library by name, with its strength."""

    name: str
    strength: float = 1.0


@dataclass
class GenerationRequest:
    """The image, motion prompt, engine, LoRAs, base-clip settings and post-processing choices."""

    image: str = ""
    prompt: str = SPEC["prompt"].default
    negative_prompt: str = SPEC["negative_prompt"].default
    engine: str = SPEC["engine"].default
    frames: int = SPEC["frames"].default
    fps: float = SPEC["fps"].default
    width: int = SPEC["width"].default
    height: int = SPEC["height"].default
    seed: int = SPEC["seed"].default
    steps: int = SPEC["steps"].default
    guidance: float = SPEC["guidance"].default
    motion: str | None = None
    speed: float | None = None
    interpolate: int = SPEC["interpolate"].default
    target_fps: float | None = None
    upscale: int = SPEC["upscale"].default
    upscaler: str = SPEC["upscaler"].default
    color_match: bool = SPEC["color_match"].default
    order: str = SPEC["order"].default
    scene_threshold: float = SPEC["scene_threshold"].default
    codec: str | None = None
    crf: int = SPEC["crf"].default
    preset: str = SPEC["preset"].default
    audio: str | None = None
    audio_fade: float = SPEC["audio_fade"].default
    audio_mode: str = SPEC["audio_mode"].default
    audio_gain: float = SPEC["audio_gain"].default
    loras: list[LoraRef] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # engine-specific settings

    def check(self, engine: EngineSpec | None = None) -> GenerationRequest:
        """Validate every field against `engine`'s spec; raise ValueError naming the bad value.

        The engine is passed in (the request knows no engine registry):
        `studio.engines.check_request(req)` looks it up by `self.engine` and calls this.
        """
        if engine is None:
            raise TypeError("GenerationRequest.check needs the engine: call "
                            "studio.engines.check_request(req), which looks it up by req.engine")
        if engine.id != self.engine:
            raise ValueError(f"engine={self.engine!r} checked against engine {engine.id!r}")
        spec = engine.spec()
        for f in fields(self):
            if f.name in spec:
                setattr(self, f.name, spec[f.name].check(getattr(self, f.name)))
        self.check_post_combination()
        if self.target_fps is not None and self.target_fps < self.fps:
            raise ValueError(f"target_fps={self.target_fps:g} is below the base fps {self.fps:g}")
        for lr in self.loras:
            if not (-4.0 <= float(lr.strength) <= 4.0):
                raise ValueError(f"LoRA {lr.name!r} strength={lr.strength} is outside -4..4")
        from .loras import check_refs
        check_refs(engine, self.loras)  # names, files, keys against the engine's layers
        extra_spec = engine.extra_spec()
        unknown = sorted(set(self.extra) - set(extra_spec))
        if unknown:
            raise ValueError(f"engine {self.engine!r} has no setting(s): {', '.join(unknown)}")
        self.extra = {k: p.check(self.extra.get(k, p.default)) for k, p in extra_spec.items()}
        engine.check_request(self)
        return self

    def check_post_combination(self) -> None:
        """Interpolation is by a factor or to a target fps, never both (ValueError naming both)."""
        if self.interpolate > 1 and self.target_fps is not None:
            raise ValueError(f"give interpolate={self.interpolate} or target_fps={self.target_fps}, not both")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the manifest's `request`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GenerationRequest:
        """Rebuild from `to_dict`; unknown keys are an error."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown request field(s): {', '.join(unknown)}")
        d = dict(d)
        d["loras"] = [lr if isinstance(lr, LoraRef) else LoraRef(**lr) for lr in d.get("loras", [])]
        return cls(**d)
