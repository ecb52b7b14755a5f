"""``starburst.Executor`` against the ``concurrent.futures.Executor`` contract.

The calls run on real worker processes. Functions are defined at module level (pickled by
reference; the workers get this process's ``sys.path``) or as lambdas (pickled by value).
Tests that need a call to stay busy use a *gate*: the remote function waits for a file that
the test creates, so nothing depends on how fast this machine is.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import math
import os
import sys
import threading
import time
from concurrent.futures import (
    ALL_COMPLETED,
    FIRST_COMPLETED,
    FIRST_EXCEPTION,
    CancelledError,
    as_completed,
    wait,
)
from pathlib import Path

import pytest
from scripts import run_client

import starburst
from starburst.engine.control import Control
from starburst.serialize import loads

RESULT_TIMEOUT = 60  # seconds: a generous bound so that a bug fails a test instead of hanging


# Remote functions ------------------------------------------------------------------------------


class Oops(Exception):
    """An exception of the test's own type, to check that the type survives the trip."""


def square(x):
    return x * x


def add(a, b=0, *, c=0):
    return a + b + c


def identity(x):
    return x


def echo_kwargs(**kwargs):
    return kwargs


def explode_here(tag):
    raise Oops(f"exploded on {tag}")


def fail_at_three(x):
    if x == 3:
        raise Oops("three")
    if x == 5:
        raise KeyError("five")  # a later failure must not be raised in place of item 3's
    return x * x


def wait_for_path(path, value, limit=30.0):
    """Return ``value`` once ``path`` exists (or after ``limit`` seconds, as a safety net)."""
    deadline = time.monotonic() + limit
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    return value


def make_lock():
    return threading.Lock()


class Blocker:
    """An argument whose pickling blocks until released: holds the dispatcher mid-batch.

    The executor pickles a call's arguments on its dispatching thread; while that thread is
    stuck here, every later ``submit`` stays queued (not yet dispatched), deterministically.
    It unpickles as ``value``.
    """

    def __init__(self, value):
        self.value = value
        self.entered = threading.Event()
        self.release = threading.Event()

    def __reduce__(self):
        self.entered.set()
        self.release.wait(RESULT_TIMEOUT)
        return (int, (self.value,))


# Fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def executor():
    with starburst.Executor(workers=2, progress=False) as ex:
        yield ex


def _new_runs(ex, before):
    """Run ids created since ``before`` (a set of manifest keys)."""
    driver = ex._cluster.driver
    keys = set(driver.store.list(driver.keys.runs_prefix)) - before
    return sorted(driver.keys.run_id_of(key) for key in keys)


def _manifest_keys(ex):
    driver = ex._cluster.driver
    return set(driver.store.list(driver.keys.runs_prefix))


# submit ----------------------------------------------------------------------------------------


def test_is_a_concurrent_futures_executor(executor):
    assert isinstance(executor, concurrent.futures.Executor)
    future = executor.submit(square, 7)
    assert isinstance(future, concurrent.futures.Future)
    assert future.result(timeout=RESULT_TIMEOUT) == 49
    assert future.done() and not future.cancelled()
    assert future.exception() is None


def test_submit_args_and_kwargs(executor):
    futures = [
        executor.submit(add, 1),
        executor.submit(add, 1, 2),
        executor.submit(add, 1, b=5),
        executor.submit(add, 1, 2, c=10),
        executor.submit(lambda x, y=1: x * 100 + y, 4, y=2),  # pickled by value
    ]
    assert [f.result(timeout=RESULT_TIMEOUT) for f in futures] == [1, 3, 6, 13, 402]


def test_submit_accepts_kwargs_named_like_its_own_parameters(executor):
    # submit(fn, /, *args, **kwargs): ``fn`` is positional-only, so fn= goes to the call.
    future = executor.submit(echo_kwargs, fn=1, args=2, kwargs=3)
    assert future.result(timeout=RESULT_TIMEOUT) == {"fn": 1, "args": 2, "kwargs": 3}


def test_done_callback_runs(executor):
    seen = []
    landed = threading.Event()

    def callback(f):
        seen.append(f.result())
        landed.set()

    executor.submit(square, 6).add_done_callback(callback)
    assert landed.wait(RESULT_TIMEOUT)
    assert seen == [36]


def test_submit_from_several_threads(executor):
    def submit_some(base):
        return [(base + i, executor.submit(square, base + i)) for i in range(10)]

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        batches = list(pool.map(submit_some, [0, 100, 200, 300]))
    for batch in batches:
        for x, future in batch:
            assert future.result(timeout=RESULT_TIMEOUT) == x * x


# wait / as_completed ---------------------------------------------------------------------------


def test_wait_first_completed_then_all_completed(executor, tmp_path):
    gate = tmp_path / "open"
    try:
        gated = executor.submit(wait_for_path, str(gate), "late")
        quick = executor.submit(square, 3)
        done, not_done = wait([gated, quick], timeout=RESULT_TIMEOUT, return_when=FIRST_COMPLETED)
        assert quick in done
        assert gated in not_done
        assert not gated.done()
    finally:
        gate.touch()
    done, not_done = wait([gated, quick], timeout=RESULT_TIMEOUT, return_when=ALL_COMPLETED)
    assert not_done == set()
    assert done == {gated, quick}
    assert gated.result() == "late"
    assert quick.result() == 9


def test_wait_first_exception(executor, tmp_path):
    gate = tmp_path / "open"
    try:
        gated = executor.submit(wait_for_path, str(gate), "late")
        failing = executor.submit(explode_here, "x")
        done, not_done = wait([gated, failing], timeout=RESULT_TIMEOUT, return_when=FIRST_EXCEPTION)
        assert failing in done
        assert gated in not_done
    finally:
        gate.touch()
    assert gated.result(timeout=RESULT_TIMEOUT) == "late"


def test_wait_all_completed(executor):
    futures = [executor.submit(square, i) for i in range(6)]
    done, not_done = wait(futures, timeout=RESULT_TIMEOUT)
    assert not_done == set()
    assert done == set(futures)
    assert [f.result() for f in futures] == [i * i for i in range(6)]


def test_as_completed_yields_every_future_once(executor):
    futures = [executor.submit(square, i) for i in range(8)]
    seen = list(as_completed(futures, timeout=RESULT_TIMEOUT))
    assert len(seen) == len(futures)
    assert set(seen) == set(futures)
    assert sorted(f.result() for f in seen) == sorted(i * i for i in range(8))


# Exceptions ------------------------------------------------------------------------------------


def test_exception_keeps_type_remote_traceback_and_note(executor):
    future = executor.submit(explode_here, "marker-4711")
    exc = future.exception(timeout=RESULT_TIMEOUT)
    assert type(exc) is Oops
    assert str(exc) == "exploded on marker-4711"
    with pytest.raises(Oops) as info:
        future.result()
    assert info.value is exc

    cause = exc.__cause__
    assert isinstance(cause, starburst.RemoteTraceback)
    assert "explode_here" in cause.text
    assert "explode_here" in str(cause)

    notes = getattr(exc, "__notes__", [])
    assert any("the call explode_here('marker-4711')" in note for note in notes), notes


def test_exception_does_not_affect_other_futures(executor):
    futures = [executor.submit(explode_here, "a"), executor.submit(square, 5)]
    assert isinstance(futures[0].exception(timeout=RESULT_TIMEOUT), Oops)
    assert futures[1].result(timeout=RESULT_TIMEOUT) == 25


# Serialization ---------------------------------------------------------------------------------


def test_unpicklable_argument_fails_only_its_future(executor):
    good_before = executor.submit(square, 2)
    bad = executor.submit(identity, threading.Lock())
    bad_kwarg = executor.submit(add, 1, b=threading.Lock())
    good_after = [executor.submit(square, i) for i in range(3)]

    for future in (bad, bad_kwarg):
        exc = future.exception(timeout=RESULT_TIMEOUT)
        assert isinstance(exc, starburst.SerializationError), repr(exc)
        with pytest.raises(starburst.SerializationError):
            future.result()
    assert good_before.result(timeout=RESULT_TIMEOUT) == 4
    assert [f.result(timeout=RESULT_TIMEOUT) for f in good_after] == [0, 1, 4]


def test_unpicklable_result_fails_its_future(executor):
    bad = executor.submit(make_lock)
    good = executor.submit(square, 9)
    assert isinstance(bad.exception(timeout=RESULT_TIMEOUT), TypeError)
    assert good.result(timeout=RESULT_TIMEOUT) == 81


# Batching --------------------------------------------------------------------------------------


def test_tight_loop_submits_travel_in_few_runs(executor):
    assert executor.submit(square, 0).result(timeout=RESULT_TIMEOUT) == 0  # workers are up
    before = _manifest_keys(executor)
    futures = [executor.submit(square, i) for i in range(50)]
    assert [f.result(timeout=RESULT_TIMEOUT) for f in futures] == [i * i for i in range(50)]
    runs = _new_runs(executor, before)
    assert 1 <= len(runs) <= 5, f"50 submits made {len(runs)} runs"


# cancel ----------------------------------------------------------------------------------------


def test_cancel_queued_future(executor):
    blocker = Blocker(7)
    first = executor.submit(identity, blocker)
    callbacks = []
    try:
        assert blocker.entered.wait(RESULT_TIMEOUT), "the dispatcher never pickled the call"
        # The dispatcher is stuck pickling ``first``: these stay queued, not dispatched.
        queued = [executor.submit(square, i) for i in range(5)]
        for future in queued:
            future.add_done_callback(callbacks.append)
        assert [f.cancel() for f in queued] == [True] * 5
        # No worker has started ``first`` (it is being sent): it is pending.
        assert not first.running()
    finally:
        blocker.release.set()

    for future in queued:
        assert future.cancelled()
        assert future.done()
        with pytest.raises(CancelledError):
            future.result(timeout=RESULT_TIMEOUT)
        with pytest.raises(CancelledError):
            future.exception(timeout=RESULT_TIMEOUT)
    assert sorted(map(id, callbacks)) == sorted(map(id, queued))
    assert first.result(timeout=RESULT_TIMEOUT) == 7
    # A done future cannot be cancelled.
    assert first.cancel() is False
    assert not first.cancelled()
    # The executor keeps working after cancellations.
    assert executor.submit(square, 12).result(timeout=RESULT_TIMEOUT) == 144


def test_cancel_last_of_a_tight_loop(executor):
    futures = [executor.submit(square, i) for i in range(40)]
    cancelled = {i for i in range(20, 40) if futures[i].cancel()}
    for i, future in enumerate(futures):
        if i in cancelled:
            assert future.cancelled()
            with pytest.raises(CancelledError):
                future.result(timeout=RESULT_TIMEOUT)
        else:
            assert future.result(timeout=RESULT_TIMEOUT) == i * i
            assert not future.cancelled()
            assert future.cancel() is False


# map -------------------------------------------------------------------------------------------


def test_map_ordered_results(executor):
    results = executor.map(square, range(12))
    assert not isinstance(results, list)  # an iterator, as Executor.map returns
    assert list(results) == [i * i for i in range(12)]


def test_map_empty(executor):
    assert list(executor.map(square, [])) == []


def test_map_zips_and_stops_at_shortest(executor):
    assert list(executor.map(add, [1, 2, 3, 4], [10, 20, 30])) == [11, 22, 33]
    assert list(executor.map(add, itertools.count(), iter([5, 5, 5]))) == [5, 6, 7]
    assert list(executor.map(pow, [2, 3, 4], [2, 2, 2])) == [4, 9, 16]


@pytest.mark.parametrize("chunksize", [1, 3, 4, 100])
def test_map_chunksize_is_honoured(executor, chunksize):
    before = _manifest_keys(executor)
    assert list(executor.map(square, range(10), chunksize=chunksize)) == [i * i for i in range(10)]
    runs = _new_runs(executor, before)
    assert len(runs) == 1
    driver = executor._cluster.driver
    outputs = driver.keys.run(runs[0]).outputs
    sizes = [len(loads(driver.store.get(key)).results) for key in driver.store.list(outputs)]
    assert len(sizes) == math.ceil(10 / chunksize)
    assert sizes == [min(chunksize, 10 - k * chunksize) for k in range(len(sizes))]


def test_map_rejects_non_positive_chunksize(executor):
    with pytest.raises(ValueError):
        list(executor.map(square, range(3), chunksize=0))


def test_map_raises_at_the_failing_position(executor):
    results = executor.map(fail_at_three, range(6), chunksize=1)
    assert [next(results) for _ in range(3)] == [0, 1, 4]
    with pytest.raises(Oops) as info:
        next(results)
    assert isinstance(info.value.__cause__, starburst.RemoteTraceback)
    assert "fail_at_three" in info.value.__cause__.text
    assert any("item 3" in note for note in info.value.__notes__), info.value.__notes__


def test_map_timeout(executor, tmp_path):
    gate = tmp_path / "open"
    try:
        results = executor.map(wait_for_path, [str(gate)] * 2, ["a", "b"], timeout=0.3)
        with pytest.raises(TimeoutError):
            next(results)
    finally:
        gate.touch()  # let the workers go


def test_map_timeout_not_reached(executor):
    assert list(executor.map(square, range(4), timeout=RESULT_TIMEOUT)) == [0, 1, 4, 9]


# shutdown --------------------------------------------------------------------------------------


def test_shutdown_wait_waits_for_pending_futures(tmp_path):
    ex = starburst.Executor(workers=2, progress=False)
    gate = tmp_path / "open"
    futures = [ex.submit(wait_for_path, str(gate), i) for i in range(4)]

    def open_once_shutting_down():
        deadline = time.monotonic() + 30
        while not ex._shutdown and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
        gate.touch()  # only now can the calls finish: shutdown must have waited for them

    opener = threading.Thread(target=open_once_shutting_down)
    opener.start()
    try:
        ex.shutdown(wait=True)
    finally:
        opener.join()
    assert all(f.done() for f in futures)
    assert [f.result() for f in futures] == [0, 1, 2, 3]
    with pytest.raises(RuntimeError):
        ex.submit(square, 1)
    with pytest.raises(RuntimeError):
        ex.map(square, [1])
    ex.shutdown()  # a second shutdown is harmless


def test_context_manager_exit_waits():
    with starburst.Executor(workers=2, progress=False) as ex:
        futures = [ex.submit(square, i) for i in range(6)]
    assert all(f.done() for f in futures)
    assert [f.result() for f in futures] == [i * i for i in range(6)]
    with pytest.raises(RuntimeError):
        ex.submit(square, 1)


def test_shutdown_without_wait_still_completes_futures():
    ex = starburst.Executor(workers=2, progress=False)
    futures = [ex.submit(square, i) for i in range(6)]
    ex.shutdown(wait=False)
    with pytest.raises(RuntimeError):
        ex.submit(square, 1)
    _done, not_done = wait(futures, timeout=RESULT_TIMEOUT)
    assert not_done == set()
    assert [f.result() for f in futures] == [i * i for i in range(6)]


def test_shutdown_cancel_futures_cancels_queued():
    ex = starburst.Executor(workers=2, progress=False)
    assert ex.submit(square, 2).result(timeout=RESULT_TIMEOUT) == 4  # the workers are up
    blocker = Blocker(5)
    first = ex.submit(identity, blocker)
    assert blocker.entered.wait(RESULT_TIMEOUT)
    queued = [ex.submit(square, i) for i in range(5)]

    def release_once_cancelled():
        deadline = time.monotonic() + 30
        while not all(f.cancelled() for f in queued) and time.monotonic() < deadline:
            time.sleep(0.01)
        blocker.release.set()

    releaser = threading.Thread(target=release_once_cancelled)
    releaser.start()
    try:
        ex.shutdown(wait=True, cancel_futures=True)
    finally:
        blocker.release.set()
        releaser.join()
    assert all(f.cancelled() for f in queued)
    for future in queued:
        with pytest.raises(CancelledError):
            future.result()
    # No worker had started ``first`` either (it was being sent): it is cancelled too.
    assert first.cancelled()


def test_shutdown_cancel_futures_after_tight_loop():
    ex = starburst.Executor(workers=2, progress=False)
    futures = [ex.submit(square, i) for i in range(30)]
    ex.shutdown(wait=True, cancel_futures=True)
    for i, future in enumerate(futures):
        assert future.done()
        if future.cancelled():
            with pytest.raises(CancelledError):
                future.result()
        else:
            assert future.result() == i * i


def test_workers_see_the_test_module(executor):
    # Module-level functions travel by reference: the worker imports this very module.
    path = executor.submit(lambda: __import__(__name__).__file__).result(timeout=RESULT_TIMEOUT)
    assert Path(path).resolve() == Path(__file__).resolve()


def test_calls_waited_for_one_by_one_leave_only_the_last_run_for_the_workers_to_read():
    # Each call waited for in turn is a run of its own. Workers read every run the control
    # record lists, whenever they look for work: a finished run leaves the record with the
    # next call, instead of piling up until the monitor's next look.
    with starburst.Executor(workers=1, progress=False) as ex:
        for i in range(20):
            assert ex.submit(square, i).result(timeout=RESULT_TIMEOUT) == i * i
        driver = ex._cluster.driver
        listed = Control.load(driver.store, driver.keys).runs
        assert len(listed) <= 1, f"the control record still lists {len(listed)} runs"


# What users of concurrent.futures take for granted (issue 17) --------------------------------


def touch_after(path, seconds):
    time.sleep(seconds)
    Path(path).touch()
    return path


def record_in(folder, x):
    (Path(folder) / str(x)).touch()
    return x


class CrashAtUnpickle:
    """Unpickles by reading address 0: it kills the worker reading it (a segfault)."""

    def __reduce__(self):
        import ctypes

        return (ctypes.string_at, (0,))


class ErrorAtUnpickle:
    """Unpickles by raising an ordinary exception."""

    def __reduce__(self):
        return (_raise_lookup_error, ("cannot build this here",))


def _raise_lookup_error(text):
    raise LookupError(text)


class ExitAtUnpickle:
    """Unpickles by calling ``sys.exit``: as an argument it kills the worker reading it; as a
    result it raises ``SystemExit`` in the client reading it."""

    def __reduce__(self):
        return (sys.exit, (1,))


class ExitAtPickle:
    """Raises ``SystemExit`` when pickled: as a result, on the worker that sends it back."""

    def __reduce__(self):
        sys.exit(1)


def make(cls):
    return cls()


def segfault():
    import ctypes

    ctypes.string_at(0)


_EXIT_SCRIPT = """
import sys, time
from pathlib import Path
import starburst

def touch_after(path, seconds):
    time.sleep(seconds)
    Path(path).touch()

if __name__ == "__main__":
    executor = starburst.Executor(workers=2)
    executor.submit(touch_after, sys.argv[1], 0.5)
    executor.submit(touch_after, sys.argv[2], 0.5)
    if sys.argv[3] == "shutdown":
        executor.shutdown(wait=False)
    print("leaving")
"""


@pytest.mark.parametrize("how", ["exit", "shutdown"])
def test_calls_not_awaited_are_finished_before_the_interpreter_exits(tmp_path, how):
    # The standard executors finish them: the interpreter joins their threads at exit.
    first, second = tmp_path / "first", tmp_path / "second"
    assert run_client(tmp_path, _EXIT_SCRIPT, first, second, how) == "leaving"
    assert first.exists() and second.exists()


_ATEXIT_SCRIPT = """
import atexit
import starburst

@atexit.register
def submit_last():
    try:
        executor.submit(id, None)
    except RuntimeError as exc:
        print(exc)

executor = starburst.Executor(workers=1)
"""


def test_submit_from_an_atexit_hook_raises_runtime_error(tmp_path):
    # (It hung the interpreter.)
    output = run_client(tmp_path, _ATEXIT_SCRIPT)
    assert output == "cannot schedule new futures after interpreter shutdown"


def test_map_not_iterated_runs_every_call_before_shutdown_returns(tmp_path):
    ex = starburst.Executor(workers=2, progress=False)
    ex.map(record_in, [str(tmp_path)] * 30, range(30))
    ex.shutdown(wait=True)
    assert sorted(int(p.name) for p in tmp_path.iterdir()) == list(range(30))


def test_map_iterated_after_shutdown_without_wait_gives_every_result():
    ex = starburst.Executor(workers=2, progress=False)
    results = ex.map(square, range(20))
    ex.shutdown(wait=False)
    assert list(results) == [x * x for x in range(20)]


@pytest.mark.parametrize(
    "killer",
    [
        pytest.param(lambda ex: ex.submit(os._exit, 3), id="os._exit"),
        pytest.param(lambda ex: ex.submit(segfault), id="segfault"),
        pytest.param(lambda ex: ex.submit(identity, CrashAtUnpickle()), id="argument-unpickling"),
    ],
)
def test_a_call_that_kills_its_worker_fails_alone(killer):
    with starburst.Executor(workers=1, progress=False) as ex:
        error = killer(ex).exception(timeout=RESULT_TIMEOUT)
        assert isinstance(error, starburst.WorkerLostError), repr(error)
        assert "the call " in str(error)  # names the call
        # The executor is not broken: later calls work.
        assert [ex.submit(square, x).result(timeout=RESULT_TIMEOUT) for x in range(3)] == [0, 1, 4]


@pytest.mark.parametrize("argument", [ExitAtUnpickle(), ErrorAtUnpickle()], ids=["exit", "error"])
def test_an_argument_that_cannot_be_unpickled_fails_its_call_alone(argument):
    with starburst.Executor(workers=1, progress=False) as ex:
        calls = [ex.submit(square, 1), ex.submit(identity, argument), ex.submit(square, 2)]
        error = calls[1].exception(timeout=RESULT_TIMEOUT)
        assert isinstance(error, starburst.SerializationError), repr(error)
        assert "could not be unpickled on the worker" in str(error)
        assert any("the call identity(" in note for note in error.__notes__)
        # The calls sent with it, in the same chunk, are computed.
        assert [calls[0].result(), calls[2].result()] == [1, 4]


def test_a_result_raising_system_exit_while_pickled_fails_its_call_alone(executor):
    future = executor.submit(make, ExitAtPickle)
    assert isinstance(future.exception(timeout=RESULT_TIMEOUT), SystemExit)
    assert executor.submit(square, 4).result(timeout=RESULT_TIMEOUT) == 16


def test_a_result_raising_system_exit_while_unpickled_fails_its_call_alone(executor):
    # (It killed the thread that resolves futures: no future resolved again.)
    future = executor.submit(make, ExitAtUnpickle)
    error = future.exception(timeout=RESULT_TIMEOUT)
    assert isinstance(error, starburst.SerializationError), repr(error)
    assert "SystemExit" in str(error)
    assert executor.submit(square, 5).result(timeout=RESULT_TIMEOUT) == 25


def _wait_until_running(future):
    deadline = time.monotonic() + RESULT_TIMEOUT
    while not future.running() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert future.running()


def test_a_future_runs_only_once_a_worker_started_it_and_can_be_cancelled_until_then(tmp_path):
    gate = tmp_path / "open"
    with starburst.Executor(workers=1, progress=False) as ex:
        assert ex.submit(square, 1).result(timeout=RESULT_TIMEOUT) == 1  # the worker is up
        busy = ex.submit(wait_for_path, str(gate), "busy")
        _wait_until_running(busy)  # the only worker took it
        queued = ex.submit(touch_after, str(tmp_path / "ran"), 0)
        time.sleep(0.1)  # (it was RUNNING 2 ms after submit)
        assert not queued.running()
        assert queued.cancel()
        gate.touch()
        assert busy.result(timeout=RESULT_TIMEOUT) == "busy"
        assert queued.cancelled()
        with pytest.raises(CancelledError):
            queued.result()
        assert ex.submit(square, 3).result(timeout=RESULT_TIMEOUT) == 9


def test_shutdown_cancel_futures_cancels_calls_waiting_for_a_worker(tmp_path):
    gate = tmp_path / "open"
    ex = starburst.Executor(workers=1, progress=False)
    assert ex.submit(square, 1).result(timeout=RESULT_TIMEOUT) == 1  # the worker is up
    busy = ex.submit(wait_for_path, str(gate), "busy")
    _wait_until_running(busy)
    waiting = [ex.submit(square, x) for x in range(10)]
    time.sleep(0.1)
    opener = threading.Timer(0.5, gate.touch)
    opener.start()
    ex.shutdown(wait=True, cancel_futures=True)
    opener.join()
    assert busy.result() == "busy"
    assert all(f.cancelled() for f in waiting)
