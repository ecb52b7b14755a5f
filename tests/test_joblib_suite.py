"""joblib's own Parallel tests (``joblib/test/test_parallel.py``, shipped with joblib), run
with ``backend="starburst"``.

joblib parametrises these tests by backend name; each case below calls joblib's test function
with the starburst backend and the other parameters joblib gives it. Left out, and why:

- tests of one named backend's internals (loky's executor reuse, memmapping, multiprocessing
  contexts, initializers, OpenMP thread limits, the ``_pool``/``_workers`` attributes, the
  nesting of joblib's own backends) and of ``prefer=``/``require=`` hints that name thread or
  process backends: starburst has none of these;
- tests that hand tasks a ``multiprocessing.Manager`` proxy: a proxy connects back to this
  machine with its key, which a remote worker has not got (nor should);
- ``test_nested_loop`` with a loky parent: loky's workers never imported ``starburst.joblib``,
  so the name is unknown there (registration is per process, as for any third-party backend);
"""

from __future__ import annotations

import pytest

pytest.importorskip("joblib")

import starburst.joblib  # noqa: F401  (registers "starburst" before joblib's tests load)

suite = pytest.importorskip("joblib.test.test_parallel")

# joblib swallows what its generators' clean-up raises ("Exception ignored in ..."): here it
# fails the case, as a backend's abort must not raise.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")

CASES: list[tuple[str, dict[str, object]]] = [
    *(
        ("test_simple_parallel", dict(n_jobs=n_jobs, verbose=verbose))
        for n_jobs in (1, 2, -1, -2)
        for verbose in (2, 11, 100)
    ),
    # A generator abandoned with batches in flight: the process neither hangs nor waits at
    # its exit (a forked worker once closed a copy of the client's cluster, and hung).
    *(
        ("test_deadlock_with_generator", dict(return_as=return_as, n_jobs=n_jobs))
        for return_as in ("generator", "generator_unordered")
        for n_jobs in (1, 2, -2, -1)
    ),
    *(
        ("test_parallel_unordered_generator_returns_fastest_first", dict(n_jobs=n_jobs))
        for n_jobs in (2, 4)
    ),
    # A managed Parallel left with its generator running: aborting stops the workers.
    *(
        ("test_multiple_generator_call_managed", dict(return_as=return_as, n_jobs=2))
        for return_as in ("generator", "generator_unordered")
    ),
    ("test_invalid_njobs", {}),
    ("test_error_in_task_iterator", {}),
    ("test_parallel_return_order_with_return_as_generator_parameter", dict(n_jobs=2)),
    ("test_multiple_generator_call", dict(return_as="generator", n_jobs=2)),
    ("test_lambda_expression", {}),
]


@pytest.mark.parametrize(
    "name, params", CASES, ids=[f"{name}-{sorted(params.items())}" for name, params in CASES]
)
def test_joblib_parallel_suite(name: str, params: dict[str, object]) -> None:
    test = getattr(suite, name)
    arguments = dict(params)
    if "backend" in test.__code__.co_varnames[: test.__code__.co_argcount]:
        arguments["backend"] = "starburst"
    test(**arguments)
