"""A worker checks, before it runs anything, that it can load what the client pickled."""

from __future__ import annotations

import platform
import subprocess
import sys
import time
from pathlib import Path

import cloudpickle

from starburst.engine.control import Control
from starburst.engine.session_record import SessionRecord, Timings
from starburst.store import LocalStore


def _start_worker(store: LocalStore, versions: dict[str, str]) -> subprocess.CompletedProcess[str]:
    record = SessionRecord(
        "sb-versions", "local", 1, 1.0, None, Timings.for_store(store, attached=False),
        versions=versions, deadline=1.0,  # long past: a worker that starts stops at once
    )  # fmt: skip
    store.put(record.keys.session, record.encode())
    store.put(record.keys.control, Control(heartbeat=time.time(), session=record).encode())
    return subprocess.run(
        [sys.executable, "-m", "starburst.worker", "--store", store.url, "--session",
         record.session_id, "--processes", "1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_a_worker_with_another_python_and_cloudpickle_refuses_to_start(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    done = _start_worker(store, {"python": "3.99.1", "cloudpickle": "0.0.1", "starburst": "0"})
    assert done.returncode == 2
    mine = f"Python {platform.python_version()} and cloudpickle {cloudpickle.__version__}"
    assert f"this worker has {mine}" in done.stderr
    assert "client of session sb-versions has Python 3.99.1 and cloudpickle 0.0.1" in done.stderr


def test_a_different_patch_release_of_python_is_accepted(tmp_path: Path) -> None:
    major, minor, _ = platform.python_version_tuple()
    store = LocalStore(tmp_path / "store")
    client = {"python": f"{major}.{minor}.999", "cloudpickle": cloudpickle.__version__}
    done = _start_worker(store, {**client, "starburst": "0"})
    assert "cannot start" not in done.stderr
    assert done.returncode == 0
    assert "starting 1 processes" in done.stderr  # it ran its loop (and stopped: no work)
