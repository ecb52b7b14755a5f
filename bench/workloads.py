"""Workload functions for ``bench/run.py``.

They live in an importable module (``run.py`` puts ``bench/`` on ``sys.path``), so that every
tool's worker processes can find them by name: forked workers inherit the client's modules,
spawned ones (``python -m starburst.worker``, loky) get the client's ``sys.path``.

Each function is cheap to check: the benchmark compares every tool's output with a reference
computed in the client (serially, or in closed form for the busy loop).
"""

from __future__ import annotations

import os
import time

import numpy as np

# W1 ---------------------------------------------------------------------------------------------


def square(x: int) -> int:
    """W1: the smallest possible task."""
    return x * x


# W2 ---------------------------------------------------------------------------------------------


def spin(n: int) -> int:
    """W2: a pure-Python busy loop of ``n`` iterations; returns ``n * (n - 1) // 2``."""
    acc = 0
    for k in range(n):
        acc += k
    return acc


def spin_expected(n: int) -> int:
    """What ``spin(n)`` returns, without running it."""
    return n * (n - 1) // 2


def spin_cpu_time(n: int) -> tuple[int, float]:
    """W2's item, timed in the worker: (worker pid, CPU seconds of ``spin(n)`` in this thread).

    Used by ``item_speed.py`` to compare how fast each tool's worker processes run the same
    item, apart from how the tools schedule items.
    """
    started = time.thread_time()
    if spin(n) != spin_expected(n):
        raise AssertionError("spin returned a wrong sum")
    return os.getpid(), time.thread_time() - started


def calibrate_spin(target_seconds: float, trials: int = 5) -> int:
    """Iterations for ``spin`` to take about ``target_seconds`` in this process (best of trials)."""
    n = 10_000
    while True:  # grow until one call is long enough to time reliably
        t0 = time.perf_counter()
        spin(n)
        elapsed = time.perf_counter() - t0
        if elapsed >= 0.02:
            break
        n *= 2
    best = elapsed
    for _ in range(trials - 1):
        t0 = time.perf_counter()
        spin(n)
        best = min(best, time.perf_counter() - t0)
    return max(1, round(n * target_seconds / best))


# W3 ---------------------------------------------------------------------------------------------


def portfolio(seed: int) -> dict[str, float]:
    """W3: one Monte Carlo path of a year of daily returns."""
    rng = np.random.default_rng(seed)
    returns = rng.normal(0.0003, 0.02, 252)
    prices = np.cumprod(1 + returns)
    return {
        "final_value": prices[-1],
        "sharpe": returns.mean() / returns.std() * 252**0.5,
    }


# W4 ---------------------------------------------------------------------------------------------


def array_sum(a: np.ndarray) -> float:
    """W4: 1 MB of input per item, 8 bytes of output."""
    return float(a.sum())


# W5 ---------------------------------------------------------------------------------------------

#: The 10 MB array is sliced into this many strided parts, one per item.
W5_PARTS = 100


def make_closure(big: np.ndarray):
    """W5 for starburst and joblib: a lambda that closes over ``big``.

    It cannot be pickled by reference (it is a local), so cloudpickle pickles it by value, and
    ``big`` (10 MB) with it.
    """
    return lambda i: float(big[i::W5_PARTS].sum())


class SliceSum:
    """W5 for ProcessPoolExecutor and multiprocessing.Pool, which cannot pickle a closure.

    The same work as ``make_closure(big)``: an instance holds the same array and is pickled
    (array included) with every task, just as the closure is.
    """

    def __init__(self, big: np.ndarray) -> None:
        self.big = big

    def __call__(self, i: int) -> float:
        return float(self.big[i::W5_PARTS].sum())


# Warm-up ----------------------------------------------------------------------------------------


def touch_numpy(x: int) -> float:
    """Used once per tool before timing, so that file caches and bytecode are warm."""
    return float(np.arange(x + 1).sum())
