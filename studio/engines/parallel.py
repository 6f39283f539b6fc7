"""One clip on several devices: a gang of ranks runs one Wan denoise together, through diffusers'
own context parallelism (`ContextParallelConfig`: Ulysses and ring attention over the
`WanTransformer3DModel._cp_plan`) and CFG-parallel (the conditional and unconditional branches of a
step on two halves of the gang).

Every rank loads the same pipeline and runs the same request with the same seed; the transformer's
outputs are gathered on every rank, so all ranks hold the same latents at every step.  Rank 0 (the
leader) runs the whole generation (`pipeline.generate` with a `ParallelEngine`), reports progress and
previews, decodes and encodes; the others (`ParallelEngine.follow`) run the denoising loop and stop
after its last step.  Cancel is agreed at each step boundary (one all-reduce), so every rank stops at
the same step and no collective is left waiting.

Modes: `cfg`, `ulysses`, `ring` or a product joined by `+` (`cfg+ulysses`, `cfg+ring`,
`ulysses+ring`, `cfg+ulysses+ring`), or `auto` (`plan_for` states its rule).  Weights are replicated
on every rank in every mode (neither CP nor CFG-parallel shards them); the activations of the long
self-attention sequence are split across the CP ranks.  The VRAM profiles apply per device.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..context import Cancelled, RunContext

if TYPE_CHECKING:
    import numpy as np

    from ..clip import Clip
    from ..request import GenerationRequest

log = logging.getLogger(__name__)

MODES = ("auto", "cfg", "ulysses", "ring", "cfg+ulysses", "cfg+ring", "ulysses+ring", "cfg+ulysses+ring")
PARALLEL_ENGINES = ("wan-i2v", "wan2.2-ti2v", "wan2.2-i2v-a14b")
"""Engines whose denoisers carry a diffusers `_cp_plan` and call the denoiser once per CFG branch."""



class FollowerDone(Exception):
    """A follower's denoising loop is over (the leader alone decodes the latents)."""


@dataclass(frozen=True)
class Plan:
    """How a gang splits one run: CFG branches × ring × Ulysses (their product is the gang size)."""

    cfg: int = 1
    ring: int = 1
    ulysses: int = 1
    anything: bool = False  # the token count does not divide: diffusers' ulysses/ring_anything

    @property
    def size(self) -> int:
        """Ranks this plan uses."""
        return self.cfg * self.ring * self.ulysses

    @property
    def cp(self) -> int:
        """Ranks one transformer call is split across (context parallelism)."""
        return self.ring * self.ulysses

    def describe(self) -> str:
        """E.g. 'cfg2×ulysses2'."""
        parts = [f"{k}{v}" for k, v in (("cfg", self.cfg), ("ring", self.ring), ("ulysses", self.ulysses))
                 if v > 1]
        return "×".join(parts) or "single"


def plan_for(mode: str, n: int, *, cfg_on: bool, tokens: int, heads: int) -> Plan:
    """The split of a run over `n` ranks.

    `auto`: CFG-parallel on two halves when the run uses guidance and `n` is even (one exchange per
    step, no communication inside the transformer); the rest (`n` or `n`/2 ranks) splits the
    self-attention sequence with Ulysses when the head count divides by it (one all-to-all before and
    after attention: the lowest latency within one host), else with ring attention.  A token count
    that does not divide uses diffusers' `*_anything` variant.
    """
    if mode not in MODES:
        raise ValueError(f"parallel mode={mode!r} is not one of {', '.join(MODES)}")
    if n < 2:
        raise ValueError(f"a parallel run needs 2 or more devices, got {n}")
    if mode == "auto":
        cfg = 2 if cfg_on and n % 2 == 0 else 1
        m = n // cfg
        if m == 1:
            return Plan(cfg=cfg)
        if heads % m == 0:
            return Plan(cfg=cfg, ulysses=m, anything=tokens % m != 0)
        return Plan(cfg=cfg, ring=m, anything=tokens % m != 0)
    names = set(mode.split("+"))
    cfg = 2 if "cfg" in names else 1
    if cfg == 2 and not cfg_on:
        raise ValueError(f"parallel mode={mode!r} splits the CFG branches, but this run has none "
                         "(guidance <= 1 or the few-step preset): use ulysses, ring or auto")
    if n % cfg:
        raise ValueError(f"parallel mode={mode!r} needs an even number of devices, got {n}")
    m = n // cfg
    ring = ulysses = 1
    if {"ulysses", "ring"} <= names:
        if m < 4 or m % 2:
            raise ValueError(f"parallel mode={mode!r} needs 4 or more ranks (an even number) for ulysses × "
                             f"ring, got {m}")
        ulysses, ring = 2, m // 2
    elif "ulysses" in names:
        ulysses = m
    elif "ring" in names:
        ring = m
    elif m > 1:
        raise ValueError(f"parallel mode='cfg' uses 2 devices, got {n}: use cfg+ulysses or cfg+ring")
    if ulysses > 1 and heads % ulysses:
        raise ValueError(f"parallel mode={mode!r}: {heads} attention heads do not split over {ulysses} "
                         "Ulysses ranks; use ring or auto")
    anything = ring * ulysses > 1 and tokens % (ring * ulysses) != 0
    if anything and ring > 1 and ulysses > 1:
        raise ValueError(f"parallel mode={mode!r}: {tokens} tokens do not split over {ring * ulysses} ranks")
    return Plan(cfg=cfg, ring=ring, ulysses=ulysses, anything=anything)


def wan_tokens(pipe: Any, req: GenerationRequest) -> int:
    """The self-attention sequence length of a Wan run: latent frames × latent pixels / patch."""
    tr = pipe.transformer if getattr(pipe, "transformer", None) is not None else pipe.transformer_2
    pt, ph, pw = tr.config.patch_size
    sp, tp = int(pipe.vae_scale_factor_spatial), int(pipe.vae_scale_factor_temporal)
    lat_f = (int(req.frames) - 1) // tp + 1
    return (lat_f // pt) * (int(req.height) // sp // ph) * (int(req.width) // sp // pw)


@dataclass
class Gang:
    """This rank's place in a gang: its rank, the gang size, its device and the parallel mode.

    `announce` (the leader's only) hands a run to the other ranks; the process group must already be
    initialised (gloo for the CPU; `cpu:gloo,cuda:nccl` for CUDA, so the small control messages stay on
    the CPU).
    """

    rank: int
    world: int
    device: str
    mode: str = "auto"
    announce: Callable[[dict[str, Any]], None] | None = None
    _meshes: dict[Plan, Any] = field(default_factory=dict)

    def agree(self, flag: bool) -> bool:
        """True on every rank when any rank passes True (one small all-reduce, on the CPU)."""
        import torch
        import torch.distributed as dist
        t = torch.tensor([1 if flag else 0], dtype=torch.int32)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def mesh(self, plan: Plan) -> Any:
        """The ('cfg', 'ring', 'ulysses') device mesh of `plan` (built once: it creates groups)."""
        if plan.size != self.world:
            raise ValueError(f"plan {plan.describe()} uses {plan.size} ranks, the gang has {self.world}")
        if plan not in self._meshes:
            from torch.distributed.device_mesh import init_device_mesh
            kind = "cuda" if self.device.startswith("cuda") else "cpu"
            self._meshes[plan] = init_device_mesh(kind, (plan.cfg, plan.ring, plan.ulysses),
                                                  mesh_dim_names=("cfg", "ring", "ulysses"))
        return self._meshes[plan]


def _denoisers(pipe: Any) -> list[Any]:
    return [m for m in (getattr(pipe, "transformer", None), getattr(pipe, "transformer_2", None))
            if m is not None]


def _clear_cp(model: Any) -> None:
    from diffusers.hooks.context_parallel import remove_context_parallel
    remove_context_parallel(model, model._cp_plan)
    model._parallel_config = None
    for m in model.modules():
        proc = getattr(m, "processor", None)
        if proc is not None and hasattr(proc, "_parallel_config"):
            proc._parallel_config = None


def apply_plan(model: Any, plan: Plan, gang: Gang) -> None:
    """Put `plan`'s context parallelism on a denoiser (diffusers' hooks), replacing another plan's."""
    cur = model.__dict__.get("_studio_plan")
    if cur == plan:
        return
    if cur is not None and cur.cp > 1:
        _clear_cp(model)
    model.__dict__["_studio_plan"] = None
    if plan.cp > 1:
        import torch
        from diffusers import ContextParallelConfig
        cuda = gang.device.startswith("cuda")
        cp = ContextParallelConfig(ring_degree=plan.ring, ulysses_degree=plan.ulysses, mesh=gang.mesh(plan),
                                   ulysses_anything=plan.anything and plan.ulysses > 1,
                                   ring_anything=plan.anything and plan.ring > 1)
        if plan.ring > 1:  # ring merges partial results by their log-sum-exp: a backend that returns it
            if not cuda:
                from .cpu_flash import ensure_cpu_flash
                ensure_cpu_flash()
            model.set_attention_backend("_native_cudnn" if cuda else "_native_flash")
        if torch.accelerator.device_count() > 0:
            model.enable_parallelism(config=cp)
        else:
            _enable_cp_on_cpu(model, cp, gang)
    model.__dict__["_studio_plan"] = plan


def _enable_cp_on_cpu(model: Any, cp: Any, gang: Gang) -> None:
    """`ModelMixin.enable_parallelism` for a CPU-only torch: diffusers 0.42.1 picks the rank's device as
    `rank % torch.accelerator.device_count()`, which divides by zero without an accelerator.  The same
    steps with the CPU as the device: the config, the attention processors, the `_cp_plan` hooks."""
    import torch
    from diffusers.hooks.context_parallel import apply_context_parallel
    from diffusers.models._modeling_parallel import ParallelConfig
    pc = ParallelConfig(context_parallel_config=cp)
    pc.setup(gang.rank, gang.world, torch.device("cpu"), mesh=cp.mesh)
    model._parallel_config = pc
    for m in model.modules():
        proc = getattr(m, "processor", None)
        if proc is not None and hasattr(proc, "_parallel_config"):
            proc._parallel_config = pc
    apply_context_parallel(model, cp, model._cp_plan)


@contextmanager
def cfg_split(models: list[Any], plan: Plan, gang: Gang) -> Iterator[None]:
    """CFG-parallel: the pipeline calls the denoiser twice per step (conditional, then unconditional);
    the 'cfg' half 0 of the gang computes the first call, half 1 the second, and both halves swap
    results with one all-gather at the second call.  Half 1 answers the first call with an empty
    tensor of the output's shape, which the swap fills before the pipeline reads it (the Wan
    pipelines keep the first call's output untouched until the second returns)."""
    if plan.cfg == 1:
        yield
        return
    import torch
    import torch.distributed as dist
    cfg_mesh = gang.mesh(plan)["cfg"]
    group, half = cfg_mesh.get_group(), cfg_mesh.get_local_rank()
    state: dict[str, Any] = {"calls": 0, "mine": None, "pending": None}

    def wrap(model: Any, orig: Callable[..., Any]) -> Callable[..., Any]:
        def forward(*a: Any, **k: Any) -> Any:
            if k.get("return_dict", True):
                raise ValueError("CFG-parallel needs the denoiser called with return_dict=False")
            second = state["calls"] % 2 == 1
            state["calls"] += 1
            if not second:
                if half == 0:
                    out = orig(*a, **k)
                    state["mine"] = out[0]
                    return out
                hs = k["hidden_states"] if "hidden_states" in k else a[0]
                state["pending"] = hs.new_empty((hs.shape[0], model.config.out_channels, *hs.shape[2:]))
                return (state["pending"],)
            mine = orig(*a, **k)[0] if half == 1 else state["mine"]
            parts = [torch.empty_like(mine) for _ in range(2)]
            dist.all_gather(parts, mine.contiguous(), group=group)
            if half == 1:
                state["pending"].copy_(parts[0])
            state["mine"] = state["pending"] = None
            return (parts[1],)
        return forward

    saved = []
    for m in models:
        own = m.__dict__.get("forward")  # diffusers' hooks put their forward on the instance
        saved.append((m, own))
        m.forward = wrap(m, m.forward)
    try:
        yield
    finally:
        for m, own in saved:
            if own is None:
                del m.forward
            else:
                m.forward = own


class _Runner:
    """What `profiles.generate` needs of an engine: the inner engine's load, and its run under a plan."""

    def __init__(self, inner: Any, gang: Gang, mode: str) -> None:
        self.inner, self.gang, self.mode = inner, gang, mode
        self.id, self.cfg_batched = inner.id, inner.cfg_batched

    def load(self, device: str, opts: dict[str, Any]) -> Any:
        return self.inner.load(device, opts)

    def run(self, pipe: Any, image: np.ndarray, req: GenerationRequest, ctx: RunContext) -> Clip:
        models = _denoisers(pipe)
        tier = self.inner.speed_tier(req) if hasattr(self.inner, "speed_tier") else None
        cfg_on = float(req.guidance) > 1.0 and not req.extra.get("few_step") and tier != "few_step"
        plan = plan_for(self.mode, self.gang.world, cfg_on=cfg_on, tokens=wan_tokens(pipe, req),
                        heads=int(models[0].config.num_attention_heads))
        for m in models:
            apply_plan(m, plan, self.gang)
        with cfg_split(models, plan, self.gang):
            clip = self.inner.run(pipe, image, req, ctx)
        clip.meta["parallel"] = {"plan": plan.describe(), "devices": self.gang.world, "mode": self.mode}
        return clip


class ParallelEngine:
    """A Wan engine run by a gang under `mode` (default the gang's): the leader calls `generate`
    (through `pipeline.generate`), the other ranks `follow` with what the leader announced (request,
    image, mode).  Everything else is the inner engine's."""

    def __init__(self, inner: Any, gang: Gang, mode: str | None = None) -> None:
        if inner.id not in PARALLEL_ENGINES:
            raise ValueError(f"engine={inner.id!r} cannot run on several devices; these can: "
                             f"{', '.join(PARALLEL_ENGINES)}")
        mode = mode or gang.mode
        if mode not in MODES:
            raise ValueError(f"parallel mode={mode!r} is not one of {', '.join(MODES)}")
        self.inner, self.gang, self.mode = inner, gang, mode

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def generate(self, image: np.ndarray, req: GenerationRequest, ctx: RunContext) -> Clip:
        """The leader's run: announce it to the other ranks, then run it with them."""
        if self.gang.announce is None:
            raise RuntimeError(f"rank {self.gang.rank} is not the gang's leader")
        self.gang.announce({"request": req.to_dict(), "image": image, "mode": self.mode})
        from postfx.cancel import interruptible
        # the job's cancel answers at once; the gang itself stops together at its next step boundary
        return interruptible(lambda: self._run(image, req, ctx, leader=True), ctx.check_cancel)()

    def follow(self, image: np.ndarray, req: GenerationRequest, ctx: RunContext) -> str:
        """A follower's part of the leader's run; returns how it ended ('done' or 'cancelled')."""
        try:
            self._run(image, req, ctx, leader=False)
        except FollowerDone:
            return "done"
        except Cancelled:
            return "cancelled"
        return "done"

    def _run(self, image: np.ndarray, req: GenerationRequest, ctx: RunContext, leader: bool) -> Clip:
        from .profiles import generate
        stop = threading.Event()

        def progress(stage: str, i: int, n: int) -> None:
            if self.gang.agree(leader and ctx.cancel.is_set()):
                stop.set()
                raise Cancelled("cancelled by user")
            if leader:
                if ctx.progress is not None:
                    ctx.progress(stage, i, n)
            elif stage == "denoise" and i >= n:
                raise FollowerDone()

        gctx = RunContext(device=self.gang.device, progress=progress, cancel=stop, log=ctx.log,
                          cache=ctx.cache, preview=ctx.preview if leader else None)
        return generate(_Runner(self.inner, self.gang, self.mode), image, req, gctx)
