"""The Ray actor the studio's jobs run on (`StudioActor`), in a Ray worker process.

One actor per GPU (or per 2 CPUs): a device, a model cache that keeps each model resident for the
next job and times every load (`TimedCache`), and a thread per job whose events (progress,
previews, the end) wait in the actor until `RayExecutor` polls them.  See `ray_executor.py`.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import ray

from ..context import ModelCache
from .executors import Finished, model_key

ROOT = Path(__file__).resolve().parents[2]


class TimedCache(ModelCache):
    """A ModelCache that records each load: its key and the seconds `load()` took."""

    def __init__(self) -> None:
        super().__init__()
        self.loads: list[tuple[str, float]] = []

    def get(self, key: Any, load: Any) -> Any:
        """The cached object for `key`, loading (and timing) it once."""
        with self.lock:
            if key not in self._items:
                t0 = time.perf_counter()
                self._items[key] = load()
                self.loads.append((str(key)[:200], time.perf_counter() - t0))
            return self._items[key]


class StudioActor:
    """One place jobs run on a Ray cluster: a device, a resident model cache, a thread per job."""

    def __init__(self) -> None:
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        self.cache = TimedCache()
        self.lock = threading.Lock()
        self.events: list[Any] = []
        self.cancels: dict[str, threading.Event] = {}
        self.precancelled: set[str] = set()
        self.loaded: set[str] = set()
        self.busy: str | None = None
        self.jobs: list[dict[str, Any]] = []   # per finished job: id, status, seconds, model loads
        self.gpu_ids = [str(g) for g in ray.get_gpu_ids()]
        self.device = "cpu"
        if self.gpu_ids:
            import torch

            if torch.cuda.is_available():
                self.device = "cuda:0"   # Ray set CUDA_VISIBLE_DEVICES to this actor's GPU

    def info(self) -> dict[str, Any]:
        """Who and where this actor is."""
        ctx = ray.get_runtime_context()
        return {"actor_id": ctx.get_actor_id(), "node_id": ctx.get_node_id(), "host": socket.gethostname(),
                "pid": os.getpid(), "device": self.device, "gpu_ids": self.gpu_ids}

    def start(self, job_id: str, kind: str, fn: Any, payload: dict[str, Any]) -> None:
        """Begin a job in a thread and return at once (its events come through `poll`)."""
        from .executors import execute, register_job_kind

        cancel = threading.Event()
        with self.lock:
            if job_id in self.precancelled:
                cancel.set()
            self.cancels[job_id] = cancel
            self.busy = job_id

        def run() -> None:
            n_loads = len(self.cache.loads)
            t0 = time.perf_counter()
            key = None
            try:
                if fn is not None:
                    register_job_kind(kind, fn)
                key = model_key(kind, payload)
                fin = execute(job_id, kind, payload, self.device, self.cache, cancel, self._emit)
            except BaseException as e:  # noqa: BLE001 - execute catches job errors; this guards the rest
                fin = Finished(job_id, "failed", error=f"{type(e).__name__}: {e}")
            loads = self.cache.loads[n_loads:]
            record = {"job_id": job_id, "status": fin.status, "seconds": round(time.perf_counter() - t0, 4),
                      "model_load_s": round(sum(s for _, s in loads), 4),
                      "models_loaded": [k for k, _ in loads]}
            if fin.result is not None:
                fin.result.update(model_load_s=record["model_load_s"], models_loaded=record["models_loaded"])
            with self.lock:
                if key and fin.status == "done":
                    self.loaded.add(key)
                self.jobs.append(record)
                self.cancels.pop(job_id, None)
                self.precancelled.discard(job_id)
                self.busy = None
                self.events.append(fin)

        threading.Thread(target=run, name=f"studio-job-{job_id}", daemon=True).start()

    def _emit(self, ev: Any) -> None:
        with self.lock:
            self.events.append(ev)

    def poll(self) -> dict[str, Any]:
        """Events since the last poll (then cleared), the model keys loaded, the job running."""
        with self.lock:
            evs, self.events = self.events, []
            return {"events": evs, "loaded": sorted(self.loaded), "busy": self.busy}

    def cancel(self, job_id: str) -> None:
        """Ask a job to stop at its next progress step (remembered if it has not begun yet)."""
        with self.lock:
            ev = self.cancels.get(job_id)
            if ev is None:
                self.precancelled.add(job_id)
        if ev is not None:
            ev.set()

    def stats(self) -> dict[str, Any]:
        """Per-job model-load times and, on a GPU, peak memory."""
        out: dict[str, Any] = {**self.info(), "jobs": list(self.jobs), "loaded": sorted(self.loaded)}
        if self.device.startswith("cuda"):
            import torch

            out["peak_vram_allocated_bytes"] = int(torch.cuda.max_memory_allocated(0))
            out["peak_vram_reserved_bytes"] = int(torch.cuda.max_memory_reserved(0))
            out["gpu_name"] = torch.cuda.get_device_name(0)
        return out
