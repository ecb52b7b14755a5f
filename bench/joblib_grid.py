#!/usr/bin/env python
"""A 5-fold grid search of 40 candidates with n_jobs=2: joblib's loky vs starburst local.

    .venv/bin/python bench/joblib_grid.py                   # 3 rounds each, about 2 minutes
    .venv/bin/python bench/joblib_grid.py --rounds 1 --samples 2000

Each round fits ``GridSearchCV(LogisticRegression(), 40 candidates, cv=5)`` (200 fits) on a
synthetic dataset, once on loky and once inside ``parallel_config(backend="starburst")``
(a fresh backend, so the starburst time includes starting its workers, as loky's includes
its own). The rounds alternate the order of the two. Prints the median wall time of each
and the ratio starburst / loky (the target is 1.1 or less). Not a test: pytest does not
collect it.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import joblib
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV

import starburst.joblib  # noqa: F401  (registers the "starburst" backend)

GRID = {"C": [0.001 * 2**k for k in range(20)], "fit_intercept": [True, False]}  # 40


def search(X: object, y: object) -> float:
    """One grid search; its best score, to check that both backends agree."""
    model = LogisticRegression(max_iter=500)
    return float(GridSearchCV(model, GRID, cv=5, n_jobs=2).fit(X, y).best_score_)


def timed(run: Callable[[], float]) -> tuple[float, float]:
    start = time.perf_counter()
    score = run()
    return time.perf_counter() - start, score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=10000)
    parser.add_argument("--features", type=int, default=60)
    args = parser.parse_args()
    X, y = make_classification(
        n_samples=args.samples, n_features=args.features, n_informative=20, random_state=0
    )

    def on(backend: str) -> Callable[[], float]:
        def run() -> float:
            with joblib.parallel_config(backend=backend, n_jobs=2):
                return search(X, y)

        return run

    times: dict[str, list[float]] = {"loky": [], "starburst": []}
    scores: set[float] = set()
    for round_ in range(args.rounds):
        order = ["loky", "starburst"] if round_ % 2 == 0 else ["starburst", "loky"]
        for name in order:
            seconds, score = timed(on(name))
            times[name].append(seconds)
            scores.add(score)
            print(f"round {round_ + 1} {name:9} {seconds:6.2f} s  best score {score:.4f}")
    loky, burst = statistics.median(times["loky"]), statistics.median(times["starburst"])
    print(f"median loky {loky:.2f} s, starburst {burst:.2f} s: ratio {burst / loky:.2f}x")
    if len(scores) != 1:
        print(f"WARNING: the backends found different best scores: {sorted(scores)}")


if __name__ == "__main__":
    main()
