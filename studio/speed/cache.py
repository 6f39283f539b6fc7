"""The `cache` tier: step caching through diffusers' own hooks, and a record of what ran.

Default: diffusers' TaylorSeer cache in its "lite" form (`TaylorSeerCacheConfig(use_lite_mode=
True)`): on a cached step the transformer blocks are skipped and the output projection is
predicted from a first-order Taylor expansion of its last computed values.  Settings are the ones
diffusers documents for TaylorSeer (`cache_interval=5`, `disable_cache_before_step=3`,
`max_order=1`): steps 1-3 compute, then one step in five.  The schedule depends only on the step
count, so its cost is the same with real or random weights; its *quality* needs real weights to
judge, and the studio's benchmark (random weights) says nothing about it.  The full (non-lite)
TaylorSeer would keep two Taylor factors of every attention output of every block for each CFG
branch: about 107 GB at Wan 2.1 14B's 32,760 tokens, so the lite form is the one that fits.

`StepLog` records, per denoising step, how many denoiser calls ran the blocks and how many were
served from the cache; it reads a probe hook placed *inside* the cache hook of the last block, so
it counts only calls whose blocks really ran (no GPU sync: a Python counter).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

CACHE_SETTINGS = {"method": "taylorseer-lite", "cache_interval": 5, "disable_cache_before_step": 3,
                  "max_order": 1}
PROBE = "studio_step_probe"


def describe() -> str:
    """One line for notes and the ledger."""
    s = CACHE_SETTINGS
    return (f"{s['method']} (diffusers TaylorSeerCacheConfig, interval {s['cache_interval']}, "
            f"first {s['disable_cache_before_step']} steps computed, order {s['max_order']})")


def computed_steps(steps: int) -> list[int]:
    """The 1-based steps the default schedule computes (for the ledger's estimate only: the run
    records what really ran)."""
    s = CACHE_SETTINGS
    warm, every = s["disable_cache_before_step"], s["cache_interval"]
    return [i + 1 for i in range(steps) if i < warm or (i - warm - 1) % every == 0]


@dataclass
class StepLog:
    """Per step: denoiser calls made and calls whose blocks ran."""

    calls: int = 0
    ran: int = 0
    steps: list[tuple[int, int]] = field(default_factory=list)  # (calls, ran) per step
    _mark: tuple[int, int] = (0, 0)

    def end_step(self) -> None:
        """Close the current step (called from the step callback)."""
        c, r = self.calls - self._mark[0], self.ran - self._mark[1]
        self.steps.append((c, r))
        self._mark = (self.calls, self.ran)

    def summary(self) -> dict[str, Any]:
        """{'computed': [steps whose calls all ran], 'reused': [...], 'partial': [...]} (1-based)."""
        computed = [i + 1 for i, (c, r) in enumerate(self.steps) if c and r == c]
        reused = [i + 1 for i, (c, r) in enumerate(self.steps) if c and r == 0]
        partial = [i + 1 for i, (c, r) in enumerate(self.steps) if c and 0 < r < c]
        return {"computed_steps": computed, "reused_steps": reused, "partial_steps": partial,
                "denoiser_calls": self.calls, "calls_computed": self.ran}


def _probe_hook(log: StepLog, field_name: str) -> Any:
    from diffusers.hooks import ModelHook

    class _Probe(ModelHook):
        def pre_forward(self, module: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            setattr(log, field_name, getattr(log, field_name) + 1)
            return args, kwargs
    return _Probe()


@contextmanager
def caching(models: list[Any], blocks_of: Any, log: StepLog) -> Iterator[StepLog]:
    """Enable the cache on each denoiser in `models` for one run, counting calls into `log`.

    `blocks_of(model)` gives the model's repeated blocks (the probe goes into the last one).
    """
    from diffusers import TaylorSeerCacheConfig
    from diffusers.hooks import HookRegistry
    s = CACHE_SETTINGS
    with ExitStack() as stack:
        for model in models:
            last = blocks_of(model)[-1]
            HookRegistry.check_if_exists_or_initialize(model).register_hook(_probe_hook(log, "calls"), PROBE)
            HookRegistry.check_if_exists_or_initialize(last).register_hook(_probe_hook(log, "ran"), PROBE)
            model.enable_cache(TaylorSeerCacheConfig(
                cache_interval=s["cache_interval"], disable_cache_before_step=s["disable_cache_before_step"],
                max_order=s["max_order"], use_lite_mode=True))
            stack.callback(_undo, model, last)
        yield log


def _undo(model: Any, last: Any) -> None:
    from diffusers.hooks import HookRegistry
    model.disable_cache()
    for m in (last, model):
        reg = getattr(m, "_diffusers_hook", None)
        if isinstance(reg, HookRegistry) and reg.get_hook(PROBE) is not None:
            reg.remove_hook(PROBE, recurse=False)
