"""What a chunk produces: results, and a record for each item that failed.

The worker builds a ``ChunkOutput``; the client turns each ``ItemFailure`` back into the
original exception, with the remote traceback chained as ``__cause__`` (as
``concurrent.futures`` does) and a note naming the item's index and input.
"""

from __future__ import annotations

import pickle
import reprlib
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cloudpickle

from ..errors import OutOfMemoryError, RemoteError, RemoteTraceback, WorkerLostError

_WORKER_DIR = str(Path(__file__).resolve().parent.parent / "worker")
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

    @classmethod
    def from_exception(
        cls, index: int, item: Any, exc: BaseException, worker: str, task: bool = False
    ) -> ItemFailure:
        """Record ``exc`` raised by the user's function on ``item`` (a submitted call: ``task``)."""
        try:
            pickled = cloudpickle.dumps(exc)
            pickle.loads(pickled)
        except Exception:
            pickled = None
        return cls(
            index=index,
            type_name=f"{type(exc).__module__}.{type(exc).__qualname__}",
            message=str(exc),
            traceback=_user_traceback(exc),
            where=_describe_call(item) if task else f"item {index} (input: {_safe_repr(item)})",
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

    def to_exception(self) -> BaseException:
        """The exception to hand to the user, chained to its remote traceback."""
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
            except Exception:
                exc = None
        if exc is None:
            exc = RemoteError(self.type_name, self.message)
        exc.__cause__ = RemoteTraceback(self.traceback)
        exc.add_note(f"starburst: raised by {self.where} on worker {self.worker}")
        return exc


def _user_traceback(exc: BaseException) -> str:
    """The traceback from the user's code down, without the worker's own frames."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_WORKER_DIR):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _describe_call(task: Any) -> str:
    try:
        fn, args, kwargs = task
        shown = [_safe_repr(a) for a in args] + [f"{k}={_safe_repr(v)}" for k, v in kwargs.items()]
        return f"the call {getattr(fn, '__qualname__', repr(fn))}({', '.join(shown)})"
    except Exception:
        return f"the call {_safe_repr(task)}"


def _safe_repr(item: Any) -> str:
    try:
        return _short.repr(item)
    except Exception:
        return f"<unrepresentable {type(item).__name__}>"


@dataclass
class ChunkOutput:
    """The record at ``out/<chunk>`` (the chunk's end) or at one of its parts: one slot per
    item from item ``start`` (the ``offset``-th of its chunk), and the failures by index."""

    start: int
    results: list[Any]
    failures: dict[int, ItemFailure] = field(default_factory=dict)
    worker: str = ""
    attempt: int = 0
    seconds: float = 0.0  # how long its items took, wall clock (``engine/pacing.py``)
    offset: int = 0  # where ``results`` begin in the chunk

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
            start, self.results[skip:], failures, self.worker, self.attempt, seconds, offset
        )
