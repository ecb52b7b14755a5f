"""starburst: run a slow Python ``for`` loop on many workers with one call.

    import starburst
    results = starburst.map(simulate, range(10_000), workers=4)

``backend="local"`` (the default) runs on processes of this machine; after a one-time
``starburst setup``, ``backend="fargate"`` runs the same engine and protocol on AWS Fargate,
in a worker image built from this environment, within a cost cap (``max_cost``), and
``backend="ec2"`` on EC2 instances. ``starburst.sandbox()`` (or ``starburst sandbox start``)
emulates an AWS account on this machine, to try all of it offline.
``starburst.session`` starts work that goes on while the client is away, and
``starburst.attach`` collects it later, from any process.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .emulator.active import use_running_sandbox as _use_running_sandbox

_use_running_sandbox()  # after `starburst sandbox start`, this process uses it too

if TYPE_CHECKING:  # the public names, imported on first use (workers need none of them)
    from .api import imap, imap_unordered, map, starmap
    from .aws.logs import logs
    from .aws.provision import setup, setup_status, teardown
    from .aws.quotas import quota, quota_increase_status, request_quota_increase
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
    from .reporting.dashboard import dashboard
    from .reporting.timeline import Timeline, report

_HOMES = {
    "map": "api", "starmap": "api", "imap": "api", "imap_unordered": "api",
    "Cluster": "cluster", "Executor": "executor",
    "logs": "aws.logs",
    "setup": "aws.provision", "setup_status": "aws.provision", "teardown": "aws.provision",
    "quota": "aws.quotas", "request_quota_increase": "aws.quotas",
    "quota_increase_status": "aws.quotas",
    "estimate": "cost.estimate", "RunReport": "cost.guard",
    "session": "detached", "attach": "detached", "list_sessions": "detached",
    "Session": "detached", "RunHandle": "detached", "PENDING": "detached",
    "SessionStatus": "engine.status", "RunStatus": "engine.status",
    "sandbox": "emulator.sandbox",
    "report": "reporting.timeline", "Timeline": "reporting.timeline",
    "dashboard": "reporting.dashboard",
}  # fmt: skip

#: Old names kept for one release: each calls its new name after a ``DeprecationWarning``.
_RENAMED = {
    "status": "setup_status",
    "request_quota": "request_quota_increase",
    "quota_request": "quota_increase_status",
}

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
    "Timeline",
    "UnreadableSessionError",
    "WorkerLostError",
    "WorkerStartError",
    "__version__",
    "attach",
    "dashboard",
    "estimate",
    "imap",
    "imap_unordered",
    "list_sessions",
    "logs",
    "map",
    "quota",
    "quota_increase_status",
    "report",
    "request_quota_increase",
    "sandbox",
    "session",
    "setup",
    "setup_status",
    "starmap",
    "teardown",
]


def __getattr__(name: str) -> Any:
    """Import a public name's module the first time the name is used."""
    if name in _RENAMED:
        return _renamed(name, _RENAMED[name])
    if name not in __all__:
        raise AttributeError(f"module 'starburst' has no attribute {name!r}")
    module = importlib.import_module(f".{_HOMES.get(name, 'errors')}", __name__)
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


def _renamed(old: str, new: str) -> Any:
    """``new``, under its old name ``old``: calling it warns that the name is going."""
    import functools
    import warnings

    function = __getattr__(new)

    @functools.wraps(function)
    def alias(*args: Any, **kwargs: Any) -> Any:
        warnings.warn(
            f"starburst.{old} is now starburst.{new}; the old name goes in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return function(*args, **kwargs)

    return alias
