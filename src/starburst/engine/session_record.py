"""The session record: what workers read to know their timings, limits and deadline."""

from __future__ import annotations

import calendar
import dataclasses
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigurationError, SessionNotFoundError
from ..options import WorkerSpec, parse_duration
from ..settings import resolve
from ..store import Store
from .keys import SessionKeys
from .manifest import runtime_versions
from .records import from_json, record_of, to_json

DEFAULT_TTL_SECONDS = 24 * 3600
#: The longest a session may live: run data expires from the bucket after seven days
#: (``aws/resources.py``), so a live session's deadline stays a day short of that.
MAX_TTL_SECONDS = 6 * 24 * 3600


def parse_ttl(value: str | int | float) -> float:
    """A session's ``ttl`` in seconds, refused when longer than a session may live."""
    seconds = parse_duration("ttl", value)
    if seconds > MAX_TTL_SECONDS:
        raise ConfigurationError(
            f"ttl={value!r} is longer than a session may live ({MAX_TTL_SECONDS // 86400} days: "
            "its data expires from the bucket a day later); use at most ttl='6d', and "
            "`Session.extend` or a new session for work beyond that"
        )
    return seconds


@dataclass(frozen=True)
class Timings:
    """How often workers poll, heartbeat and renew, and when they give up."""

    lease: float  # seconds a claim stays valid without renewal
    heartbeat: float  # seconds between a worker's heartbeats (and lease renewals)
    poll: float  # seconds between polls when work may be waiting
    max_poll: float  # the longest pause between polls of an idle worker
    orphan_scan: float  # seconds between an idle worker's scans for expired leases
    idle_timeout: float  # an idle worker exits after this long
    client_timeout: float | None  # workers exit when the client is silent this long
    stop_grace: float  # on SIGTERM, seconds a worker may finish its item before it stops
    flush: float = 3.0  # seconds of a chunk's work between the parts of its output

    @classmethod
    def for_store(cls, store: Store, *, attached: bool) -> Timings:
        """Timings that suit the store: tight on a local disk, relaxed on a network store;
        the ``lease`` setting (``STARBURST_LEASE``) chooses the lease, and with it how long a
        silent worker has before it counts as hung (a heartbeat comes at least thrice a lease)."""
        timings = cls._defaults(store, attached)
        lease = resolve("lease")
        if lease is None:
            return timings
        return dataclasses.replace(
            timings, lease=lease, heartbeat=min(timings.heartbeat, lease / 3)
        )

    @classmethod
    def _defaults(cls, store: Store, attached: bool) -> Timings:
        if store.poll_interval < 0.1:  # a local store: polling is nearly free
            return cls(
                lease=15.0, heartbeat=1.0, poll=store.poll_interval, max_poll=0.02,
                orphan_scan=0.2, idle_timeout=300.0 if attached else 60.0,
                client_timeout=10.0 if attached else None, stop_grace=0.0, flush=0.5,
            )  # fmt: skip
        return cls(
            lease=90.0, heartbeat=20.0, poll=store.poll_interval, max_poll=5.0,
            orphan_scan=30.0, idle_timeout=300.0,
            client_timeout=180.0 if attached else None, stop_grace=90.0, flush=3.0,
        )  # fmt: skip


#: A session id is one plain name (``new_session_id`` makes ``sb-YYYYmmdd-HHMMSS-xxxxxx``):
#: never a path, whoever wrote it (a record in the store, the command line).
_SESSION_ID = re.compile(r"sb-[A-Za-z0-9_-]{1,61}")


def check_session_id(value: object, origin: str = "") -> str:
    """``value`` if it is a session id, else ``SessionNotFoundError`` saying what one looks
    like. Every id from outside is checked before it becomes a key, a path or a prefix."""
    if isinstance(value, str) and _SESSION_ID.fullmatch(value):
        return value
    raise SessionNotFoundError(
        f"{value!r}{f' ({origin})' if origin else ''} is not a session id: they look like "
        "sb-20261125-143000-a1b2c3 (`starburst sessions ls` lists yours)"
    )


def new_session_id() -> str:
    """A session id that sorts by creation time and is unique: ``sb-YYYYmmdd-HHMMSS-xxxxxx``."""
    return time.strftime("sb-%Y%m%d-%H%M%S-", time.gmtime()) + secrets.token_hex(3)


def created_from_id(session_id: str) -> float:
    """When a session was created, as its id says (0 for an id of another form)."""
    try:
        return calendar.timegm(time.strptime(session_id[3:18], "%Y%m%d-%H%M%S"))
    except ValueError:
        return 0.0


@dataclass
class SessionRecord:
    """The JSON record at ``sessions/<sid>/session.json``."""

    session_id: str
    backend: str
    workers: int
    cpu: float
    memory_mib: int | None
    timings: Timings
    created: float = field(default_factory=time.time)
    deadline: float = 0.0
    #: Whether the session lives only as long as its client (a ``Cluster``); a detached
    #: session (``starburst.session``) outlives it.
    attached: bool = True
    #: "open"; "capped" once the cost cap stopped it; "stalled" when more workers would not
    #: help (``problem`` says why).
    state: str = "open"
    problem: str | None = None
    spot: bool = False
    #: The instance choices of a backend that offers them (``WorkerSpec``'s fields).
    gpus: int = 0
    instance_types: list[str] = field(default_factory=list)
    arch: str | None = None
    keep_warm: float = 0.0
    max_cost: float | None = None
    cost_alert: float | None = None
    #: Dollars per worker-hour, by "on-demand" and "spot"; None where workers cost nothing.
    hourly: dict[str, float] | None = None
    #: Where those prices came from (``PriceBook.source``), as the report says it.
    prices: str | None = None
    #: What a supervisor needs to launch more workers without the client (never secrets):
    #: the store's URL and the backend's resource names.
    launch: dict[str, Any] = field(default_factory=dict)
    #: The client's Python and serializer versions: workers refuse to start on others.
    versions: dict[str, str] = field(default_factory=runtime_versions)

    def __post_init__(self) -> None:
        if not self.deadline:
            self.deadline = self.created + DEFAULT_TTL_SECONDS

    @property
    def keys(self) -> SessionKeys:
        return SessionKeys(self.session_id)

    @property
    def spec(self) -> WorkerSpec:
        """The workers this session runs (its backend found by name in the registry)."""
        from ..backends.registry import backend_named

        backend = backend_named(self.backend)
        return WorkerSpec(
            backend, self.workers, self.cpu, self.memory_mib, self.spot, self.gpus,
            tuple(self.instance_types), self.arch, self.keep_warm,
        )  # fmt: skip

    def expired(self, now: float | None = None) -> bool:
        """Whether the session is past its deadline (its workers have stopped)."""
        return (time.time() if now is None else now) >= self.deadline

    def set_ttl(self, seconds: float, start: float) -> None:
        """Set the deadline ``seconds`` after ``start``, within ``MAX_TTL_SECONDS`` of creation."""
        latest = self.created + MAX_TTL_SECONDS
        if start + seconds > latest + 1:
            raise ConfigurationError(
                f"a session lives at most {MAX_TTL_SECONDS // 86400} days (its data expires "
                f"from the bucket a day later); this one can run until "
                f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(latest))}. Start a new "
                "session for work beyond that"
            )
        self.deadline = start + seconds

    def encode(self) -> bytes:
        return to_json(self)

    @classmethod
    def decode(cls, data: bytes) -> SessionRecord:
        return cls.from_dict(from_json(data, "the session record"))

    @classmethod
    def from_dict(cls, raw: Any) -> SessionRecord:
        record = record_of(cls, raw, "the session record")
        record.timings = record_of(Timings, record.timings, "the session record's timings")
        return record

    def version_problem(self) -> str | None:
        """Why this process cannot load what the session's client pickles (its Python or
        cloudpickle version differs), or None when they agree."""
        client, mine = self.versions, runtime_versions()
        if (
            client["python"].split(".")[:2] == mine["python"].split(".")[:2]
            and client.get("cloudpickle") == mine["cloudpickle"]
        ):
            return None
        return (
            f"this worker has Python {mine['python']} and cloudpickle {mine['cloudpickle']}, "
            f"but the client of session {self.session_id} has Python {client['python']} and "
            f"cloudpickle {client.get('cloudpickle')}: functions pickled by one cannot be "
            "trusted to load on the other. Use an image with the client's versions (unset "
            "`image` so that starburst builds one, or `starburst env build --force`)"
        )

    @classmethod
    def load(cls, store: Store, session_id: str) -> SessionRecord:
        """The record of ``session_id``; ``SessionNotFoundError`` when the record there
        names another session (it was edited or copied: nothing of it is used)."""
        key = SessionKeys(check_session_id(session_id)).session
        record = cls.decode(store.get(key))
        if record.session_id != session_id:
            raise SessionNotFoundError(
                f"the record {key} in {store.url} names the session {record.session_id!r}, "
                f"not {session_id}: it was edited or copied, and starburst will not use it. "
                f"Look at it, then delete sessions/{session_id}/ and data/{session_id}/ by hand"
            )
        return record
