"""Write a Real-ESRGAN state dict (official layout) as an ncnn `.param` text and `.bin` blob.

The inverse of `ncnn_import`: the same graphs the shipped ncnn models hold (SRVGGNetCompact: conv
and PReLU, pixel shuffle, plus the nearest-upsampled input; RRDBNet ×4: dense blocks with fused
LeakyReLU, two nearest ×2 upsamplings), without the x2/x3 graphs' final bicubic resize (our
stage area-downscales the ×4 result, the same on every backend).  Convolution kernels are
written as float32 (a zero storage tag), biases and PReLU slopes raw float32.
"""

from __future__ import annotations

import io
import struct
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch

from .archs import ArchInfo

MAGIC = 7767517
_LRELU = "9=2 -23310=1,2.000000e-01"


@dataclass
class _Graph:
    """Layers in order; blobs used by more than one layer get a Split when written."""

    layers: list[tuple[str, str, list[str], list[str], str]] = field(default_factory=list)
    weights: io.BytesIO = field(default_factory=io.BytesIO)
    n: int = 0

    def blob(self) -> str:
        self.n += 1
        return f"b{self.n}"

    def add(self, typ: str, bottoms: list[str], params: str = "") -> str:
        top = self.blob()
        self.layers.append((typ, f"{typ.lower()}_{len(self.layers)}", bottoms, [top], params))
        return top

    def conv(self, x: str, state: dict[str, torch.Tensor], key: str, act: bool = False) -> str:
        w = state[f"{key}.weight"].detach().float().cpu().numpy()
        b = state.get(f"{key}.bias")
        n_out, _n_in, k, _ = w.shape
        self.weights.write(struct.pack("<I", 0))            # storage tag 0: raw float32 follows
        self.weights.write(np.ascontiguousarray(w, "<f4").tobytes())
        if b is not None:
            self.weights.write(np.ascontiguousarray(b.detach().float().cpu().numpy(), "<f4").tobytes())
        params = f"0={n_out} 1={k} 4={k // 2} 5={int(b is not None)} 6={w.size}"
        return self.add("Convolution", [x], params + (" " + _LRELU if act else ""))

    def prelu(self, x: str, slope: torch.Tensor) -> str:
        s = slope.detach().float().cpu().numpy().reshape(-1)
        self.weights.write(np.ascontiguousarray(s, "<f4").tobytes())
        return self.add("PReLU", [x], f"0={s.size}")

    def text(self) -> str:
        """The .param text, with Split layers inserted for blobs read more than once."""
        uses = Counter(b for _, _, bottoms, _, _ in self.layers for b in bottoms)
        seen: Counter[str] = Counter()
        lines: list[str] = []
        n_layers = n_blobs = 0

        def emit(typ: str, name: str, bottoms: list[str], tops: list[str], params: str) -> None:
            nonlocal n_layers, n_blobs
            head = [typ, name, str(len(bottoms)), str(len(tops)), *bottoms, *tops]
            lines.append(" ".join(head + ([params] if params else [])))
            n_layers += 1
            n_blobs += len(tops)

        for typ, name, bottoms, tops, params in self.layers:
            renamed = []
            for b in bottoms:
                if uses[b] > 1:
                    renamed.append(f"{b}_s{seen[b]}")
                    seen[b] += 1
                else:
                    renamed.append(b)
            emit(typ, name, renamed, tops, params)
            for t in tops:
                if uses[t] > 1:
                    emit("Split", f"split_{t}", [t], [f"{t}_s{i}" for i in range(uses[t])], "")
        return "\n".join([str(MAGIC), f"{n_layers} {n_blobs}", *lines]) + "\n"


def _compact(g: _Graph, state: dict[str, torch.Tensor], info: ArchInfo) -> str:
    x = g.add("Input", [])
    idx = sorted({int(k.split(".")[1]) for k in state if k.startswith("body.")})
    h = x
    for i in idx:
        w = state[f"body.{i}.weight"]
        h = g.conv(h, state, f"body.{i}") if w.ndim == 4 else g.prelu(h, w)
    s = info.scale
    h = g.add("PixelShuffle", [h], f"0={s}")
    base = g.add("Interp", [x], f"0=1 1={float(s):e} 2={float(s):e}")
    return g.add("BinaryOp", [h, base], "0=0")


def _rrdb(g: _Graph, state: dict[str, torch.Tensor], info: ArchInfo) -> str:
    if info.scale != 4:
        raise ValueError(f"ncnn export supports RRDBNet ×4 only, not ×{info.scale}")
    x = g.add("Input", [])
    feat = g.conv(x, state, "conv_first")
    h = feat
    for b in range(int(info.params["num_block"])):
        rrdb_in = h
        for r in (1, 2, 3):
            key = f"body.{b}.rdb{r}"
            parts = [h]
            for c in (1, 2, 3, 4):
                cat = parts[0] if len(parts) == 1 else g.add("Concat", list(parts), "0=0")
                parts.append(g.conv(cat, state, f"{key}.conv{c}", act=True))
            x5 = g.conv(g.add("Concat", list(parts), "0=0"), state, f"{key}.conv5")
            h = g.add("Eltwise", [x5, h], "0=1 -23301=2,2.000000e-01,1.000000e+00")
        h = g.add("Eltwise", [h, rrdb_in], "0=1 -23301=2,2.000000e-01,1.000000e+00")
    h = g.add("BinaryOp", [feat, g.conv(h, state, "conv_body")], "0=0")
    for up in ("conv_up1", "conv_up2"):
        h = g.conv(g.add("Interp", [h], "0=1 1=2.000000e+00 2=2.000000e+00"), state, up, act=True)
    return g.conv(g.conv(h, state, "conv_hr", act=True), state, "conv_last")


def export_ncnn(state: dict[str, torch.Tensor], info: ArchInfo, pool2: bool = False) -> tuple[str, bytes]:
    """(.param text, .bin bytes) of the network in `state`; input blob 'data', output 'output'.

    `pool2` appends a 2×2 average pooling: the ×4 net's output area-downscaled to ×2 inside ncnn
    (exactly what the torch path does after the net, with a quarter of the output to copy out).
    """
    g = _Graph()
    build = {"compact": _compact, "rrdb": _rrdb}.get(info.arch)
    if build is None:
        raise ValueError(f"no ncnn export for architecture {info.arch!r}")
    out = build(g, state, info)
    if pool2:
        out = g.add("Pooling", [out], "0=1 1=2 2=2 5=1")
    # name the ends as the shipped models do
    typ, name, bottoms, _tops, params = g.layers[0]
    g.layers[0] = (typ, name, bottoms, ["data"], params)
    g.layers = [(t, n, ["data" if b == "b1" else b for b in bs], ts, p) for t, n, bs, ts, p in g.layers]
    typ, name, bottoms, tops, params = g.layers[-1]
    assert tops == [out]
    g.layers[-1] = (typ, name, bottoms, ["output"], params)
    return g.text(), g.weights.getvalue()
