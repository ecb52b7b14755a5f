"""A session's status, read from the store alone: the same answer from any process.

It costs a few list requests per run (``out/`` and ``failed/`` a thousand chunks per
request) and one read per chunk that has failures, never a read of every output.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from ..cost.instance_bill import InstanceReading, recorded_cost
from ..errors import DamagedRecordError, NewerRecordError
from ..store import NotFound, Store
from .control import Control
from .keys import RunKeys, SessionKeys
from .manifest import RunManifest
from .records import from_json
from .session_record import SessionRecord, created_from_id

#: Session states, as ``status`` and ``list_sessions`` show them.
STATES = {
    "idle": "nothing submitted yet",
    "running": "work left, workers up",
    "waiting": "work left, no worker up: attaching relaunches them",
    "done": "every item has a result or an error",
    "capped": "stopped at max_cost",
    "stalled": "more workers would not help (they cannot start, or keep dying)",
    "expired": "past its deadline: its workers stopped",
    "attached": "a Cluster or map whose client is alive",
    "abandoned": "a Cluster or map whose client died: `starburst sessions cleanup` removes it",
    "closed": "being removed",
    "damaged": "a record cannot be read (`problem` says which): cleanup still removes it",
}


@dataclass
class RunStatus:
    """Progress of one run."""

    run_id: str
    kind: str  # "map", or "call" for a single submitted call
    state: str  # "running", "done" or "cancelled"
    items: int
    done: int  # items with a result
    failed: int  # items whose function raised, or whose workers were lost
    pending: int
    created: float
    eta_seconds: float | None

    def __str__(self) -> str:
        eta = "" if self.eta_seconds is None else f", ETA {_duration(self.eta_seconds)}"
        return (
            f"{self.run_id} ({self.kind}): {self.done}/{self.items} done, {self.failed} failed, "
            f"{self.pending} pending, {self.state}{eta}"
        )


@dataclass
class SessionStatus:
    """What ``Session.status()`` and ``starburst sessions status`` report."""

    session_id: str
    backend: str
    state: str
    created: float
    deadline: float
    workers: int  # workers up now (by their heartbeats)
    workers_requested: int
    cost: float | None  # dollars so far; None where workers cost nothing
    runs: list[RunStatus] = field(default_factory=list)
    problem: str | None = None  # why a stalled session stalled
    cost_alert: float | None = None
    phases: dict[str, int] = field(default_factory=dict)  # workers: starting, running, stopped

    @property
    def items(self) -> int:
        return sum(run.items for run in self.runs)

    @property
    def finished(self) -> int:
        """Items with a result or an error."""
        return sum(run.done + run.failed for run in self.runs)

    def to_dict(self) -> dict[str, Any]:
        """The status as plain data (what ``--json`` prints)."""
        return asdict(self)

    def __str__(self) -> str:
        if self.state == "damaged":
            return (
                f"session {self.session_id}: damaged: {self.problem}. "
                f"`starburst sessions cleanup {self.session_id}` removes it"
            )
        cost = "" if self.cost is None else f", ~${self.cost:.4f} so far"
        if self.cost is not None and self.cost_alert is not None and self.cost >= self.cost_alert:
            cost += f" (past cost_alert=${self.cost_alert:g})"
        left = self.deadline - time.time()
        until = f"deadline in {_duration(left)}" if left > 0 else "past its deadline"
        lines = [
            f"session {self.session_id} on {self.backend}: {self.state} "
            f"({self.finished}/{self.items} items, {self.workers}/{self.workers_requested} "
            f"workers up{cost}; {until})"
        ]
        if self.problem:
            lines.append(f"  {self.state}: {self.problem}")
        lines += [f"  {run}" for run in self.runs]
        return "\n".join(lines)


def read_status(store: Store, session_id: str, now: float | None = None) -> SessionStatus:
    """The session's status; ``NotFound`` when it has no record. A session with a record
    that cannot be read (damaged, or written by a newer starburst) is ``damaged``, with the
    reason as its ``problem``: one bad session never hides the others."""
    try:
        return _read_status(store, session_id, now)
    except (DamagedRecordError, NewerRecordError) as exc:
        created = created_from_id(session_id)
        return SessionStatus(
            session_id, "?", "damaged", created, created, 0, 0, None, problem=str(exc)
        )


def _read_status(store: Store, session_id: str, now: float | None) -> SessionStatus:
    now = time.time() if now is None else now
    keys = SessionKeys(session_id)
    record = SessionRecord.load(store, session_id)
    try:
        control: Control | None = Control.load(store, keys)
    except NotFound:
        control = None
    session = control.session if control is not None and control.session else record
    runs = [run_status(store, keys, m, now) for m in run_manifests(store, keys)]
    phases: dict[str, int] = {}
    cost = None
    if control is not None:
        phases, beats = worker_phases(store, keys, session, control, now)
        cost = session_cost(session, control, beats, now)
    roster = phases.get("starting", 0) + phases.get("running", 0)
    state = _state(session, control, runs, roster, now)
    return SessionStatus(
        session_id, session.backend, state, session.created, session.deadline, roster,
        session.workers, cost, runs, session.problem, session.cost_alert, phases,
    )  # fmt: skip


def worker_heartbeats(store: Store, keys: SessionKeys) -> dict[str, tuple[float, bool]]:
    """Each worker's last heartbeat (over its processes), and whether all of them exited."""
    records = list(store.list(keys.workers_prefix))
    found: dict[str, tuple[float, bool]] = {}
    with ThreadPoolExecutor(max(1, min(16, store.parallelism))) as pool:
        for key, record in zip(records, pool.map(read_or_none(store), records), strict=True):
            if record is None:
                continue
            worker = key[len(keys.workers_prefix) :].rsplit(".", 2)[0]  # <id>.<process>.json
            beat, exited = found.get(worker, (0.0, True))
            heartbeat, state = record.get("heartbeat", 0.0), record.get("state")
            found[worker] = (max(beat, heartbeat), exited and state == "exited")
    return found


def worker_phases(
    store: Store, keys: SessionKeys, session: SessionRecord, control: Control, now: float
) -> tuple[dict[str, int], dict[str, tuple[float, bool]]]:
    """How many workers are ``starting`` (launched too recently to have written a
    heartbeat), ``running`` (a recent heartbeat) and ``stopped`` (every other one launched),
    and every worker's last heartbeat."""
    fresh = 3 * session.timings.heartbeat
    beats = worker_heartbeats(store, keys)
    running = {w for w, (beat, exited) in beats.items() if not exited and now - beat < fresh}
    starting = set()
    for worker in control.roster:
        launched = control.ledger.get(worker, {}).get("launched", 0.0)
        if worker not in beats and now - launched < max(60.0, fresh):
            starting.add(worker)
    stopped = (set(control.ledger) | set(beats)) - running - starting
    return {"starting": len(starting), "running": len(running), "stopped": len(stopped)}, beats


def session_cost(
    session: SessionRecord, control: Control, beats: dict[str, tuple[float, bool]], now: float
) -> float | None:
    """Dollars so far: the instances' hours as last read where the workers run on instances
    (EC2), else each worker's, one not yet seen stopped but silent to its last heartbeat."""
    reading = InstanceReading.from_record(control.instances)
    if not session.hourly and reading is None:
        return None
    fresh = 3 * session.timings.heartbeat
    ledger = {}
    for worker, entry in control.ledger.items():
        beat, exited = beats.get(worker, (now, False))
        if entry.get("stopped") is None and (exited or now - beat > fresh):
            entry = {**entry, "stopped": max(beat, entry["launched"])}
        ledger[worker] = entry
    return recorded_cost(ledger, session.hourly, reading, now)


def read_or_none(store: Store) -> Callable[[str], dict[str, Any] | None]:
    """A reader of a JSON record by key: None when it is missing, damaged or not an object."""

    def read(key: str) -> dict[str, Any] | None:
        try:
            record = from_json(store.get(key), key)
        except (NotFound, DamagedRecordError):
            return None
        return record if isinstance(record, dict) else None

    return read


def run_manifests(store: Store, keys: SessionKeys) -> list[RunManifest]:
    """The session's runs, in submission order."""
    return [RunManifest.decode(store.get(key)) for key in store.list(keys.runs_prefix)]


def run_status(store: Store, keys: SessionKeys, manifest: RunManifest, now: float) -> RunStatus:
    """One run's progress, from its listings."""
    run_keys = keys.run(manifest.run_id)
    kind = "call" if manifest.call == "task" else "map"
    items = manifest.n_items or 0
    ended: set[int] = set()  # chunks whose output's end is written
    parts: dict[int, list[tuple[int, int]]] = {}  # other chunks: the items their parts hold
    for key in store.list(run_keys.outputs):
        span = RunKeys.part_span(key)
        if span is None:
            ended.add(RunKeys.chunk_of(key))
        else:
            parts.setdefault(RunKeys.chunk_of(key), []).append(span)
    sizes = _chunk_sizes(store, run_keys, manifest)
    failed_items: set[int] = set()  # (two workers may have written the same items)
    for key in store.list(run_keys.failed):  # written by the output's writer, after it
        failed_items.update(from_json(store.get(key))["items"])
    failed = len(failed_items)
    finished = sum(sizes.get(chunk, 0) for chunk in ended)
    if not sizes and manifest.n_chunks:  # no chunk sizes stored: count chunks as average
        finished = round(items * len(ended) / manifest.n_chunks)
    finished += sum(_covered(spans) for chunk, spans in parts.items() if chunk not in ended)
    pending = max(0, items - finished)
    state = "cancelled" if manifest.state == "cancelled" else "running" if pending else "done"
    eta = None
    if pending and finished and state == "running":
        eta = (now - manifest.created) / finished * pending
    return RunStatus(
        manifest.run_id, kind, state, items, finished - failed, failed, pending,
        manifest.created, eta,
    )  # fmt: skip


def _covered(spans: list[tuple[int, int]]) -> int:
    """How many items the parts ``spans`` of one chunk hold (they may overlap)."""
    covered = end = 0
    for lo, hi in sorted(spans):
        covered += max(0, hi - max(lo, end))
        end = max(end, hi)
    return covered


def _chunk_sizes(store: Store, keys: RunKeys, manifest: RunManifest) -> dict[int, int]:
    """Each chunk's item count, from the run's stored chunk starts (detached runs)."""
    try:
        starts: list[int] = from_json(store.get(keys.starts))["starts"]
    except NotFound:
        return {}
    if not starts:
        return {}
    ends = [*starts[1:], manifest.n_items or 0]
    return {chunk: end - start for chunk, (start, end) in enumerate(zip(starts, ends, strict=True))}


def _state(
    session: SessionRecord,
    control: Control | None,
    runs: list[RunStatus],
    roster: int,
    now: float,
) -> str:
    if control is None:
        return "closed"
    if session.attached:
        timeout = session.timings.client_timeout or 60.0
        return "attached" if now - control.heartbeat <= 3 * timeout else "abandoned"
    if runs and all(run.state != "running" for run in runs):
        return "done"  # even past the deadline: its results are all there
    if session.state in ("capped", "stalled"):
        return session.state
    if session.expired(now):
        return "expired"
    if not runs:
        return "idle"
    return "running" if roster else "waiting"


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
