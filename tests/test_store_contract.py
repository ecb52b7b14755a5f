"""The store contract: every store implementation must pass these unchanged."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from starburst.errors import StoreError
from starburst.store import LocalStore, NotFound, PreconditionFailed, Store, open_store


def test_put_then_get_returns_the_bytes(store: Store) -> None:
    store.put("a/b/c.bin", b"\x00payload\xff")
    assert store.get("a/b/c.bin") == b"\x00payload\xff"


def test_get_of_a_missing_key_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.get("nothing/here")


def test_put_overwrites_and_changes_the_etag(store: Store) -> None:
    store.put("k", b"one")
    _, first = store.get_versioned("k")
    store.put("k", b"two")
    data, second = store.get_versioned("k")
    assert data == b"two"
    assert second != first


def test_put_if_absent_creates_once(store: Store) -> None:
    etag = store.put_if_absent("claim/1", b"mine")
    assert store.get_versioned("claim/1")[1] == etag
    with pytest.raises(PreconditionFailed):
        store.put_if_absent("claim/1", b"yours")
    assert store.get("claim/1") == b"mine"


def test_put_if_match_swaps_only_the_version_it_read(store: Store) -> None:
    store.put("state", b"v1")
    _, etag = store.get_versioned("state")
    new_etag = store.put_if_match("state", b"v2", etag)
    assert store.get("state") == b"v2"
    with pytest.raises(PreconditionFailed):
        store.put_if_match("state", b"v3", etag)  # stale: the key changed since
    assert store.get("state") == b"v2"
    store.put_if_match("state", b"v3", new_etag)
    assert store.get("state") == b"v3"


def test_put_if_match_on_a_missing_key_fails(store: Store) -> None:
    with pytest.raises(PreconditionFailed):
        store.put_if_match("absent", b"x", "some-etag")


def test_delete_removes_and_is_idempotent(store: Store) -> None:
    store.put("d/x", b"1")
    store.delete("d/x")
    store.delete("d/x")
    with pytest.raises(NotFound):
        store.get("d/x")
    assert list(store.list("d/")) == []


def test_list_is_sorted_and_filtered_by_prefix(store: Store) -> None:
    for key in ["run/out/00000002", "run/out/00000000", "run/in/00000001", "other/x"]:
        store.put(key, b"")
    assert list(store.list("run/out/")) == ["run/out/00000000", "run/out/00000002"]
    assert list(store.list("run/")) == ["run/in/00000001", "run/out/00000000", "run/out/00000002"]
    assert list(store.list("run/o")) == ["run/out/00000000", "run/out/00000002"]


def test_list_paginates_and_resumes_after_a_key(store: Store) -> None:
    keys = [f"p/{i:04d}" for i in range(23)]
    for key in keys:
        store.put(key, b"")
    store.page_size = 5
    before = store.requests["list"]
    assert list(store.list("p/")) == keys
    assert store.requests["list"] - before == 5  # 23 keys in pages of 5
    page, more = store.list_page("p/", start_after="p/0019")
    assert page == ["p/0020", "p/0021", "p/0022"]
    assert more is False
    page, more = store.list_page("p/", limit=3)
    assert page == keys[:3] and more is True


def test_list_folders_names_the_folders_that_hold_keys(store: Store) -> None:
    for key in ["s/b/x", "s/a/y/z", "s/top", "s/c/gone", "t/other/x"]:
        store.put(key, b"")
    store.delete("s/c/gone")  # an emptied folder is not listed (S3 has no empty folders)
    assert store.list_folders("s/") == ["a", "b"]
    assert store.list_folders("s/a/") == ["y"]
    assert store.list_folders("nothing/") == []


def test_delete_prefix_removes_only_that_prefix(store: Store) -> None:
    for key in ["s/1/a", "s/1/b/c", "s/2/a"]:
        store.put(key, b"")
    store.page_size = 1  # one key a page: the removal must go on past the first page
    assert store.delete_prefix("s/1/") == 2
    assert list(store.list("s/")) == ["s/2/a"]


def test_store_reopens_from_its_url(store: Store) -> None:
    store.put("x", b"shared")
    assert open_store(store.url).get("x") == b"shared"


def test_requests_and_bytes_are_counted(store: Store) -> None:
    store.put("c", b"123")
    store.put_if_absent("d", b"45")
    store.get("c")
    store.get("c")
    assert store.requests["put"] == 1 and store.requests["get"] == 2
    assert store.bytes_written == 5


def _race_create(url: str, key: str, me: int, start: multiprocessing.synchronize.Event) -> bool:
    store = open_store(url)
    start.wait()
    try:
        store.put_if_absent(key, str(me).encode())
    except PreconditionFailed:
        return False
    return True


def _race_increment(
    url: str, key: str, times: int, start: multiprocessing.synchronize.Event
) -> int:
    store = open_store(url)
    start.wait()
    conflicts = 0
    for _ in range(times):
        while True:
            data, etag = store.get_versioned(key)
            try:
                store.put_if_match(key, str(int(data) + 1).encode(), etag)
                break
            except PreconditionFailed:
                conflicts += 1
    return conflicts


def _context() -> multiprocessing.context.BaseContext:
    return multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")


def test_racing_put_if_absent_has_exactly_one_winner(store: Store) -> None:
    context = _context()
    for round_ in range(5):
        key = f"race/{round_}"
        with context.Manager() as manager:
            start = manager.Event()
            with context.Pool(16) as pool:
                pending = [
                    pool.apply_async(_race_create, (store.url, key, me, start)) for me in range(16)
                ]
                start.set()
                wins = [p.get(timeout=60) for p in pending]
        assert sum(wins) == 1
        assert store.get(key) == str(wins.index(True)).encode()


def test_racing_put_if_match_loses_no_update(store: Store) -> None:
    store.put("counter", b"0")
    context = _context()
    with context.Manager() as manager:
        start = manager.Event()
        with context.Pool(8) as pool:
            pending = [
                pool.apply_async(_race_increment, (store.url, "counter", 25, start))
                for _ in range(8)
            ]
            start.set()
            conflicts = sum(p.get(timeout=120) for p in pending)
    assert store.get("counter") == b"200"  # 8 writers x 25 increments, none lost
    assert conflicts > 0  # the writers really did collide


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", ".hidden"])
def test_invalid_keys_are_refused(store: Store, key: str) -> None:
    with pytest.raises(ValueError):
        store.put(key, b"x")


def test_writes_and_deletes_in_one_folder_do_not_disturb_each_other(store: Store) -> None:
    import threading

    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for i in range(300):
                store.put(f"busy/in/{i:05d}", b"x")
        except BaseException as exc:
            errors.append(exc)

    def deleter() -> None:
        try:
            for i in range(300):
                store.delete(f"busy/in/{i:05d}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer), threading.Thread(target=deleter)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_put_parts_stores_their_concatenation(store: Store) -> None:
    store.put_parts("big/1", [b"head", memoryview(b"-middle-"), bytearray(b"tail")])
    assert store.get("big/1") == b"head-middle-tail"
    assert bytes(store.get_view("big/1")) == b"head-middle-tail"


def test_writing_to_a_view_leaves_the_stored_object_alone(store: Store) -> None:
    store.put("big/2", b"original")
    view = memoryview(store.get_view("big/2"))
    if not view.readonly:
        view[:3] = b"XYZ"
    assert store.get("big/2") == b"original"


def test_a_local_write_recreates_a_folder_removed_under_it(tmp_path: Path) -> None:
    """A key's folder appears when a write finds it missing (another process may have
    removed a session's folders); a crashed writer's leftover temporary file is skipped."""
    store = LocalStore(tmp_path / "store")
    store.put("data/s1/r1/fn.bin", b"f")
    shutil.rmtree(tmp_path / "store" / "data")
    leftover = tmp_path / "store" / ".tmp" / f"{os.getpid()}.{next(store._temp_numbers) + 1}"
    leftover.write_bytes(b"from a writer that died")
    store.put("data/s1/r1/fn.bin", b"g")
    store.put_if_absent("data/s1/r1/claim/00000000", b"c")
    store.put_parts("data/s1/r1/in/00000000", [b"a", b"b"])
    assert store.get("data/s1/r1/fn.bin") == b"g"
    assert store.get("data/s1/r1/claim/00000000") == b"c"
    assert store.get("data/s1/r1/in/00000000") == b"ab"
    assert leftover.read_bytes() == b"from a writer that died"


def test_a_removed_local_store_stays_removed(tmp_path: Path) -> None:
    """A write that comes after its store was removed (a worker's last heartbeat, as the
    last worker of a killed client removes the scratch store) fails instead of bringing the
    tree back, as does a worker that opens the store late."""
    root = tmp_path / "store"
    store = LocalStore(root)
    store.put("sessions/s1/control.json", b"{}")
    written = store._write_temp(b"late")  # a write under way as the store is removed
    shutil.rmtree(root)
    with pytest.raises(FileNotFoundError):
        store._publish(os.replace, written, store._path("sessions/s1/workers/w0.0.json"))
    assert not root.exists()
    with pytest.raises(StoreError, match="could not write"):
        store.put("sessions/s1/workers/w0.0.json", b"late")
    late = open_store(store.url)  # a worker's
    with pytest.raises(NotFound):
        late.get("sessions/s1/control.json")
    assert not root.exists()


def _ring_after_a_moment(url: str, bell: str) -> None:
    time.sleep(0.2)
    open_store(url).ring(bell)


def test_a_local_bell_wakes_a_waiter_in_another_process(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.put("sessions/s1/session.json", b"{}")  # a bell lives in its session's folder
    bell = "sessions/s1/.work"
    assert store.wait_for_ring(bell, 0) is False  # nobody rang; from now on it listens
    ringer = _context().Process(target=_ring_after_a_moment, args=(store.url, bell))
    ringer.start()
    try:
        assert store.wait_for_ring(bell, 60) is True  # woken by the ring, not the timeout
    finally:
        ringer.join()
    open_store(store.url).ring(bell)  # a ring while nobody waits is kept for the next wait
    assert store.wait_for_ring(bell, 60) is True
    assert store.wait_for_ring(bell, 0) is False  # and counted once
    assert list(store.list("sessions/")) == ["sessions/s1/session.json"]  # a bell is no key


def test_a_local_view_of_a_folder_is_not_found(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.put("data/s1/r1/in/00000000", b"x")
    with pytest.raises(NotFound):
        store.get_view("data/s1/r1/in")


def test_a_bell_of_a_removed_session_does_not_bring_its_folder_back(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    assert store.wait_for_ring("sessions/gone/.work", 0.01) is False
    store.ring("sessions/gone/.work")
    assert not (tmp_path / "store" / "sessions").exists()
