"""The cost and quota guard of one session: checks before launch, meters during the run,
enforces ``max_cost`` and ``cost_alert``, and reports the actual cost at the end.

The driver calls it at a few points (start, launch, each look at the workers, close); it
knows nothing about runs, and the driver knows nothing about prices.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..backends.base import Fleet, WorkerInfo
from ..engine.fleet_policy import cap_reached
from ..errors import CostCapError, QuotaError, StarburstError
from ..options import WorkerSpec
from .billing import MINIMUM_SECONDS, workers_affordable
from .instance_bill import (
    INSTANCE_READ_SECONDS,
    InstanceBill,
    InstanceReading,
    instance_bill,
    instances_text,
)
from .meter import CostMeter
from .model import record_startups, run_seconds, typical_startup

if TYPE_CHECKING:  # prices reads the AWS Pricing API (botocore): only cloud runs load it
    from ..reporting.timeline import Timeline
    from .prices import PriceBook

Say = Callable[[str], None]
#: Told each read of the instances (``Driver`` keeps them in the store for a report made
#: later, ``engine/instance_record.py``).
KeepInstances = Callable[[InstanceReading], None]
log = logging.getLogger("starburst")


def _stderr(line: str) -> None:
    print(f"starburst: {line}", file=sys.stderr)


def _dollars(value: float) -> str:
    return f"${value:.2f}" if value >= 1 else f"${value:.4f}"


def _workers(count: int) -> str:
    return f"{count} worker{'' if count == 1 else 's'}"


@dataclass(frozen=True)
class CostLimits:
    """``max_cost`` (a hard cap) and ``cost_alert`` (a warning), in dollars per session."""

    max_cost: float | None = None
    cost_alert: float | None = None

    @classmethod
    def build(cls, max_cost: object = None, cost_alert: object = None) -> CostLimits:
        """The arguments, else the ``max_cost`` / ``cost_alert`` settings, validated."""
        from ..settings import resolve

        return cls(resolve("max_cost", max_cost), resolve("cost_alert", cost_alert))


@dataclass(frozen=True)
class RunReport:
    """What a run (or a session so far) took: wall time, workers, billed time and cost.

    Where workers run on instances the backend reports (EC2), the cost is the instances'
    hours, and ``instances`` and ``utilisation`` say what they were and how full.
    """

    session_id: str
    backend: str
    wall_seconds: float
    workers: int  # workers launched
    billed_seconds: float  # worker-seconds billed (0 on the local backend)
    cost: float | None  # dollars; None where workers cost nothing (local)
    price_source: str | None
    instances: tuple[tuple[str, int], ...] = ()  # (instance type, how many) the cost is for
    instance_seconds: float = 0.0  # instance-seconds billed (the session's part)
    utilisation: float | None = None  # task vCPU-seconds over instance vCPU-seconds
    warm_cost: float = 0.0  # at most this much more while its instances stay up (keep_warm)
    #: What its workers did (``map(..., return_run=True)`` reads it before they stop).
    timeline: Timeline | None = field(default=None, repr=False, compare=False)
    #: The instances the cost is for, as the backend reported them (``instances`` counts them).
    instance_reading: InstanceReading | None = field(default=None, repr=False, compare=False)

    def with_timeline(self, timeline: Timeline | None) -> RunReport:
        """This report with ``timeline`` (read before the workers stopped), which takes the
        instances read since (the closing read), so that both tell one cost."""
        if timeline is not None and self.instance_reading is not None:
            from ..reporting.record import add_instances

            add_instances(timeline.record, self.instance_reading)
        return replace(self, timeline=timeline)

    def save_html(self, path: str | os.PathLike[str]) -> Path:
        """Write the run's report as one HTML file that opens offline (``Timeline``)."""
        return self._timeline().save_html(path)

    def save_png(self, path: str | os.PathLike[str]) -> Path:
        """Write the run's timeline as a PNG (``Timeline``)."""
        return self._timeline().save_png(path)

    def plot(self) -> Any:
        """The run's timeline as a matplotlib figure (``Timeline``)."""
        return self._timeline().plot()

    def _timeline(self) -> Timeline:
        if self.timeline is None:
            raise StarburstError(
                "this report has no timeline: it comes with starburst.map(..., "
                "return_run=True); for a session, use starburst.report(session_id)"
            )
        return self.timeline

    def _repr_html_(self) -> str:
        """A compact card in a notebook (plain HTML: no extra needed)."""
        from ..reporting.card import run_card

        return run_card(self)

    def __str__(self) -> str:
        if self.cost is None:
            return (
                f"{self.wall_seconds:.1f} s of wall time on {_workers(self.workers)} of the "
                f"{self.backend} backend (no cost)"
            )
        if self.instances:
            return (
                f"actual cost ~{_dollars(self.cost)} for {self.wall_seconds:.1f} s of wall "
                f"time ({_workers(self.workers)} on "
                f"{instances_text(self.instances, self.utilisation)}, "
                f"{self.instance_seconds / 60:.1f} instance-minutes billed{self._warm()}; "
                f"prices: {self.price_source})"
            )
        return (
            f"actual cost ~{_dollars(self.cost)} for {self.wall_seconds:.1f} s of wall time "
            f"({_workers(self.workers)}, {self.billed_seconds / 60:.1f} worker-minutes billed; "
            f"prices: {self.price_source})"
        )

    def _warm(self) -> str:
        if not self.warm_cost:
            return ""
        return (
            f"; kept warm, its instances cost up to ~{_dollars(self.warm_cost)} more (less "
            "if a call uses them)"
        )


class CostGuard:
    """One session's prices, meter, cap and alert, and its quota check."""

    def __init__(
        self,
        session_id: str,
        spec: WorkerSpec,
        fleet: Fleet,
        limits: CostLimits,
        say: Say = _stderr,
        keep_instances: KeepInstances | None = None,
    ) -> None:
        self.session_id = session_id
        self.spec = spec
        self.fleet = fleet
        self.limits = limits
        self.say = say
        self.keep_instances = keep_instances
        self.book: PriceBook | None = None
        self.meter: CostMeter | None = None
        self.opened = time.time()
        self.closed: float | None = None
        self.workers = 0
        self._alerted = False
        self._instances: InstanceReading | None = None  # as last read (None: not read)
        self._instances_stale = True  # workers launched since the last read
        self._reads_instances = True  # until the fleet says it has no instances to report

    # Before launch -----------------------------------------------------------------------

    def before_launch(self, wanted: int, work: tuple[int, float] | None = None) -> int:
        """The workers to start: what the quota fits, once the cost cap allows it.

        Says when the quota allows fewer and prints the estimated cost: per hour, and for
        the run when ``work`` (items, seconds per item) is known. Raises ``CostCapError``
        when that estimate, or else the first minute of the workers, exceeds ``max_cost``
        (nothing has been launched then).
        """
        wanted = self._fit_quota(wanted)
        self.book = self.fleet.price_book()
        if self.book is None:
            return wanted
        size = self.spec.memory_mib or 0
        hourly = {
            spot: self.book.rate(spot=spot).per_worker_hour(self.spec.cpu, size / 1024)
            for spot in (False, True)
        }
        self.meter = CostMeter(hourly)
        kind = "spot" if self.spec.spot else "on-demand"
        what = f"{_workers(wanted)} ({self.spec.cpu:g} vCPU, {size / 1024:g} GB, {kind})"
        on_instances = self.spec.backend.instances_hourly(self.spec, wanted, self.book)
        if on_instances is None:
            per_hour, billed = wanted * hourly[self.spec.spot], "each worker's"
        else:  # (as starburst.estimate prices them: the fewest instances that carry them)
            per_hour, billed = on_instances[0], "each instance's"
            what += f" on {instances_text(on_instances[1], None)}"
        least = per_hour * MINIMUM_SECONDS / 3600
        self.say(
            f"Estimated cost: ~{_dollars(per_hour)}/hour for {what}, at least "
            f"{_dollars(least)} ({billed} first minute is billed in full). Prices: "
            f"{self.book.source}."
        )
        predicted, basis = least, f"one billed minute at {_dollars(per_hour)}/hour"
        if work is not None:
            start_s, _ = typical_startup(self.spec.backend.name)
            wall = run_seconds(start_s, work[0], work[1], wanted * self.spec.processes)
            predicted = per_hour * max(MINIMUM_SECONDS, wall) / 3600
            basis = f"~{wall:.0f} s with start-up, {work[0]:,} items at {work[1]:.3g} s each"
            self.say(
                f"Estimated cost of this run: ~{_dollars(predicted)} ({basis}, the time per "
                "item starburst.estimate measured)."
            )
        if self.limits.max_cost is not None and predicted > self.limits.max_cost:
            raise CostCapError(
                f"refused before launch: {_workers(wanted)} would cost ~{_dollars(predicted)} "
                f"({basis}), more than max_cost={_dollars(self.limits.max_cost)}. Use fewer or "
                "smaller workers, or raise the cap (max_cost=..., or `starburst config set "
                "max_cost DOLLARS`)."
            )
        return wanted

    def _fit_quota(self, wanted: int) -> int:
        """``wanted``, or the fewer workers the quota lets start (and one line that says so)."""
        room = self.fleet.quota_room(self.spec)
        if room is None or room[0] >= wanted:
            return wanted
        fits, about = room
        if fits == 0:
            raise QuotaError(
                f"the {self.fleet.quota_name} has no room for a worker of {self.spec.cpu:g} "
                f"vCPUs {about}. Wait for running workers to end, or raise the quota."
            )
        from ..aws.quotas import quota_notice  # only a cloud backend has a quota (and boto3)

        self.say(quota_notice(wanted, fits, self.spec.cpu, about, self.fleet.quota_name))
        return fits

    # During the run ----------------------------------------------------------------------

    def affordable(self, count: int) -> int:
        """How many of ``count`` new workers fit under ``max_cost`` (their first minute)."""
        if self.meter is None or self.limits.max_cost is None or count <= 0:
            return count
        left = self.limits.max_cost - self.cost()
        return min(count, workers_affordable(left, self.meter.hourly[self.spec.spot]))

    def launched(self, worker_ids: Iterable[str]) -> None:
        """Start metering new workers."""
        worker_ids = list(worker_ids)
        self.workers += len(worker_ids)
        self._instances_stale = True
        if self.meter is not None:
            self.meter.launched(worker_ids, self.spec.spot)

    def observe(self, infos: Iterable[WorkerInfo]) -> CostCapError | None:
        """Take in the workers' state; the cap error once the cost reaches ``max_cost``."""
        if self.meter is None:
            return None
        self.meter.observe(infos)
        self._read_instances()
        cost = self.cost()
        self._alert_if_past(cost)
        return self.cap_error(cost) if cap_reached(cost, self.limits.max_cost) else None

    def _alert_if_past(self, cost: float) -> None:
        """Say once that the session's cost passed ``cost_alert``."""
        alert = self.limits.cost_alert
        if alert is not None and cost >= alert and not self._alerted:
            self._alerted = True
            self.say(
                f"cost alert: this session has cost ~{_dollars(cost)}, past cost_alert="
                f"{_dollars(alert)}."
            )

    def cap_error(self, cost: float | None = None) -> CostCapError:
        """The error that stops a session at its cap, saying how to go on.

        With ``cost``, the cost so far reached the cap; without, no new worker fits under it
        (each one bills at least a minute).
        """
        assert self.limits.max_cost is not None and self.meter is not None
        cap = _dollars(self.limits.max_cost)
        if cost is not None:
            what = f"this session's workers have cost ~{_dollars(cost)} of max_cost={cap}"
        else:
            what = (
                f"this session's workers have cost ~{_dollars(self.cost())} and another "
                f"worker's first billed minute would pass max_cost={cap}"
            )
        return CostCapError(
            f"the cost cap was reached: {what}, so the workers were stopped. Completed "
            "results are kept in `exc.starburst_results`; to finish, raise the cap (max_cost="
            "..., or `starburst config set max_cost DOLLARS`) and run the items listed in "
            "`exc.starburst_results.pending`."
        )

    def so_far(self) -> str:
        """The cost so far, for the progress display ('' where workers cost nothing)."""
        return "" if self.meter is None else f"{_dollars(self.cost())} so far"

    def cost(self, now: float | None = None) -> float:
        """The session's cost up to ``now``: its instances' hours where the backend reports
        the instances its workers ran on (EC2), else each worker's price (``CostMeter``)."""
        assert self.meter is not None
        bill = self._bill(now)
        return bill.cost if bill is not None else self.meter.cost(now)

    def _bill(self, now: float | None) -> InstanceBill | None:
        """The instances' bill up to ``now``, from their last read (None: none read)."""
        if self._instances is None:
            return None
        return instance_bill(self._instances.uses, self.opened, time.time() if now is None else now)

    def _read_instances(self, force: bool = False) -> None:
        """Read the session's instances from the fleet: when ``force``d, after a launch, or
        once ``INSTANCE_READ_SECONDS`` passed; never again once it says it has none."""
        now = time.time()
        due = self._instances is None or now - self._instances.read >= INSTANCE_READ_SECONDS
        if not self._reads_instances or not (force or due or self._instances_stale):
            return
        self._instances_stale = False
        try:
            uses = self.fleet.instance_usage(self.session_id, self.opened)
        except StarburstError as exc:  # the last read (or the workers' prices) stands
            log.warning("could not read the session's instances for the cost: %s", exc)
            return
        if uses is None:
            self._reads_instances = False
            return
        self._instances = InstanceReading(self.opened, now, tuple(uses))
        if self.keep_instances is not None:
            self.keep_instances(self._instances)

    # After -------------------------------------------------------------------------------

    def finish(self, describe: Callable[[], Iterable[WorkerInfo]]) -> None:
        """Take in the workers' final state (from ``describe``), remember their start-up
        times, and say what the session cost."""
        self.closed = time.time()
        if self.meter is None:
            return
        try:
            self.meter.observe(describe())
        except StarburstError as exc:  # workers not seen stopped count up to now
            log.warning("could not read the workers' final state for the cost: %s", exc)
        self._read_instances(force=True)
        record_startups(self.fleet.name, self.meter.startup_seconds())
        self._alert_if_past(self.cost(self.closed))  # a run too short for any look
        self.say(f"session {self.session_id}: {self.report()}")

    def report(self) -> RunReport:
        """The session's wall time and cost, so far or (once closed) in total."""
        end = self.closed or time.time()
        meter = self.meter
        bill = self._bill(end)
        # (how full: up to the last read, which knows the tasks' time up to then)
        read = self._instances.bill() if self._instances is not None else None
        return RunReport(
            session_id=self.session_id,
            backend=self.spec.backend.name,
            wall_seconds=end - self.opened,
            workers=self.workers,
            billed_seconds=meter.billed_seconds(end) if meter is not None else 0.0,
            cost=self.cost(end) if meter is not None else None,
            price_source=self.book.source if self.book is not None else None,
            instances=bill.types if bill is not None else (),
            instance_seconds=bill.billed_seconds if bill is not None else 0.0,
            utilisation=read.utilisation if read is not None else None,
            warm_cost=(
                bill.up_hourly * self.spec.keep_warm / 3600
                if bill is not None and self.closed is not None
                else 0.0
            ),
            instance_reading=(
                replace(self._instances, read=end) if self._instances is not None else None
            ),
        )
