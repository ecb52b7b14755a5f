"""Large arguments of submitted calls, stored once per session instead of once per call.

A training matrix passed to 200 fits would otherwise travel inside every call (every joblib
batch). While a call is pickled (``serialize.pickle_call``), ``SharedArguments.reference``
replaces each NumPy array or ``bytes`` of at least ``SHARE_MIN_BYTES`` by a reference named
after its content's SHA-256; the first time this client meets that content it stores it at
``data/<sid>/shared/<digest>``. A worker resolves references through its ``SharedCache``: it
reads each object once and keeps it (least recently used first out past
``WORKER_CACHE_BYTES``), arrays read-only, as loky hands large arrays to its workers
(memory-mapped, ``mmap_mode="r"``): a task that writes into one gets NumPy's "assignment
destination is read-only", never another task's data.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from ..errors import SerializationError
from ..serialize import dumps, dumps_parts, loads
from ..store import NotFound, Store
from .keys import SessionKeys

#: Arguments at least this large are stored once per session (loky memory-maps arrays from
#: 1 MB, Dask's joblib backend scatters from about that size).
SHARE_MIN_BYTES = 1 << 20
#: How many bytes of shared objects one worker process keeps between calls.
WORKER_CACHE_BYTES = 1 << 30
#: How a reference to a shared object begins in a pickled call (its persistent id).
_PREFIX = "starburst-shared:"


def _shareable_size(obj: Any) -> int:
    """The bytes that sharing ``obj`` would save: its size if it is a NumPy array (of plain
    values: an array of objects holds references, not data) or ``bytes``, else 0."""
    if type(obj) is bytes:
        return len(obj)
    numpy = sys.modules.get("numpy")
    if numpy is not None and type(obj) in (numpy.ndarray, numpy.memmap):
        return 0 if obj.dtype.hasobject else int(obj.nbytes)
    return 0


class SharedArguments:
    """The client's side: which large objects this session's store holds already (used by
    one thread: the batcher's, which pickles the calls)."""

    def __init__(self, store: Store, keys: SessionKeys, min_bytes: int = SHARE_MIN_BYTES) -> None:
        self.store = store
        self.keys = keys
        self.min_bytes = min_bytes
        self._stored: set[str] = set()
        # id -> (the object, kept alive so that its id is not reused; its reference), for
        # the calls pickled within one ``remembering`` block: their objects are hashed once.
        self._seen: dict[int, tuple[Any, str]] | None = None

    @contextlib.contextmanager
    def remembering(self) -> Iterator[None]:
        """Within the block, an object met again (the same matrix in each of a batch's calls)
        is not hashed again: the calls pickled in it must not change it meanwhile."""
        self._seen = {}
        try:
            yield
        finally:
            self._seen = None

    def reference(self, obj: Any) -> str | None:
        """The persistent id that replaces ``obj`` in a pickled call, storing its content
        first if the session does not have it; ``None`` for an object that travels inline."""
        size = _shareable_size(obj)
        if size < self.min_bytes:
            return None
        seen = self._seen
        if seen is not None and id(obj) in seen:
            return seen[id(obj)][1]
        value = obj if type(obj) is bytes else sys.modules["numpy"].asarray(obj)
        parts = dumps_parts(value, compress=False)
        digest = hashlib.sha256()
        for part in parts:
            digest.update(part)
        name = digest.hexdigest()
        if name not in self._stored:
            key = self.keys.shared(name)
            if self.store.compress:
                self.store.put(key, dumps(value, compress=True))
            else:
                self.store.put_parts(key, parts)
            self._stored.add(name)
        if seen is not None:
            seen[id(obj)] = (obj, _PREFIX + name)
        return _PREFIX + name


class SharedCache:
    """A worker's side: each shared object read once from the store, then kept."""

    def __init__(self, store: Store, keys: SessionKeys, max_bytes: int = WORKER_CACHE_BYTES):
        self.store = store
        self.keys = keys
        self.max_bytes = max_bytes
        self._objects: OrderedDict[str, tuple[Any, int]] = OrderedDict()  # name -> (obj, size)
        self._bytes = 0

    def load(self, reference: Any) -> Any:
        """The object a call's persistent id names (``pickle.Unpickler.persistent_load``)."""
        if not isinstance(reference, str) or not reference.startswith(_PREFIX):
            raise SerializationError(f"unknown reference {reference!r} in a pickled call")
        name = reference[len(_PREFIX) :]
        if name in self._objects:
            self._objects.move_to_end(name)
            return self._objects[name][0]
        try:
            payload = self.store.get_view(self.keys.shared(name))
        except NotFound:
            raise SerializationError(
                f"the shared argument {name[:12]}... is missing from the session's store "
                f"({self.store.url}); was the session's data removed while it ran?"
            ) from None
        obj = loads(payload)
        if hasattr(obj, "flags"):  # an array: shared by the calls, so no call may change it
            obj.flags.writeable = False
        size = _shareable_size(obj)
        self._objects[name] = (obj, size)
        self._bytes += size
        while self._bytes > self.max_bytes and len(self._objects) > 1:
            _, (_, dropped) = self._objects.popitem(last=False)
            self._bytes -= dropped
        return obj
