"""backend="ec2" on the emulator: two sessions of different worker sizes on one Auto Scaling
group at once. While both run, the group's types carry a worker of each (whatever type it
launches serves either); when one ends, the group holds the other's types again."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from test_ec2 import ec2_quotas_unknown, slow_square  # noqa: F401 (a fixture)
from test_ec2_warm import _group
from test_fargate import _quiet, square

import starburst
from starburst.backends.ec2.instances import CATALOGUE, choose_instance_types
from starburst.backends.ec2.sharing import NEEDS_TAG

pytestmark = pytest.mark.usefixtures("aws", "ec2_quotas_unknown")

SMALL = {"cpu": 1, "memory_mib": 1792}  # a c-family worker
BIG = {"cpu": 4, "memory_mib": 16 * 1024}  # an m-family worker, too big for most c types


def _types(group: dict[str, Any] | None = None) -> list[str]:
    policy = (group or _group())["MixedInstancesPolicy"]["LaunchTemplate"]
    return [o["InstanceType"] for o in policy["Overrides"]]


def _needs() -> list[str]:
    return [t["Key"] for t in _group().get("Tags", []) if t["Key"].startswith(NEEDS_TAG)]


def _carries(name: str, worker: dict[str, int]) -> bool:
    return CATALOGUE[name].workers_that_fit(worker["cpu"], worker["memory_mib"]) >= 1


def test_two_sessions_of_different_sizes_share_the_group_and_each_gets_its_types(
    aws: Any,
) -> None:
    starburst.setup(say=_quiet, ec2=True)
    small = [t.name for t in choose_instance_types(SMALL["cpu"], SMALL["memory_mib"])]
    big = [t.name for t in choose_instance_types(BIG["cpu"], BIG["memory_mib"])]
    assert not set(big) & set(small) and not all(_carries(t, BIG) for t in small)
    with starburst.Cluster(workers=2, cpu=1, backend="ec2", progress=False) as cluster:
        assert cluster.map(square, range(10)) == [x * x for x in range(10)]
        assert set(_types()) == set(small)
        results: list[list[int]] = []
        second = threading.Thread(
            target=lambda: results.append(
                starburst.map(slow_square, range(40), workers=2, cpu=4, memory="16GB",
                              backend="ec2", progress=False)
            )
        )  # fmt: skip
        second.start()
        group = _group()
        while set(_types(group)) == set(small) and second.is_alive():
            time.sleep(0.05)
            group = _group()
        both = _types(group)  # as the big session's kick-start set them
        # ... with an instance of its own: the small session's is full, so not free
        assert group["DesiredCapacity"] == 2
        assert cluster.map(square, range(10, 20)) == [x * x for x in range(10, 20)]
        second.join(timeout=120)
        assert results == [[x * x for x in range(40)]]
        assert both and all(_carries(t, SMALL) and _carries(t, BIG) for t in both)
        assert set(both) & set(small) and set(both) & set(big)  # each one's own choice
        assert set(_types()) == set(small) and len(_needs()) == 1  # the big one left
    assert set(_types()) == set(small) and _needs() == []  # nobody needs any now
