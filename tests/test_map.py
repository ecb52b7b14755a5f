"""End-to-end maps on the local backend: real worker processes, real store."""

from __future__ import annotations

import json
import os
import random
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from proc import alive
from scripts import run_client

import starburst
from starburst import PartialResults, RemoteTraceback
from starburst.backends.local.fleet import ABANDONED_AFTER_SECONDS

pytestmark = pytest.mark.usefixtures("no_stray_workers")


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The folder one-off sessions keep their scratch stores in, for this test only."""
    folder = tmp_path / "scratch"
    folder.mkdir()
    monkeypatch.setenv("STARBURST_SCRATCH_DIR", str(folder))
    return folder


def square(x: int) -> int:
    return x * x


def fail_on_seven(x: int) -> int:
    if x == 7:
        raise KeyError(f"no such key: {x}")
    return x


def draws(_: int) -> tuple[float, float]:
    return random.random(), float(np.random.random())


def test_results_come_back_in_input_order() -> None:
    assert starburst.map(square, range(1_000), workers=2) == [x * x for x in range(1_000)]


def test_several_iterables_zip_like_the_builtin_map() -> None:
    assert starburst.map(pow, [2, 3, 4], [5, 2, 1], workers=2) == [32, 9, 4]


def test_a_generator_streams_in() -> None:
    assert starburst.map(square, (x for x in range(300)), workers=2) == [x * x for x in range(300)]


def test_closures_and_lambdas_are_shipped_by_value() -> None:
    offset = 1000
    lookup = {i: i * 3 for i in range(50)}

    def shifted(x: int) -> int:
        return lookup[x] + offset

    assert starburst.map(shifted, range(50), workers=2) == [i * 3 + 1000 for i in range(50)]
    assert starburst.map(lambda x: -x, range(5), workers=2) == [0, -1, -2, -3, -4]


def test_a_large_captured_object_is_uploaded_once() -> None:
    big = np.arange(1_000_000, dtype=np.float64)  # 8 MB captured by the closure

    def pick(i: int) -> float:
        return float(big[i])

    with starburst.Cluster(workers=2, progress=False) as cluster:
        assert cluster.map(pick, range(200), chunk_size=10) == [float(i) for i in range(200)]
        store = cluster.driver.store
        fn_keys = [k for k in store.list(cluster.driver.keys.data_prefix) if k.endswith("fn.bin")]
        assert len(fn_keys) == 1 and len(store.get(fn_keys[0])) > 8_000_000
        # 20 chunk uploads and one function upload: the array travelled once
        assert store.requests["put"] >= 21
        assert 8_000_000 < store.bytes_written < 8_500_000


def test_workers_started_as_fresh_interpreters_give_the_same_results(monkeypatch) -> None:
    monkeypatch.setenv("STARBURST_LOCAL_START", "spawn")
    with starburst.Cluster(workers=2, progress=False) as cluster:
        assert cluster.map(square, range(100)) == [x * x for x in range(100)]
        assert cluster.map(lambda x: x + 1, range(3)) == [1, 2, 3]


def test_starmap_and_imap_variants() -> None:
    assert starburst.starmap(pow, [(2, 3), (3, 2)], workers=2) == [8, 9]
    assert list(starburst.imap(square, range(100), workers=2)) == [x * x for x in range(100)]
    unordered = list(starburst.imap_unordered(square, range(100), workers=2))
    assert sorted(unordered) == [x * x for x in range(100)]


def test_seed_makes_random_draws_independent_of_workers_and_chunking() -> None:
    first = starburst.map(draws, range(40), workers=1, chunk_size=40, seed=7)
    second = starburst.map(draws, range(40), workers=2, chunk_size=3, seed=7)
    other_seed = starburst.map(draws, range(40), workers=2, seed=8)
    assert first == second
    assert first != other_seed
    assert len(set(first)) == 40  # each item gets its own stream


def test_errors_raise_keeps_type_traceback_index_and_completed_results() -> None:
    with pytest.raises(KeyError) as caught:
        starburst.map(fail_on_seven, range(20), workers=2, chunk_size=1)
    exc = caught.value
    assert isinstance(exc.__cause__, RemoteTraceback)
    assert "fail_on_seven" in str(exc.__cause__) and "no such key: 7" in str(exc.__cause__)
    assert any("item 7" in note and "input: 7" in note for note in exc.__notes__)
    partial = exc.starburst_results
    assert isinstance(partial, PartialResults)
    assert 7 in partial.failed
    assert all(partial.done[i] == i for i in partial.done)


def test_errors_return_puts_exceptions_in_place() -> None:
    results = starburst.map(fail_on_seven, range(10), workers=2, errors="return")
    assert results[:7] == list(range(7)) and results[8:] == [8, 9]
    assert isinstance(results[7], KeyError)


@pytest.mark.parametrize("chunk_size", [1, 4])
def test_imap_raises_at_the_failed_position_after_earlier_results(chunk_size: int) -> None:
    seen = []
    with pytest.raises(KeyError):
        for value in starburst.imap(fail_on_seven, range(20), workers=2, chunk_size=chunk_size):
            seen.append(value)
    assert seen == list(range(7))


def test_user_exceptions_are_not_retried_unless_asked(tmp_path) -> None:
    marker = tmp_path / "attempts"

    def flaky(x: int) -> int:
        with open(marker, "a") as handle:
            handle.write("x")
        if len(marker.read_text()) < 3:
            raise ConnectionError("try again")
        return x

    with pytest.raises(ConnectionError):
        starburst.map(flaky, [1], workers=1)
    assert marker.read_text() == "x"
    marker.unlink()
    assert starburst.map(flaky, [1], workers=1, retries=3, retry_exceptions=(ConnectionError,)) == [
        1
    ]
    assert marker.read_text() == "xxx"


def test_an_empty_input_returns_an_empty_list_without_starting_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STARBURST_SCRATCH_DIR", str(tmp_path))
    monkeypatch.setenv("STARBURST_LOCAL_START", "fork")  # a worker starts as a fork of this process
    forks = _count_forks()
    assert starburst.map(square, []) == []
    assert starburst.map(square, iter(())) == []
    assert list(starburst.imap(square, [])) == []
    assert forks == [] and list(tmp_path.iterdir()) == []  # no worker, no session's store
    assert starburst.map(square, [3]) == [9]
    assert forks != []  # (how a worker would have started)


_fork_counters: list[list[int]] = []
os.register_at_fork(before=lambda: [counter.append(1) for counter in _fork_counters])


def _count_forks() -> list[int]:
    """A list that grows by one at each fork this process makes from now on."""
    counter: list[int] = []
    _fork_counters.append(counter)
    return counter


def test_a_timeout_stops_the_call_and_keeps_what_finished() -> None:
    import time

    def slow(x: int) -> int:
        if x >= 2:
            time.sleep(30)
        return x

    with pytest.raises(TimeoutError) as caught:
        starburst.map(slow, range(4), workers=2, chunk_size=1, timeout=1.5)
    assert isinstance(caught.value, starburst.RunTimeoutError)
    assert caught.value.starburst_results.done == {0: 0, 1: 1}


def test_a_cluster_keeps_its_workers_between_maps() -> None:
    with starburst.Cluster(workers=2, progress=False) as cluster:
        assert cluster.map(square, range(10)) == [x * x for x in range(10)]
        workers_after_first = set(cluster.driver.workers)
        assert cluster.map(square, range(10, 20)) == [x * x for x in range(10, 20)]
        assert set(cluster.driver.workers) == workers_after_first  # no new worker started
        assert cluster.submit(square, 12).result(timeout=30) == 144


def nap(x: int) -> int:
    time.sleep(0.2)
    return x


def test_a_client_waiting_on_slow_items_lists_the_store_when_rung_not_every_few_ms() -> None:
    with starburst.Cluster(workers=2, progress=False) as cluster:
        cluster.map(square, range(4))  # workers up; the client has heard their rings
        store = cluster.driver.store
        before = store.requests["list"]
        assert cluster.map(nap, range(8), chunk_size=1) == list(range(8))  # about 0.8 s
        listings = store.requests["list"] - before
    # One listing per ring (8 outputs) and a fallback listing now and then; listing every
    # 5-20 ms while waiting, as the client did, made over 50.
    assert listings <= 25


def test_results_that_cannot_be_pickled_fail_only_their_item() -> None:
    def make(x: int):
        return threading.Lock() if x == 1 else x

    results = starburst.map(make, range(3), workers=1, errors="return")
    assert results[0] == 0 and results[2] == 2
    assert isinstance(results[1], TypeError) and "cannot be sent back" in str(results[1])


def test_a_function_the_workers_cannot_import_fails_clearly(tmp_path, monkeypatch) -> None:
    module = tmp_path / "only_here.py"
    module.write_text("def f(x):\n    return x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import only_here

    monkeypatch.setenv("STARBURST_LOCAL_START", "spawn")  # fresh interpreters, not forks
    module.unlink()  # the workers will not find it
    with pytest.raises(starburst.SerializationError, match="could not load the function"):
        starburst.map(only_here.f, range(3), workers=1)


def test_a_worker_runs_one_process_per_cpu() -> None:
    def whoami(x: int) -> int:
        import os
        import time

        time.sleep(0.05)
        return os.getpid()

    with starburst.Cluster(workers=1, cpu=2, progress=False) as cluster:
        pids = cluster.map(whoami, range(40), chunk_size=1)
        assert len(cluster.driver.workers) == 1
    assert len(set(pids)) == 2


def test_progress_shows_the_backend_and_how_to_burst(capsys) -> None:
    assert starburst.map(square, range(30), workers=2, progress=True) == [x * x for x in range(30)]
    shown = capsys.readouterr().err
    assert "2 workers x 1 cpu on the local backend" in shown
    assert "starburst setup" in shown and "backend='fargate'" in shown
    assert "30/30" in shown  # the bar ends complete


def test_progress_is_silent_when_not_a_terminal(capsys) -> None:
    starburst.map(square, range(30), workers=2)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_results_that_plain_pickle_cannot_carry_still_come_back(
    start: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lambdas and classes made inside a function travel back too (by value)."""
    monkeypatch.setenv("STARBURST_LOCAL_START", start)

    def make(x: int) -> tuple[object, object]:
        class Point:
            def __init__(self, x: int) -> None:
                self.x = x

        return (lambda y: x + y), Point(x)

    results = starburst.map(make, [1, 2], workers=1, progress=False)
    assert [adder(10) for adder, _ in results] == [11, 12]
    assert [point.x for _, point in results] == [1, 2]


def test_a_dead_clients_scratch_folder_is_swept_by_the_next_map(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client killed mid-run leaves its store (in /dev/shm: memory); the next one frees it."""
    long_ago = time.time() - 2 * ABANDONED_AFTER_SECONDS

    def scratch(name: str, beat: float) -> Path:
        control = tmp_path / name / "sessions" / "sb-x" / "control.json"
        control.parent.mkdir(parents=True)
        control.write_text("{}")
        os.utime(control, (beat, beat))
        os.utime(tmp_path / name, (long_ago, long_ago))
        return tmp_path / name

    dead = scratch("starburst-dead", beat=long_ago)
    alive = scratch("starburst-alive", beat=time.time())  # an old session still beating
    unrelated = tmp_path / "someone-else"
    unrelated.mkdir()
    os.utime(unrelated, (long_ago, long_ago))
    monkeypatch.setenv("STARBURST_SCRATCH_DIR", str(tmp_path))

    assert starburst.map(square, range(4), workers=1, progress=False) == [0, 1, 4, 9]
    assert not dead.exists()
    assert alive.exists() and unrelated.exists()


def test_a_second_map_of_a_fast_function_uses_fewer_larger_chunks() -> None:
    def cube(x: int) -> int:  # a function no other test has run (times are per function)
        return x**3

    expected = [x**3 for x in range(5_000)]
    with starburst.Cluster(workers=2, progress=False) as cluster:
        assert cluster.map(cube, range(5_000)) == expected
        assert cluster.map(cube, range(5_000)) == expected
        first, second = (manifest["n_chunks"] for manifest in _stored_manifests(cluster))
    assert second < first / 2  # sized by the item time the first run showed


def _stored_manifests(cluster: starburst.Cluster) -> list[dict[str, object]]:
    """The cluster's run manifests as stored, oldest first (the driver forgets finished
    runs, the store keeps them until the session ends)."""
    store, keys = cluster.driver.store, cluster.driver.keys
    return [json.loads(store.get(key)) for key in store.list(keys.runs_prefix)]


def test_a_script_that_ends_right_after_a_map_leaves_no_worker_and_no_files(
    tmp_path: Path, scratch: Path
) -> None:
    source = """
        import os
        import starburst

        def where(x):
            return os.getpid()

        print(sorted(set(starburst.map(where, range(200), workers=2, chunk_size=10))))  # JSON
    """
    pids = json.loads(run_client(tmp_path, source))
    assert len(pids) >= 1 and os.getpid() not in pids
    assert not any(alive(pid) for pid in pids)
    assert list(scratch.iterdir()) == []  # the scratch store went before the script ended


def test_a_local_map_does_not_load_the_aws_libraries(tmp_path: Path) -> None:
    source = """
        import sys
        import starburst

        assert starburst.map(abs, [-1, 2]) == [1, 2]
        print(sorted(m for m in ("boto3", "botocore", "urllib3") if m in sys.modules))
    """
    assert run_client(tmp_path, source) == "[]"  # ~0.1 s and 15 MB less for every local user


def _items_then_failure(good: int):
    yield from range(good)
    raise ValueError(f"the input broke after {good} items")


@pytest.mark.parametrize(
    ("good", "chunk_size"),
    [(0, None), (3, None), (20_000, None), (0, 1), (1, 1), (50, 10)],
    ids=["at-once", "in-the-look-ahead", "while-streaming", "first-chunk", "second-chunk", "later"],
)
def test_an_input_that_fails_raises_its_own_error(good: int, chunk_size: int | None) -> None:
    with pytest.raises(ValueError, match=f"the input broke after {good} items"):
        starburst.map(square, _items_then_failure(good), workers=2, chunk_size=chunk_size)


def test_a_cluster_goes_on_after_a_call_whose_input_failed() -> None:
    with starburst.Cluster(workers=2, progress=False) as cluster:
        for chunk_size in (1, None):
            with pytest.raises(ValueError, match="the input broke"):
                cluster.map(square, _items_then_failure(0), chunk_size=chunk_size)
            assert cluster.map(square, range(100)) == [x * x for x in range(100)]


def _empty_soon(folder: Path, seconds: float = 10.0) -> bool:
    """Whether ``folder`` is empty, or becomes so within ``seconds`` (cleanup runs behind)."""
    deadline = time.monotonic() + seconds
    while any(folder.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not any(folder.iterdir())


def test_a_call_returns_only_once_its_run_is_sealed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Else the upload thread could still write (and recreate files) after the call closed
    its session and the background cleanup removed the scratch folder."""
    from starburst.engine.run import Run

    seal = Run._update_manifest

    def slow_seal(run: Run, **changes: object) -> None:  # the fault: a seal that takes long
        if changes.get("state") == "sealed":
            time.sleep(0.5)
        seal(run, **changes)

    monkeypatch.setattr(Run, "_update_manifest", slow_seal)
    with starburst.Cluster(workers=2, progress=False) as cluster:
        assert cluster.map(square, range(50)) == [x * x for x in range(50)]
        assert [manifest["state"] for manifest in _stored_manifests(cluster)] == ["sealed"]


def test_many_quick_maps_leave_no_scratch_folder_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STARBURST_SCRATCH_DIR", str(tmp_path))
    for _ in range(100):
        assert starburst.map(square, range(50)) == [x * x for x in range(50)]
    assert _empty_soon(tmp_path), sorted(p.name for p in tmp_path.iterdir())


@pytest.mark.parametrize("how", ["finalizer-at-exit", "forked-child"])
def test_a_session_closed_as_the_process_ends_leaves_no_files(
    tmp_path: Path, scratch: Path, how: str
) -> None:
    sources = {
        # A finalizer registered before starburst's exit handler: the cluster left open is
        # closed by it after that handler ran.
        "finalizer-at-exit": """
            import tempfile
            keep = tempfile.TemporaryDirectory()
            import starburst

            cluster = starburst.Cluster(workers=2, progress=False).start()
            print(cluster.map(abs, [-1, -2]))
        """,
        # A child forked from a process that imported starburst runs a map and exits.
        "forked-child": """
            import os, sys
            import starburst

            pid = os.fork()
            if pid == 0:
                starburst.map(abs, [-1, -2], workers=2)
                sys.exit(0)
            _, status = os.waitpid(pid, 0)
            print(os.waitstatus_to_exitcode(status))
        """,
    }
    run_client(tmp_path, sources[how])
    assert _empty_soon(scratch, seconds=2.0), sorted(p.name for p in scratch.iterdir())


def test_an_item_that_cannot_be_sent_later_in_a_stream_is_named() -> None:
    items = [*range(200), threading.Lock(), *range(50)]
    with pytest.raises(starburst.SerializationError, match=r"cannot send item 200 \(input: <"):
        starburst.map(square, iter(items), workers=2)


def test_more_local_workers_than_the_machine_can_run_are_capped_and_said(capsys) -> None:
    from starburst.backends.local import local_process_limit

    limit = local_process_limit()
    with starburst.Cluster(workers=10**6) as cluster:
        assert cluster.spec.slots == limit
        assert cluster.map(square, range(5)) == [0, 1, 4, 9, 16]
    said = capsys.readouterr().err
    assert "asks for 1,000,000 local processes" in said and f"starting {limit} x cpu=1" in said
    assert starburst.Cluster(cpu=10**4).spec.slots == limit


def test_a_store_that_refuses_writes_is_named_with_the_fix(tmp_path: Path) -> None:
    # The scratch folder lets no file grow past 64 KiB (ulimit -f): writing a 1 MB chunk fails.
    out = run_client(
        tmp_path,
        """
        import os, resource, signal
        import starburst

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, 1 << 16))
        try:
            starburst.map(len, [b"x" * 1_000_000] * 4, workers=1)
        except starburst.StarburstError as exc:
            print(type(exc).__name__, exc)
        """,
    )
    assert out.startswith("StoreError could not write data/")
    assert "to the store at file://" in out and "ulimit -f" in out


def test_a_closed_cluster_refuses_calls_at_once() -> None:
    with starburst.Cluster(workers=1) as cluster:
        assert cluster.map(square, range(3)) == [0, 1, 4]
    for call in (
        lambda: cluster.map(square, range(3)),
        lambda: list(cluster.imap(square, range(3))),
        lambda: cluster.submit(square, 3),
    ):
        with pytest.raises((starburst.StarburstError, RuntimeError), match=r"closed|shutdown"):
            call()
    assert cluster.report is not None and cluster.report.workers == 1


def test_a_client_stopped_by_sigterm_stops_its_workers_and_removes_its_scratch_store(
    tmp_path: Path, scratch: Path
) -> None:
    import signal
    import subprocess
    import sys
    import textwrap

    started = tmp_path / "started"
    script = tmp_path / "client.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, time
            import starburst

            def slow(x):
                with open({str(started)!r}, "a") as marker:
                    marker.write(f"{{os.getpid()}}\\n")
                time.sleep(0.2)
                return x

            starburst.map(slow, range(1000), workers=2)
            """
        )
    )
    client = subprocess.Popen([sys.executable, str(script)])
    deadline = time.monotonic() + 60
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    worker = int(started.read_text().split()[0])  # a worker is running an item
    assert list(scratch.iterdir())
    client.send_signal(signal.SIGTERM)
    assert client.wait(timeout=30) == 128 + signal.SIGTERM
    deadline = time.monotonic() + 5
    while alive(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(worker)
    assert list(scratch.iterdir()) == []  # not left in memory for a later sweep


def test_forks_of_a_client_keep_sigterms_default_action() -> None:
    # A pool's terminate() SIGTERMs its workers: one stuck on a lock another thread held at
    # the fork cannot run a Python handler, and it hung the pool (test_store_contract's
    # races, after the maps here had installed the client's handler).
    import multiprocessing
    import signal

    assert starburst.map(abs, [-1, -2], workers=1) == [1, 2]
    context = multiprocessing.get_context("fork")
    with context.Pool(1) as pool:
        child = pool.apply(signal.getsignal, (signal.SIGTERM,))
    assert child == signal.SIG_DFL
