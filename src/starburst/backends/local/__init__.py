"""The local backend: worker processes on this machine, sharing a local-folder store.

A one-off (attached) session gets a scratch folder (``/dev/shm`` when roomy) that goes with
it; a detached session lives in the user's data folder, so that it outlives the client.
The processes themselves are ``fleet.py``'s.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...settings import resolve
from ...store import LocalStore, NotFound, Store
from ...store.local import close_to_others
from ..base import Backend, Placement
from .fleet import SCRATCH_PREFIX, LocalFleet, remove_scratch_if_last, scratch_dir, sweep_abandoned

if TYPE_CHECKING:
    from ...engine.keys import SessionKeys
    from ...options import WorkerSpec

log = logging.getLogger("starburst.worker")

#: The local backend starts at most this many worker processes per CPU of the machine: more
#: only adds memory and switching (I/O-bound work rarely gains past it).
LOCAL_PROCESSES_PER_CPU = 16
#: A scratch parent folder is swept at most this often (a scratch folder counts as
#: abandoned after an hour).
_SWEEP_EVERY_SECONDS = 60.0


class LocalBackend(Backend):
    """Workers as processes of this machine; free, and the default."""

    name = "local"
    remote = False
    show_up_seconds = 10.0
    chunks_per_slot = 256  # a chunk costs microseconds on a local disk
    min_chunk_seconds = 0.004

    def __init__(self) -> None:
        #: When this process last swept each scratch parent folder (``time.monotonic()``).
        self._swept: dict[str, float] = {}

    def default_workers(self) -> int:
        return os.cpu_count() or 1

    def fit(
        self, workers: int, cpu: float | None, memory_mib: int | None
    ) -> tuple[int, float | None, int | None]:
        """Lowered, with a line on standard error that says so, when they ask for more
        processes than this machine can run (``memory`` is not enforced locally)."""
        limit = local_process_limit()
        processes = max(1, math.floor(cpu or 1))
        if workers * processes <= limit:
            return workers, cpu, memory_mib
        fitted_cpu = min(processes, limit)
        fitted = max(1, limit // fitted_cpu)
        print(
            f"starburst: workers={workers} x cpu={cpu or 1:g} asks for {workers * processes:,} "
            f"local processes, more than this machine can run ({os.cpu_count()} CPUs, at most "
            f"{limit} processes); starting {fitted} x cpu={fitted_cpu:g}. For more, use an AWS "
            "backend (backend='fargate').",
            file=sys.stderr,
        )
        return fitted, None if cpu is None else float(fitted_cpu), memory_mib

    def place(self, spec: WorkerSpec, session_id: str, detached: bool) -> Placement:
        if detached:
            store = detached_store()
            sweep_old_sessions(store)
            return local_placement(store, session_id)
        parent = scratch_dir()
        self._sweep_now_and_then(Path(parent or tempfile.gettempdir()))
        root = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-", dir=parent))
        fleet = LocalFleet(root / "sessions" / session_id)
        return Placement(LocalStore(root), fleet, lambda: shutil.rmtree(root, ignore_errors=True))

    def _sweep_now_and_then(self, parent: Path) -> None:
        """``sweep_abandoned(parent)``, unless this process did it in the last minute (a
        loop of short maps need not list the folder, often ``/dev/shm``, at every call)."""
        now = time.monotonic()
        last = self._swept.get(str(parent))
        if last is None or now - last >= _SWEEP_EVERY_SECONDS:
            self._swept[str(parent)] = now
            sweep_abandoned(parent)

    def reopen(self, session_id: str, store: Store, launch: dict[str, Any]) -> Placement:
        assert isinstance(store, LocalStore), "a local session lives in a local store"
        return local_placement(store, session_id)

    def session_stores(self) -> list[Store]:
        return [detached_store()] if detached_root().is_dir() else []

    def remove_unreadable(self, store: Store, session_id: str) -> None:
        """Stop the session's processes by their records, and delete its folders."""
        if not isinstance(store, LocalStore):
            return
        placement = local_placement(store, session_id)
        found = placement.fleet.find(session_id)
        placement.fleet.stop([info.worker_id for info in found if info.state != "stopped"])
        placement.discard()

    def after_client_gone(self, store: Store, keys: SessionKeys) -> None:
        """The last worker process to leave removes the session's scratch store, which would
        otherwise hold memory (``/dev/shm``) until a later session's sweep."""
        if isinstance(store, LocalStore) and remove_scratch_if_last(store, keys):
            log.warning("removed the session's scratch store %s", store.root)

    def header(self, spec: WorkerSpec, session_id: str) -> str:
        return (
            " (this machine, no AWS needed). To burst to AWS: run `starburst setup`, "
            "then pass backend='fargate'."
        )


def local_process_limit() -> int:
    """The most worker processes the local backend starts at once on this machine."""
    return LOCAL_PROCESSES_PER_CPU * (os.cpu_count() or 1)


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


def sweep_old_sessions(store: LocalStore, now: float | None = None) -> list[str]:
    """Remove the local sessions created longer ago than the bucket keeps run data (none
    is live: a session's deadline is at most six days after its creation)."""
    from ...aws.resources import RUN_DATA_EXPIRY_DAYS

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
    from ...engine.session_record import check_session_id

    check_session_id(session_id, "a local session's folder")
    folders = [store.root / "sessions" / session_id, store.root / "data" / session_id]

    def discard() -> None:
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)

    return Placement(store, LocalFleet(folders[0], fork=False), discard)
