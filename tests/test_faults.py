"""Injected faults: a worker killed mid-chunk, Ctrl-C, workers that cannot start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
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


def test_a_worker_killed_mid_chunk_loses_no_result(tmp_path: Path, start_method: str) -> None:
    pid_file = tmp_path / "victim"
    runs = tmp_path / "runs"
    runs.mkdir()

    def work(x: int) -> int:
        (runs / f"{x}-{os.getpid()}-{time.monotonic_ns()}").touch()
        if x == 5 and not pid_file.exists():
            pid_file.write_text(str(os.getpid()))
            time.sleep(120)  # killed here, mid-chunk
        time.sleep(0.02)  # work remains for a while after the kill: a replacement is due
        return x * x

    def killer() -> None:
        os.kill(_wait_for_pid(pid_file), signal.SIGKILL)

    thread = threading.Thread(target=killer)
    thread.start()
    with starburst.Cluster(workers=2, progress=False) as cluster:
        results = cluster.map(work, range(40), chunk_size=2)
        launched = len(cluster.driver.workers)
    thread.join()
    assert results == [x * x for x in range(40)]  # every result, once, in order
    assert launched == 3  # the dead worker was replaced
    attempts_at_five = [p for p in runs.iterdir() if p.name.startswith("5-")]
    assert len(attempts_at_five) == 2  # item 5 ran again after the kill


def test_workers_that_keep_dying_give_a_clear_error_with_their_log(
    tmp_path: Path, start_method: str
) -> None:
    def die(x: int) -> int:
        print("about to crash on", x, flush=True)
        os._exit(3)

    with pytest.raises(starburst.WorkerStartError) as caught:
        starburst.map(die, range(4), workers=1, timeout=120)
    message = str(caught.value)
    assert "exited with code 3" in message
    assert "about to crash on" in message  # the tail of the worker's own log


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


def test_ctrl_c_stops_the_run_and_leaves_no_worker_behind(
    tmp_path: Path, start_method: str
) -> None:
    script = tmp_path / "client.py"
    script.write_text(_CTRL_C_SCRIPT)
    pids = tmp_path / "pids"
    pids.mkdir()
    client = subprocess.Popen(
        [sys.executable, str(script), str(pids)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 60
    while len(list(pids.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
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

    def slow(x):
        (pids / str(os.getpid())).touch()
        time.sleep(300)

    starburst.map(slow, range(4), workers=2, chunk_size=1, progress=False)
    """
)


@pytest.mark.parametrize("start", ["launcher", "fork"])
def test_workers_stop_themselves_when_the_client_vanishes(tmp_path: Path, start: str) -> None:
    script = tmp_path / "client.py"
    script.write_text(_VANISHING_CLIENT)
    pids = tmp_path / "pids"
    pids.mkdir()
    scratch = tmp_path / "scratch"  # the killed client cannot remove its store: keep it here
    scratch.mkdir()
    environment = {
        **os.environ, "STARBURST_SCRATCH_DIR": str(scratch), "STARBURST_LOCAL_START": start,
    }  # fmt: skip
    client = subprocess.Popen([sys.executable, str(script), str(pids)], env=environment)
    deadline = time.monotonic() + 60
    while len(list(pids.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    worker_pids = [int(p.name) for p in pids.iterdir()]
    assert len(worker_pids) == 2, "the workers never started"
    client.kill()  # no cleanup runs in the client
    client.wait()
    assert any(alive(pid) for pid in worker_pids)  # orphaned, still working
    deadline = time.monotonic() + 90
    while any(alive(pid) for pid in worker_pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(alive(pid) for pid in worker_pids), "workers outlived their client"
