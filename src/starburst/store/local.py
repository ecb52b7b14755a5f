"""The store on a local directory: the embedded default, safe across processes.

Writes go to a temporary file first and appear atomically. ``put_if_absent`` publishes with
a hard link (which fails if the key exists); ``put_if_match`` compares and replaces under a
per-key file lock. ETags are content hashes, as S3's are for simple uploads; they are
computed only by the versioned operations, so bulk data costs no hashing.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import mmap
import os
import select
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from .base import Buffer, NotFound, PreconditionFailed, Store

_LOCK_STRIPES = 64
#: Whatever the umask: a store holds pickles (code) and results, for this user only.
PRIVATE_FOLDER_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def make_private_folder(path: str | os.PathLike[str], within: str | None = None) -> None:
    """Create the folder ``path`` and its missing parents, each readable by this user only
    (0700 whatever the umask; ``os.makedirs`` gives parents the umask's mode). A folder
    that exists is left as it is. With ``within``, folders are made only below it: when
    ``within`` itself is missing, ``FileNotFoundError``."""
    path = os.fspath(path)
    if path == within and not os.path.isdir(path):
        raise FileNotFoundError(f"{path} was removed")
    try:
        os.mkdir(path, PRIVATE_FOLDER_MODE)
    except FileExistsError:
        if not os.path.isdir(path):
            raise
        return
    except FileNotFoundError:
        parent = os.path.dirname(path.rstrip("/"))
        if not parent or parent == path:
            raise
        make_private_folder(parent, within)
        try:
            os.mkdir(path, PRIVATE_FOLDER_MODE)
        except FileExistsError:  # another process made it meanwhile
            return
    os.chmod(path, PRIVATE_FOLDER_MODE)  # (a umask can take the owner's bits away too)


def close_to_others(folder: str | os.PathLike[str]) -> None:
    """Take group and other users' access to ``folder`` away, if it has any (a store made by
    an earlier version, or under a loose umask): its contents are then out of their reach."""
    mode = stat.S_IMODE(os.stat(folder).st_mode)
    if mode & 0o077:
        with contextlib.suppress(PermissionError):  # (not ours: nothing we may change)
            os.chmod(folder, mode & PRIVATE_FOLDER_MODE)


def replace_private_file(path: str | os.PathLike[str], text: str) -> None:
    """Replace the file ``path`` with ``text`` atomically, readable by this user only."""
    temporary = f"{os.fspath(path)}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    with open(fd, "w") as handle:
        handle.write(text)
    os.replace(temporary, path)


def _etag(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class LocalStore(Store):
    """A store whose keys are files below ``root``.

    The hot paths (a worker's claim, input and output of every chunk) use plain string paths
    and ``os`` calls, and create a key's folder only when a write finds it missing: a chunk
    costs a handful of system calls and little else.
    """

    poll_interval = 0.005
    #: A worker rings the client with each output it writes, and a ring lists at once: the
    #: client's own listings are only a fallback, rare enough to cost it next to nothing.
    max_poll_interval = 0.25
    frees_inputs = True
    compress = False
    parallelism = 1

    def __init__(self, root: str | os.PathLike[str], create: bool = True) -> None:
        """The store in folder ``root``, created if missing unless ``create`` is false (a
        worker opens its session's store: one that was removed stays removed, and every
        write to it fails)."""
        super().__init__()
        self._base = os.path.realpath(root)
        self._tmp = f"{self._base}/.tmp"
        self._locks = f"{self._base}/.locks"
        for folder in (self._tmp, self._locks):  # (and so the root, if ``create``)
            # (a worker opens a store that exists: a stat)
            if not os.path.isdir(folder) and (create or os.path.isdir(self._base)):
                make_private_folder(folder)
        self._temp_numbers = itertools.count()
        self._bells: dict[str, _Bell] = {}
        self._bells_lock = threading.Lock()

    @property
    def root(self) -> Path:
        """The store's folder."""
        return Path(self._base)

    @property
    def url(self) -> str:
        return self.root.as_uri()

    def _path(self, key: str) -> str:
        return f"{self._base}/{key}"  # keys are checked: relative, no "..", no "//"

    def _write_temp(self, data: Buffer | list[Buffer]) -> str:
        """A new file in the store's temporary folder holding ``data``; returns its path."""
        while True:  # pid and counter are unique among live processes; a crashed one's
            tmp = f"{self._tmp}/{os.getpid()}.{next(self._temp_numbers)}"  # leftover is skipped
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
                break
            except FileExistsError:
                continue
        try:
            for part in data if isinstance(data, list) else [data]:
                _write_all(fd, part)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        os.close(fd)
        return tmp

    def _publish(self, publish: Callable[[str, str], None], tmp: str, path: str) -> None:
        """``publish(tmp, path)`` (a rename or a link), creating ``path``'s folder if missing,
        but never the store's root: a write to a removed store fails (``FileNotFoundError``)
        rather than bring its tree back."""
        try:
            publish(tmp, path)
        except FileNotFoundError:
            make_private_folder(os.path.dirname(path), within=self._base)
            publish(tmp, path)

    @contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        # (As every version computes it: processes of two versions may share a store.)
        stripe = int(hashlib.blake2b(key.encode(), digest_size=2).hexdigest(), 16) % _LOCK_STRIPES
        fd = os.open(f"{self._locks}/{stripe}", os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
        try:
            _lock_file(fd)
            try:
                yield
            finally:
                _unlock_file(fd)
        finally:
            os.close(fd)

    def _put(self, key: str, data: bytes) -> None:
        self._publish(os.replace, self._write_temp(data), self._path(key))

    def _bell(self, name: str) -> _Bell:
        with self._bells_lock:
            bell = self._bells.get(name)
            if bell is None:
                bell = self._bells[name] = _Bell(self._path(name))
            return bell

    def ring(self, bell: str) -> None:
        self._bell(bell).ring()

    def wait_for_ring(self, bell: str, timeout: float) -> bool:
        return self._bell(bell).wait(timeout)

    def times_rung(self, bell: str) -> int:
        return self._bell(bell).heard

    def close(self) -> None:
        with self._bells_lock:
            bells, self._bells = list(self._bells.values()), {}
        for bell in bells:
            bell.close()

    def _put_parts(self, key: str, parts: Sequence[Buffer]) -> None:
        self._publish(os.replace, self._write_temp(list(parts)), self._path(key))

    def _get(self, key: str) -> bytes:
        try:
            with open(self._path(key), "rb") as handle:
                return handle.read()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFound(key) from None

    def _get_view(self, key: str) -> Buffer:
        """A private (copy-on-write) memory map of the file: pages are shared, not copied."""
        try:
            fd = os.open(self._path(key), os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(key) from None
        try:
            status = os.fstat(fd)
            if not stat.S_ISREG(status.st_mode):  # a folder: no object has this key
                raise NotFound(key)
            if status.st_size == 0:
                return b""
            return mmap.mmap(fd, 0, access=mmap.ACCESS_COPY)
        finally:
            os.close(fd)

    def _get_versioned(self, key: str) -> tuple[bytes, str]:
        data = self._get(key)
        return data, _etag(data)

    def _put_if_absent(self, key: str, data: bytes) -> str:
        tmp = self._write_temp(data)
        try:
            self._publish(os.link, tmp, self._path(key))
        except FileExistsError:
            raise PreconditionFailed(f"{key} already exists") from None
        finally:
            os.unlink(tmp)
        return _etag(data)

    def _put_if_match(self, key: str, data: bytes, etag: str) -> str:
        path = self._path(key)
        with self._locked(key):
            try:
                with open(path, "rb") as handle:
                    current = _etag(handle.read())
            except FileNotFoundError:
                raise PreconditionFailed(f"{key} does not exist") from None
            if current != etag:
                raise PreconditionFailed(f"{key} changed since it was read")
            os.replace(self._write_temp(data), path)
        return _etag(data)

    def _delete(self, key: str) -> None:
        # Empty folders stay: removing one could race with a writer about to fill it.
        with self._locked(key), contextlib.suppress(FileNotFoundError, NotADirectoryError):
            os.unlink(self._path(key))

    def _list_page(
        self, prefix: str, start_after: str | None, limit: int
    ) -> tuple[list[str], bool]:
        folder, _, _leaf = prefix.rpartition("/")
        base = f"{self._base}/{folder}" if folder else self._base
        keys = sorted(self._walk(base, folder))
        keys = [
            k for k in keys if k.startswith(prefix) and (start_after is None or k > start_after)
        ]
        return keys[:limit], len(keys) > limit

    def _list_folders(self, prefix: str) -> list[str]:
        try:
            entries = list(os.scandir(self._path(prefix)))
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(
            e.name
            for e in entries
            if not e.name.startswith(".")
            and e.is_dir(follow_symlinks=False)
            and next(self._walk(e.path, e.name), None) is not None  # empty ones stay
        )

    def _walk(self, base: str, rel: str) -> Iterator[str]:
        try:
            entries = list(os.scandir(base))
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            key = f"{rel}/{entry.name}" if rel else entry.name
            if entry.is_dir(follow_symlinks=False):
                yield from self._walk(entry.path, key)
            else:
                yield key


def _write_all(fd: int, data: Buffer) -> None:
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view) :]


class _Bell:
    """A named pipe in the store that wakes waiting processes: a worker rings the client's
    when an output lands, a client rings the workers' when there is new work. A ring wakes
    at least one waiter (the first to read drains the pipe); others may wake only at their
    timeout (an idle worker's is at most 20 ms), which bounds the cost of rings nobody
    needed. Best effort: with no pipe (Windows), no folder (the session was removed) or no
    one listening, waiting is sleeping and ringing does nothing.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._listening: tuple[int, int] | None = None  # (reader, keep-alive writer)
        self._ringer: int | None = None
        self.heard = 0  # the waits that heard a ring, in this process
        self._lock = threading.Lock()

    def _make_pipe(self) -> None:
        """Make the pipe; ``FileNotFoundError`` when its session's folder is gone (a bell
        never brings a removed session's folder back)."""
        with contextlib.suppress(FileExistsError):
            os.mkfifo(self.path, PRIVATE_FILE_MODE)

    def ring(self) -> None:
        with self._lock:
            try:
                if self._ringer is None:
                    self._ringer = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
                os.write(self._ringer, b"\0")
            except BlockingIOError:
                pass  # the pipe is full of rings: the listeners will wake anyway
            except OSError:  # no listener (ENXIO), it left (EPIPE), or no pipe at all
                if self._ringer is not None:
                    os.close(self._ringer)
                self._ringer = None

    def close(self) -> None:
        with self._lock:
            for fd in (*(self._listening or ()), *([self._ringer] if self._ringer else [])):
                os.close(fd)
            self._listening = self._ringer = None

    def wait(self, timeout: float) -> bool:
        """Wait until the bell rings (True) or ``timeout`` passes (False)."""
        try:
            with self._lock:
                if self._listening is None:
                    self._make_pipe()
                    reader = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
                    self._listening = (reader, os.open(self.path, os.O_WRONLY | os.O_NONBLOCK))
                reader = self._listening[0]
            if not select.select([reader], [], [], timeout)[0]:
                return False
            with contextlib.suppress(BlockingIOError):
                while os.read(reader, 4096):
                    pass
            self.heard += 1
            return True
        except (OSError, AttributeError):  # no pipe here (no ``os.mkfifo``): just wait
            time.sleep(timeout)
            return False


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _lock_file(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_LOCK, 1)

    def _unlock_file(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock_file(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)

    def _unlock_file(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
