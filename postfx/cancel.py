"""Cancel inside one long call: run it in a helper thread and look at the cancel flag meanwhile.

A tile of Real-ESRGAN on two CPU cores can take seconds, and neither torch nor ncnn can stop inside a
forward.  `interruptible(fn, check)` returns a function that runs `fn` in a thread and calls
`check()` (which raises to cancel) every `poll_s` while it waits; on a cancel the call returns at once
by raising, and the abandoned forward finishes on its own in the background (its result is dropped).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import nullcontext
from typing import Any

POLL_S = 0.1


def interruptible(fn: Callable[..., Any], check: Callable[[], None] | None,
                  poll_s: float = POLL_S) -> Callable[..., Any]:
    """`fn`, but waiting for it raises whatever `check()` raises (nothing changes without `check`)."""
    if check is None:
        return fn

    def call(*args: Any, **kw: Any) -> Any:
        check()
        fut: Future = Future()
        torch = sys.modules.get("torch")   # torch's inference/grad modes are per thread: carry them over
        modes = ((torch.is_inference_mode_enabled(), torch.is_grad_enabled()) if torch is not None
                 else (False, True))

        def work() -> None:
            try:
                inference = torch.inference_mode() if modes[0] else nullcontext()
                grad = torch.set_grad_enabled(modes[1]) if torch is not None else nullcontext()
                with inference, grad:
                    fut.set_result(fn(*args, **kw))
            except BaseException as e:  # noqa: BLE001 - handed to the waiting caller
                fut.set_exception(e)

        threading.Thread(target=work, name="studio-interruptible", daemon=True).start()
        while True:
            try:
                return fut.result(timeout=poll_s)
            except TimeoutError:
                check()

    return call
