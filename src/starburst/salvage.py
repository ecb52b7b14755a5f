"""Unpickling what can be unpickled of a payload that ``serialize.loads`` could not load.

A chunk's output carries many results; when one cannot be unpickled here (its class exists
only on the worker, or its unpickling raises), the others must still arrive. The pure-Python
unpickler is slow, so this is only the fallback of the one quick ``loads``.
"""

from __future__ import annotations

import contextlib
import io
import pickle
from collections.abc import Callable
from typing import Any, ClassVar

import cloudpickle

from .serialize import PICKLING_ERRORS, payload_stream
from .store.base import Buffer


def loads_salvaging(payload: Buffer) -> Any:
    """``serialize.loads``, except that each object that cannot be unpickled here (its class or
    function cannot be imported, or calling it fails) comes back as an ``Unloadable``
    that says why, and the rest is unpickled around it. Pure Python: for when ``loads``
    failed."""
    stream, buffers = payload_stream(payload)
    return _SalvagingUnpickler(io.BytesIO(stream), buffers=buffers).load()


class Unloadable:
    """Stands, in what ``loads_salvaging`` returns, for an object that could not be
    unpickled here; ``reason`` says why in a phrase, ``error`` is what was raised."""

    def __init__(self, reason: str, error: BaseException) -> None:
        self.reason = reason
        self.error = error

    def __str__(self) -> str:
        return self.reason

    def _absorb(self, *args: Any, **kwargs: Any) -> Unloadable:
        """What the unpickler does to the object this stands for (call it, fill it) leaves
        the stand-in, and its first error, in place."""
        return self

    __call__ = append = extend = __setitem__ = _absorb


def _raised(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _name_of(obj: Any) -> str:
    kind = obj if callable(obj) else type(obj)
    return f"{getattr(kind, '__module__', '?')}.{getattr(kind, '__qualname__', repr(kind))}"


class _SalvagingUnpickler(pickle._Unpickler):
    """The pure-Python unpickler, with an ``Unloadable`` wherever building an object fails."""

    dispatch: ClassVar[dict[int, Callable[[Any], None]]] = dict(pickle._Unpickler.dispatch)

    # The pure-Python unpickler's working parts, which typeshed leaves out of its stub.
    stack: list[Any]
    append: Callable[[Any], None]

    def find_class(self, module: str, name: str) -> Any:
        try:
            return super().find_class(module, name)
        except PICKLING_ERRORS as exc:
            return Unloadable(f"{module}.{name} cannot be imported here ({_raised(exc)})", exc)

    def _build(self, maker: Any, build: Callable[[], Any]) -> Any:
        if isinstance(maker, Unloadable):
            return maker
        try:
            return build()
        except PICKLING_ERRORS as exc:
            return Unloadable(f"rebuilding it with {_name_of(maker)} raised {_raised(exc)}", exc)

    def load_reduce(self) -> None:
        args = self.stack.pop()
        func = self.stack[-1]
        self.stack[-1] = self._build(func, lambda: func(*args))

    def load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._build(cls, lambda: cls.__new__(cls, *args)))

    def load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._build(cls, lambda: cls.__new__(cls, *args, **kwargs)))

    def load_build(self) -> None:
        inst = self.stack[-2]
        if isinstance(inst, Unloadable):
            self.stack.pop()  # the state of an object that is not there
            return
        try:
            super().load_build()  # type: ignore[misc]  # typeshed lists no load_* methods
        except PICKLING_ERRORS as exc:
            reason = f"setting the state of a {_name_of(inst)} raised {_raised(exc)}"
            self.stack[-1] = Unloadable(reason, exc)

    dispatch[pickle.REDUCE[0]] = load_reduce
    dispatch[pickle.NEWOBJ[0]] = load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex
    dispatch[pickle.BUILD[0]] = load_build


class _Discard:
    """A file that forgets what is written to it."""

    def write(self, data: Any) -> int:
        return len(data)


class _UnloadableFinder(cloudpickle.Pickler):
    """Walks an object as pickling it would, noting the ``Unloadable`` stand-ins it holds
    (nothing is kept: large buffers are not even copied)."""

    def __init__(self) -> None:
        super().__init__(_Discard(), protocol=5, buffer_callback=lambda buffer: None)
        self.found: list[Unloadable] = []

    def persistent_id(self, obj: Any) -> int | None:
        if isinstance(obj, Unloadable):
            self.found.append(obj)
            return len(self.found)
        return None


def find_unloadable(obj: Any) -> Unloadable | None:
    """The first ``Unloadable`` stand-in in ``obj`` (from ``loads_salvaging``), if any."""
    if isinstance(obj, Unloadable):
        return obj
    finder = _UnloadableFinder()
    with contextlib.suppress(Exception):  # what it walked before it stopped is all it can say
        finder.dump(obj)
    return finder.found[0] if finder.found else None
