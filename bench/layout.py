#!/usr/bin/env python
"""How much W2's item time depends on where its integers land in memory, in one process.

    .venv/bin/python bench/layout.py

W2's item (``workloads.spin``) is a tight loop that allocates a new integer object on every
step. This script times it in this one process, changing nothing but which allocator blocks
those integers get: before each measurement it keeps one more small integer alive. It then
times it again with nothing changed between measurements, for the noise of the machine.

If the first spread is much wider than the second, a process's per-item speed on W2 is
decided by its memory layout: two pools whose worker processes start from different heap
states run the same items at different speeds, whatever their scheduling does. That is the
yardstick for W2's ratio in ``bench/run.py``. Not a test: pytest does not collect it.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import workloads as wl

STEPS = 60


def best_of(iterations: int, tries: int = 5) -> float:
    """The fastest of ``tries`` timings of one W2 item, in milliseconds."""
    best = float("inf")
    for _ in range(tries):
        started = time.perf_counter()
        wl.spin(iterations)
        best = min(best, time.perf_counter() - started)
    return best * 1000


def describe(name: str, times: list[float]) -> str:
    return (
        f"{name:<34} min {min(times):5.2f} ms  median {statistics.median(times):5.2f} ms  "
        f"max {max(times):5.2f} ms  max/min {max(times) / min(times):4.2f}"
    )


def main() -> int:
    iterations = wl.calibrate_spin(0.005)
    kept: list[int] = []
    shifted = []
    for step in range(STEPS):
        kept.append(10**6 + step)  # one more 32-byte block held: the next ones land elsewhere
        shifted.append(best_of(iterations))
    unchanged = [best_of(iterations) for _ in range(STEPS)]
    print(f"W2 item: {iterations:,} iterations, timed {STEPS} times each way in one process")
    print(describe("one more integer kept each time", shifted))
    print(describe("nothing changed (machine noise)", unchanged))
    return 0


if __name__ == "__main__":
    sys.exit(main())
