"""The launcher: a fresh interpreter that forks local workers on the client's behalf.

A worker forked straight from the client starts fast, but one forked from a fresh
interpreter ran pure-Python items in 8-14% less time in our measurements
(``bench/item_speed.py``), and the first is a copy of a process with threads running. The
launcher gives both: one fresh interpreter per client, started in the background at the
first local launch, which imports the worker and the installed packages the client has
imported, then forks each later worker on request. Until it is ready, workers are forked
from the client.

The client and the launcher speak JSON lines over a socket pair, one reply per request:

- ``{"op": "preload", "modules": [...], <context>}`` -> ``{"ready": true}`` once imported;
- ``{"op": "fork", "args": {...}, "log": path, "modules": [...], <context>}`` ->
  ``{"pid": N}``; after replying, the launcher imports the modules the client has imported
  since its last request, so that later workers find them loaded;
- ``{"op": "reap", "pid": N}`` -> ``{"code": exit code, or null while it runs}``, or
  ``{"gone": true}`` for a pid it does not know; a worker stays a zombie until reaped, so
  its exit code waits for the client;
- a request that fails gets ``{"error": "..."}``, and the launcher goes on.

``<context>`` is the client's current environment, working folder, ``sys.path`` and
recursion limit: the launcher takes them before it imports or forks, so that its imports and
its workers see what the client's own would. It runs with the client's interpreter flags
(``-O``, ``-X ...``). It exits when the client's end of the socket closes, and, in case a
fork of the client keeps that end open, when it finds its parent process gone (it checks
every second).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import select
import signal
import site
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .forked import become_worker

#: How long the client waits for an answer to a fork or a reap before giving up on the launcher.
_REPLY_SECONDS = 10.0
#: How often the launcher checks that its client is still alive.
_WATCH_SECONDS = 1.0
#: ``send`` flags: no SIGPIPE when the other end is gone (a client may have SIGPIPE's default).
_SEND_FLAGS = getattr(socket, "MSG_NOSIGNAL", 0)


class LauncherFailed(Exception):
    """The launcher could not do what was asked: fork the worker from the client instead."""


class Launcher:
    """The client's handle on its launcher process (see the module's docstring)."""

    def __init__(self, env: dict[str, str], modules: list[str]) -> None:
        ours, theirs = socket.socketpair()
        self._socket: socket.socket | None = ours
        files = [
            (os.POSIX_SPAWN_DUP2, theirs.fileno(), 0),
            (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
            (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
        ]
        # As multiprocessing's spawn does (a private helper that typeshed does not list).
        flags: list[str] = subprocess._args_from_interpreter_flags()  # type: ignore[attr-defined]
        argv = [sys.executable, *flags, *(["-P"] if "-P" not in flags else []), "-m", __name__]
        try:
            self.pid = os.posix_spawn(sys.executable, argv, env, file_actions=files, setsid=True)
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        self._buffer = b""
        self._lock = threading.Lock()
        self._ready = False
        self.was_ready = False
        self.broken = False
        self._preloaded = set(modules)
        self._send({"op": "preload", "modules": modules, **_client_context()})

    def ready(self, wait: float = 0.0) -> bool:
        """Whether the launcher has started and imported what it preloads. With ``wait``,
        wait that long for it, and give up on a launcher that is not ready by then."""
        with self._lock:
            if not self._ready and not self.broken:
                with contextlib.suppress(LauncherFailed):
                    self._ready = self._receive(wait, missing_ok=wait <= 0) is not None
                    self.was_ready = self._ready
            return self._ready and not self.broken

    def fork(self, args: dict[str, str | int], log_path: Path) -> int:
        """Fork a worker with these arguments, its output to ``log_path``; return its pid."""
        imported_since = [m for m in preloadable_modules() if m not in self._preloaded]
        request = {
            "op": "fork", "args": args, "log": str(log_path), "modules": imported_since,
            **_client_context(),
        }  # fmt: skip
        pid = int(self._ask(request)["pid"])
        self._preloaded.update(imported_since)
        return pid

    def reap(self, pid: int) -> int | None:
        """The exit code of the launcher's worker ``pid``, or None while it runs
        (``ChildProcessError`` if the launcher does not know it)."""
        reply = self._ask({"op": "reap", "pid": pid})
        if reply.get("gone"):
            raise ChildProcessError(pid)
        return None if reply["code"] is None else int(reply["code"])

    def close(self) -> None:
        """Close this end of the socket (again: a no-op): the launcher exits, its workers
        do not."""
        self.broken = True
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if self.broken or not self._ready:
                raise LauncherFailed("the launcher is not ready")
            self._send(request)
            reply = self._receive(_REPLY_SECONDS)
        assert reply is not None
        if "error" in reply:
            raise LauncherFailed(f"the launcher could not do it: {reply['error']}")
        return reply

    def _send(self, request: dict[str, Any]) -> None:
        try:
            assert self._socket is not None
            self._socket.sendall(json.dumps(request).encode() + b"\n", _SEND_FLAGS)
        except OSError as exc:
            self._fail()
            raise LauncherFailed(f"the launcher is gone: {exc}") from exc

    def _receive(self, timeout: float, missing_ok: bool = False) -> dict[str, Any] | None:
        """The next reply; None if there is none within ``timeout`` and ``missing_ok``."""
        assert self._socket is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = max(0.0, deadline - time.monotonic())
            if not select.select([self._socket], [], [], remaining)[0]:
                if missing_ok:
                    return None
                self._fail()
                raise LauncherFailed(f"the launcher did not answer in {timeout:g} s")
            chunk = self._socket.recv(65536)
            if not chunk:
                self._fail()
                raise LauncherFailed("the launcher exited")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            return dict(json.loads(line))
        except ValueError as exc:
            self._fail()
            raise LauncherFailed(f"the launcher answered {line[:80]!r}") from exc

    def _fail(self) -> None:
        """Give up on a launcher that stopped answering: stop it (and reap it)."""
        self.close()
        with contextlib.suppress(OSError):
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)


def _client_context() -> dict[str, Any]:
    """What a worker takes from the client at each request (see the module's docstring)."""
    try:
        cwd: str | None = os.getcwd()
    except OSError:  # the client's working folder was removed: keep the launcher's
        cwd = None
    return {
        "env": dict(os.environ), "cwd": cwd,
        "path": [entry for entry in sys.path if isinstance(entry, str)],
        "recursion_limit": sys.getrecursionlimit(),
    }  # fmt: skip


_shared: Launcher | None = None
_shared_failed = False
_shared_lock = threading.Lock()


def shared_launcher(environment: Callable[[], dict[str, str]]) -> Launcher | None:
    """This process's launcher, started (with the ``environment()``) at the first call and
    again after one that was ready stopped answering; None if one could not start, or died
    before it was ready (then it would only die again)."""
    global _shared, _shared_failed
    with _shared_lock:
        if _shared is not None and _shared.broken:
            _shared_failed = _shared_failed or not _shared.was_ready
            _shared = None
        if _shared is None and not _shared_failed:
            try:
                _shared = Launcher(environment(), preloadable_modules())
            except (OSError, LauncherFailed):
                _shared_failed = True
        return _shared


def _forget_in_child() -> None:
    """A forked child does not share its parent's launcher (nor keep its socket open)."""
    global _shared, _shared_lock
    _shared_lock = threading.Lock()
    if _shared is not None:
        _shared.close()
        _shared = None


os.register_at_fork(after_in_child=_forget_in_child)


def preloadable_modules() -> list[str]:
    """What the launcher imports before it forks workers: the modules this process has
    imported from installed packages (site-packages), which a worker most likely needs and
    which can be slow to import, and starburst's own. Not the user's own modules: a worker
    imports those itself, as they are on disk now (a notebook may have changed them)."""
    folders = (*site.getsitepackages(), site.getusersitepackages())
    return sorted(
        name
        for name, module in list(sys.modules.items())
        if name.partition(".")[0] == "starburst"
        or str(getattr(module, "__file__", None) or "").startswith(folders)
    )


# The launcher process ------------------------------------------------------------------------


def serve() -> None:
    """Answer the client's requests until it closes its end of the socket, or is gone."""
    client = socket.socket(fileno=os.dup(0))
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)  # what a preloaded module reads is not part of the protocol
    _watch_parent(os.getppid())
    buffer = b""
    while True:
        while b"\n" not in buffer:
            chunk = client.recv(65536)
            if not chunk:
                return  # the client is gone
            buffer += chunk
        line, _, buffer = buffer.partition(b"\n")
        request = json.loads(line)
        try:
            reply = _answer(request, client.fileno())
        except Exception as exc:  # this request failed; the next may not
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        client.sendall(json.dumps(reply).encode() + b"\n", _SEND_FLAGS)
        if request["op"] == "fork":
            _preload(request["modules"])  # after the reply: the worker does not wait for it


def _answer(request: dict[str, Any], client_fd: int) -> dict[str, Any]:
    if request["op"] == "preload":
        _take_context(request)
        _preload(request["modules"])
        return {"ready": True}
    if request["op"] == "fork":
        _take_context(request)
        return {"pid": _fork(request, client_fd)}
    return _reap(int(request["pid"]))


def _watch_parent(parent: int) -> None:
    """Exit once the client that started this launcher is gone (checked every second, even
    in the middle of an import that hangs)."""

    def check(signum: int, frame: Any) -> None:
        if os.getppid() != parent:
            os._exit(0)

    signal.signal(signal.SIGALRM, check)
    signal.setitimer(signal.ITIMER_REAL, _WATCH_SECONDS, _WATCH_SECONDS)


def _take_context(request: dict[str, Any]) -> None:
    os.environ.clear()
    os.environ.update(request["env"])
    if request["cwd"] is not None:
        with contextlib.suppress(OSError):
            os.chdir(request["cwd"])
    sys.path[:] = request["path"]
    sys.setrecursionlimit(request["recursion_limit"])
    importlib.invalidate_caches()  # a module may have appeared since the last request


def _preload(modules: list[str]) -> None:
    for name in modules:
        with contextlib.suppress(BaseException):  # one that fails here, a worker imports
            importlib.import_module(name)


def _fork(request: dict[str, Any], client_fd: int) -> int:
    log_fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    pid = os.fork()
    if pid == 0:
        os.close(client_fd)  # the worker keeps no end of the client's socket open
        signal.signal(signal.SIGALRM, signal.SIG_DFL)  # (fork kept no timer, but the handler)
        become_worker(request["args"], log_fd)
    os.close(log_fd)
    return pid


def _reap(pid: int) -> dict[str, Any]:
    try:
        reaped, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # not ours, or reaped before
        return {"gone": True}
    return {"code": os.waitstatus_to_exitcode(status) if reaped else None}


if __name__ == "__main__":
    serve()
