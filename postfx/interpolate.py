"""The `interpolate` stage: more frames per second with RIFE 4.25 (or OpenCV DIS flow without weights).

Frame ledger (exact, what `plan` promises and `apply` delivers):
- factor k (target_fps None): N frames -> (N-1)·k+1 frames at fps·k; output frame j sits at source
  position j/k.  k = 1 is the identity.
- target_fps F from fps f: M = round(N·F/f) frames at fps F, so the duration N/f is kept within
  one frame; output frame j sits at source position j·f/F, clamped to N-1 (the last frame is held).
  When target_fps is set it is used instead of factor.
A position i + t with t in (0, 1) is made by the model from frames i and i+1, except:
- scene cut between i and i+1 (score > scene_threshold): never morphed; times t <= 0.5 hold frame
  i, later times hold frame i+1.  The score is the total-variation distance (0..1) between the
  joint RGB histograms (8 levels per channel) of 128×128 thumbnails: about 0.02–0.25 for camera
  motion, 0.5–0.95 for different photos; scene_threshold 1 disables cut detection.
- static pair (mean absolute difference below 0.5 grey levels): frame i is copied, no model run.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, replace
from typing import ClassVar

import cv2
import numpy as np

from postfx import register_stage
from postfx.upscale import Upscale
from studio.audio import fit_to
from studio.clip import Clip, ClipSpec
from studio.context import RunContext

log = logging.getLogger(__name__)

MODELS = ("auto", "rife", "dis")
SCALES = (0.25, 0.5, 1.0, 2.0)
STATIC_MAD = 0.5
"""Pairs whose mean absolute difference (grey levels, 0..255) is below this are copied."""

# Seconds per megapixel of each new frame: CPU from bench/results/e2e_cpu.json (2 quiet cores, 512²,
# channels_last: 15 new frames in 4.29 s);
# CUDA from bench/results/rife_h100.json (H100, 1080p, eager fp16 batch 8: 160 new frames/s); the
# CUDA figures used are postfx.calibration's table (refitted from bench/bench_post_app.py).
SECONDS_PER_MP = {("rife", "cpu"): 1.1, ("rife", "cuda"): 0.0031, ("dis", "cpu"): 0.25}
# Flow carry: seconds per megapixel of each carried frame at the upscaled size (flow and mask
# resized, two warps and a blend; CPU: 0.18 CPU-seconds a 1024² frame on 2 cores of an AMD EPYC,
# about 0.1 s of wall time with both cores; CUDA a guess).  RIFE's own cost is Interpolate's.
CARRY_SECONDS_PER_MP = {"cpu": 0.12, "cuda": 0.002}
# Peak memory per megapixel per pair in a batch (H100 bench: 5.8 GB at 1080p, batch 8), CPU one pair.
MEMORY_MB_PER_MP = {"cpu": 700.0, "cuda": 360.0}


def frame_hist(x: np.ndarray) -> np.ndarray:
    """Joint RGB histogram (8 levels a channel, as fractions) of a frame's 128×128 thumbnail."""
    q = cv2.resize(x, (128, 128), interpolation=cv2.INTER_AREA) >> 5
    idx = (q[..., 0].astype(np.int32) << 6) | (q[..., 1].astype(np.int32) << 3) | q[..., 2]
    return np.bincount(idx.ravel(), minlength=512) / idx.size


def scene_score(a: np.ndarray, b: np.ndarray) -> float:
    """Scene-change score in 0..1: TV distance of joint RGB histograms of 128×128 thumbnails."""
    return float(0.5 * np.abs(frame_hist(a) - frame_hist(b)).sum())


def is_static(a: np.ndarray, b: np.ndarray) -> bool:
    """True when two frames are (nearly) identical: mean absolute difference < STATIC_MAD levels."""
    return bool(np.array_equal(a, b) or float(cv2.absdiff(a, b).mean()) < STATIC_MAD)


def auto_scale(width: int, height: int) -> float:
    """RIFE flow scale for a frame size: 1.0 up to 2560×1440, 0.5 above (4K)."""
    return 1.0 if width * height <= 2560 * 1440 else 0.5


@register_stage
@dataclass(frozen=True)
class Interpolate:
    """Frame interpolation by an integer factor or to a target fps (see the module docstring)."""

    name: ClassVar[str] = "interpolate"
    factor: int = 2
    target_fps: float | None = None
    scene_threshold: float = 0.35
    model: str = "auto"  # auto | rife | dis
    scale: float | None = None  # RIFE flow scale; None: 1.0 up to 1440p, 0.5 above
    fallback: bool = False  # set by resolved() when 'auto' fell back to DIS for want of RIFE weights

    def __post_init__(self) -> None:
        if isinstance(self.factor, bool) or not isinstance(self.factor, int) or self.factor < 1:
            raise ValueError(f"factor={self.factor!r} must be an integer >= 1")
        if self.target_fps is not None and not (math.isfinite(self.target_fps) and self.target_fps > 0):
            raise ValueError(f"target_fps={self.target_fps!r} must be a positive number")
        if not 0.0 <= self.scene_threshold <= 1.0:
            raise ValueError(f"scene_threshold={self.scene_threshold!r} must be within 0..1")
        if self.model not in MODELS:
            raise ValueError(f"model={self.model!r} is not one of {MODELS}")
        if self.scale is not None and self.scale not in SCALES:
            raise ValueError(f"scale={self.scale!r} is not one of {SCALES}")

    # -- what it is ------------------------------------------------------------------------------
    def resolved(self) -> Interpolate:
        """A copy with model 'auto' made concrete: 'rife' if its weights are present, else 'dis'."""
        if self.model != "auto":
            return self
        from studio.weights import find

        from .rife.weights import WEIGHT_ID
        if find(WEIGHT_ID) is not None:
            return replace(self, model="rife")
        return replace(self, model="dis", fallback=True)

    def describe(self) -> str:
        """Human label for the ledger, e.g. 'RIFE 4.25 ×2'; the DIS fallback says so plainly."""
        r = self.resolved()
        how = f"→ {self.target_fps:g} fps" if self.target_fps is not None else f"×{self.factor}"
        if r.model == "rife":
            return f"RIFE 4.25 {how}"
        label = f"OpenCV DIS optical flow {how}"
        return label + " (fallback: no RIFE weights)" if r.fallback else label

    # -- the ledger ------------------------------------------------------------------------------
    def positions(self, frames: int, fps: float) -> list[tuple[int, float]]:
        """Source position (i, t) of every output frame: frame i, or t of the way to frame i+1."""
        if frames < 1 or not fps > 0:
            raise ValueError(f"need frames >= 1 and fps > 0, got frames={frames} fps={fps}")
        if self.target_fps is None:
            k = self.factor
            return [(j // k, (j % k) / k) for j in range((frames - 1) * k + 1)]
        m = max(1, round(frames * self.target_fps / fps))
        out = []
        for j in range(m):
            p = j * fps / self.target_fps
            i = math.floor(p + 1e-9)
            t = p - i
            if i >= frames - 1:
                i, t = frames - 1, 0.0
            elif t < 1e-6:
                t = 0.0
            out.append((i, t))
        return out

    def plan(self, spec: ClipSpec) -> ClipSpec:
        """Exact output shape: (N-1)·k+1 frames at fps·k, or round(N·F/f) frames at F."""
        n = len(self.positions(spec.frames, spec.fps))
        fps = self.target_fps if self.target_fps is not None else spec.fps * self.factor
        return spec.with_(frames=n, fps=float(fps))

    def estimate(self, spec: ClipSpec, device: str) -> dict[str, float]:
        """Rough seconds and memory from measured per-megapixel constants."""
        r = self.resolved()
        new = sum(1 for _, t in self.positions(spec.frames, spec.fps) if t > 0)
        mp = spec.width * spec.height / 1e6
        dev = "cuda" if device.startswith("cuda") and r.model == "rife" else "cpu"
        rate = SECONDS_PER_MP[(r.model, dev)]
        if (r.model, dev) == ("rife", "cuda"):
            from .calibration import table
            rate = table()["rife_cuda_s_per_mp"]
        secs = new * mp * rate
        if r.model == "rife":
            from .rife import default_batch
            mem = MEMORY_MB_PER_MP[dev] * mp * default_batch(dev, spec.height, spec.width) + 100
        else:
            mem = 60 * mp
        return {"seconds": round(secs, 3), "memory_mb": round(mem, 1)}

    # -- the work --------------------------------------------------------------------------------
    def _rife(self, ctx: RunContext, width: int, height: int):
        from studio.weights import require

        from .rife.interpolator import RifeInterpolator
        from .rife.weights import WEIGHT_ID
        path = require(WEIGHT_ID)
        st = path.stat()
        scale = self.scale if self.scale is not None else auto_scale(width, height)
        key = ("rife-4.25", str(path), st.st_mtime_ns, st.st_size, ctx.device, scale)
        return ctx.cache.get(key, lambda: RifeInterpolator.from_weights(path, device=ctx.device,
                                                                          scale=scale))

    def classify(self, src: np.ndarray, pos: list[tuple[int, float]], device: str = "cpu"
                 ) -> tuple[list[int], list[int], list[int]]:
        """(pairs, scene cuts, static pairs) among the frame pairs that `pos` needs.

        On CUDA the histograms and differences run on the GPU (`tensor_ops.pair_stats`, the same
        numbers); on the CPU each frame's histogram is made once, not once per pair."""
        pairs = sorted({i for i, t in pos if t > 0})
        if str(device).startswith("cuda") and pairs and min(src.shape[1:3]) >= 128:   # thumbnails shrink
            from .tensor_ops import pair_stats
            stats = pair_stats(src, pairs, device)
        else:
            hists: dict[int, np.ndarray] = {}

            def hist(k: int) -> np.ndarray:
                if k not in hists:
                    hists.pop(k - 2, None)
                    hists[k] = frame_hist(src[k])
                return hists[k]

            cut_on = self.scene_threshold < 1.0
            stats = {i: (float(0.5 * np.abs(hist(i) - hist(i + 1)).sum()) if cut_on else 0.0,
                         0.0 if is_static(src[i], src[i + 1]) else STATIC_MAD) for i in pairs}
        cuts, static = [], []
        for i in pairs:
            score, mad = stats[i]
            if self.scene_threshold < 1.0 and score > self.scene_threshold:
                cuts.append(i)
            elif mad < STATIC_MAD:
                static.append(i)
        return pairs, cuts, static

    def apply(self, clip: Clip, ctx: RunContext) -> Clip:
        """Make plan()'s frames; records method, scene cuts and static pairs in clip.meta."""
        r = self.resolved()
        src = clip.frames
        n_src, h, w = src.shape[0], src.shape[1], src.shape[2]
        pos = self.positions(n_src, clip.fps)
        pairs, cuts, static = self.classify(src, pos, ctx.device)
        work = [i for i in pairs if i not in set(cuts) | set(static)]
        jobs = [(i, t) for i, t in pos if t > 0 and i in set(work)]
        n, done = len(pairs), len(pairs) - len(work)
        ctx.step("interpolate", done, n)
        made: dict[tuple[int, float], np.ndarray] = {}
        if jobs:
            per_pair = {i: sum(1 for j, _ in jobs if j == i) for i in work}
            if r.model == "rife":
                engine = self._rife(ctx, w, h)

                def on_batch(chunk: list[tuple[int, float]]) -> None:
                    nonlocal done
                    for i, _ in chunk:
                        per_pair[i] -= 1
                        if per_pair[i] == 0:
                            done += 1
                            ctx.step("interpolate", done, n)
                    ctx.check_cancel()   # between batches too: a ×16 pair is 15 frames of work

                ctx.check_cancel()
                made = dict(zip(jobs, engine.run(src, jobs, on_batch=on_batch, check=ctx.check_cancel),
                                strict=True))
            else:
                from .rife.flow_fallback import DisInterpolator
                dis = DisInterpolator()
                for i in work:
                    ts = [t for j, t in jobs if j == i]
                    made.update({(i, t): f for t, f in zip(ts, dis.interpolate(src[i], src[i + 1], ts),
                                                           strict=True)})
                    done += 1
                    ctx.step("interpolate", done, n)
        out = assemble(src, pos, cuts, static, made)
        plan = self.plan(clip.spec)
        method = "rife-4.25" if r.model == "rife" else "opencv-dis"
        meta = dict(clip.meta)
        meta["interpolate"] = {"method": method, "label": self.describe(), "scene_cuts": cuts,
                               "static_pairs": static, "interpolated_frames": len(jobs),
                               "source_frames": n_src, "frames": len(pos), "fps": plan.fps}
        log.info("interpolate: %s, %d -> %d frames, %d new, cuts at %s", method, n_src, len(pos),
                 len(jobs), cuts)
        return Clip(frames=out, fps=plan.fps, meta=meta, audio=fit_to(clip.audio, plan.duration))


def assemble(src: np.ndarray, pos: list[tuple[int, float]], cuts: list[int], static: list[int],
             made: dict[tuple[int, float], np.ndarray]) -> np.ndarray:
    """The output frames: sources at t = 0, held frames across cuts and static pairs, else `made`."""
    cut_set, static_set = set(cuts), set(static)
    out = np.empty((len(pos), *src.shape[1:]), dtype=np.uint8)
    for j, (i, t) in enumerate(pos):
        if t == 0:
            out[j] = src[i]
        elif i in cut_set:
            out[j] = src[i] if t <= 0.5 else src[i + 1]
        elif i in static_set:
            out[j] = src[i]
        else:
            out[j] = made[(i, t)]
    return out


@register_stage
@dataclass(frozen=True)
class InterpolateUpscaled:
    """Interpolate and upscale in one (`order` upscale-carry): only the source frames are upscaled.

    Each in-between frame warps the two upscaled source frames by RIFE's flow and blend mask,
    computed at the source size and carried up (`postfx.carry`).  Cuts and static pairs hold
    upscaled source frames as `Interpolate` holds source frames.  Without RIFE weights (DIS
    fallback) it upscales the sources and interpolates at the upscaled size instead.
    """

    name: ClassVar[str] = "interpolate-upscaled"
    interpolate: Interpolate = Interpolate()
    upscale: Upscale = Upscale()

    def __post_init__(self) -> None:
        for f, cls in (("interpolate", Interpolate), ("upscale", Upscale)):  # from a manifest
            v = getattr(self, f)
            if isinstance(v, dict):
                object.__setattr__(self, f, cls(**v))
            elif not isinstance(v, cls):
                raise ValueError(f"{f}={v!r} must be a {cls.__name__} stage")

    def resolved(self, device: str | None = None) -> InterpolateUpscaled:
        """Both parts resolved (model, backend, fallbacks) for `device`."""
        return replace(self, interpolate=self.interpolate.resolved(), upscale=self.upscale.resolved(device))

    def describe(self) -> str:
        """e.g. 'RIFE 4.25 ×2 carried up to Real-ESRGAN animevideov3 ×2 (...): 16 of 31 frames upscaled'."""
        i = self.interpolate.resolved()
        if i.model != "rife":
            return f"{self.upscale.describe()}, then {i.describe()} at the upscaled size"
        return (f"{i.describe()}, flow carried up ×{self.upscale.scale}: {self.upscale.describe()} on the "
                f"source frames only; in-between frames warp the upscaled sources")

    def plan(self, spec: ClipSpec) -> ClipSpec:
        """Exactly what interpolate-then-upscale gives: the frames of one, the size of the other."""
        return self.upscale.plan(self.interpolate.plan(spec))

    def estimate(self, spec: ClipSpec, device: str) -> dict[str, float]:
        """Upscale of the source frames + RIFE at the source size + the warps at the upscaled size."""
        up = self.upscale.estimate(spec, device)
        it = self.interpolate.estimate(spec, device)
        new = sum(1 for _, t in self.interpolate.positions(spec.frames, spec.fps) if t > 0)
        big = self.upscale.plan(spec)
        from .calibration import table
        per_mp = table()["carry_cuda_s_per_mp"] if device.startswith("cuda") else CARRY_SECONDS_PER_MP["cpu"]
        warp = new * big.width * big.height / 1e6 * per_mp
        return {"seconds": round(up["seconds"] + it["seconds"] + warp, 3),
                "memory_mb": round(max(up["memory_mb"], it["memory_mb"]) + 2 * big.frames * big.width *
                                   big.height * 3 / 1e6, 1)}

    def apply(self, clip: Clip, ctx: RunContext) -> Clip:
        """Upscale the sources (progress 'upscale'), then carry (progress 'interpolate')."""
        st = self.resolved(ctx.device)
        interp, up = st.interpolate, st.upscale
        if interp.model != "rife":
            return interp.apply(up.apply(clip, ctx), ctx)
        src = clip.frames
        pos = interp.positions(len(src), clip.fps)
        pairs, cuts, static = interp.classify(src, pos, ctx.device)
        skip = set(cuts) | set(static)
        jobs = [(i, t) for i, t in pos if t > 0 and i not in skip]
        t0 = time.perf_counter()
        high_clip = up.apply(clip, ctx)
        high = high_clip.frames
        t_up = time.perf_counter() - t0
        n = len(pairs)
        done = [n - len({i for i, _ in jobs})]
        left = {i: sum(1 for j, _ in jobs if j == i) for i, _ in jobs}
        ctx.step("interpolate", done[0], n)

        def on_job(job: tuple[int, float]) -> None:
            left[job[0]] -= 1
            if left[job[0]] == 0:
                done[0] += 1
            ctx.step("interpolate", done[0], n)

        from .carry import carry_run
        h, w = src.shape[1:3]
        t0 = time.perf_counter()
        made = dict(zip(jobs, carry_run(interp._rife(ctx, w, h), src, high, jobs, on_job), strict=True))
        t_carry = time.perf_counter() - t0
        out = assemble(high, pos, cuts, static, made)
        plan = interp.plan(clip.spec)
        meta = dict(high_clip.meta)
        meta["interpolate"] = {"method": "rife-4.25 (flow carried to the upscaled size)",
                               "label": st.describe(), "scene_cuts": cuts, "static_pairs": static,
                               "interpolated_frames": len(jobs), "source_frames": len(src),
                               "upscaled_frames": len(src), "frames": len(pos), "fps": plan.fps,
                               "seconds": {"upscale": round(t_up, 3), "carry": round(t_carry, 3)}}
        return Clip(frames=out, fps=plan.fps, meta=meta, audio=fit_to(clip.audio, plan.duration))


__all__ = ["CARRY_SECONDS_PER_MP", "Interpolate", "InterpolateUpscaled", "assemble"]
