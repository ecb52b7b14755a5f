"""The local backend: workers are ``python -m starburst.worker`` processes on this machine.

Each worker runs in its own process session, so a Ctrl-C in the terminal reaches only the
client, which then stops the workers itself; its output goes to a log file.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .base import Backend, LaunchRequest, WorkerInfo

_STOP_WAIT_SECONDS = 1.5


class LocalBackend(Backend):
    """Workers as local subprocesses."""

    name = "local"

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._started: dict[str, float] = {}
        self._stopped: dict[str, float] = {}
        self._asked_to_stop: set[str] = set()

    def launch(self, request: LaunchRequest, indices: list[int]) -> list[str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
        env.setdefault("PYTHONUNBUFFERED", "1")
        ids = []
        for index in indices:
            worker_id = f"w{index:04d}"
            with open(self.log_path(worker_id), "ab") as log:
                process = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "starburst.worker",
                        "--store",
                        request.store_url,
                        "--session",
                        request.session_id,
                        "--worker-id",
                        worker_id,
                        "--index",
                        str(index),
                        "--processes",
                        str(request.spec.cpu),
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
            self._processes[worker_id] = process
            self._started[worker_id] = time.time()
            ids.append(worker_id)
        return ids

    def log_path(self, worker_id: str) -> Path:
        return self.log_dir / f"{worker_id}.log"

    def describe(self, worker_ids: list[str]) -> list[WorkerInfo]:
        infos = []
        for worker_id in worker_ids:
            process = self._processes[worker_id]
            code = process.poll()
            if code is None:
                infos.append(WorkerInfo(worker_id, "running", started_at=self._started[worker_id]))
                continue
            self._stopped.setdefault(worker_id, time.time())
            infos.append(
                WorkerInfo(
                    worker_id,
                    "stopped",
                    exit_code=code,
                    reason=_describe_exit(code, worker_id in self._asked_to_stop),
                    started_at=self._started[worker_id],
                    stopped_at=self._stopped[worker_id],
                )
            )
        return infos

    def stop(self, worker_ids: list[str]) -> None:
        live = [w for w in worker_ids if self._processes[w].poll() is None]
        self._asked_to_stop.update(live)
        for worker_id in live:
            _signal_group(self._processes[worker_id], signal.SIGTERM)
        deadline = time.monotonic() + _STOP_WAIT_SECONDS
        for worker_id in live:
            process = self._processes[worker_id]
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            _signal_group(process, signal.SIGKILL)  # the worker's children too
            process.wait()

    def log_tail(self, worker_id: str, lines: int = 20) -> str:
        try:
            text = self.log_path(worker_id).read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


def _describe_exit(code: int, asked: bool) -> str:
    if asked:
        return "stopped by the client"
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return "exited" if code == 0 else f"exited with code {code}"
