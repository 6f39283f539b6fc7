"""Cached prompt and image embeddings between requests on one loaded pipeline (same output).

Re-running with a new seed, step count, guidance, frame count or LoRA strength re-encodes the
same prompt and image every time.  `cached_encoders(pipe, methods)` wraps the pipeline's own
encoder methods (e.g. `encode_prompt`, `_encode_image`) for the length of one call: a call whose
arguments equal an earlier one's returns clones of the stored result instead of running the
text or image encoder again.  Arguments are keyed by value (tensors and PIL images by their
bytes); a call with an argument that cannot be keyed (a random generator, say) is not cached.
The cache lives on the pipeline object, so loading another pipeline drops it.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

SIZE = 8
"""Results kept per pipeline (least recently used dropped first)."""


class _Unkeyable(Exception):
    pass


def _key(x: Any) -> Any:
    """A hashable value key for an encoder argument; _Unkeyable when there is none."""
    import torch
    if x is None or isinstance(x, (str, int, float, bool)):
        return x
    if isinstance(x, torch.device):
        return ("device", str(x))
    if isinstance(x, torch.Tensor):
        data = x.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8)
        return ("tensor", tuple(x.shape), str(x.dtype), str(x.device),
                hashlib.sha1(data.numpy().tobytes()).hexdigest())
    if isinstance(x, (list, tuple)):
        return (type(x).__name__, tuple(_key(v) for v in x))
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - PIL comes with diffusers
        Image = None
    if Image is not None and isinstance(x, Image.Image):
        return ("pil", x.mode, x.size, hashlib.sha1(x.tobytes()).hexdigest())
    raise _Unkeyable(type(x).__name__)


def _cfg_state(pipe: Any) -> Any:
    """The pipeline's `do_classifier_free_guidance` for this call (None where it has none)."""
    try:
        v = pipe.do_classifier_free_guidance
    except Exception:  # noqa: BLE001 - a property that needs state the pipeline has not set
        return None
    return bool(v) if v is not None else None


def _clone(x: Any) -> Any:
    import torch
    if isinstance(x, torch.Tensor):
        return x.clone()
    if isinstance(x, tuple):
        return tuple(_clone(v) for v in x)
    if isinstance(x, list):
        return [_clone(v) for v in x]
    return x


@contextmanager
def cached_encoders(pipe: Any, methods: tuple[str, ...], salt: Any = None) -> Iterator[dict[str, int]]:
    """Within the block, `pipe.<method>` calls with equal arguments reuse earlier results.

    `salt` goes into every key (e.g. the LoRAs applied, when they can reach the encoders).
    Yields counters {"hits": n, "misses": n} for this block.
    """
    cache: OrderedDict = pipe.__dict__.setdefault("_studio_embed_cache", OrderedDict())
    stats = {"hits": 0, "misses": 0}
    wrapped = []
    for name in methods:
        orig = getattr(pipe, name, None)
        if orig is None or name in pipe.__dict__:
            continue

        def call(*a: Any, _orig=orig, _name=name, **k: Any) -> Any:
            try:
                # some encoders read the pipeline's CFG switch instead of taking it as an argument
                cfg = _cfg_state(pipe)
                key = (_name, _key(salt), cfg, _key(a), tuple(sorted((n, _key(v)) for n, v in k.items())))
            except _Unkeyable:
                return _orig(*a, **k)
            if key in cache:
                cache.move_to_end(key)
                stats["hits"] += 1
                return _clone(cache[key])
            out = _orig(*a, **k)
            cache[key] = _clone(out)
            while len(cache) > SIZE:
                cache.popitem(last=False)
            stats["misses"] += 1
            return out
        setattr(pipe, name, call)
        wrapped.append(name)
    try:
        yield stats
    finally:
        for name in wrapped:
            delattr(pipe, name)  # the instance attribute; the class method shows again
