"""Chunk planning: sizes, order, streaming, and several iterables."""

from __future__ import annotations

import functools
import itertools

import pytest

from starburst import LengthMismatchError
from starburst.backends import backend_named
from starburst.engine.chunking import (
    DEFAULT_CHUNKS_PER_SLOT,
    LOOKAHEAD_ITEMS,
    MAX_CHUNK_BYTES,
    Pace,
    chunk_sizes,
    iter_chunks,
    zip_inputs,
)
from starburst.engine.pacing import ItemTimes, function_key


def _plan(n: int, slots: int, chunk_size: int | None = None) -> list[int]:
    n_items, chunks = iter_chunks(range(n), n, slots, chunk_size)
    assert n_items == n
    return [len(c.items) for c in chunks]


@pytest.mark.parametrize(("n", "slots"), [(1, 1), (7, 4), (2_000, 2), (100_000, 2), (10_000, 100)])
def test_chunks_cover_every_item_once_in_order(n: int, slots: int) -> None:
    _, chunks = iter_chunks(range(n), n, slots, None)
    seen = []
    for number, chunk in enumerate(chunks):
        assert chunk.number == number
        assert chunk.start == len(seen)
        seen.extend(chunk.items)
    assert seen == list(range(n))


def test_guided_schedule_starts_small_then_shrinks_towards_the_end() -> None:
    sizes = _plan(2_000, 2)
    first, rest = sizes[:2], sizes[2:]
    assert first[0] == first[1] < max(rest)  # one small chunk per slot, then bigger ones
    peak = rest.index(max(rest))
    assert rest[peak:] == sorted(rest[peak:], reverse=True)  # never growing after the peak
    assert sizes[-1] <= 2_000 / (2 * 32)  # the tail is small, so no slot is left waiting


def test_the_floor_bounds_the_number_of_chunks() -> None:
    assert len(_plan(100_000, 2)) <= 2 * DEFAULT_CHUNKS_PER_SLOT
    assert len(_plan(100_000, 2)) >= 4  # but enough chunks to balance two slots


def test_a_network_store_gets_few_chunks_per_slot() -> None:
    per_slot = backend_named("fargate").chunks_per_slot
    assert per_slot < backend_named("local").chunks_per_slot
    _, chunks = iter_chunks(range(10_000), 10_000, 100, None, per_slot)
    sizes = [len(c.items) for c in chunks]
    assert sum(sizes) == 10_000 and 100 <= len(sizes) <= 100 * per_slot


def test_explicit_chunk_size_is_honoured() -> None:
    assert _plan(10, 3, chunk_size=4) == [4, 4, 2]


def test_large_items_are_capped_by_bytes() -> None:
    sizes = list(itertools.islice(chunk_sizes(10_000, 2, None, item_bytes=1_000_000), 10))
    assert max(sizes) * 1_000_000 <= MAX_CHUNK_BYTES


def test_a_short_generator_is_measured_by_reading_ahead() -> None:
    n_items, chunks = iter_chunks((i for i in range(50)), None, 2, None)
    assert n_items == 50
    assert [x for c in chunks for x in c.items] == list(range(50))


def test_a_long_generator_streams_without_being_held_whole() -> None:
    pulled = 0

    def numbers():
        nonlocal pulled
        for i in range(LOOKAHEAD_ITEMS * 5):
            pulled += 1
            yield i

    n_items, chunks = iter_chunks(numbers(), None, 2, None)
    assert n_items is None
    first = next(chunks)
    assert first.items[0] == 0
    assert pulled <= LOOKAHEAD_ITEMS + len(first.items)  # not read to the end
    total = len(first.items) + sum(len(c.items) for c in chunks)
    assert total == LOOKAHEAD_ITEMS * 5


def test_an_empty_input_has_no_chunks() -> None:
    assert iter_chunks(iter(()), None, 2, None)[0] == 0
    assert list(iter_chunks([], 0, 2, None)[1]) == []


def test_several_iterables_zip_into_tuples() -> None:
    items, n = zip_inputs(([1, 2, 3], "abc"), strict=True)
    assert n == 3 and list(items) == [(1, "a"), (2, "b"), (3, "c")]


def test_sized_iterables_of_different_lengths_fail_before_anything_runs() -> None:
    with pytest.raises(LengthMismatchError, match=r"different lengths \(3, 2\).*strict=False"):
        zip_inputs(([1, 2, 3], [1, 2]), strict=True)


def test_unsized_iterables_of_different_lengths_fail_when_found() -> None:
    items, n = zip_inputs((iter([1, 2, 3]), iter([1, 2])), strict=True)
    assert n is None
    with pytest.raises(LengthMismatchError, match="iterable #2 ended first"):
        list(items)


def test_non_strict_stops_at_the_shortest() -> None:
    items, n = zip_inputs(([1, 2, 3], [4, 5]), strict=False)
    assert n == 2 and list(items) == [(1, 4), (2, 5)]


# Pacing: chunks sized by the item time a function showed before --------------------------------


def test_a_known_item_time_makes_chunks_last_at_least_the_paced_seconds() -> None:
    pace = Pace(item_seconds=0.0001, chunk_seconds=0.004)  # 40 items make a 4 ms chunk
    _, chunks = iter_chunks(range(1_000), 1_000, 2, None, pace=pace)
    sizes = [len(c.items) for c in chunks]
    assert sum(sizes) == 1_000
    assert min(sizes[:-1]) >= 40  # only the last may be a remainder
    assert len(sizes) < len(_plan(1_000, 2))  # fewer than without the item time


def test_a_paced_floor_leaves_the_end_balanced() -> None:
    """Items that cost nothing before may cost more, or vary, this time: the floor stays
    at most a quarter of a slot's share, and the last chunks are floor-sized."""
    pace = Pace(item_seconds=1e-9, chunk_seconds=0.004)
    _, chunks = iter_chunks(range(1_000), 1_000, 4, None, pace=pace)
    sizes = [len(c.items) for c in chunks]
    assert sum(sizes) == 1_000
    assert sizes[:4] == [63, 63, 63, 63]  # ceil(1,000 / (4 slots x 4))
    assert len(sizes) >= 4 * 4 - 4 and max(sizes) < 250


def test_slow_items_keep_the_guided_schedule() -> None:
    pace = Pace(item_seconds=0.005, chunk_seconds=0.004)  # one item outlasts a chunk's least
    _, chunks = iter_chunks(range(2_000), 2_000, 2, None, pace=pace)
    assert [len(c.items) for c in chunks] == _plan(2_000, 2)


def test_item_times_follow_the_latest_chunks_and_tell_functions_apart() -> None:
    times = ItemTimes()
    assert times.per_item("f") is None
    times.observe("f", seconds=1.0, items=100)
    assert times.per_item("f") == pytest.approx(0.01)
    for _ in range(10):  # the function got faster: the estimate follows
        times.observe("f", seconds=0.1, items=100)
    assert times.per_item("f") == pytest.approx(0.001, rel=0.01)
    times.observe("g", seconds=0.0, items=5)  # nothing measured: nothing learnt
    assert times.per_item("g") is None


def test_a_function_made_anew_each_call_keeps_its_key() -> None:
    def make(k: int):
        return lambda x: x * k

    assert function_key(make(2)) == function_key(make(3))
    assert function_key(make(2)) != function_key(lambda x: x)
    assert function_key(functools.partial(divmod, 7)) == function_key(divmod)
    assert len({function_key(f) for f in (divmod, len, str, int)}) == 4

    class Scale:
        def __call__(self, x: int) -> int:
            return x

    assert function_key(Scale()) == function_key(Scale())
