"""A backend of your own: the local backend with other traits, passed in or named.

Run: .venv/bin/python examples/backend_traits.py
"""

import itertools
import os
import time

import starburst
from starburst.backends import register
from starburst.backends.local import LocalBackend


class CoarseLocal(LocalBackend):
    """Local worker processes, but three by default and two large chunks each."""

    name = "local-coarse"  # a name of its own: the local backend keeps "local"
    chunks_per_slot = 2  # the local backend cuts up to 256 chunks per slot

    def default_workers(self) -> int:
        return 3  # the local backend starts one per CPU


def square_where(x: int) -> tuple[int, int]:
    """The square, and which worker process computed it (after a millisecond of work)."""
    time.sleep(0.001)
    return x * x, os.getpid()


def stretches(results: list[tuple[int, int]]) -> int:
    """Stretches of the input that one process ran: about how many chunks the call had."""
    return 1 + sum(a[1] != b[1] for a, b in itertools.pairwise(results))


def main() -> None:
    items = range(600)
    expected = [x * x for x in items]

    # The built-in local backend, for comparison: one worker per CPU, many small chunks.
    local = starburst.map(square_where, items, backend="local", progress=False)
    # Registered, a backend is known by its name in this process. (A worker looks its
    # session's backend up by name: an installed package offers one through the entry-point
    # group "starburst.backends", so that processes started elsewhere find it too.)
    register(CoarseLocal())
    by_name = starburst.map(square_where, items, backend="local-coarse", progress=False)
    # An instance is used as it is, registered or not.
    coarse = starburst.map(square_where, items, backend=CoarseLocal(), progress=False)

    print(f"this machine has {os.cpu_count()} CPUs")
    for label, results in [("local", local), ("by name", by_name), ("instance", coarse)]:
        correct = [square for square, _ in results] == expected
        processes = len({pid for _, pid in results})
        print(
            f"{label:>8}: {len(results)} squares, correct={correct}, "
            f"{processes} worker processes, ~{stretches(results)} chunks"
        )


if __name__ == "__main__":
    main()
