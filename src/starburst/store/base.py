"""The store interface: the only thing the client and the workers share.

Keys are ``/``-separated strings. Every implementation offers the same operations and the
same guarantees; the contract tests in ``tests/test_store_contract.py`` hold them to it.
"""

from __future__ import annotations

import builtins  # annotations after `Store.list` reach the builtin `list` through it
import errno
import mmap
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator, Sequence

from ..errors import StoreError

#: What payloads are made of: ``bytes``, or views of memory that need no copy.
Buffer = bytes | bytearray | memoryview | mmap.mmap


class NotFound(StoreError, KeyError):
    """The key does not exist."""


class PreconditionFailed(StoreError):
    """A conditional write lost: the key exists (put-if-absent) or changed (put-if-match)."""


class Store(ABC):
    """A flat key/value object store with conditional writes and paginated listing.

    Subclasses implement the ``_``-prefixed primitives; the public methods count each request
    by kind in ``self.requests`` so that tests and benchmarks can see what a run costs.
    """

    #: Seconds between polls of this store by a client or an idle worker.
    poll_interval: float = 0.5
    #: The longest pause between a client's polls when nothing new has landed (where a
    #: worker's ring says that something did, this is a fallback).
    max_poll_interval: float = 2.0
    #: Whether payloads written here are worth compressing (network stores: yes).
    compress: bool = True
    #: How many transfers may usefully run at once.
    parallelism: int = 8
    #: Whether a worker deletes a chunk's input once the chunk is done (worth a request
    #: where space is scarce, as in memory; elsewhere inputs go with the session's data).
    frees_inputs: bool = False
    #: The page size of ``list``.
    page_size: int = 1000

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.bytes_written = 0
        self._count_lock = threading.Lock()

    @property
    @abstractmethod
    def url(self) -> str:
        """A URL that opens this same store in another process (see ``open_store``)."""

    def _request(self, kind: str, key: str | None = None, size: int = 0) -> None:
        """Check the key of a request; count the request by kind and the bytes it writes."""
        if key is not None and (
            not key or key.startswith(("/", ".")) or ".." in key.split("/") or "//" in key
        ):
            raise ValueError(f"invalid store key: {key!r}")
        with self._count_lock:
            self.requests[kind] += 1
            self.bytes_written += size

    # Public operations -------------------------------------------------------------------

    def put(self, key: str, data: bytes) -> None:
        """Write ``data`` at ``key`` unconditionally."""
        self._request("put", key, len(data))
        try:
            self._put(key, data)
        except OSError as exc:
            raise self.write_error(key, exc) from exc

    def put_parts(self, key: str, parts: Sequence[Buffer]) -> None:
        """Write the concatenation of ``parts`` at ``key`` (as ``dumps_parts`` makes them)."""
        self._request("put", key, sum(memoryview(part).nbytes for part in parts))
        try:
            self._put_parts(key, parts)
        except OSError as exc:
            raise self.write_error(key, exc) from exc

    def write_error(self, key: str, exc: OSError) -> StoreError:
        """The error for a write the store's medium refused (full, read-only, too large),
        naming the store and what to do."""
        fixes = {
            errno.ENOSPC: "it is full: free some space, or point STARBURST_SCRATCH_DIR (one-off "
            "runs) or STARBURST_DATA_DIR (detached sessions) at a roomier folder",
            errno.EDQUOT: "your disk quota is used up: free some space, or use another folder",
            errno.EROFS: "it is read-only: point STARBURST_SCRATCH_DIR or STARBURST_DATA_DIR "
            "at a folder you can write",
            errno.EACCES: "you may not write there: fix its permissions, or use another folder",
            errno.EFBIG: "the object is larger than this system lets a file grow (ulimit -f)",
        }
        fix = fixes.get(exc.errno or 0, "check that the folder exists and can be written")
        return StoreError(
            f"could not write {key} to the store at {self.url} ({exc.strerror or exc}): {fix}"
        )

    def get(self, key: str) -> bytes:
        """Read the object at ``key``; raise ``NotFound`` when it is absent."""
        self._request("get", key)
        return self._get(key)

    def get_view(self, key: str) -> Buffer:
        """Read the object at ``key`` as a buffer, without a copy where the store can.

        A writable buffer (a private memory map of a local file) never changes the stored
        object when written to.
        """
        self._request("get", key)
        return self._get_view(key)

    def get_versioned(self, key: str) -> tuple[bytes, str]:
        """Read the object at ``key`` with its ETag, for a later ``put_if_match``."""
        self._request("get", key)
        return self._get_versioned(key)

    def put_if_absent(self, key: str, data: bytes) -> str:
        """Create ``key`` only if nothing is there; raise ``PreconditionFailed`` otherwise."""
        self._request("put_if_absent", key, len(data))
        try:
            return self._put_if_absent(key, data)
        except OSError as exc:
            raise self.write_error(key, exc) from exc

    def put_if_match(self, key: str, data: bytes, etag: str) -> str:
        """Replace ``key`` only if its ETag is still ``etag``; raise ``PreconditionFailed``."""
        self._request("put_if_match", key, len(data))
        try:
            return self._put_if_match(key, data, etag)
        except OSError as exc:
            raise self.write_error(key, exc) from exc

    def delete(self, key: str) -> None:
        """Remove ``key``; removing an absent key is not an error."""
        self._request("delete", key)
        self._delete(key)

    def list_page(
        self, prefix: str, start_after: str | None = None, limit: int | None = None
    ) -> tuple[list[str], bool]:
        """One sorted page of keys under ``prefix`` after ``start_after``, and if more follow."""
        self._request("list")
        return self._list_page(prefix, start_after, min(limit or self.page_size, self.page_size))

    def list(self, prefix: str, start_after: str | None = None) -> Iterator[str]:
        """Every key under ``prefix`` in sorted order, fetched a page at a time."""
        while True:
            keys, more = self.list_page(prefix, start_after)
            yield from keys
            if not more or not keys:
                return
            start_after = keys[-1]

    def list_folders(self, prefix: str) -> builtins.list[str]:
        """The names of the "folders" directly under ``prefix`` (which ends with ``/``): the
        distinct next path parts of its keys that have more parts after them, sorted."""
        self._request("list")
        return self._list_folders(prefix)

    def delete_prefix(self, prefix: str) -> int:
        """Remove every key under ``prefix``; return how many were removed."""
        keys = list(self.list(prefix))
        for key in keys:
            self.delete(key)
        return len(keys)

    def close(self) -> None:  # noqa: B027 - most stores hold nothing open
        """Let go of what the store holds open (the store's data stays)."""

    def ring(self, bell: str) -> None:  # noqa: B027 - most stores cannot ring: waiters poll
        """Wake the processes waiting on ``bell`` (a name from ``engine/keys.py``)."""

    def times_rung(self, bell: str) -> int:
        """How many rings of ``bell`` this process has heard so far (0 where rings are not
        heard): whoever waited, every reader in the process can tell that news came."""
        return 0

    def wait_for_ring(self, bell: str, timeout: float) -> bool:
        """Wait ``timeout`` seconds, or less when ``bell`` rings; say whether it rang. A store
        that can ring keeps listening after the first wait, so that a ring between two waits
        is not lost."""
        time.sleep(timeout)
        return False

    # Primitives ----------------------------------------------------------------------------

    @abstractmethod
    def _put(self, key: str, data: bytes) -> None: ...

    def _put_parts(self, key: str, parts: Sequence[Buffer]) -> None:
        self._put(key, parts[0] if len(parts) == 1 else b"".join(parts))  # type: ignore[arg-type]

    @abstractmethod
    def _get(self, key: str) -> bytes: ...

    def _get_view(self, key: str) -> Buffer:
        return self._get(key)

    @abstractmethod
    def _get_versioned(self, key: str) -> tuple[bytes, str]: ...

    @abstractmethod
    def _put_if_absent(self, key: str, data: bytes) -> str: ...

    @abstractmethod
    def _put_if_match(self, key: str, data: bytes, etag: str) -> str: ...

    @abstractmethod
    def _delete(self, key: str) -> None: ...

    @abstractmethod
    def _list_page(
        self, prefix: str, start_after: str | None, limit: int
    ) -> tuple[builtins.list[str], bool]: ...

    @abstractmethod
    def _list_folders(self, prefix: str) -> builtins.list[str]: ...
