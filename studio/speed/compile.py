"""The `exact` tier's compilation: the denoiser's repeated blocks, each compiled on its own.

Each block's `forward` is replaced by `torch.compile(forward)` (an instance attribute), so the
blocks share one graph (their code is the same; weights are graph inputs), switching Wan 2.2's
experts does not recompile, and diffusers' cache hooks, which wrap `forward` later, stay outside
the compiled code and call into it.  Inductor's FX-graph and AOT caches live in a persistent
folder (`models/.cache/inductor` or `$STUDIO_COMPILE_CACHE`), so a second worker start reuses
the kernels of the first.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from .. import modelmgr


def repeated_blocks(model: Any) -> list[torch.nn.Module]:
    """The model's repeated transformer blocks (diffusers' `_repeated_blocks` class names, or the
    studio's own list of block types)."""
    names = set(getattr(model, "_repeated_blocks", None) or ()) or set(modelmgr.COMPILE_BLOCKS)
    return [m for m in model.modules() if type(m).__name__ in names]


def compile_blocks(model: Any, backend: str | None = None) -> dict[str, Any]:
    """Compile every repeated block of `model` (once per model; a second call does nothing)."""
    if model.__dict__.get("_studio_compiled_blocks"):
        return dict(model.__dict__["_studio_compiled_blocks"])
    cache = modelmgr.persistent_compile_cache()
    backend = backend or os.environ.get("STUDIO_COMPILE_BACKEND") or "inductor"
    blocks = repeated_blocks(model)
    for b in blocks:
        b.forward = torch.compile(b.forward, backend=backend, dynamic=False, fullgraph=False)
    info = {"compiled_blocks": len(blocks), "compile_backend": backend, "compile_cache": str(cache)}
    model.__dict__["_studio_compiled_blocks"] = info
    return dict(info)


def uncompile_blocks(model: Any) -> int:
    """Undo `compile_blocks` (the class's own forward shows again); returns how many blocks."""
    if not model.__dict__.pop("_studio_compiled_blocks", None):
        return 0
    blocks = repeated_blocks(model)
    for b in blocks:
        b.__dict__.pop("forward", None)
    return len(blocks)
