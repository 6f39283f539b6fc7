"""Real-ESRGAN through the ncnn runtime: on the CPU, or on a Vulkan GPU where there is one.

`NcnnForward` is a drop-in for the torch network inside `runner.Upscaler` (N×3×h×w float in
[0, 1] in, N×3×h·s×w·s out), so pre-padding, tiling, the ×2/×3 area downscale, colour match,
progress and cancel are the same code on every backend.  The graph is written from the same
state dict the torch path loads (`ncnn_export`), so official `.pth` files work here too.

On the CPU it runs float32 (x86 has no fp16 kernels).  `bf16=True` keeps activations in
bfloat16 where the CPU has AVX512-BF16 (ncnn's `use_bf16_storage`): 53-56 dB PSNR against float32
on real photo crops, up to a grey level off, and no faster in our CPU-time measurements on 2
cores of an AMD EPYC, so it is off by default.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import logging
import tempfile
import threading
from pathlib import Path

import numpy as np
import torch

from .archs import ArchInfo
from .ncnn_export import export_ncnn

log = logging.getLogger(__name__)

# ncnn GpuInfo.type(): 0 discrete, 1 integrated, 2 virtual, 3 CPU (software, e.g. llvmpipe)
_GPU_TYPES = {0: "discrete", 1: "integrated", 2: "virtual"}


def ncnn_available() -> bool:
    """Whether the `ncnn` package can be imported (checked without importing it)."""
    return importlib.util.find_spec("ncnn") is not None


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether the CPU advertises AVX512-BF16 (Linux /proc/cpuinfo; False elsewhere)."""
    try:
        return "avx512_bf16" in Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False


@functools.cache
def vulkan_gpu() -> tuple[int, str] | None:
    """(index, name) of the first hardware Vulkan GPU ncnn can use, or None.

    The Vulkan loader is looked for first, so machines without one never start ncnn's GPU
    instance (which prints loader errors); software devices (llvmpipe) do not count.
    """
    if not ncnn_available():
        return None
    try:
        ctypes.CDLL("libvulkan.so.1")
    except OSError:
        return None
    import ncnn
    try:
        for i in range(ncnn.get_gpu_count()):
            info = ncnn.get_gpu_info(i)
            if info.type() in _GPU_TYPES:
                return i, f"{info.device_name()} ({_GPU_TYPES[info.type()]})"
    except Exception as e:  # noqa: BLE001 - a broken driver means no Vulkan, not a failed run
        log.warning("Vulkan probe failed (%s: %s); ncnn stays on the CPU", type(e).__name__, e)
    return None


class NcnnForward:
    """Runs an exported Real-ESRGAN graph on ncnn, called like the torch network.

    `gpu` is a Vulkan device index (None = CPU); `threads` 0 = every core ncnn sees;
    `bf16` True = bfloat16 storage where the CPU has AVX512-BF16 (CPU only); `pool2` ends the
    graph with a 2×2 average pooling (`scale` is then half the network's); `gpu_fp16` True runs
    a Vulkan GPU in ncnn's default fp16 instead of float32 (on an H200: 50 dB against float32
    torch, and 128 px tiles off the untiled result by up to 70 levels; float32: 94 dB and 1 level,
    bench/results/upscale_vulkan.json).
    """

    def __init__(self, state: dict[str, torch.Tensor], info: ArchInfo, gpu: int | None = None,
                 threads: int = 0, bf16: bool = False, pool2: bool = False, gpu_fp16: bool = False) -> None:
        import ncnn
        self.info, self.gpu = info, gpu
        self.scale = info.scale // 2 if pool2 else info.scale
        self.bf16 = bool(gpu is None and bf16 and cpu_has_bf16())
        net = ncnn.Net()
        opt = net.opt
        opt.num_threads = threads or ncnn.get_cpu_count()
        opt.use_vulkan_compute = gpu is not None
        if gpu is None:   # fp16 has no CPU kernels on x86: state the storage we want plainly
            opt.use_fp16_storage = opt.use_fp16_packed = opt.use_fp16_arithmetic = False
            opt.use_bf16_storage = self.bf16
        else:
            net.set_vulkan_device(gpu)
            if not gpu_fp16:   # ncnn's GPU default (fp16) put tile seams up to 70 levels deep
                opt.use_fp16_storage = opt.use_fp16_packed = opt.use_fp16_arithmetic = False
        param, weights = export_ncnn(state, info, pool2)
        with tempfile.TemporaryDirectory(prefix="ncnn-") as td:
            p, b = Path(td) / "net.param", Path(td) / "net.bin"
            p.write_text(param)
            b.write_bytes(weights)
            if net.load_param(str(p)) != 0 or net.load_model(str(b)) != 0:
                raise RuntimeError(f"ncnn could not load the exported {info.label()} graph")
        self.net = net
        self.lock = threading.Lock()   # one extractor at a time per net
        self.calls = 0

    @property
    def label(self) -> str:
        """e.g. 'ncnn CPU, bf16 storage' or 'ncnn Vulkan GPU 0'."""
        if self.gpu is not None:
            return f"ncnn Vulkan GPU {self.gpu}"
        return "ncnn CPU" + (", bf16 storage" if self.bf16 else "")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """N×3×h×w float in [0, 1] (CPU) -> N×3×h·s×w·s float32 (s = `scale`)."""
        import ncnn
        outs = []
        for img in x.detach().float().cpu():
            arr = np.ascontiguousarray(img.numpy())
            with self.lock:
                ex = self.net.create_extractor()
                mat = ncnn.Mat(arr)       # borrows `arr`: keep it alive until extract returns
                ex.input("data", mat)
                ret, out = ex.extract("output")
                if ret != 0:
                    raise RuntimeError(f"ncnn failed on a {arr.shape[2]}×{arr.shape[1]} tile "
                                       f"(error {ret}; {self.label})")
                outs.append(torch.from_numpy(np.array(out)))
            self.calls += 1
        return torch.stack(outs)
