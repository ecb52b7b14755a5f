"""backend="ec2" end to end on the emulator: real boto3 calls, instances launched by Auto
Scaling, workers as ECS tasks packed on them, Spot interruptions through the instance
metadata, and the instances given back when the call ends."""

from __future__ import annotations

import threading
import time
from typing import Any

import boto3
import pytest
from test_fargate import _quiet, square

import starburst
from starburst.aws import resources as r
from starburst.errors import ConfigurationError

pytestmark = pytest.mark.usefixtures("aws", "ec2_quotas_unknown")

CLUSTER = r.Names.ec2_cluster


@pytest.fixture
def ec2_quotas_unknown(aws: Any) -> None:
    """moto answers AWS's default quotas with a 500: say "unknown" as AWS would."""
    aws.faults.error("GetAWSDefaultServiceQuota", "NoSuchResourceException", times=None)


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
    assert types == ["c7i.xlarge", "c7i.large"]  # this run's types, set before its launch
    assert _live_instances(aws) == [] and group["DesiredCapacity"] == 0  # scaled to zero


def test_on_demand_instances_are_the_fewest_that_carry_the_workers(aws: Any) -> None:
    """An on-demand group launches its first type: the type that carries the most workers
    leads, so the instances asked for carry them all (not the smallest type, topped up)."""
    starburst.setup(say=_quiet, ec2=True)
    results = starburst.map(
        square, range(100), workers=12, cpu=1, backend="ec2",
        instance_types=["c7i.large", "c7i.2xlarge"],
    )  # fmt: skip
    assert results == [x * x for x in range(100)]
    assert sorted(_launched().values()) == ["c7i.2xlarge", "c7i.2xlarge"]  # 8 workers each


def test_a_worker_no_instance_type_can_carry_is_refused_before_any_aws_call(aws: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"memory=600GB does not fit any size of"):
        starburst.map(square, range(3), backend="ec2", cpu=2, memory="600GB")
    with pytest.raises(ConfigurationError, match=r"gpus=1 needs a GPU instance type.*g6"):
        starburst.map(square, range(3), backend="ec2", gpus=1, instance_types=["c7i"])
    with pytest.raises(ConfigurationError, match=r"gpus=1 needs a backend .* backend='ec2'"):
        starburst.map(square, range(3), backend="fargate", gpus=1)
    assert sum(aws.calls.values()) == 0


def _tasks() -> list[dict[str, Any]]:
    ecs = boto3.client("ecs")
    arns = [
        arn
        for status in ("RUNNING", "STOPPED")
        for arn in ecs.list_tasks(cluster=CLUSTER, desiredStatus=status)["taskArns"]
    ]
    return ecs.describe_tasks(cluster=CLUSTER, tasks=arns)["tasks"] if arns else []


def test_a_gpu_worker_is_placed_only_on_a_gpu_type(aws: Any) -> None:
    starburst.setup(say=_quiet, ec2=True)
    results = starburst.map(square, range(20), workers=2, gpus=1, memory="8GB", backend="ec2")
    assert results == [x * x for x in range(20)]
    launched = _launched()
    assert launched and all(kind.startswith("g") for kind in launched.values())
    definition = boto3.client("ecs").describe_task_definition(
        taskDefinition=_tasks()[0]["taskDefinitionArn"]
    )["taskDefinition"]
    (container,) = definition["containerDefinitions"]
    assert container["resourceRequirements"] == [{"type": "GPU", "value": "1"}]
    assert _live_instances(aws) == []


@pytest.mark.parametrize("notice", [True, False], ids=["notice", "no-notice"])
def test_a_spot_interruption_loses_nothing_and_counts_no_retry(aws: Any, notice: bool) -> None:
    """One instance of two is reclaimed mid-run: with a Spot notice first, its workers give
    their chunks back and leave before it goes; without one, its tasks are lost with it
    (TerminationNotice). Either way every result comes back once with ``retries=0``: a
    loss counted as an attempt would fail its items."""
    starburst.setup(say=_quiet, ec2=True)
    with starburst.Cluster(
        workers=4, backend="ec2", spot=True, instance_types=["c7i.large"], progress=False
    ) as cluster:
        results: list[list[int]] = []
        call = threading.Thread(
            target=lambda: results.append(
                cluster.map(slow_square, range(300), chunk_size=10, retries=0)
            )
        )
        call.start()
        victim = _an_instance_running_work(aws)
        on_victim = [t["taskArn"] for t in _tasks() if aws.ec2.host_of(t["taskArn"]) == victim]
        if notice:
            aws.faults.spot_notice(victim)
            _wait_until_stopped(on_victim)  # the workers saw the notice and left
        aws.faults.terminate_instance(victim)
        call.join(120)
        assert results == [[x * x for x in range(300)]]
        fleet = cluster.driver.fleet
        lost = fleet.describe([arn.rsplit("/", 1)[1] for arn in on_victim])
        for info in lost:
            if notice:
                assert "spot interruption notice" in fleet.log_tail(info.worker_id, lines=50)
                assert info.exit_code == 0 and info.fault is None
            else:
                assert info.fault == "interrupted" and info.spot, info
    assert len(_launched()) >= 3  # the group replaced the lost instance
    assert _live_instances(aws) == []


def _an_instance_running_work(aws: Any) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        running = [t for t in _tasks() if t["lastStatus"] == "RUNNING"]
        if len(running) == 4:
            time.sleep(1.0)  # (a chunk or two done)
            host = aws.ec2.host_of(running[0]["taskArn"])
            assert host is not None
            return str(host)
        time.sleep(0.1)
    raise AssertionError("the workers never ran")


def _wait_until_stopped(arns: list[str]) -> None:
    deadline = time.monotonic() + 30
    ecs = boto3.client("ecs")
    while time.monotonic() < deadline:
        tasks = ecs.describe_tasks(cluster=CLUSTER, tasks=arns)["tasks"]
        if all(t["lastStatus"] == "STOPPED" for t in tasks):
            return
        time.sleep(0.2)
    raise AssertionError("the notified workers did not leave")


def test_a_detached_session_runs_on_ec2_and_leaves_no_instance(aws: Any) -> None:
    starburst.setup(say=_quiet, ec2=True)
    session = starburst.session(workers=2, backend="ec2", ttl=300)
    try:
        session.map(square, range(50))
        assert session.collect(timeout=60) == [[x * x for x in range(50)]]
    finally:
        session.cleanup()
    assert _live_instances(aws) == []


def test_an_ec2_sessions_worker_logs_can_be_read(aws: Any) -> None:
    from click.testing import CliRunner
    from test_fargate import chatty

    from starburst.cli import main

    starburst.setup(say=_quiet, ec2=True)
    with starburst.Cluster(workers=1, backend="ec2", progress=False) as cluster:
        assert cluster.map(chatty, range(3)) == [0, 1, 2]
        session_id = cluster.driver.session.session_id
    shown = CliRunner().invoke(main, ["logs", session_id, "--tail", "100"])
    assert shown.exit_code == 0, shown.output
    assert "working on item 2" in shown.output and f"of session {session_id}" in shown.output


def test_too_many_tasks_waiting_for_instances_is_back_pressure(aws: Any) -> None:
    """RunTask refuses tasks beyond the cluster's PROVISIONING limit with an exception: the
    launch stops there and the rest are asked for again once instances take the first."""
    starburst.setup(say=_quiet, ec2=True)
    aws.ec2.provisioning_limit = 10
    results = starburst.map(slow_square, range(200), workers=14, backend="ec2", spot=True)
    assert results == [x * x for x in range(200)]

    assert aws.calls["RunTask"] >= 3  # 10, then 4 refused, then 4 again
    assert len([t for t in _tasks() if t.get("startedBy")]) == 14
    assert _live_instances(aws) == []


def test_a_group_the_session_may_not_raise_gets_instances_from_managed_scaling(
    aws: Any, capsys
) -> None:
    """A worker supervising a detached session may read the groups, not change them (its
    role): the kick-start is refused, said, and the capacity provider's managed scaling
    starts the instances for the waiting workers instead."""
    starburst.setup(say=_quiet, ec2=True)
    aws.faults.error("UpdateAutoScalingGroup", "AccessDenied", status=403, times=1)
    assert starburst.map(square, range(20), workers=2, backend="ec2") == [x * x for x in range(20)]
    said = capsys.readouterr().err
    assert "could not raise the Auto Scaling group (AWS denied UpdateAutoScalingGroup" in said
    assert "managed scaling starts instances" in said
    groups = boto3.client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
    activities = boto3.client("autoscaling").describe_scaling_activities()["Activities"]
    assert _live_instances(aws) == [], (
        said,
        [(g["AutoScalingGroupName"], g["DesiredCapacity"], g["Instances"]) for g in groups],
        [(a["StartTime"], a["Cause"], a["StatusCode"]) for a in activities],
        _tasks(),
    )


def test_a_small_vcpu_quota_starts_the_workers_it_holds_and_says_so(aws: Any, capsys) -> None:
    """The Spot quota of 4 vCPUs holds two c7i.large, two 1-vCPU workers on each: the call
    runs on 4 of its 8 workers, and says which quota and how to see it."""
    starburst.setup(say=_quiet, ec2=True)
    aws.quotas.set("L-34B43A08", 4)
    results = starburst.map(
        square, range(100), workers=8, backend="ec2", spot=True, instance_types=["c7i.large"]
    )
    assert results == [x * x for x in range(100)]
    err = capsys.readouterr().err
    assert "Requested 8 workers (8 vCPUs) but the EC2 vCPU quota allows 4 workers" in err
    assert "(EC2 standard Spot quota L-34B43A08: 4 vCPUs, 0 in use; `starburst quota`" in err
    assert len(_launched()) == 2
    assert len([t for t in _tasks() if t.get("startedBy")]) == 4
    assert _live_instances(aws) == []


def test_a_gpu_worker_counts_against_the_g_and_vt_quota(aws: Any) -> None:
    """GPU instances have quotas of their own: with none free, the call is refused before
    any instance or task starts, naming that quota (the standard ones are untouched)."""
    starburst.setup(say=_quiet, ec2=True)
    aws.quotas.set("L-DB2E81BA", 0)
    with pytest.raises(starburst.QuotaError, match=r"EC2 G and VT On-Demand quota L-DB2E81BA"):
        starburst.map(square, range(4), workers=2, gpus=1, memory="8GB", backend="ec2")
    assert _launched() == {} and "RunTask" not in aws.calls


def test_a_spot_shortage_moves_the_workers_to_on_demand_and_says_so(
    aws: Any, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Spot has no capacity: AWS says so only in the group's scaling activities. The user
    hears it as it happens, and after ``spot_patience`` the waiting workers move to on-demand
    instances; every result comes back, and the move costs no item an attempt."""
    starburst.setup(say=_quiet, ec2=True)
    monkeypatch.setenv("STARBURST_SPOT_PATIENCE", "3")
    aws.faults.fail_launches("starburst-spot", "spot", times=None)
    results = starburst.map(
        square, range(60), workers=4, backend="ec2", spot=True, retries=0,
        instance_types=["c7i.large"],
    )  # fmt: skip
    assert results == [x * x for x in range(60)]
    err = capsys.readouterr().err
    assert "the spot instances could not start: There is no Spot capacity available" in err
    assert "Spot found no instance for 4 workers in 3 s: moving them to on-demand" in err
    lifecycles = {
        i.get("InstanceLifecycle", "on-demand")
        for res in boto3.client("ec2").describe_instances()["Reservations"]
        for i in res["Instances"]
    }
    assert lifecycles == {"on-demand"}
    assert _live_instances(aws) == []


def test_a_quota_that_stops_launches_is_said_as_it_happens(aws: Any, capsys) -> None:
    """Launches that fail on the vCPU limit (another account's use, say, after the quota was
    read) are surfaced from the scaling activities while the workers wait."""
    starburst.setup(say=_quiet, ec2=True)
    aws.ec2.retry_interval = 4.0  # (the group tries again after 4 s: the workers wait)
    aws.faults.fail_launches("starburst-on-demand", "quota", times=2)
    results = starburst.map(square, range(20), workers=2, backend="ec2")
    assert results == [x * x for x in range(20)]
    err = capsys.readouterr().err
    assert "the on-demand instances could not start: You have requested more vCPU" in err
    assert "`starburst quota` shows the EC2 vCPU quotas" in err
