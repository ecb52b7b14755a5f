"""Hung workers: alive but stuck (stopped by a signal, deadlocked in native code).

Such a worker still runs for the backend, so nothing else notices it: its heartbeats stop
(``workers/<wid>.<p>.json``), and its leases run out and are taken over, but it would hold
its stripe, and be billed, for ever. Once every process of it has been silent for longer than
a lease, it is stopped (``Fleet.stop`` without grace: SIGKILL locally, which also ends a
stopped process) so that its chunks are offered at once and it is replaced while work
remains. The attached client's monitor and a detached session's supervisor both use this.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from ..backends.base import Fleet
from ..store import Store
from .fleet_policy import hung_workers
from .keys import SessionKeys
from .session_record import Timings
from .status import worker_heartbeats

log = logging.getLogger("starburst")


def stop_hung_workers(
    store: Store, keys: SessionKeys, fleet: Fleet, workers: Iterable[str], timings: Timings
) -> dict[str, str]:
    """Stop those of ``workers`` that have not written a heartbeat for longer than a lease
    (``hung_workers`` decides: one that wrote none yet is starting, not hung); return each
    one's id and cause."""
    workers = list(workers)
    if not workers:
        return {}
    now = time.time()
    hung = hung_workers(workers, worker_heartbeats(store, keys), now, timings.lease)
    if hung:
        for cause in hung.values():
            log.warning("%s", cause)
        fleet.stop(sorted(hung), grace=False)
    return hung
