"""The Ray executor: jobs run on Ray actors, one per GPU of the cluster (CPU actors where it has none).

    RayExecutor(address="ray://…" | "10.0.0.1:6379" | None, worker=token)

Each actor (`StudioActor`, a threaded actor) keeps its own model cache, so a model it loaded stays
resident for its next job, and it reports the model keys it has loaded (`Slot.loaded`, which the
dispatcher's model affinity reads).  `start` begins a job in a thread of the actor and returns; the
executor polls every actor (`poll` returns and clears that actor's events: progress, previews, the
end); `cancel` sets the job's Event there.  The store is never written here: events go back to the
dispatcher, its only writer.

An actor that dies (killed, its node gone, the cluster shut down) yields `Lost(job_id, reason)` for
the job it ran, which the dispatcher requeues under the lease rules, and a new actor is asked for in
its place (it joins once the cluster has room).  When the whole cluster goes away the queue is safe in
the store; actors are made again once Ray is back.

Ray is imported only by this module and the actor's (`ray_actor.py`).  Actors import the studio
from the repository root, put on their PYTHONPATH through `runtime_env` (no working_dir upload),
along with this process's STUDIO_* settings (outputs, models, configs): on several machines those
paths must name the same (shared) folders.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import RayActorError, RayTaskError

from .executors import Finished, Lost, Slot
from .ray_actor import ROOT, StudioActor

log = logging.getLogger(__name__)

RECHECK_S = 5.0      # how often the executor looks for room for missing actors (new GPUs, a lost actor)
POLL_WAIT_S = 0.05   # how long one poll waits for the actors' answers


@dataclass
class _Actor:
    handle: Any
    slot: Slot | None = None           # set once the actor answered `info` (it is running)
    info_ref: Any = None
    poll_ref: Any = None
    calls: dict[Any, str | None] = field(default_factory=dict)   # start/cancel refs -> the job started
    info: dict[str, Any] = field(default_factory=dict)


_ACTOR_CLS: Any = None


def _actor_class() -> Any:
    global _ACTOR_CLS
    if _ACTOR_CLS is None:
        _ACTOR_CLS = ray.remote(StudioActor)
    return _ACTOR_CLS


def _kill(handle: Any) -> None:
    """End an actor, if Ray is still up here (a Ray call without it would start a new local cluster)."""
    if ray.is_initialized():
        try:
            ray.kill(handle, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass


def _kind_fn(kind: str) -> Any:
    """What the actor registers for `kind`: a 'module:function' string, or the function itself."""
    from . import executors

    return executors._KINDS.get(kind)


class RayExecutor:
    """Jobs on Ray actors: one per GPU (`num_gpus=1`), or one per 2 CPUs where the cluster has no GPU."""

    name = "ray"

    def __init__(self, address: str | None = None, worker: str = "ray", *, actors: int | None = None,
                 num_cpus: float | None = None, max_concurrency: int = 4, root: Path | str | None = None,
                 start_timeout_s: float = 120.0) -> None:
        """Join the cluster at `address` (else the one this process already joined, else
        `ray.init(address="auto")`) and ask for the actors (`actors` caps how many; `num_cpus` is what
        each reserves: 1 beside a GPU, 2 for a CPU actor); wait up to `start_timeout_s` for the first."""
        self.address, self.worker = address, worker
        self.want, self.num_cpus, self.max_concurrency = actors, num_cpus, max_concurrency
        if actors is not None and actors < 1:
            raise ValueError(f"actors={actors} must be at least 1")
        self.root = str(Path(root) if root else ROOT)
        self._actors: dict[str, _Actor] = {}     # slot id (actor id) -> actor, once running
        self._pending: list[_Actor] = []         # asked for, not yet answering
        self._events: list[Any] = []
        self._closing = self._closed = False
        self._last_check = 0.0
        self._lock = threading.RLock()
        self._own_init = not ray.is_initialized()   # we joined the cluster (else this process had)
        if self._own_init:
            try:
                ray.init(address=address or "auto", include_dashboard=False)
            except Exception as e:  # noqa: BLE001 - no cluster: say how to start one
                raise RuntimeError(f"cannot reach a Ray cluster at {address or 'auto'!r} ({e}); start one "
                                   "with `ray start --head` or pass --address") from e
        self._ensure_actors()
        end = time.monotonic() + start_timeout_s
        while not self._actors and time.monotonic() < end:
            self._collect_started(timeout=0.5)
        if not self._actors:
            raise RuntimeError(f"no Ray actor started within {start_timeout_s:.0f}s on {self._where()}")
        log.info("ray executor: %d actor(s) on %s: %s", len(self._actors), self._where(),
                 ", ".join(f"{sid[:8]}@{a.slot.device}" for sid, a in self._actors.items()))

    # -- the cluster ------------------------------------------------------------------------------
    def _where(self) -> str:
        return self.address or "the cluster this process joined"

    def _connected(self) -> bool:
        """True when Ray is up in this process; a cluster we joined is joined again once it is back."""
        if ray.is_initialized():
            return True
        if not self._own_init:
            return False   # whoever started Ray in this process (a test, an app) will start it again
        try:
            ray.init(address=self.address or "auto", include_dashboard=False)
            log.info("ray executor: joined the cluster at %s again", self.address or "auto")
            return True
        except Exception as e:  # noqa: BLE001 - still down: the queue waits in the store
            log.warning("ray cluster at %s unreachable: %s", self.address or "auto", e)
            return False

    def _target(self) -> tuple[int, dict[str, Any]]:
        """How many actors, with which options."""
        res = ray.cluster_resources()
        gpus, cpus = int(res.get("GPU", 0)), float(res.get("CPU", 1))
        env = {k: v for k, v in os.environ.items() if k.startswith("STUDIO_")}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (self.root, os.environ.get("PYTHONPATH")) if p)
        opts: dict[str, Any] = {"max_concurrency": self.max_concurrency, "max_restarts": 0,
                                "runtime_env": {"env_vars": env}}
        if gpus > 0:
            n = gpus
            opts.update(num_gpus=1, num_cpus=self.num_cpus if self.num_cpus is not None else 1)
        else:
            n = max(1, int(cpus // 2))
            opts.update(num_cpus=self.num_cpus if self.num_cpus is not None else min(2.0, cpus))
        return (min(n, self.want) if self.want else n), opts

    def _ensure_actors(self) -> None:
        """Ask for actors until there are as many (running or pending) as the cluster's target."""
        self._last_check = time.monotonic()
        if self._closing or not self._connected():
            return
        n, opts = self._target()
        while len(self._actors) + len(self._pending) < n:
            h = _actor_class().options(**opts).remote()
            self._pending.append(_Actor(handle=h, info_ref=h.info.remote()))

    def _collect_started(self, timeout: float = 0.0) -> None:
        refs = [a.info_ref for a in self._pending]
        if not refs:
            return
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout)
        for ref in ready:
            a = next(x for x in self._pending if x.info_ref is ref)
            self._pending.remove(a)
            try:
                a.info = ray.get(ref)
            except Exception as e:  # noqa: BLE001 - it died starting (bad env, OOM): asked again later
                log.warning("a ray actor failed to start: %s", e)
                continue
            gpus = a.info["gpu_ids"]
            a.slot = Slot(a.info["actor_id"], f"{a.info['device']}{'#gpu' + ','.join(gpus) if gpus else ''}"
                                              f"@{a.info['host']}")
            self._actors[a.slot.id] = a
            log.info("ray actor %s up: %s (pid %s)", a.slot.id, a.slot.device, a.info["pid"])

    def _lose(self, a: _Actor, reason: str) -> None:
        """An actor is gone: its job is Lost, its slot removed; a replacement is asked for next poll."""
        self._actors.pop(a.slot.id, None)
        if a.slot.busy:
            log.warning("job %s lost with ray actor %s: %s", a.slot.busy, a.slot.id, reason)
            self._events.append(Lost(a.slot.busy, f"ray actor {a.slot.id} died ({reason})"))
            a.slot.busy = None
        _kill(a.handle)
        self._last_check = 0.0

    # -- the executor interface -------------------------------------------------------------------
    def slots(self) -> list[Slot]:
        """Every running actor's slot."""
        with self._lock:
            return [a.slot for a in self._actors.values()]

    def worker_id(self, slot_id: str) -> str:
        """The store's name for a slot: the actor's id."""
        return slot_id

    def handle(self, slot_id: str) -> Any:
        """The Ray actor handle behind a slot (for operators and tests: `ray.kill(ex.handle(id))`)."""
        return self._actors[slot_id].handle

    def start(self, slot_id: str, job: Any) -> None:
        """Begin `job` (a store Job) on that actor; returns at once."""
        with self._lock:
            a = self._actors[slot_id]
            if not ray.is_initialized():
                raise RuntimeError(f"ray actor {slot_id}: the Ray cluster is gone")
            if a.slot.busy is not None:
                raise RuntimeError(f"ray actor {slot_id} is busy with {a.slot.busy}")
            payload = job.run_payload if job.run_payload is not None else job.payload
            a.calls[a.handle.start.remote(job.id, job.kind, _kind_fn(job.kind), payload)] = job.id
            a.slot.busy = job.id

    def poll(self) -> list[Any]:
        """Events from every actor since the last poll; Lost for the jobs of actors that died."""
        with self._lock:
            if not self._closed:
                try:
                    self._poll_actors()
                except Exception:  # noqa: BLE001 - the cluster itself is unwell: tried again next poll
                    log.exception("polling ray actors failed")
            out, self._events = self._events, []
            return out

    def _poll_actors(self) -> None:
        if not ray.is_initialized():   # the cluster went away under us: every job it ran is lost
            for a in list(self._actors.values()):
                self._lose(a, "the Ray cluster shut down")
            self._pending.clear()
        if time.monotonic() - self._last_check >= RECHECK_S:
            self._ensure_actors()
        if not ray.is_initialized():
            return
        self._collect_started()
        for a in self._actors.values():
            if a.poll_ref is None:
                a.poll_ref = a.handle.poll.remote()
        by_ref = {a.poll_ref: a for a in self._actors.values()}
        ready = ray.wait(list(by_ref), num_returns=len(by_ref), timeout=POLL_WAIT_S)[0] if by_ref else []
        for ref in ready:
            a = by_ref[ref]
            a.poll_ref = None
            try:
                r = ray.get(ref)
            except RayTaskError as e:   # poll itself raised: a bug; the actor lives on
                log.error("ray actor %s poll failed: %s", a.slot.id, e)
                continue
            except Exception as e:  # noqa: BLE001 - RayActorError and kin: died, killed, node gone
                self._lose(a, f"{type(e).__name__}")
                continue
            a.slot.loaded = set(r["loaded"])
            for ev in r["events"]:
                if isinstance(ev, Finished) and ev.job_id == a.slot.busy:
                    a.slot.busy = None
                    a.slot.jobs_run += 1
                self._events.append(ev)
        for a in list(self._actors.values()):
            self._check_calls(a)

    def _check_calls(self, a: _Actor) -> None:
        """A start that failed on the actor's side (its arguments could not be unpickled there, say)
        fails its job; a dead actor shows up in its poll instead."""
        if not a.calls:
            return
        done = ray.wait(list(a.calls), num_returns=len(a.calls), timeout=0)[0]
        for ref in done:
            job_id = a.calls.pop(ref)
            try:
                ray.get(ref)
            except RayActorError:
                pass
            except Exception as e:  # noqa: BLE001 - recorded on the job
                if job_id is not None and a.slot.busy == job_id:
                    a.slot.busy = None
                    self._events.append(Finished(job_id, "failed", error=f"could not start on ray: {e}"))

    def cancel(self, job_id: str) -> None:
        """Ask a running job to stop (its actor sets the job's Event)."""
        with self._lock:
            if not ray.is_initialized():   # any Ray call would start a new local cluster
                return
            for a in self._actors.values():
                if a.slot.busy == job_id:
                    a.calls[a.handle.cancel.remote(job_id)] = None

    def running(self) -> list[str]:
        """Ids of the jobs running now."""
        with self._lock:
            return [a.slot.busy for a in self._actors.values() if a.slot.busy]

    def stats(self, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Each actor's `stats()`: device, per-job model-load seconds, peak VRAM on a GPU."""
        with self._lock:
            refs = [a.handle.stats.remote() for a in self._actors.values()]
        return ray.get(refs, timeout=timeout)

    def close(self, timeout: float = 10.0) -> list[str]:
        """Cancel what runs, wait up to `timeout` for it to stop, end the actors; return the ids that were
        running (their last events stay for the next `poll`)."""
        with self._lock:
            self._closing = True
            ids = self.running()
            try:
                for j in ids:
                    self.cancel(j)
                end = time.monotonic() + timeout
                while self.running() and time.monotonic() < end and ray.is_initialized():
                    self._poll_actors()
                    time.sleep(0.02)
            except Exception:  # noqa: BLE001 - the cluster is gone: the jobs are handed back anyway
                log.exception("ray executor: could not wait for running jobs")
            self._closed = True
            for a in [*self._actors.values(), *self._pending]:
                _kill(a.handle)
            self._pending.clear()
            return ids
