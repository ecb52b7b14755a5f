#!/usr/bin/env python
"""How fast each tool's worker processes run W2's item, apart from scheduling.

    .venv/bin/python bench/item_speed.py               # 6 rounds of 400 items, about 1 minute
    .venv/bin/python bench/item_speed.py --rounds 10 --items 200

W2's wall time in ``run.py`` is almost all item time: 2,000 items of ~5 ms on 2 workers, with
start-up, hand-out and shut-down under 1% of it. So W2's ratio is decided by how fast each
tool's worker processes run the item. This script measures exactly that: every item reports
the CPU time its worker's thread spent in it (``time.thread_time``), and the table gives, per
tool, the median over its worker processes of each process's median item time. The "in
items" column checks the premise: the share of each call's wall time that its busiest worker
spent running items (the rest is the tool's own overhead); the "client" column is the CPU
time the calling process used per call.

starburst runs three times, with its workers forked from its launcher (a fresh interpreter
that forks workers, the default on Linux once it is up), forked from the client
(``STARBURST_LOCAL_START=fork``, the default until the launcher is up), and spawned as fresh
interpreters (``STARBURST_LOCAL_START=spawn``). The rounds rotate the order
of the tools, so that slow drifts of the machine's speed do not favour one tool.
Not a test: pytest does not collect it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import run as bench  # bench/run.py: the same runners as the main benchmark (and env set-up)
import workloads as wl

import starburst


def starburst_started(how: str) -> Callable[[Callable[[Any], Any], Sequence[Any]], list[Any]]:
    """A runner of ``starburst.map`` whose local workers are started ``how`` (launcher, fork
    or spawn)."""

    def run(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        before = os.environ.get("STARBURST_LOCAL_START")
        os.environ["STARBURST_LOCAL_START"] = how
        try:
            return starburst.map(fn, items, workers=bench.WORKERS, progress=False)
        finally:
            if before is None:
                del os.environ["STARBURST_LOCAL_START"]
            else:
                os.environ["STARBURST_LOCAL_START"] = before

    return run


TOOLS: dict[str, Callable[[Callable[[Any], Any], Sequence[Any]], list[Any]]] = {
    "starburst (launcher)": starburst_started("launcher"),
    "starburst (fork)": starburst_started("fork"),
    "starburst (spawn)": starburst_started("spawn"),
    **{bench.LABELS[key]: bench.RUNNERS[key] for key in bench.PEERS},
}


def per_process_medians(results: list[tuple[int, float]]) -> list[float]:
    """Each worker process's median item CPU time, in milliseconds."""
    by_process: dict[int, list[float]] = {}
    for pid, seconds in results:
        by_process.setdefault(pid, []).append(seconds)
    return [statistics.median(times) * 1000 for times in by_process.values()]


def busiest_share(results: list[tuple[int, float]], wall: float) -> float:
    """The share of a call's wall time that its busiest worker process spent in items: the
    rest is the tool's own start-up, hand-out and shut-down (and the client's wake-ups)."""
    totals: dict[int, float] = {}
    for pid, seconds in results:
        totals[pid] = totals.get(pid, 0.0) + seconds
    return max(totals.values()) / wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6, help="rounds over all tools")
    parser.add_argument("--items", type=int, default=400, help="items per call")
    args = parser.parse_args(argv)
    iterations = wl.calibrate_spin(0.005)
    items = [iterations] * args.items
    names = list(TOOLS)
    medians: dict[str, list[float]] = {name: [] for name in names}
    shares: dict[str, list[float]] = {name: [] for name in names}
    client: dict[str, list[float]] = {name: [] for name in names}
    for round_number in range(args.rounds):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            started, client_started = time.perf_counter(), time.process_time()
            results = TOOLS[name](wl.spin_cpu_time, items)
            shares[name].append(busiest_share(results, time.perf_counter() - started))
            client[name].append(time.process_time() - client_started)
            medians[name].extend(per_process_medians(results))
        print(f"round {round_number + 1}/{args.rounds} done", file=sys.stderr)
    best_peer = min(statistics.median(medians[bench.LABELS[key]]) for key in bench.PEERS)
    print(f"W2 item ({iterations:,} iterations): CPU ms per item in each worker process")
    width = max(map(len, names))
    print(
        f"{'tool':<{width}} {'median':>7} {'vs best peer':>12} {'in items':>9} {'client':>7}"
        "   processes (sorted)"
    )
    for name in names:
        times = sorted(medians[name])
        middle = statistics.median(times)
        shown = " ".join(f"{t:.2f}" for t in times)
        share = statistics.median(shares[name]) * 100
        cpu = statistics.median(client[name]) * 1000
        print(
            f"{name:<{width}} {middle:7.3f} {middle / best_peer:11.2f}x {share:8.1f}% "
            f"{cpu:7.1f}   {shown}"
        )
    print(
        "in items: the median, over the calls, of the share of a call's wall time that its "
        "busiest worker process spent running items.\nclient: the median CPU ms the calling "
        "process (all its threads) used per call, time the workers lose on a busy machine."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
