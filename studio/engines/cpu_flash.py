"""A CPU kernel for `aten::_scaled_dot_product_flash_attention`, so that diffusers' ring attention runs
on the CPU (a gang of CPU ranks over gloo).

Ring attention merges the partial results of its key/value chunks by their log-sum-exp.  diffusers
0.42.1's native backend does not return it ('Native attention does not support return_lse=True');
its `_native_flash` backend does, through this aten op, which torch ships for CUDA only.  Torch's own
CPU flash attention (`_scaled_dot_product_flash_attention_for_cpu`) computes the same output and
log-sum-exp; this registers it under the CUDA op's name for CPU tensors, once, on first use.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

log = logging.getLogger(__name__)
_LIB: Any = None
_LOCK = threading.Lock()


def _flash_cpu(query: Any, key: Any, value: Any, dropout_p: float = 0.0, is_causal: bool = False,
               return_debug_mask: bool = False, *, scale: float | None = None) -> tuple[Any, ...]:
    import torch
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(query, key, value, dropout_p,
                                                                            is_causal, scale=scale)
    empty = torch.empty(0, dtype=torch.int64)
    return (out, lse, empty, empty, query.shape[2], key.shape[2], empty, empty,
            torch.empty(0, dtype=query.dtype))


def ensure_cpu_flash() -> bool:
    """Make the op run on CPU tensors (registering the kernel unless torch has one); True if it had to."""
    global _LIB
    import torch
    with _LOCK:
        if _LIB is not None:
            return False
        q = torch.zeros(1, 1, 2, 8)
        try:
            torch.ops.aten._scaled_dot_product_flash_attention(q, q, q)
            return False
        except (NotImplementedError, RuntimeError):
            pass
        _LIB = torch.library.Library("aten", "IMPL")
        _LIB.impl("_scaled_dot_product_flash_attention", _flash_cpu, "CPU")
        log.info("registered a CPU kernel for aten::_scaled_dot_product_flash_attention (ring attention)")
        return True
