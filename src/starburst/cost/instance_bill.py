"""Cost from instance-hours: what the instances a session's workers ran on cost, under EC2's
billing (per second, rounded up, at least a minute per instance launched), and how much of
them the workers used. Pure functions of what a backend reports (``Fleet.instance_usage``).

An instance counts from its launch, or from the session's start if it was already up (kept
warm by an earlier call: its first minute was billed then), to its termination or now, at
its own price, times the session's part of it (``InstanceUse.share``).

A detached session keeps its instances as last read in its control record
(``InstanceReading``), so that whoever supervises it or asks for its status bills them the
same way (``recorded_cost``).
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..backends.base import InstanceUse
from .billing import billed_seconds, ledger_cost

#: EC2 gives launch times in whole seconds (truncated): an instance launched just after the
#: session began may seem to have been up a fraction of a second before it.
LAUNCH_TIME_RESOLUTION = 1.0
#: Seconds between two reads of the instances a session runs on (a few API calls each; the
#: instances still up are counted on to each look in between). A launch reads them again.
INSTANCE_READ_SECONDS = 30.0


@dataclass(frozen=True)
class InstanceBill:
    """A session's instances up to a time: their cost, and how much of them its tasks used."""

    cost: float  # dollars
    billed_seconds: float  # instance-seconds billed (the session's part)
    instance_vcpu_seconds: float  # the session's part of the instances' vCPU-seconds
    task_vcpu_seconds: float  # the vCPU-seconds its tasks held on them
    types: tuple[tuple[str, int], ...]  # (instance type, how many), the most first
    up_hourly: float  # what the instances still up then cost per hour (the session's part)

    @property
    def instances(self) -> int:
        """How many instances the session ran on."""
        return sum(count for _, count in self.types)

    @property
    def utilisation(self) -> float | None:
        """Task vCPU-seconds over instance vCPU-seconds (None before any instance ran)."""
        if self.instance_vcpu_seconds <= 0:
            return None
        return min(1.0, self.task_vcpu_seconds / self.instance_vcpu_seconds)


def launched_since(launched: float, since: float) -> bool:
    """Whether an instance EC2 says launched at ``launched`` started after ``since``."""
    return launched > since - LAUNCH_TIME_RESOLUTION


@dataclass(frozen=True)
class InstanceLine:
    """One instance's part of a session's bill up to a time (a line of ``instance_bill``)."""

    use: InstanceUse
    start: float  # when the session began paying for it (its launch, or the session's start)
    end: float  # its termination, or the time the bill is made up to
    billed_seconds: float  # instance-seconds billed (the session's part)
    cost: float  # dollars (the session's part)
    vcpu_seconds: float  # the session's part of its vCPU-seconds


def instance_lines(uses: Iterable[InstanceUse], since: float, now: float) -> list[InstanceLine]:
    """What each of ``uses`` cost from ``since`` (the session's start) to ``now``."""
    lines = []
    for use in uses:
        start = max(use.launched, since)
        end = max(start, min(use.terminated if use.terminated is not None else now, now))
        if launched_since(use.launched, since):  # launched for this session: EC2's minute
            seconds = billed_seconds(start, end)
        else:  # up before the session began (warm): billed on from where it was
            seconds = float(math.ceil(end - start - 1e-9))
        lines.append(
            InstanceLine(
                use,
                start,
                end,
                billed_seconds=seconds * use.share,
                cost=seconds * use.hourly / 3600 * use.share,
                vcpu_seconds=(end - start) * use.vcpus * use.share,
            )
        )
    return lines


def instance_bill(uses: Iterable[InstanceUse], since: float, now: float) -> InstanceBill:
    """What ``uses`` cost from ``since`` (the session's start) to ``now`` (epoch seconds)."""
    lines = instance_lines(uses, since, now)
    types = Counter(line.use.instance_type for line in lines)
    ordered = tuple(sorted(types.items(), key=lambda kv: (-kv[1], kv[0])))
    return InstanceBill(
        cost=sum(line.cost for line in lines),
        billed_seconds=sum(line.billed_seconds for line in lines),
        instance_vcpu_seconds=sum(line.vcpu_seconds for line in lines),
        task_vcpu_seconds=sum(line.use.task_vcpu_seconds for line in lines),
        types=ordered,
        up_hourly=sum(
            line.use.hourly * line.use.share
            for line in lines
            if line.use.terminated is None or line.use.terminated > now
        ),
    )


def instances_text(types: tuple[tuple[str, int], ...], utilisation: float | None) -> str:
    """E.g. ``"3 instances (c7i.xlarge x2, c7i.large), 71% used"``."""
    count = sum(n for _, n in types)
    kinds = ", ".join(name if n == 1 else f"{name} x{n}" for name, n in types)
    text = f"{count} instance{'' if count == 1 else 's'} ({kinds})"
    return text if utilisation is None else f"{text}, {utilisation:.0%} used"


@dataclass(frozen=True)
class InstanceReading:
    """A session's instances as read at ``read`` (epoch seconds), billed from ``since`` (the
    session's start). The one form they are kept in: in a detached session's control record
    (its supervisor reads them, for anyone to bill) and in the session's store for its report
    (``engine/instance_record.py``)."""

    since: float
    read: float
    uses: tuple[InstanceUse, ...]

    def bill(self) -> InstanceBill:
        """What the instances cost up to the read."""
        return instance_bill(self.uses, self.since, self.read)

    def cost(self, now: float) -> float:
        """What the instances cost up to ``now``: those up at the read count on until two
        reads later at most, so a session nobody reads any more stops growing."""
        end = min(now, self.read + 2 * INSTANCE_READ_SECONDS)
        return instance_bill(self.uses, self.since, end).cost

    def updated(self, fresh: Iterable[InstanceUse], now: float) -> InstanceReading:
        """This reading with a fresh read taken at ``now``: an instance the fresh read no
        longer shows (EC2 and ECS forget the gone after about an hour) is kept as this
        reading knew it, ended at this reading's time if it was up then, so it is billed for
        what was seen of it, never more."""
        found = {use.instance_id: use for use in fresh}
        for use in self.uses:
            if use.instance_id not in found:
                ended = use.terminated if use.terminated is not None else self.read
                found[use.instance_id] = dataclasses.replace(use, terminated=ended)
        return InstanceReading(self.since, max(now, self.read), tuple(found.values()))

    def to_record(self) -> dict[str, Any]:
        """The reading as JSON-able data."""
        return {"since": self.since, "read": self.read, "uses": [vars(u) for u in self.uses]}

    @classmethod
    def from_record(cls, raw: Mapping[str, Any] | None) -> InstanceReading | None:
        """A reading kept as ``to_record`` made it (None: none, or one it cannot read)."""
        if not raw:
            return None
        try:
            uses = [InstanceUse(**use) for use in raw["uses"]]
            return cls(
                float(raw["since"]),
                float(raw["read"]),
                tuple(dataclasses.replace(u, workers=tuple(u.workers)) for u in uses),
            )  # (JSON has lists)
        except (KeyError, TypeError, ValueError):
            return None


def recorded_cost(
    ledger: Mapping[str, Mapping[str, Any]],
    hourly: Mapping[str, float] | None,
    reading: InstanceReading | None,
    now: float,
) -> float:
    """A session's cost from its control record up to ``now``: its instances' hours where
    they were read (``reading``, EC2), else each worker's time in the ledger at ``hourly``."""
    if reading is not None:
        return reading.cost(now)
    return ledger_cost(ledger, hourly, now)
