"""The demo: a Monte Carlo portfolio simulation, 10,000 paths on the local backend."""

from __future__ import annotations

import time
from typing import Any


def simulate_portfolio(seed: int) -> dict[str, float]:
    """One year of daily returns for one path; its final value and Sharpe ratio."""
    import numpy as np

    rng = np.random.default_rng(seed)
    returns = rng.normal(0.0003, 0.02, 252)
    prices = np.cumprod(1 + returns)
    return {
        "final_value": float(prices[-1]),
        "sharpe": float(returns.mean() / returns.std() * 252**0.5),
    }


def run_demo(
    paths: int = 10_000, workers: int | None = None, progress: bool | None = None
) -> dict[str, Any]:
    """Run the simulation with ``starburst.map`` and summarise it."""
    import starburst

    started = time.perf_counter()
    results = starburst.map(simulate_portfolio, range(paths), workers=workers, progress=progress)
    elapsed = time.perf_counter() - started
    finals = sorted(r["final_value"] for r in results)
    return {
        "paths": len(results),
        "seconds": elapsed,
        "mean_final_value": sum(finals) / len(finals),
        "p5_final_value": finals[int(0.05 * (len(finals) - 1))],
        "p95_final_value": finals[int(0.95 * (len(finals) - 1))],
        "mean_sharpe": sum(r["sharpe"] for r in results) / len(results),
    }
