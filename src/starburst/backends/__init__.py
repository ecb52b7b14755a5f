"""Backends: where workers run, and the store they share with the client.

``place`` picks both for a session: the local backend with a local-directory store, or
Fargate with the account's S3 bucket.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..options import WorkerSpec
from ..store import LocalStore, Store
from .base import Backend, LaunchRequest, WorkerInfo
from .local import SCRATCH_PREFIX, LocalBackend, scratch_dir, sweep_abandoned

__all__ = ["Backend", "LaunchRequest", "LocalBackend", "Placement", "WorkerInfo", "place"]


@dataclass
class Placement:
    """Where a session lives: its store, its backend, and how to remove its data."""

    store: Store
    backend: Backend
    discard: Callable[[], None]


def place(spec: WorkerSpec, session_id: str) -> Placement:
    """The store and backend for a new session of ``spec``."""
    if spec.backend == "fargate":
        from .fargate import place_on_fargate

        return place_on_fargate(spec, session_id)
    parent = scratch_dir()
    sweep_abandoned(Path(parent or tempfile.gettempdir()))
    root = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=parent))
    backend = LocalBackend(root / "sessions" / session_id / "logs")
    return Placement(LocalStore(root), backend, lambda: shutil.rmtree(root, ignore_errors=True))
