"""The LoRA library on disk: `loras/<name>.safetensors` + `loras/<name>.json`, names, metadata.

Metadata JSON: {"family": "wan2.1-i2v-14b", "trigger_words": ["..."], "default_strength": 0.8,
"preview": "name.png", "expert": "high_noise"}.  Names are `[A-Za-z0-9._-]+`, never starting with
'.', and always resolve inside the library folder (a symlink out of it is refused); a sidecar's
`preview` is used only when it resolves inside the folder too.  LoRAs are read with safetensors
only (never unpickled).

Wan 2.2 A14B LoRAs come as high-noise/low-noise pairs: which half a file is comes from `"expert"`
in its sidecar, else from its name (`expert_from_name`); `studio.loras.engine` puts it into that expert.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[2]
NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")


class LoraError(ValueError):
    """A LoRA cannot be used with this engine; the text says why."""


def loras_dir() -> Path:
    """$STUDIO_LORAS_DIR, else <repo>/loras."""
    return Path(os.environ.get("STUDIO_LORAS_DIR", REPO_ROOT / "loras"))


def check_name(name: Any) -> str:
    """`name` when it is a valid LoRA name ([A-Za-z0-9._-]+, not '.', '..' or a leading dot)."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or name.startswith("."):
        raise LoraError(f"LoRA name {name!r} is not allowed: use letters, digits, '.', '_' and '-' "
                        f"(at most 128, not starting with '.')")
    return name


def lora_path(name: str) -> Path:
    """`loras/<name>.safetensors` for a valid name, refusing any path that resolves outside loras/."""
    check_name(name)
    root = loras_dir().resolve()
    p = (root / f"{name}.safetensors").resolve()
    if p.parent != root:
        raise LoraError(f"LoRA {name!r} resolves outside the LoRA folder; refused")
    return p


@dataclass
class LoraInfo:
    """One library entry; `problems` says what in its metadata was ignored and why."""

    name: str
    path: Path
    family: str | None = None
    trigger_words: list[str] = field(default_factory=list)
    default_strength: float = 1.0
    preview: Path | None = None
    problems: list[str] = field(default_factory=list)
    expert: str | None = None          # "high_noise" | "low_noise" (Wan 2.2 A14B pairs); None: both
    expert_source: str = ""            # "metadata" or "name" (how `expert` was found)


EXPERTS = ("high_noise", "low_noise")
_EXPERT_NAME = re.compile(r"(?:^|[^a-z])(high|low)[_.-]?noise(?:$|[^a-z])|[_.-](high|low)$", re.I)


def expert_from_name(name: str) -> str | None:
    """'high_noise'/'low_noise' when a LoRA's name says which Wan 2.2 A14B expert it is for."""
    m = _EXPERT_NAME.search(name)
    return None if m is None else f"{(m[1] or m[2]).lower()}_noise"


def _inside(root: Path, rel: Any) -> Path | None:
    if not isinstance(rel, str) or not rel:
        return None
    p = (root / rel).resolve()
    return p if p.is_relative_to(root.resolve()) and p != root.resolve() else None


def read_info(path: Path) -> LoraInfo:
    """Metadata for `<name>.safetensors` from its `<name>.json` (missing or bad keys default)."""
    path = Path(path)
    info = LoraInfo(name=path.stem, path=path)
    side = path.with_suffix(".json")
    meta: dict[str, Any] = {}
    if side.is_file():
        try:
            meta = json.loads(side.read_text())
            if not isinstance(meta, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            info.problems.append(f"{side.name} is not valid metadata ({e}); ignored")
            meta = {}
    fam = meta.get("family")
    info.family = fam if isinstance(fam, str) and fam else None
    words = meta.get("trigger_words", [])
    info.trigger_words = [str(w) for w in words] if isinstance(words, list) else []
    try:
        info.default_strength = float(meta.get("default_strength", 1.0))
    except (TypeError, ValueError):
        info.problems.append(f"default_strength={meta.get('default_strength')!r} is not a number; 1.0 used")
    exp = meta.get("expert")
    if exp in EXPERTS:
        info.expert, info.expert_source = exp, "metadata"
    elif exp not in (None, "both"):
        info.problems.append(f"expert={exp!r} is not one of high_noise, low_noise, both; ignored")
    if exp is None and expert_from_name(info.name):
        info.expert, info.expert_source = expert_from_name(info.name), "name"
    prev = meta.get("preview")
    if prev:
        info.preview = _inside(path.parent, prev)
        if info.preview is None:
            info.problems.append(f"preview {prev!r} is outside the LoRA folder; ignored")
    return info


def list_loras() -> list[LoraInfo]:
    """Every `*.safetensors` in the library with a valid name, by name."""
    d = loras_dir()
    if not d.is_dir():
        return []
    out = []
    for p in sorted(d.glob("*.safetensors")):
        try:
            out.append(read_info(lora_path(p.stem)))
        except LoraError as e:
            log.warning("skipping %s: %s", p.name, e)
    return out


def find_lora(name: str) -> LoraInfo:
    """The library entry called `name`, or LoraError (also for a name that is not allowed)."""
    p = lora_path(name)
    if not p.is_file():
        raise LoraError(f"LoRA {name!r} not found in the LoRA library (expected {p.name})")
    return read_info(p)


def lora_hash(name: str) -> str | None:
    """sha256 of a library LoRA's file (None when absent)."""
    from ..weights import sha256_file
    p = lora_path(name)
    return sha256_file(p) if p.is_file() else None


_MAX_HEADER = 100_000_000  # safetensors' own limit on the JSON header


def check_safetensors(path: Path | str) -> None:
    """Refuse, in plain words (`LoraError`), a file that is not a safetensors file: a safetensors
    file starts with 8 bytes giving its header's length, then that much JSON, then the weights."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError as e:
        raise LoraError(f"cannot read {path.name}: {e.strerror or e}") from e
    if size < 10:
        raise LoraError(f"not a safetensors file: {path.name} is only {size} bytes")
    n = int.from_bytes(head[:8], "little")
    if head[8:9] == b"{" and size - 8 < n <= _MAX_HEADER:
        raise LoraError(f"not a safetensors file: {path.name} is cut short (its header alone is {n} "
                        f"bytes, the file is {size}): a partial download?")
    if head[8:9] != b"{" or n < 2 or n > min(_MAX_HEADER, size - 8):
        raise LoraError(f"not a safetensors file: {path.name} does not start with a safetensors header "
                        f"(is it a renamed .ckpt/.pt, an HTML page or a partial download?)")


def load_state(path: Path) -> dict[str, Any]:
    """A LoRA state dict, safetensors only."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise LoraError(f"{path.name}: only .safetensors LoRAs are accepted (never pickles)")
    from safetensors.torch import load_file
    check_safetensors(path)
    try:
        return load_file(str(path))
    except Exception as e:  # noqa: BLE001 - the library's words ("Error while deserializing header...")
        raise LoraError(f"not a safetensors file: {path.name} has a damaged header or is cut short "
                        f"({type(e).__name__})") from e


def save_meta(name: str, updates: dict[str, Any]) -> Path:
    """Merge `updates` (family, trigger_words, default_strength) into `<name>.json`, atomically."""
    p = lora_path(name).with_suffix(".json")
    allowed = {"family", "trigger_words", "default_strength", "expert"}
    bad = sorted(set(updates) - allowed)
    if bad:
        raise LoraError(f"LoRA metadata has no field(s) {', '.join(bad)}")
    if "default_strength" in updates and not -4.0 <= float(updates["default_strength"]) <= 4.0:
        raise LoraError(f"default_strength={float(updates['default_strength']):g} is outside -4..4")
    fam = updates.get("family")
    if fam is not None and (not isinstance(fam, str) or not NAME_RE.fullmatch(fam)):
        raise LoraError(f"family={fam!r} is not a family name")
    if "expert" in updates and updates["expert"] not in (*EXPERTS, "both", None):
        raise LoraError(f"expert={updates['expert']!r} is not one of high_noise, low_noise, both")
    data: dict[str, Any] = {}
    if p.is_file():
        try:
            data = json.loads(p.read_text())
        except ValueError:
            data = {}
    data.update({k: v for k, v in updates.items() if v is not None})
    if updates.get("family", "") is None:
        data.pop("family", None)
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(p)
    return p


def add_lora(src: Path, name: str, *, replace: bool = False, family: str | None = None) -> Path:
    """Move a checked upload into the library as `<name>.safetensors`.

    An existing LoRA of that name is replaced only with `replace=True` (else LoraError).
    `family`, when given, is written into the sidecar JSON.
    """
    dest = lora_path(name)
    if dest.exists() and not replace:
        raise LoraError(f"a LoRA named {name!r} already exists; tick 'Replace' (replace=True) "
                        f"to overwrite it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.incoming")
    shutil.copyfile(src, tmp)
    tmp.replace(dest)
    if family:
        save_meta(name, {"family": family})
    return dest
