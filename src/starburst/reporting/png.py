"""A run record as a matplotlib figure: the timeline over items done, for a PNG in a
document or a figure in Jupyter (``Timeline.plot``, ``Timeline.save_png``)."""

from __future__ import annotations

from typing import Any

from .html import CHUNK_COLOURS, FAILED_COLOUR, STARTING_COLOUR, STOP_COLOURS, UP_COLOUR
from .series import lanes, progress, stop_marks


def draw(record: dict[str, Any]) -> Any:
    """The figure: one lane per worker process (starting, up, chunk bars, stop marks) above
    items done over time."""
    from matplotlib.figure import Figure

    rows = lanes(record)
    t0 = min((row.launched for row in rows if row.launched is not None), default=record["created"])
    height = 2.5 + 0.22 * len(rows)
    figure = Figure(figsize=(11, height), layout="constrained")
    timeline, done = figure.subplots(2, 1, sharex=True, height_ratios=[max(1, len(rows)), 6])
    index = {row.name: n for n, row in enumerate(rows)}
    end = record["generated"]
    for n, row in enumerate(rows):
        stop = row.stopped if row.stopped is not None else end
        if row.launched is not None:
            up = row.started if row.started is not None else stop
            timeline.broken_barh(
                [(row.launched - t0, up - row.launched)], (n - 0.45, 0.9), color=STARTING_COLOUR
            )
        if row.started is not None:
            timeline.broken_barh(
                [(row.started - t0, max(0.0, stop - row.started))], (n - 0.45, 0.9), color=UP_COLOUR
            )
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
    if stop_marks(rows):
        timeline.legend(loc="lower right", fontsize=8)
    points = progress(record)
    done.plot([t - t0 for t in points.times], points.done)
    done.set_xlabel("seconds since the first launch")
    done.set_ylabel("items done")
    return figure
