"""A third backend, as small as a backend can be, for the backend contract test: workers
are plain subprocesses on this machine, sharing a local-folder store.

It is what a new backend writes: a ``Backend`` (traits, ``place``, ``reopen``) and its
``Fleet`` (``launch``, ``describe``, ``find``, ``stop``, ``log_tail``). Its workers run
``python -m tiny_backend``, which registers it before running ``python -m starburst.worker``'s
``main``: a worker looks its session's backend up by name (a backend from an installed
package is found through the ``starburst.backends`` entry points instead).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starburst.backends import Backend, Fleet, LaunchRequest, Placement, WorkerInfo, register
from starburst.settings import resolve
from starburst.store import LocalStore, Store

if TYPE_CHECKING:
    from starburst.options import WorkerSpec


class TinyFleet(Fleet):
    """One session's workers: a process each, its pid and log in ``folder``."""

    name = "tiny"

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._stopped: dict[str, float] = {}

    def launch(self, request: LaunchRequest, stripes: list[int]) -> list[str]:
        ids = []
        for index in stripes:
            worker_id = f"t{index:03d}-{time.time_ns() % 10**9:09d}"
            argv = [sys.executable, "-m", "tiny_backend", "--store", request.store_url,
                    "--session", request.session_id, "--worker-id", worker_id,
                    "--index", str(index), "--processes", str(request.spec.processes)]  # fmt: skip
            with open(self.folder / f"{worker_id}.log", "wb") as log:
                env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
                process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                           start_new_session=True)  # fmt: skip
            (self.folder / f"{worker_id}.pid").write_text(f"{process.pid} {time.time()}")
            self._processes[worker_id] = process
            ids.append(worker_id)
        return ids

    def describe(self, worker_ids: list[str]) -> list[WorkerInfo]:
        return [self._describe(worker_id) for worker_id in worker_ids]

    def _describe(self, worker_id: str) -> WorkerInfo:
        pid, started = (self.folder / f"{worker_id}.pid").read_text().split()
        process = self._processes.get(worker_id)
        code = process.poll() if process is not None else None
        if code is None and (process is not None or _alive(int(pid))):
            return WorkerInfo(worker_id, "running", started_at=float(started))
        stopped = self._stopped.setdefault(worker_id, time.time())
        reason = "exited" if code is None else f"exited with code {code}"
        return WorkerInfo(worker_id, "stopped", exit_code=code, reason=reason,
                          started_at=float(started), stopped_at=stopped)  # fmt: skip

    def find(self, session_id: str) -> list[WorkerInfo]:
        return self.describe(sorted(path.stem for path in self.folder.glob("*.pid")))

    def stop(self, worker_ids: list[str], grace: bool = True) -> None:
        live = [w for w in worker_ids if self._describe(w).state != "stopped"]
        pids = [int((self.folder / f"{w}.pid").read_text().split()[0]) for w in live]
        for pid in pids:
            _signal(pid, signal.SIGTERM if grace else signal.SIGKILL)
        deadline = time.monotonic() + 5.0
        while any(self._describe(w).state != "stopped" for w in live):
            if time.monotonic() > deadline:
                for pid in pids:
                    _signal(pid, signal.SIGKILL)
            time.sleep(0.05)

    def log_tail(self, worker_id: str, lines: int = 20) -> str:
        path = self.folder / f"{worker_id}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class TinyBackend(Backend):
    """Workers as subprocesses of this machine; free."""

    name = "tiny"
    remote = False
    show_up_seconds = 10.0

    def default_workers(self) -> int:
        return 2

    def place(self, spec: WorkerSpec, session_id: str, detached: bool) -> Placement:
        return self.reopen(session_id, self.session_stores()[0], {})

    def reopen(self, session_id: str, store: Store, launch: dict[str, Any]) -> Placement:
        assert isinstance(store, LocalStore)
        folders = [store.root / "sessions" / session_id, store.root / "data" / session_id]

        def discard() -> None:
            for folder in folders:
                shutil.rmtree(folder, ignore_errors=True)

        return Placement(store, TinyFleet(folders[0] / "tiny"), discard)

    def session_stores(self) -> list[Store]:
        return [LocalStore((resolve("data_dir") or Path(tempfile.gettempdir())) / "tiny-store")]


def _alive(pid: int) -> bool:
    try:  # (a zombie counts as gone: its parent has not reaped it yet)
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signum)


register(TinyBackend(), replace=True)

if __name__ == "__main__":
    from starburst.backends import backend_named
    from starburst.worker.main import main

    raise SystemExit(main(backend_named))
