"""Renaming an output: the clip (or sequence export), its manifest and its saved base clip move
together, all or nothing.

`rename_output(path, name)` keeps the extension, refuses a name that is not plain
(`[A-Za-z0-9 ._-]`, no leading dot, at most 120 characters) or that is taken by any of the three
files, then:
1. hard-links each existing file to its new name (a link never replaces an existing file, so a
   race with another writer fails instead of clobbering);
2. writes the new manifest (its `output.path` and `base_clip` name the new files) atomically;
3. removes the old names.
A failure in 1 or 2 removes what was made and leaves the output as it was.  The manifest is the
last old name removed, so a crash between steps leaves both names listed, never neither.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

from .outputs import base_clip_path, manifest_path_for, write_json_atomic

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,119}")


def check_new_name(name: object) -> str:
    """A plain file stem (ValueError naming the bad value otherwise)."""
    if not isinstance(name, str):
        raise ValueError(f"name={name!r} must be text")
    stem = name.strip()
    if not NAME_RE.fullmatch(stem) or stem.endswith("."):
        raise ValueError(f"name={name!r} must be 1-120 letters, digits, spaces, '.', '_' or '-', "
                         f"starting with a letter or digit")
    return stem


def _ext(path: Path) -> str:
    return "".join(path.suffixes[-1:]) if path.is_file() else ""


def rename_output(path: str | Path, name: str) -> Path:
    """Rename an output (file or frame folder) with its manifest and base clip; the new path."""
    old = Path(str(path).rstrip("/"))
    stem = check_new_name(name)
    if not old.exists():
        raise ValueError(f"{old.name} does not exist")
    old_manifest = manifest_path_for(old)
    if not old_manifest.is_file():
        raise ValueError(f"{old.name} has no manifest beside it; only studio outputs can be renamed")
    new = old.with_name(stem + _ext(old))
    if new == old:
        return old
    pairs = [(old, new), (base_clip_path(old), base_clip_path(new))]
    new_manifest = manifest_path_for(new)
    taken = [p.name for p in (new, base_clip_path(new), new_manifest) if p.exists()]
    if taken:
        raise ValueError(f"cannot rename {old.name} to {new.name}: {', '.join(taken)} already exists")
    manifest = json.loads(old_manifest.read_text())
    made: list[Path] = []
    try:
        for a, b in pairs:
            if not a.exists():
                continue
            if a.is_dir():
                os.rename(a, b)           # a frame folder: one rename (no hard links of folders)
                made.append(b)
            else:
                os.link(a, b)
                made.append(b)
        out = manifest.get("output")
        if isinstance(out, dict) and "path" in out:
            out["path"] = str(new)
        if manifest.get("base_clip"):
            manifest["base_clip"] = base_clip_path(new).name
        manifest["renamed_from"] = old.name
        write_json_atomic(new_manifest, manifest)
    except BaseException:
        for b in made:
            src = next(a for a, bb in pairs if bb == b)
            if b.is_dir():
                os.rename(b, src)
            else:
                b.unlink(missing_ok=True)
        new_manifest.unlink(missing_ok=True)
        raise
    for a, _b in pairs:
        if a.is_file():
            a.unlink()
    old_manifest.unlink()
    log.info("renamed %s to %s", old.name, new.name)
    return new
