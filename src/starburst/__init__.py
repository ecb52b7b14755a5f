"""starburst: run a slow Python ``for`` loop on many workers with one call.

    import starburst
    results = starburst.map(simulate, range(10_000), workers=4)

``backend="local"`` (the default) runs on processes of this machine; the same engine and
protocol will run on AWS.
"""

from ._version import __version__
from .api import imap, imap_unordered, map, starmap
from .cluster import Cluster
from .errors import (
    CancelledError,
    ConfigurationError,
    PartialResults,
    RemoteError,
    RemoteTraceback,
    RunTimeoutError,
    SerializationError,
    StarburstError,
    StoreError,
    WorkerLostError,
    WorkerStartError,
)
from .executor import Executor

__all__ = [
    "CancelledError",
    "Cluster",
    "ConfigurationError",
    "Executor",
    "PartialResults",
    "RemoteError",
    "RemoteTraceback",
    "RunTimeoutError",
    "SerializationError",
    "StarburstError",
    "StoreError",
    "WorkerLostError",
    "WorkerStartError",
    "__version__",
    "imap",
    "imap_unordered",
    "map",
    "starmap",
]
