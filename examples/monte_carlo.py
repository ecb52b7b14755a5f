"""Monte Carlo portfolio simulation: one-year daily price paths, in batches on many workers.

A portfolio worth 1.0 follows geometric Brownian motion with a yearly drift and volatility.
Each item simulates a batch of paths; ``seed=`` gives every batch its own reproducible random
stream. The mean final value must approach the analytic exp(drift), and the share of paths
that lose money the analytic normal probability.

Run: .venv/bin/python examples/monte_carlo.py [--backend fargate] [--size 200]
"""

import math

import numpy as np
from _common import cluster_options, make_parser, print_summary, run

import starburst

DRIFT, VOLATILITY, DAYS, PATHS_PER_BATCH = 0.07, 0.2, 252, 2_000


def simulate_batch(batch: int) -> tuple[float, float, int]:
    """Simulate one batch of paths; return the sum and sum of squares of their final values,
    and how many ended below 1.0 (``seed=`` has seeded numpy's global random state)."""
    dt = 1 / DAYS
    steps = np.random.normal(
        (DRIFT - VOLATILITY**2 / 2) * dt, VOLATILITY * math.sqrt(dt), (PATHS_PER_BATCH, DAYS)
    )
    finals = np.exp(steps.sum(axis=1))
    return float(finals.sum()), float((finals**2).sum()), int((finals < 1.0).sum())


def main() -> None:
    parser = make_parser(__doc__, size=40, size_help=f"batches of {PATHS_PER_BATCH:,} paths")
    args = parser.parse_args()
    batches = starburst.map(simulate_batch, range(args.size), seed=2024, **cluster_options(args))

    paths = args.size * PATHS_PER_BATCH
    mean = sum(b[0] for b in batches) / paths
    std = math.sqrt(sum(b[1] for b in batches) / paths - mean**2)
    loss_share = sum(b[2] for b in batches) / paths
    analytic_mean = math.exp(DRIFT)
    # P(final < 1) = P(log return < 0), the log return being normal.
    log_mean = DRIFT - VOLATILITY**2 / 2
    analytic_loss = 0.5 * math.erfc(log_mean / VOLATILITY / math.sqrt(2))
    print(f"{paths:,} one-year paths on the {args.backend} backend")
    print(f"mean final value {mean:.4f} (analytic {analytic_mean:.4f})")
    print(f"paths losing money {loss_share:.2%} (analytic {analytic_loss:.2%})")
    print_summary(
        mean=mean,
        analytic_mean=analytic_mean,
        tolerance=4 * std / math.sqrt(paths),  # four standard errors
        loss_share=loss_share,
        analytic_loss_share=analytic_loss,
        loss_tolerance=4 * math.sqrt(analytic_loss * (1 - analytic_loss) / paths),
    )


if __name__ == "__main__":
    run(main)
