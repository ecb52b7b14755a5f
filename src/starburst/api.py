"""The one-call front ends: ``map``, ``starmap``, ``imap`` and ``imap_unordered``.

Each opens a ``Cluster`` for the call, submits one run, collects it, and stops the workers,
whether the call returns, raises, or is interrupted.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Unpack

from .cluster import Cluster
from .engine.driver import workers_for
from .engine.item_times import ITEM_TIMES
from .engine.manifest import CallStyle
from .errors import ConfigurationError
from .options import ClusterKeywords, OneOffKeywords, RunKeywords, RunOptions, pick, takes
from .reporting.timeline import Timeline


@takes(OneOffKeywords)
def map(
    fn: Callable[..., Any], *iterables: Iterable[Any], **options: Unpack[OneOffKeywords]
) -> Any:
    """Run ``fn`` over the items on ``workers`` workers; return the results in input order.

    Several iterables are zipped, as with the built-in ``map`` (``strict=True``: they must be
    of equal length). ``errors="raise"`` raises the first failure as its original type, with
    the remote traceback chained and completed results in ``exc.starburst_results``;
    ``errors="return"`` puts the exception in the item's place. ``retries`` re-runs items
    whose worker was lost; ``retry_exceptions`` also re-runs items that raised. ``seed`` gives
    each item its own reproducible random state. ``timeout`` bounds the whole call.
    ``max_cost`` stops the workers when they have cost that many dollars (``CostCapError``,
    keeping completed results); ``cost_alert`` warns once past its amount. With
    ``return_run=True`` the call returns ``(results, starburst.RunReport)``: wall time and
    actual cost, and its timeline (``run.save_html("run.html")``, ``run.plot()``), read
    from the store before the workers stop (one more read of each chunk's output).
    ``workers``, ``cpu``, ``memory``, ``backend``, ``spot`` and ``progress`` are as for
    ``Cluster``.
    """
    return _one_off("as_list", fn, iterables, "single", options)


@takes(OneOffKeywords)
def starmap(
    fn: Callable[..., Any], iterable: Iterable[Iterable[Any]], **options: Unpack[OneOffKeywords]
) -> Any:
    """Like ``map``, calling ``fn(*args)`` for each tuple of arguments in ``iterable``."""
    return _one_off("as_list", fn, (iterable,), "star", options)


@takes(OneOffKeywords)
def imap(
    fn: Callable[..., Any], *iterables: Iterable[Any], **options: Unpack[OneOffKeywords]
) -> Iterator[Any]:
    """Like ``map``, but an iterator that yields each result, in input order, as it lands."""
    return _one_off("ordered", fn, iterables, "single", options)


@takes(OneOffKeywords)
def imap_unordered(
    fn: Callable[..., Any], *iterables: Iterable[Any], **options: Unpack[OneOffKeywords]
) -> Iterator[Any]:
    """Like ``imap``, but yields results in the order they land."""
    return _one_off("unordered", fn, iterables, "single", options)


def _one_off(
    mode: str,
    fn: Callable[..., Any],
    iterables: tuple[Iterable[Any], ...],
    call: CallStyle,
    options: OneOffKeywords,
) -> Any:
    return_run = options.get("return_run", False)
    if return_run is not False and (mode != "as_list" or return_run is not True):
        raise ConfigurationError(
            f"return_run={return_run!r}: use return_run=True with map or starmap (an "
            "iterator's run report is `Cluster.report`)"
        )
    cluster = Cluster(**pick(ClusterKeywords, options))
    plan = cluster.plan(fn, iterables, call, RunOptions.build(**pick(RunKeywords, options)))
    if plan is None:
        empty: list[Any] | Iterator[Any] = [] if mode == "as_list" else iter(())
        return (empty, None) if return_run else empty
    per_item = ITEM_TIMES.measured(fn)
    work = (plan.n_items, per_item) if plan.n_items and per_item is not None else None
    cluster.start(workers_for(cluster.spec, plan.n_items), lazy=True, work=work)
    try:
        collector = cluster.collector(plan, None, keep_results=mode == "as_list")
    except BaseException:
        cluster.close()
        raise
    if mode == "as_list":
        timeline = None
        try:
            results = collector.as_list()
            if return_run:  # read while the session's records are there
                timeline = Timeline.read(cluster.driver.store, cluster.driver.session.session_id)
        finally:
            cluster.close()
        if not return_run:
            return results
        assert cluster.report is not None
        return results, cluster.report.with_timeline(timeline)
    source = collector.ordered() if mode == "ordered" else collector.unordered()
    return _ClosingIterator(source, cluster)


class _ClosingIterator:
    """An iterator that stops its one-off cluster when exhausted, closed, or collected."""

    def __init__(self, source: Iterator[Any], cluster: Cluster) -> None:
        self._source = source
        self._cluster = cluster

    def __iter__(self) -> _ClosingIterator:
        return self

    def __next__(self) -> Any:
        try:
            return builtins.next(self._source)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop the workers now, even if results remain."""
        close = getattr(self._source, "close", None)
        if close is not None:
            close()
        self._cluster.close()

    def __enter__(self) -> _ClosingIterator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()
