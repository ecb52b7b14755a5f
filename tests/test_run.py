"""A run's announcement: what the workers are told of a new run, and when."""

from __future__ import annotations

from typing import Any

from starburst.engine.chunking import iter_chunks
from starburst.engine.keys import SessionKeys
from starburst.engine.manifest import RunManifest
from starburst.engine.run import Run
from starburst.store import Store

KEYS = SessionKeys("sb-test")


def _announcements(store: Store, items: list[Any], first_chunks: int) -> list[tuple[Any, ...]]:
    """Submit ``items`` one per chunk, ``first_chunks`` of them stored before the run is
    announced; return each announcement the workers got: (state, chunks, items)."""
    n_items, chunks = iter_chunks(items, len(items), slots=2, chunk_size=1)
    manifest = RunManifest("r00000", "single", retries=0, n_chunks=chunks.n_chunks)
    told: list[tuple[Any, ...]] = []
    run = Run.submit(
        store, KEYS, manifest, b"function", chunks, n_items, lambda: None,
        lambda m: told.append((m.state, m.n_chunks, m.n_items)), first_chunks=first_chunks,
    )  # fmt: skip
    run.start_upload()
    run.wait_uploaded()
    n = sum(1 for _ in items)  # (not len(): it may be wrong)
    stored = list(store.list(KEYS.run("r00000").inputs))
    assert (run.n_chunks, run.n_items, len(stored)) == (n, n, n)
    return told


def test_a_run_stored_whole_before_it_is_announced_is_announced_once_and_sealed(
    store: Store,
) -> None:
    # A few submitted calls fit in the chunks stored before the workers hear of the run:
    # they are told once, of a run they may finish (no second write for them to read).
    assert _announcements(store, [1, 2], first_chunks=2) == [("sealed", 2, 2)]


def test_a_run_with_chunks_left_to_upload_is_announced_open_then_sealed(store: Store) -> None:
    told = _announcements(store, [1, 2, 3, 4, 5], first_chunks=2)
    assert told == [("open", 5, None), ("sealed", 5, 5)]


class _LenTooShort(list):  # type: ignore[type-arg]
    """A list whose ``len()`` is one short of its items."""

    def __len__(self) -> int:
        return super().__len__() - 1


def test_an_input_longer_than_its_len_says_is_uploaded_whole(store: Store) -> None:
    # The plan counts two chunks, both stored up front; a third item follows all the same.
    told = _announcements(store, _LenTooShort([1, 2, 3]), first_chunks=2)
    assert told == [("open", 2, None), ("sealed", 3, 3)]
