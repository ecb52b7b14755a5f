"""Chunk planning: how many items travel together, decided before the items are read.

By default chunks follow a *guided* schedule: one small chunk per slot first (so first
results land quickly and in order), then chunks that shrink as the work runs out (so no slot
is left with a large chunk at the end), never smaller than a floor that keeps per-chunk
overhead negligible, never larger than a byte budget. ``chunk_size=`` fixes the size.
Items stream from the caller's iterable into chunks; they are never all held at once.
"""

from __future__ import annotations

import functools
import itertools
import math
import pickle
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import LengthMismatchError

#: Items read ahead from an iterable without ``len`` to learn its length when it is short.
LOOKAHEAD_ITEMS = 10_000
#: The floor is sized so that a run has at most ``per_slot`` chunks per slot: many when the
#: store is a local disk (a chunk costs microseconds), few when it is across a network (a
#: chunk costs the client two requests and its worker four, of tens of milliseconds each).
#: Each backend says how many (``Backend.chunks_per_slot``); this is the local one's.
DEFAULT_CHUNKS_PER_SLOT = 256
#: A chunk should not carry more than about this many bytes of input.
MAX_CHUNK_BYTES = 32 * 1024 * 1024
#: A paced floor leaves at least this many chunks per slot, for the end's balancing.
_PACED_PER_SLOT = 4


def chunk_sizes(
    n_items: int | None,
    slots: int,
    chunk_size: int | None = None,
    item_bytes: int = 0,
    per_slot: int = DEFAULT_CHUNKS_PER_SLOT,
    pace: Pace | None = None,
) -> Iterator[int]:
    """Endless sizes of successive chunks for ``n_items`` items (``None``: not known).

    With a known count, there are at most ``per_slot`` chunks per slot. With a ``pace`` (the
    seconds an item took before, and how long a chunk should last at least), the floor rises
    to what that needs, but no higher than a quarter of a slot's share: items may take longer
    this time, or vary, and the shrinking chunks at the end still balance the slots.
    """
    byte_cap = max(1, MAX_CHUNK_BYTES // item_bytes) if item_bytes else None
    if chunk_size is not None:
        yield from itertools.repeat(chunk_size)
        return
    if n_items is None:
        size = max(1, LOOKAHEAD_ITEMS // (slots * 16))
        yield from itertools.repeat(min(size, byte_cap or size))
        return
    floor = max(1, math.ceil(n_items / (slots * per_slot)))
    if pace is not None:
        paced = math.ceil(pace.chunk_seconds / max(pace.item_seconds, 1e-9))
        floor = max(floor, min(paced, math.ceil(n_items / (slots * _PACED_PER_SLOT))))
    if byte_cap is not None:
        floor = min(floor, byte_cap)
    remaining = n_items
    for _ in range(slots):  # one small first chunk per slot
        yield floor
        remaining -= floor
    while True:
        size = max(floor, math.ceil(max(remaining, 0) / (2 * slots)))
        if byte_cap is not None:
            size = min(size, byte_cap)
        yield size
        remaining -= size


@dataclass(frozen=True)
class Pace:
    """What sizes chunks by time: an item's seconds (as seen before) and a chunk's least."""

    item_seconds: float
    chunk_seconds: float


@dataclass(frozen=True)
class Chunk:
    """A run of consecutive items: ``items[k]`` is input number ``start + k``."""

    number: int
    start: int
    items: list[Any]


def zip_inputs(
    iterables: tuple[Iterable[Any], ...], strict: bool
) -> tuple[Iterable[Any], int | None]:
    """Combine the iterables of a ``map`` call into one and say its length when known.

    With one iterable its items are used as they are; with several, the items are tuples.
    With ``strict`` and every length known, a mismatch is reported before anything runs.
    """
    lengths = [_length(it) for it in iterables]
    known = [n for n in lengths if n is not None]
    if strict and len(known) == len(lengths) and len(set(known)) > 1:
        raise LengthMismatchError(_mismatch_message(lengths))
    if len(iterables) == 1:
        return iterables[0], lengths[0]
    length = min(known) if len(known) == len(lengths) else None
    return (_zip_strict(iterables) if strict else zip(*iterables, strict=False)), length


def _zip_strict(iterables: tuple[Iterable[Any], ...]) -> Iterator[tuple[Any, ...]]:
    iterators = [iter(it) for it in iterables]
    end = object()
    while True:
        row = tuple(next(it, end) for it in iterators)
        ended = [value is end for value in row]
        if all(ended):
            return
        if any(ended):
            raise LengthMismatchError(
                "the iterables have different lengths (iterable "
                f"#{ended.index(True) + 1} ended first); pass iterables of equal length, "
                "or strict=False to stop at the shortest as the built-in map does"
            )
        yield row


def _mismatch_message(lengths: list[int | None]) -> str:
    shown = ", ".join(str(n) for n in lengths)
    return (
        f"the iterables have different lengths ({shown}); pass iterables of equal length, "
        "or strict=False to stop at the shortest as the built-in map does"
    )


def _length(iterable: Iterable[Any]) -> int | None:
    try:
        return len(iterable)  # type: ignore[arg-type]
    except TypeError:
        return None


class ChunkStream(Iterator[Chunk]):
    """Chunks cut from a stream of items as they are read, and how many there will be.

    ``n_chunks`` is known ahead when the number of items is; otherwise it is ``None``.
    """

    def __init__(
        self, items: Iterator[Any], schedule: Callable[[], Iterator[int]], n_items: int | None
    ) -> None:
        self.n_chunks = None if n_items is None else _count_chunks(n_items, schedule())
        self._chunks = _cut(items, schedule())

    def __next__(self) -> Chunk:
        return next(self._chunks)


def iter_chunks(
    items: Iterable[Any],
    n_items: int | None,
    slots: int,
    chunk_size: int | None,
    per_slot: int = DEFAULT_CHUNKS_PER_SLOT,
    pace: Pace | None = None,
) -> tuple[int | None, ChunkStream]:
    """Split ``items`` into chunks; return the item count when it is now known, and the chunks.

    An iterable without ``len`` is read ahead by up to ``LOOKAHEAD_ITEMS`` items: when it ends
    within them, its length is known and the guided schedule applies.
    """
    source = iter(items)
    head: list[Any] = []
    if n_items is None and chunk_size is None:
        head = list(itertools.islice(source, LOOKAHEAD_ITEMS))
        if len(head) < LOOKAHEAD_ITEMS:
            n_items = len(head)
    first = head[0] if head else None
    if not head:
        try:
            first = next(source)
        except StopIteration:
            return 0, ChunkStream(iter(()), lambda: iter(()), 0)
        head = [first]
    schedule = functools.partial(
        chunk_sizes, n_items, slots, chunk_size, _pickled_size(first), per_slot, pace
    )
    stream = itertools.chain(head, source)
    del head
    return n_items, ChunkStream(stream, schedule, n_items)


def _count_chunks(n_items: int, sizes: Iterator[int]) -> int:
    count = covered = 0
    while covered < n_items:
        covered += next(sizes)
        count += 1
    return count


def _cut(stream: Iterator[Any], sizes: Iterator[int]) -> Iterator[Chunk]:
    start = 0
    for number, size in enumerate(sizes):
        batch = list(itertools.islice(stream, size))
        if not batch:
            return
        yield Chunk(number, start, batch)
        start += len(batch)


def _pickled_size(item: Any) -> int:
    try:
        return len(pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception:
        return 0
