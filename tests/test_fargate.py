"""backend="fargate" end to end on the emulator: real boto3 calls, workers as ECS tasks."""

from __future__ import annotations

import boto3
import pytest

import starburst
from starburst.errors import ConfigurationError

pytestmark = pytest.mark.usefixtures("aws")


def _quiet(_: str) -> None:
    pass


def square(x: int) -> int:
    return x * x


def slow_square(x: int) -> int:
    import time

    time.sleep(0.05)
    return x * x


def _running_tasks() -> list[str]:
    return boto3.client("ecs").list_tasks(cluster="starburst", desiredStatus="RUNNING")["taskArns"]


def test_an_invalid_cpu_memory_pair_fails_before_any_aws_call(aws) -> None:
    with pytest.raises(
        ConfigurationError, match=r"memory=1 GB is not valid with cpu=1.*2 GB, 3 GB"
    ):
        starburst.map(square, range(3), backend="fargate", cpu=1, memory="1GB")
    assert sum(aws.calls.values()) == 0


def test_a_map_runs_on_fargate_tasks_and_leaves_none_running(aws) -> None:
    starburst.setup(say=_quiet)
    results = starburst.map(square, range(300), workers=3, backend="fargate", cpu=1)
    assert results == [x * x for x in range(300)]
    assert aws.calls["RunTask"] == 1  # three workers, one call
    assert _running_tasks() == []


def test_a_spot_interruption_loses_nothing(aws) -> None:
    starburst.setup(say=_quiet)
    aws.faults.spot_interruption(count=1, after=1.5, grace=0.5)
    results = starburst.map(slow_square, range(200), workers=2, backend="fargate", spot=True)
    assert results == [x * x for x in range(200)]
    stopped = boto3.client("ecs").describe_tasks(cluster="starburst", tasks=aws.runner.task_arns)[
        "tasks"
    ]
    assert any(task.get("stopCode") == "SpotInterruption" for task in stopped)
    assert _running_tasks() == []


def test_a_small_vcpu_quota_runs_with_the_workers_that_fit(aws, capsys) -> None:
    starburst.setup(say=_quiet)
    aws.quotas.set("L-3032A538", 2)
    aws.faults.enforce_vcpu_quota()
    results = starburst.map(square, range(100), workers=6, backend="fargate", cpu=1)
    assert results == [x * x for x in range(100)]
    assert "the Fargate vCPU quota allows 2" in capsys.readouterr().err
    assert len(aws.runner.task_arns) == 2
