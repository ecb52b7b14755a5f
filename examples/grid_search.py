"""Grid search for hyperparameters: k-fold cross-validated ridge regression, one candidate per
item, a coarse grid and then a finer one on the same warm workers (``Cluster``).

The data is generated here: a target that depends on the first four of twelve features, plus
noise of known variance. The candidates choose how many features to use and the ridge
penalty. The best must use all four informative features (a model missing the weakest one
errs by its variance, 0.64, more), and its cross-validated error should come close to the
noise variance, the error no model can beat.

Run: .venv/bin/python examples/grid_search.py [--backend fargate] [--size 4000]
"""

import functools
import math

import numpy as np
from _common import cluster_options, make_parser, print_summary, run

import starburst

FEATURES, INFORMATIVE, NOISE_VARIANCE, FOLDS = 12, 4, 1.0, 5


def make_data(rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Features, and a target depending on the first ``INFORMATIVE`` of them, plus noise."""
    rng = np.random.default_rng(11)
    x = rng.normal(size=(rows, FEATURES))
    coefficients = np.zeros(FEATURES)
    coefficients[:INFORMATIVE] = [3.0, -2.0, 1.5, 0.8]
    return x, x @ coefficients + rng.normal(0, math.sqrt(NOISE_VARIANCE), rows)


def cross_validate(x: np.ndarray, y: np.ndarray, n_features: int, penalty: float) -> float:
    """The mean squared error of ridge regression on the first ``n_features`` features,
    averaged over ``FOLDS`` folds."""
    folds = np.arange(len(y)) % FOLDS
    errors = []
    for fold in range(FOLDS):
        train, test = folds != fold, folds == fold
        a = x[train, :n_features]
        weights = np.linalg.solve(a.T @ a + penalty * np.eye(n_features), a.T @ y[train])
        errors.append(np.mean((x[test, :n_features] @ weights - y[test]) ** 2))
    return float(np.mean(errors))


def main() -> None:
    args = make_parser(__doc__, size=2_000, size_help="rows of training data").parse_args()
    score = functools.partial(cross_validate, *make_data(args.size))  # sent once per call
    with starburst.Cluster(**cluster_options(args)) as cluster:
        coarse = [(k, p) for k in range(1, FEATURES + 1) for p in (0.01, 1.0, 100.0, 10_000.0)]
        errors = cluster.starmap(score, coarse)
        best_k, best_penalty = coarse[int(np.argmin(errors))]
        fine = [(best_k, best_penalty * factor) for factor in np.logspace(-1, 1, 9)]
        fine_errors = cluster.starmap(score, fine)  # the same workers, already warm
    missing_one = min(e for (k, _), e in zip(coarse, errors, strict=True) if k < INFORMATIVE)
    best_error = min(fine_errors)
    best_k, best_penalty = fine[int(np.argmin(fine_errors))]
    print(f"{len(coarse) + len(fine)} candidates, {FOLDS}-fold cross-validation, {args.size} rows")
    print(f"best: the first {best_k} features, penalty {best_penalty:.3g}, error {best_error:.4f}")
    print(f"(the target uses {INFORMATIVE} features; its noise variance is {NOISE_VARIANCE})")
    print(f"best with fewer than {INFORMATIVE} features: error {missing_one:.4f}")
    print_summary(
        candidates=len(coarse) + len(fine),
        best_features=best_k,
        informative_features=INFORMATIVE,
        best_error=best_error,
        error_missing_one=missing_one,
        noise_variance=NOISE_VARIANCE,
        tolerance=4 * NOISE_VARIANCE * math.sqrt(2 / args.size),  # four standard errors
    )


if __name__ == "__main__":
    run(main)
