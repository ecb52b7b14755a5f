"""Bootstrap confidence interval for an A/B test: the lift in conversion rate.

The experiment is generated here: visitors convert with probability 10% in the control and
12% with the new page. Each item draws a batch of bootstrap resamples of both groups
(``seed=``: reproducible) and returns their differences in conversion rate; the 2.5th and
97.5th percentiles of all of them form the 95% interval. For proportions this large the
bootstrap interval must agree with the textbook (Wald) interval for the same data.

Run: .venv/bin/python examples/ab_bootstrap.py [--backend fargate] [--size 200]
"""

import math

import numpy as np
from _common import cluster_options, make_parser, print_summary, run

import starburst

VISITORS, CONTROL_RATE, TREATMENT_RATE, RESAMPLES_PER_BATCH = 20_000, 0.10, 0.12, 250


def resample_lifts(control: np.ndarray, treatment: np.ndarray) -> np.ndarray:
    """Differences in conversion rate over one batch of bootstrap resamples."""
    n_control, n_treatment = len(control), len(treatment)
    # Resampling 0/1 outcomes with replacement: the count of conversions is binomial.
    converted_control = np.random.binomial(n_control, control.mean(), RESAMPLES_PER_BATCH)
    converted_treatment = np.random.binomial(n_treatment, treatment.mean(), RESAMPLES_PER_BATCH)
    return converted_treatment / n_treatment - converted_control / n_control


def main() -> None:
    parser = make_parser(__doc__, size=40, size_help=f"batches of {RESAMPLES_PER_BATCH} resamples")
    args = parser.parse_args()
    rng = np.random.default_rng(5)
    control = (rng.random(VISITORS) < CONTROL_RATE).astype(np.int8)
    treatment = (rng.random(VISITORS) < TREATMENT_RATE).astype(np.int8)

    batches = starburst.map(
        resample_lifts,
        [control] * args.size,
        [treatment] * args.size,
        seed=123,
        **cluster_options(args),
    )
    lifts = np.concatenate(batches)
    low, high = (float(q) for q in np.quantile(lifts, [0.025, 0.975]))

    p_c, p_t = control.mean(), treatment.mean()
    observed = float(p_t - p_c)
    half_width = 1.96 * math.sqrt(p_c * (1 - p_c) / VISITORS + p_t * (1 - p_t) / VISITORS)
    print(f"control {p_c:.2%}, treatment {p_t:.2%}: observed lift {observed:+.2%}")
    print(f"bootstrap 95% interval ({len(lifts):,} resamples): [{low:+.2%}, {high:+.2%}]")
    print(
        f"Wald 95% interval:                    [{observed - half_width:+.2%}, "
        f"{observed + half_width:+.2%}]"
    )
    print_summary(
        resamples=len(lifts),
        low=low,
        high=high,
        wald_low=observed - half_width,
        wald_high=observed + half_width,
        tolerance=0.1 * half_width,  # endpoints within a tenth of the half-width
    )


if __name__ == "__main__":
    run(main)
