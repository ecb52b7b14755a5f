"""The local backend: worker processes on this machine.

Each worker runs the same code as ``python -m starburst.worker``. On Linux it is forked: from
the launcher (``launcher.py``), a fresh interpreter this client starts at its first launch,
once that is ready, and from the client until then; forking skips interpreter start-up.
Elsewhere, with ``STARBURST_LOCAL_START=spawn``, or when a supervisor launches it, it is
started as ``python -m starburst.worker``. Either way it runs in its own process session, so
a Ctrl-C in the terminal reaches only the client, which then stops the workers itself, and a
detached session's workers outlive the client. A worker's output goes to its log file, and
its process id to a small record beside it (``procs/<worker>.json``), so that any process
(an attached client, a supervisor) can find and stop a session's workers.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...settings import resolve
from ...store import NotFound
from ...store.local import PRIVATE_FILE_MODE, make_private_folder, replace_private_file
from ...threads import BareThread
from ..base import Fleet, LaunchRequest, WorkerInfo
from .forked import become_worker
from .launcher import Launcher, LauncherFailed, shared_launcher

if TYPE_CHECKING:
    from ...engine.keys import SessionKeys
    from ...store.local import LocalStore

_STOP_WAIT_SECONDS = 1.5


class LocalFleet(Fleet):
    """Workers as local processes; ``session_dir`` holds their logs and process records."""

    name = "local"
    #: In a long quiet run the client checks its workers twice a second, not twenty times
    #: (each check reads ``/proc`` for every worker); an exit is still seen within 0.5 s.
    quiet_check_interval = 0.5

    def __init__(self, session_dir: Path, fork: bool | None = None) -> None:
        self.log_dir = session_dir / "logs"
        self.proc_dir = session_dir / "procs"
        make_private_folder(self.log_dir)
        make_private_folder(self.proc_dir)
        self.start_method = _start_method() if fork is None else "auto" if fork else "spawn"
        self._processes: dict[str, _Process] = {}
        self._started: dict[str, float] = {}
        self._stopped: dict[str, float] = {}
        self._asked_to_stop: set[str] = set()

    def launch(self, request: LaunchRequest, stripes: list[int]) -> list[str]:
        ids: list[str] = []
        try:
            for index in stripes:
                worker_id = self._reserve_id()
                args: dict[str, str | int] = {
                    "store": request.store_url, "session": request.session_id,
                    "worker-id": worker_id, "index": index, "processes": request.spec.processes,
                }  # fmt: skip
                log = self.log_path(worker_id)
                process = self._start(args, log, request.busy_seconds)
                self._processes[worker_id] = process
                self._started[worker_id] = time.time()
                ids.append(worker_id)
        finally:  # once all have started (the next fork need not wait), or one failed to
            for worker_id in ids:
                path, process = self.proc_dir / f"{worker_id}.json", self._processes[worker_id]
                _write_record(path, process.pid, self._started[worker_id])
        return ids

    def _start(self, args: dict[str, str | int], log: Path, busy: float | None) -> _Process:
        """Start one worker, the way ``start_method`` says (see ``_start_method``); ``auto``
        forks work known to be short (``busy`` seconds a worker) from the client, which starts
        it a few milliseconds sooner than the launcher does."""
        if self.start_method == "spawn":
            return _spawn_worker(args, log)
        short = busy is not None and busy < _LAUNCHER_PAYS_OFF_SECONDS
        if self.start_method == "launcher" or (self.start_method == "auto" and not short):
            wait = _LAUNCHER_START_SECONDS if self.start_method == "launcher" else 0.0
            for _ in range(2):  # a launcher found dead is replaced by the next call's
                launcher = shared_launcher(_worker_environment)
                if launcher is None or not launcher.ready(wait):
                    break
                with contextlib.suppress(LauncherFailed):
                    return _Launched(launcher.fork(args, log), launcher)
        return _fork_worker(args, log)

    def _reserve_id(self) -> str:
        """A worker id no launcher of this session has used (``w0000``, ``w0001``, ...)."""
        number = len(self._processes)
        while True:
            worker_id = f"w{number:04d}"
            try:  # an empty record reserves the id; the pid follows once the process exists
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
                os.close(os.open(self.proc_dir / f"{worker_id}.json", flags, PRIVATE_FILE_MODE))
                return worker_id
            except FileExistsError:
                number += 1

    def log_path(self, worker_id: str) -> Path:
        return self.log_dir / f"{worker_id}.log"

    def describe(self, worker_ids: list[str]) -> list[WorkerInfo]:
        return [self._describe_one(worker_id) for worker_id in worker_ids]

    def _describe_one(self, worker_id: str) -> WorkerInfo:
        process = self._processes.get(worker_id) or self._adopt(worker_id)
        started = self._started.get(worker_id)
        code = process.poll() if process is not None else _GONE
        if code is None:
            return WorkerInfo(worker_id, "running", started_at=started)
        self._stopped.setdefault(worker_id, time.time())
        return WorkerInfo(
            worker_id,
            "stopped",
            exit_code=None if code == _GONE else code,
            reason=_describe_exit(code, worker_id in self._asked_to_stop),
            started_at=started,
            stopped_at=self._stopped[worker_id],
        )

    def find(self, session_id: str) -> list[WorkerInfo]:
        return self.describe(sorted(p.stem for p in self.proc_dir.glob("w*.json")))

    def _adopt(self, worker_id: str) -> _Process | None:
        """A worker another process launched, from its record; None once it is gone."""
        record = _read_record(self.proc_dir / f"{worker_id}.json")
        if record is None:
            return None
        self._started[worker_id] = record["started"]
        process = _Adopted(record["pid"], record.get("ticks"))
        self._processes[worker_id] = process
        return process

    def stop(self, worker_ids: list[str], grace: bool = True) -> None:
        _wait_gone(self._signal(worker_ids, signal.SIGTERM if grace else signal.SIGKILL))

    def stop_then(self, worker_ids: list[str], grace: bool, after: Callable[[], None]) -> None:
        """Without ``grace``, kill the workers now, and leave waiting for them to go, then
        ``after``, to a background thread: a call need not wait for the kernel to tear its
        workers down. The interpreter finishes that thread before it exits."""
        if grace:
            super().stop_then(worker_ids, grace, after)
            return
        killed = self._signal(worker_ids, signal.SIGKILL)

        def finish() -> None:
            _wait_gone(killed)
            after()

        _in_background(finish)

    def _signal(self, worker_ids: list[str], signum: int) -> list[_Process]:
        """Send ``signum`` to the live workers among ``worker_ids``; return their processes."""
        processes = {w: self._processes.get(w) or self._adopt(w) for w in worker_ids}
        live = [p for p in processes.values() if p is not None and p.poll() is None]
        self._asked_to_stop.update(w for w, p in processes.items() if p in live)
        for process in live:
            _signal_group(process, signum)
        return live

    def log_tail(self, worker_id: str, lines: int = 20) -> str:
        try:
            text = self.log_path(worker_id).read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


#: Background jobs not finished yet: each sets its event when done.
_unfinished: set[threading.Event] = set()
#: How long an exiting interpreter waits for a background job.
_EXIT_WAIT_SECONDS = 10.0
#: Set once the interpreter is exiting: a job started then runs at once, in the caller.
_exiting = False


def _in_background(job: Callable[[], None]) -> None:
    """Run ``job`` on a thread of its own, which the interpreter waits for before exiting."""
    if _exiting:  # (a finalizer closing a session at exit, after the wait below)
        job()
        return
    done = threading.Event()
    _unfinished.add(done)

    def run() -> None:
        try:
            job()
        finally:
            _unfinished.discard(done)
            done.set()

    BareThread(run)


@atexit.register
def _finish_background_jobs() -> None:
    global _exiting
    _exiting = True
    for done in list(_unfinished):
        done.wait(_EXIT_WAIT_SECONDS)


if hasattr(os, "register_at_fork"):  # a forked child has none of its parent's threads:
    os.register_at_fork(after_in_child=_unfinished.clear)  # it waits for its own jobs only


def _wait_gone(processes: list[_Process]) -> None:
    """Wait without polling for signalled workers to exit; kill what has not exited when the
    grace ends, and any process the workers started themselves."""
    killer = threading.Timer(_STOP_WAIT_SECONDS, _kill_groups, (processes,))
    killer.start()
    for process in processes:
        process.wait()
    killer.cancel()
    _kill_groups(processes)


def _kill_groups(processes: list[_Process]) -> None:
    for process in processes:
        _signal_group(process, signal.SIGKILL)


def _signal_group(process: _Process, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


#: The exit code of a worker whose process is gone and was not ours to wait for.
_GONE = -(10**6)


def _describe_exit(code: int, asked: bool) -> str:
    if asked:
        return "stopped by the client"
    if code == _GONE:
        return "exited"
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return "exited" if code == 0 else f"exited with code {code}"


#: A RAM-backed folder holds a session's data when it has at least this much room.
_MIN_FREE_TMPFS_BYTES = 8 * 1024**3


#: The name a local session's scratch folder starts with.
SCRATCH_PREFIX = "starburst-"
#: A scratch folder whose client has not written for this long is abandoned.
ABANDONED_AFTER_SECONDS = 3600.0


def sweep_abandoned(parent: Path, now: float | None = None) -> list[Path]:
    """Remove the scratch folders of sessions whose client died without cleaning up.

    A folder counts as abandoned when it is older than ``ABANDONED_AFTER_SECONDS`` and no
    client has written its control record for as long (a live client beats every second;
    its workers left long ago, ten seconds after it went silent). In ``/dev/shm`` such a
    folder would otherwise hold memory until the machine restarts. Returns what it removed.
    """
    now = time.time() if now is None else now
    removed: list[Path] = []
    try:
        candidates = [e for e in os.scandir(parent) if e.name.startswith(SCRATCH_PREFIX)]
    except OSError:
        return removed
    for entry in candidates:
        try:
            if not entry.is_dir(follow_symlinks=False):
                continue
            newest = entry.stat(follow_symlinks=False).st_mtime
            if now - newest <= ABANDONED_AFTER_SECONDS:
                continue  # young: whatever its state, leave it
            for control in Path(entry.path).glob("sessions/*/control.json"):
                newest = max(newest, control.stat().st_mtime)
        except OSError:
            continue  # being removed by someone else
        if now - newest > ABANDONED_AFTER_SECONDS:
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
    return removed


def remove_scratch_if_last(store: LocalStore, keys: SessionKeys) -> bool:
    """Remove a session's scratch store if the calling worker process, which has written
    its heartbeat as exited, is the last of the session's: every other worker process
    (heartbeat records, and the worker records of ``procs/``) has exited or is gone.

    Each leaving process writes its exit before it looks, so the last one to look sees
    every other's. Only a scratch folder (one session's, named ``starburst-<client pid>-*``)
    is removed, and only once its client is gone: one that is merely silent (suspended with
    Ctrl-Z, say) finds its store when it resumes. A write that comes later fails rather than
    re-create it (``LocalStore``). Returns whether it removed the store.
    """
    root = store.root
    client = root.name[len(SCRATCH_PREFIX) :].split("-", 1)[0]
    if not root.name.startswith(SCRATCH_PREFIX) or not client.isdigit():
        return False
    if _alive(int(client), None):
        return False
    me, exited = os.getpid(), set()
    for key in store.list(keys.workers_prefix):
        try:
            record = json.loads(store.get(key))
        except (NotFound, ValueError):
            continue
        pid = record.get("pid")
        if record.get("state") == "exited":
            exited.add(pid)
        elif pid != me and isinstance(pid, int) and _alive(pid, None):
            return False
    for path in (root / keys.prefix / "procs").glob("*.json"):
        record = _read_record(path)
        if record is None or record["pid"] in exited | {me}:
            continue
        if _alive(record["pid"], record.get("ticks")):
            return False  # (a worker still starting: it has no heartbeat yet)
    removing = root.with_name(f"{root.name}.removing-{me}")
    try:  # at once and by one process only (two last workers may race): then remove it
        os.rename(root, removing)
    except FileNotFoundError:
        return False  # (another did)
    shutil.rmtree(removing, ignore_errors=True)
    return True


def scratch_dir() -> str | None:
    """Where a session's local store goes: ``STARBURST_SCRATCH_DIR``, else ``/dev/shm`` when
    it is a roomy RAM-backed folder (the data is short-lived), else the system's temp folder.
    """
    chosen = resolve("scratch_dir")
    if chosen is not None:
        return str(chosen)
    shm = "/dev/shm"
    try:
        usage = shutil.disk_usage(shm)
    except OSError:
        return None
    return shm if usage.free >= _MIN_FREE_TMPFS_BYTES and os.access(shm, os.W_OK) else None


#: Below this much known work per worker, ``auto`` forks workers from the client: the
#: launcher's faster items (about 10%) would not make up for its few milliseconds more to start.
_LAUNCHER_PAYS_OFF_SECONDS = 0.25
#: How long ``STARBURST_LOCAL_START=launcher`` waits for the launcher to be ready.
_LAUNCHER_START_SECONDS = 60.0


def _start_method() -> str:
    """How this client starts local workers: ``STARBURST_LOCAL_START``, else ``auto`` on Linux
    (forked from the launcher once it is ready, from the client until then and for work known
    to be short), else ``spawn``.

    ``fork`` forks every worker from the client, ``launcher`` waits for the launcher, and
    ``spawn`` starts fresh interpreters (``python -m starburst.worker``).
    """
    default = "auto" if sys.platform == "linux" else "spawn"
    return str(resolve("local_start", default=default))


class _Process:
    """A worker process: ``poll`` and ``wait`` as ``subprocess.Popen`` has them."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self) -> int:
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode


class _Adopted(_Process):
    """A worker process another process started: watched through ``/proc``, not waited for."""

    def __init__(self, pid: int, ticks: int | None) -> None:
        super().__init__(pid)
        self.ticks = ticks

    def poll(self) -> int | None:
        if self.returncode is None and not _alive(self.pid, self.ticks):
            self.returncode = _GONE
        return self.returncode

    def wait(self) -> int:
        while self.poll() is None:
            time.sleep(0.05)
        assert self.returncode is not None
        return self.returncode


class _Launched(_Adopted):
    """A worker the launcher forked: its exit code comes from the launcher, which keeps it
    (as a zombie) until asked."""

    def __init__(self, pid: int, launcher: Launcher) -> None:
        super().__init__(pid, _start_ticks(pid))
        self.launcher = launcher
        self._lock = threading.Lock()  # the monitor and a stop may poll at once: reap once

    def poll(self) -> int | None:
        with self._lock:
            # Without /proc (no start ticks) a zombie looks alive: ask the launcher each time.
            if self.returncode is None and (self.ticks is None or not _alive(self.pid, self.ticks)):
                try:
                    self.returncode = self.launcher.reap(self.pid)
                except (ChildProcessError, LauncherFailed):  # the launcher left before it
                    self.returncode = _GONE
            return self.returncode


def _proc_stat(pid: int) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name (``FileNotFoundError`` once
    the process is gone, another ``OSError`` where there is no ``/proc``)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _start_ticks(pid: int) -> int | None:
    """When a process started (clock ticks since boot), to tell it from a later one with the
    same pid; None where ``/proc`` is missing."""
    try:
        return int(_proc_stat(pid)[19])
    except OSError:
        return None


def _alive(pid: int, ticks: int | None) -> bool:
    """Whether the process is still the one recorded, and not a zombie."""
    try:
        fields = _proc_stat(pid)
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return fields[0] not in ("Z", "X") and (ticks is None or int(fields[19]) == ticks)


def _write_record(path: Path, pid: int, started: float) -> None:
    record = {"pid": pid, "ticks": _start_ticks(pid), "started": started}
    replace_private_file(path, json.dumps(record))


def _read_record(path: Path) -> dict[str, Any] | None:
    """A worker's process record; None when it is missing or still being written."""
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


def import_folders() -> list[str]:
    """The folders this process imports from, for a local worker to import from too."""
    return [path for path in sys.path if isinstance(path, str) and path and os.path.isdir(path)]


def _worker_environment() -> dict[str, str]:
    """The environment of a fresh interpreter that runs workers: this one's, importing from
    the same folders."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(import_folders())
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _spawn_worker(args: dict[str, str | int], log_path: Path) -> _Process:
    """Start ``python -m starburst.worker`` in a new process session, its output to its log.

    ``posix_spawn`` rather than ``subprocess``: a worker of a detached session outlives the
    object that started it, which ``subprocess.Popen`` would warn about.
    """
    env = _worker_environment()
    argv = [
        sys.executable, "-m", "starburst.worker",
        *(part for name, value in args.items() for part in (f"--{name}", str(value))),
    ]  # fmt: skip
    files = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (
            os.POSIX_SPAWN_OPEN,
            1,
            str(log_path),
            os.O_WRONLY | os.O_CREAT | os.O_APPEND,
            PRIVATE_FILE_MODE,
        ),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    return _Process(os.posix_spawn(sys.executable, argv, env, file_actions=files, setsid=True))


def _fork_worker(args: dict[str, str | int], log_path: Path) -> _Process:
    """Fork a worker from this process (see ``forked.become_worker``)."""
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, PRIVATE_FILE_MODE)
    with warnings.catch_warnings():  # Python 3.12+ warns about forking with threads running;
        warnings.simplefilter("ignore", DeprecationWarning)  # the child resets what it uses
        pid = os.fork()
    if pid == 0:
        become_worker(args, log_fd)
    os.close(log_fd)
    return _Process(pid)
