"""Uploads in flight: `<outputs>/<owner>/uploads/.incoming-<pid>-<random>/`, one folder per upload being
received and validated by the API process `<pid>`.

A folder whose process is gone (an API killed mid-validation) is a leftover: `sweep` removes those
when an API starts, and until then `incoming_bytes` counts every such folder against its owner's
quota (the quota check is `UploadStore.add`'s), so leftovers cannot be used to store more than the
quota allows.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

PREFIX = ".incoming-"


def make(uploads: Path) -> Path:
    """A new in-flight folder for one upload under an owner's uploads folder, named by this process."""
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=uploads))


def _owner_pid(folder: Path) -> int | None:
    head = folder.name[len(PREFIX):].split("-", 1)[0]
    return int(head) if head.isdigit() else None


def _size(folder: Path) -> int:
    total = 0
    for f in folder.rglob("*"):
        try:
            if f.is_file() and not f.is_symlink():
                total += f.stat().st_size
        except OSError:
            pass
    return total


def incoming_bytes(uploads: Path, exclude: Path | None = None) -> int:
    """Bytes in an owner's in-flight and leftover upload folders (but `exclude`, the caller's own)."""
    if not uploads.is_dir():
        return 0
    ex = exclude.resolve() if exclude is not None else None
    return sum(_size(d) for d in uploads.glob(PREFIX + "*") if d.is_dir() and d.resolve() != ex)


def sweep(root: Path) -> int:
    """Remove leftover in-flight folders under `<root>/*/uploads` (their process is gone, or they
    predate process-named folders); returns how many were removed."""
    from .worker import pid_alive
    n = 0
    if not root.is_dir():
        return 0
    for d in root.glob(f"*/uploads/{PREFIX}*"):
        pid = _owner_pid(d)
        if not d.is_dir() or pid == os.getpid() or (pid is not None and pid_alive(pid)):
            continue
        shutil.rmtree(d, ignore_errors=True)
        n += 1
    if n:
        log.info("removed %d leftover upload folder(s) under %s", n, root)
    return n
