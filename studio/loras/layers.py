"""Our own low-rank layers for denoisers without a diffusers LoRA loader (I2VGen-XL, SVD).

A `LoraLayer` wraps a Linear/Conv2d and adds any number of named adapters, each with its own
strength; inactive adapters (or strength 0) give exactly the base output.  Keys understood by
`parse_keys`: diffusers/peft (`unet.<module>.lora_A/B.weight`), `<module>.lora.down/up.weight`,
`...to_q_lora.down/up` and kohya (`lora_unet_<module_with_underscores>.lora_down/up` + `.alpha`).
"""

from __future__ import annotations

import re
from typing import Any

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


def shapes_fit(g: dict[str, Any], mod: Any) -> bool:
    """Whether a {down, up} pair fits a Linear/Conv2d."""
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


def inject(model: Any, name: str, sd: dict[str, Any]) -> tuple[int, list[str]]:
    """Load a LoRA state dict into our low-rank layers of `model` under `name` (inactive until
    activated): (keys loaded, keys or modules that did not match)."""
    cls = _layer_class()
    targets = target_modules(model)
    groups, unmatched = parse_keys(sd, set(targets))
    for mod, g in list(groups.items()):
        base = targets[mod]
        if not shapes_fit(g, base):
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
    return matched * 2, unmatched


def activate(model: Any, strengths: dict[str, float]) -> None:
    """Set which adapters are on, with their strengths; others are off (exact base output)."""
    cls = _layer_class()
    for m in model.modules():
        if isinstance(m, cls):
            m.active = {k: float(v) for k, v in strengths.items() if k in m.adapters}
