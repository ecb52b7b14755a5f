#!/usr/bin/env python
"""Measure ``backend="ec2"`` maps on the AWS emulator against issue 20's targets.

    .venv/bin/python bench/ec2.py                              # 10,000 items, 200 workers
    .venv/bin/python bench/ec2.py --workers 100    # what a 2-core machine holds (~2 min)

Reuses the Fargate benchmark's harness (``bench/fargate.py``: the emulator in a child
process, its S3 counting layer, the client's CPU time), with the emulator's EC2 capacity
(``starburst/emulator/capacity.py``: Auto Scaling launches, container instances, placement)
and the account's vCPU quotas set high. A ``starburst.Cluster(backend="ec2", cpu=1)``
with the 2-, 4- and 8-vCPU types of c7i maps ``x * x`` from no instance (cold) and keeps
its instances (``keep_warm``); a second Cluster then maps on them (warm). It prints, with
each target: instances launched against the fewest that carry the workers, RunTask calls,
client CPU (start + cold map), worker S3 requests per chunk (heartbeats aside), and the
time from the warm map's call to its first claim.
"""

from __future__ import annotations

import argparse
import math
import resource
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import fargate
from fargate import _cpu_seconds, diff, mark, say, square, tap_window

INSTANCE_TYPES = ["c7i.large", "c7i.xlarge", "c7i.2xlarge"]  # 2, 4, 8 vCPUs
INSTANCES_OVER_FEWEST = 0.15
RUNTASK_TARGET = 20
WARM_FIRST_CLAIM_TARGET_S = 2.0
#: The cold map's cluster leaves its empty instances up this long for the warm map.
KEEP_WARM = "15m"
#: Worker requests driven by time, not by chunks: heartbeats and control-record reads.
HEARTBEAT_KINDS = ("worker heartbeat", "control")


def fewest_instances(workers: int, memory_mib: int) -> int:
    """The fewest instances of ``INSTANCE_TYPES`` that carry ``workers`` 1-vCPU workers:
    all of the type that carries the most (in vCPUs and registered memory)."""
    from starburst.backends.ec2.instances import _lookup

    most = max(t.workers_that_fit(1, memory_mib) for name in INSTANCE_TYPES for t in _lookup(name))
    return math.ceil(workers / most)


def launched_instances() -> Counter[str]:
    """Instance types of every instance the groups launched (terminated ones too)."""
    import boto3

    found = boto3.client("ec2").describe_instances()["Reservations"]
    return Counter(i["InstanceType"] for res in found for i in res["Instances"])


@dataclass
class Mapped:
    """One map on its own cluster, as the benchmark saw it."""

    results: list[int]
    n_chunks: int
    first_claim: float | None  # when its first chunk was claimed (the emulator's clock)
    returned: float  # when ``map`` returned
    cpu: float  # the client's CPU seconds when ``map`` returned


def map_on_a_cluster(
    starburst: Any,
    emulator: Any,
    inputs: list[int],
    workers: int,
    memory: str | None,
    keep_warm: str | None,
    session: dict[str, str],
) -> Mapped:
    """Start a ``Cluster(backend="ec2")`` as ``starburst.map`` does, map, and close it."""
    cluster = starburst.Cluster(
        workers=workers, backend="ec2", cpu=1, memory=memory,
        instance_types=INSTANCE_TYPES, keep_warm=keep_warm, progress=False,
    )  # fmt: skip
    runs: list[Any] = []
    try:
        cluster.start(lazy=True)
        driver = cluster.driver
        session["id"] = driver.session.session_id
        submit = driver.submit

        def submit_and_keep(*args: Any, **kwargs: Any) -> Any:
            runs.append(submit(*args, **kwargs))
            return runs[-1]

        driver.submit = submit_and_keep
        results = cluster.map(square, inputs)
        returned, cpu = time.time(), _cpu_seconds(resource.RUSAGE_SELF)
        run = runs[0]
        seen = emulator.ask("inspect", (driver.store.bucket, run.keys.prefix))
    finally:
        cluster.close()
    return Mapped(
        results,
        run.n_chunks if run.n_chunks is not None else len(run.spans),
        min((stamp for _, stamp in seen["claims"]), default=None),
        returned,
        cpu,
    )


def measure(
    starburst: Any,
    emulator: Any,
    items: int,
    workers: int,
    session: dict[str, str],
    memory: str | None = None,
) -> int:
    """A cold map whose cluster keeps its instances warm, then a warm map on a new cluster."""
    inputs = list(range(items))
    before = emulator.ask("counts")
    say(f"cold map of {items} items on {workers} workers (backend='ec2', cpu=1)")
    cpu0, t0 = _cpu_seconds(resource.RUSAGE_SELF), time.time()
    cold = map_on_a_cluster(starburst, emulator, inputs, workers, memory, KEEP_WARM, session)
    after_cold = emulator.ask("counts")
    launched_cold = launched_instances()
    say(f"cold map returned in {cold.returned - t0:.1f} s; warm map (keep_warm={KEEP_WARM!r})")
    t_warm = time.time()
    warm = map_on_a_cluster(starburst, emulator, inputs, workers, memory, None, session)
    after = emulator.ask("counts")
    launched = launched_instances()
    claimed, n_chunks, cpu_cold = warm.first_claim, cold.n_chunks, cold.cpu - cpu0
    t_cold, t_warm_done = cold.returned, warm.returned
    ok = cold.results == warm.results == [x * x for x in inputs]
    calls = diff(after["calls"], before["calls"])
    runtasks = diff(after_cold["calls"], before["calls"])["RunTask"]
    tap = tap_window(after_cold["tap"], before["tap"])
    worker_all = sum(n for (origin, _, _, _), n in tap.items() if origin == "workers")
    worker_time = sum(
        n for (o, _, kind, _), n in tap.items() if o == "workers" and kind in HEARTBEAT_KINDS
    )
    per_chunk = (worker_all - worker_time) / n_chunks
    from starburst.backends.ec2.fleet import default_memory_mib
    from starburst.options import parse_memory

    memory_mib = parse_memory(memory) or default_memory_mib(1)
    fewest = fewest_instances(workers, memory_mib)
    n_launched = sum(launched_cold.values())
    n_launched_warm = sum(launched.values()) - n_launched
    warm_claim = claimed - t_warm if claimed is not None else float("nan")
    types = ", ".join(f"{t} {n}" for t, n in sorted(launched_cold.items()))
    bound = fewest * (1 + INSTANCES_OVER_FEWEST)
    cpu_target = fargate.CLIENT_CPU_TARGET_S
    per_chunk_target = fargate.WORKER_REQUESTS_PER_CHUNK
    rows = [
        (
            "instances launched (cold map)",
            f"{n_launched} ({types})",
            f"<= {fewest} fewest + 15% ({math.floor(bound)})",
            mark(n_launched <= bound),
        ),
        (
            "instances launched by the warm map",
            str(n_launched_warm),
            "0",
            mark(n_launched_warm == 0),
        ),
        (
            "RunTask calls (cold map)",
            str(runtasks),
            f"<= {RUNTASK_TARGET}",
            mark(runtasks <= RUNTASK_TARGET),
        ),
        (
            "client CPU, start + cold map",
            f"{cpu_cold:.2f} s",
            f"<= {cpu_target:g} s",
            mark(cpu_cold <= cpu_target),
        ),
        (
            "worker S3 requests per chunk (cold map)",
            f"{per_chunk:.2f} ({worker_all - worker_time} / {n_chunks})",
            f"<= {per_chunk_target}",
            mark(per_chunk <= per_chunk_target),
        ),
        (
            "warm: new cluster, call -> first claim",
            f"{warm_claim:.2f} s",
            f"<= {WARM_FIRST_CLAIM_TARGET_S:g} s",
            mark(warm_claim <= WARM_FIRST_CLAIM_TARGET_S),
        ),
        (
            "wall: cold map / warm map",
            f"{t_cold - t0:.1f} s / {t_warm_done - t_warm:.1f} s",
            "",
            "info",
        ),
        ("worker heartbeat + idle requests (cold)", str(worker_time), "allowed", "info"),
    ]
    print(
        f"\nstarburst EC2 maps on the emulator: {items} items x*x, {workers} workers x 1 vCPU "
        f"({memory_mib} MiB) on {', '.join(INSTANCE_TYPES)}, {n_chunks} chunks; results "
        + ("correct" if ok else "WRONG")
    )
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, [*widths, 4], strict=True)).rstrip())
    for who in ("workers", "client"):
        print(f"{who[:-1] if who == 'workers' else who} S3 requests of the cold map by key"
              + (" (412: a lost conditional write)" if who == "workers" else ""))  # fmt: skip
        for (origin, op, kind, status), n in sorted(tap.items(), key=lambda e: -e[1]):
            if origin == who:
                print(f"  {kind:17} {op:14} {status:4} {n:6d}  {n / n_chunks:6.2f} per chunk")
    others = {op: n for op, n in calls.items() if not op[0].islower()}
    print("API calls over both maps: " + ", ".join(f"{k} {v}" for k, v in sorted(others.items())))
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--items", type=int, default=10_000, help="items to map (default 10000)")
    parser.add_argument("--workers", type=int, default=200, help="EC2 workers (default 200)")
    parser.add_argument(
        "--memory", default=None, help="memory per worker (default: the backend's, 1.75 GiB)"
    )
    parser.add_argument(
        "--nice", type=int, default=-1,
        help="niceness of the worker processes (default -1: SCHED_IDLE; see bench/fargate.py)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.items < 1 or args.workers < 1:
        parser.error("--items and --workers must be at least 1")

    def measuring(*a: Any) -> int:
        return measure(*a, memory=args.memory)

    return fargate.run_benchmark(args.items, args.workers, args.nice, False, measuring, ec2=True)


if __name__ == "__main__":
    sys.exit(main())
