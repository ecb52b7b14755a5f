"""A joblib parallel backend named ``"starburst"``: ``n_jobs=`` code (scikit-learn) on workers.

Importing this module registers the backend (``register()`` does it again, e.g. after
joblib's registry was reset)::

    import joblib, starburst.joblib

    with joblib.parallel_config(backend="starburst", n_jobs=8,
                                backend_params=dict(backend="fargate", cpu=2, memory="4GB")):
        search = GridSearchCV(model, grid, cv=5).fit(X, y)

One backend instance lives for the ``parallel_config`` block, and with it one warm
``starburst.Cluster``: the many ``Parallel`` calls one ``fit`` makes reuse its workers. joblib
hands each batch of tasks (its auto-batching) to ``Cluster.submit``, whose dispatcher groups
the batches submitted within a few milliseconds into one run, chunked as starburst chooses.
Importing ``starburst`` alone does not import joblib.
"""

from __future__ import annotations

import inspect
import os
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from joblib import register_parallel_backend
from joblib._parallel_backends import (
    AutoBatchingMixin,
    ParallelBackendBase,
    SequentialBackend,
)

from .cluster import Cluster
from .errors import ConfigurationError
from .options import unknown_keyword

__all__ = ["StarburstBackend", "register"]


class StarburstBackend(AutoBatchingMixin, ParallelBackendBase):
    """joblib backend running each batch of tasks on a warm ``starburst.Cluster``.

    Takes ``Cluster``'s options (``cpu``, ``memory``, ``backend``, ``spot``, ...) as keywords,
    or as ``backend_params=dict(...)`` (the spelling that fits ``joblib.parallel_config``, whose
    own ``backend=`` names the joblib backend). ``n_jobs`` is the number of workers; the
    cluster starts with the first ``Parallel`` call and stops when the backend is closed or
    garbage collected (the end of the ``parallel_config`` block, or ``with backend:``).
    Nested ``Parallel`` calls inside a task run sequentially on its worker.
    """

    supports_retrieve_callback = True
    supports_return_generator = True
    supports_timeout = True
    supports_inner_max_num_threads = True
    default_n_jobs = 1

    def __init__(
        self,
        nesting_level: int | None = None,
        backend_params: dict[str, Any] | None = None,
        **cluster_options: Any,
    ) -> None:
        super().__init__(nesting_level=nesting_level)
        both = set(cluster_options) & set(backend_params or {})
        if both:
            raise ConfigurationError(
                f"{sorted(both)} given both as keywords and in backend_params; pass each once"
            )
        self.cluster_options = {**(backend_params or {}), **cluster_options}
        if "workers" in self.cluster_options or "max_workers" in self.cluster_options:
            raise ConfigurationError(
                "the joblib backend takes its number of workers from n_jobs=, not workers=; "
                "pass n_jobs to joblib.parallel_config or Parallel"
            )
        options = [name for name in inspect.signature(Cluster).parameters if name != "workers"]
        if not set(options).issuperset(self.cluster_options):
            unknown = set(self.cluster_options) - set(options)
            raise unknown_keyword("StarburstBackend", unknown, options)
        self.cluster: Cluster | None = None
        self._in_flight: set[Future[Any]] = set()
        self._lock = threading.Lock()

    # joblib's backend interface ----------------------------------------------------------------

    def effective_n_jobs(self, n_jobs: int | None) -> int:
        """Workers for a ``Parallel`` call: ``n_jobs``, or the running cluster's size for
        ``n_jobs=-1`` / ``None``."""
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        if n_jobs is None or n_jobs < 0:
            return self.cluster.spec.workers if self.cluster is not None else 1
        return int(n_jobs)

    def configure(
        self, n_jobs: int = 1, parallel: Any = None, prefer: Any = None, require: Any = None,
        **backend_kwargs: Any,
    ) -> int:  # fmt: skip
        """Start the cluster on first use (``n_jobs`` workers); later calls reuse it."""
        self.parallel = parallel
        self.effective_n_jobs(n_jobs)  # n_jobs=0 is refused before any worker starts
        if self.cluster is None:
            workers = None if n_jobs is None or n_jobs < 0 else int(n_jobs)
            cluster = Cluster(workers, **{"progress": False, **self.cluster_options})
            cluster.start()
            self.cluster = cluster
            weakref.finalize(self, cluster.close)
        return self.effective_n_jobs(n_jobs)

    def submit(self, func: Callable[[], Any], callback: Callable[..., Any] | None = None) -> Any:
        """Run one joblib batch on a worker; ``callback`` gets the future when it is done."""
        assert self.cluster is not None, "configure() starts the cluster before submit()"
        future = self.cluster.submit(ThreadLimitedBatch(func, self._threads_per_task()))
        with self._lock:
            self._in_flight.add(future)
        future.add_done_callback(self._forget)
        if callback is not None:
            future.add_done_callback(callback)
        return future

    def _threads_per_task(self) -> int:
        """BLAS/OpenMP threads a task may use, as loky limits them: ``inner_max_num_threads``,
        or this machine's cores shared among the local processes, or one per remote vCPU."""
        if self.inner_max_num_threads is not None:
            return int(self.inner_max_num_threads)
        assert self.cluster is not None
        spec = self.cluster.spec
        if not spec.backend.remote:  # workers on this machine share its cores
            return max(1, (os.cpu_count() or 1) // spec.slots)
        return 1

    def _forget(self, future: Future[Any]) -> None:
        with self._lock:
            self._in_flight.discard(future)

    def retrieve_result_callback(self, out: Future[Any]) -> Any:
        """The batch's results, or its exception (the original type, remote traceback chained)."""
        return out.result()

    def retrieve_result(self, out: Future[Any], timeout: float | None = None) -> Any:
        return out.result(timeout=timeout)

    def abort_everything(self, ensure_ready: bool = True) -> None:
        """Cancel the batches no worker has started (a task failed, or Ctrl-C); with
        ``ensure_ready=False`` stop the cluster too."""
        with self._lock:
            in_flight = list(self._in_flight)
        for future in in_flight:
            future.cancel()
        if not ensure_ready and self.cluster is not None:
            cluster, self.cluster = self.cluster, None
            driver = cluster.driver  # (before the cluster closes, which it may do at once)
            cluster.stop_submitting(wait=False, cancel_queued=True, then=cluster.close)
            driver.close()  # the batches running are not waited for: stop the workers

    def terminate(self) -> None:
        """End of one ``Parallel`` call: keep the workers warm for the next one."""
        self.reset_batch_stats()
        # Break the backend <-> Parallel cycle, so that the end of the parallel_config block
        # frees this backend at once and its finalizer stops the workers.
        self.parallel = None

    def get_nested_backend(self) -> tuple[ParallelBackendBase, None]:
        """Nested ``Parallel`` calls inside a task run sequentially on its worker."""
        return SequentialBackend(nesting_level=(self.nesting_level or 0) + 1), None

    # Lifecycle ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the workers (after the calls still running); the next call starts new ones."""
        cluster, self.cluster = self.cluster, None
        if cluster is not None:
            cluster.close()

    def __enter__(self) -> StarburstBackend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class ThreadLimitedBatch:
    """A joblib batch that runs with its native thread pools limited (``threadpoolctl``,
    which scikit-learn brings), so that workers do not oversubscribe the cores."""

    def __init__(self, batch: Callable[[], Any], threads: int) -> None:
        self.batch = batch
        self.threads = threads

    def __call__(self) -> Any:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # no threadpoolctl, hence no scikit-learn: nothing to limit
            return self.batch()
        with threadpool_limits(self.threads):
            return self.batch()


def register() -> None:
    """Register (again) the ``"starburst"`` joblib backend."""
    register_parallel_backend("starburst", StarburstBackend)


register()
