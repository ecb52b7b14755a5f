"""``keep_warm`` on the emulator: a call's empty instances stay up for the next call, which
launches none, and are given back when the warm time ends, by the process the first call
left behind (the caller may be gone by then)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from test_ec2 import _launched, _live_instances, ec2_quotas_unknown  # noqa: F401 (a fixture)
from test_fargate import _quiet, square

import starburst
from starburst.backends.ec2.warmth import WARM_TAG, stop_left_behind
from starburst.errors import ConfigurationError

pytestmark = pytest.mark.usefixtures("aws", "ec2_quotas_unknown", "no_reaper_outlives_the_test")

TYPES = ["c7i.large"]


@pytest.fixture
def no_reaper_outlives_the_test(aws: Any) -> Iterator[None]:
    """The process a warm call leaves behind outlives it by design; one this test's calls
    left must not wake during a later test (whose emulator it would talk to)."""
    yield
    stop_left_behind(aws.config_dir)


def _group(name: str = "starburst-on-demand") -> dict[str, Any]:
    return boto3.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[name])[
        "AutoScalingGroups"
    ][0]


def test_warm_instances_serve_the_next_call_and_go_when_the_time_ends(aws: Any) -> None:
    starburst.setup(say=_quiet, ec2=True)
    with starburst.Cluster(
        workers=4, backend="ec2", instance_types=TYPES, keep_warm=20, progress=False
    ) as cluster:
        assert cluster.map(square, range(40)) == [x * x for x in range(40)]
    first = _launched()
    assert len(first) == 2  # two 1-vCPU workers on each c7i.large
    assert sorted(_live_instances(aws)) == sorted(first)  # kept warm, not given back
    tags = {t["Key"]: t["Value"] for t in _group()["Tags"]}
    assert 0 < float(tags[WARM_TAG]) - time.time() <= 20.5  # (kept in whole seconds)
    shown = starburst.setup_status()["resources"]["starburst-on-demand"]
    assert shown.startswith("ok: 2 instances") and "kept warm until" in shown

    # A later call without keep_warm runs on the warm instances and leaves them warm.
    results = starburst.map(square, range(40), workers=4, backend="ec2", instance_types=TYPES)
    assert results == [x * x for x in range(40)]
    assert _launched() == first  # no instance launched
    assert sorted(_live_instances(aws)) == sorted(first)

    # When the warm time ends, the process the first call left behind gives them back.
    deadline = time.monotonic() + 90
    while _live_instances(aws) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _live_instances(aws) == []
    assert _group()["DesiredCapacity"] == 0


def test_a_later_keep_warm_moves_the_time_on(aws: Any) -> None:
    """The first call's process wakes at its own time, sees the later one, and leaves the
    instances to the later call's process."""
    starburst.setup(say=_quiet, ec2=True)
    starburst.map(square, range(8), workers=2, backend="ec2", instance_types=TYPES, keep_warm=3)
    (instance,) = _live_instances(aws)
    starburst.map(square, range(8), workers=2, backend="ec2", instance_types=TYPES, keep_warm=16)
    time.sleep(8)  # the first call's warm time is over
    assert _live_instances(aws) == [instance]
    deadline = time.monotonic() + 90
    while _live_instances(aws) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _live_instances(aws) == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"backend": "local"}, r"keep_warm='15m' keeps instances up .* the local backend has none"),
        ({"backend": "fargate"}, r"the fargate backend has none to keep: .* backend='ec2'"),
        ({"backend": "ec2", "keep_warm": "2d"}, r"keep_warm='2d' is longer than a day"),
        ({"backend": "ec2", "keep_warm": "soon"}, r"keep_warm='soon' is not a duration"),
    ],
)
def test_keep_warm_is_refused_before_any_aws_call(
    aws: Any, options: dict[str, Any], message: str
) -> None:
    options = {"keep_warm": "15m", **options}
    with pytest.raises(ConfigurationError, match=message):
        starburst.map(square, range(3), **options)
    assert sum(aws.calls.values()) == 0


def test_a_launch_no_task_waits_for_any_more_is_cancelled_when_instances_are_given_back(
    aws: Any,
) -> None:
    """A managed-scaling step taken for workers that stopped before their instance came
    leaves a group wanting more instances than it has; giving back the empty instances
    lowers it to what it has, or the launch would start an instance nobody gives back."""
    from starburst.aws.connection import connect
    from starburst.backends.ec2.fleet import Ec2Fleet
    from starburst.config import Config

    starburst.setup(say=_quiet, ec2=True)
    aws.faults.fail_launches("starburst-on-demand", "quota", times=None)  # the launch pends
    boto3.client("autoscaling").update_auto_scaling_group(
        AutoScalingGroupName="starburst-on-demand", DesiredCapacity=2
    )  # as a managed-scaling step does
    resources = Config.load().aws
    Ec2Fleet(connect(resources.get("region")), resources, image="").release_idle()
    assert _group()["DesiredCapacity"] == 0
    aws.faults.clear_launch_failures()
    time.sleep(1.0)  # launches are retried every 0.5 s: none is due
    assert _live_instances(aws) == []
