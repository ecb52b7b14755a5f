"""Backends: where workers run, and the store they share with the client.

A ``Backend`` (``base.py``) is one kind of place, registered by name (``registry.py``): the
local machine (``local/``) or AWS Fargate (``fargate/``). For each session it places a store
and a ``Fleet``, that session's workers; ``reopen`` rebuilds them from the session's record
in any process (a client that attaches, a worker that supervises a detached session).
"""

from __future__ import annotations

from .base import (
    Backend,
    Fleet,
    LaunchRequest,
    LaunchShortfall,
    Placement,
    WorkerFault,
    WorkerInfo,
    WorkerState,
)
from .registry import as_backend, backend_named, backend_names, register

__all__ = [
    "Backend",
    "Fleet",
    "LaunchRequest",
    "LaunchShortfall",
    "Placement",
    "WorkerFault",
    "WorkerInfo",
    "WorkerState",
    "as_backend",
    "backend_named",
    "backend_names",
    "register",
]
