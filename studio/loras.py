"""LoRA library: `loras/<name>.safetensors` + `loras/<name>.json`, validation and stacking.

Metadata JSON: {"family": "i2vgen-xl", "trigger_words": ["..."], "default_strength": 0.8,
"preview": "name.png"}.  LoRAs are read with safetensors only (never unpickled).

Keys understood: diffusers/peft (`unet.<module>.lora_A.weight` / `lora_B.weight`, also with a
`transformer.` prefix), the older `<module>.lora.down/up.weight` and `...to_q_lora.down/up`, and
kohya (`lora_unet_<module_with_underscores>.lora_down/lora_up.weight` + `.alpha`).

Engines with `lora_mode == "peft"` (I2VGen-XL, SVD: no diffusers loader) get our own low-rank
layers wrapped around the denoiser's Linear/Conv layers; engines with `lora_mode == "pipeline"`
(LTX, Wan) use their pipeline's `load_lora_weights` / `set_adapters`.  Either way the base
weights are never reloaded, several LoRAs stack with their own strengths, and strength 0 (or no
LoRA) gives exactly the base output.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parent.parent


class LoraError(ValueError):
    """A LoRA cannot be used with this engine; the text says why."""


def loras_dir() -> Path:
    """$STUDIO_LORAS_DIR, else <repo>/loras."""
    return Path(os.environ.get("STUDIO_LORAS_DIR", REPO_ROOT / "loras"))


@dataclass
class LoraInfo:
    """One library entry."""

    name: str
    path: Path
    family: str | None = None
    trigger_words: list[str] = field(default_factory=list)
    default_strength: float = 1.0
    preview: Path | None = None


def read_info(path: Path) -> LoraInfo:
    """Metadata for `<name>.safetensors` from its `<name>.json` (missing keys default)."""
    path = Path(path)
    meta: dict[str, Any] = {}
    side = path.with_suffix(".json")
    if side.is_file():
        meta = json.loads(side.read_text())
    prev = meta.get("preview")
    return LoraInfo(name=path.stem, path=path, family=meta.get("family"),
                    trigger_words=list(meta.get("trigger_words", [])),
                    default_strength=float(meta.get("default_strength", 1.0)),
                    preview=(path.parent / prev) if prev else None)


def list_loras() -> list[LoraInfo]:
    """Every `*.safetensors` in the library, by name."""
    d = loras_dir()
    return [read_info(p) for p in sorted(d.glob("*.safetensors"))] if d.is_dir() else []


def find_lora(name: str) -> LoraInfo:
    """The library entry called `name`, or LoraError."""
    p = loras_dir() / f"{name}.safetensors"
    if not p.is_file():
        raise LoraError(f"LoRA {name!r} not found in {loras_dir()} (expected {p.name})")
    return read_info(p)


def lora_hash(name: str) -> str | None:
    """sha256 of a library LoRA's file (None when absent)."""
    from .weights import sha256_file
    p = loras_dir() / f"{name}.safetensors"
    return sha256_file(p) if p.is_file() else None


def load_state(path: Path) -> dict[str, Any]:
    """A LoRA state dict, safetensors only."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise LoraError(f"{path.name}: only .safetensors LoRAs are accepted (never pickles)")
    from safetensors.torch import load_file
    return load_file(str(path))


_PREFIXES = ("base_model.model.", "unet.", "transformer.", "diffusion_model.")
_PAIRS = ((".lora_A.weight", ".lora_B.weight"), (".lora.down.weight", ".lora.up.weight"),
          (".lora_down.weight", ".lora_up.weight"))


def parse_keys(sd: dict[str, Any], modules: set[str]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Group LoRA tensors by target module: ({module: {down, up, alpha}}, unmatched keys)."""
    by_flat = {m.replace(".", "_"): m for m in modules}
    groups: dict[str, dict[str, Any]] = {}
    unmatched: list[str] = []
    for key, t in sd.items():
        if key.endswith(".alpha"):
            continue
        base = part = None
        for d, u in _PAIRS:
            for suf, which in ((d, "down"), (u, "up")):
                if key.endswith(suf):
                    base, part = key[: -len(suf)], which
        if base is None:
            unmatched.append(key)
            continue
        alpha_key = base + ".alpha"
        mod = None
        if base.startswith("lora_unet_") or base.startswith("lora_transformer_"):
            mod = by_flat.get(base.split("_", 2)[2])
        else:
            b = base
            for p in _PREFIXES:
                if b.startswith(p):
                    b = b[len(p):]
            b = re.sub(r"\.processor\.(to_q|to_k|to_v|to_out)_lora$", lambda m: "." + m.group(1), b)
            if b.endswith(".to_out"):
                b += ".0"
            mod = b if b in modules else None
        if mod is None:
            unmatched.append(key)
            continue
        g = groups.setdefault(mod, {})
        g[part] = t
        if alpha_key in sd:
            g["alpha"] = float(sd[alpha_key])
    for mod in [m for m, g in groups.items() if not ("down" in g and "up" in g)]:
        unmatched.append(mod)
        del groups[mod]
    return groups, unmatched


def target_modules(model: Any) -> dict[str, Any]:
    """Linear and Conv2d modules of a denoiser by name (the possible LoRA targets)."""
    import torch.nn as nn
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, LoraLayer):
            out[name] = m.base
        elif isinstance(m, (nn.Linear, nn.Conv2d)) and not name.endswith(".base") \
                and ".lora_" not in name:
            out[name.removesuffix(".base_layer")] = m  # peft keeps the original layer as base_layer
    return out


@dataclass
class LoraReport:
    """What `validate_lora` found."""

    name: str
    family: str | None
    engine_family: str
    matched: int
    unmatched: int
    unmatched_examples: list[str]
    ok: bool
    message: str


def validate_lora(path: Path | str, engine: Any, model: Any | None = None) -> LoraReport:
    """Check a LoRA file against an engine's family and (if given) its denoiser's modules.

    Refuses (ok=False) on a family mismatch, a non-safetensors file, or when no key matches.
    Without `model`, keys are checked for a known LoRA layout only.
    """
    path = Path(path)
    info = read_info(path)
    fam = engine.family
    try:
        sd = load_state(path)
    except LoraError as e:
        return LoraReport(info.name, info.family, fam, 0, 0, [], False, str(e))
    except Exception as e:  # corrupt file
        return LoraReport(info.name, info.family, fam, 0, 0, [], False, f"{path.name}: unreadable: {e}")
    if info.family and info.family != fam:
        return LoraReport(info.name, info.family, fam, 0, len(sd), [], False,
                          f"LoRA {info.name!r} is for family {info.family!r}, engine {engine.id!r} "
                          f"needs {fam!r}")
    if model is not None:
        groups, unmatched = parse_keys(sd, set(target_modules(model)))
        shape_bad = [m for m, g in groups.items() if not _shapes_fit(g, target_modules(model)[m])]
        for m in shape_bad:
            unmatched.append(m)
            del groups[m]
        matched = sum(2 for _ in groups)
    else:
        pairs = [k for k in sd if any(k.endswith(s) for pair in _PAIRS for s in pair)]
        matched, unmatched = len(pairs), [k for k in sd if k not in pairs and not k.endswith(".alpha")]
    ok = matched > 0
    msg = (f"LoRA {info.name!r}: {matched} key(s) match, {len(unmatched)} do not"
           + ("" if ok else f" — refused: none of its keys fit engine {engine.id!r}"))
    return LoraReport(info.name, info.family, fam, matched, len(unmatched), unmatched[:5], ok, msg)


def _shapes_fit(g: dict[str, Any], mod: Any) -> bool:
    import torch.nn as nn
    down, up = g["down"], g["up"]
    if isinstance(mod, nn.Linear):
        return down.ndim == 2 and up.ndim == 2 and down.shape[1] == mod.in_features \
            and up.shape[0] == mod.out_features and up.shape[1] == down.shape[0]
    return down.ndim == 4 and up.ndim == 4 and down.shape[1] == mod.in_channels \
        and up.shape[0] == mod.out_channels and up.shape[1] == down.shape[0]


class LoraLayer:  # placeholder replaced below (needs torch at first use)
    """Marker; the real class is built lazily by `_layer_class` so importing needs no torch."""

    base: Any


def _layer_class() -> type:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    global LoraLayer
    if isinstance(LoraLayer, type) and issubclass(LoraLayer, nn.Module):
        return LoraLayer

    class _LoraLayer(nn.Module):
        """A Linear/Conv2d with stacked low-rank adapters; inactive adapters cost nothing."""

        def __init__(self, base: nn.Module) -> None:
            super().__init__()
            self.base = base
            self.adapters: dict[str, tuple[torch.Tensor, torch.Tensor, float]] = {}
            self.active: dict[str, float] = {}

        def forward(self, x: torch.Tensor, *a: Any, **k: Any) -> torch.Tensor:
            y = self.base(x, *a, **k)
            for name, strength in self.active.items():
                if strength == 0 or name not in self.adapters:
                    continue
                down, up, scale = self.adapters[name]
                if isinstance(self.base, nn.Conv2d):
                    h = F.conv2d(x, down, stride=self.base.stride, padding=self.base.padding,
                                 dilation=self.base.dilation)
                    h = F.conv2d(h, up)
                else:
                    h = F.linear(F.linear(x, down), up)
                y = y + h * (scale * strength)
            return y

    LoraLayer = _LoraLayer  # noqa: F811
    return _LoraLayer


def _set_module(root: Any, name: str, new: Any) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, new)


def inject(model: Any, name: str, path: Path) -> LoraReport:
    """Load a LoRA into our low-rank layers of `model` under `name` (inactive until activated)."""
    cls = _layer_class()
    sd = load_state(path)
    targets = target_modules(model)
    groups, unmatched = parse_keys(sd, set(targets))
    for mod, g in list(groups.items()):
        base = targets[mod]
        if not _shapes_fit(g, base):
            unmatched.append(mod)
            continue
        layer = model.get_submodule(mod)
        if not isinstance(layer, cls):
            layer = cls(base)
            _set_module(model, mod, layer)
        rank = g["down"].shape[0]
        scale = g.get("alpha", rank) / rank
        w = base.weight
        layer.adapters[name] = (g["down"].to(w.device, w.dtype), g["up"].to(w.device, w.dtype), float(scale))
    matched = len(groups) - sum(1 for m in groups if m in unmatched)
    ok = matched > 0
    return LoraReport(name, None, "", matched * 2, len(unmatched), unmatched[:5], ok,
                      f"LoRA {name!r}: {matched * 2} key(s) loaded, {len(unmatched)} did not match")


def activate(model: Any, strengths: dict[str, float]) -> None:
    """Set which adapters are on, with their strengths; others are off (exact base output)."""
    cls = _layer_class()
    for m in model.modules():
        if isinstance(m, cls):
            m.active = {k: float(v) for k, v in strengths.items() if k in m.adapters}


def apply_loras(pipe: Any, engine: Any, refs: list[Any]) -> list[dict[str, Any]]:
    """Validate and switch the pipeline's LoRAs to `refs` (name, strength) without reloading the base."""
    model = getattr(pipe, engine.denoiser)
    loaded: set[str] = getattr(pipe, "_studio_loras", set())
    strengths: dict[str, float] = {}
    out = []
    for ref in refs:
        info = find_lora(ref.name)
        if ref.name not in loaded:
            rep = validate_lora(info.path, engine, model)
            if not rep.ok:
                raise LoraError(rep.message)
            if rep.unmatched:
                log.warning("%s", rep.message)
            if engine.lora_mode == "pipeline":
                pipe.load_lora_weights(load_state(info.path), adapter_name=_adapter(ref.name))
            else:
                inject(model, ref.name, info.path)
            loaded.add(ref.name)
            pipe._studio_loras = loaded
        strengths[ref.name] = float(ref.strength)
        out.append({"name": ref.name, "strength": float(ref.strength), "sha256": lora_hash(ref.name)})
    if engine.lora_mode == "pipeline":
        if loaded:
            names = sorted(loaded)
            pipe.set_adapters([_adapter(n) for n in names], [strengths.get(n, 0.0) for n in names])
    else:
        activate(model, strengths)
    return out


def _adapter(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)
