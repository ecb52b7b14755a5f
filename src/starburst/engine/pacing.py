"""How long a function's items take, as this process has seen, to size the next run's chunks.

A chunk costs a fixed overhead (a claim, an input, an output: a fraction of a millisecond on
the local store, tens of milliseconds on S3). Items of a few microseconds in tiny chunks spend
most of their time on that overhead. Before a function has run, the chunk planner knows only
the item count; once it has, each chunk's output says how long its items took, and the next
run of the same function gets chunks that last at least the backend's
``Backend.min_chunk_seconds``.

Functions are told apart by their code object (a lambda made anew each call has the same
one), a built-in by itself, a callable object by its class.
"""

from __future__ import annotations

import threading
import types
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from .chunking import Pace

#: How many functions' timings are kept (the least recently seen go first).
_KEPT = 256
#: Weight of the past in the running mean: the latest chunks count most.
_DECAY = 0.5


def function_key(fn: Callable[..., Any]) -> Hashable:
    """What identifies ``fn`` across calls: a Python function's code object, a built-in
    function or class itself, a callable object's class."""
    target = getattr(fn, "func", fn)  # functools.partial: the wrapped function
    code = getattr(target, "__code__", None)
    if code is not None:
        return code
    if isinstance(target, type | types.BuiltinFunctionType):
        return target
    return type(target)


class ItemTimes:
    """Seconds per item of recently run functions (thread-safe)."""

    def __init__(self) -> None:
        self._seen: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def observe(self, key: Hashable, seconds: float, items: int) -> None:
        """Take in a chunk of ``items`` whose items took ``seconds`` in all."""
        if items <= 0 or seconds <= 0:
            return
        with self._lock:
            total, count = self._seen.pop(key, (0.0, 0.0))
            self._seen[key] = (total * _DECAY + seconds, count * _DECAY + items)
            while len(self._seen) > _KEPT:
                self._seen.popitem(last=False)

    def clear(self) -> None:
        """Forget every function's times (the next runs are planned as first runs)."""
        with self._lock:
            self._seen.clear()

    def per_item(self, key: Hashable) -> float | None:
        """The recent mean seconds per item of ``key``'s function, or None if never seen."""
        with self._lock:
            seen = self._seen.get(key)
        return seen[0] / seen[1] if seen else None


#: What this process has seen.
ITEM_TIMES = ItemTimes()


def pace_for(key: Hashable, min_chunk_seconds: float) -> Pace | None:
    """How to size chunks for the function ``key``, if its items were seen, so that each
    chunk lasts at least ``min_chunk_seconds`` (the backend's: long enough that a chunk's
    overhead stays small beside it, short enough to keep the end balanced)."""
    seconds = ITEM_TIMES.per_item(key)
    if seconds is None:
        return None
    return Pace(seconds, min_chunk_seconds)
