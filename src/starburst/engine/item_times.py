"""How long an item of a function takes: the one memory of item times, in two layers.

- **Seen** (in this process, in memory): each chunk output says how long its items took
  (measured by the worker); ``observe`` keeps a running mean per function, ``seen`` reads it,
  and ``pace_for`` turns it into the next run's chunk sizes. Nothing here touches a file: it
  is on the path of every call.
- **Measured** (by ``starburst.estimate``, kept in the cache folder as ``item-seconds.json``
  under the function's ``module.qualname``): ``remember_measured`` writes it, ``measured``
  reads it, so that a later ``map`` of the same function, in any process, can say and check
  against ``max_cost`` what its run should cost before it launches (``cost/guard.py``).

A chunk costs a fixed overhead (a claim, an input, an output: a fraction of a millisecond on
the local store, tens of milliseconds on S3). Items of a few microseconds in tiny chunks spend
most of their time on that overhead. Before a function has run, the chunk planner knows only
the item count; once it has, each chunk's output says how long its items took, and the next
run of the same function gets chunks that last at least the backend's
``Backend.min_chunk_seconds``.

In memory, functions are told apart by their code object (a lambda made anew each call has
the same one), a built-in by itself, a callable object by its class; in the cache, by their
module and qualified name (lambdas and closures are not kept there).
"""

from __future__ import annotations

import threading
import types
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

from ..cost.model import cache_dir, read_json, write_json
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
    # A class is hashable, though mypy checks ``type[X]`` against its instances' ``__hash__``.
    return type(target)  # type: ignore[return-value]


def stable_name(fn: Callable[..., Any]) -> str | None:
    """``fn``'s name across processes: ``module.qualname`` of a module-level function
    (``None`` for lambdas and closures)."""
    name = getattr(fn, "__qualname__", "")
    module = getattr(fn, "__module__", None)
    return None if not name or "<" in name or module is None else f"{module}.{name}"


class ItemTimes:
    """Seconds per item of functions: seen by this process (recent functions, thread-safe)
    and measured by ``estimate`` (kept in the cache folder)."""

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

    def seen(self, key: Hashable) -> float | None:
        """The recent mean seconds per item of ``key``'s function in this process, or None
        if never seen."""
        with self._lock:
            seen = self._seen.get(key)
        return seen[0] / seen[1] if seen else None

    @staticmethod
    def remember_measured(fn: Callable[..., Any], seconds: float) -> None:
        """Keep the time per item ``estimate`` measured for ``fn``, for any later process."""
        name = stable_name(fn)
        if name is not None:
            path = _measured_path()
            known = read_json(path)
            write_json(path, {**(known if isinstance(known, dict) else {}), name: seconds})

    @staticmethod
    def measured(fn: Callable[..., Any]) -> float | None:
        """The time per item ``estimate`` last measured for ``fn``, if it did."""
        name = stable_name(fn)
        known = read_json(_measured_path())
        value = known.get(name) if isinstance(known, dict) and name is not None else None
        return float(value) if isinstance(value, int | float) else None


def _measured_path() -> Path:
    return cache_dir() / "item-seconds.json"


#: The item times: what this process has seen, and what ``estimate`` measured.
ITEM_TIMES = ItemTimes()


def pace_for(key: Hashable, min_chunk_seconds: float) -> Pace | None:
    """How to size chunks for the function ``key``, if its items were seen, so that each
    chunk lasts at least ``min_chunk_seconds`` (the backend's: long enough that a chunk's
    overhead stays small beside it, short enough to keep the end balanced)."""
    seconds = ITEM_TIMES.seen(key)
    if seconds is None:
        return None
    return Pace(seconds, min_chunk_seconds)
