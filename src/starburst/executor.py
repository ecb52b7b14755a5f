"""``Executor``: a ``concurrent.futures.Executor`` whose calls run on starburst workers."""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .cluster import Cluster


class Executor(concurrent.futures.Executor):
    """A drop-in ``concurrent.futures`` executor over a starburst ``Cluster``.

    Futures work with ``concurrent.futures.wait`` and ``as_completed``, can be cancelled while
    still queued, and carry the remote exception with its traceback chained.
    """

    def __init__(
        self,
        workers: int | None = None,
        cpu: int | float | None = None,
        memory: str | int | float | None = None,
        backend: str | None = None,
        *,
        spot: bool = False,
        progress: bool = False,
        max_cost: float | None = None,
        cost_alert: float | None = None,
    ) -> None:
        self._cluster = Cluster(
            workers,
            cpu,
            memory,
            backend,
            spot=spot,
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
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            return self._cluster.submit(fn, *args, **kwargs)

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int | None = None,
    ) -> Iterator[Any]:
        """Like ``concurrent.futures.Executor.map``: results in order, submitted at once.

        ``timeout`` counts from this call; a result not available by then raises
        ``TimeoutError``. ``chunksize=None`` lets starburst choose.
        """
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
        return self._cluster.imap(
            fn, *iterables, timeout=timeout, chunk_size=chunksize, strict=False
        )

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting calls; cancel queued ones if asked; wait, then stop the workers."""
        with self._lock:
            self._shutdown = True
        self._cluster.stop_submitting(wait=False, cancel_queued=cancel_futures)
        if wait:
            self._cluster.close()
        else:
            threading.Thread(target=self._cluster.close, daemon=True).start()
