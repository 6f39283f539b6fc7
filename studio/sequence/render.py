"""Render a sequence: plan, conform each entry, blend transitions, one encode, manifest beside it.

Frames are composed into one buffer (in memory, or a memory-mapped temp file when large) that
`postfx.assemble.write_video` encodes once, with the audio bed.  Everything is planned and checked
before the first frame is decoded; a cancel (via `ctx.step`) leaves no output and no temp files.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..clip import Clip
from ..context import RunContext
from .conform import fit_frame, retime, source_indices, used_span
from .continuation import color_drift, match_colors
from .plan import EntryPlan, SequencePlan, plan_sequence
from .spec import SequenceSpec, load_spec, parse_color
from .titles import render_title
from .transitions import blend, progress

log = logging.getLogger(__name__)

MEMORY_LIMIT_BYTES = 768 * 2**20   # larger outputs are composed in a memory-mapped temp file


def _buffer(n: int, h: int, w: int, tmpdir: Path) -> np.ndarray:
    if n * h * w * 3 <= MEMORY_LIMIT_BYTES:
        return np.empty((n, h, w, 3), np.uint8)
    return np.memmap(tmpdir / "frames.u8", dtype=np.uint8, mode="w+", shape=(n, h, w, 3))


def _read(path: Path, start: int = 0, count: int | None = None) -> Clip:
    """Source frames `start` .. `start + count - 1` only: the decoder seeks and stops."""
    from postfx.assemble import read_video

    return read_video(path, count, start_frame=start)


def _clip_frames(plan: SequencePlan, e: EntryPlan, ctx: RunContext) -> np.ndarray:
    """Source frames of a video entry after trim, speed and fps change (source size).

    Only the span the trim uses is decoded (`used_span`), never the whole file."""
    c = plan.spec.clips[e.index]
    n_src, resample = e.source.frames, plan.spec.output.resample
    lo, hi = used_span(n_src, e.source.fps, plan.fps, c.trim_in, c.trim_out, c.speed, resample)
    src = _read(e.path, lo, hi - lo)
    frames = retime(src, plan.fps, c.trim_in, c.trim_out, c.speed, resample, ctx, first=lo, n_total=n_src)
    if frames.shape[0] != e.frames:
        raise RuntimeError(f"clips[{e.index}] gave {frames.shape[0]} frames but the plan said {e.frames}")
    return frames


def _title_frame(plan: SequencePlan, e: EntryPlan, pad: tuple[int, int, int]) -> np.ndarray:
    c = plan.spec.clips[e.index]
    bg = None
    if c.over is not None:
        src_entry = plan.entries[c.over.clip]
        oc = plan.spec.clips[c.over.clip]
        info = src_entry.source
        i = int(source_indices(1, 1.0, info.fps, info.frames, oc.trim_in + c.over.time)[0])
        src = _read(src_entry.path, i, 1)
        bg = fit_frame(src.frames[0], plan.width, plan.height, oc.fit or plan.spec.output.fit, pad)
    return render_title(c.title, plan.width, plan.height, font_size=c.font_size, color=c.color,
                        background=c.background, frame=bg, dim=c.over.dim if c.over else 0.0)


def compose(plan: SequencePlan, ctx: RunContext, buf: np.ndarray) -> list[str]:
    """Fill `buf` (plan.frames × H × W × 3) with the whole timeline; return colour-drift warnings."""
    spec = plan.spec
    pad = parse_color(spec.output.pad_color, "output.pad_color")
    total = sum(e.frames for e in plan.entries)
    done = 0
    warnings: list[str] = []
    prev_last: tuple[int, np.ndarray] | None = None   # (index, last frame) of the previous video clip
    for e in plan.entries:
        c = spec.clips[e.index]
        if e.kind == "title":
            still = _title_frame(plan, e, pad)
            get = lambda m, still=still: still
        else:
            src = _clip_frames(plan, e, ctx)
            fit = c.fit or spec.output.fit
            get = lambda m, src=src, fit=fit: fit_frame(src[m], plan.width, plan.height, fit, pad)
            if prev_last is not None:
                pi, ref = prev_last
                first = get(0)
                drift = color_drift(ref, first)
                if c.color_match:
                    frames = np.stack([get(m) for m in range(e.frames)])
                    frames = match_colors(frames, ref, ctx)
                    log.info("clips[%d] colour-matched to clips[%d]: ΔE %.1f -> %.1f", e.index, pi, drift,
                             color_drift(ref, frames[0]))
                    get = lambda m, frames=frames: frames[m]
                elif drift > spec.drift_threshold:
                    msg = (f"clips[{e.index}] starts {drift:.1f} ΔE away in colour from the end of "
                           f"clips[{pi}] (threshold {spec.drift_threshold:g}); set clips[{e.index}]"
                           ".color_match to correct it")
                    warnings.append(msg)
                    log.warning(msg)
        kind = e.transition_in
        for m in range(e.frames):
            done += 1
            ctx.step("sequence", done, total)
            frame = get(m)
            pos = e.start + m
            if m < e.overlap_in:
                buf[pos] = blend(kind, buf[pos], frame, progress(m, e.overlap_in))
            else:
                buf[pos] = frame
        if e.kind == "clip":
            prev_last = (e.index, np.array(get(e.frames - 1)))
    return warnings


def render_sequence(spec: SequenceSpec | dict[str, Any] | str | Path, out: str | Path,
                    ctx: RunContext | None = None) -> Path:
    """Render a sequence to `out` with one encode; write `<out>.json` beside it; return the path.

    All checks (fields, files, trims, transitions, audio, codec) run before any decoding; a bad
    one raises ValueError naming it and nothing is written.
    """
    from postfx.assemble import write_video

    from ..outputs import check_replaceable, delete_output, write_manifest
    from .mix import mix_sequence

    ctx = ctx or RunContext()
    spec = load_spec(spec)
    check_replaceable(out)
    t0 = time.perf_counter()
    plan = plan_sequence(spec, out)
    log.info("sequence plan:\n%s", plan.to_text())
    o = spec.output
    with tempfile.TemporaryDirectory(prefix=f"studio-seq-{os.getpid()}-") as td:
        sound, mix_report = mix_sequence(plan, Path(td), ctx)
        buf = _buffer(plan.frames, plan.height, plan.width, Path(td))
        plan.warnings.extend(compose(plan, ctx, buf))
        written = write_video(Clip(buf, plan.fps, {"sequence": True}, sound), out, codec=plan.codec,
                              crf=o.crf, preset=o.encoder_preset, ctx=ctx)
        del buf
    try:
        manifest = {"kind": "studio-sequence", "version": 1,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "spec": spec.to_dict(), "base_dir": str(spec.base_dir), "plan": plan.to_dict(),
                    "output": {"path": str(written), "codec": plan.codec},
                    "audio": mix_report,
                    "timings": {"total": round(time.perf_counter() - t0, 3)}}
        write_manifest(written, manifest)
    except BaseException:
        delete_output(written)
        raise
    from ..estimates import record_sequence  # the next sequence estimate learns from this one
    record_sequence(plan.frames, plan.width, plan.height, plan.codec, time.perf_counter() - t0, ctx.device)
    return written


def render_file(spec_path: str | Path, out: str | Path, ctx: RunContext | None = None) -> Path:
    """Render the sequence spec at `spec_path` (JSON) to `out`; the CLI's entry point."""
    return render_sequence(load_spec(spec_path), out, ctx)


def preview_spec(spec: SequenceSpec, max_side: int = 320, fps: float | None = 12.0) -> SequenceSpec:
    """A copy of `spec` for a quick low-resolution preview: smaller size and fps, the whole mix."""
    w, h = spec.output.width, spec.output.height
    s = min(1.0, max_side / max(w, h))
    size = (max(16, int(w * s) // 2 * 2), max(16, int(h * s) // 2 * 2))
    out = replace(spec.output, size=size, fps=min(spec.output.fps, fps or spec.output.fps), codec=None,
                  crf=28, encoder_preset="veryfast", resample="nearest")
    return replace(spec, output=out)


def storyboard(spec: SequenceSpec, height: int = 90) -> np.ndarray:
    """A strip of one frame per entry (the middle one), each `height` pixels tall, side by side."""
    plan = plan_sequence(preview_spec(spec, max_side=max(height, 32) * 2, fps=None))
    pad = parse_color(spec.output.pad_color, "output.pad_color")
    w = max(2, int(round(height * plan.width / plan.height)))
    tiles = []
    for e in plan.entries:
        if e.kind == "title":
            frame = _title_frame(plan, e, pad)
        else:
            c = spec.clips[e.index]
            src = _read(e.path)
            mid = e.frames // 2
            i = source_indices(1, 1.0, src.fps, src.frames.shape[0], c.trim_in + mid * c.speed / plan.fps)[0]
            frame = fit_frame(src.frames[i], plan.width, plan.height, c.fit or spec.output.fit, pad)
        tiles.append(fit_frame(frame, w, height, "crop"))
        tiles.append(np.full((height, 2, 3), 255, np.uint8))
    return np.concatenate(tiles[:-1], axis=1)


def run_sequence_job(payload: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """The "sequence" job: payload {'spec': dict, 'base_dir': optional, 'out': optional path}."""
    from ..outputs import manifest_path_for, new_output_path

    if not isinstance(payload.get("spec"), dict):
        raise ValueError("sequence job payload needs a 'spec' object")
    spec = load_spec(payload["spec"], base_dir=payload.get("base_dir"))
    from postfx.assemble import extension_for
    ext = extension_for(spec.output.codec)
    out = str(payload["out"]) if payload.get("out") else str(new_output_path("sequence", ext))
    if ext == "/" and not out.endswith("/"):
        out += "/"
    written = render_sequence(spec, out, ctx)
    return {"output": str(written), "manifest": str(manifest_path_for(written))}
