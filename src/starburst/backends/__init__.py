"""Backends: where workers run, and the store they share with the client.

``place`` picks both for a new session: the local backend with a local-directory store, or
Fargate with the account's S3 bucket. ``reopen`` rebuilds an existing session's from its
record, in any process: a client that attaches, or a worker that supervises a detached
session and launches replacements.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..options import WorkerSpec
from ..settings import resolve
from ..store import LocalStore, NotFound, Store
from ..store.local import close_to_others
from .base import Fleet, LaunchRequest, WorkerInfo
from .local import SCRATCH_PREFIX, LocalFleet, scratch_dir, sweep_abandoned

__all__ = [
    "Backend",
    "LaunchRequest",
    "LocalFleet",
    "Placement",
    "WorkerInfo",
    "detached_root",
    "detached_store",
    "place",
    "reopen",
]


@dataclass
class Placement:
    """Where a session lives: its store, its backend, and how to remove its data."""

    store: Store
    fleet: Fleet
    discard: Callable[[], None]
    #: What a supervisor needs to launch more workers (``SessionRecord.launch``).
    launch: dict[str, Any] = field(default_factory=dict)


def detached_root() -> Path:
    """The store of detached local sessions: ``STARBURST_DATA_DIR``, else the user's data
    folder. Unlike a one-off session's scratch folder, it outlives the client."""
    chosen = resolve("data_dir")
    if chosen is not None:
        return chosen / "store"
    import platformdirs

    return Path(platformdirs.user_data_dir("starburst", appauthor=False)) / "store"


def detached_store() -> LocalStore:
    """The store of detached local sessions, closed to other users of the machine (whoever
    can write it can run code in its workers and its clients)."""
    store = LocalStore(detached_root())
    close_to_others(store.root)
    return store


def place(spec: WorkerSpec, session_id: str, detached: bool = False) -> Placement:
    """The store and backend for a new session of ``spec``."""
    if spec.backend == "fargate":
        from .fargate import place_on_fargate

        return place_on_fargate(spec, session_id)
    if detached:
        store = detached_store()
        sweep_old_sessions(store)
        return local_placement(store, session_id)
    parent = scratch_dir()
    _sweep_now_and_then(Path(parent or tempfile.gettempdir()))
    root = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-", dir=parent))
    backend = LocalFleet(root / "sessions" / session_id)
    return Placement(LocalStore(root), backend, lambda: shutil.rmtree(root, ignore_errors=True))


#: When this process last swept each scratch parent folder (``time.monotonic()``).
_SWEPT: dict[str, float] = {}
#: A folder is swept at most this often: a scratch folder counts as abandoned after an hour.
_SWEEP_EVERY_SECONDS = 60.0


def _sweep_now_and_then(parent: Path) -> None:
    """``sweep_abandoned(parent)``, unless this process did it in the last minute (a loop of
    short maps need not list the folder, often ``/dev/shm``, at every call)."""
    now = time.monotonic()
    last = _SWEPT.get(str(parent))
    if last is None or now - last >= _SWEEP_EVERY_SECONDS:
        _SWEPT[str(parent)] = now
        sweep_abandoned(parent)


def sweep_old_sessions(store: LocalStore, now: float | None = None) -> list[str]:
    """Remove the local sessions created longer ago than the bucket keeps run data (none
    is live: a session's deadline is at most six days after its creation)."""
    from ..aws.resources import RUN_DATA_EXPIRY_DAYS

    now = time.time() if now is None else now
    removed = []
    for session_id in store.list_folders("sessions/"):
        try:
            created = json.loads(store.get(f"sessions/{session_id}/session.json"))["created"]
        except (NotFound, ValueError, KeyError):
            continue
        if now - created > RUN_DATA_EXPIRY_DAYS * 86400:
            local_placement(store, session_id).discard()
            removed.append(session_id)
    return removed


def local_placement(store: LocalStore, session_id: str) -> Placement:
    """A detached session in the shared local store: removing it removes only its own
    folders. Its workers are started fresh (``python -m starburst.worker``), never forked:
    a forked worker would keep the client's whole memory alive for as long as it runs,
    long after the client has gone."""
    from ..engine.session_record import check_session_id

    check_session_id(session_id, "a local session's folder")
    folders = [store.root / "sessions" / session_id, store.root / "data" / session_id]

    def discard() -> None:
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)

    return Placement(store, LocalFleet(folders[0], fork=False), discard)


def remove_unreadable(store: Store, session_id: str) -> None:
    """Remove a session whose records cannot be read (damaged, or from a newer starburst):
    delete its control record (its workers leave at their next heartbeat), stop local
    workers by their process records, and delete its data."""
    from ..engine.keys import SessionKeys

    store.delete(SessionKeys(session_id).control)
    if isinstance(store, LocalStore):
        placement = local_placement(store, session_id)
        found = placement.fleet.find(session_id)
        placement.fleet.stop([info.worker_id for info in found if info.state != "stopped"])
        placement.discard()
    else:
        from .fargate import discard_session

        discard_session(store, session_id)


def reopen(backend: str, session_id: str, store: Store, launch: dict[str, Any]) -> Placement:
    """The placement of an existing session, rebuilt from its record in any process."""
    if backend == "fargate":
        from .fargate import FargateFleet, discard_session

        fargate = FargateFleet.from_launch(launch)
        discard = functools.partial(discard_session, store, fargate, session_id)
        return Placement(store, fargate, discard, launch)
    assert isinstance(store, LocalStore)
    return local_placement(store, session_id)
