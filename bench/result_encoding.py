#!/usr/bin/env python
"""How long a chunk's results take to encode and decode: starburst's way and plain pickle's.

    .venv/bin/python bench/result_encoding.py

A worker pickles each chunk's results on its way back, and the client unpickles them, so
both costs sit on every chunk's path. W3's results are dicts of NumPy ``float64`` scalars,
which plain pickle encodes the NumPy way, as ``scalar(dtype, raw bytes)``; starburst sends
such a scalar as its Python number with its type (``serialize.dumps(..., to_client=True)``),
which decodes to the same bits. Prints the median over many rounds of each, for a chunk of
W3's results. Not a test: pytest does not collect it.
"""

from __future__ import annotations

import os
import pickle
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import workloads as wl

from starburst.serialize import dumps, loads

ROUNDS = 200
CHUNK = 500  # W3's 1,000 items on 2 workers: about 500 results per worker


def median_ms(action: Callable[[], Any]) -> float:
    times = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    results = [wl.portfolio(seed) for seed in range(CHUNK)]
    ours = dumps(results, compress=False, to_client=True)
    theirs = pickle.dumps(results, protocol=pickle.HIGHEST_PROTOCOL)
    if loads(ours) != results or pickle.loads(theirs) != results:
        raise SystemExit("a round trip changed the results")
    rows = [
        ("starburst", median_ms(lambda: dumps(results, compress=False, to_client=True)),
         median_ms(lambda: loads(ours)), len(ours)),
        ("plain pickle", median_ms(lambda: pickle.dumps(results, protocol=5)),
         median_ms(lambda: pickle.loads(theirs)), len(theirs)),
    ]  # fmt: skip
    print(f"{CHUNK} W3 results (dicts of 2 NumPy float64), median of {ROUNDS} rounds:")
    print(f"{'':14}{'encode ms':>10}{'decode ms':>10}{'bytes':>8}")
    for name, encode, decode, size in rows:
        print(f"{name:14}{encode:10.3f}{decode:10.3f}{size:8d}")


if __name__ == "__main__":
    main()
