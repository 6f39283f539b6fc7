"""Which order the post chain runs in when the request says `order="auto"`, and why (for the ledger)."""

from __future__ import annotations

from .request import GenerationRequest
from .stages import Stage


def order_for(req: GenerationRequest, up: Stage | None, device: str) -> tuple[str, str | None]:
    """(order, why): the request's order, or what "auto" means here and the reason (None when
    there is no choice to explain: no interpolation, no upscale or Lanczos).

    On CUDA "auto" is the order measured faster at a Wan clip's shape (`postfx.calibration`, from
    bench/bench_post_app.py); on the CPU upscale-carry, since upscaling is the CPU chain's cost."""
    if req.order != "auto":
        return req.order, None
    interp = req.target_fps is not None or req.interpolate > 1
    if up is None or not interp or getattr(up, "model", None) == "lanczos":
        return "interpolate-first", None
    if device.startswith("cuda"):
        from postfx.calibration import cuda_order
        order, why = cuda_order()
        return order, f"order auto on CUDA = {order}: {why}"
    return "upscale-carry", ("order auto on CPU = upscale-carry: only the source frames go through "
                             "the upscaler, about half its work at ×2")


def order_notes(req: GenerationRequest, stages: list[Stage], device: str) -> list[str]:
    """The ledger's note on why the chain runs in its order, on `device` (the one `build_stages`
    decided for); empty when nothing was chosen."""
    up = None
    for s in stages:
        if s.name == "upscale":
            up = s
        elif s.name == "interpolate-upscaled":
            up = getattr(s, "upscale", None)
    why = order_for(req, up, device)[1]
    return [why] if why else []


__all__ = ["order_for", "order_notes"]
