"""Payloads: arrays travel out of band without copies, and come back writable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from starburst.serialize import dumps, dumps_parts, loads
from starburst.store import LocalStore

ITEMS = {"start": 0, "items": [np.arange(100_000.0), np.ones((300, 7), order="F"), "text", 3]}


def _same(a: object, b: object) -> None:
    assert isinstance(a, dict) and isinstance(b, dict)
    for x, y in zip(a["items"], b["items"], strict=True):
        if isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y)
            assert y.flags.writeable
        else:
            assert x == y


@pytest.mark.parametrize("compress", [False, True])
def test_a_payload_in_parts_round_trips(compress: bool) -> None:
    _same(ITEMS, loads(b"".join(bytes(p) for p in dumps_parts(ITEMS, compress=compress))))


def test_large_arrays_are_sent_as_views_not_copies() -> None:
    parts = dumps_parts(ITEMS, compress=False)
    big = ITEMS["items"][0]
    assert any(np.shares_memory(np.frombuffer(part, dtype=np.uint8), big) for part in parts[1:])


def test_arrays_read_from_a_mapped_file_share_its_pages_privately(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put_parts("in/0", dumps_parts(ITEMS, compress=False))
    received = loads(store.get_view("in/0"))
    _same(ITEMS, received)
    array = received["items"][0]
    assert array.ctypes.data % 64 == 0  # aligned, as NumPy likes
    array[:] = -1  # the user's function may change its input in place...
    _same(ITEMS, loads(store.get("in/0")))  # ...without changing what is stored


def test_plain_payloads_still_load() -> None:
    assert loads(dumps([1, "two"], compress=False)) == [1, "two"]
    assert loads(dumps(list(range(5000)), compress=True)) == list(range(5000))
