"""The driver: one session's client side, shared by every front end.

It writes the session record, launches workers, creates runs, and runs a monitor thread that
keeps the client's heartbeat fresh, notices workers that stopped, ends their leases at once
(so no chunk waits for a lease to expire), and launches replacements while work remains.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from collections.abc import Iterator

from ..backends import Backend, LaunchRequest, WorkerInfo, place
from ..errors import OutOfMemoryError, WorkerStartError
from ..options import RunOptions, WorkerSpec
from ..store import Store
from .chunking import Chunk
from .claims import expire_worker_claims
from .layout import from_json, to_json
from .manifest import CallStyle, RunManifest
from .run import Run
from .session import SessionRecord, Timings, new_session_id

log = logging.getLogger("starburst")

#: Workers that stop without completing any chunk, in a row, before the driver gives up.
MAX_FRUITLESS_EXITS = 3
#: The monitor checks on workers this many store poll intervals apart (at least 50 ms).
_MONITOR_POLLS = 2


class Driver:
    """One session: its store, its workers and the runs submitted to it."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        session_id = new_session_id()
        self._placement = place(spec, session_id)
        self.store: Store = self._placement.store
        self.backend: Backend = self._placement.backend
        timings = Timings.for_store(self.store, attached=True)
        self.session = SessionRecord(
            session_id=session_id,
            backend=spec.backend,
            workers=spec.workers,
            cpu=spec.cpu,
            memory_mib=spec.memory_mib,
            timings=timings,
        )
        self.keys = self.session.keys
        self.runs: list[Run] = []
        self.workers: dict[str, bool] = {}  # worker id -> still live
        self._phases: dict[str, str] = {}  # worker id -> pending / running / stopped
        self.failure: BaseException | None = None
        self._target_workers = 0
        self._next_index = 0
        self._next_run = 0
        self._fruitless_exits = 0
        self._lock = threading.RLock()
        self._closed = threading.Event()
        self._monitor: threading.Thread | None = None
        self._last_client_beat = 0.0

    # Lifecycle ---------------------------------------------------------------------------------

    def start(self, workers: int | None = None) -> None:
        """Write the session, start ``workers`` workers (default: the spec's) and the monitor."""
        self.store.put(self.keys.session, self.session.encode())
        self._beat()
        self._target_workers = self.spec.workers if workers is None else workers
        self._launch(self._target_workers)
        self._monitor = threading.Thread(target=self._watch, name="starburst-monitor", daemon=True)
        self._monitor.start()

    def close(self) -> None:
        """Stop every worker, then remove the session's data."""
        if self._closed.is_set():
            return
        self._closed.set()
        busy = False
        for run in self.runs:
            if run.outstanding:
                run.cancelled = busy = True
        if self._monitor is not None:
            self._monitor.join()
        with self._lock:  # idle workers hold nothing: they need no time to wind down
            self.backend.stop(list(self.workers), grace=busy)
            self.workers = dict.fromkeys(self.workers, False)
        self._placement.discard()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def worker_summary(self) -> str:
        """The live workers by phase, e.g. ``"2 pending, 8 running"``."""
        counts: dict[str, int] = {}
        for worker_id, up in list(self.workers.items()):
            if up:
                phase = self._phases.get(worker_id, "pending")
                counts[phase] = counts.get(phase, 0) + 1
        if not counts:
            return "none"
        return ", ".join(f"{n} {phase}" for phase, n in sorted(counts.items()))

    @property
    def live_workers(self) -> int:
        return sum(self.workers.values())

    # Runs --------------------------------------------------------------------------------------

    def submit(
        self,
        function_payload: bytes,
        chunks: Iterator[Chunk],
        n_items: int | None,
        call: CallStyle,
        options: RunOptions,
    ) -> Run:
        """Create a run: upload the function, stream the chunks, and make sure workers are up."""
        self.check_health()
        with self._lock:
            run_id = f"r{self._next_run:05d}"
            self._next_run += 1
        manifest = RunManifest(run_id=run_id, call=call, retries=options.retries, seed=options.seed)
        run = Run(
            self.store, self.keys, manifest, function_payload, chunks, n_items, self.check_health
        )
        with self._lock:
            self.runs.append(run)
            self._ensure_workers()
        return run

    def check_health(self) -> None:
        """Raise the monitor's fatal error, if it found one."""
        if self.failure is not None:
            raise self.failure

    # Monitor -----------------------------------------------------------------------------------

    def _watch(self) -> None:
        interval = max(0.05, self.store.poll_interval * _MONITOR_POLLS)
        while not self._closed.wait(interval):
            try:
                self._beat_if_due()
                self._check_workers()
            except Exception as exc:  # keep watching; report the first fatal problem
                log.exception("monitor error")
                self.failure = self.failure or exc

    def _beat(self) -> None:
        self._last_client_beat = time.time()
        self.store.put(self.keys.client, to_json({"heartbeat": self._last_client_beat}))

    def _beat_if_due(self) -> None:
        if time.time() - self._last_client_beat >= self.session.timings.heartbeat:
            self._beat()

    def _check_workers(self) -> None:
        with self._lock:
            live = [w for w, up in self.workers.items() if up]
            if not live:
                self._ensure_workers()
                return
            for info in self.backend.describe(live):
                self._phases[info.worker_id] = info.state
                if info.state != "stopped" or self._closed.is_set():
                    continue
                self.workers[info.worker_id] = False
                self._on_worker_stopped(info)
            self._prune_finished_runs()
            self._ensure_workers()

    def _on_worker_stopped(self, info: WorkerInfo) -> None:
        active = [run for run in self.runs if run.outstanding]
        if not active:
            return
        reason = info.reason or f"exit code {info.exit_code}"
        log.info("worker %s stopped (%s) while work remains", info.worker_id, reason)
        interrupted = info.fault == "interrupted"  # the platform's doing: no attempt used up
        for run in active:
            expire_worker_claims(
                self.store, run.keys, run.in_flight(), info.worker_id, penalise=not interrupted
            )
        if info.fault == "out_of_memory":
            self.failure = OutOfMemoryError(
                f"worker {info.worker_id} ran out of memory with {self._memory_text()} "
                f"({reason}). Give each worker more: {self._memory_advice()}"
            )
        elif info.fault == "failed_to_start":
            self.failure = WorkerStartError(
                f"worker {info.worker_id} could not start: {reason}. Check the image "
                "(`starburst config show`) and that `starburst setup` has run in this region."
            )
        elif not interrupted:
            self._count_fruitless(info.worker_id, reason)

    def _memory_text(self) -> str:
        mib = self.spec.memory_mib
        return "the default memory" if mib is None else f"memory={mib / 1024:g} GB"

    def _memory_advice(self) -> str:
        current = self.spec.memory_mib or 2048
        return f"e.g. memory='{2 * current / 1024:g}GB' (with a larger cpu= if Fargate needs it)."

    def _count_fruitless(self, worker_id: str, reason: str) -> None:
        """Give up when workers keep stopping before they complete anything."""
        worked = self._worker_did_work(worker_id)
        self._fruitless_exits = 0 if worked else self._fruitless_exits + 1
        limit = max(MAX_FRUITLESS_EXITS, min(10, self._target_workers // 10))
        if self._fruitless_exits >= limit:
            self.failure = WorkerStartError(
                f"{self._fruitless_exits} workers in a row stopped without completing any work "
                f"(last: {worker_id}, {reason}). Its log ends with:\n"
                f"{self.backend.log_tail(worker_id) or '(empty log)'}"
            )

    def _worker_did_work(self, worker_id: str) -> bool:
        """Whether any process of the worker completed a chunk, from its heartbeats."""
        for key in self.store.list(f"{self.keys.workers_prefix}{worker_id}."):
            try:
                if from_json(self.store.get(key)).get("chunks_done", 0) > 0:
                    return True
            except Exception:
                continue
        return False

    def _prune_finished_runs(self) -> None:
        self.runs = [run for run in self.runs if run.outstanding]

    def _ensure_workers(self) -> None:
        """Keep the target number of workers up while any run has work left."""
        if self.failure is not None or self._closed.is_set():
            return
        if not any(run.outstanding for run in self.runs):
            return
        missing = self._target_workers - self.live_workers
        if missing > 0:
            self._launch(missing)

    def _launch(self, count: int) -> None:
        if count <= 0:
            return
        indices = list(range(self._next_index, self._next_index + count))
        self._next_index += count
        request = LaunchRequest(self.store.url, self.session.session_id, self.spec)
        started = self.backend.launch(request, indices)
        for worker_id in started:
            self.workers[worker_id] = True
        if len(started) < count:  # the platform allows fewer (a quota): work with those
            self._target_workers = max(1, self.live_workers)
        for notice in self.backend.take_notices():
            print(f"starburst: {notice}", file=sys.stderr)


def workers_for(spec: WorkerSpec, n_items: int | None) -> int:
    """How many workers a one-off run needs: no more than there are items to share."""
    if n_items is None:
        return spec.workers
    return max(1, min(spec.workers, math.ceil(n_items / spec.processes)))
