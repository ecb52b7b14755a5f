"""The backend interface: launch workers, describe them, stop them.

A backend knows nothing about runs or chunks: workers find their work in the store.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..options import WorkerSpec

if TYPE_CHECKING:
    from ..cost.prices import PriceBook


@dataclass
class WorkerInfo:
    """What a backend can tell about one worker."""

    worker_id: str
    state: str  # "pending", "running" or "stopped"
    phase: str = ""  # the platform's finer step, e.g. "provisioning", "pulling image"
    exit_code: int | None = None
    reason: str | None = None  # why it stopped, in the backend's words
    fault: str | None = None  # "interrupted" (spot), "out_of_memory" or "failed_to_start"
    started_at: float | None = None
    stopped_at: float | None = None
    billed_from: float | None = None  # when billing began (image pull), if the backend bills
    spot: bool = False  # billed at the spot rate


@dataclass(frozen=True)
class LaunchShortfall:
    """Why a launch started fewer workers than it was asked for, in the platform's words.

    ``kind`` is ``"capacity"`` (none to spare now: worth asking again later), ``"quota"``
    (the account's limit: asking again starts no more until workers stop) or ``"refused"``
    (asking again would not help).
    """

    reason: str
    kind: str


@dataclass(frozen=True)
class LaunchRequest:
    """Everything a worker needs to be told: pointers only, never payloads or credentials.

    ``busy_seconds`` is how long the known work would keep each worker busy, when the
    function's item times are known (a backend may start workers differently for short work).
    """

    store_url: str
    session_id: str
    spec: WorkerSpec
    busy_seconds: float | None = None


class Fleet(ABC):
    """Where workers run."""

    name: str

    #: Why the last ``launch`` started fewer workers than asked (None: it started them all).
    shortfall: LaunchShortfall | None = None

    @abstractmethod
    def launch(self, request: LaunchRequest, stripes: list[int]) -> list[str]:
        """Start one worker per stripe, in one bounded attempt; return the ids of those that
        started (in the same order), and say in ``shortfall`` why any did not.

        A backend that can tell each worker its stripe does (``--index``); the others'
        workers read it from the control record's roster.
        """

    @abstractmethod
    def describe(self, worker_ids: list[str]) -> list[WorkerInfo]:
        """The current state of each worker."""

    @abstractmethod
    def find(self, session_id: str) -> list[WorkerInfo]:
        """Every worker of the session that the platform knows, whoever launched it (this
        process, a client before it, or a supervisor), so that it can be described and stopped."""

    @abstractmethod
    def stop(self, worker_ids: list[str], grace: bool = True) -> None:
        """Stop workers and wait for them to go; stopping a stopped worker is harmless.

        With ``grace``, workers are asked first (SIGTERM) so that they can give back the
        chunks they hold; without it (nothing is in flight) they are stopped at once.
        """

    def stop_then(self, worker_ids: list[str], grace: bool, after: Callable[[], None]) -> None:
        """Stop workers as ``stop`` does, then call ``after`` (here: both before returning)."""
        self.stop(worker_ids, grace)
        after()

    #: Seconds between the client's checks on its workers.
    check_interval: float = 0.05
    #: While checks find nothing new, the pause between them doubles up to this (None: it
    #: stays ``check_interval``); any change brings it back.
    quiet_check_interval: float | None = None

    @abstractmethod
    def log_tail(self, worker_id: str, lines: int = 20) -> str:
        """The last lines a worker wrote to its log."""

    def take_notices(self) -> list[str]:
        """What the user should hear about since the last call (quota limits, fallbacks)."""
        return []

    def price_book(self) -> PriceBook | None:
        """What this backend's workers cost, or ``None`` when they cost nothing (local)."""
        return None

    def quota_room(self, spec: WorkerSpec) -> tuple[int, str] | None:
        """How many more workers of ``spec`` the platform's quota lets start now, with a
        short description of that quota; ``None`` when no quota applies or it is unknown."""
        return None
