"""Outputs: atomic writes, manifests beside each output, and the outputs folder listing."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .weights import REPO_ROOT


def outputs_dir() -> Path:
    """Where outputs go by default: $STUDIO_OUTPUTS_DIR, else <repo>/outputs."""
    p = Path(os.environ.get("STUDIO_OUTPUTS_DIR", REPO_ROOT / "outputs"))
    p.mkdir(parents=True, exist_ok=True)
    return p


_OWNER_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


def owner_dir(owner: str) -> Path:
    """An API owner's folder, <outputs>/<owner>: its uploads and outputs live there and nowhere else."""
    if not isinstance(owner, str) or not _OWNER_RE.match(owner):
        raise ValueError(f"owner {owner!r} is not a valid owner name")
    p = outputs_dir() / owner
    p.mkdir(parents=True, exist_ok=True)
    return p


_STAMP = re.compile(r"^\d{8}-\d{6}-")                 # the prefix and suffix new_output_path adds
_UID = re.compile(r"-[0-9a-f]{6}(?=(?:-[a-z]+)?$)")


def new_output_path(stem: str = "clip", ext: str = ".mp4", root: Path | None = None) -> Path:
    """A fresh, unique output path in `root` (default `outputs_dir()`; a folder path when ext is '/')."""
    root = outputs_dir() if root is None else root
    if _STAMP.match(stem):   # named after an earlier output (a re-run): one timestamp and id, not two
        stem = _UID.sub("", _STAMP.sub("", stem), count=1)
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in stem)[:40].strip("-") or "clip"
    name = f"{time.strftime('%Y%m%d-%H%M%S')}-{safe}-{uuid.uuid4().hex[:6]}"
    if ext == "/":
        return root / name
    return root / (name + ext)


STUDIO_FRAME_FILE = re.compile(r"^frame_\d{5,}\.png$")
STUDIO_FOLDER_FILES = ("fps.txt", "audio.wav")
MANIFEST_KINDS = ("studio-manifest", "studio-sequence")


def _is_studio_manifest(p: Path) -> bool:
    try:
        m = json.loads(p.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(m, dict) and m.get("kind") in MANIFEST_KINDS


def is_studio_frame_folder(folder: Path) -> bool:
    """True when `folder` is a PNG-frame output the studio wrote: only its frame files and `fps.txt`
    (an empty folder counts: replacing it loses nothing), or a studio manifest beside it."""
    if _is_studio_manifest(manifest_path_for(folder)):
        return True
    try:
        entries = list(folder.iterdir())
    except OSError:
        return False
    return all(e.is_file() and not e.is_symlink()
               and (STUDIO_FRAME_FILE.match(e.name) or e.name in STUDIO_FOLDER_FILES) for e in entries)


def _refuse_foreign_folder(final: Path) -> None:
    if final.is_dir() and not is_studio_frame_folder(final):
        raise ValueError(f"output folder {str(final)!r} exists and is not a studio PNG-frame output; "
                         "it would be replaced, so name a new folder")


def check_replaceable(out: str | Path) -> None:
    """Refuse to write over a folder that is not a studio PNG-frame output (ValueError naming it).

    A folder output replaces the folder at `out` and writes `<out>.json` beside it; both must be the
    studio's own (frames plus the files it writes, or a studio manifest).  Files the user names are
    replaced as asked.
    """
    final = Path(str(out).rstrip("/"))
    if final.is_symlink():
        raise ValueError(f"output {str(final)!r} is a symbolic link; name a new path")
    _refuse_foreign_folder(final)
    mp = manifest_path_for(final)
    if (final.is_dir() or str(out).endswith("/")) and mp.exists() and not _is_studio_manifest(mp):
        raise ValueError(f"{str(mp)!r} exists and is not a studio manifest; writing {str(final)!r} "
                         "would replace it, so name a new folder")


def manifest_path_for(out: Path) -> Path:
    """The manifest's path for an output: `<out>.json` (a folder output gets `<folder>.json`)."""
    out = Path(str(out).rstrip("/"))
    return out.with_name(out.name + ".json")


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | Path, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success rename it over `path`, on error remove it.

    The temp name keeps the suffix so encoders pick the right format.  Nothing half-written is ever
    left at `path`.
    """
    final = Path(str(path).rstrip("/"))
    if is_dir:
        _refuse_foreign_folder(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.stem}.part-{os.getpid()}-{uuid.uuid4().hex[:8]}{final.suffix}")
    if is_dir:
        tmp.mkdir()
    try:
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"nothing was written for {final}")
        if final.exists() and final.is_dir() and is_dir:
            old = final.with_name(f".{final.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
            os.replace(final, old)
            os.replace(tmp, final)
            _remove(old)
        else:
            os.replace(tmp, final)
    except BaseException:
        _remove(tmp)
        raise


def write_json_atomic(path: Path, data: Any) -> Path:
    """Write JSON atomically (temp file, then rename)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str))
    return path


def write_manifest(out: str | Path, manifest: dict[str, Any]) -> Path:
    """Write `<out>.json` beside an output, atomically."""
    return write_json_atomic(manifest_path_for(Path(out)), manifest)


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Load a manifest JSON, with a clear error when it is not one."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise ValueError(f"manifest {p} does not exist") from None
    except ValueError as e:
        raise ValueError(f"manifest {p} is not valid JSON: {e}") from None
    if not isinstance(data, dict) or data.get("kind") not in ("studio-manifest",):
        raise ValueError(f"{p} is not a studio manifest (no kind='studio-manifest')")
    return data


@dataclass
class OutputRecord:
    """One output in the outputs folder, with its manifest."""

    path: Path
    manifest_path: Path
    manifest: dict[str, Any]
    created: float


OUTPUT_KINDS = MANIFEST_KINDS   # manifest kinds: generations, sequence exports


def list_outputs(root: Path | None = None,
                 kinds: tuple[str, ...] = ("studio-manifest",)) -> list[OutputRecord]:
    """Every output that has a manifest of one of `kinds` beside it, newest first.

    The default lists generation outputs only; pass `OUTPUT_KINDS` to include sequence exports.
    """
    root = root or outputs_dir()
    recs = []
    for mp in root.glob("*.json"):
        if mp.name.startswith("."):
            continue
        try:
            m = json.loads(mp.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(m, dict) or m.get("kind") not in kinds:
            continue
        out = mp.with_name(mp.name[: -len(".json")])
        if out.exists():
            recs.append(OutputRecord(out, mp, m, mp.stat().st_mtime))
    return sorted(recs, key=lambda r: r.created, reverse=True)


def delete_output(path: str | Path) -> None:
    """Delete an output, its manifest and its saved base clip."""
    out = Path(str(path).rstrip("/"))
    mp = manifest_path_for(out)
    base = base_clip_path(out)
    wav = out.with_name(out.name + ".wav")   # a GIF's sound, saved beside it
    for p in (out, mp, base, wav):
        if p.exists():
            _remove(p)


def base_clip_path(out: Path) -> Path:
    """Where the lossless base clip of an output is kept (for re-running post-processing)."""
    out = Path(str(out).rstrip("/"))
    return out.with_name(out.name + ".base.npz")
