"""Cost before, during and after a run: estimate, a hard cap, the run's report, quotas.

Run: .venv/bin/python examples/cost_and_quota.py            (local workers, no AWS needed)
     .venv/bin/python examples/cost_and_quota.py fargate    (after `starburst setup`)
"""

import sys

import starburst


def price_option(seed: int) -> float:
    import random

    rng = random.Random(seed)
    paths = [max(0.0, 100 * (1 + rng.gauss(0.05, 0.2)) - 100) for _ in range(5_000)]
    return sum(paths) / len(paths)


def main(backend: str) -> None:
    # Before: time a sample here, predict the cloud run (prices from AWS when reachable).
    starburst.estimate(price_option, range(2_000), workers=20, sample=5)

    if backend == "fargate":
        for quota in starburst.quota():
            fits = quota.workers_that_fit(1)
            print(f"{quota.label}: {quota.free} vCPUs free, {fits} workers of 1 vCPU fit")

    # During and after: a hard cap, and the run's wall time and actual cost.
    try:
        values, run = starburst.map(
            price_option,
            range(2_000),
            workers=4 if backend == "local" else 20,
            backend=backend,
            max_cost=1.00,  # dollars: stop the workers here, keep what finished
            return_run=True,
        )
    except starburst.CostCapError as exc:
        kept = exc.starburst_results
        print(f"stopped at the cap: {len(kept.done)} done, {len(kept.pending)} to rerun")
        return
    print(f"mean option value {sum(values) / len(values):.3f}; {run}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "local")
