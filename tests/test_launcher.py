"""The launcher: local workers forked from a fresh interpreter the client starts, not from
the client itself (faults under it are in test_faults.py, whose workers start all three ways)."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest
from proc import alive, launcher_of
from scripts import run_script, start_client

import starburst
from starburst.backends.local.fleet import import_folders
from starburst.backends.local.launcher import Launcher, LauncherFailed, preloadable_modules


def _context(_: int) -> tuple[str | None, str, str, int, int]:
    here = os.environ.get("STARBURST_TEST_VALUE"), os.getcwd(), sys.path[0]
    return *here, sys.getrecursionlimit(), os.getppid()


def test_workers_come_from_the_launcher_with_the_clients_current_context(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STARBURST_LOCAL_START", "launcher")
    assert starburst.map(abs, [-1], workers=1, progress=False) == [1]  # the launcher is up
    launcher = launcher_of(os.getpid())
    assert launcher is not None
    # What the client changes after the launcher started reaches the workers it forks.
    monkeypatch.setenv("STARBURST_TEST_VALUE", "set later")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(4321)
    try:
        results = starburst.map(_context, range(4), workers=2, chunk_size=1, progress=False)
    finally:
        sys.setrecursionlimit(limit)
    assert results == [("set later", str(tmp_path), str(tmp_path), 4321, launcher)] * 4


def test_a_launcher_that_died_is_replaced_and_no_map_fails(
    monkeypatch: pytest.MonkeyPatch, no_stray_workers: None
) -> None:
    monkeypatch.setenv("STARBURST_LOCAL_START", "launcher")
    assert starburst.map(abs, [-1], workers=1, progress=False) == [1]
    first = launcher_of(os.getpid())
    assert first is not None
    os.kill(first, signal.SIGKILL)
    while alive(first):
        time.sleep(0.01)
    monkeypatch.setenv("STARBURST_LOCAL_START", "auto")  # the next map does not wait for one
    results = starburst.map(_context, range(4), workers=2, chunk_size=1, progress=False)
    assert [parent for *_, parent in results] == [os.getpid()] * 4  # forked from the client
    monkeypatch.setenv("STARBURST_LOCAL_START", "launcher")
    results = starburst.map(_context, range(4), workers=2, chunk_size=1, progress=False)
    second = launcher_of(os.getpid())
    assert second not in (None, first)
    assert [parent for *_, parent in results] == [second] * 4


_CLIENT = textwrap.dedent(
    """
    import os, sys
    import numpy  # a third-party package the client has imported: the launcher preloads it
    import starburst

    def preloaded(_):
        return "numpy" in sys.modules, "numpy.random" in sys.modules, os.getppid()

    os.environ["STARBURST_LOCAL_START"] = "launcher"
    for _ in range(3):
        results = starburst.map(preloaded, range(2), workers=2, chunk_size=1, progress=False)
        print(" ".join(":".join(map(str, result)) for result in results), flush=True)
        import numpy.random  # imported after the launcher started: preloaded for later maps
    sys.stdin.readline()  # until the test kills this process
    """
)


def test_the_launcher_preloads_the_clients_packages_and_exits_with_the_client(
    tmp_path: Path,
) -> None:
    client = start_client(tmp_path, _CLIENT)
    try:
        assert client.stdout is not None
        first, _, third = (client.stdout.readline() for _ in range(3))
        launcher = launcher_of(client.pid)
        assert launcher is not None
        assert first.split() == [f"True:False:{launcher}"] * 2
        # (the launcher imports it once it has forked the next map's first worker)
        assert third.split() == [f"True:True:{launcher}"] * 2
    finally:
        client.kill()  # no exit handler runs: the launcher sees its request pipe close
        client.wait()
    deadline = time.monotonic() + 10
    while alive(launcher) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(launcher), "the launcher outlived its client"


def test_what_the_launcher_preloads_is_the_clients_installed_packages() -> None:
    import numpy  # noqa: F401

    preloaded = preloadable_modules()
    assert "numpy" in preloaded and "starburst.worker.main" in preloaded
    assert "json" not in preloaded  # the standard library imports fast enough
    assert "proc" not in preloaded  # the user's own modules: workers import them as they are


def test_a_module_that_prints_or_reads_as_the_launcher_imports_it_does_not_garble_its_answers(
    tmp_path: Path,
) -> None:
    (tmp_path / "noisy.py").write_text("import sys\nprint('hello')\nsys.stdin.read(1)\n")
    folders = os.pathsep.join([str(tmp_path), *import_folders()])
    launcher = Launcher({**os.environ, "PYTHONPATH": folders}, ["noisy"])
    try:
        assert launcher.ready(wait=60)
        with pytest.raises(ChildProcessError):
            launcher.reap(1)  # not the launcher's child: it says so, in a reply that parses
        assert not launcher.broken
    finally:
        launcher.close()


def test_a_removed_working_folder_or_a_path_object_in_sys_path_does_not_stop_a_map(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STARBURST_LOCAL_START", "launcher")
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    monkeypatch.setattr(sys, "path", [*sys.path, tmp_path])  # not a str: skipped, as imports do
    results = starburst.map(_context, range(2), workers=2, chunk_size=1, progress=False)
    assert [parent for *_, parent in results] == [launcher_of(os.getpid())] * 2


def test_the_launcher_imports_what_it_preloads_in_the_clients_current_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = tmp_path / "seen"
    (tmp_path / "reads_env.py").write_text(
        f"import os\nopen({str(seen)!r}, 'w').write(os.environ.get('STARBURST_TEST_VALUE', '-'))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("STARBURST_TEST_VALUE", "the client's")
    started_with = {k: v for k, v in os.environ.items() if k != "STARBURST_TEST_VALUE"}
    started_with["PYTHONPATH"] = os.pathsep.join(import_folders())
    launcher = Launcher(started_with, ["reads_env"])
    try:
        assert launcher.ready(wait=60)
        assert seen.read_text() == "the client's"
    finally:
        launcher.close()


def test_a_request_that_fails_leaves_the_launcher_answering(tmp_path: Path) -> None:
    launcher = Launcher({**os.environ, "PYTHONPATH": os.pathsep.join(import_folders())}, [])
    try:
        assert launcher.ready(wait=60)
        args = {"store": "-", "session": "-", "worker-id": "w", "index": 0, "processes": 1}
        with pytest.raises(LauncherFailed, match="FileNotFoundError"):
            launcher.fork(args, tmp_path / "no such folder" / "w.log")
        with pytest.raises(ChildProcessError):
            launcher.reap(1)
        assert not launcher.broken
    finally:
        launcher.close()


_ORPHANING_CLIENT = textwrap.dedent(
    """
    import os, signal, subprocess, sys
    import starburst
    from starburst.backends.local import launcher

    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # as command-line tools often have it
    os.environ["STARBURST_LOCAL_START"] = "launcher"
    assert starburst.map(abs, [-1], workers=1, progress=False) == [1]
    first = launcher._shared
    os.kill(first.pid, signal.SIGKILL)
    os.waitpid(first.pid, 0)
    os.environ["STARBURST_LOCAL_START"] = "auto"  # forks from here: the dead one is noticed
    assert starburst.map(abs, [-2, -3], workers=2, progress=False) == [2, 3]
    read, write = os.pipe()  # the client's own forks keep their files
    pid = os.fork()
    if pid == 0:
        os.write(write, b"ok")
        os._exit(0)
    os.close(write)
    assert os.read(read, 2) == b"ok"
    os.environ["STARBURST_LOCAL_START"] = "launcher"  # a new launcher
    assert starburst.map(abs, [-4], workers=1, progress=False) == [4]
    held = os.dup(launcher._shared._socket.fileno())  # another process keeps its socket open
    holder = subprocess.Popen(["sleep", "60"], pass_fds=[held], start_new_session=True)
    print(launcher._shared.pid, holder.pid, flush=True)
    sys.stdin.readline()  # until the test kills this process
    """
)


def test_a_dead_launcher_harms_nothing_and_an_orphaned_one_exits(tmp_path: Path) -> None:
    client = start_client(tmp_path, _ORPHANING_CLIENT)
    try:
        assert client.stdout is not None
        pids = client.stdout.readline().split()
        assert len(pids) == 2, f"the client failed (exit {client.poll()})"
        second, holder = map(int, pids)
        assert alive(second)
    finally:
        client.kill()
        client.wait()
    try:
        deadline = time.monotonic() + 10  # it checks for its parent every second
        while alive(second) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(second), "a launcher whose socket another process holds outlived us"
    finally:
        os.kill(holder, signal.SIGKILL)


def _parent_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getppid()


def test_work_known_to_be_short_is_forked_from_the_client_and_long_work_from_the_launcher(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STARBURST_LOCAL_START", "launcher")
    assert starburst.map(abs, [-1], workers=1, progress=False) == [1]  # the launcher is up
    launcher = launcher_of(os.getpid())
    monkeypatch.setenv("STARBURST_LOCAL_START", "auto")
    for seconds, parent in ((0.0, os.getpid()), (0.04, launcher)):  # 0.0 s or 0.4 s a worker
        items = [seconds] * 20
        starburst.map(_parent_after, items, workers=2, progress=False)  # its item times
        assert set(starburst.map(_parent_after, items, workers=2, progress=False)) == {parent}


def test_a_worker_forked_from_the_client_never_closes_a_cluster_the_client_left_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Cluster left to the cycle collector is copied into each worker forked from the
    client. When the worker's collector frees that copy, its finalizer must do nothing: it
    used to wait forever for the parent's monitor thread (abandoned joblib generators hung
    so), and would have stopped the parent's workers and deleted its data."""
    monkeypatch.setenv("STARBURST_LOCAL_START", "fork")
    done = run_script(
        tmp_path,
        """
        import gc
        import starburst

        gc.disable()  # the cluster below stays uncollected until the workers are forked
        left = starburst.Cluster(workers=1, progress=False).start()
        left.itself = left  # only the cycle collector can free it
        del left

        def collect(x):
            gc.collect()  # in a forked worker: frees the copy of the cluster left behind
            return 2 * x

        print(starburst.map(collect, range(6), workers=2, progress=False))
        """,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[0,", "2,", "4,", "6,", "8,", "10]"]
