"""The store on a local directory: the embedded default, safe across processes.

Writes go to a temporary file first and appear atomically. ``put_if_absent`` publishes with
a hard link (which fails if the key exists); ``put_if_match`` compares and replaces under a
per-key file lock. ETags are content hashes, as S3's are for simple uploads; they are
computed only by the versioned operations, so bulk data costs no hashing.
"""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import os
import select
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from .base import Buffer, NotFound, PreconditionFailed, Store

_LOCK_STRIPES = 64


def _etag(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class LocalStore(Store):
    """A store whose keys are files below ``root``."""

    poll_interval = 0.005
    max_poll_interval = 0.02
    frees_inputs = True
    compress = False
    parallelism = 1

    def __init__(self, root: str | os.PathLike[str]) -> None:
        super().__init__()
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._tmp = self.root / ".tmp"
        self._locks = self.root / ".locks"
        self._tmp.mkdir(exist_ok=True)
        self._locks.mkdir(exist_ok=True)
        self._doorbell = _Doorbell(self.root / ".doorbell")

    @property
    def url(self) -> str:
        return self.root.as_uri()

    def _path(self, key: str) -> Path:
        return self.root / key

    def _write_temp(self, data: Buffer | Sequence[Buffer]) -> str:
        fd, tmp = tempfile.mkstemp(dir=self._tmp)
        try:
            with os.fdopen(fd, "wb") as handle:
                if isinstance(data, list):
                    handle.writelines(data)
                else:
                    handle.write(data)
        except BaseException:
            os.unlink(tmp)
            raise
        return tmp

    @contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        stripe = int(hashlib.blake2b(key.encode(), digest_size=2).hexdigest(), 16) % _LOCK_STRIPES
        with open(self._locks / str(stripe), "a+b") as handle:
            _lock_file(handle.fileno())
            try:
                yield
            finally:
                _unlock_file(handle.fileno())

    def _put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self._write_temp(data), path)

    def announce(self) -> None:
        self._doorbell.ring()

    def close(self) -> None:
        self._doorbell.close()

    def wait_for_news(self, timeout: float) -> None:
        self._doorbell.wait(timeout)

    def _put_parts(self, key: str, parts: Sequence[Buffer]) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self._write_temp(list(parts)), path)

    def _get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFound(key) from None

    def _get_view(self, key: str) -> Buffer:
        """A private (copy-on-write) memory map of the file: pages are shared, not copied."""
        try:
            with open(self._path(key), "rb") as handle:
                if os.fstat(handle.fileno()).st_size == 0:
                    return b""
                return mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFound(key) from None

    def _get_versioned(self, key: str) -> tuple[bytes, str]:
        data = self._get(key)
        return data, _etag(data)

    def _put_if_absent(self, key: str, data: bytes) -> str:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._write_temp(data)
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise PreconditionFailed(f"{key} already exists") from None
        finally:
            os.unlink(tmp)
        return _etag(data)

    def _put_if_match(self, key: str, data: bytes, etag: str) -> str:
        path = self._path(key)
        with self._locked(key):
            try:
                current = _etag(path.read_bytes())
            except FileNotFoundError:
                raise PreconditionFailed(f"{key} does not exist") from None
            if current != etag:
                raise PreconditionFailed(f"{key} changed since it was read")
            os.replace(self._write_temp(data), path)
        return _etag(data)

    def _delete(self, key: str) -> None:
        path = self._path(key)
        # Empty folders stay: removing one could race with a writer about to fill it.
        with self._locked(key), contextlib.suppress(FileNotFoundError):
            path.unlink()

    def _list_page(
        self, prefix: str, start_after: str | None, limit: int
    ) -> tuple[list[str], bool]:
        folder, _, _leaf = prefix.rpartition("/")
        base = self.root / folder if folder else self.root
        keys = sorted(self._walk(base, folder))
        keys = [
            k for k in keys if k.startswith(prefix) and (start_after is None or k > start_after)
        ]
        return keys[:limit], len(keys) > limit

    def _list_folders(self, prefix: str) -> list[str]:
        try:
            entries = list(os.scandir(self.root / prefix))
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(
            e.name
            for e in entries
            if not e.name.startswith(".")
            and e.is_dir(follow_symlinks=False)
            and next(self._walk(Path(e.path), e.name), None) is not None  # empty ones stay
        )

    def _walk(self, base: Path, rel: str) -> Iterator[str]:
        try:
            entries = list(os.scandir(base))
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            key = f"{rel}/{entry.name}" if rel else entry.name
            if entry.is_dir(follow_symlinks=False):
                yield from self._walk(Path(entry.path), key)
            else:
                yield key


class _Doorbell:
    """A named pipe in the store: workers ring it when an output lands, so that a waiting
    client wakes at once instead of at its next poll. Best effort: with no pipe (Windows)
    or no one listening, waiting is sleeping and ringing does nothing."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._listening: tuple[int, int] | None = None  # (reader, keep-alive writer)
        self._ringer: int | None = None
        if hasattr(os, "mkfifo"):
            with contextlib.suppress(FileExistsError):
                os.mkfifo(path)

    def ring(self) -> None:
        try:
            if self._ringer is None:
                self._ringer = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            os.write(self._ringer, b"\0")
        except BlockingIOError:
            pass  # the pipe is full of rings: the listener will wake anyway
        except OSError:  # no listener (ENXIO), it left (EPIPE), or no pipe at all
            if self._ringer is not None:
                os.close(self._ringer)
            self._ringer = None

    def close(self) -> None:
        for fd in (*(self._listening or ()), *([self._ringer] if self._ringer else [])):
            os.close(fd)
        self._listening = self._ringer = None

    def wait(self, timeout: float) -> None:
        try:
            if self._listening is None:
                reader = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
                self._listening = (reader, os.open(self.path, os.O_WRONLY | os.O_NONBLOCK))
            reader = self._listening[0]
            if select.select([reader], [], [], timeout)[0]:
                with contextlib.suppress(BlockingIOError):
                    while os.read(reader, 4096):
                        pass
        except OSError:  # no pipe here: just wait
            time.sleep(timeout)


if os.name == "nt":  # pragma: no cover - exercised on Windows only
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
