"""A run record (``record.py``) as one self-contained HTML page that opens offline.

Plots are Bokeh's (Dask's dashboard is Bokeh too): interactive (hover, zoom), and their
JavaScript embedded from the installed package (``Resources(mode="inline")``, only the core
bundle: 1.3 MB; tables are plain HTML, so no widget bundle is needed). Nothing is fetched
when the page is opened. Bokeh is imported here only: it is the optional extra
``starburst[report]``.
"""

from __future__ import annotations

import html
import time
from typing import Any

from ..cost.instance_bill import instances_text
from .series import (
    PHASES,
    ItemTimes,
    Lane,
    Totals,
    item_times,
    lane_phases,
    lanes,
    origin,
    progress,
    stop_marks,
    totals,
)

#: Colours of a lane's phases and of its marks (also what a screenshot test looks for).
PROVISIONING_COLOUR = "#fdd49e"  # launched: the platform finds it a place
PULLING_COLOUR = "#c9b3e6"  # the platform pulls the image
STARTING_COLOUR = "#d9d9d9"  # its container starts, its process imports (or: not told apart)
UP_COLOUR = "#eef3fb"  # started: a process that is up
PHASE_COLOURS = {
    "provisioning": PROVISIONING_COLOUR,
    "pulling image": PULLING_COLOUR,
    "starting": STARTING_COLOUR,
    "up": UP_COLOUR,
}
CHUNK_COLOURS = ["#2166ac", "#2ca02c", "#9467bd", "#17becf", "#8c564b", "#bcbd22"]  # by run
FAILED_COLOUR = "#d62728"
STOP_COLOURS = {
    "interrupted": "#ff7f0e",
    "out_of_memory": "#e377c2",
    "crashed": "#d62728",
    "failed_to_start": "#7f7f7f",
    "stopped": "#555555",
}
_LANE_PIXELS = 18


def render(record: dict[str, Any]) -> str:
    """The page for ``record``: the timeline, progress, item times, cost, settings, errors."""
    from bokeh.embed import components
    from bokeh.resources import Resources

    rows = lanes(record)
    t0 = origin(record, rows)
    figures = {
        "timeline": _timeline(record, rows, t0),
        "progress": _progress(record, t0),
        "items": _item_times(item_times(record)),
        "cost": _cost(record, t0),
    }
    shown = {name: fig for name, fig in figures.items() if fig is not None}
    script, divs = components(shown)
    resources = Resources(mode="inline", components=["bokeh"]).render()
    return _PAGE.format(
        title=html.escape(f"starburst run {record['session_id']}"),
        resources=resources,
        script=script,
        summary=_summary(record, t0),
        timeline=divs.get("timeline", "<p>No worker ran yet.</p>"),
        progress=divs.get("progress", "<p>No item finished yet.</p>"),
        items=divs.get("items", "<p>No item times yet.</p>"),
        slowest=_slowest_table(record),
        cost=divs.get("cost", "<p>These workers cost nothing (local), or none ran yet.</p>"),
        prices=_prices(record),
        instances=_instances_table(record, t0),
        workers=_workers_table(record, t0),
        settings=_settings_table(record),
        errors=_errors(record),
    )


def _timeline(record: dict[str, Any], rows: list[Lane], t0: float) -> Any:
    """One lane per worker process: starting and up spans, a bar per chunk, stop marks."""
    from bokeh.models import ColumnDataSource, HoverTool

    if not rows:
        return None
    names = [row.name for row in rows]
    fig = _figure(
        "Workers and chunks", 80 + _LANE_PIXELS * len(rows), y_range=list(reversed(names))
    )
    now = record["generated"] - t0
    spans: dict[str, dict[str, list[Any]]] = {
        phase: {"lane": [], "left": [], "right": [], "what": [], "seconds": []} for phase in PHASES
    }
    for row in rows:
        for phase, start, end in lane_phases(row, record["generated"]):
            what = f"up ({row.state or 'no heartbeat'})" if phase == "up" else phase
            _add(spans[phase], lane=row.name, left=start - t0, right=end - t0, what=what,
                 seconds=round(end - start, 2))  # fmt: skip
    phase_bars = [
        fig.hbar(
            y="lane",
            left="left",
            right="right",
            height=0.9,
            color=PHASE_COLOURS[phase],
            source=ColumnDataSource(columns),
            legend_label=f"worker {phase}",
        )
        for phase, columns in spans.items()
        if columns["lane"]
    ]
    fig.add_tools(
        HoverTool(renderers=phase_bars, tooltips=[("worker", "@what"), ("seconds", "@seconds")])
    )
    runs = {run["run_id"]: n for n, run in enumerate(record["runs"])}
    bars: dict[str, list[Any]] = {
        key: []
        for key in (
            "lane",
            "left",
            "right",
            "colour",
            "chunk",
            "run",
            "items",
            "seconds",
            "attempt",
            "failed",
        )
    }
    for bar in record["chunks"]:
        if bar["start"] is None:
            continue  # from a worker too old to say when
        failed = len(bar["failed"])
        colour = CHUNK_COLOURS[runs.get(bar["run"], 0) % len(CHUNK_COLOURS)]
        _add(
            bars,
            lane=bar["worker"],
            left=bar["start"] - t0,
            right=bar["end"] - t0,
            colour=colour,
            chunk=bar["chunk"],
            run=bar["run"],
            items=bar["items"],
            seconds=round(bar["seconds"], 3),
            attempt=bar["attempt"],
            failed=failed,
        )
    chunk_bars = fig.hbar(
        y="lane",
        left="left",
        right="right",
        height=0.6,
        color="colour",
        line_color="white",
        source=ColumnDataSource(bars),
        legend_label="chunk",
    )
    fig.add_tools(
        HoverTool(
            renderers=[chunk_bars],
            tooltips=[
                ("chunk", "@chunk (run @run)"),
                ("items", "@items"),
                ("seconds", "@seconds"),
                ("attempt", "@attempt"),
                ("failed items", "@failed"),
            ],
        )
    )
    with_failures = [b for b in record["chunks"] if b["failed"] and b["end"] is not None]
    if with_failures:
        fig.scatter(
            [b["end"] - t0 for b in with_failures],
            [b["worker"] for b in with_failures],
            marker="x",
            size=12,
            line_width=3,
            color=FAILED_COLOUR,
            legend_label="failed items",
        )
    for kind, marks in stop_marks(rows).items():
        renderer = fig.scatter(
            [at - t0 for at, _ in marks],
            [lane for _, lane in marks],
            marker="triangle",
            size=13,
            color=STOP_COLOURS[kind],
            legend_label=kind.replace("_", " "),
        )
        fig.add_tools(HoverTool(renderers=[renderer], tooltips=[("stop", kind)]))
    if (record["state"] == "open" and not record["attached"]) or record["in_flight"]:
        fig.ray(x=[now], y=[0], length=0, angle=1.5708, color="#999999")
    fig.legend.click_policy = "hide"
    fig.add_layout(fig.legend[0], "right")  # beside the lanes, not over them
    fig.height = max(fig.height, 60 + 24 * len(fig.legend[0].items))  # room for the legend
    return fig


def _figure(title: str, height: int, **options: Any) -> Any:
    """A plot as wide as the page, over seconds since the first launch unless told."""
    from bokeh.plotting import figure

    options.setdefault("x_axis_label", "seconds since the first launch")
    return figure(
        title=title,
        height=height,
        sizing_mode="stretch_width",
        tools="xpan,xwheel_zoom,box_zoom,reset,save",
        **options,
    )


def _add(columns: dict[str, list[Any]], **values: Any) -> None:
    for key, value in values.items():
        columns[key].append(value)


def _progress(record: dict[str, Any], t0: float) -> Any:
    """Items done over time, with the ETA a progress bar would have shown, and throughput."""
    from bokeh.models import ColumnDataSource, HoverTool, LinearAxis, Range1d

    points = progress(record)
    if not points.times:
        return None
    fig = _figure("Items done and throughput", 260, y_axis_label="items done")
    source = ColumnDataSource(
        {"t": [t - t0 for t in points.times], "done": points.done, "eta": points.eta}
    )
    line = fig.line("t", "done", source=source, line_width=2, legend_label="items done")
    fig.y_range.renderers = [line]  # (the throughput bars have their own axis)
    fig.add_tools(
        HoverTool(
            renderers=[line],
            tooltips=[("t", "@t{0.0} s"), ("done", "@done"), ("ETA", "@eta{0.0} s")],
            mode="vline",
        )
    )
    top = max(points.rate, default=1.0) or 1.0
    fig.extra_y_ranges = {"rate": Range1d(start=0, end=1.1 * top)}
    fig.add_layout(LinearAxis(y_range_name="rate", axis_label="items / s"), "right")
    fig.vbar(
        x=[t - t0 for t in points.bin_times],
        top=points.rate,
        width=points.bin_width,
        y_range_name="rate",
        alpha=0.3,
        legend_label="throughput",
    )
    fig.legend.location = "top_left"
    return fig


def _item_times(times: ItemTimes) -> Any:
    """The distribution of item times (items weighted: a block's items share its time)."""

    if not times.counts:
        return None
    fig = _figure("Item times", 240, x_axis_label="seconds per item", y_axis_label="items")
    fig.quad(bottom=0, top=times.counts, left=times.edges[:-1], right=times.edges[1:], alpha=0.7)
    return fig


def _prices(record: dict[str, Any]) -> str:
    source = record["cost"].get("source")
    return f"<p>Prices: {html.escape(source)}.</p>" if source else ""


def _cost(record: dict[str, Any], t0: float) -> Any:
    series = record["cost"]["series"]
    if not series:
        return None
    fig = _figure("Cost so far (USD, estimated)", 220, y_axis_label="USD")
    fig.y_range.start = 0  # (each worker's or instance's first minute is billed at once)
    fig.line([t - t0 for t, _ in series], [c for _, c in series], line_width=2)
    return fig


# Tables and text -----------------------------------------------------------------------------


def _summary(record: dict[str, Any], t0: float) -> str:
    shown = totals(record)
    stops = "".join(f", {n} {kind.replace('_', ' ')}" for kind, n in sorted(shown.stops.items()))
    if shown.instances:
        stops += f", on {instances_text(tuple(shown.instance_types), shown.utilisation)}"
    facts = [
        ("session", record["session_id"]),
        ("backend", record["backend"]),
        ("state", record["state"] + (f" ({record['problem']})" if record["problem"] else "")),
        ("started", time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t0))),
        ("items", f"{shown.done} of {shown.items} computed, {shown.failed} failed"),
        ("workers", f"{shown.workers} launched{stops}"),
        ("wall time", f"{shown.wall_seconds:.1f} s to the last chunk"),
        ("cost", _cost_text(shown)),
        ("image", record["image"] or "-"),
    ]
    return _table(["", ""], facts)


def _cost_text(shown: Totals) -> str:
    if shown.cost is None:
        return "none (local)"
    return f"~${shown.cost:.4f}, estimated from prices: {shown.price_source or 'unknown'}"


def _instances_table(record: dict[str, Any], t0: float) -> str:
    """The instances the workers ran on (EC2): each with its life, bill and workers."""
    instances = record.get("instances")
    if not instances:
        return ""
    rows = [
        (
            i["id"],
            i["type"],
            i["lifecycle"],
            i["zone"] or "-",
            _at(i["launched"], t0),
            _at(i["terminated"], t0) if i["terminated"] is not None else "up",
            f"{i['billed_seconds']:.0f}",
            f"{i['hourly']:.4f}",
            f"{i['cost']:.4f}",
            f"{len(i['workers'])}" + (f" ({i['share']:.0%} of it)" if i["share"] < 1 else ""),
        )
        for i in instances["list"]
    ]
    headers = ["instance", "type", "lifecycle", "zone", "launched", "stopped", "billed s",
               "USD/h", "USD", "workers carried"]  # fmt: skip
    return "<h3>Instances</h3>" + _table(headers, rows)


def _workers_table(record: dict[str, Any], t0: float) -> str:
    rows = []
    for w in record["workers"]:
        busy = sum(p["busy_seconds"] for p in w["processes"])
        billed = w["billed_seconds"]
        used = f"{busy / (billed * max(1, len(w['processes']))):.0%}" if billed else "-"
        rows.append(
            (
                w["id"],
                "spot" if w["spot"] else "on-demand",
                _at(w["launched"], t0),
                _at(w["started"], t0),
                _at(w["stopped"], t0),
                w["stop"] or "running",
                w["reason"] or "",
                f"{busy:.1f}",
                "-" if billed is None else f"{billed:.0f}",
                used,
                "-" if w["cost"] is None else f"{w['cost']:.4f}",
            )
        )
    headers = [
        "worker",
        "capacity",
        "launched",
        "started",
        "stopped",
        "stop",
        "reason",
        "busy s",
        "billed s",
        "utilisation",
        "USD",
    ]
    return _table(headers, rows)


def _at(value: float | None, t0: float) -> str:
    return "-" if value is None else f"{value - t0:.1f}"


def _slowest_table(record: dict[str, Any]) -> str:
    rows = [
        (
            s["run"],
            s["index"] if s["items"] == 1 else f"{s['index']}..{s['index'] + s['items'] - 1}",
            f"{s['seconds']:.3f}",
            s["input"] or ("(not stored)" if s["items"] == 1 else "(timed together)"),
        )
        for s in record["slowest"]
    ]
    if not rows:
        return "<p>No item times yet.</p>"
    return _table(["run", "item(s)", "seconds", "input"], rows)


def _settings_table(record: dict[str, Any]) -> str:
    return _table(["setting", "value"], sorted(record["settings"].items()))


def _errors(record: dict[str, Any]) -> str:
    parts = []
    if record["problem"]:
        parts.append(f"<p class='problem'>{html.escape(record['problem'])}</p>")
    for claim in record["in_flight"]:
        if claim["cause"]:
            parts.append(f"<p>chunk {claim['chunk']}: {html.escape(claim['cause'])}</p>")
    for error in record["errors"]:
        where = error["where"] or f"item {error['index']}"
        head = f"{where}: {error['type']}: {error['message']}"
        parts.append(
            f"<details class='error'><summary>{html.escape(head)} (worker "
            f"{html.escape(error['worker'])})</summary><pre>{html.escape(error['traceback'])}"
            "</pre></details>"
        )
    return "\n".join(parts) or "<p>No errors.</p>"


def _table(headers: list[str], rows: Any) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }}
td, th {{ border-bottom: 1px solid #ddd; padding: 0.2em 0.8em; text-align: left; }}
pre {{ background: #f6f6f6; padding: 0.6em; overflow-x: auto; }}
.problem {{ color: #d62728; }}
</style>
{resources}
{script}
</head><body>
<h1>{title}</h1>
{summary}
<h2>Timeline</h2>
{timeline}
<h2>Progress</h2>
{progress}
<h2>Item times</h2>
{items}
<h3>Slowest items</h3>
{slowest}
<h2>Cost</h2>
{cost}
{prices}
{instances}
<h2>Workers</h2>
{workers}
<h2>Errors</h2>
{errors}
<h2>Settings</h2>
{settings}
</body></html>
"""
