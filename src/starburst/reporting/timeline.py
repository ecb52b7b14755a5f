"""``Timeline``: a session's run record with its ways out (HTML page, PNG, JSON, a card in
Jupyter), and ``report``, which makes one for a session id."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..cost.instance_bill import InstanceReading
from ..engine.instance_record import keep_instances, kept_instances
from ..errors import ConfigurationError
from ..store import Store
from .record import add_instances, add_platform_view, read_run
from .series import totals

if TYPE_CHECKING:
    from ..backends.base import Fleet
    from ..engine.session_record import SessionRecord

log = logging.getLogger("starburst")


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
        record, shown = self.record, totals(self.record)
        priced = "" if shown.cost is None else f", ~${shown.cost:.4f}"
        return (
            f"session {record['session_id']} on {record['backend']}: {shown.done}/{shown.items} "
            f"items, {shown.failed} failed, {shown.workers} workers{priced}"
        )

    def __repr__(self) -> str:
        return f"<starburst.Timeline {self}>"

    def _repr_html_(self) -> str:
        """A compact card in a notebook (plain HTML: no extra needed)."""
        from .card import timeline_card

        return timeline_card(self.record)


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
    """Add what the session's backend still knows of its workers (how each stopped) and of
    the instances they ran on, as ``attach`` reaches it; without it (no credentials, a
    platform that forgot), the store's view stands."""
    from ..backends.registry import backend_named
    from ..engine.session_record import SessionRecord

    try:
        session = SessionRecord.load(store, record["session_id"])
        fleet = backend_named(session.backend).reopen(session.session_id, store, session.launch)
        infos = fleet.fleet.find(session.session_id)  # (what any process can ask)
    except Exception:  # best effort: botocore's errors, a backend no longer installed, ...
        return
    add_platform_view(record, infos)
    _keep_instances(record, store, fleet.fleet, session)


def _keep_instances(
    record: dict[str, Any], store: Store, fleet: Fleet, session: SessionRecord
) -> None:
    """Read the instances the session's workers ran on (where the backend reports them),
    keep them in the store over what it held (the platform forgets them within the hour:
    a later report from anywhere still shows them), and add them to ``record``."""
    try:
        uses = fleet.instance_usage(session.session_id, session.created)
    except Exception:  # best effort, as above
        return
    if uses is None:  # workers on no instances it reports (local, Fargate)
        return
    now = time.time()
    kept = kept_instances(store, session.keys)
    merged = InstanceReading(session.created, now, tuple(uses))
    if kept is not None:
        merged = kept.updated(uses, now)
    try:
        keep_instances(store, session.keys, merged)
    except Exception as exc:  # a reader that may not write: this report still shows them
        log.warning("could not keep the session's instances in its store: %s", exc)
    add_instances(record, merged)


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
