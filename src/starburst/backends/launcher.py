"""The launcher: a fresh interpreter that forks local workers on the client's behalf.

Forking a worker straight from the client is fast to start, but the worker then runs
pure-Python items more slowly than a fresh interpreter does (7-15% on W2 in
``bench/item_speed.py``), and it is a copy of a process with threads running. The launcher
gives both: one fresh interpreter per client, started in the background at the first local
launch, which imports the worker and the installed packages the client has imported, then
forks each later worker on request. Until it is ready, workers are forked from the client.

It speaks JSON lines over two pipes, one reply per request:

- ``{"op": "preload", "modules": [...]}`` -> ``{"ready": true}`` once they are imported;
- ``{"op": "fork", "args": {...}, "log": path, "env": {...}, "cwd": dir, "path": [...],
  "modules": [...]}`` -> ``{"pid": N}``; the launcher first imports the modules the client
  has imported since, and the worker takes the client's current environment, folder and
  import path;
- ``{"op": "reap", "pid": N}`` -> ``{"code": exit code, or null while it runs}``, or
  ``{"gone": true}`` for a pid it does not know; a worker stays a zombie until reaped, so
  its exit code waits for the client.

It exits when the client's end of its request pipe closes: when the client exits, however.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import select
import signal
import site
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .forked import become_worker

#: How long the client waits for the launcher to answer a fork or a reap before giving up on it.
_REPLY_SECONDS = 10.0


class LauncherFailed(Exception):
    """The launcher did not answer, or exited: fork workers from the client instead."""


class Launcher:
    """The client's handle on its launcher process (see the module's docstring)."""

    def __init__(self, env: dict[str, str], modules: list[str]) -> None:
        requests_read, self._requests = os.pipe()
        self._replies, replies_write = os.pipe()
        files = [
            (os.POSIX_SPAWN_DUP2, requests_read, 0),
            (os.POSIX_SPAWN_DUP2, replies_write, 1),
            (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
        ]
        argv = [sys.executable, "-m", "starburst.backends.launcher"]
        try:
            self.pid = os.posix_spawn(sys.executable, argv, env, file_actions=files, setsid=True)
        finally:
            os.close(requests_read)
            os.close(replies_write)
        self._buffer = b""
        self._lock = threading.Lock()
        self._ready = False
        self.was_ready = False
        self.broken = False
        self._preloaded = set(modules)
        self._send({"op": "preload", "modules": modules})

    def ready(self, wait: float = 0.0) -> bool:
        """Whether the launcher has started and imported what it preloads (waiting at most
        ``wait`` seconds for it to)."""
        with self._lock:
            if not self._ready and not self.broken:
                with contextlib.suppress(LauncherFailed):
                    self._ready = self.was_ready = self._receive(wait, missing_ok=True) is not None
            return self._ready and not self.broken

    def fork(self, args: dict[str, str | int], log_path: Path) -> int:
        """Fork a worker with these arguments, its output to ``log_path``; return its pid."""
        imported_since = [m for m in preloadable_modules() if m not in self._preloaded]
        request = {
            "op": "fork", "args": args, "log": str(log_path), "env": dict(os.environ),
            "cwd": os.getcwd(), "path": sys.path, "modules": imported_since,
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
        """Close this end of the pipes: the launcher exits (its workers do not)."""
        self.broken = True
        for fd in (self._requests, self._replies):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if self.broken or not self._ready:
                raise LauncherFailed("the launcher is not ready")
            self._send(request)
            reply = self._receive(_REPLY_SECONDS)
            assert reply is not None
            return reply

    def _send(self, request: dict[str, Any]) -> None:
        try:
            os.write(self._requests, json.dumps(request).encode() + b"\n")
        except OSError as exc:
            self._fail()
            raise LauncherFailed(f"the launcher is gone: {exc}") from exc

    def _receive(self, timeout: float, missing_ok: bool = False) -> dict[str, Any] | None:
        """The next reply; None if there is none within ``timeout`` and ``missing_ok``."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = max(0.0, deadline - time.monotonic())
            if not select.select([self._replies], [], [], remaining)[0]:
                if missing_ok:
                    return None
                self._fail()
                raise LauncherFailed(f"the launcher did not answer in {timeout:g} s")
            chunk = os.read(self._replies, 65536)
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
        """Give up on a launcher that stopped answering: stop it, and fork from the client."""
        self.close()
        with contextlib.suppress(OSError):
            os.kill(self.pid, signal.SIGKILL)


_shared: Launcher | None = None
_shared_failed = False
_shared_lock = threading.Lock()


def shared_launcher(env: dict[str, str]) -> Launcher | None:
    """This process's launcher, started (with ``env``) at the first call and again after one
    that was ready stopped answering; None if one could not start, or died before it was
    ready (then it would only die again)."""
    global _shared, _shared_failed
    with _shared_lock:
        if _shared is not None and _shared.broken:
            _shared_failed = _shared_failed or not _shared.was_ready
            _shared = None
        if _shared is None and not _shared_failed:
            try:
                _shared = Launcher(env, preloadable_modules())
            except (OSError, LauncherFailed):
                _shared_failed = True
        return _shared


def _forget_in_child() -> None:
    """A forked child does not share its parent's launcher (nor keep its pipes open)."""
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
    """Answer the client's requests until it closes its end of the pipe."""
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "wb", buffering=0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):  # what a preloaded module reads or prints is not part of the protocol
        os.dup2(devnull, fd)
    pipes = (requests.fileno(), replies.fileno())
    for line in requests:
        request = json.loads(line)
        if request["op"] == "preload":
            _preload(request["modules"])
            reply: dict[str, Any] = {"ready": True}
        elif request["op"] == "fork":
            _preload(request["modules"])
            reply = {"pid": _fork(request, pipes)}
        else:
            reply = _reap(int(request["pid"]))
        replies.write(json.dumps(reply).encode() + b"\n")


def _preload(modules: list[str]) -> None:
    for name in modules:
        with contextlib.suppress(Exception):  # a module that fails here is imported by the worker
            importlib.import_module(name)


def _fork(request: dict[str, Any], pipes: tuple[int, ...]) -> int:
    log_fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    pid = os.fork()
    if pid == 0:
        for fd in pipes:  # the worker keeps neither end of the client's pipes open
            os.close(fd)

        def take_the_clients_context() -> None:
            os.environ.clear()
            os.environ.update(request["env"])
            os.chdir(request["cwd"])
            sys.path[:] = request["path"]

        become_worker(request["args"], log_fd, take_the_clients_context)
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
