"""backend="ec2" end to end on the emulator: real boto3 calls, instances launched by Auto
Scaling, workers as ECS tasks packed on them, Spot interruptions through the instance
metadata, and the instances given back when the call ends."""

from __future__ import annotations

import time
from typing import Any

import boto3
import pytest

import starburst
from starburst.aws import resources as r

pytestmark = pytest.mark.usefixtures("aws", "ec2_quotas_unknown")

CLUSTER = r.Names.ec2_cluster


@pytest.fixture
def ec2_quotas_unknown(aws: Any) -> None:
    """moto answers AWS's default quotas with a 500: say "unknown" as AWS would."""
    aws.faults.error("GetAWSDefaultServiceQuota", "NoSuchResourceException", times=None)


def _quiet(_: str) -> None:
    pass


def square(x: int) -> int:
    return x * x


def slow_square(x: int) -> int:
    time.sleep(0.1)
    return x * x


def _launched() -> dict[str, str]:
    """Every instance starburst's groups launched (terminated ones too): id -> type."""
    found = boto3.client("ec2").describe_instances()["Reservations"]  # (only theirs here)
    return {i["InstanceId"]: i["InstanceType"] for res in found for i in res["Instances"]}


def _live_instances(aws: Any) -> list[str]:
    return aws.ec2.instances()


def test_a_map_packs_workers_on_instances_of_two_types_and_scales_to_zero(aws: Any) -> None:
    starburst.setup(say=_quiet, ec2=True)
    results = starburst.map(
        square, range(500), workers=8, cpu=1, backend="ec2", spot=True,
        instance_types=["c7i.large", "c7i.xlarge"],
    )  # fmt: skip
    assert results == [x * x for x in range(500)]
    launched = _launched()
    assert len(launched) == 3 and set(launched.values()) == {"c7i.large", "c7i.xlarge"}
    assert aws.calls["RunTask"] == 1  # eight workers, one call
    group = boto3.client("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=["starburst-spot"]
    )["AutoScalingGroups"][0]
    policy = group["MixedInstancesPolicy"]["LaunchTemplate"]
    types = [o["InstanceType"] for o in policy["Overrides"]]
    assert types == ["c7i.large", "c7i.xlarge"]  # this run's types, set before its launch
    assert _live_instances(aws) == [] and group["DesiredCapacity"] == 0  # scaled to zero
