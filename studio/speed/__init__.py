"""Speed tiers for the DiT engines (Wan 2.1 I2V, Wan 2.2 TI2V 5B and I2V A14B, LTX-Video).

One setting, `speed`, composes the pieces the way diffusers composes hooks:

| tier        | pieces                              | output                                   |
| ----------- | ----------------------------------- | ---------------------------------------- |
| `exact`     | compiled blocks (CUDA)              | the stock output, within bf16 noise      |
| `fp8`       | compiled blocks + fp8 block linears | changes it (measured drift in the README) |
| `cache`     | compiled blocks + step cache        | changes it (skipped steps)               |
| `fp8+cache` | all three                           | changes it                               |
| `few_step`  | Wan's 4-step distill preset         | changes it (needs your distill LoRA)     |

`prepare` applies what changes the loaded model (compile, fp8) once per load; `run_hooks` applies
what belongs to one run (the step cache) and records which steps ran.  Engines ask `check` before
a run and `seconds` for the ledger.  Nothing here is imported before a tier is used.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from ..params import Param

TIERS: tuple[str, ...] = ("exact", "fp8", "cache", "fp8+cache", "few_step")
PARTS: dict[str, frozenset[str]] = {
    "exact": frozenset({"compile"}),
    "fp8": frozenset({"compile", "fp8"}),
    "cache": frozenset({"compile", "cache"}),
    "fp8+cache": frozenset({"compile", "fp8", "cache"}),
    "few_step": frozenset({"compile", "few_step"}),
}
SPEED = Param(
    "speed", str, "exact",
    "Speed tier. exact: the model's own output, blocks compiled on CUDA (default). fp8: block "
    "linears on fp8 tensor cores (Ada/Hopper/Blackwell; changes the output slightly). cache: "
    "skips most steps' blocks with diffusers' TaylorSeer cache (changes the output). fp8+cache: "
    "both. few_step: Wan's 4-step distill preset (needs your distill LoRA).",
    choices=TIERS)


def parts(tier: str) -> frozenset[str]:
    """The pieces a tier turns on; raises ValueError naming an unknown tier."""
    if tier not in PARTS:
        raise ValueError(f"speed={tier!r} is not one of {', '.join(TIERS)}")
    return PARTS[tier]


def changes_output(tier: str) -> bool:
    """True for every tier but `exact`."""
    return parts(tier) != PARTS["exact"]


def check(tier: str, device: str, *, few_step_ok: bool = True, has_loras: bool = False) -> None:
    """Raise ValueError naming why `tier` can't run on `device` for this engine/request."""
    p = parts(tier)
    if "few_step" in p and not few_step_ok:
        raise ValueError(f"speed={tier} is Wan's 4-step distill preset; this engine has none "
                         f"(use exact, fp8, cache or fp8+cache)")
    if "fp8" in p:
        from .fp8 import fp8_unsupported
        why = fp8_unsupported(device)
        if why:
            raise ValueError(why)
        if has_loras:
            raise ValueError(f"speed={tier} does not take LoRAs yet (their weights would meet the fp8 "
                             f"block weights); use speed=exact or cache with LoRAs")


def load_parts(tier: str, device: str) -> tuple[str, ...]:
    """What of the tier changes the loaded model on `device` (part of the model cache key)."""
    cuda = str(device).startswith("cuda")
    return tuple(sorted(x for x in parts(tier) if x == "fp8" or (x == "compile" and cuda)))


def prepare(models: list[Any], tier: str, device: str) -> dict[str, Any]:
    """Apply the load-time pieces (fp8 linears, then compiled blocks on CUDA) to each denoiser."""
    from .compile import compile_blocks, repeated_blocks
    info: dict[str, Any] = {"speed": tier}
    lp = load_parts(tier, device)
    if "fp8" in lp:
        from .fp8 import quantize_blocks
        info["fp8_linears"] = sum(quantize_blocks(repeated_blocks(m)) for m in models)
    if "compile" in lp:
        for m in models:
            info.update(compile_blocks(m))
        info["compiled_models"] = len(models)
    return info


@contextmanager
def run_hooks(models: list[Any], tier: str) -> Iterator[Any]:
    """For one run: the step cache when the tier has it; yields its `StepLog` (or None)."""
    if "cache" not in parts(tier):
        with nullcontext(None) as none:
            yield none
        return
    from .cache import StepLog, caching
    from .compile import repeated_blocks
    with caching(models, repeated_blocks, StepLog()) as log:
        yield log


def notes(tier: str) -> list[str]:
    """What an output-changing tier does, for the run's notes and the ledger."""
    p = parts(tier)
    out = []
    if "fp8" in p:
        out.append("speed fp8: the transformer blocks' linear layers run in fp8 (e4m3, per-row scales); "
                   "this changes the output slightly")
    if "cache" in p:
        from .cache import describe
        out.append(f"speed cache: {describe()} skips the blocks on most steps; this changes the output "
                   "(which steps ran is in the manifest)")
    return out
