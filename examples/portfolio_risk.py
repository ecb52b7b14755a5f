"""Portfolio risk modelling: one-day 99% Value at Risk and Conditional VaR by simulation.

Four correlated assets with normal daily returns (a covariance matrix, drawn through its
Cholesky factor); each item simulates a batch of scenarios (``seed=``: reproducible) and
returns the portfolio's losses in them. For normal returns both measures are known exactly:
VaR = -mean + sd * z and CVaR = -mean + sd * pdf(z) / (1 - level), which the simulation
must approach.

Run: .venv/bin/python examples/portfolio_risk.py [--backend fargate] [--size 100]
"""

import math
from statistics import NormalDist

import numpy as np
from _common import cluster_options, make_parser, print_summary, run

import starburst

LEVEL, SCENARIOS_PER_BATCH, VALUE = 0.99, 20_000, 1_000_000.0
WEIGHTS = np.array([0.4, 0.3, 0.2, 0.1])
MEANS = np.array([0.0004, 0.0003, 0.0002, 0.0001])
VOLATILITIES = np.array([0.02, 0.015, 0.01, 0.005])
CORRELATION = np.array(
    [[1.0, 0.6, 0.3, 0.1], [0.6, 1.0, 0.4, 0.2], [0.3, 0.4, 1.0, 0.3], [0.1, 0.2, 0.3, 1.0]]
)
COVARIANCE = CORRELATION * np.outer(VOLATILITIES, VOLATILITIES)


def simulate_losses(batch: int) -> np.ndarray:
    """The portfolio's losses, in currency, in one batch of simulated days."""
    shocks = np.random.standard_normal((SCENARIOS_PER_BATCH, len(WEIGHTS)))
    returns = MEANS + shocks @ np.linalg.cholesky(COVARIANCE).T
    return -VALUE * (returns @ WEIGHTS)


def main() -> None:
    parser = make_parser(__doc__, size=25, size_help=f"batches of {SCENARIOS_PER_BATCH:,} days")
    args = parser.parse_args()
    batches = starburst.map(simulate_losses, range(args.size), seed=99, **cluster_options(args))
    losses = np.concatenate(batches)
    var = float(np.quantile(losses, LEVEL))
    cvar = float(losses[losses >= var].mean())

    mean = VALUE * float(WEIGHTS @ MEANS)
    sd = VALUE * math.sqrt(float(WEIGHTS @ COVARIANCE @ WEIGHTS))
    z = NormalDist().inv_cdf(LEVEL)
    exact_var = -mean + sd * z
    exact_cvar = -mean + sd * NormalDist().pdf(z) / (1 - LEVEL)
    # The standard error of a sample quantile: sqrt(p(1-p)/n) / density at the quantile.
    var_error = math.sqrt(LEVEL * (1 - LEVEL) / len(losses)) / (NormalDist().pdf(z) / sd)
    print(f"{len(losses):,} simulated days, portfolio of {VALUE:,.0f}")
    print(f"{LEVEL:.0%} VaR  {var:,.0f} (exact {exact_var:,.0f})")
    print(f"{LEVEL:.0%} CVaR {cvar:,.0f} (exact {exact_cvar:,.0f})")
    print_summary(
        days=len(losses),
        var=var,
        exact_var=exact_var,
        cvar=cvar,
        exact_cvar=exact_cvar,
        tolerance=4 * var_error,  # four standard errors of the VaR, used for both
    )


if __name__ == "__main__":
    run(main)
