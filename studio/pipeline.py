"""One way through the house: request -> engine (base clip) -> stages -> one encode + manifest.

`make_ledger` computes, before anything runs, each step's frames, fps, duration, size and estimated
cost; `generate`/`post_process`/`rerun` check at every step that what was made matches it.
"""

from __future__ import annotations

import dataclasses
import logging
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .audio import Audio, SoundSpec, fit_to
from .clip import Clip, ClipSpec
from .context import RunContext
from .estimates import ENCODE_SECONDS_PER_MPX, learned, record
from .ledger_labels import detail_of, short_label
from .outputs import (
    atomic_path,
    base_clip_path,
    check_replaceable,
    manifest_path_for,
    new_output_path,
    read_manifest,
    write_manifest,
)
from .params import SPEC
from .post_order import order_for, order_notes
from .request import GenerationRequest
from .stages import Stage, plan_chain, run_chain, stage_to_dict

log = logging.getLogger(__name__)

POST_FIELDS = [n for n, p in SPEC.items() if p.group in ("post", "output")]


def default_device() -> str:
    """'cuda' when a GPU is usable, else 'cpu' (probed only when called)."""
    try:
        import torch
        return "cuda" if torch.cuda.is_available() else "cpu"
    except Exception:  # noqa: BLE001
        return "cpu"


def build_stages(req: GenerationRequest, device: str | None = None) -> list[Stage]:
    """The post-processing stages a request asks for, in its chosen order, models resolved.

    `device` (default: CUDA if usable, else CPU) decides what `upscaler="auto"` and `order="auto"`
    mean: x4plus and interpolate-first on CUDA; on the CPU animevideov3 (ncnn) with the flow
    carried up (upscale-carry), since upscaling is the CPU chain's cost.
    """
    from postfx.anchor import start_on_for  # a continuation: the upscaled clip starts on its input
    from postfx.interpolate import Interpolate, InterpolateUpscaled
    from postfx.upscale import Upscale

    device = device or default_device()
    interp: Stage | None = None
    if req.target_fps is not None:
        interp = Interpolate(factor=1, target_fps=float(req.target_fps),
                             scene_threshold=req.scene_threshold).resolved()
    elif req.interpolate > 1:
        interp = Interpolate(factor=req.interpolate, scene_threshold=req.scene_threshold).resolved()
    up: Stage | None = None
    if req.upscale > 1:
        up = Upscale(scale=req.upscale, model=req.upscaler, color_match=req.color_match).resolved(device)
    how = order_for(req, up, device)[0]
    if how == "upscale-carry" and interp is not None and up is not None:
        return [InterpolateUpscaled(interp, up), *start_on_for(req, up)]
    order = [up, interp] if how == "upscale-first" else [interp, up]
    return [s for s in order if s is not None] + start_on_for(req, up)


@dataclass
class Ledger:
    """The pre-run ledger: one row per step, and the final clip's exact shape."""

    rows: list[dict[str, Any]]
    final: ClipSpec
    audio: dict[str, Any] | None = None   # the sound's row: rate, channels, duration, what happens
    notes: list[str] = field(default_factory=list)   # why a choice was made (e.g. the auto order)

    @property
    def total_seconds(self) -> float:
        """Sum of the estimated seconds of all rows."""
        return round(sum(r.get("est_seconds") or 0.0 for r in self.rows), 2)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (goes into the manifest)."""
        return {"rows": self.rows, "final": dataclasses.asdict(self.final),
                "total_est_seconds": self.total_seconds, "audio": self.audio, "notes": list(self.notes)}

    def to_text(self) -> str:
        """A fixed-width table for the terminal."""
        head = f"{'step':<44} {'frames':>6} {'fps':>7} {'secs':>6} {'size':>11} {'est s':>7} {'est MB':>7}"
        lines = [head, "-" * len(head)]
        for r in self.rows:
            size = f"{r['width']}x{r['height']}"
            est = "" if r.get("est_seconds") is None else f"{r['est_seconds']:.2f}"
            mem = "" if not r.get("est_memory_mb") else f"{r['est_memory_mb']:.0f}"
            lines.append(f"{r['label'][:44]:<44} {r['frames']:>6} {r['fps']:>7.3f} {r['duration']:>6.2f} "
                         f"{size:>11} {est:>7} {mem:>7}")
        if self.audio:
            a = self.audio
            lines.append(f"{'audio':<44} {'':>6} {a['rate']:>6}Hz {a['duration']:>6.2f} "
                         f"{str(a['channels']) + ' ch':>11}")
            lines.append(f"  {a['label']}")
        lines.append(f"{'total (estimate)':<44} {'':>6} {'':>7} {'':>6} {'':>11} {self.total_seconds:>7.2f}")
        lines += [f"note: {n}" for n in self.notes]
        details = [f"  {r['label']}: {r['detail']}" for r in self.rows
                   if r.get("detail", r["label"]) != r["label"]]
        return "\n".join(lines + (["details:", *details] if details else []))


def _row(stage: str, label: str, spec: ClipSpec, est: dict[str, float] | None,
         detail: str | None = None) -> dict[str, Any]:
    est = est or {}
    return {"stage": stage, "label": label, "detail": detail or label, "frames": spec.frames,
            "fps": round(spec.fps, 6),
            "duration": round(spec.duration, 4), "width": spec.width, "height": spec.height,
            "est_seconds": round(float(est.get("seconds", 0.0)), 3),
            "est_memory_mb": round(float(est.get("memory_mb", 0.0)), 1)}


def ledger_for(base: ClipSpec, base_row: dict[str, Any], stages: list[Stage], codec: str,
               device: str, req: GenerationRequest | None = None, sound: SoundSpec | None = None,
               source: str = "generated") -> Ledger:
    """Ledger rows for a base clip, its stages and the final encode; the audio row when there is sound."""
    from postfx.assemble import plan_output
    from postfx.soundtrack import plan_sound

    rows = [base_row]
    spec = base
    for s, after in zip(stages, plan_chain(base, stages), strict=True):
        rows.append(_row(s.name, short_label(s), after, s.estimate(spec, device), detail_of(s)))
        spec = after
    final = plan_output(spec, codec)
    mpx = final.frames * final.width * final.height / 1e6
    rows.append(_row("encode", f"encode {codec}", final,
                     {"seconds": mpx * ENCODE_SECONDS_PER_MPX.get(codec, 0.02)},
                     f"encode {codec}: {final.frames} frames at {final.fps:g} fps, "
                     f"{final.width}×{final.height}, one pass (no re-encode between stages)"))
    return Ledger(learned(rows, device), final,    # the formulas, scaled by this machine's runs
                  plan_sound(sound, req, base, final, codec, source) if req else None)


def make_ledger(req: GenerationRequest, device: str = "cpu", out: str | Path | None = None,
                stages: list[Stage] | None = None) -> Ledger:
    """The pre-run ledger for a generation request (validated first)."""
    from postfx.assemble import codec_for

    from .engines import check_request, get_engine

    check_request(req)
    engine = get_engine(req.engine)
    base = engine.plan(req)
    stages = build_stages(req) if stages is None else stages
    codec = codec_for(out or "x.mp4", req.codec)
    est = engine.estimate(req, device)
    tags = [t for t in (est.get("profile"), est.get("speed") and f"speed {est['speed']['tier']}") if t]
    prof = f" [{', '.join(tags)}]" if tags else ""  # the VRAM profile and speed tier (diffusion engines)
    row = _row("engine", f"{engine.label}", base, est, f"{engine.id}{prof}: {engine.label}")
    for key in ("memory", "speed"):
        if est.get(key):
            row[key] = est[key]
    plan_audio = getattr(engine, "plan_audio", None)   # engines that make sound say its shape
    sound = plan_audio(req) if callable(plan_audio) else None
    led = ledger_for(base, row, stages, codec, device, req, sound)
    led.notes += order_notes(req, stages, default_device())
    return led


@dataclass
class RunResult:
    """What a run produced: the output path, its manifest and the clips."""

    output: Path
    manifest_path: Path
    manifest: dict[str, Any]
    clip: Clip
    base_clip: Clip | None = None
    timings: dict[str, float] = field(default_factory=dict)


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape the output."""
    import importlib.metadata as md
    out = {"studio": __version__, "python": platform.python_version()}
    for name in ("torch", "numpy", "opencv-python-headless", "imageio-ffmpeg", "pillow",
                 "diffusers", "transformers", "peft"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def _check_against(spec: ClipSpec, expect: ClipSpec, what: str) -> None:
    if (spec.frames, spec.width, spec.height) != (expect.frames, expect.width, expect.height) or \
            abs(spec.fps - expect.fps) > 1e-6:
        raise RuntimeError(f"{what} produced {spec} but the ledger said {expect}")


def _save_base(clip: Clip, out: Path) -> Path:
    path = base_clip_path(out)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            extra = {} if clip.audio is None else {"audio": clip.audio.samples,
                                                   "audio_rate": np.int64(clip.audio.rate)}
            np.savez_compressed(f, frames=clip.frames, fps=np.float64(clip.fps), **extra)
    return path


def load_base(path: Path) -> Clip:
    """Load a base clip saved beside an output (lossless)."""
    if not path.is_file():
        raise ValueError(f"the base clip {path} is missing; re-running needs it (generate again)")
    with np.load(path) as z:
        audio = Audio(z["audio"], int(z["audio_rate"])) if "audio" in z.files else None
        return Clip(z["frames"], float(z["fps"]), {"source": str(path)}, audio)


def _base_of(m: dict[str, Any], mpath: Path) -> Clip:
    """The clip a manifest's run started from: its saved base clip, or (a post-processed video
    file) the input itself, decoded again once its sha256 is checked."""
    if m.get("base_clip"):
        return load_base(mpath.with_name(m["base_clip"]))
    from postfx.assemble import read_video

    from .weights import sha256_file
    src = m["base_source"]
    path = Path(src["path"])
    if not path.is_file() or sha256_file(path) != src["sha256"]:
        raise ValueError(f"the input {path.name} this output was post-processed from was deleted or "
                         f"changed; re-running needs it unchanged (sha256 {src['sha256'][:12]}…)")
    return _with_sound(read_video(path), path)


def _with_sound(clip: Clip, path: Path) -> Clip:
    """A decoded input with its own sound (if the file has any), fitted to its frames."""
    from postfx.sound import read_sound
    if path.is_dir() and (path / "audio.wav").is_file():   # a PNG folder keeps its sound beside its frames
        path = path / "audio.wav"
    if not path.is_file():
        return clip
    return dataclasses.replace(clip, audio=fit_to(read_sound(path), clip.spec.duration))


def _encode_and_manifest(clip: Clip, stages: list[Stage], ledger: Ledger, req: GenerationRequest,
                         out: Path, ctx: RunContext, timings: dict[str, float],
                         manifest_extra: dict[str, Any], base: Clip | None,
                         t_start: float | None = None,
                         base_source: dict[str, str] | None = None) -> RunResult:
    from postfx.assemble import plan_output, write_video
    from postfx.sound import beside_path
    from postfx.soundtrack import final_sound

    codec = ledger.rows[-1]["label"].split()[-1]
    _check_against(plan_output(clip.spec, codec), ledger.final, "the chain")
    sound, sound_rec = final_sound(clip.audio, req, clip.spec.duration)
    t0 = time.perf_counter()
    written = write_video(dataclasses.replace(clip, audio=sound), out, codec=codec, crf=req.crf,
                          preset=req.preset, ctx=ctx)
    if base is not None and base.audio is not None:
        sound_rec = sound_rec or {}
        sound_rec["base"] = {"rate": int(base.audio.rate), "channels": base.audio.channels,
                             "duration": round(base.audio.duration, 6)}
    if sound_rec is not None and sound is not None:
        sound_rec["output"] = {"codec": {"gif": "wav", "png": "wav"}.get(codec, "opus" if codec == "vp9"
                                                                          else "aac"),
                               "rate": 48_000, "channels": sound.channels,
                               "duration": round(clip.spec.duration, 6)}
        if codec in ("gif", "png"):
            sound_rec["output"]["file"] = beside_path(written, codec).name
    timings["encode"] = round(time.perf_counter() - t0, 4)
    try:
        keep_base = base is not None and base_source is None   # a video file input is its own base
        if keep_base:
            _save_base(base, written)
        if t_start is not None:
            timings["total"] = round(time.perf_counter() - t_start, 4)
        record(ledger.rows, timings, ctx.device, timings.get("total"))   # the next estimates learn
        manifest = {
            "kind": "studio-manifest", "version": 1,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "request": req.to_dict(),
            "stages": [stage_to_dict(s) for s in stages],
            "output": {"path": str(written), "codec": codec, "crf": req.crf, "preset": req.preset,
                       **dataclasses.asdict(ledger.final)},
            "base_clip": base_clip_path(written).name if keep_base else None,
            **({"base_source": base_source} if base_source else {}),
            "ledger": ledger.to_dict(),
            "audio": sound_rec,
            "timings": timings,
            "device": ctx.device,
            "versions": library_versions(),
            **manifest_extra,
        }
        mpath = write_manifest(written, manifest)
    except BaseException:
        for p in (written, base_clip_path(written), written.with_name(written.name + ".wav")):
            if p.is_file():
                p.unlink()
        raise
    return RunResult(written, mpath, manifest, clip, base, timings)


def _resolve_out(out: str | Path | None, req: GenerationRequest, stem: str) -> Path | str:
    if out is None:
        from postfx.assemble import extension_for
        return new_output_path(stem, extension_for(req.codec))
    check_replaceable(out)
    return out


def generate(req: GenerationRequest, out: str | Path | None = None, ctx: RunContext | None = None,
             ledger: Ledger | None = None, engine: Any = None) -> RunResult:
    """Run a whole generation: base clip, post stages, one encode, manifest beside the output.

    `engine` replaces the registry's engine for `req.engine` (a multi-GPU worker passes its gang's
    `engines.parallel.ParallelEngine`)."""
    from .engines import check_request, get_engine
    from .images import image_sha256, load_image

    ctx = ctx or RunContext(device=default_device())
    check_request(req)
    out = _resolve_out(out, req, req.prompt or Path(req.image).stem)
    engine = engine if engine is not None else get_engine(req.engine)
    t_start = time.perf_counter()
    image = load_image(req.image)
    stages = build_stages(req)
    ledger = ledger or make_ledger(req, ctx.device, out, stages)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    base = engine.generate(image, req, ctx)
    timings["engine"] = round(time.perf_counter() - t0, 4)
    _check_against(base.spec, ClipSpec(**{k: ledger.rows[0][k] for k in ("frames", "fps", "width",
                                                                          "height")}), engine.id)
    if base.audio is not None and base.audio.samples.shape[0] != round(base.spec.duration * base.audio.rate):
        log.warning("%s gave %.4f s of sound for %.4f s of frames: fitted to the frames", engine.id,
                    base.audio.duration, base.spec.duration)
        base = dataclasses.replace(base, audio=fit_to(base.audio, base.spec.duration))
    clip = run_chain(base, stages, ctx, timings)
    extra = {"engine": {"id": engine.id, "label": engine.label, "family": engine.family},
             "seed": req.seed,
             "input": {"path": str(Path(req.image).resolve()), "sha256": image_sha256(req.image),
                       "width": int(image.shape[1]), "height": int(image.shape[0])},
             "engine_meta": {k: v for k, v in base.meta.items() if _jsonable(v)}}
    describe = getattr(engine, "describe_weights", None)
    if callable(describe):
        extra["weights"] = describe(req)
    return _encode_and_manifest(clip, stages, ledger, req, Path(str(out)), ctx, timings, extra, base,
                                t_start)


def _jsonable(v: Any) -> bool:
    import json
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


def post_settings(values: dict[str, Any]) -> GenerationRequest:
    """A request that carries only post-processing/output settings (validated)."""
    unknown = sorted(set(values) - set(POST_FIELDS))
    if unknown:
        raise ValueError(f"not a post-processing setting: {', '.join(unknown)}")
    req = GenerationRequest(**values)
    for name in POST_FIELDS:
        setattr(req, name, SPEC[name].check(getattr(req, name)))
    req.check_post_combination()
    return req


def _post_ledger(base: ClipSpec, req: GenerationRequest, stages: list[Stage], out: str | Path, device: str,
                 label: str, sound: SoundSpec | None = None) -> Ledger:
    from postfx.assemble import codec_for
    row = _row("input", label, base, None)
    led = ledger_for(base, row, stages, codec_for(out, req.codec), device, req, sound,
                     "input's" if label.startswith("input") else "saved")
    led.notes += order_notes(req, stages, default_device())
    return led


def plan_post(base: ClipSpec, settings: dict[str, Any], out: str | Path, device: str = "cpu",
              label: str = "input") -> Ledger:
    """The ledger of post-processing a clip shaped `base` with `settings` into `out` (nothing runs)."""
    req = post_settings(settings)
    return _post_ledger(base, req, build_stages(req), out, device, label)


def post_process(input_path: str | Path, settings: dict[str, Any], out: str | Path | None = None,
                 ctx: RunContext | None = None) -> RunResult:
    """Run post-processing stages on an existing video or PNG frame folder, with one encode."""
    from postfx.assemble import read_video

    ctx = ctx or RunContext(device=default_device())
    req = post_settings(settings)
    base = _with_sound(read_video(input_path), Path(str(input_path)))
    out = _resolve_out(out, req, Path(str(input_path).rstrip("/")).stem + "-post")
    stages = build_stages(req)
    ledger = _post_ledger(base.spec, req, stages, out, ctx.device, f"input {Path(str(input_path)).name}",
                          base.audio.spec if base.audio is not None else None)
    timings: dict[str, float] = {}
    clip = run_chain(base, stages, ctx, timings)
    src = Path(input_path).resolve()
    extra = {"input": {"path": str(src)}, "engine": None}
    ref = None
    if src.is_file():   # re-runs decode the input again (checked by hash): no copy of its frames is kept
        from .weights import sha256_file
        ref = {"path": str(src), "sha256": sha256_file(src)}
    return _encode_and_manifest(clip, stages, ledger, req, Path(str(out)), ctx, timings, extra, base,
                                base_source=ref)


def rerun(manifest_path: str | Path, overrides: dict[str, Any] | None = None,
          out: str | Path | None = None, ctx: RunContext | None = None) -> RunResult:
    """Re-run the post-processing of a saved output from its manifest and saved base clip.

    Only post-processing and output settings may change; the base clip is not regenerated.
    """
    ctx = ctx or RunContext(device=default_device())
    mpath = Path(manifest_path)
    m = read_manifest(mpath)
    req = rerun_request(m, overrides, mpath)
    base = _base_of(m, mpath)
    out = _resolve_out(out, req, mpath.stem.replace(".mp4", "") + "-rerun")
    stages = build_stages(req)
    ledger = _post_ledger(base.spec, req, stages, out, ctx.device, "saved base clip",
                          base.audio.spec if base.audio is not None else None)
    timings: dict[str, float] = {}
    clip = run_chain(base, stages, ctx, timings)
    extra = {k: m.get(k) for k in ("engine", "seed", "input", "engine_meta", "weights") if k in m}
    extra["parent"] = str(mpath.resolve())
    return _encode_and_manifest(clip, stages, ledger, req, Path(str(out)), ctx, timings, extra, base,
                                base_source=m.get("base_source") if not m.get("base_clip") else None)


def rerun_request(m: dict[str, Any], overrides: dict[str, Any] | None, where: Path | str = "manifest"
                  ) -> GenerationRequest:
    """The request a re-run makes: the manifest's, with post-processing `overrides` (validated)."""
    overrides = dict(overrides or {})
    bad = sorted(set(overrides) - set(POST_FIELDS))
    if bad:
        raise ValueError(f"rerun can change post-processing settings only, not: {', '.join(bad)}")
    if not m.get("base_clip") and not m.get("base_source"):
        raise ValueError(f"manifest {where} has no saved base clip to re-run from")
    req = GenerationRequest.from_dict(m["request"])
    for k, v in overrides.items():
        setattr(req, k, v)
    if "interpolate" in overrides and "target_fps" not in overrides:
        req.target_fps = None
    if "target_fps" in overrides and overrides["target_fps"] is not None and "interpolate" not in overrides:
        req.interpolate = 1
    post = post_settings({k: getattr(req, k) for k in POST_FIELDS})
    for k in POST_FIELDS:
        setattr(req, k, getattr(post, k))
    return req


def base_spec_of(m: dict[str, Any]) -> ClipSpec:
    """The shape of the clip a manifest's run started from (its ledger's first row)."""
    row = m["ledger"]["rows"][0]
    return ClipSpec(int(row["frames"]), float(row["fps"]), int(row["width"]), int(row["height"]))


def plan_rerun(m: dict[str, Any], overrides: dict[str, Any] | None, out: str | Path, device: str = "cpu"
               ) -> Ledger:
    """The ledger of re-running a manifest's post-processing with `overrides` into `out` (nothing runs)."""
    req = rerun_request(m, overrides)
    own = (m.get("audio") or {}).get("base")
    sound = SoundSpec(int(own["rate"]), int(own["channels"]), float(own["duration"])) if own else None
    return _post_ledger(base_spec_of(m), req, build_stages(req), out, device, "saved base clip", sound)


def request_from_manifest(path: str | Path) -> GenerationRequest:
    """The request a manifest recorded, checked against the input image's sha256."""
    from .images import image_sha256
    m = read_manifest(path)
    if m.get("engine") is None:
        raise ValueError(f"{path} records a post-processing run, not a generation; use `post` again")
    req = GenerationRequest.from_dict(m["request"])
    want = m.get("input", {}).get("sha256")
    if want and Path(req.image).is_file() and image_sha256(req.image) != want:
        raise ValueError(f"input image {req.image} changed since {path} was written (sha256 differs)")
    return req


__all__ = ["ENCODE_SECONDS_PER_MPX", "Ledger", "RunResult", "build_stages", "generate", "ledger_for",
           "make_ledger", "manifest_path_for", "post_process", "rerun", "request_from_manifest"]
