"""Large arguments of submitted calls are stored once per session, and each worker reads
each of them once (``engine/shared.py``)."""

from __future__ import annotations

import os

import numpy as np
import pytest

import starburst
from starburst.engine.keys import SessionKeys
from starburst.engine.shared import SHARE_MIN_BYTES, SharedArguments, SharedCache
from starburst.serialize import load_call, pickle_call
from starburst.store import Store

MATRIX = np.arange(2 * 2**20 // 8, dtype=np.float64)  # 2 MB
RESULT_TIMEOUT = 60

#: The arrays each worker process was given, kept alive so that two of them never share an id.
_kept: list[np.ndarray] = []


def total_plus(matrix: np.ndarray, i: int) -> float:
    return float(matrix.sum()) + i


def which_array(matrix: np.ndarray, i: int) -> tuple[int, int, bool]:
    """The worker's pid, the id of the array it was given and whether it may be written."""
    _kept.append(matrix)
    return os.getpid(), id(matrix), bool(matrix.flags.writeable)


def write_into(matrix: np.ndarray) -> None:
    matrix[0] = 1.0


def shared_objects(cluster: starburst.Cluster) -> list[str]:
    driver = cluster.driver
    return list(driver.store.list(driver.keys.shared_prefix))


def test_a_2mb_array_in_50_calls_is_stored_once_and_the_results_are_right() -> None:
    with starburst.Cluster(2, progress=False) as cluster:
        futures = [cluster.submit(total_plus, MATRIX, i) for i in range(50)]
        results = [future.result(timeout=RESULT_TIMEOUT) for future in futures]
        stored = shared_objects(cluster)
        written = cluster.driver.store.bytes_written
    assert results == [float(MATRIX.sum()) + i for i in range(50)]
    assert len(stored) == 1
    assert written < 2 * MATRIX.nbytes  # once, not 50 times (100 MB)


def test_each_worker_reads_a_shared_array_once_and_gets_it_read_only() -> None:
    with starburst.Cluster(2, progress=False) as cluster:
        futures = [cluster.submit(which_array, MATRIX, i) for i in range(40)]
        seen = [future.result(timeout=RESULT_TIMEOUT) for future in futures]
        with pytest.raises(ValueError, match="read-only"):
            cluster.submit(write_into, MATRIX).result(timeout=RESULT_TIMEOUT)
    arrays_by_worker: dict[int, set[int]] = {}
    for pid, array_id, writeable in seen:
        arrays_by_worker.setdefault(pid, set()).add(array_id)
        assert not writeable
    assert all(len(ids) == 1 for ids in arrays_by_worker.values()), arrays_by_worker


def test_small_arguments_travel_inside_the_call() -> None:
    small = np.ones(1000)
    with starburst.Cluster(1, progress=False) as cluster:
        assert cluster.submit(total_plus, small, 1).result(timeout=RESULT_TIMEOUT) == 1001.0
        assert shared_objects(cluster) == []


def test_shared_arguments_round_trip_through_every_store(store: Store) -> None:
    keys = SessionKeys("sb-shared-test")
    sharing = SharedArguments(store, keys)
    blob = os.urandom(SHARE_MIN_BYTES)
    with sharing.remembering():
        calls = [
            pickle_call(total_plus, (MATRIX, i), {"blob": blob}, share=sharing.reference)
            for i in range(3)
        ]
    calls.append(pickle_call(total_plus, (MATRIX, 3), {}, share=sharing.reference))
    assert len(list(store.list(keys.shared_prefix))) == 2  # the matrix and the bytes
    assert all(len(call) < 10_000 for call in calls)  # references, not the data
    cache = SharedCache(store, keys)
    gets = store.requests["get"]
    loaded = [load_call(call, cache.load) for call in calls]
    assert store.requests["get"] - gets == 2  # each object read once
    for i, (fn, args, kwargs) in enumerate(loaded):
        assert fn is total_plus
        np.testing.assert_array_equal(args[0], MATRIX)
        assert args[1] == i
        assert kwargs.get("blob", blob) == blob
    assert loaded[0][1][0] is loaded[3][1][0]
