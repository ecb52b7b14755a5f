"""Billing rules as AWS applies them to Fargate: from image pull to stop, per second, with a
one-minute minimum. Pure functions of times and rates."""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Every task is billed for at least this many seconds.
MINIMUM_SECONDS = 60.0


@dataclass(frozen=True)
class Rate:
    """Hourly prices for one kind of capacity (USD per vCPU-hour and per GB-hour)."""

    vcpu_hour: float
    gb_hour: float

    def per_worker_hour(self, vcpu: float, memory_gb: float) -> float:
        """What one worker of this size costs per hour."""
        return vcpu * self.vcpu_hour + memory_gb * self.gb_hour


def billed_seconds(start: float, stop: float) -> float:
    """Seconds billed for a task that ran from ``start`` to ``stop`` (epoch seconds).

    Whole seconds, rounded up, and never less than the one-minute minimum: a task that
    started owes its first minute at once.
    """
    return max(MINIMUM_SECONDS, float(math.ceil(max(0.0, stop - start) - 1e-9)))


def task_cost(start: float, stop: float, hourly: float) -> float:
    """The cost of one task billed at ``hourly`` dollars from ``start`` to ``stop``."""
    return billed_seconds(start, stop) * hourly / 3600.0
