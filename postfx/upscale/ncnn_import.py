"""Read ncnn `.param`/`.bin` Real-ESRGAN models into the official PyTorch state-dict layout.

The `.param` file is text: a magic line, "layers blobs", then one line per layer
`Type Name n_in n_out in... out... k=v ...` (array parameters are `-233xx=count,v1,v2,...`).
The `.bin` file is every layer's weights in layer order.  A convolution's kernel starts with a
4-byte tag saying how it is stored (0x01306B47 float16, 0 float32, other non-zero bytes an 8-bit
quantisation table); biases and PReLU slopes are raw float32 with no tag.  Stored fp16 data is
padded to a multiple of 4 bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

MAGIC = 7767517
TAG_FP16 = 0x01306B47
TAG_INT8 = 0x000D4B38
TAG_FP32 = 0x0002C056

_NO_WEIGHTS = {"Input", "Split", "Concat", "Eltwise", "BinaryOp", "Interp", "PixelShuffle", "ReLU",
               "Sigmoid", "Crop", "Padding", "Noop"}


@dataclass
class NcnnLayer:
    """One line of a .param file."""

    type: str
    name: str
    bottoms: list[str]
    tops: list[str]
    params: dict[int, int | float | list[float]] = field(default_factory=dict)


def _num(s: str) -> int | float:
    return float(s) if any(c in s for c in ".eE") else int(s)


def parse_param(text: str) -> list[NcnnLayer]:
    """Parse .param text into layers; ValueError names the first line that does not fit."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines or lines[0] != str(MAGIC):
        raise ValueError(f"not an ncnn .param file (first line {lines[0] if lines else ''!r}, "
                         f"expected {MAGIC})")
    n_layers, _n_blobs = (int(v) for v in lines[1].split())
    layers: list[NcnnLayer] = []
    for ln in lines[2:]:
        tok = ln.split()
        typ, name, nb, nt = tok[0], tok[1], int(tok[2]), int(tok[3])
        bottoms, tops = tok[4:4 + nb], tok[4 + nb:4 + nb + nt]
        params: dict[int, int | float | list[float]] = {}
        for kv in tok[4 + nb + nt:]:
            k, _, v = kv.partition("=")
            key = int(k)
            if key <= -23300:   # array: -23300 - id = count,values...
                vals = [float(x) for x in v.split(",")]
                params[-23300 - key] = vals[1:1 + int(vals[0])]
            else:
                params[key] = _num(v)
        layers.append(NcnnLayer(typ, name, bottoms, tops, params))
    if len(layers) != n_layers:
        raise ValueError(f".param declares {n_layers} layers but lists {len(layers)}")
    return layers


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError(f".bin ends at byte {len(self.data)}, needed {self.pos + n}")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def raw_f32(self, count: int) -> np.ndarray:
        return np.frombuffer(self.take(4 * count), dtype="<f4").copy()

    def tagged(self, count: int) -> np.ndarray:
        """A weight blob that starts with ncnn's 4-byte storage tag."""
        (tag,) = struct.unpack("<I", self.take(4))
        if tag == TAG_FP16:
            nbytes = 2 * count
            arr = np.frombuffer(self.take(nbytes), dtype="<f2").astype(np.float32)
            self.take((-nbytes) % 4)
            return arr
        if tag in (0, TAG_FP32):
            return self.raw_f32(count)
        if tag == TAG_INT8:
            raise ValueError("int8-quantised ncnn weights are not supported")
        table = np.frombuffer(self.take(256 * 4), dtype="<f4")   # 8-bit index into a value table
        idx = np.frombuffer(self.take(count), dtype=np.uint8)
        self.take((-count) % 4)
        return table[idx].astype(np.float32)


def read_weights(layers: list[NcnnLayer], data: bytes) -> dict[str, dict[str, np.ndarray]]:
    """Each weighted layer's arrays by layer name: {'weight': ..., 'bias': ...}; checks full use."""
    r = _Reader(data)
    out: dict[str, dict[str, np.ndarray]] = {}
    for layer in layers:
        p = layer.params
        if layer.type == "Convolution":
            n_out, k = int(p[0]), int(p.get(1, 1))
            size = int(p[6])
            n_in = size // (n_out * k * k)
            if n_in * n_out * k * k != size:
                raise ValueError(f"{layer.name}: weight size {size} is not out·in·k² for out={n_out} k={k}")
            w = r.tagged(size).reshape(n_out, n_in, k, k)
            d = {"weight": w}
            if int(p.get(5, 0)):
                d["bias"] = r.raw_f32(n_out)
            out[layer.name] = d
        elif layer.type == "PReLU":
            out[layer.name] = {"weight": r.raw_f32(int(p.get(0, 1)))}
        elif layer.type not in _NO_WEIGHTS:
            raise ValueError(f"ncnn layer type {layer.type} ({layer.name}) is not supported here")
    if r.pos != len(data):
        raise ValueError(f".bin has {len(data) - r.pos} bytes left over after the last layer")
    return out


@dataclass
class NcnnModel:
    """An imported model: official-layout state dict, architecture and any final resize."""

    state: dict[str, torch.Tensor]
    arch: str                          # "rrdb" or "compact"
    post_resize: float | None = None   # e.g. 0.5 for animevideov3-x2 (bicubic after the ×4 net)
    post_mode: str | None = None       # "bicubic" / "bilinear" / "nearest"


_INTERP_MODES = {1: "nearest", 2: "bilinear", 3: "bicubic"}


def to_state_dict(layers: list[NcnnLayer], weights: dict[str, dict[str, np.ndarray]]) -> NcnnModel:
    """Map ncnn layers onto RRDBNet or SRVGGNetCompact keys (chosen by the layer types present)."""
    convs = [ly for ly in layers if ly.type == "Convolution"]
    state: dict[str, torch.Tensor] = {}
    if any(ly.type == "PReLU" for ly in layers):
        arch = "compact"
        i = 0
        for ly in layers:
            if ly.type not in ("Convolution", "PReLU"):
                continue
            for kind, arr in weights[ly.name].items():
                state[f"body.{i}.{kind}"] = torch.from_numpy(arr)
            i += 1
    else:
        arch = "rrdb"
        n_block, rem = divmod(len(convs) - 6, 15)
        if rem or n_block < 1:
            raise ValueError(f"{len(convs)} convolutions do not fit RRDBNet (1 + 15·blocks + 5)")
        names = ["conv_first"]
        names += [f"body.{b}.rdb{r}.conv{c}" for b in range(n_block) for r in (1, 2, 3) for c in range(1, 6)]
        names += ["conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last"]
        for name, ly in zip(names, convs, strict=True):
            for kind, arr in weights[ly.name].items():
                state[f"{name}.{kind}"] = torch.from_numpy(arr)
    model = NcnnModel(state, arch)
    last = layers[-1]
    if last.type == "Interp" and float(last.params.get(1, 1.0)) < 1.0:
        model.post_resize = float(last.params[1])
        model.post_mode = _INTERP_MODES.get(int(last.params.get(0, 0)), "bicubic")
    return model


def load_ncnn(param: Path, bin_: Path) -> NcnnModel:
    """Read a .param/.bin pair from disk into an `NcnnModel`."""
    layers = parse_param(Path(param).read_text())
    return to_state_dict(layers, read_weights(layers, Path(bin_).read_bytes()))
