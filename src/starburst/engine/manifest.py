"""The run manifest: the JSON record that describes one run to its workers."""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import cloudpickle

from .._version import __version__
from .records import decode_record, to_json

#: How a worker calls the function on an item: ``fn(item)``, ``fn(*item)``, or an item that
#: carries its own function and arguments (``Executor.submit``).
CallStyle = Literal["single", "star", "task"]


def runtime_versions() -> dict[str, str]:
    """The versions that must agree between the client and the workers."""
    return {
        "python": platform.python_version(),
        "cloudpickle": cloudpickle.__version__,
        "starburst": __version__,
    }


@dataclass
class RunManifest:
    """The record at ``sessions/<sid>/runs/<rid>.json``.

    ``state`` is ``open`` while chunks are still being uploaded (``n_chunks`` is then the
    planned count, or ``None`` for an input of unknown length), ``sealed`` once ``n_chunks``
    is final, and ``cancelled`` when the client gave up on the run.
    """

    run_id: str
    call: CallStyle
    retries: int
    seed: int | None = None
    state: str = "open"
    n_chunks: int | None = None
    n_items: int | None = None
    created: float = field(default_factory=time.time)
    versions: dict[str, str] = field(default_factory=runtime_versions)
    #: Folders the client imports from, for local workers another client started: they
    #: add the missing ones before loading the function.
    import_paths: list[str] = field(default_factory=list)

    @property
    def max_attempts(self) -> int:
        """How many times a chunk may be started before it is recorded as lost."""
        return self.retries + 1

    def encode(self) -> bytes:
        return to_json(self)

    @classmethod
    def decode(cls, data: bytes) -> RunManifest:
        return decode_record(cls, data, "a run's manifest")


@dataclass
class RunFunction:
    """What ``fn.bin`` holds: the function and which of its exceptions to retry."""

    fn: Any
    retry_exceptions: bool | tuple[type[BaseException], ...] = False

    def should_retry(self, exc: BaseException) -> bool:
        if isinstance(self.retry_exceptions, bool):
            return self.retry_exceptions and isinstance(exc, Exception)
        return isinstance(exc, self.retry_exceptions)
