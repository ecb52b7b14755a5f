"""A run as a compact card in a Jupyter notebook (``_repr_html_`` of ``RunReport`` and
``Timeline``): items done and failed, wall time, workers (and instances), cost with where its
prices came from, utilisation, the slowest item, the first error, and what to call next.

Plain HTML with inline styles: no script, every value escaped, and no import of Bokeh or
matplotlib, so a notebook shows it without the ``report`` extra.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..cost.instance_bill import instances_text
from .series import Totals, totals

if TYPE_CHECKING:
    from ..cost.guard import RunReport

#: The longest error message a card shows (the report has the whole traceback).
_MESSAGE_CHARS = 200


def timeline_card(record: dict[str, Any]) -> str:
    """The card of a run record (``starburst.report``'s ``Timeline``)."""
    shown = totals(record)
    rows = [
        _items_row(shown),
        ("wall time", f"{shown.wall_seconds:.1f} s to the last chunk"),
        ("workers", _workers_text(shown.workers, shown)),
        ("cost", _cost_text(shown.cost, shown.price_source)),
        ("utilisation", _share(shown.utilisation, shown.utilisation_of)),
        *_found_rows(record),
    ]
    hint = 'timeline.save_html("run.html") · timeline.save_png("run.png") · timeline.plot()'
    return _card(f"session {record['session_id']} on {record['backend']}", rows, hint)


def run_card(report: RunReport) -> str:
    """The card of a ``map(..., return_run=True)`` run: the report's own wall time and cost
    (as its closing line said), and the items and errors of its timeline if it has one."""
    record = report.timeline.record if report.timeline is not None else None
    shown = totals(record) if record is not None else None
    utilisation, of = report.utilisation, "instances"
    if utilisation is None and shown is not None:
        utilisation, of = shown.utilisation, shown.utilisation_of
    rows = [
        *([_items_row(shown)] if shown is not None else []),
        ("wall time", f"{report.wall_seconds:.1f} s"),
        ("workers", _workers_text(report.workers, shown, report)),
        ("cost", _cost_text(report.cost, report.price_source)),
        ("utilisation", _share(utilisation, of)),
        *(_found_rows(record) if record is not None else []),
    ]
    hint = (
        'run.save_html("run.html") · run.save_png("run.png") · run.plot()'
        if report.timeline is not None
        else 'starburst.report(run.session_id, "run.html") while the session lasts'
    )
    return _card(f"session {report.session_id} on {report.backend}", rows, hint)


def _items_row(shown: Totals) -> tuple[str, str]:
    return "items", f"{shown.done:,} of {shown.items:,} computed, {shown.failed:,} failed"


def _found_rows(record: dict[str, Any]) -> list[tuple[str, str]]:
    """The slowest item and the first error, where the record has them."""
    rows = []
    if record["slowest"]:
        slow = record["slowest"][0]
        which = (
            f"item {slow['index']}"
            if slow["items"] == 1
            else f"items {slow['index']}..{slow['index'] + slow['items'] - 1}"
        )
        given = f" (input {slow['input']})" if slow.get("input") else ""
        rows.append(("slowest", f"{which}: {slow['seconds']:.3f} s{given}"))
    if record["errors"]:
        error = record["errors"][0]
        message = f"{error['type']}: {error['message']}"
        if len(message) > _MESSAGE_CHARS:
            message = message[: _MESSAGE_CHARS - 1] + "…"
        more = len(record["errors"]) - 1
        also = f" (+{more} more)" if more else ""
        rows.append(("first error", f"item {error['index']}: {message}{also}"))
    return rows


def _workers_text(workers: int, shown: Totals | None, report: RunReport | None = None) -> str:
    text = f"{workers} launched"
    if shown is not None:
        text += "".join(
            f", {n} {kind.replace('_', ' ')}" for kind, n in sorted(shown.stops.items())
        )
    types = list(report.instances) if report is not None and report.instances else None
    if types is None and shown is not None and shown.instances:
        types = shown.instance_types
    if types:
        text += f" on {instances_text(tuple(types), None)}"
    return text


def _cost_text(cost: float | None, source: str | None) -> str:
    if cost is None:
        return "none (these workers cost nothing)"
    return f"~${cost:.4f} (prices: {source or 'unknown'})"


def _share(value: float | None, of: str) -> str:
    """E.g. "71% of the billed time busy", "40% of the instances' vCPUs used"."""
    if value is None:
        return "-"
    if of == "instances":
        return f"{value:.0%} of the instances' vCPU time used by workers"
    return f"{value:.0%} of the workers' {of} busy"


def _card(title: str, rows: Sequence[tuple[str, str]], hint: str) -> str:
    body = "".join(
        f"<tr><th style='text-align:left;padding:1px 12px 1px 0;font-weight:600'>"
        f"{html.escape(label)}</th><td style='text-align:left;padding:1px 0'>"
        f"{html.escape(value)}</td></tr>"
        for label, value in rows
    )
    return (
        "<div class='starburst-run' style='border:1px solid #ccc;border-radius:6px;"
        "padding:8px 12px;max-width:760px;font-family:system-ui,sans-serif;font-size:13px'>"
        f"<div style='font-weight:700;margin-bottom:4px'>starburst · {html.escape(title)}</div>"
        f"<table style='border-collapse:collapse'>{body}</table>"
        f"<div style='color:#666;margin-top:4px'>next: <code>{html.escape(hint)}</code></div>"
        "</div>"
    )
