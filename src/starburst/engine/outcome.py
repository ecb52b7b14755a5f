"""What a chunk produces: results, and a record for each item that failed.

The worker builds a ``ChunkOutput``; the client turns each ``ItemFailure`` back into the
original exception, with the remote traceback chained as ``__cause__`` (as
``concurrent.futures`` does) and a note naming the item's index and input.
"""

from __future__ import annotations

import os
import pickle
import reprlib
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cloudpickle

from ..errors import (
    OutOfMemoryError,
    RemoteBaseException,
    RemoteError,
    RemoteKeyboardInterrupt,
    RemoteSystemExit,
    RemoteTraceback,
    ResultUnpicklingError,
    WorkerLostError,
)
from ..salvage import Unloadable, find_unloadable, loads_salvaging
from ..serialize import PICKLING_ERRORS, loads
from ..store.base import Buffer

_PACKAGE_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "")
_short = reprlib.Repr()
_short.maxstring = 80
_short.maxother = 80


@dataclass
class ItemFailure:
    """One item's failure as it travels from the worker to the client."""

    index: int
    type_name: str
    message: str
    traceback: str
    where: str  # "item 7 (input: 7)", or "the call f(1, 2)" for a submitted call
    worker: str
    exception: bytes | None = None  # the pickled exception, when it pickles
    lost: bool = False  # the item's workers died; no user code raised
    unloadable: bool = False  # the item's result came back but cannot be unpickled here

    @classmethod
    def from_exception(
        cls, index: int, item: Any, exc: BaseException, worker: str, task: bool = False
    ) -> ItemFailure:
        """Record ``exc`` raised by the user's function on ``item`` (a submitted call: ``task``)."""
        try:
            pickled = cloudpickle.dumps(exc)
            pickle.loads(pickled)
        except PICKLING_ERRORS:
            pickled = None
        return cls(
            index=index,
            type_name=f"{type(exc).__module__}.{type(exc).__qualname__}",
            message=_safe_str(exc),
            traceback=_user_traceback(exc),
            where=describe_call(item) if task else f"item {index} (input: {_safe_repr(item)})",
            worker=worker,
            exception=pickled,
        )

    @classmethod
    def worker_lost(
        cls, index: int, item: Any, reason: str, out_of_memory: bool = False
    ) -> ItemFailure:
        """Record an item that stopped every worker that ran it (``reason`` says how)."""
        where = f"item {index} (input: {_safe_repr(item)})"
        kind = "OutOfMemoryError" if out_of_memory else "WorkerLostError"
        return cls(index, kind, reason, "", where, "", lost=True)

    def to_exception(self, as_raised: bool = False) -> BaseException:
        """The exception to hand to the user, chained to its remote traceback.

        A ``SystemExit``, ``KeyboardInterrupt`` or other ``BaseException`` that is not an
        ``Exception`` comes back as a ``RemoteBaseException`` stand-in, so that a ``map``
        neither exits the client nor passes for a Ctrl-C; with ``as_raised`` (the Executor's
        futures: ``concurrent.futures`` hands back what the call raised) it comes back as
        itself.
        """
        if self.unloadable:
            return ResultUnpicklingError(self.message)
        if self.lost:
            lost = OutOfMemoryError if self.type_name == "OutOfMemoryError" else WorkerLostError
            return lost(
                f"{self.where or f'item {self.index}'} was not computed: {self.message}. "
                "Raise retries= to try more often, or read the workers' logs for why they died."
            )
        exc: BaseException | None = None
        if self.exception is not None:
            try:
                exc = pickle.loads(self.exception)
            except PICKLING_ERRORS:
                exc = None
        if exc is None:
            exc = RemoteError(self.type_name, self.message)
        elif not isinstance(exc, Exception) and not as_raised:
            exc = _stand_in(exc, self.type_name, self.where)
        exc.__cause__ = RemoteTraceback(self.traceback)
        exc.add_note(f"starburst: raised by {self.where} on worker {self.worker}")
        return exc

    @classmethod
    def unloadable_result(cls, index: int, worker: str, problem: Unloadable) -> ItemFailure:
        """Record an item whose result came back from ``worker`` but cannot be unpickled."""
        message = (
            f"the result of item {index} (computed on worker {worker}) cannot be unpickled "
            f"here: {problem}. Return plain data (numbers, strings, lists, dicts, arrays), "
            "or make sure what the function returns can be unpickled where its results are "
            "collected (its modules installed here too)."
        )
        return cls(index, "ResultUnpicklingError", message, "", "", worker, unloadable=True)


def _stand_in(exc: BaseException, type_name: str, where: str) -> RemoteBaseException:
    """The ``Exception`` that stands for a ``SystemExit``, ``KeyboardInterrupt`` or other
    ``BaseException`` the function raised, so that the client neither exits nor stops on it."""
    raised = f"{where} raised {_safe_repr(exc)}"
    if isinstance(exc, SystemExit):
        return RemoteSystemExit(
            type_name,
            f"{raised} (sys.exit() in the function): that item failed, and the client does "
            "not exit. To end an item early, return a value or raise an ordinary exception.",
            exc.args,
        )
    if isinstance(exc, KeyboardInterrupt):
        return RemoteKeyboardInterrupt(
            type_name,
            f"{raised} in the function on its worker (not a Ctrl-C of yours): that item failed.",
            exc.args,
        )
    return RemoteBaseException(
        type_name,
        f"{raised}, a BaseException that is not an Exception, in the function: that item "
        "failed, and the client goes on.",
        exc.args,
    )


def _user_traceback(exc: BaseException) -> str:
    """The traceback of ``exc`` and of the exceptions chained to it, without starburst's own
    frames (the worker's, or those of a starburst call the function made)."""
    shown = traceback.TracebackException.from_exception(exc)
    pending = [shown]
    while pending:
        each = pending.pop()
        frames = [frame for frame in each.stack if not frame.filename.startswith(_PACKAGE_DIR)]
        each.stack = traceback.StackSummary.from_list(frames)
        pending += [e for e in (each.__cause__, each.__context__) if e is not None]
        pending += each.exceptions or []
    return "".join(shown.format())


def describe_call(task: Any) -> str:
    """A submitted call ``(fn, args, kwargs)`` as users wrote it: ``the call f(1, b=2)``.
    A call still pickled (as workers get it) is not unpickled to say so: the client, which
    holds the call, names it."""
    if isinstance(task, bytes):
        return "a submitted call"
    try:
        fn, args, kwargs = task
        shown = [_safe_repr(a) for a in args] + [f"{k}={_safe_repr(v)}" for k, v in kwargs.items()]
        return f"the call {getattr(fn, '__qualname__', repr(fn))}({', '.join(shown)})"
    except Exception:
        return f"the call {_safe_repr(task)}"


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return "<exception str() failed>"  # as the traceback module shows it


def _safe_repr(item: Any) -> str:
    try:
        return _short.repr(item)
    except Exception:
        return f"<unrepresentable {type(item).__name__}>"


def decode_output(payload: Buffer) -> Any:
    """A chunk's output record (a ``ChunkOutput``: its end, or one of its parts) from its payload.

    A result the client cannot unpickle (its class exists only on the worker, or its own
    unpickling fails) fails its item with ``ResultUnpicklingError``, and the chunk's other
    items keep their results: when the one quick decode fails, the record is decoded again
    the slow way that salvages, and each result is checked.
    """
    try:
        return loads(payload)
    except PICKLING_ERRORS:
        output = loads_salvaging(payload)
        if not isinstance(output, ChunkOutput):
            raise
    for offset, value in enumerate(output.results):
        problem = find_unloadable(value)
        if problem is not None:
            index = output.start + offset
            output.results[offset] = None
            output.failures[index] = ItemFailure.unloadable_result(index, output.worker, problem)
    return output


@dataclass
class ChunkOutput:
    """The record at ``out/<chunk>`` (the chunk's end) or at one of its parts: one slot per
    item from item ``start`` (the ``offset``-th of its chunk), and the failures by index."""

    start: int
    results: list[Any]
    failures: dict[int, ItemFailure] = field(default_factory=dict)
    worker: str = ""
    attempt: int = 0
    seconds: float = 0.0  # how long its items took, wall clock (``engine/item_times.py``)
    offset: int = 0  # where ``results`` begin in the chunk
    #: When it was written (epoch seconds; 0 from a worker older than this field): its
    #: items ran from ``ended - seconds`` to ``ended``, for a run's timeline (``report/``).
    ended: float = 0.0
    #: Its items' times as blocks ``(items, seconds)``, in order: the worker reads the clock
    #: between blocks of a few milliseconds, so a slow item is a block of its own.
    blocks: Sequence[tuple[int, float]] = ()

    @property
    def end(self) -> int:
        """The chunk offset after its last item."""
        return self.offset + len(self.results)

    def from_offset(self, offset: int) -> ChunkOutput:
        """The same output without its items before chunk offset ``offset`` (another output
        delivered those already)."""
        skip = offset - self.offset
        if skip <= 0:
            return self
        start = self.start + skip
        failures = {i: f for i, f in self.failures.items() if i >= start}
        seconds = self.seconds * (len(self.results) - skip) / max(1, len(self.results))
        return ChunkOutput(
            start, self.results[skip:], failures, self.worker, self.attempt, seconds, offset,
            self.ended, _blocks_after(self.blocks, skip),
        )  # fmt: skip


def _blocks_after(blocks: Sequence[tuple[int, float]], skip: int) -> list[tuple[int, float]]:
    """The item-time blocks ``blocks`` without their first ``skip`` items (a block cut in two
    keeps its share of the time)."""
    kept = []
    for items, seconds in blocks:
        if skip >= items:
            skip -= items
            continue
        kept.append((items - skip, seconds * (items - skip) / items))
        skip = 0
    return kept
