"""Billing rules as AWS applies them to Fargate: from image pull to stop, per second, with a
one-minute minimum. Pure functions of times and rates."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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


def workers_affordable(left: float, hourly: float) -> int:
    """How many more workers ``left`` dollars pay for at ``hourly`` dollars each, when each
    owes its first billed minute at once."""
    return max(0, math.floor(left / (hourly * MINIMUM_SECONDS / 3600) + 1e-9))


def ledger_cost(
    ledger: Mapping[str, Mapping[str, Any]], hourly: Mapping[str, float] | None, now: float
) -> float:
    """The cost so far of the workers a session's ledger lists (``launched``, ``stopped``
    or None while running, ``spot``), at ``hourly`` dollars per worker-hour by "on-demand"
    and "spot"; 0 where workers cost nothing."""
    if not hourly:
        return 0.0
    return sum(
        task_cost(
            entry["launched"],
            entry["stopped"] if entry.get("stopped") is not None else now,
            hourly["spot" if entry.get("spot") else "on-demand"],
        )
        for entry in ledger.values()
    )
