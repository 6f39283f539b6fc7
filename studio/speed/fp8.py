"""The `fp8` tier's layer: block linears computed in fp8 with row-wise scales.

Weights are quantized once, per output row, to float8 e4m3 (half the bytes of bf16); each call
quantizes its input per token (row) and runs `torch._scaled_mm`, which on Hopper, Ada and
Blackwell GPUs runs the fp8 tensor cores (≈1,335 TFLOP/s against ≈800 for bf16 on an H200).
Under `torch.compile` the input's amax / scale / cast fuse into the kernel before the matmul.

We wrote this layer rather than take torchao's `Float8DynamicActivationFloat8WeightConfig`
(the same maths: per-row dynamic activations, per-row weights): torchao wheels are built against
one torch release and the studio runs on several (2.11 on the GPU machines, 2.13 on CPUs); the
benchmark times torchao's layer beside this one where its wheel imports.
"""

from __future__ import annotations

from typing import Any

import torch

E4M3_MAX = 448.0
MIN_CAPABILITY = (8, 9)  # Ada (8.9), Hopper (9.0), Blackwell (10.x, 12.x) have fp8 tensor cores


def fp8_unsupported(device: str) -> str | None:
    """Why fp8 compute can't run on `device` (None when it can)."""
    dev = str(device)
    if not dev.startswith("cuda"):
        return (f"speed=fp8 computes on fp8 tensor cores, which device {dev!r} does not have "
                "(it needs an NVIDIA GPU of compute capability 8.9 or newer: Ada, Hopper, Blackwell)")
    if not torch.cuda.is_available():
        return f"speed=fp8 needs CUDA, which this torch build ({torch.__version__}) cannot use"
    idx = torch.device(dev).index or 0
    cap = torch.cuda.get_device_capability(idx)
    if cap < MIN_CAPABILITY:
        name = torch.cuda.get_device_name(idx)
        return (f"speed=fp8 needs fp8 tensor cores (compute capability 8.9 or newer); {name} is "
                f"{cap[0]}.{cap[1]}")
    return None


def quantize_rows(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(fp8 weight, float32 scale per row) with w ≈ q · scale."""
    w = w.float()
    scale = w.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / E4M3_MAX
    q = (w / scale).clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)
    return q, scale


class RowwiseFp8Linear(torch.nn.Module):
    """y = x·Wᵀ + b with W stored in fp8 per-row and x quantized per row at call time."""

    def __init__(self, linear: torch.nn.Module, weight: torch.Tensor | None = None) -> None:
        super().__init__()
        w = linear.weight if weight is None else weight
        self.in_features, self.out_features = int(w.shape[1]), int(w.shape[0])
        self.out_dtype = torch.bfloat16 if w.dtype in (torch.float8_e4m3fn, torch.float8_e5m2) else w.dtype
        q, s = quantize_rows(w.detach())
        self.register_buffer("qweight", q)                    # out × in, fp8
        self.register_buffer("w_scale", s.reshape(1, -1))      # 1 × out, fp32
        b = linear.bias
        self.register_buffer("bias", None if b is None else b.detach().to(self.out_dtype))

    def extra_repr(self) -> str:
        """Shape, as nn.Linear shows it."""
        return f"in_features={self.in_features}, out_features={self.out_features}, fp8 e4m3 per-row"

    def dequantized(self) -> torch.Tensor:
        """The weight this layer computes with, in its output dtype (for checks)."""
        return (self.qweight.float() * self.w_scale.reshape(-1, 1)).to(self.out_dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """fp8 × fp8 → bf16 through `torch._scaled_mm` (row-wise scales on both sides)."""
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        a_scale = x2.abs().amax(dim=1, keepdim=True).float().clamp(min=1e-12) / E4M3_MAX
        xq = (x2.float() / a_scale).clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)
        if x2.is_cuda:
            y = torch._scaled_mm(xq, self.qweight.t(), scale_a=a_scale, scale_b=self.w_scale,
                                 out_dtype=self.out_dtype, bias=self.bias)
        else:  # the same quantized maths, emulated (tests on CPUs; the tier refuses CPUs)
            y = ((xq.float() * a_scale) @ (self.qweight.float() * self.w_scale.reshape(-1, 1)).t())
            y = y.to(self.out_dtype)
            if self.bias is not None:
                y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features)


def _fp8_ok(mod: Any) -> bool:
    w = getattr(mod, "weight", None)
    return w is not None and w.dim() == 2 and w.shape[0] % 16 == 0 and w.shape[1] % 16 == 0


def quantize_blocks(blocks: list[torch.nn.Module]) -> int:
    """Replace every Linear inside `blocks` (both sides multiples of 16) with `RowwiseFp8Linear`.

    A layer loaded from an fp8 file (`studio.engines.fp8.Fp8Linear`) is dequantized first.
    Returns the number of layers replaced.
    """
    n = 0
    for block in blocks:
        for name, mod in list(block.named_modules()):
            if not isinstance(mod, torch.nn.Linear) or not _fp8_ok(mod):
                continue
            w = mod.dequantized(torch.bfloat16) if hasattr(mod, "dequantized") else None
            parent = block.get_submodule(name.rsplit(".", 1)[0]) if "." in name else block
            setattr(parent, name.rsplit(".", 1)[-1], RowwiseFp8Linear(mod, w))
            n += 1
    return n
