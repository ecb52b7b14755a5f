"""A run record as a matplotlib figure: the timeline over items done, for a PNG in a
document or a figure in Jupyter (``Timeline.plot``, ``Timeline.save_png``)."""

from __future__ import annotations

from typing import Any

from .html import CHUNK_COLOURS, FAILED_COLOUR, PHASE_COLOURS, STOP_COLOURS
from .series import lane_phases, lanes, origin, progress, stop_marks


def draw(record: dict[str, Any]) -> Any:
    """The figure: one lane per worker process (its phases: provisioning, pulling image,
    starting, up; chunk bars, stop marks) above items done over time."""
    from matplotlib.figure import Figure

    rows = lanes(record)
    t0 = origin(record, rows)
    height = 2.5 + 0.22 * len(rows)
    figure = Figure(figsize=(11, height), layout="constrained")
    timeline, done = figure.subplots(2, 1, sharex=True, height_ratios=[max(1, len(rows)), 6])
    index = {row.name: n for n, row in enumerate(rows)}
    shown: set[str] = set()
    for n, row in enumerate(rows):
        for phase, start, end in lane_phases(row, record["generated"]):
            timeline.broken_barh(
                [(start - t0, end - start)],
                (n - 0.45, 0.9),
                color=PHASE_COLOURS[phase],
                label=None if phase in shown else f"worker {phase}",
            )
            shown.add(phase)
    runs = {run["run_id"]: n for n, run in enumerate(record["runs"])}
    for bar in record["chunks"]:
        if bar["start"] is None or bar["worker"] not in index:
            continue
        colour = CHUNK_COLOURS[runs.get(bar["run"], 0) % len(CHUNK_COLOURS)]
        lane = index[bar["worker"]]
        timeline.broken_barh(
            [(bar["start"] - t0, bar["end"] - bar["start"])],
            (lane - 0.3, 0.6),
            color=colour,
            edgecolor="white",
            linewidth=0.5,
        )
        if bar["failed"]:
            timeline.plot(bar["end"] - t0, lane, "x", color=FAILED_COLOUR, markersize=9, mew=2)
    for kind, marks in stop_marks(rows).items():
        timeline.plot(
            [at - t0 for at, _ in marks],
            [index[lane] for _, lane in marks],
            "^",
            color=STOP_COLOURS[kind],
            markersize=9,
            label=kind.replace("_", " "),
        )
    timeline.set_yticks(range(len(rows)), [row.name for row in rows], fontsize=7)
    timeline.invert_yaxis()
    timeline.set_title(f"starburst session {record['session_id']}: workers and chunks")
    if shown:
        timeline.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    points = progress(record)
    done.plot([t - t0 for t in points.times], points.done)
    done.set_xlabel("seconds since the first launch")
    done.set_ylabel("items done")
    return figure
