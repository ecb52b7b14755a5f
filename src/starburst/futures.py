"""``submit`` for ``Cluster`` and ``Executor``: calls made close together travel as one run.

A background thread gathers the calls queued within a few milliseconds of each other into
one run (one upload per chunk, not one round trip per call), then resolves each call's
future as its chunk's output lands. A future stays pending (and can be cancelled) until a
worker is seen to have claimed its chunk; the claims are listed every ``max_poll_interval``
while some calls have not started, and at once by ``cancel`` and ``shutdown``, never per
call. Calls not awaited are finished before the interpreter exits, as the standard
library's executors do.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from concurrent.futures._base import CANCELLED_AND_NOTIFIED, PENDING, RUNNING
from dataclasses import dataclass, field
from typing import Any

from .cluster import Plan, plan_call, plan_tasks
from .engine.driver import Driver
from .engine.outcome import ChunkOutput, describe_call
from .engine.run import Run
from .errors import CancelledError, WorkerLostError
from .serialize import unsendable_call_error

#: While calls are in flight, how long the dispatcher waits for more calls to join a batch.
BATCH_WINDOW_SECONDS = 0.002

_Call = tuple["CallFuture", Callable[..., Any], tuple[Any, ...], dict[str, Any]]

#: Every batcher still running, for the interpreter's exit to finish their calls.
_batchers: weakref.WeakSet[SubmitBatcher] = weakref.WeakSet()
_interpreter_exiting = False


def refuse_if_exiting() -> None:
    """Raise as the standard executors do when a call comes in during interpreter exit."""
    if _interpreter_exiting:
        raise RuntimeError("cannot schedule new futures after interpreter shutdown")


def _finish_calls_at_exit() -> None:
    """Run before the interpreter joins its threads: refuse new calls, finish the others."""
    global _interpreter_exiting
    _interpreter_exiting = True
    for batcher in list(_batchers):
        batcher.shutdown(wait=True)


threading._register_atexit(_finish_calls_at_exit)  # type: ignore[attr-defined]


class CallFuture(Future[Any]):
    """The future of one submitted call: running once a worker has claimed its chunk."""

    def __init__(self) -> None:
        super().__init__()
        self.batch: _Batch | None = None  # set once the call is dispatched

    def cancel(self) -> bool:
        """Cancel the call unless a worker has started it (its chunk is claimed)."""
        batch = self.batch
        if batch is not None and self._state == PENDING:
            batch.learn_started()
        return self.cancel_unstarted()

    def cancel_unstarted(self) -> bool:
        """Cancel the call if it is still pending, as far as this process knows."""
        with self._condition:
            if not super().cancel():
                return False
            self.mark_running()  # tells wait() and as_completed() at once
        return True

    def mark_running(self) -> bool:
        """Note that a worker started the call; ``False`` when it was cancelled."""
        with self._condition:
            if self._state == RUNNING:
                return True
            if self._state == CANCELLED_AND_NOTIFIED:
                return False
            return self.set_running_or_notify_cancel()


@dataclass
class _Batch:
    """One run of dispatched calls and the futures still waiting for their results."""

    run: Run
    futures: dict[int, CallFuture]  # item index -> its future, until resolved
    calls: dict[int, Any] = field(default_factory=dict)  # item index -> (fn, args, kwargs)
    next_look: float = 0.0  # time.monotonic() of the next listing of the claims
    started: bool = False  # a worker has been seen taking one of its chunks
    claimed: set[int] = field(default_factory=set)  # chunks seen claimed (or delivered)

    def learn_started(self) -> None:
        """List the run's claims and mark the calls of newly claimed chunks as running."""
        for chunk in self.run.in_flight():
            if chunk in self.claimed:
                continue
            self.claimed.add(chunk)
            self.started = True
            start, count = self.run.spans.get(chunk, (0, 0))
            for index in range(start, start + count):
                future = self.futures.get(index)
                if future is not None:
                    future.mark_running()

    @property
    def all_started(self) -> bool:
        """Every chunk has been seen claimed or delivered: no listing can teach more."""
        n_chunks = self.run.n_chunks
        return n_chunks is not None and len(self.claimed | self.run.delivered) >= n_chunks

    def unstarted(self) -> list[CallFuture]:
        return [f for f in list(self.futures.values()) if not f.running() and not f.done()]


class SubmitBatcher:
    """Batches ``submit`` calls into runs and resolves their futures."""

    def __init__(self, driver: Driver) -> None:
        self._driver = driver
        self._queue: deque[_Call] = deque()
        self._active: list[_Batch] = []
        self._wakeup = threading.Condition()
        self._closing = False
        self._then: Callable[[], None] | None = None  # run once the last call is resolved
        self._dispatching: list[_Call] = []  # taken from the queue, not in a batch yet
        self._seen_start = False  # a worker has been seen taking one of these calls
        self._thread = threading.Thread(target=self._loop, name="starburst-submit", daemon=True)
        self._thread.start()
        _batchers.add(self)

    def submit(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> CallFuture:
        """Queue one call; its future resolves when a worker has run it."""
        if not callable(fn):
            raise TypeError(f"{fn!r} is not callable")
        future = CallFuture()
        with self._wakeup:
            self._refuse_if_closing()
            self._queue.append((future, fn, args, kwargs))
            self._wakeup.notify()
        return future

    def submit_map(
        self, fn: Callable[..., Any], iterables: tuple[Iterable[Any], ...], chunk_size: int | None
    ) -> list[CallFuture]:
        """Submit ``fn`` over the zipped iterables as one run now: a future per item."""
        items = list(zip(*iterables, strict=False))
        plan = plan_call(self._driver.spec, fn, (items,), "star", chunk_size=chunk_size)
        futures = [CallFuture() for _ in items]
        with self._wakeup:
            self._refuse_if_closing()
        if futures:
            self._start_batch(plan, dict(enumerate(futures)), {})
        return futures

    def _refuse_if_closing(self) -> None:
        refuse_if_exiting()
        if self._closing:
            raise RuntimeError("cannot schedule new futures after shutdown")

    def shutdown(
        self,
        wait: bool = True,
        cancel_futures: bool = False,
        then: Callable[[], None] | None = None,
    ) -> None:
        """Accept no more calls; optionally cancel those no worker has started; wait for the
        rest if asked. ``then`` runs once every call is resolved."""
        with self._wakeup:
            self._closing = True
            self._then = then or self._then
            self._wakeup.notify()
        if cancel_futures:
            self._cancel_unstarted()
        if wait and self._thread is not threading.current_thread():
            self._thread.join()

    def _cancel_unstarted(self) -> None:
        """Cancel every call no worker has started. Workers that are still starting are
        first given the time to take their first calls, as a process pool's would."""
        while not self._seen_start and (self._queue or self._dispatching or self._active):
            if self._driver.failure or self._driver.closed or not self._thread.is_alive():
                break
            for batch in list(self._active):
                batch.learn_started()
                self._seen_start = self._seen_start or batch.started
            time.sleep(self._driver.store.poll_interval)
        with self._wakeup:
            queued = list(self._queue) + self._dispatching
            self._queue.clear()
        for future, *_ in queued:
            future.cancel_unstarted()
        for batch in list(self._active):
            batch.learn_started()
            for future in batch.unstarted():
                future.cancel_unstarted()
        with self._wakeup:
            self._wakeup.notify()

    # The dispatching thread ------------------------------------------------------------------

    def _loop(self) -> None:
        try:
            while self._step():
                pass
        except BaseException as exc:  # never leave a future unresolved
            for batch in self._active:
                for future in batch.futures.values():
                    if future.mark_running():
                        future.set_exception(exc)
            raise
        finally:
            if self._then is not None:
                self._then()

    def _step(self) -> bool:
        """Dispatch what is queued and resolve what landed; ``False`` once done for good."""
        with self._wakeup:
            if not self._queue and not self._active:
                if self._closing:
                    return False
                self._wakeup.wait(0.5)
                return True
            queued = bool(self._queue)
        if queued:
            if self._active:  # calls are in flight: let calls made close together join
                time.sleep(BATCH_WINDOW_SECONDS)
            self._dispatch(self._take())  # the first call after a quiet spell goes at once
        if not self._collect() and not queued:
            self._wait_for_outputs()
        return True

    def _wait_for_outputs(self) -> None:
        """Wait a poll interval, or less when a worker rings to say an output landed (the
        runs' next polls then list at once)."""
        store = self._driver.store
        store.wait_for_ring(self._driver.keys.news_bell, store.poll_interval)

    def _take(self) -> list[_Call]:
        with self._wakeup:
            self._dispatching = list(self._queue)
            self._queue.clear()
        return self._dispatching

    def _dispatch(self, calls: list[_Call]) -> None:
        tasks, futures, sent = [], {}, {}
        for future, fn, args, kwargs in calls:
            if future.cancelled():
                continue
            problem = unsendable_call_error(fn, args, kwargs)
            if problem is not None:
                if future.mark_running():
                    future.set_exception(problem)
                continue
            futures[len(tasks)] = future
            sent[len(tasks)] = (fn, args, kwargs)
            tasks.append((fn, args, kwargs))
        if tasks:
            self._start_batch(plan_tasks(self._driver.spec, tasks), futures, sent)
        self._dispatching = []

    def _start_batch(
        self, plan: Plan, futures: dict[int, CallFuture], calls: dict[int, Any]
    ) -> None:
        try:
            run = self._driver.submit(
                plan.payload, plan.chunks, plan.n_items, plan.call, plan.options,
                blames_items=True,
            )  # fmt: skip
        except BaseException as exc:
            for future in futures.values():
                if future.mark_running():
                    future.set_exception(exc)
            return
        batch = _Batch(run, futures, calls, time.monotonic() + self._driver.store.max_poll_interval)
        for future in futures.values():
            future.batch = batch
        with self._wakeup:
            self._active.append(batch)
            self._wakeup.notify()

    def _collect(self) -> bool:
        """Resolve the futures whose results landed; return whether any did."""
        landed = False
        now = time.monotonic()
        for batch in list(self._active):
            run, futures = batch.run, batch.futures
            try:
                self._driver.check_health()
                outputs = run.poll()
                if run.upload_error is not None:
                    raise run.upload_error
                if now >= batch.next_look and not batch.all_started:
                    batch.learn_started()
                    batch.next_look = now + self._driver.store.max_poll_interval
            except Exception as exc:
                outputs = []
                for future in futures.values():
                    if future.mark_running():
                        future.set_exception(exc)
                futures.clear()
            for output in outputs:
                landed = True
                self._resolve(batch, output)
            self._seen_start = self._seen_start or batch.started
            if self._driver.closed and futures:
                for future in futures.values():
                    if future.mark_running():
                        future.set_exception(CancelledError("the cluster was closed first"))
                futures.clear()
            cancelled = [index for index, future in list(futures.items()) if future.cancelled()]
            for index in cancelled:  # by the user: its result, should it come, is dropped
                del futures[index]
                batch.calls.pop(index, None)
            if cancelled and not futures and not run.complete:
                run.cancel()  # every call left was cancelled: workers take no more chunks
        with self._wakeup:
            self._active = [batch for batch in self._active if batch.futures]
        return landed

    def _resolve(self, batch: _Batch, output: ChunkOutput) -> None:
        for offset, value in enumerate(output.results):
            index = output.start + offset
            future = batch.futures.pop(index, None)
            call = batch.calls.pop(index, None)
            batch.started = True
            if future is None or not future.mark_running():
                continue
            failure = output.failures.get(index)
            if failure is None:
                future.set_result(value)
            elif failure.lost and call is not None:
                future.set_exception(
                    WorkerLostError(
                        f"{describe_call(call)} was not computed: {failure.message}. Its "
                        "worker died while running it (os._exit, a crash, or too little "
                        "memory): look at the workers' logs; retries= sets how often it is "
                        "tried."
                    )
                )
            else:
                future.set_exception(failure.to_exception())
