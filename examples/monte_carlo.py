"""Monte Carlo portfolio simulation: 10,000 one-year paths with starburst.map.

Run: .venv/bin/python examples/monte_carlo.py
"""

import numpy as np

import starburst


def simulate_portfolio(seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    returns = rng.normal(0.0003, 0.02, 252)
    prices = np.cumprod(1 + returns)
    return {"final_value": prices[-1], "sharpe": returns.mean() / returns.std() * 252**0.5}


if __name__ == "__main__":
    results = starburst.map(simulate_portfolio, range(10_000), workers=4)
    finals = np.array([r["final_value"] for r in results])
    print(
        f"{len(results):,} paths: mean final value {finals.mean():.3f}, "
        f"5% VaR {1 - np.percentile(finals, 5):.1%}"
    )
