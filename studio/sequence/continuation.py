"""Continue from the last frame, and the colour-drift check between adjacent clips.

`continue_from_last_frame` saves the previous clip's last decoded frame as a lossless PNG beside
the new output and generates the next clip from it with any engine (studio.pipeline.generate).
`color_drift` measures how far two frames' average colours are apart (CIE76 ΔE of the mean Lab
colour); above a threshold the sequence warns, and `match_colors` can correct it with postfx.color
(the module upscaling's colour match lives in).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

DRIFT_THRESHOLD = 8.0


def color_drift(a: np.ndarray, b: np.ndarray) -> float:
    """ΔE (CIE76) between the mean Lab colours of frames `a` and `b` (postfx.color.color_drift)."""
    from postfx.color import color_drift as drift  # lazy: cv2 and the colour module load on use

    return drift(a, b)


def match_colors(frames: np.ndarray, reference: np.ndarray, ctx: Any = None) -> np.ndarray:
    """Frames (T×H×W×3) with their Lab mean and spread moved to `reference`'s (one H'×W'×3 frame).

    Uses postfx.color's statistics transfer (`match_lab_stats`): the frames show other content
    than the reference, so the pixel-wise low-frequency match upscaling uses would ghost it in.
    """
    from postfx.color import match_lab_stats

    return match_lab_stats(frames, reference)


def _start_png(out: Path) -> Path:
    out = Path(str(out).rstrip("/"))
    return out.with_name(out.name + ".start.png")


def continue_from_last_frame(clip_path: str | Path, req: Any, out: str | Path | None = None,
                             ctx: Any = None, *, color_correct: bool = False,
                             drift_threshold: float = DRIFT_THRESHOLD) -> Any:
    """Generate the next clip from the last frame of `clip_path` with `req`'s engine and settings.

    The last frame is saved as a lossless PNG (`<out>.start.png`) and becomes `req.image`.  After
    generating, the new clip's last frame is compared in colour with that start frame; drift above
    `drift_threshold` is logged as a warning and, with `color_correct`, the new clip's frames are
    colour-matched to the start frame and written again (from the lossless frames).  The manifest
    gains a "continuation" record.  Returns the pipeline's RunResult.
    """
    import cv2

    from postfx.assemble import last_frame, write_video

    from ..context import RunContext
    from ..outputs import new_output_path, write_manifest
    from ..pipeline import default_device, generate

    src = Path(str(clip_path))
    if not src.exists():
        raise ValueError(f"clip_path={str(clip_path)!r} does not exist")
    ctx = ctx or RunContext(device=default_device())
    last = last_frame(src)
    if out is None:
        from postfx.assemble import extension_for
        out = new_output_path(src.stem[:30] + "-next", extension_for(req.codec))
    png = _start_png(Path(str(out)))
    png.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(png), np.ascontiguousarray(last[:, :, ::-1])):
        raise RuntimeError(f"could not write the start frame {png}")
    h, w = last.shape[:2]
    if (req.width, req.height) != (w, h):
        log.warning("continuing %s (%d×%d) at %d×%d: the engine resizes the start frame",
                    src.name, w, h, req.width, req.height)
    new_req = dataclasses.replace(req, image=str(png), extra=dict(req.extra))
    from ..engines import get_engine
    if "anchor_start" in get_engine(new_req.engine).extra_spec():
        new_req.extra.setdefault("anchor_start", True)  # start exactly on the last frame
    try:
        res = generate(new_req, out=out, ctx=ctx)
    except BaseException:
        png.unlink(missing_ok=True)
        raise
    drift = color_drift(last, res.clip.frames[-1])
    record: dict[str, Any] = {"from": str(src.resolve()), "start_frame": png.name,
                              "drift_end": round(drift, 3), "threshold": drift_threshold,
                              "color_corrected": False}
    if drift > drift_threshold:
        log.warning("the continued clip drifts %.1f ΔE in colour from its start frame (threshold %g)%s",
                    drift, drift_threshold, "; correcting" if color_correct else "")
        if color_correct:
            frames = match_colors(res.clip.frames, last, ctx)
            res.clip = res.clip.replace(frames=frames)
            codec = res.manifest.get("output", {}).get("codec")
            req_d = res.manifest.get("request", {})
            write_video(res.clip, out, codec=codec, crf=req_d.get("crf", 18),
                        preset=req_d.get("preset", "medium"), ctx=ctx)
            record.update(color_corrected=True, drift_after=round(color_drift(last, frames[-1]), 3))
    res.manifest["continuation"] = record
    write_manifest(res.output, res.manifest)
    return res
