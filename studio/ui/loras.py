"""A thin, tolerant view of the LoRA library (`studio.loras`) for the pages.

`studio.loras` is imported lazily; when it is absent the pages say "no LoRAs".  Entries are read
by attribute or key so the pages keep working while the library's record type settles.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class LoraView:
    """What the pages show of a LoRA."""

    name: str
    family: str = ""
    trigger_words: list[str] = field(default_factory=list)
    default_strength: float = 1.0
    preview: str | None = None
    path: str | None = None
    meta_path: str | None = None
    raw: Any = None


def _get(obj: Any, *names: str, default: Any = None) -> Any:
    for n in names:
        if isinstance(obj, dict) and n in obj:
            return obj[n]
        if hasattr(obj, n):
            return getattr(obj, n)
    return default


def library() -> Any | None:
    """The `studio.loras` module, or None when it is not there yet."""
    try:
        import studio.loras as mod
    except ImportError:
        return None
    return mod


def _view(item: Any) -> LoraView:
    meta = _get(item, "meta", "metadata", default=None) or {}
    words = _get(item, "trigger_words", "triggers", default=None) or _get(meta, "trigger_words", default=[])
    if isinstance(words, str):
        words = [w.strip() for w in words.split(",") if w.strip()]
    path = _get(item, "path", "file", default=None)
    meta_path = _get(item, "meta_path", "json_path", default=None)
    if meta_path is None and path:
        meta_path = str(Path(str(path)).with_suffix(".json"))
    preview = _get(item, "preview", default=None) or _get(meta, "preview", default=None)
    if preview and path and not Path(str(preview)).is_absolute():
        preview = str(Path(str(path)).parent / str(preview))
    return LoraView(
        name=str(_get(item, "name", default="?")),
        family=str(_get(item, "family", "base_family", "base", default=None) or
                   _get(meta, "family", "base_family", "base", default="") or ""),
        trigger_words=list(words or []),
        default_strength=float(_get(item, "default_strength", "strength", default=None) or
                               _get(meta, "default_strength", default=1.0) or 1.0),
        preview=str(preview) if preview else None, path=str(path) if path else None,
        meta_path=str(meta_path) if meta_path else None, raw=item)


def list_loras() -> list[LoraView]:
    """Every LoRA in the library ([] when the library module is absent or fails)."""
    mod = library()
    if mod is None or not hasattr(mod, "list_loras"):
        return []
    try:
        return [_view(x) for x in mod.list_loras()]
    except Exception as e:  # noqa: BLE001 - a broken library must not break the page
        log.warning("listing LoRAs failed: %s", e)
        return []


def save_metadata(lv: LoraView, updates: dict[str, Any]) -> Path:
    """Write edited metadata (trigger words, default strength, family) into `<name>.json`."""
    if not lv.meta_path:
        raise ValueError(f"LoRA {lv.name!r} has no metadata file path")
    strength = float(updates.get("default_strength", lv.default_strength))
    if not -4.0 <= strength <= 4.0:
        raise ValueError(f"default_strength={strength:g} is outside -4..4")
    p = Path(lv.meta_path)
    data = json.loads(p.read_text()) if p.is_file() else {}
    data.update(updates)
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(p)
    return p


def validate_upload(path: Path, engine_ids: list[str]) -> tuple[list[str], list[str]]:
    """Check an uploaded safetensors LoRA against each engine: (engines it fits, reasons it does not)."""
    mod = library()
    if mod is None or not hasattr(mod, "validate_lora"):
        raise ValueError("the LoRA library (studio.loras) is not available, so LoRAs cannot be validated")
    if Path(path).suffix != ".safetensors":
        raise ValueError(f"{Path(path).name}: LoRAs must be .safetensors files")
    from ..engines import get_engine
    fits, reasons = [], []
    for eid in engine_ids:
        try:
            engine = get_engine(eid)
            if not getattr(engine, "supports_loras", False):
                continue
            report = mod.validate_lora(path, engine)
        except (ValueError, ImportError) as e:
            reasons.append(f"{eid}: {e}")
            continue
        ok = _get(report, "ok", "compatible", default=True)
        if ok:
            fits.append(eid)
        else:
            reasons.append(f"{eid}: {_get(report, 'reason', 'message', default='incompatible')}")
    return fits, reasons
