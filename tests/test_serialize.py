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


SCALARS = [
    np.float64(0.1), np.float64(-0.0), np.float64("nan"), np.float32(1 / 3), np.float16(0.3),
    np.complex128(1 + 2j), np.complex64(0.1 - 3j), np.int64(-(2**63)), np.uint64(2**64 - 1),
    np.int8(-5), np.uint8(255), np.bool_(True), np.longdouble(1) / 3, np.datetime64("2020-01-01"),
]  # fmt: skip


def test_numpy_scalars_in_results_come_back_bit_for_bit_and_the_common_ones_cheaply() -> None:
    payload = dumps({"values": SCALARS}, compress=False, to_client=True)
    back = loads(payload)["values"]
    for sent, received in zip(SCALARS, back, strict=True):
        assert type(received) is type(sent)
        assert received.tobytes() == sent.tobytes()
    # Only the long double and the date keep NumPy's own (slower) reduction: the others
    # travel as Python numbers, not as NumPy's scalar() of a dtype and raw bytes.
    common = dumps(SCALARS[:12], compress=False, to_client=True)
    assert b"scalar" not in common and b"dtype" not in common
