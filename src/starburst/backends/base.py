"""What a backend is: a ``Backend`` (one kind of place where workers run, registered by
name in ``registry.py``) and the ``Fleet`` it places for each session (that session's
workers: launch, describe, find, stop, read their logs).

A backend knows nothing about runs or chunks: workers find their work in the store. To add
one, write a folder under ``backends/`` with a ``Backend`` subclass and its ``Fleet``, add
one line to ``registry.py``'s ``BUILT_IN`` (or call ``register``), and run
``tests/test_backend_contract.py`` against it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from ..cost.prices import PriceBook
    from ..engine.keys import SessionKeys
    from ..options import WorkerSpec
    from ..store import Store


#: Where a worker is in its life (``WorkerInfo.state``).
WorkerState = Literal["pending", "running", "stopped"]
#: Why a worker stopped, when the platform can tell (``WorkerInfo.fault``): the provider
#: interrupted it (spot), it ran out of memory, or it never ran.
WorkerFault = Literal["interrupted", "out_of_memory", "failed_to_start"]


@dataclass
class WorkerInfo:
    """What a backend can tell about one worker."""

    worker_id: str
    state: WorkerState
    phase: str = ""  # the platform's finer step, e.g. "provisioning", "pulling image"
    exit_code: int | None = None
    reason: str | None = None  # why it stopped, in the backend's words
    fault: WorkerFault | None = None  # None: a stop the platform did not cause (a crash)
    started_at: float | None = None
    stopped_at: float | None = None
    billed_from: float | None = None  # when billing began (image pull), if the backend bills
    spot: bool = False  # billed at the spot rate
    #: When the platform passed each step before the worker's code ran, where it says (ECS:
    #: createdAt, pullStartedAt, pullStoppedAt; ``started_at`` ends them): for the report.
    created_at: float | None = None
    pull_started_at: float | None = None
    pull_stopped_at: float | None = None


@dataclass(frozen=True)
class InstanceUse:
    """One instance a session's workers ran on (or that started for them and ran none), as
    a backend that runs workers on instances reports it: its size, its life, its own price,
    and the session's part of it."""

    instance_id: str
    instance_type: str
    vcpus: float
    hourly: float  # USD per hour: its type's price (Spot: its zone's), with root volume and IPv4
    launched: float  # epoch seconds
    terminated: float | None  # None while it runs
    share: float = 1.0  # the session's part, when other sessions' tasks ran on it too
    task_vcpu_seconds: float = 0.0  # what the session's tasks used of it (since the session began)
    spot: bool = False  # a Spot instance (else on-demand)
    zone: str = ""  # its availability zone
    workers: tuple[str, ...] = ()  # the session's workers that ran on it


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
    #: What ``quota_room`` reads, as the user's messages name it.
    quota_name: str = "vCPU quota"

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
        """Ask workers to stop; stopping a stopped worker is harmless. A local backend
        waits for its processes to go; a cloud one returns once the platform has the
        request (``describe`` says when they have stopped).

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

    def instance_usage(self, session_id: str, since: float) -> list[InstanceUse] | None:
        """The instances the session's workers ran on since ``since`` (epoch seconds), for a
        cost from instance-hours; ``None`` when workers are billed each on its own (Fargate)
        or cost nothing (local), and the per-worker price stands."""
        return None


@dataclass
class Placement:
    """Where a session lives: its store, its fleet, and how to remove its data."""

    store: Store
    fleet: Fleet
    discard: Callable[[], None]
    #: What another process needs to rebuild the fleet (``Backend.reopen``), kept in the
    #: session's record (``SessionRecord.launch``): JSON, never credentials.
    launch: dict[str, Any] = field(default_factory=dict)


class Backend(ABC):
    """One kind of place where workers run (``backend="local"``, ``"fargate"``, or an
    instance a caller passes): everything the rest of starburst asks about that kind.

    Its traits say how the engine should treat its workers and its store; ``fit`` checks a
    user's sizes; ``place`` and ``reopen`` give a session its store and ``Fleet``.
    """

    #: The name users pass and session records keep.
    name: str
    #: Whether workers run on other machines, across a network store: payloads are
    #: compressed, chunks are few and long, and the client's files are not theirs.
    remote: bool = True
    #: Seconds a launched worker may take to appear in ``Fleet.find`` before it counts as lost.
    show_up_seconds: float = 60.0
    #: The most chunks per slot worth making (a chunk costs a few store requests).
    chunks_per_slot: int = 3
    #: Once an item's time is known, a chunk should take at least this long.
    min_chunk_seconds: float = 1.0
    #: Whether workers can run on spot capacity (``spot=True``).
    offers_spot: bool = False
    #: Whether a worker's memory is capped (``memory=``): one that runs out is stopped by the
    #: platform, and ``WorkerInfo.fault`` says ``"out_of_memory"``.
    limits_memory: bool = False
    #: Whether workers run on instance types the user may choose (``gpus``,
    #: ``instance_types``, ``arch``): see ``fit_instances``.
    chooses_instances: bool = False
    #: Whether instances can outlive a call's workers for the next call (``keep_warm``).
    keeps_warm: bool = False

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<starburst backend {self.name!r}>"

    def default_workers(self) -> int:
        """Workers started when ``workers=`` is not given."""
        return 10

    def fit(
        self, workers: int, cpu: float | None, memory_mib: int | None
    ) -> tuple[int, float | None, int | None]:
        """``workers``, ``cpu`` and ``memory_mib`` as this backend runs them (e.g. memory
        rounded up to a size it offers); refuse with ``ConfigurationError`` (naming the bad
        value and the valid ones) what it cannot run. Called before anything is launched."""
        return workers, cpu, memory_mib

    def fit_instances(self, spec: WorkerSpec) -> None:
        """Refuse with ``ConfigurationError`` the GPUs, instance types or architecture that
        this backend cannot give ``spec``'s workers (by default: any of them, since it
        chooses no instances). Called after ``fit``, before anything is launched."""
        from ..errors import ConfigurationError

        asked = {"gpus": spec.gpus, "instance_types": list(spec.instance_types), "arch": spec.arch}
        for option, value in asked.items():
            if value:
                raise ConfigurationError(
                    f"{option}={value!r} needs a backend that runs workers on instance types "
                    f"you choose, e.g. backend='ec2'; the {self.name} backend does not: "
                    f"leave {option} out, or use backend='ec2'"
                )

    @abstractmethod
    def place(self, spec: WorkerSpec, session_id: str, detached: bool) -> Placement:
        """The store and fleet of a new session (``detached``: it outlives this process)."""

    @abstractmethod
    def reopen(self, session_id: str, store: Store, launch: dict[str, Any]) -> Placement:
        """An existing session's placement, rebuilt in any process from its record."""

    def session_stores(self) -> list[Store]:
        """The stores where this backend's detached sessions live (for ``attach`` by id and
        ``list_sessions``); none when it is not set up here."""
        return []

    def remove_unreadable(self, store: Store, session_id: str) -> None:
        """Stop the workers and delete the data of a session in ``store`` whose record
        cannot be read (so its backend is not known): only what this backend can find
        (by default, nothing)."""
        return None

    def after_client_gone(self, store: Store, keys: SessionKeys) -> None:
        """Called by each worker that leaves an attached session whose client went silent
        (by default, nothing is left to clean up)."""
        return None

    def price_book(self) -> PriceBook | None:
        """What its workers cost, found without launching anything (None: nothing)."""
        return None

    def instances_hourly(
        self, spec: WorkerSpec, workers: int, book: PriceBook
    ) -> tuple[float, tuple[tuple[str, int], ...]] | None:
        """Where workers run on instances billed by the hour (EC2): what the instances
        ``workers`` workers start on cost per hour at ``book``'s prices, and which they are
        ((type, how many), the most first); ``None``: each worker is priced on its own."""
        return None

    def header(self, spec: WorkerSpec, session_id: str) -> str:
        """What the line above the progress bar adds after "N workers x C cpu on ..."."""
        memory = f", {spec.memory_mib / 1024:g} GB" if spec.memory_mib else ""
        kind = "spot" if spec.spot else "on-demand"
        return f" ({kind}{memory}; session {session_id}: `starburst logs {session_id}`)"
