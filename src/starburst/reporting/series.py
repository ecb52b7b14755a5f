"""What a report draws, derived from a run record (``record.py``): the totals a summary
shows, the lanes of the timeline, the stop marks, items done over time with the ETA, and the
distribution of item times. Pure Python, shared by the HTML page (``html.py``), the PNG
(``png.py``) and the notebook card (``card.py``)."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

#: At most this many points of items done over time, and bins of throughput / item times.
_MAX_POINTS = 500
_RATE_BINS = 60
_TIME_BINS = 40


@dataclass
class Totals:
    """A run record in a few numbers: what a summary (page, card, ``str``) says."""

    items: int  # items submitted
    done: int  # items computed (failed ones included)
    failed: int
    t0: float  # the first launch (or the session's creation): the origin of the page's times
    wall_seconds: float  # from the first launch to the last chunk's end
    workers: int
    stops: dict[str, int]  # workers by how they stopped, other than a plain stop
    processes: int
    instances: int | None  # where the backend reports them (EC2)
    instance_types: list[tuple[str, int]]
    cost: float | None  # dollars; None where workers cost nothing
    price_source: str | None
    utilisation: float | None  # busy over ``utilisation_of``
    utilisation_of: str  # "billed time", "up time" (workers that cost nothing), "instances"


def totals(record: dict[str, Any]) -> Totals:
    """The totals of ``record``."""
    t0 = origin(record, lanes(record))
    ends = [bar["end"] for bar in record["chunks"] if bar["end"] is not None]
    stops: dict[str, int] = {}
    for worker in record["workers"]:
        if worker["stop"] not in (None, "stopped"):
            stops[worker["stop"]] = stops.get(worker["stop"], 0) + 1
    instances = record.get("instances")
    busy = sum(p["busy_seconds"] for w in record["workers"] for p in w["processes"])
    billed = sum(
        (w["billed_seconds"] or 0.0) * max(1, len(w["processes"])) for w in record["workers"]
    )
    if instances is not None:
        utilisation, of = instances["utilisation"], "instances"
    elif billed:
        utilisation, of = min(1.0, busy / billed), "billed time"
    else:
        up = sum(_up_seconds(p, w["stopped"], record["generated"]) for w in record["workers"]
                 for p in w["processes"])  # fmt: skip
        utilisation, of = (min(1.0, busy / up) if up else None), "up time"
    return Totals(
        items=sum(run["items"] or 0 for run in record["runs"]),
        done=sum(bar["items"] for bar in record["chunks"]),
        failed=len(record["errors"]),
        t0=t0,
        wall_seconds=max(0.0, max(ends) - t0) if ends else 0.0,
        workers=len(record["workers"]),
        stops=stops,
        processes=sum(max(1, len(w["processes"])) for w in record["workers"]),
        instances=instances["count"] if instances is not None else None,
        instance_types=[(name, n) for name, n in instances["types"]] if instances else [],
        cost=record["cost"]["total"],
        price_source=record["cost"].get("source"),
        utilisation=utilisation,
        utilisation_of=of,
    )


def _up_seconds(process: dict[str, Any], stopped: float | None, now: float) -> float:
    """How long a worker process was up: from its start to its last heartbeat (or its
    worker's stop, or now)."""
    if process["started"] is None:
        return 0.0
    end = process["last_heartbeat"] if process["state"] == "exited" else None
    end = end or stopped or now
    return max(0.0, end - process["started"])


@dataclass
class Lane:
    """One lane of the timeline: a worker process (or a worker that never started one)."""

    name: str
    worker: str
    launched: float | None
    started: float | None
    stopped: float | None
    state: str | None
    stop: str | None  # how its worker stopped (``record.stop_kind``)
    steps: dict[str, float] | None = None  # the platform's (``fleet_policy.platform_steps``)


#: A lane's phases, in order: the platform's steps before the worker process came up (where
#: the backend tells them; else one "starting"), then "up".
PHASES = ("provisioning", "pulling image", "starting", "up")


def origin(record: dict[str, Any], rows: list[Lane]) -> float:
    """The origin of a report's times: the first launch, or the session's creation."""
    starts = [spans[0][1] for row in rows if (spans := lane_phases(row, record["generated"]))]
    return min(starts, default=record["created"])


def lane_phases(row: Lane, now: float) -> list[tuple[str, float, float]]:
    """The lane's phases as ``(phase, from, to)``, in order: from the launch request to its
    stop (or ``now``); where the platform said when it pulled the image and started the
    container, provisioning, pulling image and starting are apart."""
    steps = row.steps or {}
    begun = [at for at in (row.launched, steps.get("created")) if at is not None]
    marks: list[tuple[str, float | None]] = [
        ("provisioning" if steps else "starting", min(begun, default=None)),
        ("pulling image", steps.get("pull_started")),
        ("starting", steps.get("pull_stopped", steps.get("started"))),
        ("up", row.started),
    ]
    known: list[tuple[str, float]] = []
    for phase, at in marks:
        if at is not None:  # in order, whatever the clocks of the platform and the worker
            known.append((phase, max(at, known[-1][1]) if known else at))
    end = max(row.stopped if row.stopped is not None else now, known[-1][1] if known else now)
    return [
        (phase, at, known[n + 1][1] if n + 1 < len(known) else end)
        for n, (phase, at) in enumerate(known)
    ]


def lanes(record: dict[str, Any]) -> list[Lane]:
    """The lanes, by worker then process; a worker's launch and stop apply to each of its
    processes."""
    rows = []
    for worker in record["workers"]:
        processes = worker["processes"] or [{"id": worker["id"], "started": None, "state": None}]
        for process in processes:
            rows.append(
                Lane(
                    process["id"],
                    worker["id"],
                    worker["launched"],
                    process["started"],
                    worker["stopped"],
                    process["state"],
                    worker["stop"],
                    worker.get("steps"),
                )
            )
    return rows


def stop_marks(rows: list[Lane]) -> dict[str, list[tuple[float, str]]]:
    """Where each lane ended, by how its worker stopped: ``{kind: [(time, lane)]}``."""
    marks: dict[str, list[tuple[float, str]]] = {}
    for row in rows:
        if row.stop is not None and row.stopped is not None:
            marks.setdefault(row.stop, []).append((row.stopped, row.name))
    return marks


@dataclass
class Progress:
    """Items done over time, the ETA at each point, and throughput by bin."""

    times: list[float] = field(default_factory=list)
    done: list[int] = field(default_factory=list)
    eta: list[float | None] = field(default_factory=list)  # seconds left, at the pace so far
    bin_times: list[float] = field(default_factory=list)  # bin centres
    rate: list[float] = field(default_factory=list)  # items / s
    bin_width: float = 0.0


def item_finishes(record: dict[str, Any]) -> list[tuple[float, int]]:
    """When items finished, ``(time, items)``, sorted: each block of a chunk bar at its end
    (a bar without blocks, from an older worker, at its end)."""
    events = []
    for bar in record["chunks"]:
        if bar["start"] is None:
            continue
        at, timed = bar["start"], 0
        for items, seconds in bar["blocks"]:
            at += seconds
            timed += items
            events.append((min(at, bar["end"]), items))
        if bar["items"] > timed:
            events.append((bar["end"], bar["items"] - timed))
    events.sort()
    return events


def progress(record: dict[str, Any]) -> Progress:
    """Items done over time; the ETA is what a progress bar shows: the time left at the
    pace since the first run began."""
    events = item_finishes(record)
    shown = Progress()
    if not events:
        return shown
    total = sum(run["items"] or 0 for run in record["runs"])
    began = min((run["created"] for run in record["runs"]), default=events[0][0])
    done, step = 0, max(1, len(events) // _MAX_POINTS)
    for n, (at, items) in enumerate(events):
        done += items
        if n % step and n != len(events) - 1:
            continue
        shown.times.append(at)
        shown.done.append(done)
        left = max(0, total - done)
        shown.eta.append(left * (at - began) / done if done and at > began else None)
    first, last = events[0][0], events[-1][0]
    width = (last - first) / _RATE_BINS or 1e-3
    counts = [0] * _RATE_BINS
    for at, items in events:
        counts[min(_RATE_BINS - 1, int((at - first) / width))] += items
    shown.bin_width = width
    shown.bin_times = [first + (k + 0.5) * width for k in range(_RATE_BINS)]
    shown.rate = [count / width for count in counts]
    return shown


@dataclass
class ItemTimes:
    """A histogram of seconds per item: ``counts[k]`` items took ``edges[k]..edges[k+1]``."""

    edges: list[float] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)


def item_times(record: dict[str, Any]) -> ItemTimes:
    """The distribution of item times: each block's items share its time (a slow item is
    timed alone, quick ones in blocks of a few milliseconds)."""
    timed = [
        (seconds / items, items)
        for bar in record["chunks"]
        for items, seconds in bar["blocks"]
        if items > 0
    ]
    if not timed:
        return ItemTimes()
    top = max(each for each, _ in timed) or 1e-6
    edges = [top * k / _TIME_BINS for k in range(_TIME_BINS + 1)]
    counts = [0] * _TIME_BINS
    for each, items in timed:
        counts[min(_TIME_BINS - 1, bisect.bisect_right(edges, each) - 1)] += items
    return ItemTimes(edges, counts)
