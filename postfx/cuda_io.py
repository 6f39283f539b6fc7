"""`HostPipe`: uint8 frames between numpy and a CUDA device without stalling the GPU's queue.

Pinned staging buffers, one copy stream each way (on one shared stream the next upload would
wait behind the last download) and a few worker threads for the host-side copies (numpy
releases the GIL while copying).  Used by the RIFE and Real-ESRGAN runners:

    pipe = HostPipe(device, in_shape=(n, h, w, 3), out_shape=(n, H, W, 3))
    x = pipe.upload(frames)            # uint8 device tensor, ordered before later compute
    handle = pipe.download(y_uint8)    # queued after the compute that made y
    futures = pipe.finish(handle, dst) # waits for that copy; host copies run on threads
    pipe.close()

`PipeCache` keeps one pipe per shape between runs of a runner: pinned buffers of a few hundred MB
(1080p RIFE batches, ×2 upscales of a Wan clip) take a noticeable part of a second to allocate,
on every job otherwise.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import torch


class HostPipe:
    """Pinned double-buffered uploads and `slots`-deep downloads for uint8 frame batches."""

    def __init__(self, device: torch.device, in_shape: tuple[int, ...], out_shape: tuple[int, ...],
                 slots: int = 3, workers: int | None = None) -> None:
        if slots < 2:
            raise ValueError(f"slots={slots!r} must be >= 2")
        self.device = device
        self.compute = torch.cuda.current_stream(device)
        self.up = torch.cuda.Stream(device)
        self.down = torch.cuda.Stream(device)
        self.inp = [torch.empty(in_shape, dtype=torch.uint8, pin_memory=True) for _ in range(2)]
        self.outp = [torch.empty(out_shape, dtype=torch.uint8, pin_memory=True) for _ in range(slots)]
        self.in_ev: list = [None, None]
        self.out_futs: list[list[Future]] = [[] for _ in range(slots)]
        self.n_in = self.n_out = 0
        workers = workers or max(2, min(8, os.cpu_count() or 2))
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="host-pipe")

    def upload(self, frames: Sequence[np.ndarray] | np.ndarray) -> torch.Tensor:
        """Frames (each like in_shape[1:]) -> a uint8 tensor on the device, usable by later compute."""
        slot = self.n_in % 2
        self.n_in += 1
        if self.in_ev[slot] is not None:
            self.in_ev[slot].synchronize()  # the copy that last read this buffer is done
        host = self.inp[slot][:len(frames)]
        hn = host.numpy()
        list(self.pool.map(lambda j: np.copyto(hn[j], frames[j]), range(len(frames))))
        with torch.cuda.stream(self.up):
            dev = host.to(self.device, non_blocking=True)
            ev = torch.cuda.Event()
            ev.record(self.up)
        self.in_ev[slot] = ev
        self.compute.wait_event(ev)
        dev.record_stream(self.compute)
        return dev

    def download(self, y: torch.Tensor) -> tuple[torch.cuda.Event, np.ndarray, int]:
        """Queue the copy of uint8 `y` (up to out_shape) to pinned memory after the current compute."""
        slot = self.n_out % len(self.outp)
        self.n_out += 1
        for f in self.out_futs[slot]:  # results still being copied out of this buffer
            f.result()
        ready = torch.cuda.Event()
        ready.record(self.compute)
        host = self.outp[slot][:y.shape[0]]
        with torch.cuda.stream(self.down):
            self.down.wait_event(ready)
            host.copy_(y, non_blocking=True)
            done = torch.cuda.Event()
            done.record(self.down)
        y.record_stream(self.down)
        return done, host.numpy(), slot

    def finish(self, handle: tuple[torch.cuda.Event, np.ndarray, int], dst: np.ndarray | None = None
               ) -> list[Future]:
        """Wait for a download; copy its frames out on worker threads.

        Into `dst` (frames, same shapes) when given (futures of None), else into new arrays
        (futures of the arrays).
        """
        done, hn, slot = handle
        done.synchronize()
        if dst is not None:
            if dst.shape != hn.shape:
                raise ValueError(f"dst has shape {dst.shape}, the download {hn.shape}")
            futs = [self.pool.submit(np.copyto, dst[j], hn[j]) for j in range(hn.shape[0])]
        else:
            futs = [self.pool.submit(np.array, hn[j], copy=True) for j in range(hn.shape[0])]
        self.out_futs[slot] = futs
        return futs

    def close(self) -> None:
        """Wait for the host copies and stop the threads."""
        self.pool.shutdown(wait=True)

    def reset(self) -> None:
        """Ready for another run: earlier copies finished, counters at zero, the caller's stream."""
        for ev in self.in_ev:
            if ev is not None:
                ev.synchronize()
        for futs in self.out_futs:
            for f in futs:
                f.result()
        self.in_ev = [None, None]
        self.out_futs = [[] for _ in self.outp]
        self.n_in = self.n_out = 0
        self.compute = torch.cuda.current_stream(self.device)


class PipeCache:
    """`HostPipe`s kept between runs, one per (device, in_shape, out_shape), at most `keep`.

    A run that finds its pipe in use (another thread) gets a fresh one for itself; a run that fails
    drops its pipe (its copies may be half done)."""

    def __init__(self, keep: int = 2) -> None:
        self.keep = keep
        self._pipes: dict[tuple, HostPipe] = {}
        self._busy: set[tuple] = set()
        self._lock = threading.Lock()

    @contextmanager
    def get(self, device: torch.device, in_shape: tuple[int, ...], out_shape: tuple[int, ...]
            ) -> Iterator[HostPipe]:
        """A ready pipe for these shapes (reused when free), released when the block ends."""
        key = (str(device), tuple(in_shape), tuple(out_shape))
        with self._lock:
            mine = key not in self._busy
            pipe = self._pipes.pop(key, None) if mine else None
            if mine:
                self._busy.add(key)
        ok = False
        try:
            if pipe is None:
                pipe = HostPipe(device, in_shape, out_shape)
            else:
                pipe.reset()
            yield pipe
            ok = True
        finally:
            drop: list[HostPipe] = []
            with self._lock:
                if mine:
                    self._busy.discard(key)
                if mine and ok and pipe is not None:
                    self._pipes[key] = pipe
                    while len(self._pipes) > self.keep:
                        drop.append(self._pipes.pop(next(iter(self._pipes))))
                elif pipe is not None:
                    drop.append(pipe)
            for p in drop:
                p.close()
