"""fp8 weights kept in fp8: a Linear that stores e4m3fn/e5m2 weights (with an optional scale).

ComfyUI-style fp8 files store Linear weights as float8 (`*_fp8_e4m3fn.safetensors`); the
"scaled" variants (`*_fp8_e4m3fn_scaled.safetensors`, marked by a `scaled_fp8` key) add a
`<layer>.scale_weight` tensor so that the real weight is `fp8 · scale`.  `Fp8Linear` keeps the
fp8 bytes as its weight (half the memory of bf16) and dequantizes them per call, in the input's
dtype.  Other fp8 tensors (norms, embeddings, convs) are dequantized once at load.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)
SCALE_SUFFIXES = (".scale_weight", ".scale_input")
MARKERS = ("scaled_fp8",)


class Fp8Linear(torch.nn.Linear):
    """`nn.Linear` whose weight stays float8; `scale_weight` (scalar or per row) multiplies it."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, scale: torch.Tensor | None,
                 compute_dtype: torch.dtype = torch.bfloat16) -> None:
        torch.nn.Module.__init__(self)
        self.compute_dtype = compute_dtype
        self.in_features, self.out_features = int(weight.shape[1]), int(weight.shape[0])
        self.weight = torch.nn.Parameter(weight.clone(), requires_grad=False)
        self.bias = None if bias is None else torch.nn.Parameter(bias, requires_grad=False)
        if scale is not None:
            scale = scale.reshape(-1, 1) if scale.numel() > 1 else scale.reshape(())
        self.register_buffer("scale_weight", None if scale is None else scale.float())

    def dequantized(self, dtype: torch.dtype) -> torch.Tensor:
        """The weight in `dtype` (times its scale)."""
        w = self.weight.to(dtype)
        if self.scale_weight is not None:
            w = w * self.scale_weight.to(dtype)
        return w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """y = x · (w·s)ᵀ + b, computed in x's dtype (the compute dtype when x comes in as fp8:
        T5's feed-forward casts its input to the output layer's weight dtype)."""
        if x.dtype in FP8_DTYPES:
            x = x.to(self.compute_dtype)
        b = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.dequantized(x.dtype), b)


def is_fp8(t: Any) -> bool:
    """True for a float8 tensor (e4m3fn or e5m2)."""
    return isinstance(t, torch.Tensor) and t.dtype in FP8_DTYPES


def split_scales(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove the fp8 scale and marker tensors from `sd`; returns {weight key: scale}."""
    scales: dict[str, torch.Tensor] = {}
    for k in list(sd):
        if k in MARKERS:
            del sd[k]
            continue
        for suf in SCALE_SUFFIXES:
            if k.endswith(suf):
                t = sd.pop(k)
                if suf == ".scale_weight":
                    scales[k[: -len(suf)] + ".weight"] = t
    return scales


def install(model: torch.nn.Module, sd: dict[str, torch.Tensor], scales: dict[str, torch.Tensor],
            dtype: torch.dtype) -> int:
    """Replace the Linear layers whose `sd` weight is fp8 with `Fp8Linear`; dequantize other fp8.

    Consumes the used entries of `sd` (the rest is loaded as usual); returns how many layers.
    """
    n = 0
    for name, mod in list(model.named_modules()):
        if not isinstance(mod, torch.nn.Linear) or isinstance(mod, Fp8Linear):
            continue
        wkey = f"{name}.weight"
        if not is_fp8(sd.get(wkey)):
            continue
        bias = sd.pop(f"{name}.bias", None)
        new = Fp8Linear(sd.pop(wkey), None if bias is None else bias.to(dtype), scales.pop(wkey, None), dtype)
        parent_name, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, attr, new)
        n += 1
    for k in list(sd):
        if is_fp8(sd[k]):
            w = sd[k].to(torch.float32)
            if k in scales:
                s = scales.pop(k).float()
                w = w * (s.reshape(-1, *([1] * (w.dim() - 1))) if s.numel() > 1 else s)
            sd[k] = w.to(dtype)
    return n


def quantize_fp8(w: torch.Tensor, scaled: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """w -> (float8_e4m3fn weight, scale or None): how fp8 files are made (tests, benchmarks)."""
    if not scaled:
        return w.to(torch.float8_e4m3fn), None
    scale = (w.abs().max().float() / 448.0).clamp(min=1e-12)
    return (w.float() / scale).to(torch.float8_e4m3fn), scale.reshape(1)
