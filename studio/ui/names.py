"""Names a person reads: an output or upload without its machine prefixes (timestamp, hash, id).

The files keep their unique names; the pages show these instead, so clips that differ only in the
end of a long name (`20261202-154730-cam…`) do not look alike.
"""

from __future__ import annotations

import re
from pathlib import Path

_OUTPUT = re.compile(r"^(\d{4})(\d{2})(\d{2})-(\d{2})(\d{2})(\d{2})-(.+?)(?:-([0-9a-f]{6}))?$")
_UPLOAD = re.compile(r"^[0-9a-f]{12}-(.+)$")
_SIDE_FILES = (".json", ".base.npz")


def display_name(path: str | Path, *, with_time: bool = True) -> str:
    """'15:47:30 · camera-slowly-zooming-in' for an output (the time first: it tells clips apart
    when a narrow column cuts the name); 'coffee.jpg' for an upload.

    Side files (a manifest `x.mp4.json`) are named after their output.  Anything else keeps its name.
    """
    name = Path(str(path).rstrip("/")).name
    for side in _SIDE_FILES:
        if name.endswith(side) and "." in name[: -len(side)]:
            name = name[: -len(side)]
    m = _UPLOAD.match(name)
    if m:
        return m.group(1)
    stem, dot, ext = name.rpartition(".") if "." in name else (name, "", "")
    m = _OUTPUT.match(stem)
    if not m:
        return name
    label = m.group(7)
    if with_time:
        label = f"{m.group(4)}:{m.group(5)}:{m.group(6)} · {label}"
    return label + (f" ({ext})" if dot and ext.lower() != "mp4" else "")
