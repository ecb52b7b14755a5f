"""starburst's error hierarchy: every error names what went wrong and how to fix it."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .env.capture import Problem


class StarburstError(Exception):
    """Base class of every error starburst raises on its own account."""


class ConfigurationError(StarburstError, ValueError):
    """A bad argument or setting, found before anything was launched."""


class LengthMismatchError(ConfigurationError):
    """Several iterables of different lengths were given with ``strict=True``."""


class SerializationError(StarburstError, TypeError, pickle.PicklingError):
    """The function, an item or a result cannot be serialized (a ``TypeError`` and a
    ``pickle.PicklingError``, as the standard library raises)."""


class ResultUnpicklingError(SerializationError, pickle.UnpicklingError):
    """An item's result came back but cannot be unpickled on the client (a class only the
    worker has, or an object whose unpickling fails): that item fails, the others do not."""


class WorkerLostError(StarburstError):
    """An item stopped its workers more often than ``retries`` allows (the message says how)."""


class OutOfMemoryError(WorkerLostError, MemoryError):
    """An item's workers were killed for using more memory than they were given (the message
    says how much)."""


class WorkerStartError(StarburstError):
    """Workers keep exiting before they do any work (the message carries their log)."""


class LaunchError(StarburstError):
    """No worker could be launched for a bounded time (the message quotes the platform's
    reason and says what to change)."""


class CredentialsError(StarburstError):
    """No usable AWS credentials (missing, expired or invalid)."""


class AwsPermissionError(StarburstError):
    """AWS refused an action; the message names it."""


class SetupRequiredError(StarburstError):
    """The AWS resources starburst needs are missing: run ``starburst setup``."""


class AwsError(StarburstError):
    """Any other AWS failure, with the operation and AWS's own message."""


class RegistryError(StarburstError):
    """The image registry refused a request; the message has its answer."""


class EnvironmentProblemsError(StarburstError):
    """Some of the local environment cannot reach a Linux worker; the message names each."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(
            f"{len(problems)} package(s) cannot be installed on Linux workers (nothing was "
            f"pushed):\n{lines}\nOr set `image` to an image you built yourself."
        )


class StoreError(StarburstError):
    """The object store failed in a way a retry did not fix."""


class DamagedRecordError(StoreError):
    """A stored record that cannot be read: not JSON, or without what it must hold."""


class NewerRecordError(StarburstError):
    """A stored record written by a newer starburst, in a format this one cannot read."""


class CancelledError(StarburstError):
    """The run was cancelled before it finished."""


class RunTimeoutError(StarburstError, TimeoutError):
    """The call did not finish within its ``timeout``; completed results are kept."""


class CostCapError(StarburstError):
    """The cost cap (``max_cost``) was reached, or would be: completed results are kept."""


class QuotaError(StarburstError):
    """An AWS quota leaves no room for a single worker (the message says how to get more)."""


class SessionNotFoundError(StarburstError, LookupError):
    """No session has that id (it never existed, or was cleaned up)."""


class UnreadableSessionError(StarburstError):
    """A session whose record cannot be read (damaged, or from a newer starburst): it can
    only be cleaned up. ``store`` is where it was found."""

    def __init__(self, message: str, store: Any) -> None:
        super().__init__(message)
        self.store = store


class SessionExpiredError(StarburstError):
    """The session is past its deadline: its workers have stopped."""


class RemoteTraceback(Exception):
    """The traceback of an exception raised on a worker, chained as ``__cause__``."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f"\n\n{self.text}"


class RemoteError(StarburstError):
    """Stands for a worker exception that could not be sent back as itself."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.type_name, self.message))


class RemoteBaseException(RemoteError):
    """The function raised, on a worker, a ``BaseException`` that is not an ``Exception``.

    It fails that item like any other error; it is an ``Exception`` itself, so that it cannot
    pass for the client's own exit or for the user's Ctrl-C. ``original_args`` are the
    original exception's arguments.
    """

    def __init__(self, type_name: str, message: str, original_args: tuple[Any, ...] = ()) -> None:
        super().__init__(type_name, message)
        self.original_args = original_args

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.type_name, self.message, self.original_args))


class RemoteSystemExit(RemoteBaseException):
    """The function called ``sys.exit()`` (raised ``SystemExit``) on a worker."""

    @property
    def code(self) -> Any:
        """The exit code the function gave, as ``SystemExit.code`` has it."""
        return SystemExit(*self.original_args).code


class RemoteKeyboardInterrupt(RemoteBaseException):
    """The function raised ``KeyboardInterrupt`` on a worker (not a Ctrl-C of the client)."""


@dataclass
class PartialResults:
    """What a failed or interrupted call had completed, attached to the error it raised.

    ``done`` maps an item's input index to its result, ``failed`` maps an index to its
    exception; every other index below ``n_items`` was not computed.
    """

    n_items: int | None
    done: dict[int, Any] = field(default_factory=dict)
    failed: dict[int, BaseException] = field(default_factory=dict)

    @property
    def pending(self) -> list[int]:
        """Indices that have neither a result nor an error (needs a known ``n_items``)."""
        if self.n_items is None:
            return []
        return [i for i in range(self.n_items) if i not in self.done and i not in self.failed]

    def to_list(self, fill: Any = None) -> list[Any]:
        """Results in input order, ``fill`` where an item has no result."""
        size = self.n_items if self.n_items is not None else max(self.done, default=-1) + 1
        return [self.done.get(i, fill) for i in range(size)]


def attach_partial(exc: BaseException, partial: PartialResults) -> BaseException:
    """Attach ``partial`` to ``exc`` as ``exc.starburst_results`` and say so in a note."""
    try:
        exc.starburst_results = partial  # type: ignore[attr-defined]
    except (AttributeError, TypeError):  # exceptions with __slots__
        return exc
    exc.add_note(
        f"starburst: {len(partial.done)} completed results are kept in "
        "`exc.starburst_results` (a starburst.PartialResults)."
    )
    return exc
