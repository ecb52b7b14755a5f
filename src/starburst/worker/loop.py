"""One worker process: claim a chunk, run the function on its items, write the results, repeat.

The loop talks only to the store. It finds runs by listing the session's manifests, claims
chunks in order (one small offset per slot so that slots do not race for the same chunk),
takes over chunks whose leases expired, and exits when idle past the idle timeout, at the
session's deadline, when the attached client has gone silent, or on SIGTERM.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..engine import claims
from ..engine.layout import RunKeys, SessionKeys, from_json, to_json
from ..engine.manifest import RunFunction, RunManifest
from ..engine.outcome import ChunkOutput, ItemFailure
from ..engine.seeding import seed_item
from ..engine.session import SessionRecord
from ..errors import SerializationError, StoreError
from ..serialize import dumps, loads
from ..store import NotFound, PreconditionFailed, Store

log = logging.getLogger("starburst.worker")


class WorkerTerminated(BaseException):
    """Raised inside the worker when it is told to stop (SIGTERM) and may not finish."""


@dataclass
class _RunState:
    """What this worker knows about one run."""

    manifest: RunManifest
    keys: RunKeys
    frontier: int = 0  # every chunk below this is known to be claimed
    inputs_known: int = 0  # chunks known to have been uploaded (a prefix)
    claimed: set[int] = field(default_factory=set)
    next_scan: float = 0.0
    finished: bool = False
    claims_made: int = 0


class WorkerLoop:
    """The claim-execute loop of one worker process (one slot)."""

    def __init__(self, store: Store, session_id: str, worker_id: str, slot: int = 0) -> None:
        self.store = store
        self.keys = SessionKeys(session_id)
        self.worker_id = worker_id
        self.slot = slot
        self.session = SessionRecord.load(store, session_id)
        self.timings = self.session.timings
        self.runs: dict[str, _RunState] = {}
        self.functions: dict[str, RunFunction] = {}
        self.current: claims.Lease | None = None
        self.stop_reason: str | None = None
        self.started = time.time()
        self.chunks_done = 0
        self.items_done = 0
        self._terminating = False
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._next_run_refresh = 0.0

    # The main loop -------------------------------------------------------------------------

    def run(self) -> str:
        """Work until there is a reason to stop; return that reason."""
        signal.signal(signal.SIGTERM, self._on_sigterm)
        heartbeat = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        heartbeat.start()
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
                time.sleep(pause)
                pause = min(pause * 2, self.timings.max_poll)
        except WorkerTerminated:
            self.stop_reason = self.stop_reason or "terminated"
            self._give_back()
        finally:
            self._stop_event.set()
            self._write_heartbeat(state="exited")
        return self.stop_reason or "stopped"

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        self.stop_reason = "terminated"
        if self.current is None or self._terminating or self.timings.stop_grace <= 0:
            raise WorkerTerminated
        self._terminating = True  # finish the chunk in hand if it fits in the grace period
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

    # Finding work --------------------------------------------------------------------------

    def _find_work(self) -> tuple[_RunState, claims.Lease] | None:
        now = time.monotonic()
        if now >= self._next_run_refresh or all(r.finished for r in self.runs.values()):
            self._refresh_runs()
            self._next_run_refresh = now + self.timings.max_poll * 4
        for state in self.runs.values():
            if state.finished:
                continue
            lease = self._claim_fresh(state) or self._claim_orphan(state)
            if lease is not None:
                return state, lease
        return None

    def _refresh_runs(self) -> None:
        for key in self.store.list(self.keys.runs_prefix):
            run_id = self.keys.run_id_of(key)
            state = self.runs.get(run_id)
            if state is not None and state.finished:
                continue
            try:
                manifest = RunManifest.decode(self.store.get(key))
            except NotFound:
                continue
            if state is None:
                state = self.runs[run_id] = _RunState(manifest, self.keys.run(run_id))
            state.manifest = manifest
            state.finished = manifest.state == "cancelled"

    def _available_inputs(self, state: _RunState) -> int:
        """How many chunks are uploaded, as a count from chunk 0."""
        manifest = state.manifest
        if manifest.state == "sealed" and manifest.n_chunks is not None:
            return manifest.n_chunks
        if state.frontier >= state.inputs_known:
            after = state.keys.input(state.inputs_known - 1) if state.inputs_known else None
            keys, _ = self.store.list_page(state.keys.inputs, start_after=after)
            for key in keys:
                if RunKeys.chunk_of(key) != state.inputs_known:
                    break
                state.inputs_known += 1
        return state.inputs_known

    def _claim_fresh(self, state: _RunState) -> claims.Lease | None:
        available = self._available_inputs(state)
        # The first claim of each slot goes to its own chunk, so that slots do not collide.
        target = state.frontier + self.slot if state.claims_made == 0 else state.frontier
        while state.frontier < available:
            if target >= available or target in state.claimed:
                self._advance_frontier(state)
                target = state.frontier
                if target >= available:
                    break
            state.claimed.add(target)
            lease = claims.claim_fresh(
                self.store, state.keys, target, self.worker_id, self.timings.lease
            )
            if lease is not None:
                state.claims_made += 1
                self._advance_frontier(state)
                return lease
            target = self._pick_after_race(state, available)
        return None

    def _advance_frontier(self, state: _RunState) -> None:
        while state.frontier in state.claimed:
            state.frontier += 1

    def _pick_after_race(self, state: _RunState, available: int) -> int:
        """After losing a race, learn which chunks are claimed and pick a likely free one."""
        start = state.keys.claim(state.frontier - 1) if state.frontier else None
        for key in self.store.list(state.keys.claims, start_after=start):
            state.claimed.add(RunKeys.chunk_of(key))
        self._advance_frontier(state)
        free = [c for c in range(state.frontier, available) if c not in state.claimed][:8]
        return random.choice(free) if free else state.frontier

    def _claim_orphan(self, state: _RunState) -> claims.Lease | None:
        now = time.monotonic()
        if now < state.next_scan:
            return None
        state.next_scan = now + self.timings.orphan_scan
        manifest = state.manifest
        done = {RunKeys.chunk_of(k) for k in self.store.list(state.keys.outputs)}
        sealed = manifest.state == "sealed" and manifest.n_chunks is not None
        if sealed and len(done) >= (manifest.n_chunks or 0):
            state.finished = True
            return None
        for key in self.store.list(state.keys.claims):
            chunk = RunKeys.chunk_of(key)
            if chunk in done:
                continue
            lease = claims.take_over(
                self.store, state.keys, chunk, self.worker_id, self.timings.lease,
                manifest.max_attempts,
            )  # fmt: skip
            if lease is not None:
                return lease
        return None

    # Running a chunk -----------------------------------------------------------------------

    def _process(self, state: _RunState, lease: claims.Lease) -> None:
        self.current = lease
        manifest = state.manifest
        cpu_start = time.process_time()
        payload = loads(self.store.get(lease.keys.input(lease.chunk)))
        start, items = payload["start"], payload["items"]
        output = ChunkOutput(start=start, results=[None] * len(items), worker=self.worker_id)
        output.attempt = lease.attempt
        try:
            function = self._function(state)
        except Exception as exc:
            self._fail_all(output, items, exc)
        else:
            self._run_items(function, manifest, output, items)
        output.seconds = time.process_time() - cpu_start
        self._write_output(lease, output)
        with self._lock:
            self.current = None
        self.chunks_done += 1
        self.items_done += len(items)
        if self._terminating:
            raise WorkerTerminated

    def _run_items(
        self, function: RunFunction, manifest: RunManifest, output: ChunkOutput, items: list[Any]
    ) -> None:
        """Run the function on each item, catching each item's exception with its traceback."""
        call = _caller(function, manifest)
        results, seed = output.results, manifest.seed
        for offset, item in enumerate(items):
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

    def _fail_all(self, output: ChunkOutput, items: list[Any], cause: Exception) -> None:
        """Record every item of a chunk as failed because its function would not load."""
        problem = SerializationError(
            f"the worker could not load the function: {type(cause).__name__}: {cause}. "
            "Everything the function refers to must be importable on the workers."
        )
        for offset, item in enumerate(items):
            index = output.start + offset
            output.failures[index] = ItemFailure.from_exception(
                index, item, problem, self.worker_id
            )

    def _function(self, state: _RunState) -> RunFunction:
        run_id = state.manifest.run_id
        if run_id not in self.functions:
            self.functions[run_id] = loads(self.store.get(state.keys.function))
        return self.functions[run_id]

    def _write_output(self, lease: claims.Lease, output: ChunkOutput) -> None:
        compress = self.store.compress
        try:
            data = dumps(output, compress=compress)
        except Exception:
            data = dumps(_without_unpicklable(output), compress=compress)
        try:
            self.store.put_if_absent(lease.keys.output(lease.chunk), data)
        except PreconditionFailed:
            log.info("chunk %s was already completed by another worker", lease.chunk)
            return
        self.store.delete(lease.keys.input(lease.chunk))  # done with: keep the store small

    # Heartbeat -----------------------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        next_renewal = time.monotonic() + self.timings.lease / 3
        while not self._stop_event.wait(self.timings.heartbeat):
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
                os._exit(0)

    def _reason_to_quit(self) -> str | None:
        if time.time() >= self.session.deadline:
            return "the session reached its deadline"
        timeout = self.timings.client_timeout
        if timeout is None:
            return None
        try:
            client = from_json(self.store.get(self.keys.client))
        except NotFound:
            return "the client closed the session"
        if time.time() - client["heartbeat"] > timeout:
            return f"the client has been silent for over {timeout:.0f} s"
        return None

    def _write_heartbeat(self, state: str) -> None:
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


def _caller(function: RunFunction, manifest: RunManifest) -> Callable[[Any], Any]:
    """The function that runs one item, resolved once per chunk (the per-item path is hot)."""
    fn = function.fn
    if manifest.call == "task":
        call: Callable[[Any], Any] = lambda task: task[0](*task[1], **task[2])  # noqa: E731
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


def _without_unpicklable(output: ChunkOutput) -> ChunkOutput:
    """Replace each result that cannot be pickled by a failure that says so."""
    for offset, value in enumerate(output.results):
        try:
            dumps(value, compress=False)
        except Exception as exc:
            index = output.start + offset
            problem = TypeError(
                f"the result of item {index} (a {type(value).__qualname__}) cannot be sent "
                f"back: {exc}. Return plain data (numbers, arrays, dicts) instead."
            )
            output.failures[index] = ItemFailure.from_exception(index, "?", problem, output.worker)
            output.results[offset] = None
    return output
