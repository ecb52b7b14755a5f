"""Payload encoding: cloudpickle, optionally zstd-compressed, behind a small header.

Only payloads use this binary form; everything a person reads (manifests, claims, status) is
JSON. Pickled payloads are only ever read from the run's own store.
"""

from __future__ import annotations

import copyreg
import inspect
import io
import linecache
import pickle
import reprlib
import struct
import sys
import types
from collections import ChainMap
from collections.abc import Callable
from typing import Any

import cloudpickle
import zstandard

from .errors import SerializationError
from .store.base import Buffer

#: What pickling or unpickling an object may raise that says the object is at fault (its
#: ``__reduce__``, or what that returns, may even call ``sys.exit()``).
PICKLING_ERRORS = (Exception, SystemExit)

_MAGIC = b"SB1"
_RAW = b"\x00"
_ZSTD = b"\x01"
_OUT_OF_BAND = b"\x02"
_ALIGN = 64
_COMPRESS_MIN_BYTES = 4096


def dumps(
    obj: Any,
    *,
    compress: bool,
    to_client: bool = False,
    persistent_id: Callable[[Any], Any] | None = None,
) -> bytes:
    """Serialize ``obj`` into a payload, compressed when asked and worth it.

    With ``to_client`` (results on their way back), plain pickle is tried first: it is
    faster, and the client, whose ``__main__`` is the user's, finds classes by name;
    cloudpickle serves what plain pickle cannot (lambdas, classes made inside functions).
    ``persistent_id`` may replace objects by references (``pickle.Pickler.persistent_id``),
    which ``loads`` resolves with its ``persistent_load``.
    """
    body = _pickle_by_name(obj) if to_client else None
    if body is None:
        stream = io.BytesIO()
        pickler = _Pickler(stream, protocol=pickle.HIGHEST_PROTOCOL)
        if persistent_id is not None:
            pickler.persistent_id = persistent_id
        pickler.dump(obj)
        body = stream.getvalue()
    if compress and len(body) >= _COMPRESS_MIN_BYTES:
        packed = zstandard.ZstdCompressor(level=3).compress(body)
        if len(packed) < len(body) * 0.9:
            return _MAGIC + _ZSTD + packed
    return _MAGIC + _RAW + body


_reduce_code_by_value = cloudpickle.Pickler.dispatch_table[types.CodeType]


def _reduce_code(code: types.CodeType) -> tuple[Any, ...]:
    """Pickle ``code`` as cloudpickle does, but with its file name and its source lines.

    cloudpickle names every code it pickles by value ``<dynamic-code>``, so a worker's
    traceback of a function from ``__main__`` or a notebook would show neither file nor
    source, and the worker cannot read the client's files. The lines the client has (its
    ``linecache``, where notebooks register their cells) travel with the code instead.
    """
    _, args = _reduce_code_by_value(code)
    lines = [line for _, _, line in code.co_lines() if line is not None]
    first, last = code.co_firstlineno, max(lines, default=code.co_firstlineno)
    source = linecache.getlines(code.co_filename)[first - 1 : last]
    return _load_code, (args, code.co_filename, first, source)


def _load_code(
    args: tuple[Any, ...], filename: str, first: int, source: list[str]
) -> types.CodeType:
    """Inverse of ``_reduce_code``: the code, its source lines registered in ``linecache``."""
    if source:
        _register_source(filename, first, source)
    return types.CodeType(*args).replace(co_filename=filename)


#: Files whose ``linecache`` entry this process made of the lines pickled code brought.
_shipped_files: set[str] = set()


def _register_source(filename: str, first: int, source: list[str]) -> None:
    """Put ``source`` in ``linecache`` as lines ``first`` on of ``filename``, unless this
    process has that file's lines itself (its own file, or a notebook cell it ran); lines of
    that file that other code brought are kept, lines nobody brought are blank."""
    lines: list[str] = []
    if filename in _shipped_files:
        entry = linecache.cache.get(filename)
        lines = list(entry[2]) if entry is not None and len(entry) == 4 else []
    elif linecache.getlines(filename):
        return
    _shipped_files.add(filename)
    lines += ["\n"] * (first - 1 + len(source) - len(lines))
    lines[first - 1 : first - 1 + len(source)] = source
    # No modification time: linecache.checkcache leaves the entry alone (as a notebook's).
    linecache.cache[filename] = (sum(map(len, lines)), None, lines, filename)


class _Pickler(cloudpickle.Pickler):
    """cloudpickle's pickler, whose code pickled by value keeps its file name and source."""

    dispatch_table = ChainMap(
        {types.CodeType: _reduce_code}, *cloudpickle.Pickler.dispatch_table.maps
    )


def _pickle_by_name(obj: Any) -> bytes | None:
    stream = io.BytesIO()
    pickler = pickle.Pickler(stream, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = _result_reducers()
    try:
        pickler.dump(obj)
    except Exception:
        return None
    return stream.getvalue()


#: NumPy scalar types whose value a Python number holds exactly, with that number's type.
_EXACT_SCALARS = {
    "float64": float, "float32": float, "float16": float, "complex128": complex,
    "complex64": complex, "int64": int, "int32": int, "int16": int, "int8": int,
    "uint64": int, "uint32": int, "uint16": int, "uint8": int, "bool_": bool,
}  # fmt: skip
_reducers: dict[type, Callable[[Any], Any]] | None = None


def _result_reducers() -> dict[type, Callable[[Any], Any]]:
    """Pickle's reductions for results: the standard ones, plus NumPy scalars sent as their
    Python value (``numpy.float64(0.5)`` as ``numpy.float64, (0.5,)``), once NumPy has been
    imported. Pickling such a scalar NumPy's own way costs about four times as much, and a
    function's results are often dicts or lists of them."""
    global _reducers
    if _reducers is not None:
        return _reducers
    numpy = sys.modules.get("numpy")
    if numpy is None:
        return copyreg.dispatch_table
    table = dict(copyreg.dispatch_table)
    for name, python_type in _EXACT_SCALARS.items():
        scalar_type = getattr(numpy, name, None)
        if isinstance(scalar_type, type):
            table[scalar_type] = _as_python_value(python_type)
    _reducers = table
    return table


def _as_python_value(python_type: type) -> Callable[[Any], Any]:
    def reduce(scalar: Any) -> tuple[type, tuple[Any]]:
        return type(scalar), (python_type(scalar),)

    return reduce


def dumps_parts(obj: Any, *, compress: bool) -> list[Buffer]:
    """Serialize ``obj`` into a payload made of parts, to be written one after another.

    Uncompressed, large contiguous buffers (NumPy arrays and the like) travel out of band:
    the parts are views of them, not copies, and each starts 64-byte aligned, so that
    ``loads`` of a memory-mapped payload gives arrays that share the mapped pages.
    """
    if compress:
        return [dumps(obj, compress=True)]
    buffers: list[pickle.PickleBuffer] = []
    stream = io.BytesIO()
    _Pickler(stream, protocol=5, buffer_callback=buffers.append).dump(obj)
    if not buffers:
        return [_MAGIC + _RAW, stream.getbuffer()]
    raws = [buffer.raw() for buffer in buffers]
    sizes = [stream.getbuffer().nbytes] + [raw.nbytes for raw in raws]
    header = _MAGIC + _OUT_OF_BAND + struct.pack(f"<I{len(sizes)}Q", len(sizes), *sizes)
    parts: list[Buffer] = [header]
    offset = len(header)
    for part, size in zip([stream.getbuffer(), *raws], sizes, strict=True):
        padding = -offset % _ALIGN
        parts += [bytes(padding), part]
        offset += padding + size
    return parts


def loads(payload: Buffer, persistent_load: Callable[[Any], Any] | None = None) -> Any:
    """Inverse of ``dumps`` and of ``dumps_parts`` joined."""
    stream, buffers = payload_stream(payload)
    if persistent_load is None:
        return pickle.loads(stream, buffers=buffers)
    unpickler = pickle.Unpickler(io.BytesIO(stream), buffers=buffers)
    unpickler.persistent_load = persistent_load  # type: ignore[method-assign]
    return unpickler.load()


def payload_stream(payload: Buffer) -> tuple[Buffer, list[memoryview] | None]:
    """A payload's pickle stream, and its out-of-band buffers if it has them."""
    view = memoryview(payload)
    if view[:3] != _MAGIC:
        raise SerializationError("not a starburst payload (bad header)")
    codec, body = bytes(view[3:4]), view[4:]
    if codec == _ZSTD:
        return zstandard.ZstdDecompressor().decompress(body), None
    if codec == _OUT_OF_BAND:
        return _out_of_band_parts(view)
    if codec != _RAW:
        raise SerializationError(f"unknown payload codec {codec!r}")
    return body, None


def _out_of_band_parts(view: memoryview) -> tuple[memoryview, list[memoryview]]:
    if view.readonly:  # arrays must be writable, as unpickled ones are
        view = memoryview(bytearray(view))
    (count,) = struct.unpack_from("<I", view, 4)
    sizes = struct.unpack_from(f"<{count}Q", view, 8)
    offset, parts = 8 + 8 * count, []
    for size in sizes:
        offset += -offset % _ALIGN
        parts.append(view[offset : offset + size])
        offset += size
    return parts[0], parts[1:]


def unpicklable_function_error(fn: Any, exc: Exception) -> SerializationError:
    """The error for a function that failed to serialize, naming the captured culprit."""
    culprit = _find_unpicklable(fn)
    where = f": {culprit}" if culprit else ""
    return SerializationError(
        f"cannot send {_describe(fn)} to the workers{where} ({type(exc).__name__}: {exc}). "
        "Create that object inside the function instead of capturing it, or pass what it "
        "needs as an argument."
    )


def pickle_call(
    fn: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    share: Callable[[Any], str | None] | None = None,
) -> bytes:
    """A submitted call ``fn(*args, **kwargs)`` pickled on its own: the item a worker gets.

    The worker unpickles it as it runs it (``load_call``), so that an argument that cannot be
    unpickled there, or kills the process doing so, fails that call alone rather than the
    calls sent with it. ``share`` names the large objects sent apart, once per session
    (``engine/shared.py``). Raises ``SerializationError`` when the call cannot be pickled.
    """
    try:
        return dumps((fn, args, kwargs), compress=False, persistent_id=share)
    except PICKLING_ERRORS as exc:
        raise SerializationError(
            f"cannot send the call {_describe(fn)}(...) to the workers "
            f"({type(exc).__name__}: {exc})"
        ) from exc


def load_call(
    payload: bytes, resolve: Callable[[Any], Any] | None = None
) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
    """The call ``pickle_call`` sent, its shared objects found by ``resolve``; one that cannot
    be unpickled here (even by an argument that raises ``SystemExit``) raises
    ``SerializationError`` saying so."""
    try:
        fn, args, kwargs = loads(payload, persistent_load=resolve)
    except PICKLING_ERRORS as exc:
        raise SerializationError(
            f"the call's arguments could not be unpickled on the worker ({type(exc).__name__}: "
            f"{exc}). Pass plain data, or objects whose classes the workers can import."
        ) from exc
    return fn, args, kwargs


def unsendable_item_error(start: int, items: list[Any], exc: Exception) -> SerializationError:
    """The error for a chunk of items (the first at index ``start``) that failed to pickle,
    naming the first item that cannot be sent."""
    index, item = start, items[0] if items else None
    for index, item in enumerate(items, start):  # noqa: B007 - the culprit is kept
        try:
            cloudpickle.dumps(item)
        except Exception as problem:
            exc = problem
            break
    return SerializationError(
        f"cannot send item {index} (input: {reprlib.repr(item)}) to the workers "
        f"({type(exc).__name__}: {exc}). Items must pickle: pass what is needed to build the "
        "object (a path, a URL, parameters) and build it inside the function."
    )


def _describe(fn: Any) -> str:
    name = getattr(fn, "__qualname__", None) or type(fn).__name__
    return f"function {name!r}" if callable(fn) else repr(fn)


def _captured(fn: Any) -> list[tuple[str, Any]]:
    """What a function carries along: defaults, closure cells and the globals it names."""
    inner = inspect.unwrap(fn) if callable(fn) else fn
    found: list[tuple[str, Any]] = []
    code = getattr(inner, "__code__", None)
    if code is None:
        return (
            [(f"attribute {k!r}", v) for k, v in vars(inner).items()]
            if hasattr(inner, "__dict__")
            else []
        )
    for name, cell in zip(
        code.co_freevars, getattr(inner, "__closure__", None) or (), strict=False
    ):
        try:
            found.append((f"captured variable {name!r}", cell.cell_contents))
        except ValueError:  # empty cell
            continue
    module_globals = getattr(inner, "__globals__", {})
    for name in code.co_names:
        if name in module_globals:
            found.append((f"global {name!r}", module_globals[name]))
    for index, default in enumerate(getattr(inner, "__defaults__", None) or ()):
        found.append((f"default argument #{index + 1}", default))
    for name, default in (getattr(inner, "__kwdefaults__", None) or {}).items():
        found.append((f"default argument {name!r}", default))
    return found


def _find_unpicklable(fn: Any) -> str | None:
    for label, value in _captured(fn):
        try:
            cloudpickle.dumps(value)
        except Exception as exc:
            return f"{label} (a {type(value).__module__}.{type(value).__qualname__}) " + (
                f"cannot be pickled: {exc}"
            )
    return None
