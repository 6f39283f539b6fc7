"""The Triton-fused RIFE path (`postfx.rife.fused`) against our eager IFNet.

On CUDA it is the default path, so the GPU test compares it with the eager float16 net and the
CPU float32 net.  Without a GPU, the same kernels run through Triton's CPU interpreter in a
subprocess (`TRITON_INTERPRET=1` must be set before triton compiles them) when triton is
installed; CI has no triton (it ships with CUDA builds of torch), so there it is skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from imagemath import psnr

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"


def _triton() -> bool:
    from postfx.rife.fused import available
    return available()


_SCRIPT = r"""
import json, sys
import cv2, numpy as np, torch
sys.path.insert(0, sys.argv[1])
from postfx.rife.interpolator import RifeInterpolator
from postfx.rife.weights import load_model
img = cv2.cvtColor(cv2.imread(sys.argv[2]), cv2.COLOR_BGR2RGB)
h, w = 60, 120  # not multiples of 64: padding and the crop are exercised
frames = [np.ascontiguousarray(img[90 + 2 * k:90 + 2 * k + h, 140 + 5 * k:140 + 5 * k + w]) for k in range(3)]
jobs = [(0, 0.5), (1, 0.25), (1, 0.75)]
net = load_model()
eager = RifeInterpolator(net, pad_channels=True, fused=False, batch=3).run(frames, jobs)
fused = RifeInterpolator(net, pad_channels=True, fused=True, batch=3).run(frames, jobs)
# user scale 0.5 (blocks at 32..2): the last block's output is upsampled, not read in place
e2 = RifeInterpolator(net, pad_channels=True, fused=False, scale=0.5).run(frames[:2], [(0, 0.5)])
f2 = RifeInterpolator(net, pad_channels=True, fused=True, scale=0.5).run(frames[:2], [(0, 0.5)])
eager, fused = eager + e2, fused + f2
diff = [int(np.abs(a.astype(int) - b.astype(int)).max()) for a, b in zip(eager, fused)]
mse = [float(np.mean((a.astype(float) - b.astype(float)) ** 2)) for a, b in zip(eager, fused)]
print(json.dumps({"shapes": [list(f.shape) for f in fused], "max": diff, "mse": mse}))
"""


def test_fused_kernels_match_eager_in_the_triton_interpreter(rife_weights, tmp_path):
    if not _triton():
        pytest.skip("triton is not installed (it comes with CUDA builds of torch)")
    script = tmp_path / "fused_check.py"
    script.write_text(_SCRIPT)
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    r = subprocess.run([sys.executable, str(script), str(ROOT), str(DATA / "coffee.jpg")],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["shapes"] == [[60, 120, 3]] * 4
    assert max(res["max"]) <= 2, res
    assert min(10 * np.log10(255.0**2 / max(m, 1e-12)) for m in res["mse"]) >= 50, res


def test_fused_refuses_what_it_cannot_run(rife_weights):
    from postfx.rife.fused import FusedIFNet, supports
    from postfx.rife.interpolator import RifeInterpolator
    from postfx.rife.weights import load_model
    assert supports(1.0) and supports(0.5) and supports(0.25) and not supports(2.0)
    with pytest.raises(ValueError, match="scale=2.0"):
        RifeInterpolator(load_model(), scale=2.0, pad_channels=True, fused=True)
    with pytest.raises(ValueError, match="pad_for_tensor_cores"):
        FusedIFNet(load_model())
    # the CPU default is the eager net, whatever is installed
    assert RifeInterpolator(load_model()).fused is False


@pytest.mark.gpu
def test_fused_cuda_matches_eager_and_cpu(rife_weights):
    import cv2
    import torch
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from postfx.rife.interpolator import RifeInterpolator
    from postfx.rife.weights import load_model
    img = cv2.cvtColor(cv2.imread(str(DATA / "astronaut.jpg")), cv2.COLOR_BGR2RGB)
    h, w = 200, 300
    frames = [np.ascontiguousarray(img[40 + 3 * k:40 + 3 * k + h, 60 + 6 * k:60 + 6 * k + w])
              for k in range(4)]
    jobs = [(i, t) for i in range(3) for t in (0.3, 0.5)]
    fused_r = RifeInterpolator(load_model(), device="cuda", batch=4)
    assert fused_r.fused is True
    fused = fused_r.run(frames, jobs)
    eager = RifeInterpolator(load_model(), device="cuda", batch=4, fused=False).run(frames, jobs)
    cpu = RifeInterpolator(load_model()).run(frames, jobs)
    assert [f.shape for f in fused] == [(h, w, 3)] * len(jobs)
    assert min(psnr(a, b) for a, b in zip(fused, eager, strict=True)) >= 40
    assert min(psnr(a, b) for a, b in zip(fused, cpu, strict=True)) >= 40
