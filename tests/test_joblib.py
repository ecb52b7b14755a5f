"""The "starburst" joblib backend: joblib.Parallel and scikit-learn on starburst workers."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

joblib = pytest.importorskip("joblib")
sklearn = pytest.importorskip("sklearn")

from joblib import Parallel, delayed  # noqa: E402
from sklearn.datasets import make_classification  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.tree import DecisionTreeClassifier  # noqa: E402

import starburst.joblib  # noqa: E402
from starburst.joblib import StarburstBackend  # noqa: E402


def square(x: int) -> int:
    return x * x


def pid_after_a_nap(_: int) -> int:
    time.sleep(0.2)
    return os.getpid()


class InputRejectedError(ValueError):
    pass


def reject_seven(x: int) -> int:
    if x == 7:
        raise InputRejectedError(f"item {x} is not welcome")
    return x


def nested_backend_name(_: int) -> tuple[str, list[int]]:
    with joblib.parallel_config(n_jobs=2):  # no backend named: the one the worker nests
        inner = Parallel()(delayed(square)(y) for y in range(3))
        backend, _n_jobs = joblib.parallel.get_active_backend()
    return type(backend).__name__, inner


def _data():  # type: ignore[no-untyped-def]
    return make_classification(n_samples=120, n_features=6, random_state=0)


def test_parallel_returns_results_in_order() -> None:
    with joblib.parallel_config(backend="starburst", n_jobs=4):
        results = Parallel()(delayed(square)(x) for x in range(50))
    assert results == [x * x for x in range(50)]


@pytest.mark.parametrize("return_as", ["generator", "generator_unordered"])
def test_generators(return_as: str) -> None:
    with joblib.parallel_config(backend="starburst", n_jobs=2):
        output = Parallel(return_as=return_as)(delayed(square)(x) for x in range(30))
        assert not isinstance(output, list)
        results = list(output)
    if return_as == "generator":
        assert results == [x * x for x in range(30)]
    else:
        assert sorted(results) == [x * x for x in range(30)]


def test_an_error_keeps_its_type_message_and_remote_traceback() -> None:
    with (
        joblib.parallel_config(backend="starburst", n_jobs=2),
        pytest.raises(InputRejectedError, match="item 7 is not welcome") as caught,
    ):
        Parallel()(delayed(reject_seven)(x) for x in range(20))
    chain = []
    exc: BaseException | None = caught.value
    while exc is not None:
        chain.append("".join(getattr(exc, "__notes__", [])) + str(exc))
        exc = exc.__cause__
    assert any("reject_seven" in link or "raise InputRejectedError" in link for link in chain)


def test_nested_parallel_runs_sequentially_on_the_worker() -> None:
    with joblib.parallel_config(backend="starburst", n_jobs=2):
        results = Parallel()(delayed(nested_backend_name)(x) for x in range(2))
    assert results == [("SequentialBackend", [0, 1, 4])] * 2


def test_workers_are_reused_across_parallel_calls_in_one_block() -> None:
    backend = StarburstBackend()
    with backend, joblib.parallel_config(backend=backend, n_jobs=2):
        first = Parallel()(delayed(pid_after_a_nap)(x) for x in range(6))
        assert backend.cluster is not None
        session = backend.cluster.driver.session.session_id
        second = Parallel()(delayed(pid_after_a_nap)(x) for x in range(6))
        assert backend.cluster.driver.session.session_id == session
    assert len(set(first) | set(second)) <= 2  # the same two worker processes


def test_backend_params_reach_the_cluster() -> None:
    with joblib.parallel_config(
        backend="starburst", n_jobs=2, backend_params=dict(cpu=1, memory="1GB")
    ):
        Parallel()(delayed(square)(x) for x in range(3))
        backend, _ = joblib.parallel.get_active_backend()
    assert backend.cluster.spec.cpu == 1


def test_an_unknown_backend_param_is_named_with_the_option_meant() -> None:
    with pytest.raises(TypeError, match=r"'cpus' \(did you mean cpu\?\); its options are cpu, "):
        joblib.parallel_config(backend="starburst", n_jobs=2, backend_params={"cpus": 2})


def test_grid_search_and_cross_val_score_match_n_jobs_1() -> None:
    X, y = _data()
    grid = {"max_depth": [1, 2, 3], "min_samples_leaf": [1, 5]}
    serial = GridSearchCV(DecisionTreeClassifier(random_state=0), grid, cv=3, n_jobs=1).fit(X, y)
    serial_scores = cross_val_score(LogisticRegression(), X, y, cv=4, n_jobs=1)
    with joblib.parallel_config(backend="starburst", n_jobs=2):
        burst = GridSearchCV(DecisionTreeClassifier(random_state=0), grid, cv=3).fit(X, y)
        burst_scores = cross_val_score(LogisticRegression(), X, y, cv=4)
    assert burst.best_params_ == serial.best_params_
    assert list(burst.cv_results_["mean_test_score"]) == list(serial.cv_results_["mean_test_score"])
    assert list(burst_scores) == list(serial_scores)


def matrix_total(matrix: np.ndarray, i: int) -> float:
    return float(matrix.sum()) + i


def test_a_large_argument_is_stored_once_per_block() -> None:
    matrix = np.arange(2 * 2**20 // 8, dtype=np.float64)  # 2 MB, in 50 tasks
    backend = StarburstBackend()
    with backend, joblib.parallel_config(backend=backend, n_jobs=2):
        first = Parallel()(delayed(matrix_total)(matrix, i) for i in range(50))
        second = Parallel(batch_size=1)(delayed(matrix_total)(matrix, i) for i in range(50))
        assert backend.cluster is not None
        driver = backend.cluster.driver
        stored = list(driver.store.list(driver.keys.shared_prefix))
        written = driver.store.bytes_written
    assert first == second == [float(matrix.sum()) + i for i in range(50)]
    assert len(stored) == 1
    assert written < 2 * matrix.nbytes  # once for both calls, not once per batch


def test_grid_search_and_cross_val_score_on_emulated_fargate(aws) -> None:  # type: ignore[no-untyped-def]
    starburst.setup(say=lambda _: None)
    X, y = _data()
    grid = {"max_depth": [1, 3], "min_samples_leaf": [1, 5]}
    serial = GridSearchCV(DecisionTreeClassifier(random_state=0), grid, cv=3, n_jobs=1).fit(X, y)
    serial_scores = cross_val_score(LogisticRegression(), X, y, cv=3, n_jobs=1)
    with joblib.parallel_config(
        backend="starburst", n_jobs=2, backend_params=dict(backend="fargate", cpu=1)
    ):
        burst = GridSearchCV(DecisionTreeClassifier(random_state=0), grid, cv=3).fit(X, y)
        scores = cross_val_score(LogisticRegression(), X, y, cv=3)
    assert burst.best_params_ == serial.best_params_
    assert list(burst.cv_results_["mean_test_score"]) == list(serial.cv_results_["mean_test_score"])
    assert list(scores) == list(serial_scores)
    assert aws.calls["RunTask"] >= 1


def test_the_workers_stop_when_the_block_ends() -> None:
    with joblib.parallel_config(backend="starburst", n_jobs=2):
        Parallel()(delayed(square)(x) for x in range(4))
        backend, _ = joblib.parallel.get_active_backend()
        cluster = backend.cluster
        del backend
    with pytest.raises(starburst.StarburstError, match="this Cluster is closed"):
        cluster.map(square, [1])


_CTRL_C_CLIENT = """
import os, sys, time
from pathlib import Path
import joblib
from joblib import Parallel, delayed
import starburst.joblib

pids = Path(sys.argv[1])

def slow(x):
    (pids / str(os.getpid())).touch()
    time.sleep(60)
    return x

try:
    with joblib.parallel_config(backend="starburst", n_jobs=2):
        Parallel(batch_size=1)(delayed(slow)(x) for x in range(8))
except KeyboardInterrupt:
    print("KeyboardInterrupt")
    raise
"""


def test_ctrl_c_cancels_the_parallel_call_and_leaves_no_worker(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import signal

    from proc import alive
    from test_faults import _client_once_files  # (starts a client, waits for its files)

    client, pids = _client_once_files(tmp_path, _CTRL_C_CLIENT, "pids", 2)
    worker_pids = [int(p.name) for p in pids.iterdir()]
    assert len(worker_pids) == 2, "the workers never started"
    client.send_signal(signal.SIGINT)
    output, _ = client.communicate(timeout=30)  # the tasks sleep 60 s: they were cancelled
    assert "KeyboardInterrupt" in output
    assert client.returncode != 0
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in worker_pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in worker_pids)
