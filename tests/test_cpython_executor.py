"""CPython's own ``concurrent.futures`` tests, run against ``starburst.Executor``.

The generic test classes of CPython 3.11's ``test_concurrent_futures`` (shipped by Debian's
``libpython3.11-testsuite``) are loaded from that file and combined with a mixin that builds
a ``starburst.Executor``, as CPython combines them with its process-pool mixins. Test bodies
are CPython's, unchanged. Left out (``EXCLUDED``, each with its reason): tests of
``ProcessPoolExecutor``'s own internals and options (``_processes``, ``mp_context``,
``max_tasks_per_child``), and tests that differ where the README says starburst does. Where
CPython expects ``BrokenProcessPool`` the tests expect starburst's error for that call alone
(``INSTEAD_OF_BROKEN_POOL``).
"""

from __future__ import annotations

import gc
import importlib.util
import pickle
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

import starburst

CPYTHON_TESTS = Path(f"/usr/lib/python{sys.version_info[0]}.{sys.version_info[1]}/test")
CPYTHON_FILE = CPYTHON_TESTS / "test_concurrent_futures.py"
MODULE_NAME = "starburst_cpython_cf"

if not CPYTHON_FILE.exists():
    raise ImportError(
        f"CPython's executor tests are missing: {CPYTHON_FILE} does not exist. Install "
        f"them with `apt-get install libpython{sys.version_info[0]}.{sys.version_info[1]}"
        "-testsuite` (Debian, Ubuntu); this module runs them against starburst.Executor."
    )


def _load_cpython_tests() -> Any:
    """Import CPython's test file under a name of its own (this interpreter's ``test``
    package may lack it); its functions travel to the workers by value."""
    spec = importlib.util.spec_from_file_location(MODULE_NAME, CPYTHON_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[MODULE_NAME] = module
    spec.loader.exec_module(module)
    cloudpickle.register_pickle_by_value(module)
    return module


cf = _load_cpython_tests()


@pytest.fixture(scope="module", autouse=True)
def _heap_frozen() -> Iterator[None]:
    """Leave the objects made before these tests out of the collector's work: CPython's
    tests collect thrice per item (``support.gc_collect``), and in a whole test run's
    process (moto, botocore, bokeh loaded) each pass over that heap took ~0.5 s. Objects the
    tests make are collected as ever: what they check (no reference kept) is unchanged."""
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


#: What a script that CPython's tests run in a fresh interpreter needs first: the executor
#: under the name the script imports from ``concurrent.futures``, and CPython's test module
#: under the name the script imports it by.
SCRIPT_PRELUDE = f"""\
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
import concurrent.futures, test_cpython_executor as adapter
concurrent.futures.StarburstExecutor = adapter.StarburstExecutor
sys.modules["test.test_concurrent_futures"] = adapter.cf
"""


def _assert_python_ok(*args: str, **env: Any) -> Any:
    """CPython's ``assert_python_ok``, with the prelude before a ``-c`` script."""
    if len(args) == 2 and args[0] == "-c":
        args = ("-c", SCRIPT_PRELUDE + args[1])
    return _original_assert_python_ok(*args, **env)


_original_assert_python_ok = cf.assert_python_ok
cf.assert_python_ok = _assert_python_ok


class StarburstExecutor(starburst.Executor):
    """``starburst.Executor`` built the way CPython's tests build a process pool."""

    def __init__(self, max_workers: int | None = None, mp_context: Any = None) -> None:
        # mp_context: starburst starts its workers its own way (STARBURST_LOCAL_START).
        super().__init__(max_workers=max_workers, progress=False)


class StarburstMixin(cf.ExecutorMixin):
    """What ``ProcessPoolForkMixin`` is to ``ProcessPoolExecutor``."""

    executor_type = StarburstExecutor

    def get_context(self) -> None:
        return None


#: Tests left out, each for a documented difference from ``ProcessPoolExecutor``.
EXCLUDED = {
    # A call whose worker died is re-run (retries=) and then fails alone with
    # WorkerLostError: the executor does not break (BrokenProcessPool).
    "test_killed_child": "checks _processes and BrokenProcessPool after a kill",
    # CPython's own pool internals, which starburst does not have.
    "test_processes_terminate": "checks ProcessPoolExecutor._processes",
    "test_context_manager_shutdown": "builds a ProcessPoolExecutor and checks _processes",
    "test_del_shutdown": "builds a ProcessPoolExecutor and checks its manager thread",
    "test_shutdown_no_wait": "builds a ProcessPoolExecutor and checks its call queue",
    "test_saturation": "checks _processes and _max_workers",
    "test_idle_process_reuse_one": "checks _processes and _max_workers",
    "test_idle_process_reuse_multiple": "checks _processes and _max_workers",
    "test_max_tasks_per_child": "max_tasks_per_child and mp_context are ProcessPoolExecutor's",
    "test_max_tasks_per_child_defaults_to_spawn_context": "checks _mp_context",
    "test_max_tasks_early_shutdown": "max_tasks_per_child is ProcessPoolExecutor's",
    "test_ressources_gced_in_workers": "needs a multiprocessing manager from mp_context",
    "test_max_workers_too_large": "a Windows process limit",
    "test_traceback": "checks the type of process._RemoteTraceback (starburst's own cause)",
    "test_shutdown_deadlock_pickle": "checks ProcessPoolExecutor._executor_manager_thread",
    # A local worker's output goes to its log (sessions/<sid>/logs/), not the client's
    # stdout; test_executor.py checks that such calls are finished at exit.
    "test_interpreter_shutdown": "reads what the call prints on the worker from stdout",
    "test_hang_gh83386": "reads what the call prints on the worker from stdout",
}

#: Where CPython expects ``BrokenProcessPool``, what starburst raises for that call alone
#: (the executor stays usable), and why.
INSTEAD_OF_BROKEN_POOL = {
    # A call whose worker died is re-run (retries=), then fails alone with WorkerLostError.
    "test_crash_at_task_unpickle": starburst.WorkerLostError,
    "test_crash_during_func_exec_on_worker": starburst.WorkerLostError,
    "test_crash_during_result_pickle_on_worker": starburst.WorkerLostError,
    "test_shutdown_deadlock": starburst.WorkerLostError,
    # A call that cannot be unpickled on the worker (each travels pickled on its own) fails
    # alone with a SerializationError; so does a result that cannot be unpickled here.
    "test_exit_at_task_unpickle": starburst.SerializationError,
    "test_error_at_task_unpickle": starburst.SerializationError,
    "test_error_during_result_unpickle_in_result_handler": starburst.SerializationError,
    "test_exit_during_result_unpickle_in_result_handler": starburst.SerializationError,
}


def _expecting(test: Any, error: type[BaseException]) -> Any:
    """The same test body, expecting ``error`` where CPython expects ``BrokenProcessPool``."""

    def run(self: Any) -> None:
        broken = cf.BrokenProcessPool
        cf.BrokenProcessPool = error
        try:
            test(self)
        finally:
            cf.BrokenProcessPool = broken

    run.__name__ = test.__name__
    return run


def _starburst_case(tests: type) -> type:
    """CPython's test class ``tests`` run against starburst, minus ``EXCLUDED``."""
    body: dict[str, Any] = {}
    for name in dir(tests):
        if name in EXCLUDED:
            body[name] = None  # not collected
        elif name in INSTEAD_OF_BROKEN_POOL:
            body[name] = _expecting(getattr(tests, name), INSTEAD_OF_BROKEN_POOL[name])
    name = "Starburst" + tests.__name__.removesuffix("Tests").removesuffix("Test") + "Test"
    return type(name, (StarburstMixin, tests, cf.BaseTestCase), body)


StarburstExecutorTest = _starburst_case(cf.ProcessPoolExecutorTest)
StarburstWaitTest = _starburst_case(cf.WaitTests)
StarburstAsCompletedTest = _starburst_case(cf.AsCompletedTests)
StarburstShutdownTest = _starburst_case(cf.ProcessPoolShutdownTest)
StarburstDeadlockTest = _starburst_case(cf.ExecutorDeadlockTest)


def test_serialization_errors_are_the_standard_types() -> None:
    # The tests above expect PicklingError where a call cannot be pickled; starburst's own
    # type must be one.
    assert issubclass(starburst.SerializationError, pickle.PicklingError)
    assert issubclass(starburst.SerializationError, TypeError)
