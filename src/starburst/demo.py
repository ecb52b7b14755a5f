"""The demo: a Monte Carlo portfolio simulation, 10,000 paths, with the standard library only
(a plain ``pip install starburst`` runs it; no NumPy needed)."""

from __future__ import annotations

import math
import random
import statistics
import time
from typing import Any

#: Trading days in a year: the steps of one path.
DAYS = 252


def simulate_portfolio(seed: int) -> dict[str, float]:
    """One year of daily returns for one path; its final value and Sharpe ratio."""
    rng = random.Random(seed)
    returns = [rng.gauss(0.0003, 0.02) for _ in range(DAYS)]
    value = 1.0
    for daily in returns:
        value *= 1 + daily
    return {
        "final_value": value,
        "sharpe": statistics.fmean(returns) / statistics.pstdev(returns) * math.sqrt(DAYS),
    }


def run_demo(
    paths: int = 10_000,
    workers: int | None = None,
    progress: bool | None = None,
    backend: str | None = None,
) -> dict[str, Any]:
    """Run the simulation with ``starburst.map`` and summarise it."""
    import starburst
    from starburst.options import choose_backend

    chosen = choose_backend(backend)
    started = time.perf_counter()
    results = starburst.map(
        simulate_portfolio, range(paths), workers=workers, progress=progress, backend=chosen
    )
    elapsed = time.perf_counter() - started
    finals = sorted(r["final_value"] for r in results)
    return {
        "backend": chosen,
        "paths": len(results),
        "seconds": elapsed,
        "mean_final_value": statistics.fmean(finals),
        "p5_final_value": finals[int(0.05 * (len(finals) - 1))],
        "p95_final_value": finals[int(0.95 * (len(finals) - 1))],
        "mean_sharpe": statistics.fmean(r["sharpe"] for r in results),
    }
