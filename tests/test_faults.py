"""Injected faults: a worker killed mid-chunk, Ctrl-C, workers that cannot start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from proc import alive

import starburst

pytestmark = pytest.mark.usefixtures("no_stray_workers")


@pytest.fixture(params=["launcher", "fork", "spawn"])
def start_method(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every fault, with workers forked from the launcher, forked from the client, and started
    as fresh interpreters."""
    monkeypatch.setenv("STARBURST_LOCAL_START", request.param)
    return request.param


def _wait_for_pid(path: Path, limit: float = 60.0) -> int:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            return int(path.read_text())
        except (FileNotFoundError, ValueError):
            time.sleep(0.01)
    raise AssertionError(f"{path} never got a pid")


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGSTOP], ids=["killed", "hung"])
def test_a_worker_killed_or_hung_mid_chunk_loses_no_result_and_is_replaced(
    tmp_path: Path, start_method: str, signum: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STARBURST_LEASE", "3")  # a worker silent for 3 s counts as hung
    pid_file = tmp_path / "victim"
    runs = tmp_path / "runs"
    runs.mkdir()

    def work(x: int) -> int:
        (runs / f"{x}-{os.getpid()}-{time.monotonic_ns()}").touch()
        if x == 5 and not pid_file.exists():
            pid_file.write_text(str(os.getpid()))
            time.sleep(120)  # killed, or frozen (SIGSTOP: alive, heartbeats stop), here
        time.sleep(0.1)  # work remains for a while after the fault (one worker needs about
        return x * x  # 6 s, twice the 3 s lease): a replacement is due before it ends

    def fault() -> None:
        os.kill(_wait_for_pid(pid_file), signum)

    thread = threading.Thread(target=fault)
    thread.start()
    with starburst.Cluster(workers=2, progress=False) as cluster:
        results = cluster.map(work, range(60), chunk_size=2, timeout=100)
        launched = len(cluster.driver.workers)
        victim = int(pid_file.read_text())
        deadline = time.monotonic() + 10  # (the kernel may take a moment)
        while alive(victim) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not alive(victim), "the worker was left running"
    thread.join()
    assert results == [x * x for x in range(60)]  # every result, once, in order
    assert launched == 3  # the worker was replaced
    attempts_at_five = [p for p in runs.iterdir() if p.name.startswith("5-")]
    assert len(attempts_at_five) == 2  # item 5 ran again after the fault


def test_workers_that_keep_dying_give_a_clear_error_with_their_log(
    tmp_path: Path, start_method: str
) -> None:
    def die(x: int) -> int:
        print("about to crash on", x, flush=True)
        os._exit(3)

    with pytest.raises(starburst.WorkerLostError) as caught:
        starburst.map(die, range(4), workers=1, retries=0, timeout=120)
    message = str(caught.value)
    assert "item 0 (input: 0)" in message and "exit code 3" in message
    assert "about to crash on 0" in message  # the tail of the worker's own log
    assert "session sb-" in message


_CTRL_C_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    import starburst

    pids = Path(sys.argv[1])

    def slow(x):
        (pids / str(os.getpid())).touch()
        time.sleep(300)
        return x

    try:
        starburst.map(slow, range(8), workers=2, chunk_size=1, progress=False)
    except KeyboardInterrupt as exc:
        print("interrupted; kept", len(exc.starburst_results.done), flush=True)
        raise SystemExit(130)
    """
)


def _client_once_files(
    tmp_path: Path, source: str, folder: str, count: int
) -> tuple[subprocess.Popen[str], Path]:
    """Start the client script ``source`` with a new folder as its argument, and wait (a
    minute at most) until its workers have put ``count`` files there."""
    script = tmp_path / "client.py"
    script.write_text(source)
    files = tmp_path / folder
    files.mkdir()
    client = subprocess.Popen(
        [sys.executable, str(script), str(files)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 60
    while len(list(files.iterdir())) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return client, files


def test_ctrl_c_stops_the_run_and_leaves_no_worker_behind(
    tmp_path: Path, start_method: str
) -> None:
    client, pids = _client_once_files(tmp_path, _CTRL_C_SCRIPT, "pids", 2)
    worker_pids = [int(p.name) for p in pids.iterdir()]
    assert len(worker_pids) == 2, "the workers never started"
    client.send_signal(signal.SIGINT)
    output, _ = client.communicate(timeout=60)
    assert client.returncode == 130, output
    assert "interrupted; kept 0" in output
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in worker_pids) and time.monotonic() < deadline:
        time.sleep(0.05)  # orphaned zombies are reaped by init
    assert not any(alive(pid) for pid in worker_pids)


def test_an_exception_in_the_caller_stops_the_workers(start_method: str) -> None:
    with pytest.raises(RuntimeError, match="caller gave up"), starburst.Cluster(workers=2) as c:
        iterator = c.imap(time.sleep, [0.01] * 4 + [60] * 4)
        next(iterator)
        raise RuntimeError("caller gave up")


_VANISHING_CLIENT = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    import starburst

    pids = Path(sys.argv[1])

    def slow(x, seconds=float(sys.argv[2])):
        (pids / str(os.getpid())).touch()
        time.sleep(seconds)
        return x

    assert starburst.map(slow, range(8), workers=2, chunk_size=1, progress=False) == [*range(8)]
    print("done")
    """
)


def _client_with_two_workers(
    tmp_path: Path, start: str, seconds_per_item: float
) -> tuple[subprocess.Popen[str], list[int], Path]:
    """A client script mapping over two workers (items of ``seconds_per_item``), once both
    work; its worker pids; the folder its scratch store is in."""
    script = tmp_path / "client.py"
    script.write_text(_VANISHING_CLIENT)
    pids = tmp_path / "pids"
    pids.mkdir()
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    environment = {
        **os.environ, "STARBURST_SCRATCH_DIR": str(scratch), "STARBURST_LOCAL_START": start,
    }  # fmt: skip
    client = subprocess.Popen(
        [sys.executable, str(script), str(pids), str(seconds_per_item)],
        env=environment, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while len(list(pids.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    worker_pids = [int(p.name) for p in pids.iterdir()]
    assert len(worker_pids) == 2, "the workers never started"
    return client, worker_pids, scratch


def _wait_gone(pids: list[int], limit: float = 90.0) -> None:
    deadline = time.monotonic() + limit
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(alive(pid) for pid in pids), "workers outlived their client's silence"


@pytest.mark.parametrize("start", ["launcher", "fork"])
def test_workers_of_a_killed_client_stop_and_remove_its_scratch_store(
    tmp_path: Path, start: str
) -> None:
    client, worker_pids, scratch = _client_with_two_workers(tmp_path, start, 300)
    client.kill()  # no cleanup runs in the client
    client.wait()
    assert any(alive(pid) for pid in worker_pids)  # orphaned, still working
    _wait_gone(worker_pids)
    deadline = time.monotonic() + 10  # the last worker removed the scratch store as it left
    while list(scratch.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list(scratch.iterdir()) == [], "the killed client's scratch store was left"


def test_a_suspended_client_finds_its_scratch_store_when_it_resumes(tmp_path: Path) -> None:
    client, worker_pids, scratch = _client_with_two_workers(tmp_path, "launcher", 1.0)
    os.kill(client.pid, signal.SIGSTOP)  # Ctrl-Z: silent, but not gone
    try:
        _wait_gone(worker_pids)  # they leave after 10 s of silence...
        assert list(scratch.iterdir()) != []  # ...and leave the store to its client
    finally:
        os.kill(client.pid, signal.SIGCONT)
    output, _ = client.communicate(timeout=120)
    assert client.returncode == 0 and output.strip() == "done"
    assert list(scratch.iterdir()) == []  # (the client removed it as it finished)


def _exit_3() -> None:
    os._exit(3)


def _segfault() -> None:
    import ctypes

    ctypes.string_at(0)


@pytest.mark.parametrize(("crash", "cause"), [(_exit_3, "exit code 3"), (_segfault, "SIGSEGV")])
def test_an_item_that_kills_its_worker_fails_alone(
    start_method: str, crash: Callable[[], None], cause: str
) -> None:
    def square_but_13(x: int) -> int:
        if x == 13:
            crash()
        return x * x

    results = starburst.map(square_but_13, range(20), workers=2, errors="return", timeout=120)
    failed = [i for i, result in enumerate(results) if isinstance(result, BaseException)]
    assert failed == [13], results  # the culprit alone: its chunk's other items are computed
    assert isinstance(results[13], starburst.WorkerLostError)
    message = str(results[13])
    assert "item 13 (input: 13)" in message and cause in message, message
    assert "session sb-" in message  # the one-off map's session
    assert results[:13] + results[14:] == [x * x for x in range(20) if x != 13]


def test_an_item_that_kills_its_worker_is_the_one_raised(start_method: str) -> None:
    def square_but_13(x: int) -> int:
        if x == 13:
            os._exit(3)
        return x * x

    with pytest.raises(starburst.WorkerLostError, match=r"item 13 \(input: 13\)") as caught:
        starburst.map(square_but_13, range(20), workers=2, timeout=120)
    assert "exit code 3" in str(caught.value)
    kept = caught.value.starburst_results.done  # type: ignore[attr-defined]
    assert all(kept[x] == x * x for x in kept) and 13 not in kept


def _finished_items(folder: Path) -> set[int]:
    return {int(path.name) for path in folder.iterdir()}


def test_a_timeout_keeps_every_finished_item(tmp_path: Path, start_method: str) -> None:
    """The items that finished in chunks still running when the call timed out are kept: the
    workers write what they finished as they go, and when they are stopped."""

    def slow(x: int) -> int:
        time.sleep(0.2)
        (tmp_path / str(x)).touch()  # finished (a worker stopped now loses this one only)
        return x

    with pytest.raises(starburst.RunTimeoutError) as caught:
        starburst.map(slow, range(200), workers=2, timeout=4, progress=False)
    finished = _finished_items(tmp_path)
    kept = caught.value.starburst_results.done  # type: ignore[attr-defined]
    assert len(finished) >= 10  # the workers had the time (the chunks in hand were bigger)
    assert set(kept) <= finished and len(kept) >= len(finished) - 2  # the 2 items in hand
    assert all(kept[x] == x for x in kept)


_CTRL_C_KEEPS_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import starburst

    done = Path(sys.argv[1])

    def slow(x):
        time.sleep(0.2)
        (done / str(x)).touch()
        return x

    try:
        starburst.map(slow, range(200), workers=2, progress=False)
    except KeyboardInterrupt as exc:
        print("kept", *sorted(exc.starburst_results.done), flush=True)
        raise SystemExit(130)
    """
)


def test_ctrl_c_keeps_every_finished_item(tmp_path: Path, start_method: str) -> None:
    client, done = _client_once_files(tmp_path, _CTRL_C_KEEPS_SCRIPT, "done", 16)
    client.send_signal(signal.SIGINT)
    output, _ = client.communicate(timeout=60)
    assert client.returncode == 130, output
    kept = {int(x) for x in output.split("kept", 1)[1].split()}
    finished = _finished_items(done)
    assert len(finished) >= 16
    assert kept <= finished and len(kept) >= len(finished) - 2, output


def test_results_of_slow_items_arrive_as_they_finish(tmp_path: Path, start_method: str) -> None:
    """A function never seen before, with slow items: its results do not wait for the end of
    the large chunks of the guided schedule (a part of a chunk's output is written as items
    finish)."""

    def slow(x: int) -> int:
        time.sleep(0.3)
        (tmp_path / str(x)).touch()
        return x

    lags = []
    with starburst.Cluster(workers=2, progress=False) as cluster:
        for received, _ in enumerate(cluster.imap_unordered(slow, range(60)), 1):
            lags.append(len(_finished_items(tmp_path)) - received)
    # Items finished but not received yet: about the items of one part per worker (the
    # whole of a 15-item chunk when outputs were written only at the end of a chunk).
    assert max(lags) < 12, lags


def test_workers_that_die_after_completing_items_are_not_start_failures(start_method: str) -> None:
    """Each worker process dies at its fourth item, having written its first two (a part of
    its chunk): workers that completed items are not start failures, so the map completes
    rather than failing with "workers stopped without completing any work"."""
    calls: list[int] = []  # each worker process has its own copy

    def slow_square_then_die(x: int) -> int:
        calls.append(x)
        if len(calls) > 3:
            os._exit(3)
        time.sleep(0.3)  # two items fill the time between two parts (0.5 s)
        return x * x

    results = starburst.map(slow_square_then_die, range(20), workers=2, chunk_size=10)
    assert results == [x * x for x in range(20)]
