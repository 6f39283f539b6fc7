"""Outputs: atomic writes, manifests beside each output, and the outputs folder listing."""

from __future__ import annotations

import contextlib
import json
import os
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


def new_output_path(stem: str = "clip", ext: str = ".mp4") -> Path:
    """A fresh, unique output path in `outputs_dir()` (a folder path when ext is '/')."""
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in stem)[:40].strip("-") or "clip"
    name = f"{time.strftime('%Y%m%d-%H%M%S')}-{safe}-{uuid.uuid4().hex[:6]}"
    if ext == "/":
        return outputs_dir() / name
    return outputs_dir() / (name + ext)


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
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.stem}.part-{uuid.uuid4().hex[:8]}{final.suffix}")
    if is_dir:
        tmp.mkdir()
    try:
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"nothing was written for {final}")
        if final.exists() and final.is_dir() and is_dir:
            old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
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


OUTPUT_KINDS = ("studio-manifest", "studio-sequence")   # manifest kinds: generations, sequence exports


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
    for p in (out, mp, base):
        if p.exists():
            _remove(p)


def base_clip_path(out: Path) -> Path:
    """Where the lossless base clip of an output is kept (for re-running post-processing)."""
    out = Path(str(out).rstrip("/"))
    return out.with_name(out.name + ".base.npz")
