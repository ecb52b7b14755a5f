"""The supervisor of a detached session: it replaces lost workers when no client is there.

Supervision is a role held through a lease (``sessions/<sid>/supervisor.json``, taken with
put-if-absent and renewed with put-if-match, like a chunk's claim). Whoever holds it runs
``step`` every heartbeat: an attached client, or else the first process of any worker, so a
session whose laptop is closed still has one. A step reconciles the control record with what
the backend reports:

1. roster workers that the backend no longer runs, and those it runs that stopped writing
   heartbeats (hung: they are stopped, ``hangs.py``), have their leases ended and their
   chunks offered to the others (a spot interruption uses up no attempt), their stripes
   freed, and their stop time (the backend's, else their last heartbeat) written to the
   ledger;
2. sealed runs the record does not list (a client died between storing and announcing one)
   are announced; runs whose every chunk has an output, and cancelled ones, leave it;
3. while work remains and workers are missing, new ones are launched on the free stripes,
   as many as ``max_cost`` still allows (each bills at least a minute);
4. once the session's cost reaches ``max_cost``, the session's state becomes ``capped`` and
   its deadline now: every worker leaves at its next heartbeat. The cost is the ledger's
   workers' time, or where the backend reports the instances they run on (EC2), those
   instances' hours: read every ``INSTANCE_READ_SECONDS`` and after a launch, and kept in the
   control record for status calls (``cost/instance_bill.py``);
5. when more workers would not help (one could not start, or
   ``MAX_LAUNCHES_PER_WORKER`` times the session's workers were launched, not counting
   those that died of an item in isolation: its attempts bound those), the session's
   state becomes ``stalled`` with the reason, which ``collect`` raises instead of waiting.

The decisions (who stopped and why, whose chunks go back, how many to launch, when to stall
or cap) are the fleet policy's (``fleet_policy.py``), which the attached client's monitor
shares; this module does the reading and writing.

A worker told to stop (a spot interruption) leaves the roster and runs a step itself before
it goes (``WorkerLoop._hand_off``), so that work goes on even when every worker is
interrupted at once. Every change is one compare-and-swap of the control record, so a
supervisor and a client never lose each other's writes, and none brings back a removed
session. If every worker dies at once without warning while nobody is attached, the work
waits: the next ``attach`` takes the role and relaunches.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

from ..backends.base import Fleet, LaunchRequest, WorkerInfo
from ..cost.instance_bill import INSTANCE_READ_SECONDS, InstanceReading, recorded_cost
from ..errors import StarburstError
from ..store import NotFound, PreconditionFailed, Store
from .claims import Claim, end_lease
from .control import Control, ControlWriter
from .fleet_policy import (
    LaunchBudget,
    ShowUp,
    attempt_cause,
    cap_reached,
    chunks_back,
    launch_count,
    ledger_stop,
    stall_reason,
    stop_times,
    stopped_workers,
    workers_within_cap,
)
from .hangs import stop_hung_workers
from .keys import RunKeys, SessionKeys
from .manifest import RunManifest
from .session_record import SessionRecord
from .status import worker_heartbeats

log = logging.getLogger("starburst")


class Supervisor:
    """Runs supervision steps for one session while it holds the supervisor lease."""

    def __init__(self, store: Store, keys: SessionKeys, fleet: Fleet, holder: str) -> None:
        self.store = store
        self.keys = keys
        self.fleet = fleet
        self.holder = holder
        self.writer = ControlWriter(store, keys)
        self.notices: list[str] = []
        self._step_lock = threading.Lock()
        self._lease_seconds = 30.0

    def try_step(self, lease_seconds: float) -> bool:
        """Run a step if this process holds (or can take) the role; return whether it did."""
        with self._step_lock:  # one step at a time in this process (monitor, upload thread)
            if not self.hold(lease_seconds):
                return False
            self._lease_seconds = lease_seconds
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
        if session is None:
            return []
        now = time.time()
        infos = {info.worker_id: info for info in self._find(control)}
        gone = self._lost_workers(control, infos, session, now)
        listed = [w for w in control.roster if w not in gone and w in infos]
        gone.update(stop_hung_workers(self.store, self.keys, self.fleet, listed, session.timings))
        stopped_at = self._stop_times(gone, infos, now)
        announced = self._announce_missing(control)
        runs = [m for m in control.runs.values() if m.state != "cancelled"] + announced
        # A run's outputs are listed only where they are needed: to see if a sealed run is
        # finished, and which chunks of a lost worker's are done.
        done = {m.run_id: self._outputs(m) for m in runs if gone or m.state == "sealed"}
        finished = {m.run_id for m in runs if _finished(m, done.get(m.run_id, set()))}
        finished |= {m.run_id for m in control.runs.values() if m.state == "cancelled"}
        active = [m for m in runs if m.run_id not in finished]
        back = chunks_back(
            {m.run_id: self._end_leases(m, gone, done[m.run_id]) for m in active if gone}
        )
        live = [w for w in control.roster if w not in gone]
        ledger = {**control.ledger}
        for worker, at in stopped_at.items():
            ledger[worker] = {**ledger.get(worker, {"launched": at, "spot": False}), "stopped": at}
            if worker in back.pinned:  # an item's death: its attempts bound those
                ledger[worker]["item_death"] = True
        fresh = self._read_instances(control, session, now, force=bool(gone or finished))
        reading = fresh or InstanceReading.from_record(control.instances)
        spent = recorded_cost(ledger, session.hourly, reading, now)
        running = session.state == "open" and not session.expired(now)
        capped = running and cap_reached(spent, session.max_cost)
        budget = LaunchBudget.from_ledger(session.workers, ledger)
        stopped = [infos[w] for w in gone if w in infos]
        problem = stall_reason(stopped, len(live), budget, session.session_id) if running else None
        launched: dict[str, int] = {}
        if active and running and not capped and problem is None:
            launched = self._launch(control, live, spent, budget)
        if not (gone or finished or launched or capped or announced or problem or fresh):
            return []

        def edit(record: Control) -> None:
            for worker in gone:
                record.roster.pop(worker, None)
                if worker in record.ledger and record.ledger[worker].get("stopped") is None:
                    record.ledger[worker]["stopped"] = stopped_at[worker]
                    if worker in infos:
                        record.ledger[worker].update(ledger_stop(infos[worker]))
                if worker in record.ledger and worker in back.pinned:
                    record.ledger[worker]["item_death"] = True
            for run_id, chunks in back.requeued.items():
                if chunks:
                    record.requeued.setdefault(run_id, {}).update(chunks)
            for manifest in announced:
                record.runs.setdefault(manifest.run_id, manifest)
            for run_id in finished:
                record.drop_run(run_id)
                if run_id not in record.finished:
                    record.finished.append(run_id)
            if fresh is not None:
                record.instances = fresh.to_record()
            record.roster.update(launched)
            record.ledger.update(
                {w: {"launched": now, "stopped": None, "spot": session.spot} for w in launched}
            )
            if record.session is not None and record.session.state == "open":
                if capped:
                    record.session.state, record.session.deadline = "capped", now
                elif problem is not None:
                    record.session.state, record.session.problem = "stalled", problem

        self.writer.change(edit)
        if capped:
            self.notices.append(
                f"session {session.session_id} reached max_cost=${session.max_cost:g} "
                f"(~${spent:.2f} spent): its workers are stopping"
            )
        if problem is not None:
            self.notices.append(f"session {session.session_id} stalled: {problem}")
        if capped or problem is not None:
            self.writer.publish_session()
        return list(launched)

    # Steps -------------------------------------------------------------------------------

    def _find(self, control: Control) -> list[WorkerInfo]:
        return self.fleet.find(self.keys.session_id) if control.roster else []

    def _read_instances(
        self, control: Control, session: SessionRecord, now: float, force: bool
    ) -> InstanceReading | None:
        """The session's instances read afresh, when the backend reports them (EC2) and a
        read is due: ``INSTANCE_READ_SECONDS`` after the last, after a launch, while the
        workers have no instance yet, and when ``force``d (workers stopped or a run ended:
        a short session's last read)."""
        kept = InstanceReading.from_record(control.instances)
        if kept is not None and not force:
            launched = max((e.get("launched", 0.0) for e in control.ledger.values()), default=0.0)
            booting = control.roster and not kept.uses
            if now - kept.read < INSTANCE_READ_SECONDS and launched < kept.read and not booting:
                return None
        try:
            uses = self.fleet.instance_usage(self.keys.session_id, session.created)
        except StarburstError as exc:  # the last read (or the ledger) stands
            log.warning("could not read the session's instances for its cost: %s", exc)
            return None
        if uses is None:
            return None
        if kept is None:
            return InstanceReading(session.created, now, tuple(uses))
        return kept.updated(uses, now)

    def _lost_workers(
        self, control: Control, infos: dict[str, WorkerInfo], session: SessionRecord, now: float
    ) -> dict[str, str | None]:
        """Roster workers the backend no longer runs, each with how it stopped, or ``None``
        when its stop uses up no attempt (a spot interruption)."""
        show_up, memory_mib = session.spec.backend.show_up_seconds, session.memory_mib
        launched = {w: entry.get("launched", 0.0) for w, entry in control.ledger.items()}
        gone: dict[str, str | None] = {}
        for info in stopped_workers(control.roster, infos, ShowUp(show_up, launched, now)):
            gone[info.worker_id] = attempt_cause(info, memory_mib)
            if info.worker_id in infos:
                log.info("worker %s stopped: %s", info.worker_id, info.reason)
        return gone

    def _stop_times(
        self, gone: dict[str, str | None], infos: dict[str, WorkerInfo], now: float
    ) -> dict[str, float]:
        """When each lost worker stopped (``stop_times``: heartbeats are read only if one is)."""
        if not gone:
            return {}
        return stop_times(gone, infos, worker_heartbeats(self.store, self.keys), now)

    def _announce_missing(self, control: Control) -> list[RunManifest]:
        """Sealed runs the control record does not list (their client died between storing
        the manifest and announcing it): they are announced now."""
        known = set(control.runs) | set(control.finished)
        missing = []
        for key in self.store.list(self.keys.runs_prefix):
            run_id = self.keys.run_id_of(key)
            if run_id not in known:
                with contextlib.suppress(NotFound):
                    manifest = RunManifest.decode(self.store.get(key))
                    if manifest.state == "sealed":
                        missing.append(manifest)
        return missing

    def _outputs(self, manifest: RunManifest) -> set[int]:
        """The chunks of a run that are done (their output's end is written)."""
        keys = self.store.list(self.keys.run(manifest.run_id).outputs)
        return {RunKeys.chunk_of(k) for k in keys if RunKeys.part_span(k) is None}

    def _end_leases(
        self, manifest: RunManifest, gone: dict[str, str | None], done: set[int]
    ) -> dict[str, Claim]:
        """End the lost workers' leases in a run: chunk (as text) -> the claim it had."""
        keys = self.keys.run(manifest.run_id)
        ended: dict[str, Claim] = {}
        for key in self.store.list(keys.claims):
            chunk = RunKeys.chunk_of(key)
            if chunk not in done and (claim := end_lease(self.store, keys, chunk, gone)):
                ended[str(chunk)] = claim
        return ended

    def _launch(
        self, control: Control, live: list[str], spent: float, budget: LaunchBudget
    ) -> dict[str, int]:
        """Launch workers for the missing ones, on free stripes: worker id -> stripe."""
        session = control.session
        assert session is not None
        affordable = workers_within_cap(session.max_cost, session.hourly, spent)
        count = launch_count(session.workers - len(live), affordable, budget.room)
        if count <= 0 or not self.hold(self._lease_seconds):  # still the supervisor?
            return {}
        taken = {control.roster[w] for w in live}
        stripes = [s for s in range(session.workers) if s not in taken][:count]
        request = LaunchRequest(self.store.url, session.session_id, session.spec)
        started = self.fleet.launch(request, stripes)
        log.info("supervisor %s launched %s", self.holder, ", ".join(started) or "nothing")
        return dict(zip(started, stripes, strict=False))


def _finished(manifest: RunManifest, done: set[int]) -> bool:
    """Every chunk of a sealed run has its output."""
    return (
        manifest.state == "sealed"
        and manifest.n_chunks is not None
        and len(done) >= manifest.n_chunks
    )
