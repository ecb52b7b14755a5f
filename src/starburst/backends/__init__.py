"""Backends: where workers run (``local`` now; ``fargate`` and ``ec2`` share its interface)."""

from .base import Backend, LaunchRequest, WorkerInfo
from .local import LocalBackend

__all__ = ["Backend", "LaunchRequest", "LocalBackend", "WorkerInfo"]
