"""Detached sessions: submit work, close the laptop, attach later from anywhere, collect.

::

    session = starburst.session(workers=50, cpu=2, memory="4GB", backend="fargate")
    run = session.map(expensive_function, huge_dataset)   # returns once the inputs are stored
    print(session.id)                                     # the laptop may now close

    session = starburst.attach(session_id)                # any process, any machine
    session.status()
    results = session.collect(wait=True, timeout=3600)
    session.cleanup()

A session is the same engine as a ``Cluster``; it differs in three ways. Its workers do not
watch for a client: they stop when idle, and always at the session's deadline (its ``ttl``).
A run is announced to the workers only once all its inputs are stored, so a run exists whole
or not at all. And lost workers are replaced by whoever holds the session's supervisor lease
(this client while attached, else one of the workers: ``engine/supervisor.py``).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Unpack

from .aws.resources import RUN_DATA_EXPIRY_DAYS
from .backends import Backend, backend_named, backend_names
from .cost.guard import CostLimits
from .engine.driver import Driver
from .engine.keys import SessionKeys
from .engine.manifest import RunManifest
from .engine.outcome import ChunkOutput
from .engine.run import Run
from .engine.session_record import SessionRecord, check_session_id, parse_ttl
from .engine.status import RunStatus, SessionStatus, read_status, run_manifests, run_status
from .errors import (
    CancelledError,
    ConfigurationError,
    DamagedRecordError,
    NewerRecordError,
    PartialResults,
    RunTimeoutError,
    SessionExpiredError,
    SessionNotFoundError,
    StarburstError,
    UnreadableSessionError,
)
from .options import RunKeywords, RunOptions, WorkerSpec, parse_duration, takes
from .planning import Plan, plan_call, plan_tasks
from .progress import Progress, make_progress
from .serialize import pickle_call
from .store import NotFound, Store

#: How often a waiting ``collect`` rereads the session's state (expired, capped, removed).
_STATE_CHECK_SECONDS = 5.0


class _Pending:
    """The placeholder of an item that has no result yet."""

    _instance: _Pending | None = None

    def __new__(cls) -> _Pending:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "starburst.PENDING"

    def __reduce__(self) -> str:
        return "PENDING"


#: Stands in ``collect(wait=False)``'s results for items not computed yet.
PENDING = _Pending()


def session(
    workers: int | None = None,
    cpu: int | float | None = None,
    memory: str | int | float | None = None,
    backend: str | Backend | None = None,
    *,
    spot: bool = False,
    gpus: int = 0,
    instance_types: Sequence[str] | None = None,
    arch: str | None = None,
    keep_warm: str | float | None = None,
    ttl: str | float = "24h",
    max_cost: float | None = None,
    cost_alert: float | None = None,
) -> Session:
    """Open a detached session: its workers and results outlive this process.

    ``ttl`` (seconds, or e.g. ``"90m"``, ``"24h"``, ``"2d"``; at most 6 days) is when its
    workers stop whatever remains; ``Session.extend`` moves it. ``max_cost`` caps what its
    workers may cost, even while no client is attached. Workers start with the first run.
    """
    spec = WorkerSpec.build(
        backend=backend, workers=workers, cpu=cpu, memory=memory, spot=spot, gpus=gpus,
        instance_types=instance_types, arch=arch, keep_warm=keep_warm,
    )  # fmt: skip
    limits = CostLimits.build(max_cost, cost_alert)
    driver = Driver.new(spec, limits, detached=True, ttl=parse_ttl(ttl))
    driver.start(launch=False)
    return Session(driver)


def attach(session_id: str, *, allow_expired: bool = False) -> Session:
    """Reopen a detached session by id, from any process or machine with the same store.

    Raises ``SessionNotFoundError`` for an unknown id, and ``SessionExpiredError`` for a
    session past its deadline unless ``allow_expired`` (to collect what it finished).
    """
    store, record = _locate(session_id)
    if record.attached:
        raise ConfigurationError(
            f"{session_id} is the session of a Cluster or map, which lives only as long as "
            "its client; only sessions opened with starburst.session() can be attached"
        )
    driver = _reopen(store, record)
    record = driver.session  # the control record's copy: the authority on the deadline
    if time.time() - record.created > RUN_DATA_EXPIRY_DAYS * 86400:
        raise SessionExpiredError(
            f"session {session_id} is over {RUN_DATA_EXPIRY_DAYS} days old: its run data has "
            f"expired. `starburst sessions cleanup {session_id}` removes what is left"
        )
    if record.expired() and not allow_expired:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(record.deadline))
        raise SessionExpiredError(
            f"session {session_id} expired at {when}: its workers have stopped. Collect what "
            f"it finished with starburst.attach({session_id!r}, allow_expired=True)"
            ".collect(wait=False), or `starburst sessions collect "
            f"{session_id} --no-wait -o FILE`; `starburst sessions cleanup {session_id}` "
            "removes it"
        )
    driver.watch()
    return Session(driver)


def session_status(session_id: str) -> SessionStatus:
    """The status of any session by id, read without attaching (nothing is launched)."""
    store, _ = _locate(session_id)
    return read_status(store, session_id)


def remove_session(session_id: str) -> None:
    """Stop a session's workers and delete its data: any session, expired or not, and an
    abandoned ``Cluster``'s too (its client died before it could clean up)."""
    try:
        store, record = _locate(session_id)
    except UnreadableSessionError as exc:
        # Its backend is not known: delete its control record (its workers leave at their
        # next heartbeat), then let each backend remove what it finds of the session.
        exc.store.delete(SessionKeys(session_id).control)
        for backend in _all_backends():
            backend.remove_unreadable(exc.store, session_id)
        return
    _reopen(store, record).remove()


def _reopen(store: Store, record: SessionRecord) -> Driver:
    placement = backend_named(record.backend).reopen(record.session_id, store, record.launch)
    return Driver.reopen(placement, record)


def _all_backends() -> list[Backend]:
    return [backend_named(name) for name in backend_names()]


def list_sessions() -> list[SessionStatus]:
    """Every session in the local store and, when set up, in the AWS account's bucket:
    id, created, backend, state, progress and cost. Oldest first."""
    found = []
    for store in _stores():
        for session_id in store.list_folders("sessions/"):
            try:
                found.append(read_status(store, session_id))
            except (NotFound, SessionNotFoundError):
                continue  # being removed, not a session, or a record naming another
    return sorted(found, key=lambda status: status.created)


class Session:
    """A detached session: submit runs, check on them, collect them, clean up.

    Leaving a ``with`` block, or the process ending, only detaches: the workers go on.
    """

    def __init__(self, driver: Driver) -> None:
        self._driver = driver
        self._views: dict[str, _RunView] = {}
        self._removed = False
        weakref.finalize(self, driver.close)

    @property
    def id(self) -> str:
        """The session id: keep it to attach later."""
        return self._driver.session.session_id

    @property
    def deadline(self) -> float:
        """When the workers stop (epoch seconds)."""
        return self._driver.control.control.session.deadline  # type: ignore[union-attr]

    def __repr__(self) -> str:
        return f"<starburst.Session {self.id} on {self._driver.spec.backend}>"

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.detach()

    # Submitting --------------------------------------------------------------------------

    @takes(RunKeywords)
    def map(
        self, fn: Callable[..., Any], *iterables: Iterable[Any], **options: Unpack[RunKeywords]
    ) -> RunHandle:
        """Submit ``fn`` over the items (several iterables are zipped); returns a run handle
        once every input is stored. Options: ``chunk_size``, ``retries``,
        ``retry_exceptions``, ``seed``, ``strict``, as for ``starburst.map`` (``errors`` and
        ``timeout`` are checked here, and chosen when collecting: ``collect``)."""
        self._check_open()
        chosen = RunOptions.build(**options)
        return self._submit(plan_call(self._driver.spec, fn, iterables, "single", chosen))

    @takes(RunKeywords)
    def starmap(
        self,
        fn: Callable[..., Any],
        iterable: Iterable[Iterable[Any]],
        **options: Unpack[RunKeywords],
    ) -> RunHandle:
        """Like ``map``, calling ``fn(*args)`` for each tuple of arguments."""
        self._check_open()
        chosen = RunOptions.build(**options)
        return self._submit(plan_call(self._driver.spec, fn, (iterable,), "star", chosen))

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> RunHandle:
        """Submit one call ``fn(*args, **kwargs)``; its run's result is the call's value."""
        self._check_open()
        if not callable(fn):
            raise StarburstError(f"{fn!r} is not callable; pass a function as the first argument")
        return self._submit(plan_tasks(self._driver.spec, [pickle_call(fn, args, kwargs)]))

    def _submit(self, plan: Plan) -> RunHandle:
        run = self._driver.submit(plan.payload, plan.chunks, plan.n_items, plan.call, plan.options)
        run.wait_uploaded()
        self._views[run.run_id] = _RunView(run)
        return RunHandle(self, run.manifest)

    # Looking -----------------------------------------------------------------------------

    @property
    def runs(self) -> list[RunHandle]:
        """The session's runs, in submission order (from the store: any client's)."""
        self._check_open()
        return [RunHandle(self, m) for m in run_manifests(self._store, self._driver.keys)]

    def status(self) -> SessionStatus:
        """Per run: items done, failed and pending, and an ETA; workers up; cost so far."""
        self._check_open()
        return read_status(self._store, self.id)

    def collect(
        self,
        wait: bool = True,
        timeout: float | None = None,
        errors: str = "raise",
        progress: bool | None = None,
    ) -> list[Any]:
        """Every run's results, in submission order: a list in input order for a ``map``,
        the value for a ``submit``.

        ``wait=False`` returns at once, with ``starburst.PENDING`` for items not computed
        yet. ``errors="raise"`` raises the first failure (its remote traceback chained);
        ``errors="return"`` puts exceptions in place. A ``timeout`` (seconds) raises
        ``RunTimeoutError``; every error carries what is done in ``exc.starburst_results``
        (one ``PartialResults`` per run). Calling it again returns the same results. A
        progress bar shows while waiting on a terminal (``progress=False`` hides it).
        """
        self._check_open()
        return self._collect(self.runs, wait, timeout, errors, progress)

    def _collect(
        self,
        handles: list[RunHandle],
        wait: bool,
        timeout: float | None,
        errors: str,
        progress: bool | None = None,
    ) -> list[Any]:
        RunOptions.build(errors=errors, timeout=timeout)  # the same checks as map's
        views = [self._view(handle.manifest) for handle in handles]
        display = make_progress(progress if wait else False, f"starburst: collecting {self.id}")
        try:
            self._wait_for(views, wait, timeout, display)
        finally:
            display.close()
        for view in views:
            failure = view.first_failure() if errors == "raise" else None
            if failure is not None:
                raise _with_partials(failure, views)
        return [view.value() for view in views]

    def _wait_for(
        self, views: list[_RunView], wait: bool, timeout: float | None, display: Progress
    ) -> None:
        """Poll the runs once, or (``wait``) until they are complete or cannot be."""
        deadline = None if timeout is None else time.monotonic() + timeout
        next_check = time.monotonic() + _STATE_CHECK_SECONDS
        total = sum(view.run.n_items or 0 for view in views)
        workers = "checking"
        while True:
            for view in views:
                view.poll()
            display.update(sum(v.run.items_delivered for v in views), total, workers)
            waiting = [view for view in views if not view.run.complete]
            if not wait or not waiting:
                return
            if any(view.run.cancelled for view in waiting):
                cancelled = next(view.run.run_id for view in waiting if view.run.cancelled)
                raise _with_partials(
                    CancelledError(f"run {cancelled} was cancelled: it will not finish"), views
                )
            if deadline is not None and time.monotonic() >= deadline:
                raise _with_partials(
                    RunTimeoutError(
                        f"collect timed out after {timeout:g} s with {_progress(views)} items "
                        "done; call collect again to go on waiting"
                    ),
                    views,
                )
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + _STATE_CHECK_SECONDS
                status = self._raise_if_stuck(views)
                cost = "" if status.cost is None else f", ~${status.cost:.2f} so far"
                workers = f"{status.workers} up{cost}"
            waiting[0].run.wait()

    def _raise_if_stuck(self, views: list[_RunView]) -> SessionStatus:
        """The session's status; raises instead when its runs can no longer finish."""
        status = read_status(self._store, self.id)
        if status.state in ("expired", "capped", "stalled", "closed"):
            why = {
                "expired": "reached its deadline (`session.extend(...)` gives it more time)",
                "capped": "reached its max_cost (`session.extend(max_cost=...)` raises it)",
                "stalled": f"stalled: {status.problem}",
                "closed": "was cleaned up",
            }[status.state]
            raise _with_partials(
                SessionExpiredError(
                    f"session {self.id} {why} with {_progress(views)} items done; what is "
                    "done is in `exc.starburst_results`"
                ),
                views,
            )
        return status

    def _view(self, manifest: RunManifest) -> _RunView:
        if manifest.run_id not in self._views:
            run = Run.existing(self._store, self._driver.keys, manifest, self._driver.signal_run)
            self._views[manifest.run_id] = _RunView(run)
        return self._views[manifest.run_id]

    # Lifecycle ---------------------------------------------------------------------------

    def extend(self, by: str | float | None = None, *, max_cost: float | None = None) -> float:
        """Move the deadline ``by`` later (seconds, or e.g. ``"12h"``), and/or raise
        ``max_cost``. An expired or capped session resumes: its unfinished work is picked
        up again (an expired one gets ``by`` from now). Returns the deadline."""
        self._check_open()
        if by is None and max_cost is None:
            raise ConfigurationError("extend needs by= (e.g. '12h') and/or max_cost=")
        seconds = None if by is None else parse_duration("by", by)
        limits = CostLimits.build(max_cost) if max_cost is not None else None
        now = time.time()

        def edit(control: Any) -> None:
            record: SessionRecord = control.session
            if seconds is not None:
                record.set_ttl(seconds, max(record.deadline, now))
            if limits is not None:
                record.max_cost = limits.max_cost
            if record.state == "capped" and (limits is not None or seconds is not None):
                record.state = "open"  # over the cap again at the next step if still short
                if record.deadline <= now:
                    record.set_ttl(seconds or 3600.0, now)

        self._driver.control.change(edit)
        self._driver.control.publish_session()
        record = self._driver.control.control.session
        assert record is not None
        self._driver.session = record
        return record.deadline

    def detach(self) -> None:
        """Stop this client's threads; the workers and the results stay."""
        self._driver.close()

    def cleanup(self) -> None:
        """Stop the workers and delete the session's data (its results too)."""
        self._check_open()
        self._removed = True
        self._driver.remove()

    @property
    def _store(self) -> Store:
        return self._driver.store

    def _check_open(self) -> None:
        if self._removed:
            raise SessionNotFoundError(f"session {self.id} was cleaned up")


class RunHandle:
    """One submitted run of a session."""

    def __init__(self, session: Session, manifest: RunManifest) -> None:
        self._session = session
        self.manifest = manifest
        self.id = manifest.run_id
        self.kind = "call" if manifest.call == "task" else "map"

    def __repr__(self) -> str:
        return f"<starburst.RunHandle {self._session.id}/{self.id} ({self.kind})>"

    def status(self) -> RunStatus:
        """Items done, failed and pending, and an ETA."""
        store, keys = self._session._store, self._session._driver.keys
        manifest = RunManifest.decode(store.get(keys.manifest(self.id)))  # its state now
        return run_status(store, keys, manifest, time.time())

    def cancel(self) -> None:
        """Stop the run: workers take no more of its chunks (what is done stays
        collectable; collecting it with ``wait=True`` raises ``CancelledError``)."""
        self._session._check_open()
        self._session._view(self.manifest).run.cancel()

    def done(self) -> bool:
        """Whether every item has a result or an error."""
        view = self._session._view(self.manifest)
        view.poll()
        return view.run.complete

    def result(
        self,
        wait: bool = True,
        timeout: float | None = None,
        errors: str = "raise",
        progress: bool | None = None,
    ) -> Any:
        """This run's results, as ``Session.collect`` gives them."""
        return self._session._collect([self], wait, timeout, errors, progress)[0]


class _RunView:
    """What this client has collected of one run: each chunk's output, kept once."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.landed: dict[int, ChunkOutput] = {}
        self._errors: dict[int, BaseException] = {}

    def poll(self) -> None:
        for output in self.run.poll():
            self.landed[output.start] = output

    def partial(self) -> PartialResults:
        partial = PartialResults(n_items=self.run.n_items)
        for output in self.landed.values():
            for offset, value in enumerate(output.results):
                index = output.start + offset
                if index in output.failures:
                    partial.failed[index] = self._error(output, index)
                else:
                    partial.done[index] = value
        return partial

    def _error(self, output: ChunkOutput, index: int) -> BaseException:
        if index not in self._errors:  # the same exception object on every collect
            self._errors[index] = output.failures[index].to_exception()
        return self._errors[index]

    def first_failure(self) -> BaseException | None:
        for start in sorted(self.landed):
            output = self.landed[start]
            if output.failures:
                return self._error(output, min(output.failures))
        return None

    def value(self) -> Any:
        partial = self.partial()
        results = [
            partial.done.get(i, partial.failed.get(i, PENDING)) for i in range(partial.n_items or 0)
        ]
        return results[0] if self.run.manifest.call == "task" else results


def _with_partials(exc: BaseException, views: list[_RunView]) -> BaseException:
    exc.starburst_results = [view.partial() for view in views]  # type: ignore[attr-defined]
    exc.add_note(
        "starburst: what is done is in `exc.starburst_results` (one starburst.PartialResults "
        "per run, in submission order)"
    )
    return exc


def _progress(views: list[_RunView]) -> str:
    done = sum(len(partial.done) + len(partial.failed) for partial in map(_RunView.partial, views))
    total = sum(view.run.n_items or 0 for view in views)
    return f"{done} of {total}"


def local_log_files(session_id: str, worker: str | None = None) -> list[Path] | None:
    """The log files of a local detached session's workers (or of one, by id or number);
    None when the session is not a local one."""
    from .backends.local import detached_root

    folder = detached_root() / "sessions" / check_session_id(session_id) / "logs"
    if not folder.is_dir():
        return None
    files = sorted(folder.glob("*.log"))
    return [f for n, f in enumerate(files) if worker in (None, f.stem, str(n))]


def session_store(session_id: str) -> Store:
    """The store that holds session ``session_id``, found as ``attach`` finds it."""
    return _locate(session_id)[0]


def _locate(session_id: str) -> tuple[Store, SessionRecord]:
    """The store that holds the session, and its record."""
    check_session_id(session_id)
    searched = []
    for store in _stores():
        searched.append(store.url)
        try:
            return store, SessionRecord.load(store, session_id)
        except NotFound:
            continue
        except (DamagedRecordError, NewerRecordError) as exc:
            raise UnreadableSessionError(
                f"session {session_id}: {exc}. `starburst sessions cleanup {session_id}` "
                "still removes it",
                store,
            ) from exc
    where = " or ".join(searched) or "this machine's sessions (and starburst is not set up on AWS)"
    raise SessionNotFoundError(
        f"no session {session_id} in {where}: it was cleaned up (a map's or a Cluster's "
        "session is removed as it ends: for its report, run it with return_run=True and "
        "call run.save_html), or it belongs to another account or machine (`starburst "
        "sessions ls` lists the sessions here)"
    )


def _stores() -> list[Store]:
    """Where sessions live: each backend's stores (the local one, and the AWS account's
    bucket when set up), each store once."""
    stores: dict[str, Store] = {}
    for backend in _all_backends():
        for store in backend.session_stores():
            stores.setdefault(store.url, store)
    return list(stores.values())
