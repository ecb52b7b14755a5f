"""``submit`` for ``Cluster`` and ``Executor``: calls made close together travel as one run.

A background thread gathers the calls queued within a few milliseconds of each other into
one run (one upload per chunk, not one round trip per call), then resolves each call's
``concurrent.futures.Future`` as its chunk's output lands.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from .cluster import plan_tasks
from .engine.driver import Driver
from .engine.run import Run
from .errors import CancelledError
from .serialize import unsendable_call_error

#: While calls are in flight, how long the dispatcher waits for more calls to join a batch.
BATCH_WINDOW_SECONDS = 0.002

_Call = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class SubmitBatcher:
    """Batches ``submit`` calls into runs and resolves their futures."""

    def __init__(self, driver: Driver) -> None:
        self._driver = driver
        self._queue: deque[_Call] = deque()
        self._active: list[tuple[Run, dict[int, Future[Any]]]] = []
        self._wakeup = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="starburst-submit", daemon=True)
        self._thread.start()

    def submit(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Future[Any]:
        """Queue one call; its future resolves when a worker has run it."""
        if not callable(fn):
            raise TypeError(f"{fn!r} is not callable")
        future: Future[Any] = Future()
        with self._wakeup:
            if self._closing:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._queue.append((future, fn, args, kwargs))
            self._wakeup.notify()
        return future

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        """Accept no more calls; optionally cancel queued ones and wait for the rest."""
        with self._wakeup:
            self._closing = True
            if cancel_futures:
                for future, *_ in self._queue:
                    future.cancel()
                self._queue.clear()
            self._wakeup.notify()
        if wait and self._thread is not threading.current_thread():
            self._thread.join()

    def _loop(self) -> None:
        while True:
            with self._wakeup:
                if not self._queue and not self._active:
                    if self._closing:
                        return
                    self._wakeup.wait(0.5)
                    continue
                queued = bool(self._queue)
            if queued:
                if self._active:  # calls are in flight: let calls made close together join
                    time.sleep(BATCH_WINDOW_SECONDS)
                self._dispatch(self._take())  # the first call after a quiet spell goes at once
            if not self._collect() and not queued:
                self._wait_for_outputs()

    def _wait_for_outputs(self) -> None:
        """Wait a poll interval, or less when a worker rings to say an output landed (the
        runs' next polls then list at once)."""
        store = self._driver.store
        store.wait_for_ring(self._driver.keys.news_bell, store.poll_interval)

    def _take(self) -> list[_Call]:
        with self._wakeup:
            calls = list(self._queue)
            self._queue.clear()
        return [call for call in calls if call[0].set_running_or_notify_cancel()]

    def _dispatch(self, calls: list[_Call]) -> None:
        tasks, futures = [], {}
        for future, fn, args, kwargs in calls:
            problem = unsendable_call_error(fn, args, kwargs)
            if problem is not None:
                future.set_exception(problem)
                continue
            futures[len(tasks)] = future
            tasks.append((fn, args, kwargs))
        if not tasks:
            return
        plan = plan_tasks(self._driver.spec, tasks)
        try:
            run = self._driver.submit(
                plan.payload, plan.chunks, plan.n_items, plan.call, plan.options
            )
        except BaseException as exc:
            for future in futures.values():
                future.set_exception(exc)
            return
        self._active.append((run, futures))

    def _collect(self) -> bool:
        """Resolve the futures whose results landed; return whether any did."""
        landed = False
        for run, futures in self._active:
            try:
                self._driver.check_health()
                outputs = run.poll()
                if run.upload_error is not None:
                    raise run.upload_error
            except Exception as exc:
                outputs = []
                for future in futures.values():
                    future.set_exception(exc)
                futures.clear()
            for output in outputs:
                landed = True
                for offset, value in enumerate(output.results):
                    index = output.start + offset
                    future = futures.pop(index)
                    failure = output.failures.get(index)
                    if failure is None:
                        future.set_result(value)
                    else:
                        future.set_exception(failure.to_exception())
            if self._driver.closed and futures:
                for future in futures.values():
                    future.set_exception(CancelledError("the cluster was closed first"))
                futures.clear()
        self._active = [(run, futures) for run, futures in self._active if futures]
        return landed
