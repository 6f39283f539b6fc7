"""Cheap job kinds for the Ray executor tests, importable inside a Ray actor as `tests.ray_kinds`
(the repository root is on the actors' PYTHONPATH).  Registered by 'module:function' string."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from studio.context import Cancelled, RunContext

KINDS = {
    "ray-test-count": "tests.ray_kinds:count",
    "ray-test-load": "tests.ray_kinds:load_model",
}


def register() -> None:
    """Register this module's kinds in this process (the actor registers them from the same strings)."""
    from studio.jobs import register_job_kind

    for kind, ref in KINDS.items():
        register_job_kind(kind, ref)


def count(payload: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Count to n (sleeping `sleep` s before each step), writing the count; remove the file on cancel."""
    out = Path(payload["out"])
    n = int(payload["n"])
    try:
        for i in range(1, n + 1):
            time.sleep(float(payload.get("sleep", 0)))
            ctx.step("count", i, n)
            if ctx.preview and i == 1:
                ctx.preview(np.full((48, 64, 3), 200, np.uint8))
            out.write_text(str(i))
    except Cancelled:
        out.unlink(missing_ok=True)
        raise
    return {"output": str(out), "count": int(out.read_text()), "pid": os.getpid()}


def load_model(payload: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """'Load' a model into the context's cache (a sleep of `load_s`), once per process and name."""
    name = str(payload.get("model", "fake"))
    t0 = time.perf_counter()
    model = ctx.cache.get(("fake-model", name), lambda: time.sleep(float(payload.get("load_s", 0.5))) or name)
    ctx.step("load", 1, 1)
    return {"model": model, "took_s": round(time.perf_counter() - t0, 4), "pid": os.getpid()}
