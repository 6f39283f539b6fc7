"""RIFE batches whose pairs are not consecutive (static pairs or scene cuts skipped) on CUDA.

Such a batch uploads up to 2 x batch frames; the pinned upload buffer once held batch + 1, so an
H.264 input with a static pair near the start failed on the GPU ("index 9 is out of bounds for
axis 0 with size 9", seen in bench/bench_ray_gpus.py on an H200).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from imagemath import psnr

DATA = Path(__file__).parent / "data"


def _pan(n: int, h: int = 128, w: int = 192, d: int = 4) -> list[np.ndarray]:
    img = cv2.cvtColor(cv2.imread(str(DATA / "coffee.jpg")), cv2.COLOR_BGR2RGB)
    return [np.ascontiguousarray(img[80:80 + h, 100 + k * d:100 + k * d + w]) for k in range(n)]


@pytest.mark.gpu
def test_cuda_batch_with_gaps_between_pairs_matches_cpu(rife_weights):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from postfx.rife.interpolator import RifeInterpolator
    from postfx.rife.weights import load_model

    frames = _pan(8)
    jobs = [(0, 0.5), (2, 0.5), (4, 0.5), (6, 0.5)]   # batch 3: frames 0-5 (6 > 3 + 1), then 6-7
    cpu = RifeInterpolator(load_model()).run(frames, jobs)
    gpu = RifeInterpolator(load_model(), device="cuda", batch=3).run(frames, jobs)
    assert len(gpu) == len(jobs)
    assert all(psnr(a, b) > 38 for a, b in zip(cpu, gpu, strict=True))
