"""Feature engineering: turn each customer's raw transaction log into one row of features.

Each item is a customer: the worker generates (here; in practice, reads) that customer's
year of transactions, then derives purchase count, mean and spread of the amounts, days since
the last purchase, and the share of weekend purchases. ``chunk_size`` sends customers to
the workers in groups. The logs are generated from known per-customer rates and mean
amounts, so the features can be checked against the truth they should recover.

Run: .venv/bin/python examples/feature_engineering.py [--backend fargate] [--size 20000]
"""

import numpy as np
from _common import cluster_options, make_parser, print_summary, run

import starburst

DAYS = 365


def true_mean_amount(customer: int) -> float:
    """The mean purchase amount the log of ``customer`` is generated with."""
    return 10.0 + customer % 90


def customer_features(customer: int) -> dict[str, float]:
    """One customer's features, from their generated transaction log."""
    rng = np.random.default_rng(customer)
    rate = 0.05 + (customer % 7) / 20  # purchases a day
    days = np.sort(rng.integers(0, DAYS, rng.poisson(rate * DAYS) + 1))
    amounts = rng.exponential(true_mean_amount(customer), len(days))
    return {
        "customer": customer,
        "purchases": len(days),
        "mean_amount": float(amounts.mean()),
        "amount_spread": float(amounts.std()),
        "days_since_last": float(DAYS - 1 - days[-1]),
        "weekend_share": float(np.isin(days % 7, (5, 6)).mean()),
    }


def main() -> None:
    args = make_parser(__doc__, size=3_000, size_help="customers").parse_args()
    rows = starburst.map(
        customer_features, range(args.size), chunk_size=250, **cluster_options(args)
    )
    means = np.array([row["mean_amount"] for row in rows])
    truth = np.array([true_mean_amount(c) for c in range(args.size)])
    correlation = float(np.corrcoef(means, truth)[0, 1])
    weekend = float(np.mean([row["weekend_share"] for row in rows]))
    print(f"{len(rows)} customers, {len(rows[0]) - 1} features each; first row: {rows[0]}")
    print(f"mean amount vs the true mean: correlation {correlation:.3f}")
    print(f"average weekend share {weekend:.3f} (uniform days: 2/7 = {2 / 7:.3f})")
    print_summary(
        rows=len(rows),
        features=len(rows[0]) - 1,
        in_order=all(row["customer"] == c for c, row in enumerate(rows)),
        mean_amount_correlation=correlation,
        weekend_share=weekend,
    )


if __name__ == "__main__":
    run(main)
