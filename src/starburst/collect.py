"""Turning a run's outcomes into what a front end returns, under the ``errors=`` policy."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from .engine.run import ItemOutcome, Run
from .errors import PartialResults, attach_partial
from .options import RunOptions
from .progress import Progress


class Collector:
    """Collects one run for a front end, keeping what completed if the call fails."""

    def __init__(
        self,
        run: Run,
        options: RunOptions,
        progress: Progress,
        live_workers: Any,
        keep_results: bool,
    ) -> None:
        self.run = run
        self.options = options
        self.progress = progress
        self._live_workers = live_workers
        self._keep = keep_results
        self.partial = PartialResults(n_items=run.n_items)
        started = time.monotonic()
        self._deadline = started + options.timeout if options.timeout is not None else None

    def _outcomes(self) -> Iterator[ItemOutcome]:
        try:
            yield from self.run.outcomes(self._deadline, self._on_poll)
        except GeneratorExit:  # the caller stopped iterating: the rest is not wanted
            self.run.cancel()
            raise
        except (Exception, KeyboardInterrupt) as exc:
            self._fail(exc)
            raise
        finally:
            self.progress.close()

    def _fail(self, exc: BaseException) -> None:
        if getattr(exc, "starburst_results", None) is None:
            self.partial.n_items = self.run.n_items
            attach_partial(exc, self.partial)
        self.run.cancel()

    def _on_poll(self, run: Run) -> None:
        self.progress.update(run.items_delivered, run.n_items, self._live_workers())

    def _value(self, outcome: ItemOutcome) -> Any:
        if outcome.failure is None:
            if self._keep:
                self.partial.done[outcome.index] = outcome.value
            return outcome.value
        exc = outcome.failure.to_exception()
        self.partial.failed[outcome.index] = exc
        if self.options.errors == "raise":
            self._fail(exc)
            raise exc
        return exc

    def as_list(self) -> list[Any]:
        """Every result in input order (exceptions in place with ``errors="return"``)."""
        for outcome in self._outcomes():  # with errors="raise", the first failure to land raises
            self._value(outcome)
        size = self.run.n_items or 0
        failed = self.partial.failed
        done = self.partial.done
        return [failed[i] if i in failed else done[i] for i in range(size)]

    def ordered(self) -> Iterator[Any]:
        """Results in input order, each yielded as soon as it and those before it landed."""
        waiting: dict[int, ItemOutcome] = {}
        following = 0
        for outcome in self._outcomes():
            waiting[outcome.index] = outcome
            while following in waiting:
                yield self._value(waiting.pop(following))
                following += 1

    def unordered(self) -> Iterator[Any]:
        """Results in the order they land."""
        for outcome in self._outcomes():
            yield self._value(outcome)
