"""Turning a run's chunk outputs into what a front end returns, under the ``errors=`` policy.

Work is done a chunk at a time (a slice copy for a chunk without failures), never an object
per item, so collecting a hundred thousand tiny results costs next to nothing.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Hashable, Iterator
from typing import Any

from .engine.item_times import ITEM_TIMES
from .engine.outcome import ChunkOutput
from .engine.run import Run
from .errors import PartialResults, StarburstError, attach_partial
from .options import RunOptions
from .progress import Progress


class Collector:
    """Collects one run for a front end, keeping what completed if the call fails."""

    def __init__(
        self,
        run: Run,
        options: RunOptions,
        progress: Progress,
        workers: Callable[[], str],
        keep_results: bool,
        timing_key: Hashable | None = None,
        recall: Callable[[Run], None] | None = None,
        started: float | None = None,
    ) -> None:
        """``started`` (``time.monotonic``) is when the call began: its ``timeout`` counts from
        then, so planning and launching use it up too (default: now)."""
        self.run = run
        self._recall = recall
        self._timing_key = timing_key
        self.options = options
        self.progress = progress
        self._workers = workers
        self._keep = keep_results
        self._kept: list[ChunkOutput] = []
        started = time.monotonic() if started is None else started
        self._deadline = None if options.timeout is None else started + options.timeout

    # Landing chunks ------------------------------------------------------------------------

    def _chunks(self) -> Iterator[ChunkOutput]:
        try:
            for output in self.run.outputs(self._deadline, self._on_poll):
                if self._timing_key is not None and not output.failures:
                    ITEM_TIMES.observe(self._timing_key, output.seconds, len(output.results))
                if self._keep:
                    self._kept.append(output)
                yield output
        except GeneratorExit:  # the caller stopped iterating: the rest is not wanted
            self.run.cancel()
            raise
        except (Exception, KeyboardInterrupt) as exc:
            self._fail(exc)
            raise
        finally:
            self.progress.close()

    def _on_poll(self, run: Run) -> None:
        self.progress.update(run.items_delivered, run.n_items, self._workers())

    def _fail(self, exc: BaseException) -> None:
        """Cancel the run and attach what completed to ``exc``: what landed, and what the
        workers still running the run finished (``recall`` stops them, and they write it).
        A store that fails meanwhile leaves what landed before."""
        with contextlib.suppress(StarburstError, OSError):  # (a store that takes no writes)
            self.run.cancel()
        if getattr(exc, "starburst_results", None) is not None:
            return
        if self._keep and self._recall is not None:
            with contextlib.suppress(StarburstError, OSError):
                self._recall(self.run)
                self._kept += self.run.last_poll()
        attach_partial(exc, self.partial_results())

    def partial_results(self) -> PartialResults:
        """What has completed so far (only results kept by ``map``; ``imap`` yielded its own)."""
        partial = PartialResults(n_items=self.run.n_items)
        for output in self._kept:
            for offset, value in enumerate(output.results):
                index = output.start + offset
                failure = output.failures.get(index)
                if failure is None:
                    partial.done[index] = value
                else:
                    partial.failed[index] = failure.to_exception()
        return partial

    def _values(self, output: ChunkOutput) -> Iterator[Any]:
        """A chunk's values in order; a failure raises (``errors="raise"``) or stands in."""
        if not output.failures:
            yield from output.results
            return
        for offset, value in enumerate(output.results):
            failure = output.failures.get(output.start + offset)
            if failure is None:
                yield value
                continue
            exc = failure.to_exception()
            if self.options.errors == "raise":
                self._fail(exc)
                raise exc
            yield exc

    # Front-end shapes ----------------------------------------------------------------------

    def as_list(self) -> list[Any]:
        """Every result in input order; with ``errors="raise"`` the first failure to land raises."""
        landed = {
            output.start: output.results if not output.failures else list(self._values(output))
            for output in self._chunks()
        }
        results: list[Any] = []
        for start in sorted(landed):
            results.extend(landed[start])
        return results

    def ordered(self) -> Iterator[Any]:
        """Results in input order, each yielded as soon as it and those before it landed."""
        waiting: dict[int, ChunkOutput] = {}
        following = 0
        for output in self._chunks():
            waiting[output.start] = output
            while following in waiting:
                ready = waiting.pop(following)
                following += len(ready.results)
                yield from self._values(ready)

    def unordered(self) -> Iterator[Any]:
        """Results in the order their chunks land."""
        for output in self._chunks():
            yield from self._values(output)
