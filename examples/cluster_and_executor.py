"""A warm Cluster for several maps, and the concurrent.futures Executor.

Run: .venv/bin/python examples/cluster_and_executor.py
"""

from concurrent.futures import as_completed

import starburst


def bootstrap_mean(seed: int, sample: list[float]) -> float:
    import random

    rng = random.Random(seed)
    draw = [rng.choice(sample) for _ in sample]
    return sum(draw) / len(draw)


def main() -> None:
    sample = [1.2, 3.4, 2.2, 5.1, 0.7, 4.4, 3.3, 2.8]
    with starburst.Cluster(workers=2) as cluster:
        means = cluster.map(bootstrap_mean, range(2_000), [sample] * 2_000)
        again = cluster.map(bootstrap_mean, range(2_000, 4_000), [sample] * 2_000)  # warm workers
        print(
            f"bootstrap: {len(means) + len(again)} resamples, "
            f"mean of means {sum(means + again) / (len(means) + len(again)):.3f}"
        )

    with starburst.Executor(workers=2) as executor:
        futures = {executor.submit(pow, 2, n): n for n in range(10)}
        for future in as_completed(futures):
            print(f"2**{futures[future]} = {future.result()}")


if __name__ == "__main__":
    main()
