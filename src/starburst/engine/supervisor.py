"""The supervisor of a detached session: it replaces lost workers when no client is there.

Supervision is a role held through a lease (``sessions/<sid>/supervisor.json``, taken with
put-if-absent and renewed with put-if-match, like a chunk's claim). Whoever holds it runs
``step`` every heartbeat: an attached client, or else the first process of any worker, so a
session whose laptop is closed still has one. A step reconciles the control record with what
the backend reports:

1. roster workers that the backend no longer runs have their leases ended and their chunks
   offered to the others (a spot interruption uses up no attempt), and their stripes freed;
2. runs whose every chunk has an output leave the record (the workers then forget them);
3. while work remains and workers are missing, new ones are launched on the free stripes,
   as many as ``max_cost`` still allows (each bills at least a minute), and at most
   ``MAX_LAUNCHES_PER_WORKER`` times the session's workers in all (a session whose workers
   keep dying stops being refilled);
4. once the ledger's cost reaches ``max_cost``, the session's state becomes ``capped`` and
   its deadline now: every worker leaves at its next heartbeat.

Every change is one compare-and-swap of the control record, so a supervisor and a client
never lose each other's writes. If every worker is lost while nobody is attached, the work
waits: the next ``attach`` takes the role and relaunches.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time

from ..backends.base import Backend, LaunchRequest
from ..cost.billing import MINIMUM_SECONDS, ledger_cost
from ..store import NotFound, PreconditionFailed, Store
from .claims import Claim, end_lease
from .control import Control, ControlWriter
from .layout import RunKeys, SessionKeys
from .manifest import RunManifest

log = logging.getLogger("starburst")

#: A session launches at most this many workers per worker it asked for, in all.
MAX_LAUNCHES_PER_WORKER = 4
#: Seconds a new worker may take to show up in the backend's list before it counts as lost.
_SHOW_UP_SECONDS = {"local": 10.0, "fargate": 180.0}


class Supervisor:
    """Runs supervision steps for one session while it holds the supervisor lease."""

    def __init__(self, store: Store, keys: SessionKeys, backend: Backend, holder: str) -> None:
        self.store = store
        self.keys = keys
        self.backend = backend
        self.holder = holder
        self.writer = ControlWriter(store, keys)
        self.notices: list[str] = []

    def try_step(self, lease_seconds: float) -> bool:
        """Run a step if this process holds (or can take) the role; return whether it did."""
        if not self.hold(lease_seconds):
            return False
        self.step()
        return True

    @property
    def _key(self) -> str:
        return f"{self.keys.prefix}supervisor.json"

    def release(self) -> None:
        """Give the role up now (a detaching client), so that a worker takes it at once."""
        with contextlib.suppress(NotFound, PreconditionFailed):
            data, etag = self.store.get_versioned(self._key)
            if Claim.decode(data).worker == self.holder:
                released = Claim(worker=self.holder, attempt=0, expires=0.0, released=True)
                self.store.put_if_match(self._key, released.encode(), etag)

    def hold(self, lease_seconds: float) -> bool:
        """Take or renew the supervisor lease for ``lease_seconds``."""
        key = self._key
        claim = Claim(worker=self.holder, attempt=0, expires=time.time() + lease_seconds)
        try:
            data, etag = self.store.get_versioned(key)
        except NotFound:
            try:
                self.store.put_if_absent(key, claim.encode())
                return True
            except PreconditionFailed:
                return False
        current = Claim.decode(data)
        if current.worker != self.holder and not current.expired(time.time()):
            return False
        try:
            self.store.put_if_match(key, claim.encode(), etag)
        except (PreconditionFailed, NotFound):
            return False
        return True

    def step(self) -> list[str]:
        """Reconcile once; return the ids of the workers it launched."""
        try:
            control = Control.load(self.store, self.keys)
        except NotFound:
            return []  # the session is being removed
        session = control.session
        if session is None or session.state != "open" or session.expired():
            return []
        now = time.time()
        gone = self._lost_workers(control, session.backend, now)
        runs = [m for m in control.runs.values() if m.state != "cancelled"]
        finished = {m.run_id for m in runs if self._finished(m)}
        active = [m for m in runs if m.run_id not in finished]
        requeued = {m.run_id: self._end_leases(m, gone) for m in active} if gone else {}
        live = [w for w in control.roster if w not in gone]
        spent = ledger_cost(control.ledger, session.hourly, now)
        capped = session.max_cost is not None and spent >= session.max_cost
        launched: dict[str, int] = {}
        if active and not capped:
            launched = self._launch(control, live, spent)
        if not (gone or finished or launched or capped):
            return []

        def edit(record: Control) -> None:
            for worker, _ in gone.items():
                record.roster.pop(worker, None)
                if worker in record.ledger and record.ledger[worker].get("stopped") is None:
                    record.ledger[worker]["stopped"] = now
            for run_id, chunks in requeued.items():
                if chunks:
                    record.requeued.setdefault(run_id, {}).update(chunks)
            for run_id in finished:
                record.runs.pop(run_id, None)
                record.requeued.pop(run_id, None)
            record.roster.update(launched)
            record.ledger.update(
                {w: {"launched": now, "stopped": None, "spot": session.spot} for w in launched}
            )
            if capped and record.session is not None:
                record.session.state, record.session.deadline = "capped", now
                self.notices.append(
                    f"session {session.session_id} reached max_cost=${session.max_cost:g} "
                    f"(~${spent:.2f} spent): its workers are stopping"
                )

        self.writer.change(edit)
        if capped:
            self.writer.publish_session()
        return list(launched)

    # Steps -------------------------------------------------------------------------------

    def _lost_workers(self, control: Control, backend: str, now: float) -> dict[str, bool]:
        """Roster workers the backend no longer runs, each with whether its stop uses up an
        attempt (not for a spot interruption)."""
        if not control.roster:
            return {}
        infos = {info.worker_id: info for info in self.backend.find(self.keys.session_id)}
        show_up = _SHOW_UP_SECONDS.get(backend, 60.0)
        gone: dict[str, bool] = {}
        for worker in control.roster:
            info = infos.get(worker)
            if info is None:
                launched = control.ledger.get(worker, {}).get("launched", 0.0)
                if now - launched > show_up:
                    gone[worker] = True
            elif info.state == "stopped":
                gone[worker] = info.fault != "interrupted"
                log.info("worker %s stopped: %s", worker, info.reason)
        return gone

    def _finished(self, manifest: RunManifest) -> bool:
        """Every chunk of a sealed run has its output."""
        if manifest.state != "sealed" or manifest.n_chunks is None:
            return False
        outputs = self.store.list(self.keys.run(manifest.run_id).outputs)
        return sum(1 for _ in outputs) >= manifest.n_chunks

    def _end_leases(self, manifest: RunManifest, gone: dict[str, bool]) -> dict[str, str]:
        """End the lost workers' leases in a run: chunk (as text) -> the worker that held it."""
        keys = self.keys.run(manifest.run_id)
        done = {RunKeys.chunk_of(k) for k in self.store.list(keys.outputs)}
        ended: dict[str, str] = {}
        for key in self.store.list(keys.claims):
            chunk = RunKeys.chunk_of(key)
            if chunk not in done and (holder := end_lease(self.store, keys, chunk, gone)):
                ended[str(chunk)] = holder
        return ended

    def _launch(self, control: Control, live: list[str], spent: float) -> dict[str, int]:
        """Launch workers for the missing ones, on free stripes: worker id -> stripe."""
        session = control.session
        assert session is not None
        missing = session.workers - len(live)
        room = MAX_LAUNCHES_PER_WORKER * session.workers - len(control.ledger)
        count = min(missing, room, self._affordable(session.max_cost, session.hourly, spent))
        if count <= 0:
            if missing > 0 and room <= 0:
                self.notices.append(
                    f"session {session.session_id} launched {len(control.ledger)} workers "
                    "and will launch no more: its workers keep stopping (see `starburst logs`)"
                )
            return {}
        taken = {control.roster[w] for w in live}
        stripes = [s for s in range(session.workers) if s not in taken][:count]
        request = LaunchRequest(self.store.url, session.session_id, session.spec)
        started = self.backend.launch(request, stripes)
        log.info("supervisor %s launched %s", self.holder, ", ".join(started) or "nothing")
        return dict(zip(started, stripes, strict=False))

    @staticmethod
    def _affordable(max_cost: float | None, hourly: dict[str, float] | None, spent: float) -> int:
        """How many more workers fit under ``max_cost``, each owing its first minute."""
        if max_cost is None or not hourly:
            return 1 << 30
        minute = max(hourly.values()) * MINIMUM_SECONDS / 3600
        return max(0, math.floor((max_cost - spent) / minute + 1e-9))
