"""The driver: one session's client side, shared by every front end.

It writes the session record and the control record (``control.py``), launches workers and
gives each a stripe, creates runs, and runs a monitor thread that keeps the client's heartbeat
fresh, notices workers that stopped, ends their leases and offers their chunks to the others
at once (so no chunk waits for a lease to expire), and launches replacements (on the stopped
workers' stripes) while work remains.

A detached session (``starburst.session``) outlives its client, so its workers are watched
and replaced by whoever holds its supervisor lease (``supervisor.py``): this driver while it
is attached, else one of the workers. Closing its driver only detaches.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Callable

from ..backends.base import (
    Fleet,
    LaunchRequest,
    LaunchShortfall,
    Placement,
    WorkerInfo,
)
from ..backends.local.fleet import import_folders
from ..cost.guard import CostGuard, CostLimits
from ..cost.instance_bill import InstanceReading
from ..errors import (
    LaunchError,
    QuotaError,
    SessionNotFoundError,
    StarburstError,
    WorkerStartError,
)
from ..options import RunOptions, WorkerSpec
from ..store import NotFound, PreconditionFailed, Store
from ..threads import BareThread
from .chunking import ChunkStream
from .claims import Claim, end_lease
from .control import Control, ControlWriter
from .fleet_policy import (
    FruitlessExits,
    Judgement,
    LaunchTrouble,
    attempt_cause,
    chunks_back,
    judge_shortfall,
    judge_stop,
    launch_count,
    ledger_stop,
    stopped_workers,
)
from .hangs import stop_hung_workers
from .instance_record import keep_instances
from .manifest import CallStyle, RunManifest
from .records import from_json
from .run import Run
from .session_record import SessionRecord, Timings, new_session_id
from .supervisor import Supervisor

log = logging.getLogger("starburst")

#: How long a recall waits for the recalled workers to stop (locally, ``stop`` waits itself).
_RECALL_WAIT_SECONDS = 10.0
#: How long removing a session waits for its workers to be gone before deleting its data.
_REMOVAL_WAIT_SECONDS = 120.0
#: The order in which worker phases are shown.
_PHASE_ORDER = ("requested", "provisioning", "pulling image", "starting", "pending", "running")


class Driver:
    """One session: its store, its workers and the runs submitted to it."""

    def __init__(
        self, placement: Placement, session: SessionRecord, limits: CostLimits | None = None
    ) -> None:
        self.spec = session.spec
        self._placement = placement
        self.store: Store = placement.store
        self.fleet: Fleet = placement.fleet
        self.session = session
        self.keys = session.keys
        self.control = ControlWriter(self.store, self.keys)
        self.cost = CostGuard(
            session.session_id, self.spec, self.fleet, limits or CostLimits(),
            keep_instances=self._keep_instances,
        )  # fmt: skip
        self.supervisor = (
            None
            if session.attached
            else Supervisor(self.store, self.keys, self.fleet, f"client-{new_session_id()}")
        )
        self.runs: list[Run] = []
        self.workers: dict[str, bool] = {}  # worker id -> still live
        self._stripe_of: dict[str, int] = {}  # worker id -> its stripe index
        self._free_stripes: list[int] = []  # stripes of stopped workers, for replacements
        self._phases: dict[str, str] = {}  # worker id -> its phase (WorkerInfo.phase)
        self.failure: BaseException | None = None
        self._target_workers = 0
        self._busy_seconds: float | None = None  # each worker's share of the known work
        self._next_index = 0
        self._next_run = 0
        self._fruitless = FruitlessExits()  # workers stopping in a row before any work
        self._recalled: set[str] = set()  # workers stopped to hand back a failed run's items
        self._trouble: LaunchTrouble | None = None  # launches falling short, if they are
        self._hung: dict[str, str] = {}  # workers stopped for missing heartbeats -> cause
        self._next_hang_check = 0.0  # (time.monotonic): heartbeats are read every lease/3
        self._lock = threading.RLock()
        self._closed = threading.Event()
        self._monitor: BareThread | None = None
        self._owner_pid = os.getpid()  # a forked child holds a copy it must never close

    @classmethod
    def new(
        cls,
        spec: WorkerSpec,
        limits: CostLimits | None = None,
        *,
        detached: bool = False,
        ttl: float | None = None,
    ) -> Driver:
        """A driver for a new session (not written anywhere until ``start``)."""
        session_id = new_session_id()
        placement = spec.backend.place(spec, session_id, detached)
        session = SessionRecord(
            session_id=session_id,
            backend=spec.backend.name,
            workers=spec.workers,
            cpu=spec.cpu,
            memory_mib=spec.memory_mib,
            timings=Timings.for_store(placement.store, attached=not detached),
            attached=not detached,
            spot=spec.spot,
            gpus=spec.gpus,
            instance_types=list(spec.instance_types),
            arch=spec.arch,
            keep_warm=spec.keep_warm,
            max_cost=(limits or CostLimits()).max_cost,
            cost_alert=(limits or CostLimits()).cost_alert,
            launch=placement.launch,
        )
        if ttl is not None:
            session.set_ttl(ttl, session.created)
        return cls(placement, session, limits)

    @classmethod
    def reopen(cls, placement: Placement, session: SessionRecord) -> Driver:
        """A driver for a session that exists: to collect its runs and supervise it (once
        ``watch`` is called), or to remove it."""
        driver = cls(placement, session)
        with contextlib.suppress(NotFound):  # none: a removal that stopped half-way
            driver.session = driver.control.load().session or session
        taken = [int(name[1:]) for name in driver.store.list_folders(driver.keys.data_prefix)]
        driver._next_run = max(taken, default=-1) + 1  # run ids are also reserved (fn.bin)
        return driver

    def watch(self) -> None:
        """Start supervising a reopened session (its control record must exist)."""
        if self.control.control.session is None:
            raise SessionNotFoundError(
                f"session {self.keys.session_id} is being removed (its control record is gone)"
            )
        self._start_monitor()

    # Lifecycle ---------------------------------------------------------------------------------

    def start(
        self,
        workers: int | None = None,
        *,
        launch: bool = True,
        work: tuple[int, float] | None = None,
    ) -> None:
        """Write the session, start ``workers`` workers (default: the spec's) and the monitor.

        The quota and the cost cap are checked first (with the first run's ``work``, items
        and seconds per item, when it is known): a refusal launches nothing. With
        ``launch=False`` the workers start with the first run instead, so that they find it
        (and its first chunks) the moment they come up.
        """
        try:
            wanted = self.cost.before_launch(
                self.spec.workers if workers is None else workers, work
            )
        except BaseException:  # refused before launch: leave nothing behind (image.json)
            self._placement.discard()
            raise
        if self.cost.meter is not None:
            hourly = self.cost.meter.hourly
            self.session.hourly = {"on-demand": hourly[False], "spot": hourly[True]}
            self.session.prices = self.cost.book.source if self.cost.book is not None else None
        if self.supervisor is not None:  # the supervisor keeps ``workers`` up, the quota's way
            self.session.workers = wanted
        self.store.put(self.keys.session, self.session.encode())
        self._target_workers = wanted
        stripes = self._target_workers * self.spec.processes

        def edit(control: Control) -> None:
            control.session, control.stripes = self.session, stripes

        self.control.create(edit)
        if work is not None:
            self._expect_work(*work)
        if launch and self.supervisor is None:
            try:
                self._launch(self._target_workers)
                self.check_health()  # (no quota at all for a single worker)
            except BaseException:  # leave nothing running, nothing stored
                self.close()
                raise
        self._start_monitor()

    def _keep_instances(self, reading: InstanceReading) -> None:
        """Keep the instances the cost guard read in the store, for a report made later or
        elsewhere (the platform forgets them within the hour); a failed write costs the
        report its instances, never the run."""
        try:
            keep_instances(self.store, self.keys, reading)
        except Exception as exc:  # (a store error of any kind)
            log.warning("could not keep the session's instances for its report: %s", exc)

    def _join_monitor(self) -> None:
        """Wait for the monitor to stop, unless this is the monitor (a finalizer the
        collector ran on its thread)."""
        if self._monitor is not None and not self._monitor.is_current():
            self._monitor.join()

    def _start_monitor(self) -> None:
        self._monitor = BareThread(self._watch)

    def close(self) -> None:
        """Stop every worker, then remove the session's data (a detached session's driver
        only lets go: its workers and data stay).

        In a process forked from this one (a local worker forked from the client, or the
        user's own ``fork``), a copy of the driver whose finalizer the child's garbage
        collector runs does nothing: the monitor, the workers and the data are the parent's.
        """
        if self._closed.is_set() or os.getpid() != self._owner_pid:
            return
        self._closed.set()
        if self.supervisor is not None:
            self._detach()
            return
        busy = False
        for run in self.runs:
            if run.outstanding:
                run.cancelled = busy = True
        self._join_monitor()
        self.store.close()
        with self._lock:  # idle workers hold nothing: they need no time to wind down
            workers = list(self.workers)
            self.workers = dict.fromkeys(self.workers, False)

            def after_stop() -> None:
                self.cost.finish(lambda: self.fleet.describe(workers))
                self._placement.discard()  # once no worker can write any more

            self.fleet.stop_then(workers, busy, after_stop)

    def _detach(self) -> None:
        """Let go of a detached session: stop watching and uploading; the workers go on."""
        for run in self.runs:
            run.close()
        self._join_monitor()
        assert self.supervisor is not None
        with contextlib.suppress(StarburstError):  # else the lease simply runs out
            self.supervisor.release()
        self.store.close()

    def remove(self) -> None:
        """End the session whatever its state: close the control record (workers leave at
        their next heartbeat), stop every worker the backend still runs, delete its data."""
        self._closed.set()
        self._join_monitor()
        for run in self.runs:
            run.cancelled = True
            run.close()
        self.store.delete(self.keys.control)
        found = self.fleet.find(self.keys.session_id)
        self.fleet.stop([info.worker_id for info in found if info.state != "stopped"])
        deadline = time.monotonic() + _REMOVAL_WAIT_SECONDS
        while time.monotonic() < deadline and any(  # no worker may write after the deletion
            info.state != "stopped" for info in self.fleet.find(self.keys.session_id)
        ):
            time.sleep(self.fleet.check_interval)
        self._placement.discard()
        self.store.close()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def worker_summary(self) -> str:
        """The workers by phase, e.g. ``"100 requested: 20 provisioning, 80 running"``."""
        counts: dict[str, int] = {}
        for worker_id, up in list(self.workers.items()):
            if up:
                phase = self._phases.get(worker_id, "requested")
                counts[phase] = counts.get(phase, 0) + 1
        if not counts:
            return "none"
        if list(counts) == ["running"] and counts["running"] >= self._target_workers:
            return f"{counts['running']} running"
        order = {phase: n for n, phase in enumerate(_PHASE_ORDER)}
        phases = sorted(counts, key=lambda phase: order.get(phase, len(order)))
        shown = ", ".join(f"{counts[phase]} {phase}" for phase in phases)
        return f"{self._target_workers} requested: {shown}"

    @property
    def live_workers(self) -> int:
        return sum(self.workers.values())

    # Runs --------------------------------------------------------------------------------------

    def submit(
        self,
        function_payload: bytes,
        chunks: ChunkStream,
        n_items: int | None,
        call: CallStyle,
        options: RunOptions,
        item_seconds: float | None = None,
        *,
        blames_items: bool = False,
    ) -> Run:
        """Create a run: upload the function, stream the chunks, and make sure workers are up.

        ``item_seconds`` (how long the function's items took before, if known) tells the
        backend how long the workers launched now will be busy. With ``blames_items``, a
        worker that dies on one of the run's chunks is that chunk's failure (retried, then
        ``WorkerLostError``), never a sign that workers cannot start.
        """
        self.check_health()
        while True:
            with self._lock:
                run_id = f"r{self._next_run:05d}"
                self._next_run += 1
            manifest = RunManifest(
                run_id=run_id, call=call, retries=options.retries, seed=options.seed,
                n_chunks=chunks.n_chunks, import_paths=self._import_paths(),
            )  # fmt: skip
            try:
                first = 0 if self.spec.backend.remote else self.control.control.stripes
                run = Run.submit(
                    self.store, self.keys, manifest, function_payload, chunks, n_items,
                    self.check_health, self.signal_run, announce_early=self.supervisor is None,
                    first_chunks=first,  # a local put is cheap: store each stripe's first
                )  # fmt: skip
                break
            except PreconditionFailed:  # another client of this session took the id
                continue
        run.blames_items = blames_items
        with self._lock:
            self.runs.append(run)
            if item_seconds is not None and n_items:
                self._expect_work(n_items, item_seconds)
            self._ensure_workers()  # before the upload thread: forked workers inherit no lock
        run.start_upload()
        return run

    def _expect_work(self, n_items: int, item_seconds: float) -> None:
        """Note each worker's share of known work, for the backend (``busy_seconds``)."""
        self._busy_seconds = n_items * item_seconds / max(1, self.control.control.stripes)

    def _import_paths(self) -> list[str]:
        """This client's import folders, for a detached local session: its workers may have
        been started by another client, with another ``sys.path``."""
        if self.supervisor is None or self.spec.backend.remote:
            return []
        return import_folders()

    def signal_run(self, manifest: RunManifest) -> None:
        """Tell the workers about a new run, or a run's new state (sealed, cancelled); the
        same write forgets the runs that finished since the last (between the monitor's
        prunings, calls of ``submit`` would leave dozens in the record for workers to read).
        A detached session's supervisor drops its finished runs itself."""
        finished = self._take_finished_runs() if self.supervisor is None else []

        def edit(control: Control) -> None:
            for run_id in finished:
                control.drop_run(run_id)
            control.runs[manifest.run_id] = manifest

        self.control.change(edit)
        self.store.ring(self.keys.work_bell)  # idle workers read the control record now
        if self.supervisor is not None and manifest.state == "sealed":
            with self._lock:  # a detached run is announced once sealed: launch workers now
                self._ensure_workers()

    def check_health(self) -> None:
        """Raise the monitor's fatal error, if it found one."""
        if self.failure is not None:
            raise self.failure

    # Monitor -----------------------------------------------------------------------------------

    def _watch(self) -> None:
        interval = busy = self.fleet.check_interval
        quiet = self.fleet.quiet_check_interval or busy
        if self.supervisor is not None:
            interval = self.session.timings.heartbeat
        while not self._closed.wait(self._until_next_launch(interval)):
            try:
                if self.supervisor is not None:
                    self._supervise()
                    continue
                self._beat_if_due()
                changed = self._check_workers()
                interval = busy if changed else min(2 * interval, quiet)
            except Exception as exc:  # keep watching; report the first fatal problem
                log.exception("monitor error")
                self.failure = self.failure or exc

    def _until_next_launch(self, interval: float) -> float:
        """The pause before the monitor's next look: ``interval``, or less when a launch
        that fell short is due to be tried again sooner."""
        trouble = self._trouble
        if trouble is None:
            return interval
        return min(interval, max(0.05, trouble.next_try - time.monotonic()))

    def _beat_if_due(self) -> None:
        if time.time() - self.control.control.heartbeat >= self.session.timings.heartbeat:
            self.control.beat()

    def _check_workers(self) -> bool:
        """Look at the live workers: act on those that stopped, keep enough up. Returns
        whether anything changed (a worker stopped, started or changed phase)."""
        with self._lock:
            live = [w for w, up in self.workers.items() if up]
            if not live:
                self._ensure_workers()
                return self.live_workers > 0  # (launched some)
            stopped = [WorkerInfo(w, "stopped", reason=c) for w, c in self._stop_hung(live)]
            watched = [w for w in live if w not in self._hung]
            infos = self.fleet.describe(watched)
            self._tell_fleet_notices()  # (as it happens: what describing them showed)
            phases = dict(self._phases)
            if self.failure is None and (capped := self.cost.observe(infos)) is not None:
                self._give_up(capped, stop=live)  # collectors raise it with what is done
            for info in infos:
                self._phases[info.worker_id] = info.phase or info.state
            if not self._closed.is_set():
                for info in stopped_workers(watched, {i.worker_id: i for i in infos}):
                    self.workers[info.worker_id] = False
                    stopped.append(info)
            if stopped:
                self._on_workers_stopped(stopped)
            self._prune_finished_runs()
            self._ensure_workers()
            return bool(stopped) or phases != self._phases or self.live_workers != len(live)

    def _stop_hung(self, live: list[str]) -> list[tuple[str, str]]:
        """Stop the live workers whose heartbeats stopped (looked for every third of a
        lease); they count as stopped now, with their cause."""
        if time.monotonic() < self._next_hang_check or self._closed.is_set():
            return []
        timings = self.session.timings
        self._next_hang_check = time.monotonic() + timings.lease / 3
        hung = stop_hung_workers(self.store, self.keys, self.fleet, live, timings)
        self._hung.update(hung)
        for worker_id in hung:
            self.workers[worker_id] = False
        return list(hung.items())

    def _on_workers_stopped(self, infos: list[WorkerInfo]) -> None:
        """Free the stopped workers' stripes, offer their chunks to the others, judge faults."""
        active = [run for run in self.runs if run.outstanding]
        # A spot interruption is the platform's doing, a recall ours: they use up no attempt.
        causes = {info.worker_id: self._cause(info) for info in infos}
        back = chunks_back({run.run_id: self._end_leases(run, causes) for run in active})
        for info in infos:
            self._free_stripes.append(self._stripe_of.pop(info.worker_id))

        def edit(control: Control) -> None:
            for info in infos:
                control.roster.pop(info.worker_id, None)
                if info.worker_id in control.ledger:
                    control.ledger[info.worker_id]["stopped"] = info.stopped_at or time.time()
                    control.ledger[info.worker_id].update(ledger_stop(info))
            for run_id, chunks in back.requeued.items():
                if chunks:
                    control.requeued.setdefault(run_id, {}).update(chunks)

        self.control.change(edit)
        if back.any:
            self.store.ring(self.keys.work_bell)
        holders = {h for r in active if r.blames_items for h in back.requeued[r.run_id].values()}
        for info in infos if active else ():
            hung, blamed = info.worker_id in self._hung, info.worker_id in back.pinned | holders
            cause = causes[info.worker_id]
            self._judge_stop(info, judge_stop(info, cause, hung=hung, blamed=blamed))

    def _cause(self, info: WorkerInfo) -> str | None:
        """How a stopped worker stopped, for the claims it held (``end_lease``); ``None``
        when the stop uses up no attempt (a spot interruption, a recall)."""
        return attempt_cause(
            info,
            self.spec.memory_mib,
            lambda worker_id: self.fleet.log_tail(worker_id, 5),
            hung=self._hung.get(info.worker_id),  # an item's death only if it ran in isolation
            recalled=info.worker_id in self._recalled,
        )

    def _end_leases(self, run: Run, stopped: dict[str, str | None]) -> dict[str, Claim]:
        """End the leases the stopped workers held in a run: chunk (as text) -> its claim."""
        chunks = run.in_flight()
        claims = run.map_parallel(
            lambda chunk: end_lease(self.store, run.keys, chunk, stopped), chunks
        )
        return {str(chunk): claim for chunk, claim in zip(chunks, claims, strict=True) if claim}

    def recall(self, run: Run) -> None:
        """Stop the workers holding the run's chunks, and wait for them to write what they
        finished (a failed or interrupted call keeps every finished item)."""
        holders = set()
        for claim in run.map_parallel(self._claim_of(run), run.in_flight()):
            if claim is not None and not claim.released:
                holders.add(claim.holder)
        with self._lock:
            holders &= {worker for worker, up in self.workers.items() if up}
            self._recalled |= holders
        if holders:
            self.fleet.stop(sorted(holders))
            deadline = time.monotonic() + _RECALL_WAIT_SECONDS
            while time.monotonic() < deadline and any(
                info.state != "stopped" for info in self.fleet.describe(sorted(holders))
            ):
                time.sleep(self.fleet.check_interval)

    def _claim_of(self, run: Run) -> Callable[[int], Claim | None]:
        def read(chunk: int) -> Claim | None:
            try:
                return Claim.decode(self.store.get(run.keys.claim(chunk)))
            except NotFound:
                return None

        return read

    def _judge_stop(self, info: WorkerInfo, judgement: Judgement) -> None:
        """Act on a stop while work remains: give up when the worker could not start, or
        when workers keep stopping before they complete anything. A stop ``BLAMED`` on what
        it ran (an item in isolation, or a chunk of a run that ``blames_items``: a submitted
        call that kills its worker fails alone) is counted by the items' attempts instead."""
        if judgement is Judgement.EXCUSED:
            return
        reason = info.reason or f"exit code {info.exit_code}"
        log.info("worker %s stopped (%s) while work remains", info.worker_id, reason)
        if judgement is Judgement.COULD_NOT_START:
            self._give_up(
                WorkerStartError(
                    f"worker {info.worker_id} could not start: {reason}. Check the image "
                    "(`starburst config show`) and that `starburst setup` has run in this region."
                )
            )
        elif judgement is Judgement.FRUITLESS:
            worked = self._worker_did_work(info.worker_id)
            if self._fruitless.count(worked, self._target_workers):
                self._give_up(
                    WorkerStartError(
                        f"{self._fruitless.in_a_row} workers in a row stopped without completing "
                        f"any work (last: {info.worker_id}, {reason}). Its log ends with:\n"
                        f"{self.fleet.log_tail(info.worker_id) or '(empty log)'}"
                    )
                )

    def _give_up(self, error: StarburstError, stop: list[str] | None = None) -> None:
        """End a failure of the fleet: the calls raise ``error`` (``check_health``), and the
        ``stop`` workers are stopped. Every failure path of keeping workers up ends here."""
        self.failure = error
        if stop:
            self.fleet.stop(stop)

    def _worker_did_work(self, worker_id: str) -> bool:
        """Whether any process of the worker completed an item, from its heartbeats."""
        for key in self.store.list(f"{self.keys.workers_prefix}{worker_id}."):
            try:
                if from_json(self.store.get(key)).get("items_done", 0) > 0:
                    return True
            except Exception:
                continue
        return False

    def _prune_finished_runs(self) -> None:
        """Forget finished runs, and tell the workers they are over."""
        finished = self._take_finished_runs()
        if not finished:
            return

        def edit(control: Control) -> None:
            for run_id in finished:
                control.drop_run(run_id)

        self.control.change(edit)

    def _take_finished_runs(self) -> list[str]:
        """Drop the finished runs from those this driver watches; return their ids."""
        with self._lock:
            finished = [run.run_id for run in self.runs if not run.outstanding]
            self.runs = [run for run in self.runs if run.outstanding]
        return finished

    def _supervise(self) -> None:
        """One supervision step of a detached session, if no one else holds the role."""
        assert self.supervisor is not None
        self.supervisor.try_step(3 * self.session.timings.heartbeat)
        for notice in self.supervisor.notices + self.fleet.take_notices():
            print(f"starburst: {notice}", file=sys.stderr)
        self.supervisor.notices.clear()

    def _ensure_workers(self) -> None:
        """Keep the target number of workers up while any run has work left."""
        if self.failure is not None or self._closed.is_set():
            return
        if self.supervisor is not None:
            self._supervise()
            return
        if not any(run.outstanding for run in self.runs):
            return
        missing = self._target_workers - self.live_workers
        if missing > 0:
            self._launch(missing)

    def _launch(self, count: int) -> None:
        """Start ``count`` workers, on the stripes of stopped workers first, then on new ones.

        One bounded attempt: those the platform cannot start now are asked for again by the
        monitor (``_ensure_workers``), after a pause that grows while launches fall short.
        """
        if self._trouble is not None and time.monotonic() < self._trouble.next_try:
            return
        wanted, count = count, launch_count(count, self.cost.affordable(count))
        if count <= 0 < wanted and not self.live_workers:
            self._give_up(self.cost.cap_error())  # not one more worker fits under max_cost
        if count <= 0:
            return
        reused = sorted(self._free_stripes)[:count]
        self._free_stripes = [s for s in self._free_stripes if s not in reused]
        stripes = reused + list(range(self._next_index, self._next_index + count - len(reused)))
        self._next_index += count - len(reused)
        request = LaunchRequest(
            self.store.url, self.session.session_id, self.spec, self._busy_seconds
        )
        started = self.fleet.launch(request, stripes)
        for worker_id, stripe in zip(started, stripes, strict=False):
            self.workers[worker_id] = True
            self._stripe_of[worker_id] = stripe
        self._free_stripes += stripes[len(started) :]
        self.cost.launched(started)
        if len(started) < count:
            self._fell_short(count - len(started), self.fleet.shortfall)
        else:
            self._trouble = None
        if started:
            self._record_launched(started)
        self._tell_fleet_notices()

    def _tell_fleet_notices(self) -> None:
        """Print what the fleet has to say: quota limits, fallbacks, failed scaling."""
        for notice in self.fleet.take_notices():
            print(f"starburst: {notice}", file=sys.stderr)

    def _record_launched(self, started: list[str]) -> None:
        """Give the started workers their stripes (the roster) and a line in the ledger."""
        total = max(self._stripe_of.values(), default=0) + 1
        roster = {worker_id: self._stripe_of[worker_id] for worker_id in started}
        now, spot = time.time(), self.spec.spot

        def edit(control: Control) -> None:
            control.roster.update(roster)
            control.ledger.update(
                {w: {"launched": now, "stopped": None, "spot": spot} for w in started}
            )
            control.stripes = max(total, self._target_workers) * self.spec.processes

        self.control.change(edit)

    def _fell_short(self, missing: int, shortfall: LaunchShortfall | None) -> None:
        """A launch started ``missing`` fewer workers than asked: act on ``judge_shortfall``'s
        verdict (work with fewer, ask again later, tell the user once, or give up)."""
        live = self.live_workers
        verdict = judge_shortfall(shortfall, live, self._trouble, time.monotonic())
        if verdict.quota:
            if verdict.give_up and shortfall is not None:
                self._give_up(
                    QuotaError(
                        f'no worker could start: {self.fleet.name} answered "{shortfall.reason}". '
                        "Use fewer or smaller workers (workers=, cpu=), stop other tasks of the "
                        "account, or ask for a higher quota (`starburst quota request VCPUS`)."
                    )
                )
            self._target_workers = max(1, live)  # the platform allows fewer: work with those
            return
        trouble = self._trouble = verdict.trouble
        assert trouble is not None
        if verdict.give_up:
            self._give_up(LaunchError(self._launch_failure_message(verdict.waited, trouble.reason)))
        elif verdict.tell:
            print(
                f"starburst: {missing} of {self._target_workers} workers could not start for "
                f'{verdict.waited:.0f} s ({self.fleet.name}: "{trouble.reason}"); {live} running, '
                "and starburst keeps trying to start the rest.",
                file=sys.stderr,
            )

    def _launch_failure_message(self, waited: float, reason: str) -> str:
        """Why no worker runs, and what the user can change."""
        spot = "on-demand workers instead of spot (spot=False), " if self.spec.spot else ""
        return (
            f"no worker could start in {waited:.0f} s: {self.fleet.name} answered "
            f'"{reason}" for all {self._target_workers} workers. Try fewer or smaller '
            f"workers (workers=, cpu=, memory=), {spot}another region (the `region` "
            "setting, after `starburst setup` there), or again later."
        )


def workers_for(spec: WorkerSpec, n_items: int | None) -> int:
    """How many workers a one-off run needs: no more than there are items to share."""
    if n_items is None:
        return spec.workers
    return max(1, min(spec.workers, math.ceil(n_items / spec.processes)))
