"""Engine registry: ids map to engine classes, imported lazily (diffusers is heavy)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .base import Engine, WeightsStatus

if TYPE_CHECKING:
    from ..request import GenerationRequest

# id -> "module:Class"; modules are imported only when the engine is asked for.
_REGISTRY: dict[str, str] = {
    "camera": "studio.engines.camera:CameraEngine",
    "i2vgen-xl": "studio.engines.i2vgen:I2VGenXLEngine",
    "svd": "studio.engines.svd:SVDEngine",
    "svd-xt": "studio.engines.svd:SVDXTEngine",
    "ltx-video": "studio.engines.ltx:LTXVideoEngine",
    "wan-i2v": "studio.engines.wan:WanI2VEngine",
    "wan2.2-ti2v": "studio.engines.wan:Wan22TI2VEngine",
    "wan2.2-i2v-a14b": "studio.engines.wan:Wan22I2VA14BEngine",
    "ltx2": "studio.engines.ltx2:LTX2Engine",
    "hunyuanvideo1.5-i2v": "studio.engines.hunyuan15:HunyuanVideo15I2VEngine",
}

_INSTANCES: dict[str, Engine] = {}


def register(engine_id: str, target: str) -> None:
    """Add an engine as 'module:Class' (used by engine modules and tests)."""
    _REGISTRY[engine_id] = target
    _INSTANCES.pop(engine_id, None)


def engine_ids() -> list[str]:
    """All registered engine ids, the default first."""
    return list(_REGISTRY)


def get_engine(engine_id: str) -> Engine:
    """The engine for `engine_id`; an unknown id raises ValueError naming it."""
    if engine_id not in _REGISTRY:
        raise ValueError(f"engine={engine_id!r} is not one of {', '.join(_REGISTRY)}")
    if engine_id not in _INSTANCES:
        mod, _, cls = _REGISTRY[engine_id].partition(":")
        _INSTANCES[engine_id] = getattr(importlib.import_module(mod), cls)()
    return _INSTANCES[engine_id]


def check_request(req: GenerationRequest) -> GenerationRequest:
    """Validate `req` against its engine's spec (unknown engine ids included); return it.

    Raises ValueError naming the bad value.  The lookup lives here, not in `studio.request`,
    so that the request stays below the engines: engines import the request, never the reverse.
    """
    return req.check(get_engine(req.engine))


__all__ = ["Engine", "WeightsStatus", "check_request", "engine_ids", "get_engine", "register"]
