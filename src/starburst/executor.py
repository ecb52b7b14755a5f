"""``Executor``: a ``concurrent.futures.Executor`` whose calls run on starburst workers."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .cluster import Cluster
from .errors import ConfigurationError
from .futures import refuse_if_exiting

if TYPE_CHECKING:
    from .backends.base import Backend


class Executor(concurrent.futures.Executor):
    """A drop-in ``concurrent.futures`` executor over a starburst ``Cluster``.

    Futures work with ``concurrent.futures.wait`` and ``as_completed``, can be cancelled while
    still queued, and carry the remote exception with its traceback chained.
    ``max_workers=`` is accepted for ``workers=``, as ``ProcessPoolExecutor`` spells it.
    """

    def __init__(
        self,
        workers: int | None = None,
        cpu: int | float | None = None,
        memory: str | int | float | None = None,
        backend: str | Backend | None = None,
        *,
        max_workers: int | None = None,
        spot: bool = False,
        gpus: int = 0,
        instance_types: Sequence[str] | None = None,
        arch: str | None = None,
        keep_warm: str | float | None = None,
        progress: bool = False,
        max_cost: float | None = None,
        cost_alert: float | None = None,
    ) -> None:
        if max_workers is not None:
            if workers is not None:
                raise ConfigurationError("pass workers= or max_workers=, not both")
            if isinstance(max_workers, bool) or not isinstance(max_workers, int):
                raise ConfigurationError(f"max_workers={max_workers!r} must be an integer")
            if max_workers <= 0:
                raise ConfigurationError(
                    f"max_workers={max_workers!r}: max_workers must be greater than 0"
                )
            workers = max_workers
        self._cluster = Cluster(
            workers,
            cpu,
            memory,
            backend,
            spot=spot,
            gpus=gpus,
            instance_types=instance_types,
            arch=arch,
            keep_warm=keep_warm,
            progress=progress,
            max_cost=max_cost,
            cost_alert=cost_alert,
        )
        self._shutdown = False
        self._lock = threading.Lock()

    def submit(
        self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[Any]:
        """Schedule ``fn(*args, **kwargs)``; calls made close together travel as one batch."""
        with self._lock:
            self._refuse_if_shut_down()
            return self._cluster.submit(fn, *args, **kwargs)

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int | None = None,
    ) -> Iterator[Any]:
        """Like ``concurrent.futures.Executor.map``: every call is submitted now (as one run),
        results come in order.

        ``timeout`` counts from this call; a result not available by then raises
        ``TimeoutError`` and cancels the calls not started. ``chunksize=None`` lets
        starburst choose.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._refuse_if_shut_down()
            return self._cluster.submitter.submit_map(fn, iterables, chunksize, deadline)

    def _refuse_if_shut_down(self) -> None:
        refuse_if_exiting()
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting calls; cancel those no worker has started if asked; the workers
        stop once every other call is done (this waits for that if ``wait``)."""
        with self._lock:
            self._shutdown = True
        if wait:
            self._cluster.stop_submitting(wait=True, cancel_queued=cancel_futures)
            self._cluster.close()
        else:
            self._cluster.stop_submitting(
                wait=False, cancel_queued=cancel_futures, then=self._cluster.close
            )
