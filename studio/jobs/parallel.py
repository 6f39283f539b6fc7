"""A worker that spans several devices: `python -m studio worker --devices cuda:0,cuda:1`.

One process per device (spawned here, a rendezvous on 127.0.0.1; gloo on the CPU, NCCL plus gloo
for control on CUDA) forms a gang.  The worker's own process runs the dispatcher, the only writer of
the store, over a `GangExecutor`; the ranks report through one event queue.

Policy (`GangDispatcher`): the worker has one slot per device.  A job needing one device (the
default) runs alone on a free rank, like a single-GPU worker's; a job whose payload asks for
`gpus` k > 1 (k ≤ N) runs on the whole gang, all N devices.  Jobs are taken in the store's fair
order (owners round-robin, FIFO within one): when the next job is a gang job and some ranks are
busy, the worker claims nothing more until they are all free (it drains), so a stream of small jobs
cannot starve a large one; the price is idle ranks while it drains.  Single-device workers never
take a job with k > 1.

A gang job: rank 0 runs the whole job (`pipeline.generate` with an `engines.parallel.ParallelEngine`),
reports progress, previews and the result; when it reaches the denoiser it hands the request and image
to the other ranks, which run the denoising loop with it.  If any rank process dies, every job the
gang runs is reported lost (requeued under the lease rules, or failed once out of attempts) and the
whole gang is restarted: survivors may be stuck in a collective, so they are killed.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from .dispatch import Dispatcher
from .executors import Finished, Lost, Slot, job_kinds, model_key

log = logging.getLogger(__name__)

GANG_KIND = "_gang-generate"  # how rank 0 runs a gang job's generate (registered in that process only)
DEATH_GRACE_S = 3.0           # how long a gang job's failure waits to see whether a rank died under it


def job_gpus(job: Any) -> int:
    """Devices a job asks for (its payload's 'gpus', default 1), as the store reads it."""
    try:
        return max(1, int((job.payload or {}).get("gpus", 1)))
    except (TypeError, ValueError):
        return 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the rank processes -----------------------------------------------------------------------------
def _name_process(name: str) -> None:
    """Linux: the name `ps` and /proc/<pid>/comm show (15 bytes at most)."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except Exception:  # noqa: BLE001 - elsewhere: the name is only a convenience
        pass


def _run_gang_generate(payload: dict[str, Any], ctx: Any, gang: Any) -> dict[str, Any]:
    from ..engines import get_engine
    from ..engines.parallel import ParallelEngine
    from ..pipeline import generate
    from .kinds import _result, request_from_payload
    req = request_from_payload(payload)
    mode = payload.get("parallel")
    if mode is not None and not isinstance(mode, str):
        raise ValueError(f"payload parallel={mode!r} must be a mode name")
    engine = ParallelEngine(get_engine(req.engine), gang, mode)
    return _result(generate(req, out=payload.get("out"), ctx=ctx, engine=engine))


def _follow(msg: dict[str, Any], gang: Any, cache: Any) -> None:
    from ..context import RunContext
    from ..engines import get_engine
    from ..engines.parallel import ParallelEngine
    from ..request import GenerationRequest
    req = GenerationRequest.from_dict(msg["request"])
    ctx = RunContext(device=gang.device, cache=cache, log=logging.getLogger(f"studio.rank{gang.rank}"))
    try:
        how = ParallelEngine(get_engine(req.engine), gang, msg["mode"]).follow(msg["image"], req, ctx)
        log.info("rank %d: followed a run of %s: %s", gang.rank, req.engine, how)
    except Exception:  # noqa: BLE001 - the leader reports the job's failure; a follower waits for the next
        log.exception("rank %d: a followed run failed", gang.rank)


def rank_main(rank: int, devices: list[str], port: int, mode: str, cmds: list[Any], events: Any,
              with_parent: bool = True) -> None:
    """One rank: join the gang, then run what the parent (single jobs, gang jobs on rank 0) or the
    leader (a run to follow) sends, until told to stop."""
    import functools
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    from ..context import ModelCache
    from ..engines.parallel import Gang
    from .executors import execute, register_job_kind
    from .workerproc import die_with_parent
    if with_parent:
        die_with_parent()
    _name_process(f"studio-rank{rank}")
    device = devices[rank]
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(torch.device(device))
    else:  # CPU ranks share the cores
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // len(devices)))
    dist.init_process_group("cpu:gloo,cuda:nccl" if cuda else "gloo", init_method=f"tcp://127.0.0.1:{port}",
                            rank=rank, world_size=len(devices), timeout=timedelta(minutes=10))
    announce = None
    if rank == 0:
        def announce(msg: dict[str, Any]) -> None:
            for q in cmds[1:]:
                q.put(("follow", msg))
    gang = Gang(rank, len(devices), device, mode, announce=announce)
    register_job_kind(GANG_KIND, functools.partial(_run_gang_generate, gang=gang))
    cache = ModelCache()
    cancels: dict[str, threading.Event] = {}
    events.put(("ready", rank, os.getpid()))

    def run(job_id: str, kind: str, payload: dict[str, Any]) -> None:
        fin = execute(job_id, kind, payload, device, cache, cancels[job_id], events.put)
        cancels.pop(job_id, None)
        events.put(fin)

    while True:
        msg = cmds[rank].get()
        if msg[0] == "stop":
            break
        if msg[0] == "cancel":
            ev = cancels.get(msg[1])
            if ev is not None:
                ev.set()
        elif msg[0] == "follow":
            _follow(msg[1], gang, cache)
        elif msg[0] == "run":
            _, job_id, kind, payload = msg
            cancels[job_id] = threading.Event()
            threading.Thread(target=run, args=(job_id, kind, payload), name=f"studio-job-{job_id}",
                             daemon=True).start()
    dist.destroy_process_group()


# -- the parent's side ------------------------------------------------------------------------------
@dataclass
class _Running:
    job_id: str
    ranks: tuple[int, ...]
    gang: bool
    key: str | None


class GangExecutor:
    """Executor over a gang of rank processes: one slot per device, or all of them for a gang job."""

    name = "gang"

    def __init__(self, devices: list[str], worker: str, mode: str = "auto", with_parent: bool = True) -> None:
        if len(devices) < 2:
            raise ValueError(f"a gang needs 2 or more devices, got {devices}")
        kinds = {d.split(":")[0] for d in devices}
        if len(kinds) != 1 or len(set(devices)) != len(devices) and kinds != {"cpu"}:
            raise ValueError(f"devices={devices} must be all cpu, or distinct cuda:N")
        self.devices, self.worker, self.mode, self.with_parent = list(devices), worker, mode, with_parent
        self.gang_id = f"{worker}/{'+'.join(devices)}"
        self._slots = [Slot(f"{worker}/{d}#{i}", d) for i, d in enumerate(devices)]
        self._running: dict[str, _Running] = {}
        self._stash: list[Any] = []
        self._closed = False
        self._lock = threading.Lock()
        self.restarts = 0
        self.pids: dict[int, int] = {}
        self._start_ranks()

    def _start_ranks(self) -> None:
        ctx = mp.get_context("spawn")
        self._events = ctx.Queue()
        self._cmds = [ctx.Queue() for _ in self.devices]
        port = _free_port()
        self._procs = [ctx.Process(target=rank_main, name=f"studio-rank{r}", daemon=True,
                                   args=(r, self.devices, port, self.mode, self._cmds, self._events,
                                         self.with_parent))
                       for r in range(len(self.devices))]
        for p in self._procs:
            p.start()
        self.pids = {r: p.pid for r, p in enumerate(self._procs)}
        log.info("gang %s: ranks %s on port %d", self.gang_id, self.pids, port)

    def slots(self) -> list[Slot]:
        """One slot per device (busy with the same job id while a gang job runs)."""
        with self._lock:
            return list(self._slots)

    def size(self) -> int:
        """Devices in the gang."""
        return len(self._slots)

    def worker_id(self, slot_id: str) -> str:
        """The store's name: the gang's for a slot in a gang job, else the slot's own."""
        with self._lock:
            for r in self._running.values():
                if r.gang and any(self._slots[i].id == slot_id for i in r.ranks):
                    return self.gang_id
        return slot_id

    def start(self, slot_id: str, job: Any) -> None:
        """A one-device job on that slot's rank."""
        rank = next(i for i, s in enumerate(self._slots) if s.id == slot_id)
        self._launch(job, (rank,), gang=False)

    def start_gang(self, job: Any) -> None:
        """A job on every rank: rank 0 runs it, the others follow."""
        self._launch(job, tuple(range(len(self._slots))), gang=True)

    def _launch(self, job: Any, ranks: tuple[int, ...], gang: bool) -> None:
        payload = job.run_payload if job.run_payload is not None else job.payload
        with self._lock:
            busy = [self._slots[i].id for i in ranks if self._slots[i].busy is not None]
            if busy:
                raise RuntimeError(f"slot(s) {busy} are busy")
            for i in ranks:
                self._slots[i].busy = job.id
            self._running[job.id] = _Running(job.id, ranks, gang, model_key(job.kind, payload))
        kind = GANG_KIND if gang and job.kind == "generate" else job.kind
        self._cmds[ranks[0]].put(("run", job.id, kind, payload))

    def _free(self, job_id: str, fin: Finished | None) -> None:
        with self._lock:
            r = self._running.pop(job_id, None)
            if r is None:
                return
            for i in r.ranks:
                s = self._slots[i]
                s.busy = None
                s.jobs_run += 1
                if fin is not None and fin.status == "done" and r.key:
                    s.loaded.add(r.key)

    def _dead(self) -> list[tuple[int, int | None]]:
        return [(r, p.exitcode) for r, p in enumerate(self._procs) if not p.is_alive()]

    def _restart(self, dead: list[tuple[int, int | None]]) -> list[Any]:
        """A rank died: every running job is lost; kill the rest, start a fresh gang."""
        why = ", ".join(f"rank {r} (pid {self.pids.get(r)}) exited with {code}" for r, code in dead)
        with self._lock:
            lost = [Lost(j, f"gang {self.gang_id}: {why}") for j in self._running]
            self._running.clear()
            for s in self._slots:
                s.busy, s.loaded = None, set()
        log.warning("gang %s: %s; restarting every rank (lost: %s)", self.gang_id, why,
                    [e.job_id for e in lost])
        for p in self._procs:
            if p.is_alive():
                p.kill()
            p.join(10)
        self.restarts += 1
        self._start_ranks()
        return lost

    def poll(self) -> list[Any]:
        """Events since the last poll; a dead rank turns every running job into `Lost`."""
        out, self._stash = self._stash, []
        dead = self._dead() if not self._closed else []
        if dead:
            return out + self._restart(dead)
        while True:
            try:
                ev = self._events.get_nowait()
            except (queue.Empty, OSError, ValueError):
                break
            if isinstance(ev, tuple):  # ("ready", rank, pid)
                continue
            if isinstance(ev, Finished):
                run = self._running.get(ev.job_id)
                if run is not None and run.gang and ev.status == "failed" and self._died_under(ev):
                    return out + self._restart(self._dead())
                self._free(ev.job_id, ev)
            out.append(ev)
        return out

    def _died_under(self, ev: Finished) -> bool:
        """A gang job failed: did a rank die under it (a collective then fails on the others)?"""
        end = time.monotonic() + DEATH_GRACE_S
        while time.monotonic() < end:
            if self._dead():
                return True
            time.sleep(0.05)
        return False

    def cancel(self, job_id: str) -> None:
        """Ask a running job to stop (its first rank; a gang agrees at its next step)."""
        with self._lock:
            r = self._running.get(job_id)
        if r is not None:
            self._cmds[r.ranks[0]].put(("cancel", job_id))

    def running(self) -> list[str]:
        """Ids of the jobs running now."""
        with self._lock:
            return list(self._running)

    def close(self, timeout: float = 10.0) -> list[str]:
        """Cancel what runs, stop every rank; return the ids that were running."""
        ids = self.running()
        for j in ids:
            self.cancel(j)
        end = time.monotonic() + timeout
        while self.running() and time.monotonic() < end:
            self._stash = self.poll()  # the dispatcher's last poll applies them
            time.sleep(0.05)
        self._closed = True
        for q in self._cmds:
            q.put(("stop",))
        for p in self._procs:
            p.join(max(0.1, end - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join(5)
        return ids


class GangDispatcher(Dispatcher):
    """The dispatcher with the gang policy (module docstring): one-device jobs on free ranks, a gang
    job on all of them once all are free, in the store's fair order without passing a gang job over."""

    def _start_jobs(self) -> bool:
        ex: GangExecutor = self.executor
        started = False
        while not self.stop_event.is_set():
            free = [s for s in ex.slots() if s.busy is None]
            if not free:
                return started
            job = self.store.claim(ex.worker_id(free[0].id), self.kinds or job_kinds(), device=free[0].device,
                                   lease_s=self.lease_s, max_gpus=ex.size(),
                                   free_gpus=len(free) if len(free) < ex.size() else None)
            if job is None:
                return started
            try:
                if job_gpus(job) > 1:
                    self.store.update(job.id, worker=ex.gang_id, device="+".join(ex.devices))
                    log.info("job %s (%s, owner %s) -> gang %s", job.id, job.kind, job.owner, ex.gang_id)
                    ex.start_gang(job)
                else:
                    payload = job.run_payload if job.run_payload is not None else job.payload
                    key = model_key(job.kind, payload)
                    slot = next((s for s in free if key and key in s.loaded), free[0])
                    if slot is not free[0]:
                        self.store.update(job.id, worker=slot.id, device=slot.device)
                    log.info("job %s (%s, owner %s) -> %s", job.id, job.kind, job.owner, slot.id)
                    ex.start(slot.id, job)
            except Exception as e:  # noqa: BLE001 - the gang could not take it: requeue
                log.exception("could not start job %s on gang %s", job.id, ex.gang_id)
                self.store.requeue(job.id, f"could not start on {ex.gang_id}: {e}")
                return started
            started = True
        return started


def run_parallel_worker(devices: list[str], mode: str = "auto", with_parent: bool = False) -> int:
    """Run a gang worker until SIGTERM/SIGINT (what `studio worker --devices a,b` starts)."""
    import signal
    import sys

    from ..engines.parallel import MODES
    from .logs import setup_file_logging
    from .store import JobStore
    from .worker import worker_token
    from .workerproc import die_with_parent, sweep_stale
    if mode not in MODES:
        raise ValueError(f"--parallel {mode!r} is not one of {', '.join(MODES)}")
    if with_parent:
        die_with_parent()
    setup_file_logging(f"worker-{'+'.join(d.replace(':', '') for d in devices)}.log")
    sweep_stale()
    store = JobStore()
    token = worker_token()
    ex = GangExecutor(devices, token, mode)
    disp = GangDispatcher(store, ex)

    def stop(signum: int, frame: object) -> None:
        log.info("gang worker %s: signal %d, stopping", token, signum)
        disp.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"worker {token} (gang of {len(devices)}: {','.join(devices)}, mode {mode}) on {store.path}",
          file=sys.stderr, flush=True)
    disp.run()
    return 0
