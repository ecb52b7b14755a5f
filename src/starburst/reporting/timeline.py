"""``Timeline``: a session's run record with its ways out (HTML page, PNG, JSON, a card in
Jupyter), and ``report``, which makes one for a session id."""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError
from ..store import Store
from .record import add_platform_view, read_run


class Timeline:
    """What a session's workers did: lanes of workers and chunks, item times, cost, errors.

    ``record`` is plain data (``to_json``); ``save_html`` writes a page that opens offline,
    ``save_png`` a picture for a document (both need ``pip install "starburst[report]"``).
    """

    def __init__(self, record: dict[str, Any]) -> None:
        self.record = record

    @classmethod
    def read(cls, store: Store, session_id: str) -> Timeline:
        """The timeline of ``session_id`` from its store, as it is now."""
        return cls(read_run(store, session_id))

    def to_json(self) -> str:
        return json.dumps(self.record)

    def to_html(self) -> str:
        """The report as one HTML page (its scripts inside)."""
        _need("bokeh")
        from .html import render

        return render(self.record)

    def save_html(self, path: str | os.PathLike[str]) -> Path:
        """Write the report as one HTML file (its scripts inside); return its path."""
        target = Path(path)
        target.write_text(self.to_html(), encoding="utf-8")
        return target

    def save_png(self, path: str | os.PathLike[str]) -> Path:
        """Write the timeline and progress as a PNG; return its path."""
        figure = self.plot()
        figure.savefig(path, dpi=110)
        return Path(path)

    def plot(self) -> Any:
        """The timeline and progress as a matplotlib figure (shown by Jupyter)."""
        _need("matplotlib")
        from .png import draw

        return draw(self.record)

    def __str__(self) -> str:
        record = self.record
        items = sum(run["items"] or 0 for run in record["runs"])
        done = sum(bar["items"] for bar in record["chunks"])
        cost = record["cost"]["total"]
        priced = "" if cost is None else f", ~${cost:.4f}"
        return (
            f"session {record['session_id']} on {record['backend']}: {done}/{items} items, "
            f"{len(record['errors'])} failed, {len(record['workers'])} workers{priced}"
        )

    def __repr__(self) -> str:
        return f"<starburst.Timeline {self}>"

    def _repr_html_(self) -> str:
        return f"<div><b>starburst</b> {html.escape(str(self))}</div>"


def report(session_id: str, path: str | os.PathLike[str] | None = None) -> Timeline:
    """The timeline of session ``session_id`` (finished or running, from any machine that
    can ``attach`` to it); with ``path``, also write it there as an HTML report."""
    from ..detached import session_store

    store = session_store(session_id)
    timeline = Timeline.read(store, session_id)
    _ask_platform(timeline.record, store)
    if path is not None:
        timeline.save_html(path)
    return timeline


def _ask_platform(record: dict[str, Any], store: Store) -> None:
    """Add what the session's backend still knows of its workers (how each stopped), as
    ``attach`` reaches it; without it (no credentials, a platform that forgot), the store's
    view stands."""
    from ..backends.registry import backend_named
    from ..engine.session_record import SessionRecord

    try:
        session = SessionRecord.load(store, record["session_id"])
        fleet = backend_named(session.backend).reopen(session.session_id, store, session.launch)
        infos = fleet.fleet.find(session.session_id)  # (what any process can ask)
    except Exception:  # best effort: botocore's errors, a backend no longer installed, ...
        return
    add_platform_view(record, infos)


def _need(module: str) -> None:
    """Refuse clearly when the optional extra ``report`` is not installed."""
    import importlib

    try:
        importlib.import_module(module)
    except ImportError:
        raise ConfigurationError(
            f"a run's report needs {module}, which is not installed: "
            'pip install "starburst[report]"'
        ) from None
