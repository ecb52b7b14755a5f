"""The cloud path, offline: Fargate, a Spot interruption, and EC2 with warm instances, all in
the sandbox (an emulated AWS account on this machine; ``pip install "starburst[sandbox]"``).

    python examples/sandbox_tour.py

Prints one line per step; each says what to check.
"""

from __future__ import annotations

import random
import time

import starburst


def mean_of_uniforms(seed: int) -> float:
    """The mean of 20,000 uniform draws: close to 0.5."""
    rng = random.Random(seed)
    return sum(rng.random() for _ in range(20_000)) / 20_000


def slow_square(x: int) -> int:
    time.sleep(0.05)
    return x * x


def main() -> None:
    with starburst.sandbox() as aws:
        starburst.setup(say=lambda *args, **kwargs: None, ec2=True)

        means = starburst.map(mean_of_uniforms, range(40), workers=4, backend="fargate")
        print(f"fargate: {len(means)} means, their average {sum(means) / len(means):.3f} (~0.5)")

        aws.faults.spot_interruption(count=1, after=0.5)  # the first worker to run is taken
        squares = starburst.map(slow_square, range(100), workers=2, backend="fargate", spot=True)
        print(f"fargate spot, one worker interrupted: all {len(squares)} results right: "
              f"{squares == [x * x for x in range(100)]}")  # fmt: skip

        ec2 = {"backend": "ec2", "instance_types": ["c7i.large"], "progress": False}
        with starburst.Cluster(workers=4, keep_warm="2m", **ec2) as cluster:
            cluster.map(mean_of_uniforms, range(40))
        warm = aws.ec2.instances()
        print(f"ec2: {len(warm)} instances kept warm after the call (keep_warm='2m')")
        starburst.map(mean_of_uniforms, range(40), workers=4, **ec2)
        print(f"ec2 again: ran on the same instances: {aws.ec2.instances() == warm}")


if __name__ == "__main__":
    main()
