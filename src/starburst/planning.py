"""Planning a call: validate it for the workers it will run on, pickle its function and cut
its items into chunks. Nothing is launched here; every front end (``Cluster``, the one-off
``map``, ``submit``, detached sessions) plans through these functions, then hands the plan
to the engine (``engine/driver.py``).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .engine.chunking import ChunkStream, iter_chunks, zip_inputs
from .engine.item_times import function_key, pace_for
from .engine.manifest import CallStyle, RunFunction
from .errors import StarburstError
from .options import RunOptions, WorkerSpec
from .serialize import dumps, unpicklable_function_error


@dataclass
class Plan:
    """A validated call, ready to submit: nothing has been launched yet."""

    payload: bytes
    chunks: ChunkStream
    n_items: int | None
    call: CallStyle
    options: RunOptions
    #: Which function's item times the run's outputs teach (``engine/item_times.py``).
    timing_key: Hashable | None = None
    #: Seconds an item of this function took in this process's earlier calls, if any.
    item_seconds: float | None = None
    #: When the call began (``time.monotonic``): its ``timeout`` counts from here.
    started: float = field(default_factory=time.monotonic)


def plan_call(
    spec: WorkerSpec,
    fn: Callable[..., Any],
    iterables: tuple[Iterable[Any], ...],
    call: CallStyle,
    options: RunOptions,
) -> Plan:
    """Validate a call for workers of ``spec`` and plan its chunks (nothing is launched);
    ``options`` were validated by ``RunOptions.build``."""
    check_function(fn)
    if not iterables:
        raise StarburstError("map needs at least one iterable of inputs")
    try:
        payload = dumps(RunFunction(fn, options.retry_exceptions), compress=spec.backend.remote)
    except Exception as exc:
        raise unpicklable_function_error(fn, exc) from exc
    items, n_items = zip_inputs(iterables, options.strict)
    if call == "single" and len(iterables) > 1:
        call = "star"  # zipped items are tuples of arguments
    per_slot = spec.backend.chunks_per_slot
    key = function_key(fn)
    pace = pace_for(key, spec.backend.min_chunk_seconds)
    n_items, chunks = iter_chunks(items, n_items, spec.slots, options.chunk_size, per_slot, pace)
    seconds = None if pace is None else pace.item_seconds
    return Plan(payload, chunks, n_items, call, options, key, seconds)


def check_function(fn: Any) -> None:
    """Refuse what workers cannot run item by item: a non-callable, a coroutine function
    (each item would return an un-awaited coroutine) or a generator function (a generator
    cannot travel back)."""
    if not callable(fn):
        raise StarburstError(f"{fn!r} is not callable; pass a function as the first argument")
    name = getattr(fn, "__qualname__", repr(fn))
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        raise StarburstError(
            f"{name} is an async function: workers call functions, not coroutines. Wrap it: "
            f"`def run(x): return asyncio.run({name}(x))`, and map `run`"
        )
    if inspect.isgeneratorfunction(fn):
        raise StarburstError(
            f"{name} is a generator function: its generators cannot be sent back. Wrap it: "
            f"`def run(x): return list({name}(x))`, and map `run`"
        )


def plan_tasks(spec: WorkerSpec, tasks: list[bytes]) -> Plan:
    """Plan submitted calls, each pickled on its own (``serialize.pickle_call``), as one run;
    the items carry their own functions."""
    payload = dumps(RunFunction(None), compress=spec.backend.remote)
    per_slot = spec.backend.chunks_per_slot
    n_items, chunks = iter_chunks(tasks, len(tasks), spec.slots, None, per_slot)
    return Plan(payload, chunks, n_items, "task", RunOptions())
