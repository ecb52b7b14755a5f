"""One worker process: claim a chunk, run the function on its items, write the results, repeat.

The loop talks only to the store. It learns the session's active runs, its stripe and the
chunks to take over from the control record (``engine/control.py``), so that finding work
costs no listing: it claims the chunks of its own stripe in order, then steals unclaimed
chunks of slower stripes, takes over chunks whose worker stopped, and now and then (when
idle) scans for leases that ran out. It exits when idle past the idle timeout, at the
session's deadline, when the attached client has gone silent or closed the session, or on
SIGTERM.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..engine import claims
from ..engine.control import Control, ControlWriter
from ..engine.keys import RunKeys, SessionKeys
from ..engine.manifest import RunFunction, RunManifest
from ..engine.outcome import ChunkOutput, ItemFailure
from ..engine.records import to_json
from ..engine.seeding import seed_item
from ..engine.shared import SharedCache
from ..errors import SerializationError, StoreError
from ..salvage import find_unloadable, loads_salvaging
from ..serialize import PICKLING_ERRORS, dumps, load_call, loads
from ..store import NotFound, PreconditionFailed, Store
from ..threads import BareThread

log = logging.getLogger("starburst.worker")


class WorkerBackend(Protocol):
    """What a worker asks of its session's backend (a ``backends.Backend``)."""

    remote: bool

    def reopen(self, session_id: str, store: Store, launch: dict[str, Any]) -> Any:
        """The session's placement (its ``fleet`` launches replacements)."""

    def after_client_gone(self, store: Store, keys: SessionKeys) -> None:
        """Clean up after an attached session's client that went silent."""


#: What a worker is handed to find its session's backend by name (the registry's
#: ``backend_named``): it asks the backend to reopen its fleet when it supervises a
#: detached session, and tells it when an attached session's client is gone.
FindBackend = Callable[[str], WorkerBackend]

#: How long a stopping worker of a detached session tries to hand its place on.
_HAND_OFF_SECONDS = 30.0
#: The supervisor lease a stopping worker takes: short, because the platform may kill it
#: mid-step, and the others cannot supervise until its lease runs out.
_HAND_OFF_LEASE_SECONDS = 10.0
#: A block of items between two reads of the clock lasts about this long, or up to
#: ``_MAX_STRIDE`` items.
_BLOCK_SECONDS = 0.002
_MAX_STRIDE = 4096
#: With many slots, a thief picks (by its slot) among up to this many of the lowest
#: unclaimed chunks (one per eight slots).
_STEAL_SPREAD = 16


class SessionClosed(Exception):
    """The session a worker was started for has no control record."""


class WorkerTerminated(BaseException):
    """Raised inside the worker when it is told to stop (SIGTERM) and may not finish."""


class _RunOver(Exception):
    """The run of the chunk in hand was cancelled, or another worker completed the chunk."""


@dataclass
class _Chunk:
    """A chunk in hand: its items, their results so far, and how far they are written."""

    lease: claims.Lease
    run_id: str
    start: int  # the index of the chunk's first item
    items: list[Any]
    results: list[Any] = field(init=False)
    failures: dict[int, ItemFailure] = field(default_factory=dict)  # not written yet
    written: int = field(init=False)  # items (from the chunk's first) in its outputs
    done: int = field(init=False)  # items (from the chunk's first) finished
    clock: float = field(default_factory=time.perf_counter)  # when ``written`` last moved
    #: Some items could not be unpickled here (``salvage.Unloadable`` stand-ins in them).
    salvaged: bool = False
    #: The clock between blocks of items: (items finished, ``time.monotonic()``), from the
    #: last output taken on; what its item-time ``blocks`` are made of.
    marks: list[tuple[int, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.results = [None] * len(self.items)
        self.written = self.done = self.lease.first

    def take(self, worker: str) -> ChunkOutput:
        """The output of the items finished since the last one taken."""
        lo, done, now = self.written, self.done, time.perf_counter()
        whole = lo == 0 and done == len(self.results)
        results = self.results if whole else self.results[lo:done]
        marks = self.marks
        blocks = [(b[0] - a[0], b[1] - a[1]) for a, b in itertools.pairwise(marks) if b[0] > a[0]]
        output = ChunkOutput(
            self.start + lo, results, self.failures, worker, self.lease.attempt,
            now - self.clock, lo, time.time(), blocks,
        )  # fmt: skip
        self.failures, self.written, self.clock, self.marks = {}, done, now, marks[-1:]
        return output


@dataclass
class _RunState:
    """What this worker knows about one run."""

    manifest: RunManifest  # as the control record last gave it
    keys: RunKeys
    rounds: int = 0  # chunks of this worker's stripe tried so far
    claimed: set[int] = field(default_factory=set)  # chunks known to be claimed
    must_list: bool = False  # ``claimed`` is stale: list the claims before the next claim
    stealing: bool = False
    all_claimed: bool = False  # every chunk is claimed: nothing is left to steal
    lowest_unclaimed: int = 0  # no chunk below this is unclaimed
    tried_requeued: set[tuple[int, str]] = field(default_factory=set)
    next_scan: float = 0.0
    finished: bool = False
    stride: int = 1  # items run between two reads of the clock (``WorkerLoop._run_items``)


class WorkerLoop:
    """The claim-execute loop of one worker process (one slot)."""

    def __init__(
        self,
        store: Store,
        session_id: str,
        worker_id: str,
        find_backend: FindBackend,
        process: int = 0,
        processes: int = 1,
        index: int | None = None,
    ) -> None:
        self.store = store
        self.keys = SessionKeys(session_id)
        self.find_backend = find_backend
        self.base_id = worker_id
        self.worker_id = f"{worker_id}.{process}"
        self.process = process
        self.processes = processes
        self.index = index
        self.control: Control | None = None  # None: the session was closed
        self.stop_reason: str | None = None
        self.store.wait_for_ring(self.keys.work_bell, 0)  # listen before the first read
        first = self._read_control()
        if first is None or first.session is None:
            raise SessionClosed(f"session {session_id} is closed (or was never opened)")
        self.timings = first.session.timings
        self.runs: dict[str, _RunState] = {}
        self.functions: dict[str, RunFunction] = {}
        self.shared = SharedCache(store, self.keys)  # submitted calls' large arguments
        self.current: claims.Lease | None = None
        self.started = time.time()
        self.chunks_done = 0
        self.items_done = 0
        self._terminating = False
        self._flush_due = 0.0  # time.monotonic() when the chunk in hand writes its next part
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._supervisor: Any = None  # built on first use, by the first process only

    # The main loop -------------------------------------------------------------------------

    def run(self) -> str:
        """Work until there is a reason to stop; return that reason."""
        signal.signal(signal.SIGTERM, self._on_sigterm)
        BareThread(self._heartbeat_loop)
        idle_since = time.monotonic()
        pause = self.timings.poll
        try:
            while self.stop_reason is None:
                try:
                    found = self._find_work()
                    if found is not None:
                        self._process(*found)
                        idle_since, pause = time.monotonic(), self.timings.poll
                        continue
                except StoreError as exc:  # the store failed past its retries: wait, go on
                    log.warning("store error, will try again: %s", exc)
                    self._give_back()
                    time.sleep(self.timings.max_poll)
                    continue
                if any(not state.finished for state in self.runs.values()):
                    idle_since = time.monotonic()  # a run is unfinished: its chunks may come back
                elif time.monotonic() - idle_since > self.timings.idle_timeout:
                    self.stop_reason = "idle"
                    break
                self.store.wait_for_ring(self.keys.work_bell, pause)  # a client rings: new work
                control = self._read_control()
                if control is not None and self._slot(control) is None and control.runs:
                    pause = self.timings.poll  # the roster will list this worker any moment
                else:
                    pause = min(pause * 2, self.timings.max_poll)
        except WorkerTerminated:
            self.stop_reason = self.stop_reason or "terminated"
            self._give_back()
            self._hand_off()
        finally:
            self._stop_event.set()
            self._write_heartbeat(state="exited")
        return self.stop_reason or "stopped"

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        self.stop_reason = "terminated"
        if self.current is None or self._terminating or self.timings.stop_grace <= 0:
            raise WorkerTerminated
        self._terminating = True  # finish the item in hand if it fits in the grace period,
        self._flush_due = 0.0  # then write what is finished and give the rest back
        timer = threading.Timer(self.timings.stop_grace, os.kill, (os.getpid(), signal.SIGTERM))
        timer.daemon = True
        timer.start()

    def _give_back(self) -> None:
        """Release the chunk in hand, if any (best effort: its lease runs out otherwise)."""
        with self._lock:
            lease, self.current = self.current, None
        if lease is not None:
            with contextlib.suppress(StoreError):
                claims.release(self.store, lease)

    # The control record --------------------------------------------------------------------

    def _read_control(self) -> Control | None:
        """Read the control record; a missing one means the session was closed."""
        try:
            self.control = Control.load(self.store, self.keys)
        except NotFound:
            self.control = None
            self.stop_reason = self.stop_reason or "the client closed the session"
        return self.control

    def _slot(self, control: Control) -> int | None:
        """This process's stripe, from its index (given, or the roster's); ``None`` while the
        roster does not list this worker yet (the client writes it as RunTask answers)."""
        index = self.index if self.index is not None else control.roster.get(self.base_id)
        if index is None:
            return None
        return (index * self.processes + self.process) % max(1, control.stripes)

    def _spread(self, control: Control) -> int:
        """A number that differs between workers, to choose among free chunks with."""
        slot = self._slot(control)
        if slot is not None:
            return slot
        digest = hashlib.blake2b(self.worker_id.encode(), digest_size=4).digest()
        return int.from_bytes(digest, "big")

    def _sync_runs(self, control: Control) -> None:
        """Follow the control record: new runs, sealed or cancelled ones, finished ones."""
        for run_id in [r for r in self.runs if r not in control.runs]:
            del self.runs[run_id]  # over: the run left the record
            self.functions.pop(run_id, None)
        for run_id, manifest in control.runs.items():
            state = self.runs.get(run_id)
            if state is None:
                state = self.runs[run_id] = _RunState(manifest, self.keys.run(run_id))
                state.next_scan = time.monotonic() + self.timings.orphan_scan
            state.manifest = manifest
            state.finished = state.finished or manifest.state == "cancelled"

    # Finding work --------------------------------------------------------------------------

    def _find_work(self) -> tuple[_RunState, claims.Lease] | None:
        control = self.control
        if control is None:
            return None
        self._sync_runs(control)
        for state in self.runs.values():
            if state.finished:
                continue
            lease = (
                self._claim_requeued(state, control)
                or self._claim_own(state, control)
                or self._steal(state, control)
                or self._claim_expired(state)
            )
            if lease is not None:
                return state, lease
        return None

    def _claim(self, state: _RunState, chunk: int) -> claims.Lease | None:
        """Claim a chunk nobody has; after a lost race, learn which chunks others claimed."""
        if state.must_list:
            for key in self.store.list(state.keys.claims):
                state.claimed.add(RunKeys.chunk_of(key))
            state.must_list = False
            if chunk in state.claimed:
                return None
        state.claimed.add(chunk)
        lease = claims.claim_fresh(
            self.store, state.keys, chunk, self.worker_id, self.timings.lease
        )
        state.must_list = lease is None
        return lease

    def _claim_own(self, state: _RunState, control: Control) -> claims.Lease | None:
        """The next unclaimed chunk of this worker's stripe, from the front."""
        stripes, slot = max(1, control.stripes), self._slot(control)
        if slot is None:
            return None  # not on the roster yet: no stripe to claim from
        limit = state.manifest.n_chunks
        while True:
            chunk = slot + state.rounds * stripes
            if limit is not None and chunk >= limit:
                return None
            state.rounds += 1
            if chunk in state.claimed:
                continue
            lease = self._claim(state, chunk)
            if lease is not None:
                return lease

    def _steal(self, state: _RunState, control: Control) -> claims.Lease | None:
        """The lowest unclaimed chunk of a slower stripe.

        Chunks are started in about the order of their numbers, as the guided schedule needs
        (later chunks are smaller, so the last ones to finish are small). With many slots, a
        thief picks among the few lowest by its slot, so that thieves rarely collide. Only
        sealed runs are stolen from: before, a stolen chunk's input might not be there yet.
        """
        total = state.manifest.n_chunks
        if state.manifest.state != "sealed" or total is None or state.all_claimed:
            return None  # while inputs are arriving, a stolen chunk would only be waited on
        if not state.stealing:  # learn what the others claimed, once, then after lost races
            state.stealing = state.must_list = True
        spread = max(1, min(_STEAL_SPREAD, control.stripes // 8))
        while True:
            unclaimed = (c for c in range(state.lowest_unclaimed, total) if c not in state.claimed)
            free = list(itertools.islice(unclaimed, spread))
            if not free:
                state.all_claimed = True  # claims are never removed: this is final
                return None
            state.lowest_unclaimed = free[0]
            lease = self._claim(state, free[self._spread(control) % len(free)])
            if lease is not None:
                return lease

    def _claim_requeued(self, state: _RunState, control: Control) -> claims.Lease | None:
        """A chunk the client took back from a stopped worker (each offer is tried once)."""
        run_id = state.manifest.run_id
        for chunk, holder in control.requeued_chunks(run_id).items():
            if (chunk, holder) in state.tried_requeued:
                continue
            state.tried_requeued.add((chunk, holder))
            lease = self._take_over(state, chunk)
            if lease is not None:
                return lease
        return None

    def _take_over(self, state: _RunState, chunk: int) -> claims.Lease | None:
        return claims.take_over(
            self.store, state.keys, chunk, self.worker_id, self.timings.lease,
            state.manifest.max_attempts,
        )  # fmt: skip

    def _claim_expired(self, state: _RunState) -> claims.Lease | None:
        """Now and then, a chunk whose lease ran out (a worker hung, or nobody requeued it)."""
        now = time.monotonic()
        if now < state.next_scan:
            return None
        state.next_scan = now + self.timings.orphan_scan
        total = state.manifest.n_chunks
        outputs = self.store.list(state.keys.outputs)
        done = {RunKeys.chunk_of(k) for k in outputs if RunKeys.part_span(k) is None}
        if state.manifest.state == "sealed" and total is not None and len(done) >= total:
            state.finished = True
            return None
        for key in self.store.list(state.keys.claims):
            chunk = RunKeys.chunk_of(key)
            if chunk in done or (total is not None and chunk >= total):
                continue
            lease = self._take_over(state, chunk)
            if lease is not None:
                return lease
        return None

    # Running a chunk -----------------------------------------------------------------------

    def _process(self, state: _RunState, lease: claims.Lease) -> None:
        self.current = lease
        manifest = state.manifest
        payload = self._read_input(state, lease)
        if payload is None:  # past the run's end, or done by another worker meanwhile
            with self._lock:
                self.current = None
            return
        work = _Chunk(
            lease, manifest.run_id, payload["start"], payload["items"],
            salvaged=payload.get("salvaged", False),
        )  # fmt: skip
        try:
            if lease.lost is not None:
                self._record_lost(work)
            try:
                function = self._function(state)
            except Exception as exc:
                self._fail_all(work, exc)
            else:
                self._run_items(function, state, work)
            self._write(work, end=True)
        except _RunOver:  # cancelled, or done by another worker: the rest is not wanted
            self._give_back()
            return
        except WorkerTerminated:  # told to stop: hand back what is finished, then the chunk
            self._terminating = True
            with contextlib.suppress(StoreError):
                self._write(work, end=False)
            raise
        with self._lock:
            self.current = None
        self.chunks_done += 1
        if self._terminating:
            raise WorkerTerminated

    def _read_input(self, state: _RunState, lease: claims.Lease) -> dict[str, Any] | None:
        """The chunk's items, waiting while the client is still uploading them."""
        pause = self.timings.poll
        while True:
            try:
                payload = self.store.get_view(lease.keys.input(lease.chunk))
            except NotFound:
                pass
            else:
                try:
                    return loads(payload)
                except PICKLING_ERRORS:  # an item cannot be unpickled here: salvage the rest
                    return {**loads_salvaging(payload), "salvaged": True}
            # Missing: not uploaded yet, beyond the run's end, or done (inputs are deleted).
            # The control record says which; it is read again once the wait grows long.
            control = self._read_control() if pause >= self.timings.max_poll else self.control
            manifest = control.runs.get(state.manifest.run_id) if control else None
            if manifest is None or manifest.state != "open":
                return None
            if manifest.n_chunks is not None and lease.chunk >= manifest.n_chunks:
                return None
            time.sleep(pause)
            pause = min(pause * 2, self.timings.max_poll)

    def _run_items(self, function: RunFunction, state: _RunState, output: _Chunk) -> None:
        """Run the function on each item, catching each item's exception with its traceback,
        and write the finished items as a part of the chunk's output every ``flush`` seconds
        (after every item in isolation).

        The clock is read between blocks of items, not after each (it would double the cost
        of a tiny item): a block lasts a few milliseconds, as the run's items showed so far.
        """
        manifest = state.manifest
        call = _caller(function, manifest, self.shared)
        if output.salvaged:
            call = _refusing_unloadable(call)
        results, seed, items, n = output.results, manifest.seed, output.items, len(output.items)
        isolate = output.lease.isolate or self._terminating
        stride = 1 if isolate else state.stride
        clock = time.monotonic
        self._flush_due = 0.0 if isolate else clock() + self.timings.flush
        lo = offset = output.done
        last = clock()
        output.marks.append((lo, last))
        output.clock = time.perf_counter()  # (``seconds`` of its outputs paces the next runs)
        try:
            while lo < n:
                hi = min(n, lo + stride)
                for offset, item in enumerate(items[lo:hi] if lo or hi < n else items, lo):
                    index = output.start + offset
                    if seed is not None:
                        seed_item(seed, index)
                    try:
                        results[offset] = call(item)
                    except WorkerTerminated:
                        raise
                    except BaseException as exc:
                        output.failures[index] = ItemFailure.from_exception(
                            index, item, exc, self.worker_id, task=manifest.call == "task"
                        )
                lo = offset = hi
                now = clock()
                output.marks.append((hi, now))
                if not isolate:  # blocks of a few milliseconds
                    took, last = now - last, now
                    if took < _BLOCK_SECONDS:
                        stride = min(2 * stride, _MAX_STRIDE)
                    elif took > 4 * _BLOCK_SECONDS:
                        stride = max(1, stride // 2)
                if now >= self._flush_due and hi < n:
                    output.done = hi
                    self._flush(output)
        except WorkerTerminated:
            output.done = max(output.done, offset)  # the item in hand is not finished
            raise
        finally:
            if not isolate:
                state.stride = stride  # the run's next chunk starts where this one got to
        output.done = n

    def _flush(self, work: _Chunk) -> None:
        """Write the items finished since the last part; stop if told to, or if the run is
        over (cancelled, or done by another worker)."""
        self._write(work, end=False)
        self._flush_due = 0.0 if work.lease.isolate else time.monotonic() + self.timings.flush
        if self._terminating:
            raise WorkerTerminated
        control = self.control  # as the heartbeat last read it
        manifest = control.runs.get(work.run_id) if control is not None else None
        if manifest is None or manifest.state == "cancelled":
            raise _RunOver

    def _record_lost(self, work: _Chunk) -> None:
        """Record the item that stopped every worker that ran it, then go on after it."""
        lease = work.lease
        assert lease.lost is not None
        index = work.start + lease.first
        session = self.control.session if self.control is not None else None
        if (
            session is not None
            and session.attached
            and not self.find_backend(session.backend).remote
        ):
            where = f"session {session.session_id}"  # its logs go with it (the cause quotes one)
        else:
            where = f"its log: `starburst logs {self.keys.session_id}`"
        reason = f"{lease.lost}; {where}"
        item = work.items[lease.first]
        work.failures[index] = ItemFailure.worker_lost(index, item, reason, lease.out_of_memory)
        work.done = lease.first + 1
        self._write(work, end=False)
        with self._lock:
            if not claims.restart(self.store, lease, work.done, self.timings.lease):
                raise _RunOver  # another worker took the chunk meanwhile

    def _fail_all(self, work: _Chunk, cause: Exception) -> None:
        """Record every item left as failed because the function would not load."""
        problem = SerializationError(
            f"the worker could not load the function: {type(cause).__name__}: {cause}. "
            "Everything the function refers to must be importable on the workers."
        )
        for offset in range(work.done, len(work.items)):
            index = work.start + offset
            work.failures[index] = ItemFailure.from_exception(
                index, work.items[offset], problem, self.worker_id
            )
        work.done = len(work.items)

    def _function(self, state: _RunState) -> RunFunction:
        run_id = state.manifest.run_id
        if run_id not in self.functions:
            sys.path.extend(p for p in state.manifest.import_paths if p not in sys.path)
            self.functions[run_id] = loads(self.store.get(state.keys.function))
        return self.functions[run_id]

    def _write(self, work: _Chunk, *, end: bool) -> None:
        """Write the chunk's items finished since the last write: as the chunk's end
        (``out/<chunk>``), or as a part (``out/<chunk>.<lo>-<hi>``) while it runs on."""
        lease, done = work.lease, work.done
        if not end and done <= work.written:
            return
        output = work.take(self.worker_id)
        chunk = lease.chunk
        key = lease.keys.output(chunk) if end else lease.keys.part(chunk, output.offset, done)
        compress = self.store.compress
        try:
            data = dumps(output, compress=compress, to_client=True)
        except WorkerTerminated:
            raise
        except BaseException:  # a result failed to pickle, or raised (even SystemExit) doing so
            data = dumps(_without_unpicklable(output), compress=compress, to_client=True)
        try:
            self.store.put_if_absent(key, data)
        except PreconditionFailed:
            log.info("chunk %s was already completed by another worker", lease.chunk)
        else:
            if output.failures:  # only the output's writer says which of its items failed
                marker = {"items": sorted(output.failures), "worker": self.worker_id}
                self.store.put(lease.keys.failure_marker(key), to_json(marker))
            self.store.ring(self.keys.news_bell)
        first = self.items_done == 0
        self.items_done += len(output.results)
        if first and self.items_done:  # at once: the client judges a worker that dies by it
            self._write_heartbeat(state="running")
        if end and self.store.frees_inputs:
            self.store.delete(lease.keys.input(lease.chunk))

    # Heartbeat -----------------------------------------------------------------------------

    def _until_next_beat(self) -> float:
        """A heartbeat's pause, shortened to end at the session's deadline."""
        session = self.control.session if self.control is not None else None
        if session is None:
            return self.timings.heartbeat
        return max(0.05, min(self.timings.heartbeat, session.deadline - time.time()))

    def _heartbeat_loop(self) -> None:
        next_renewal = time.monotonic() + self.timings.lease / 3
        while not self._stop_event.wait(self._until_next_beat()):
            self._write_heartbeat(state="running")
            if time.monotonic() >= next_renewal:
                with self._lock:
                    lease = self.current
                    if lease is not None and not claims.renew(
                        self.store, lease, self.timings.lease
                    ):
                        log.warning("lost the lease on chunk %s", lease.chunk)
                next_renewal = time.monotonic() + self.timings.lease / 3
            reason = self._reason_to_quit()
            if reason is not None:
                self.stop_reason = reason
                log.warning("stopping: %s", reason)
                self._write_heartbeat(state="exited")
                session = self.control.session if self.control is not None else None
                if reason.startswith(_CLIENT_SILENT) and session is not None:
                    self._after_client_gone(session.backend)
                os._exit(0)
            self._supervise()

    def _supervise(self) -> None:
        """In a detached session, the first process of each worker may hold the supervisor
        role (``engine/supervisor.py``): it replaces lost workers while no client is there."""
        supervisor = self._supervisor_of(self.control)
        if supervisor is None:
            return
        try:
            supervisor.try_step(3 * self.timings.heartbeat)
        except Exception as exc:  # tried again at the next heartbeat
            log.warning("supervision step failed: %s", exc)

    def _supervisor_of(self, control: Control | None) -> Any:
        """The supervisor this process may act as, or None (not a detached session's first
        process, or the session is closed)."""
        if self.process != 0 or control is None or control.session is None:
            return None
        if control.session.attached:
            return None
        if self._supervisor is None:
            from ..engine.supervisor import Supervisor

            session = control.session
            backend = self.find_backend(session.backend)
            fleet = backend.reopen(session.session_id, self.store, session.launch).fleet
            self._supervisor = Supervisor(self.store, self.keys, fleet, self.base_id)
        return self._supervisor

    def _hand_off(self) -> None:
        """Told to stop (a spot interruption) in a detached session that goes on: leave the
        roster and launch a replacement now, so that work goes on even when every worker is
        interrupted at once and no client is attached."""
        control = self._read_control()
        supervisor = self._supervisor_of(control)
        if supervisor is None or control is None or control.session is None:
            return
        if control.session.state != "open" or control.session.expired():
            return
        now = time.time()

        def leave(record: Control) -> None:
            record.roster.pop(self.base_id, None)
            entry = record.ledger.get(self.base_id)
            if entry is not None and entry.get("stopped") is None:
                entry["stopped"] = now

        deadline = time.monotonic() + _HAND_OFF_SECONDS
        try:
            ControlWriter(self.store, self.keys).change(leave)
            while time.monotonic() < deadline:  # another leaver may hold the role a moment
                if supervisor.try_step(min(3 * self.timings.heartbeat, _HAND_OFF_LEASE_SECONDS)):
                    supervisor.release()
                    return
                time.sleep(1.0)
        except Exception as exc:  # best effort: the other workers' supervisor still acts
            log.warning("hand-off failed: %s", exc)

    def _reason_to_quit(self) -> str | None:
        control = self._read_control()
        if control is None:
            return "the client closed the session"
        if control.session is not None and time.time() >= control.session.deadline:
            return "the session reached its deadline"
        timeout = self.timings.client_timeout
        if timeout is not None and time.time() - control.heartbeat > timeout:
            return f"{_CLIENT_SILENT} for over {timeout:.0f} s"
        return None

    def _after_client_gone(self, backend_name: str) -> None:
        """The client of this attached session went silent (killed outright): tell its
        backend, whose last worker to leave cleans up (a local session's scratch store)."""
        try:
            self.find_backend(backend_name).after_client_gone(self.store, self.keys)
        except Exception as exc:  # the sweep of a later session still removes it
            log.warning("could not clean up after the client: %s", exc)

    def _write_heartbeat(self, state: str) -> None:
        if state == "exited":
            self._read_control()  # a last look: a closed session's records are being removed
        if self.control is None:
            return
        record = {
            "worker": self.worker_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": self.started,
            "heartbeat": time.time(),
            "state": state,
            "stop_reason": self.stop_reason,
            "chunks_done": self.chunks_done,
            "items_done": self.items_done,
            "cpu_seconds": time.process_time(),
        }
        try:
            self.store.put(self.keys.worker(self.worker_id), to_json(record))
        except Exception as exc:  # a missed heartbeat is not fatal
            log.warning("heartbeat failed: %s", exc)


#: How the reason to quit of a worker whose client went silent begins.
_CLIENT_SILENT = "the client has been silent"


def _caller(
    function: RunFunction, manifest: RunManifest, shared: SharedCache
) -> Callable[[Any], Any]:
    """The function that runs one item, resolved once per chunk (the per-item path is hot)."""
    fn = function.fn
    if manifest.call == "task":
        call: Callable[[Any], Any] = functools.partial(_run_call, resolve=shared.load)
    elif manifest.call == "star":
        call = lambda args: fn(*args)  # noqa: E731
    else:
        call = fn
    if not function.retry_exceptions or manifest.retries == 0:
        return call

    def with_retries(item: Any) -> Any:
        for attempt in range(manifest.retries + 1):
            try:
                return call(item)
            except WorkerTerminated:
                raise
            except BaseException as exc:
                if attempt >= manifest.retries or not function.should_retry(exc):
                    raise
        raise AssertionError("unreachable")

    return with_retries


def _refusing_unloadable(call: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``call``, except that an item that could not be unpickled here (an ``Unloadable``
    stand-in in it) fails with a ``SerializationError`` that says why."""

    def refusing(item: Any) -> Any:
        problem = find_unloadable(item)
        if problem is not None:
            raise SerializationError(
                f"the item could not be unpickled on the worker: {problem}. Pass plain data, "
                "or objects whose classes the workers can import."
            ) from problem.error
        return call(item)

    return refusing


def _run_call(task: bytes, resolve: Callable[[Any], Any]) -> Any:
    """Run a submitted call, unpickled here as one item (``serialize.pickle_call``), its
    large arguments found by ``resolve``."""
    fn, args, kwargs = load_call(task, resolve)
    return fn(*args, **kwargs)


def _without_unpicklable(output: ChunkOutput) -> ChunkOutput:
    """Replace each result that cannot be pickled by a failure that says so (what pickling
    raised, when that is not an error: a ``SystemExit``)."""
    for offset, value in enumerate(output.results):
        try:
            dumps(value, compress=False)
        except WorkerTerminated:
            raise
        except BaseException as exc:
            index = output.start + offset
            problem: BaseException = exc
            if isinstance(exc, Exception):
                problem = SerializationError(
                    f"the result of item {index} (a {type(value).__qualname__}) cannot be sent "
                    f"back: {exc}. Return plain data (numbers, arrays, dicts) instead."
                )
            output.failures[index] = ItemFailure.from_exception(index, "?", problem, output.worker)
            output.results[offset] = None
    return output
