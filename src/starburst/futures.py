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

import concurrent.futures
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator
from concurrent.futures import Future
from concurrent.futures._base import CANCELLED_AND_NOTIFIED, FINISHED, PENDING, RUNNING
from typing import Any

from .engine.driver import Driver
from .engine.item_times import ITEM_TIMES
from .engine.manifest import CallStyle
from .engine.outcome import ChunkOutput, describe_call
from .engine.run import Run
from .engine.shared import SharedArguments
from .errors import CancelledError, SerializationError, WorkerLostError
from .options import RunOptions
from .planning import plan_call, plan_tasks
from .serialize import pickle_call

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
        self.batch: _CallBatch | None = None  # set once the call is dispatched...
        self.index = 0  # ...with its place in the batch's run

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
        batch = self.batch
        if batch is not None:
            batch.cancelled.append(self)
        return True

    def mark_running(self) -> bool:
        """Note that a worker started the call; whether its outcome is still to be set
        (``False`` once it was cancelled or resolved)."""
        with self._condition:
            if self._state in (CANCELLED_AND_NOTIFIED, FINISHED):
                return False
            return self._state == RUNNING or self.set_running_or_notify_cancel()

    def resolve(self, result: Any = None, error: BaseException | None = None) -> None:
        """Set the call's outcome, unless it was cancelled."""
        self.batch = None  # (a future kept by the caller need not keep its run)
        if not self.mark_running():
            return
        if error is None:
            self.set_result(result)
        else:
            self.set_exception(error)


class _CallBatch:
    """One run of submitted calls and the futures still waiting for their results."""

    def __init__(self, run: Run, futures: dict[int, CallFuture], calls: dict[int, Any]) -> None:
        self.run = run
        self.futures = futures  # item index -> its future, until resolved
        self.calls = calls  # item index -> (fn, args, kwargs), until resolved
        self.started = False  # a worker has been seen taking one of its chunks
        self.claimed: set[int] = set()  # chunks seen claimed
        self.next_look = 0.0  # time.monotonic() of the next listing of the claims
        self.cancelled: list[CallFuture] = []  # by the user, not dropped yet
        for index, future in futures.items():
            future.batch, future.index = self, index
            if future.cancelled():  # while it was being sent
                self.cancelled.append(future)

    @property
    def pending(self) -> bool:
        return bool(self.futures)

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

    def look_if_due(self, now: float, interval: float) -> None:
        """Learn which calls started, every ``interval`` while that can teach something."""
        n_chunks = self.run.n_chunks
        seen = len(self.claimed | self.run.delivered)
        if now >= self.next_look and (n_chunks is None or seen < n_chunks):
            self.learn_started()
            self.next_look = now + interval

    def cancel_unstarted(self) -> None:
        self.learn_started()
        for future in list(self.futures.values()):
            if not future.running() and not future.done():
                future.cancel_unstarted()

    def deliver(self, output: ChunkOutput) -> None:
        """Resolve the futures of a chunk's calls (a cancelled call's result is dropped)."""
        self.started = True
        for offset, value in enumerate(output.results):
            index = output.start + offset
            future = self.futures.pop(index, None)
            call = self.calls.pop(index, None)
            if future is None or future.cancelled():
                continue
            failure = output.failures.get(index)
            if failure is None:
                future.resolve(value)
            elif failure.lost and call is not None:
                future.resolve(error=WorkerLostError(
                    f"{describe_call(call)} was not computed: {failure.message} while "
                    "running it (os._exit, a crash, or too little memory). The workers' logs "
                    "say more; the executor goes on with the other calls."
                ))  # fmt: skip
            else:
                if call is not None:  # the worker had the call pickled: name it here
                    failure.where = describe_call(call)
                future.resolve(error=failure.to_exception(as_raised=True))

    def fail(self, exc: BaseException) -> None:
        _fail(self.futures.values(), exc)
        self.futures.clear()
        self.calls.clear()

    def drop_cancelled(self) -> None:
        """Forget the calls the user cancelled; once none is left, cancel the run (workers
        then take none of its chunks)."""
        if not self.cancelled:
            return
        while self.cancelled:
            index = self.cancelled.pop().index
            self.futures.pop(index, None)
            self.calls.pop(index, None)
        if not self.futures and not self.run.complete:
            self.run.cancel()


def _fail(futures: Iterable[CallFuture], exc: BaseException) -> None:
    """Resolve each future not cancelled with ``exc``."""
    for future in futures:
        future.resolve(error=exc)


class _MapBatch:
    """The run of an ``Executor.map``: its chunk outputs, kept as they land until the
    caller's iterator reads them in order (a chunk at a time, not a future per item)."""

    def __init__(self, run: Run, n_items: int, timing_key: Hashable | None) -> None:
        self.run = run
        self.n_items = n_items
        self.timing_key = timing_key
        self.started = False
        self._landed: dict[int, ChunkOutput] = {}  # first index -> output, until read
        self._error: BaseException | None = None
        self._cancelled = False
        self._changed = threading.Condition()

    @property
    def pending(self) -> bool:
        return not (self.run.complete or self._error is not None or self._cancelled)

    def learn_started(self) -> None:
        self.started = self.started or bool(self.run.in_flight())

    def look_if_due(self, now: float, interval: float) -> None:
        """(A map's calls have no futures to mark as running.)"""

    def cancel_unstarted(self) -> None:
        """Cancel the calls whose results have not landed (reading them raises
        ``CancelledError``); workers take none of the run's chunks any more."""
        with self._changed:
            self._cancelled = True
            self._changed.notify_all()
        self.run.cancel()

    def deliver(self, output: ChunkOutput) -> None:
        self.started = True
        if self.timing_key is not None and not output.failures:
            ITEM_TIMES.observe(self.timing_key, output.seconds, len(output.results))
        with self._changed:
            self._landed[output.start] = output
            self._changed.notify_all()

    def fail(self, exc: BaseException) -> None:
        with self._changed:
            self._error = exc
            self._changed.notify_all()

    def drop_cancelled(self) -> None:
        """(Only the iterator cancels a map's calls, by cancelling its run.)"""

    def results(self, deadline: float | None) -> Iterator[Any]:
        """Each call's result in order, as ``concurrent.futures.Executor.map`` yields them:
        a failed call raises at its place, ``TimeoutError`` past ``deadline``, and the calls
        not yet done are cancelled if the caller stops early. No yielded result is held."""
        following, read_all = 0, False
        try:
            while following < self.n_items:
                output = self._wait_for(following, deadline)
                following += len(output.results)
                values, failures, index = output.results, output.failures, output.start
                values.reverse()
                while values:
                    if index in failures:
                        raise failures[index].to_exception(as_raised=True)
                    index += 1
                    yield values.pop()
            read_all = True
        finally:
            if not read_all:
                self.cancel_unstarted()

    def _wait_for(self, start: int, deadline: float | None) -> ChunkOutput:
        with self._changed:
            while start not in self._landed:
                if self._error is not None:
                    raise self._error
                if self._cancelled:
                    raise concurrent.futures.CancelledError()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError()
                self._changed.wait(remaining)
            return self._landed.pop(start)


_Batch = _CallBatch | _MapBatch


class SubmitBatcher:
    """Batches ``submit`` calls into runs and resolves their futures; collects the runs of
    ``Executor.map``."""

    def __init__(self, driver: Driver) -> None:
        self._driver = driver
        self._shared = SharedArguments(driver.store, driver.keys)
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
        self,
        fn: Callable[..., Any],
        iterables: tuple[Iterable[Any], ...],
        chunk_size: int | None,
        deadline: float | None,
    ) -> Iterator[Any]:
        """Submit ``fn`` over the zipped iterables now, as one run; return its results in
        order (``deadline``: a ``time.monotonic()`` value)."""
        single = len(iterables) == 1
        items = list(iterables[0]) if single else list(zip(*iterables, strict=False))
        call: CallStyle = "single" if single else "star"
        options = RunOptions.build(chunk_size=chunk_size)
        plan = plan_call(self._driver.spec, fn, (items,), call, options)
        with self._wakeup:
            self._refuse_if_closing()
        if not items:
            return iter(())
        run = self._driver.submit(
            plan.payload, plan.chunks, plan.n_items, plan.call, plan.options, plan.item_seconds,
            blames_items=True,
        )  # fmt: skip
        batch = _MapBatch(run, len(items), plan.timing_key)
        self._add(batch)
        return batch.results(deadline)

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
            batch.cancel_unstarted()
        with self._wakeup:
            self._wakeup.notify()

    # The dispatching thread ------------------------------------------------------------------

    def _loop(self) -> None:
        try:
            while self._step():
                pass
        except BaseException as exc:  # never leave a future unresolved
            for batch in self._active:
                batch.fail(exc)
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
        tasks: list[bytes] = []
        futures, sent = {}, {}
        with self._shared.remembering():  # a matrix in every call is hashed once
            for future, fn, args, kwargs in calls:
                if future.cancelled():
                    continue
                try:
                    pickled = pickle_call(fn, args, kwargs, share=self._shared.reference)
                except SerializationError as problem:
                    future.resolve(error=problem)
                    continue
                futures[len(tasks)] = future
                sent[len(tasks)] = (fn, args, kwargs)
                tasks.append(pickled)
        if tasks:
            plan = plan_tasks(self._driver.spec, tasks)
            try:
                run = self._driver.submit(
                    plan.payload, plan.chunks, plan.n_items, plan.call, plan.options,
                    blames_items=True,
                )  # fmt: skip
            except BaseException as exc:
                _fail(futures.values(), exc)
            else:
                self._add(_CallBatch(run, futures, sent))
        self._dispatching = []

    def _add(self, batch: _Batch) -> None:
        if isinstance(batch, _CallBatch):
            batch.next_look = time.monotonic() + self._driver.store.max_poll_interval
        with self._wakeup:
            self._active.append(batch)
            self._wakeup.notify()

    def _collect(self) -> bool:
        """Hand each batch the outputs that landed; return whether any did."""
        landed = False
        now, interval = time.monotonic(), self._driver.store.max_poll_interval
        for batch in list(self._active):
            try:
                self._driver.check_health()
                outputs = batch.run.poll()
                if batch.run.upload_error is not None:
                    raise batch.run.upload_error
                batch.look_if_due(now, interval)
            except Exception as exc:
                batch.fail(exc)
                continue
            for output in outputs:
                landed = True
                batch.deliver(output)
            if self._driver.closed and batch.pending:
                batch.fail(CancelledError("the cluster was closed first"))
            batch.drop_cancelled()
            self._seen_start = self._seen_start or batch.started
        with self._wakeup:
            self._active = [batch for batch in self._active if batch.pending]
        return landed
