"""When a background batch is due: the one rule the device reaper and the sandbox
teardown thread share."""

from __future__ import annotations

import threading
import time
from typing import Callable


def wait_for_batch(cv: threading.Condition, pending: Callable[[], int], *,
                   max_delay: float, max_backlog: int, stopping: Callable[[], bool],
                   hurry: Callable[[], bool] = lambda: False) -> bool:
    """Call with ``cv`` held. Waits for a first pending item, then until the batch is
    due: ``max_delay`` seconds later, ``max_backlog`` items, ``stopping()`` or
    ``hurry()``. Returns False when stopping with nothing pending (the thread ends).
    Whoever adds an item must notify ``cv``: that starts the delay's clock."""
    while pending() == 0:
        if stopping():
            return False
        cv.wait()
    deadline = time.monotonic() + max_delay
    while pending() < max_backlog and not stopping() and not hurry():
        left = deadline - time.monotonic()
        if left <= 0:
            break
        cv.wait(left)
    return True
