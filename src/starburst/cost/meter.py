"""The live meter: what a session's workers have cost so far, from their real start and
stop times as the backend reports them, under the billing rules."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from ..backends.base import WorkerInfo
from .billing import billed_seconds, task_cost


@dataclass
class _Task:
    launched: float  # our clock, when RunTask answered
    spot: bool
    billed_from: float | None = None  # the platform's clock: image pull start
    started: float | None = None  # the platform's clock: the container started
    stopped: float | None = None


class CostMeter:
    """Cost so far of every worker a session launched (stopped ones included)."""

    def __init__(self, hourly: dict[bool, float]) -> None:
        self.hourly = hourly  # {spot?: dollars per worker-hour}
        self._tasks: dict[str, _Task] = {}
        self._lock = threading.Lock()

    def launched(self, worker_ids: Iterable[str], spot: bool, at: float | None = None) -> None:
        """Count new workers from their launch until the platform says when billing began."""
        at = time.time() if at is None else at
        with self._lock:
            for worker_id in worker_ids:
                self._tasks.setdefault(worker_id, _Task(launched=at, spot=spot))

    def observe(self, infos: Iterable[WorkerInfo]) -> None:
        """Take in what the backend reported: billing start, start, stop, spot or not."""
        with self._lock:
            for info in infos:
                task = self._tasks.get(info.worker_id)
                if task is None:
                    continue
                task.spot = info.spot
                task.billed_from = info.billed_from or task.billed_from
                task.started = info.started_at or task.started
                if info.state == "stopped":
                    task.stopped = info.stopped_at or task.stopped or time.time()

    def _span(self, task: _Task, now: float) -> tuple[float, float] | None:
        """The billed interval of a task, or ``None`` if it stopped before billing began.

        Until the platform reports the pull start, the launch time stands in (earlier, so
        the meter never under-counts); a live task is billed up to ``now``.
        """
        if task.billed_from is None and task.stopped is not None:
            return None
        start = task.billed_from if task.billed_from is not None else task.launched
        return start, task.stopped if task.stopped is not None else now

    def cost(self, now: float | None = None) -> float:
        """Dollars billed so far (each started worker owes at least one minute)."""
        now = time.time() if now is None else now
        with self._lock:
            spans = [(self._span(t, now), self.hourly[t.spot]) for t in self._tasks.values()]
        return sum(task_cost(*span, hourly) for span, hourly in spans if span is not None)

    def billed_seconds(self, now: float | None = None) -> float:
        """Worker-seconds billed so far."""
        now = time.time() if now is None else now
        with self._lock:
            spans = [self._span(t, now) for t in self._tasks.values()]
        return sum(billed_seconds(*span) for span in spans if span is not None)

    @property
    def workers(self) -> int:
        """Workers launched so far."""
        return len(self._tasks)

    def startup_seconds(self) -> list[float]:
        """Launch-to-running seconds of the workers that started (for ``estimate``)."""
        with self._lock:
            return [t.started - t.launched for t in self._tasks.values() if t.started is not None]
