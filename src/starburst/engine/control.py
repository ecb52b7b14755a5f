"""The session's control record: what clients tell the workers, in one small JSON object.

``sessions/<sid>/control.json`` is written by the client with compare-and-swap (so several
writers never lose each other's changes) and read by workers when they start, at each
heartbeat and whenever they run out of work. It saves every worker from listing the store to
find its work:

- ``heartbeat``: when a client last wrote; attached workers leave when it goes silent.
- ``session``: a copy of the session record (timings, deadline), so that a worker's one read
  at start tells it everything, and a new deadline reaches workers already running.
- ``stripes`` and ``roster``: each worker's stripe index. Slot ``k`` of ``stripes`` claims
  chunks ``k, k + stripes, k + 2 * stripes, ...`` first, so workers rarely race for a chunk.
- ``runs``: each active run's manifest (``manifest.py``): how to call the function, and the
  run's state and chunk count.
- ``requeued``: per run, chunks whose worker stopped, with that worker's id; any worker may
  take them over at once instead of waiting for their leases to run out.
- ``finished``: runs a detached session's supervisor dropped once done.
- ``ledger``: every worker launched, with when, whether on spot, and when it was seen
  stopped: what anyone (a status call, the supervisor's cost cap) prices the session by.
- ``instances``: where workers run on instances billed by the hour (EC2), the session's
  instances as its supervisor last read them (``cost/instance_bill.InstanceReading``): the
  session is then priced by their hours instead of the ledger's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import DamagedRecordError
from ..store import NotFound, PreconditionFailed, Store
from .keys import SessionKeys
from .manifest import RunManifest
from .records import decode_record, record_of, to_json
from .session_record import SessionRecord


@dataclass
class Control:
    """The record at ``sessions/<sid>/control.json``."""

    heartbeat: float = 0.0
    session: SessionRecord | None = None
    stripes: int = 1
    roster: dict[str, int] = field(default_factory=dict)
    runs: dict[str, RunManifest] = field(default_factory=dict)
    requeued: dict[str, dict[str, str]] = field(default_factory=dict)  # run -> chunk -> worker
    ledger: dict[str, dict[str, Any]] = field(default_factory=dict)  # worker -> launched, ...
    finished: list[str] = field(default_factory=list)  # runs done and dropped from ``runs``
    instances: dict[str, Any] | None = None  # the instances as last read (EC2)

    def encode(self) -> bytes:
        return to_json(self)

    @classmethod
    def decode(cls, data: bytes) -> Control:
        control = decode_record(cls, data, "the control record")
        if not isinstance(control.runs, dict):
            raise DamagedRecordError("the control record is damaged: its runs are not a record")
        control.runs = {
            run: record_of(RunManifest, manifest, f"the control record's run {run}")
            for run, manifest in control.runs.items()
        }
        if control.session is not None:
            control.session = SessionRecord.from_dict(control.session)
        return control

    @classmethod
    def load(cls, store: Store, keys: SessionKeys) -> Control:
        """Read the record; ``NotFound`` when the session was closed (or never opened)."""
        return cls.decode(store.get(keys.control))

    def drop_run(self, run_id: str) -> None:
        """Take a run out of the record (with its requeued chunks): workers then drop it."""
        self.runs.pop(run_id, None)
        self.requeued.pop(run_id, None)

    def requeued_chunks(self, run_id: str) -> dict[int, str]:
        """Chunks of a run to take over now, with the worker that held each."""
        return {int(chunk): worker for chunk, worker in self.requeued.get(run_id, {}).items()}


class ControlWriter:
    """The client's side of the record: every change is a compare-and-swap from the last one."""

    def __init__(self, store: Store, keys: SessionKeys) -> None:
        self.store = store
        self.key = keys.control
        self._session_key = keys.session
        self.control = Control()
        self._etag: str | None = None
        self._lock = threading.Lock()

    def create(self, edit: Callable[[Control], None]) -> None:
        """Write the session's first record (``edit`` applied to an empty one)."""
        self._write(edit, create=True)

    def change(self, edit: Callable[[Control], None]) -> None:
        """Apply ``edit`` and write the record with a fresh heartbeat.

        When another writer changed the record in between, ``edit`` is applied again to its
        version, so that neither change is lost. Raises ``NotFound`` when the record is
        gone (the session was removed): a change never brings it back.
        """
        self._write(edit, create=False)

    def _write(self, edit: Callable[[Control], None], create: bool) -> None:
        with self._lock:
            if self._etag is None and not create:  # a writer new to the record: read it
                data, self._etag = self.store.get_versioned(self.key)
                self.control = Control.decode(data)
            edit(self.control)
            while True:
                self.control.heartbeat = time.time()
                data = self.control.encode()
                try:
                    if self._etag is None:
                        self._etag = self.store.put_if_absent(self.key, data)
                    else:
                        self._etag = self.store.put_if_match(self.key, data, self._etag)
                    return
                except (PreconditionFailed, NotFound):
                    current, self._etag = self.store.get_versioned(self.key)  # or NotFound
                    self.control = Control.decode(current)
                    edit(self.control)

    def load(self) -> Control:
        """Read the record as it is now (``NotFound`` when the session was closed)."""
        with self._lock:
            data, self._etag = self.store.get_versioned(self.key)
            self.control = Control.decode(data)
            return self.control

    def publish_session(self) -> None:
        """Copy the record's session into ``session.json``, the copy people read.

        The control record is the authority; this copy is written with compare-and-swap
        from the freshest control record read *after* the copy's version, so that two
        writers never leave an older deadline or state behind.
        """
        while True:
            try:
                _, etag = self.store.get_versioned(self._session_key)
                session = self.load().session
            except NotFound:
                return  # the session is being removed
            if session is None:
                return
            try:
                self.store.put_if_match(self._session_key, session.encode(), etag)
                return
            except PreconditionFailed:
                continue

    def beat(self) -> None:
        """Refresh the heartbeat only."""
        self.change(lambda control: None)
