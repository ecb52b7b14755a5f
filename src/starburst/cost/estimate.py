"""``starburst.estimate``: time a sample of items here, then predict the cloud run's wall
time, cost and speed-up, and say whether bursting is worth it."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..engine.item_times import ITEM_TIMES
from ..errors import ConfigurationError
from ..options import WorkerSpec, positive_int
from .billing import MINIMUM_SECONDS
from .guard import CostLimits
from .instance_bill import instances_text
from .model import TRANSFER_SECONDS, run_seconds, typical_startup

if TYPE_CHECKING:
    from ..backends.base import Backend


@dataclass(frozen=True)
class Estimate:
    """A prediction for running ``fn`` over the items in the cloud, and what it rests on."""

    n_items: int
    sampled: int
    seconds_per_item: float
    workers: int
    slots: int  # items that run at once (a process per whole vCPU)
    startup_seconds: float
    startup_source: str
    wall_seconds: float  # predicted for the cloud run
    local_seconds: float  # one process on this machine
    local_cores: int
    local_parallel_seconds: float  # every core of this machine
    hourly: float  # dollars per hour for all the workers
    cost: float  # predicted dollars for the run
    price_source: str
    max_cost: float | None
    #: Where workers run on instances billed by the hour (EC2), those the run starts:
    #: (type, how many); the cost is then theirs for the run's time (instance-hours).
    instances: tuple[tuple[str, int], ...] = ()

    @property
    def speedup(self) -> float:
        """Cloud wall time against a plain loop on this machine."""
        return self.local_seconds / self.wall_seconds

    @property
    def local_is_better(self) -> bool:
        """This machine's cores would finish no later than the cloud run."""
        return self.local_parallel_seconds <= self.wall_seconds

    @property
    def verdict(self) -> str:
        """One line: burst or stay local, and whether ``max_cost`` would refuse it."""
        if self.local_is_better:
            line = (
                f"Stay local: this machine's {self.local_cores} cores take "
                f"~{_duration(self.local_parallel_seconds)}, no later than the cloud's "
                f"~{_duration(self.wall_seconds)} (start-up dominates), and cost nothing."
            )
        else:
            line = (
                f"Burst: ~{_duration(self.wall_seconds)} instead of "
                f"~{_duration(self.local_seconds)} here ({self.speedup:.1f}x faster than a "
                f"loop, {self.local_parallel_seconds / self.wall_seconds:.1f}x faster than "
                f"all {self.local_cores} local cores) for ~${self.cost:.2f}."
            )
        if self.max_cost is not None and self.cost > self.max_cost:
            line += f" Over max_cost=${self.max_cost:g}: the run would stop at the cap."
        return line

    def __str__(self) -> str:
        return "\n".join(
            [
                f"starburst estimate for {self.n_items:,} items on {self.workers} workers "
                f"({self.slots} at a time):",
                f"  wall time  ~{_duration(self.wall_seconds)} in the cloud, "
                f"~{_duration(self.local_seconds)} as a loop here, "
                f"~{_duration(self.local_parallel_seconds)} on {self.local_cores} local cores",
                f"  cost       ~${self.cost:.4f} (${self.hourly:.4f}/hour {self._for_what()})",
                "  assumptions:",
                f"    {self.seconds_per_item:.4g} s per item, the mean of {self.sampled} "
                "items timed on this machine (cloud vCPUs assumed as fast)",
                f"    worker start-up {self.startup_seconds:.0f} s: {self.startup_source}",
                f"    ~{TRANSFER_SECONDS:g} s to upload inputs and collect results",
                f"    {self._billing()}; prices: {self.price_source}",
                f"  verdict: {self.verdict}",
            ]
        )

    def _for_what(self) -> str:
        if not self.instances:
            return "while the workers run"
        return f"for {instances_text(self.instances, None)}: an instance-hour estimate"

    def _billing(self) -> str:
        if not self.instances:
            return "billing per second from image pull to stop, one-minute minimum"
        return (
            "billing per instance-second from launch to the run's end, one-minute minimum; "
            "the fewest instances that carry the workers, full"
        )


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def estimate(
    fn: Callable[[Any], Any],
    items: Iterable[Any],
    workers: int | None = None,
    cpu: int | float | None = None,
    memory: str | int | float | None = None,
    *,
    backend: str | Backend = "fargate",
    spot: bool = False,
    gpus: int = 0,
    instance_types: Sequence[str] | None = None,
    arch: str | None = None,
    sample: int = 10,
    max_cost: float | None = None,
    show: bool = True,
) -> Estimate:
    """Run ``sample`` items here, time them, and predict the cloud run: wall time (with
    worker start-up), cost and speed-up over running locally. Prints the estimate with its
    assumptions (``show=False``: quietly) and returns it.

    Where workers run on instances billed by the hour (``backend="ec2"``: ``gpus``,
    ``instance_types`` and ``arch`` choose them), the cost is that of the instances the run
    starts for its wall time (an instance-hour estimate), not the workers' own prices.

    The time per item is remembered, so that a later ``map`` of the same function says
    (and checks against ``max_cost``) what its run should cost before it launches.
    """
    spec = WorkerSpec.build(
        backend=backend, workers=workers, cpu=cpu, memory=memory, spot=spot, gpus=gpus,
        instance_types=instance_types, arch=arch,
    )  # fmt: skip
    positive_int("sample", sample, allow_none=False)
    limits = CostLimits.build(max_cost)
    items = list(items)
    if not items:
        raise ConfigurationError("estimate needs at least one item; items is empty")
    picked = items[: min(sample, len(items))]
    began = time.perf_counter()
    for item in picked:
        fn(item)
    per_item = (time.perf_counter() - began) / len(picked)
    ITEM_TIMES.remember_measured(fn, per_item)

    workers_used = max(1, min(spec.workers, math.ceil(len(items) / spec.processes)))
    slots = workers_used * spec.processes
    start_s, start_source = typical_startup(spec.backend.name)
    wall = run_seconds(start_s, len(items), per_item, slots)
    book = spec.backend.price_book()
    hourly, instances = 0.0, None
    if book is not None:
        instances = spec.backend.instances_hourly(spec, workers_used, book)
    if instances is not None:
        hourly = instances[0]
    elif book is not None:
        rate = book.rate(spot=spec.spot)
        hourly = workers_used * rate.per_worker_hour(spec.cpu, (spec.memory_mib or 0) / 1024)
    billed = max(MINIMUM_SECONDS, wall)
    cores = os.cpu_count() or 1
    result = Estimate(
        n_items=len(items),
        sampled=len(picked),
        seconds_per_item=per_item,
        workers=workers_used,
        slots=slots,
        startup_seconds=start_s,
        startup_source=start_source,
        wall_seconds=wall,
        local_seconds=len(items) * per_item,
        local_cores=cores,
        local_parallel_seconds=math.ceil(len(items) / cores) * per_item,
        hourly=hourly,
        cost=hourly * billed / 3600,
        price_source=book.source if book is not None else "the local backend costs nothing",
        max_cost=limits.max_cost,
        instances=instances[1] if instances is not None else (),
    )
    if show:
        print(result)
    return result
