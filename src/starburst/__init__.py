"""starburst: run a slow Python ``for`` loop on many workers with one call.

    import starburst
    results = starburst.map(simulate, range(10_000), workers=4)

``backend="local"`` (the default) runs on processes of this machine; after a one-time
``starburst setup``, ``backend="fargate"`` runs the same engine and protocol on AWS Fargate.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:  # the public names, imported on first use (workers need none of them)
    from .api import imap, imap_unordered, map, starmap
    from .aws.logs import logs
    from .aws.provision import setup, status, teardown
    from .aws.quotas import quota, quota_request, request_quota
    from .cluster import Cluster
    from .cost.estimate import estimate
    from .cost.guard import RunReport
    from .detached import PENDING, RunHandle, Session, attach, list_sessions, session
    from .engine.status import RunStatus, SessionStatus
    from .errors import (
        AwsError,
        AwsPermissionError,
        CancelledError,
        ConfigurationError,
        CostCapError,
        CredentialsError,
        DamagedRecordError,
        EnvironmentProblemsError,
        LaunchError,
        LengthMismatchError,
        NewerRecordError,
        OutOfMemoryError,
        PartialResults,
        QuotaError,
        RegistryError,
        RemoteBaseException,
        RemoteError,
        RemoteKeyboardInterrupt,
        RemoteSystemExit,
        RemoteTraceback,
        ResultUnpicklingError,
        RunTimeoutError,
        SerializationError,
        SessionExpiredError,
        SessionNotFoundError,
        SetupRequiredError,
        StarburstError,
        StoreError,
        UnreadableSessionError,
        WorkerLostError,
        WorkerStartError,
    )
    from .executor import Executor

_HOMES = {
    "map": "api", "starmap": "api", "imap": "api", "imap_unordered": "api",
    "Cluster": "cluster", "Executor": "executor",
    "logs": "aws.logs",
    "setup": "aws.provision", "status": "aws.provision", "teardown": "aws.provision",
    "quota": "aws.quotas", "request_quota": "aws.quotas", "quota_request": "aws.quotas",
    "estimate": "cost.estimate", "RunReport": "cost.guard",
    "session": "detached", "attach": "detached", "list_sessions": "detached",
    "Session": "detached", "RunHandle": "detached", "PENDING": "detached",
    "SessionStatus": "engine.status", "RunStatus": "engine.status",
}  # fmt: skip

__all__ = [
    "PENDING",
    "AwsError",
    "AwsPermissionError",
    "CancelledError",
    "Cluster",
    "ConfigurationError",
    "CostCapError",
    "CredentialsError",
    "DamagedRecordError",
    "EnvironmentProblemsError",
    "Executor",
    "LaunchError",
    "LengthMismatchError",
    "NewerRecordError",
    "OutOfMemoryError",
    "PartialResults",
    "QuotaError",
    "RegistryError",
    "RemoteBaseException",
    "RemoteError",
    "RemoteKeyboardInterrupt",
    "RemoteSystemExit",
    "RemoteTraceback",
    "ResultUnpicklingError",
    "RunHandle",
    "RunReport",
    "RunStatus",
    "RunTimeoutError",
    "SerializationError",
    "Session",
    "SessionExpiredError",
    "SessionNotFoundError",
    "SessionStatus",
    "SetupRequiredError",
    "StarburstError",
    "StoreError",
    "UnreadableSessionError",
    "WorkerLostError",
    "WorkerStartError",
    "__version__",
    "attach",
    "estimate",
    "imap",
    "imap_unordered",
    "list_sessions",
    "logs",
    "map",
    "quota",
    "quota_request",
    "request_quota",
    "session",
    "setup",
    "starmap",
    "status",
    "teardown",
]


def __getattr__(name: str) -> Any:
    """Import a public name's module the first time the name is used."""
    if name not in __all__:
        raise AttributeError(f"module 'starburst' has no attribute {name!r}")
    module = importlib.import_module(f".{_HOMES.get(name, 'errors')}", __name__)
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
