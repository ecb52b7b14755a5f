"""``Cluster``: a session whose workers stay up between calls.

The module-level ``map``/``imap``/... are a ``Cluster`` opened for one call; ``Executor`` is
a ``concurrent.futures`` face on a ``Cluster``. All of them validate everything before any
worker starts, and collect through the same engine.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Unpack

from .collect import Collector
from .cost.guard import CostLimits, RunReport
from .engine.driver import Driver
from .engine.manifest import CallStyle
from .errors import StarburstError
from .futures import SubmitBatcher, refuse_if_exiting
from .options import (
    CallKeywords,
    RunKeywords,
    RunOptions,
    WorkerSpec,
    pick,
    show_progress,
    takes,
)
from .planning import Plan, plan_call
from .progress import make_progress

if TYPE_CHECKING:
    from .backends.base import Backend


class Cluster:
    """Workers that stay up across calls: the second ``map`` pays no start-up.

    Use it as a context manager; the workers are stopped when the block ends::

        with starburst.Cluster(workers=4) as cluster:
            squares = cluster.map(lambda x: x * x, range(100))
            future = cluster.submit(sum, [1, 2, 3])

    On EC2, ``keep_warm`` (seconds, or e.g. ``"15m"``; at most a day) keeps the instances
    up, empty, after the block, so that a later call starts its workers in seconds.
    """

    def __init__(
        self,
        workers: int | None = None,
        cpu: int | float | None = None,
        memory: str | int | float | None = None,
        backend: str | Backend | None = None,
        *,
        spot: bool = False,
        gpus: int = 0,
        instance_types: Sequence[str] | None = None,
        arch: str | None = None,
        keep_warm: str | float | None = None,
        progress: bool | None = None,
        max_cost: float | None = None,
        cost_alert: float | None = None,
    ) -> None:
        self.spec = WorkerSpec.build(
            backend=backend, workers=workers, cpu=cpu, memory=memory, spot=spot, gpus=gpus,
            instance_types=instance_types, arch=arch, keep_warm=keep_warm,
        )  # fmt: skip
        self.limits = CostLimits.build(max_cost, cost_alert)
        self.progress = show_progress(progress)
        self._driver: Driver | None = None
        self._batcher: SubmitBatcher | None = None
        self._closed = False

    # Lifecycle ---------------------------------------------------------------------------------

    def start(
        self,
        workers: int | None = None,
        *,
        lazy: bool = False,
        work: tuple[int, float] | None = None,
    ) -> Cluster:
        """Start the workers (``with`` does this for you); returns the cluster.

        With ``lazy=True`` they start with the first call instead, which then finds its
        inputs already on their way (a one-off ``starburst.map`` does this). ``work`` (items,
        seconds per item) lets the cost check estimate the first run.
        """
        if self._closed:
            raise StarburstError(
                "this Cluster is closed (its `with` block ended, or close() was called); open "
                "a new one: `with starburst.Cluster(...) as cluster:`"
            )
        if self._driver is None:
            exit_cleanly_on_sigterm()
            driver = Driver.new(self.spec, self.limits)
            driver.start(workers, launch=not lazy, work=work)
            self._driver = driver
            weakref.finalize(self, driver.close)
        return self

    def close(self) -> None:
        """Wait for submitted calls, stop the workers and remove the session's data.

        Safe to call twice.
        """
        self._closed = True
        self.stop_submitting(wait=True)
        if self._driver is not None:
            self._driver.close()

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def report(self) -> RunReport | None:
        """Wall time, workers and cost of this session so far (in total once closed);
        ``None`` before it started."""
        return None if self._driver is None else self._driver.cost.report()

    @property
    def driver(self) -> Driver:
        """The engine behind this cluster (started on first use; a closed cluster raises)."""
        self.start()
        assert self._driver is not None
        return self._driver

    # Front ends --------------------------------------------------------------------------------

    @takes(CallKeywords)
    def map(
        self, fn: Callable[..., Any], *iterables: Iterable[Any], **options: Unpack[CallKeywords]
    ) -> list[Any]:
        """``fn`` over the items (several iterables are zipped), as a list in input order.

        Options: ``chunk_size``, ``errors`` ("raise" or "return"), ``retries``,
        ``retry_exceptions``, ``timeout`` (seconds for the whole call), ``seed``, ``strict``
        (iterables of different lengths are an error) and ``progress`` (``None``: the
        cluster's), as for ``starburst.map``.
        """
        collector = self._collect(fn, iterables, "single", options, keep_results=True)
        return collector.as_list() if collector is not None else []

    @takes(CallKeywords)
    def starmap(
        self,
        fn: Callable[..., Any],
        iterable: Iterable[Iterable[Any]],
        **options: Unpack[CallKeywords],
    ) -> list[Any]:
        """Like ``map``, calling ``fn(*args)`` for each tuple of arguments."""
        collector = self._collect(fn, (iterable,), "star", options, keep_results=True)
        return collector.as_list() if collector is not None else []

    @takes(CallKeywords)
    def imap(
        self, fn: Callable[..., Any], *iterables: Iterable[Any], **options: Unpack[CallKeywords]
    ) -> Iterator[Any]:
        """Results in input order, each yielded as soon as it (and those before it) landed."""
        collector = self._collect(fn, iterables, "single", options, keep_results=False)
        return collector.ordered() if collector is not None else iter(())

    @takes(CallKeywords)
    def imap_unordered(
        self, fn: Callable[..., Any], *iterables: Iterable[Any], **options: Unpack[CallKeywords]
    ) -> Iterator[Any]:
        """Results in the order they land."""
        collector = self._collect(fn, iterables, "single", options, keep_results=False)
        return collector.unordered() if collector is not None else iter(())

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Run ``fn(*args, **kwargs)`` on a worker; calls made close together share a run."""
        return self.submitter.submit(fn, args, kwargs)

    @property
    def submitter(self) -> SubmitBatcher:
        """What batches this cluster's ``submit`` calls (started on first use)."""
        refuse_if_exiting()  # before anything starts
        if self._batcher is None:
            self._batcher = SubmitBatcher(self.driver)
        return self._batcher

    def stop_submitting(
        self, wait: bool, cancel_queued: bool = False, then: Callable[[], None] | None = None
    ) -> None:
        """Refuse further ``submit`` calls; cancel those not started and/or wait for the
        rest; ``then`` runs once every call is resolved (at once if none was made)."""
        if self._batcher is not None:
            self._batcher.shutdown(wait=wait, cancel_futures=cancel_queued, then=then)
        elif then is not None:
            then()

    # Shared machinery --------------------------------------------------------------------------

    def plan(
        self,
        fn: Callable[..., Any],
        iterables: tuple[Iterable[Any], ...],
        call: CallStyle,
        options: RunOptions | None = None,
    ) -> Plan | None:
        """Validate a call and plan its chunks; ``None`` when there is nothing to do."""
        started = time.monotonic()  # the call's timeout covers planning and launching too
        plan = plan_call(self.spec, fn, iterables, call, options or RunOptions())
        plan.started = started
        return None if plan.n_items == 0 else plan

    def collector(self, plan: Plan, progress: bool | None, keep_results: bool) -> Collector:
        """Submit a planned call and return what collects it."""
        driver = self.driver
        run = driver.submit(
            plan.payload, plan.chunks, plan.n_items, plan.call, plan.options, plan.item_seconds
        )
        shown = self.progress if progress is None else progress
        display = make_progress(shown, header(self.spec, driver.session.session_id))
        return Collector(
            run, plan.options, display, self._workers_and_cost, keep_results, plan.timing_key,
            recall=driver.recall, started=plan.started,
        )  # fmt: skip

    def _workers_and_cost(self) -> str:
        """What the progress display shows about the workers: their phases and the cost."""
        cost = self.driver.cost.so_far()
        return f"{self.driver.worker_summary()}{f', {cost}' if cost else ''}"

    def _collect(
        self,
        fn: Callable[..., Any],
        iterables: tuple[Iterable[Any], ...],
        call: CallStyle,
        options: CallKeywords,
        keep_results: bool,
    ) -> Collector | None:
        progress = show_progress(options.get("progress"))
        plan = self.plan(fn, iterables, call, RunOptions.build(**pick(RunKeywords, options)))
        return None if plan is None else self.collector(plan, progress, keep_results)


def exit_cleanly_on_sigterm() -> None:
    """Make SIGTERM end this process as Ctrl-C does, through ``finally`` blocks and exit
    handlers, so that its workers are stopped and its scratch store (in memory, on
    ``/dev/shm``) is removed, instead of dying on the spot. Only where SIGTERM has its default
    action, and only from the main thread (where Python runs signal handlers)."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
        if not _forks_restore_sigterm:
            os.register_at_fork(after_in_child=_restore_default_sigterm)
            _forks_restore_sigterm.append(True)


#: Whether forks of this process get SIGTERM's default action back (registered once).
_forks_restore_sigterm: list[bool] = []


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # the status a shell reports for a process killed by it


def _restore_default_sigterm() -> None:
    """In a fork of the client (a ``multiprocessing`` pool's worker, say), SIGTERM kills as
    by default: a Python handler cannot run in a child stuck on a lock another thread of the
    client held at the fork, and its ``terminate()`` would then never return."""
    if signal.getsignal(signal.SIGTERM) is _exit_on_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def header(spec: WorkerSpec, session_id: str) -> str:
    """The line printed above the progress bar: where the work runs and how to go bigger."""
    line = f"starburst: {spec.workers} workers x {spec.cpu:g} cpu on the {spec.backend} backend"
    sandbox = os.environ.get("STARBURST_SANDBOX")  # (the sandbox says what it is not)
    line += spec.backend.header(spec, session_id)
    return f"starburst: {sandbox}\n{line}" if sandbox else line
