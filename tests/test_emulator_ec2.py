"""The emulator's ECS-on-EC2 side: Auto Scaling launches, container instances, placement,
instance metadata, Spot interruptions, failed launches, quotas and prices."""

from __future__ import annotations

import base64
import json
import time
from collections import Counter
from typing import Any

import pytest
from botocore.exceptions import ClientError

from starburst.emulator.capacity import SPOT_SHORTAGE
from starburst.emulator.emulator import Emulator
from starburst.emulator.emulator import wait_until as _wait
from starburst.emulator.instance_types import REGISTERED_MEMORY_SHARE

CLUSTER = "burst"
AMI_PARAMETER = "/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id"
# A task that reports its instance through IMDSv2, then works until stopped.
WHERE_AM_I = (
    "import os, time, urllib.request\n"
    "base = os.environ['STARBURST_IMDS_ENDPOINT']\n"
    "put = urllib.request.Request(base + '/latest/api/token', method='PUT',\n"
    "    headers={'X-aws-ec2-metadata-token-ttl-seconds': '21600'})\n"
    "token = urllib.request.urlopen(put).read().decode()\n"
    "get = urllib.request.Request(base + '/latest/meta-data/instance-id',\n"
    "    headers={'X-aws-ec2-metadata-token': token})\n"
    "print('on', urllib.request.urlopen(get).read().decode(), flush=True)\n"
    "time.sleep(60)\n"
)


def _pool(
    aws: Emulator,
    name: str = "spot",
    types: tuple[str, ...] = ("c7i.xlarge", "m7i.xlarge"),
    *,
    spot: bool = True,
    managed: bool = True,
    max_size: int = 4,
    step: int = 1,
    reserved_mib: int = 0,
) -> str:
    """A launch template, an Auto Scaling group of ``types`` and its capacity provider on
    cluster ``burst``, as the EC2 backend's setup makes them; returns the group's name."""
    ec2, ecs = aws.client("ec2"), aws.client("ecs")
    if not ecs.describe_clusters(clusters=[CLUSTER])["clusters"]:
        ecs.create_cluster(clusterName=CLUSTER)
    user_data = f"#!/bin/bash\necho ECS_CLUSTER={CLUSTER} >> /etc/ecs/ecs.config\n"
    if reserved_mib:
        user_data += f"echo ECS_RESERVED_MEMORY={reserved_mib} >> /etc/ecs/ecs.config\n"
    ec2.create_launch_template(
        LaunchTemplateName=f"{name}-template",
        LaunchTemplateData={
            "ImageId": f"resolve:ssm:{AMI_PARAMETER}",
            "UserData": base64.b64encode(user_data.encode()).decode(),
            "MetadataOptions": {"HttpTokens": "required", "HttpPutResponseHopLimit": 2},
        },
    )
    subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]][:3]
    on_demand = 0 if spot else 100
    aws.client("autoscaling").create_auto_scaling_group(
        AutoScalingGroupName=name,
        MinSize=0,
        MaxSize=max_size,
        DesiredCapacity=0,
        VPCZoneIdentifier=",".join(subnets),
        NewInstancesProtectedFromScaleIn=True,
        MixedInstancesPolicy={
            "LaunchTemplate": {
                "LaunchTemplateSpecification": {"LaunchTemplateName": f"{name}-template"},
                "Overrides": [{"InstanceType": t} for t in types],
            },
            "InstancesDistribution": {
                "OnDemandBaseCapacity": 0,
                "OnDemandPercentageAboveBaseCapacity": on_demand,
                "SpotAllocationStrategy": "price-capacity-optimized",
                "OnDemandAllocationStrategy": "lowest-price",
            },
        },
    )
    group = aws.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[name])
    ecs.create_capacity_provider(
        name=name,
        autoScalingGroupProvider={
            "autoScalingGroupArn": group["AutoScalingGroups"][0]["AutoScalingGroupARN"],
            "managedScaling": {
                "status": "ENABLED" if managed else "DISABLED",
                "targetCapacity": 100,
                "minimumScalingStepSize": step,
                "maximumScalingStepSize": 10,
                "instanceWarmupPeriod": 60,
            },
            "managedTerminationProtection": "ENABLED" if managed else "DISABLED",
        },
    )
    providers = ecs.describe_clusters(clusters=[CLUSTER])["clusters"][0].get("capacityProviders")
    ecs.put_cluster_capacity_providers(
        cluster=CLUSTER,
        capacityProviders=[*(providers or []), name],
        defaultCapacityProviderStrategy=[],
    )
    return name


def _task_definition(
    aws: Emulator, command: list[str], cpu: int = 1024, memory: int = 2048, gpus: int = 0
) -> str:
    container: dict[str, Any] = {
        "name": "main",
        "image": "python:3.11-slim",
        "command": command,
        "essential": True,
    }
    if gpus:
        container["resourceRequirements"] = [{"type": "GPU", "value": str(gpus)}]
    answer = aws.client("ecs").register_task_definition(
        family="worker",
        requiresCompatibilities=["EC2"],
        networkMode="host",
        cpu=str(cpu),
        memory=str(memory),
        containerDefinitions=[container],
    )
    return answer["taskDefinition"]["taskDefinitionArn"]


def _run(aws: Emulator, task_def: str, count: int, *providers: str) -> dict[str, Any]:
    return aws.client("ecs").run_task(
        cluster=CLUSTER,
        taskDefinition=task_def,
        count=count,
        capacityProviderStrategy=[
            {"capacityProvider": p, "weight": 1} for p in providers or ("spot",)
        ],
    )


def _instances(aws: Emulator) -> dict[str, dict[str, Any]]:
    reservations = aws.client("ec2").describe_instances()["Reservations"]
    return {i["InstanceId"]: i for r in reservations for i in r["Instances"]}


def _container_instances(aws: Emulator) -> list[dict[str, Any]]:
    ecs = aws.client("ecs")
    arns = ecs.list_container_instances(cluster=CLUSTER)["containerInstanceArns"]
    if not arns:
        return []
    return ecs.describe_container_instances(cluster=CLUSTER, containerInstances=arns)[
        "containerInstances"
    ]


def _resource(container_instance: dict[str, Any], kind: str, name: str) -> int:
    (found,) = [r for r in container_instance[kind] if r["name"] == name]
    return found["integerValue"]


def _imds(aws: Emulator, instance_id: str, path: str) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    base = aws.ec2.imds_endpoint(instance_id)
    put = urllib.request.Request(
        base + "/latest/api/token",
        method="PUT",
        headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"},
    )
    token = urllib.request.urlopen(put).read().decode()
    get = urllib.request.Request(
        base + "/latest/meta-data/" + path, headers={"X-aws-ec2-metadata-token": token}
    )
    try:
        with urllib.request.urlopen(get) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, ""


# ---- instances appear when desired capacity rises ----------------------------------------


def test_raising_desired_capacity_launches_instances_that_register(aws: Emulator) -> None:
    group = _pool(aws, reserved_mib=256)
    aws.client("autoscaling").set_desired_capacity(AutoScalingGroupName=group, DesiredCapacity=3)
    launched = aws.ec2.wait_for_instances(3, group)

    instances = _instances(aws)
    ami = aws.client("ssm").get_parameter(Name=AMI_PARAMETER)["Parameter"]["Value"]
    assert sorted(instances) == sorted(launched)
    # Types round-robin over the overrides; Spot, as the distribution asks; the AMI the
    # SSM parameter names; spread over the group's subnets.
    assert Counter(i["InstanceType"] for i in instances.values()) == {
        "c7i.xlarge": 2,
        "m7i.xlarge": 1,
    }
    assert {i.get("InstanceLifecycle") for i in instances.values()} == {"spot"}
    assert {i["ImageId"] for i in instances.values()} == {ami}
    assert len({i["Placement"]["AvailabilityZone"] for i in instances.values()}) == 3

    described = aws.client("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[group]
    )["AutoScalingGroups"][0]
    assert {(i["LifecycleState"], i["ProtectedFromScaleIn"]) for i in described["Instances"]} == {
        ("InService", True)
    }

    registered = {ci["ec2InstanceId"]: ci for ci in _container_instances(aws)}
    assert sorted(registered) == sorted(launched)
    for instance_id, ci in registered.items():
        memory = {"c7i.xlarge": 8192, "m7i.xlarge": 16384}[instances[instance_id]["InstanceType"]]
        assert _resource(ci, "registeredResources", "CPU") == 4096
        assert _resource(ci, "registeredResources", "MEMORY") == (
            int(memory * REGISTERED_MEMORY_SHARE) - 256
        )
        assert ci["capacityProviderName"] == group
        assert ci["status"] == "ACTIVE"
    assert int(8192 * REGISTERED_MEMORY_SHARE) == 7985  # the figure AWS documents

    activities = aws.client("autoscaling").describe_scaling_activities(AutoScalingGroupName=group)[
        "Activities"
    ]
    assert [a["StatusCode"] for a in activities] == ["Successful"] * 3
    assert {a["Description"].rsplit(" ", 1)[-1] for a in activities} == set(launched)


def test_on_demand_groups_launch_the_cheapest_type(aws: Emulator) -> None:
    aws.prices.set_instance("m7i.xlarge", 0.01)
    group = _pool(aws, "ondemand", spot=False)
    aws.client("autoscaling").set_desired_capacity(AutoScalingGroupName=group, DesiredCapacity=2)
    aws.ec2.wait_for_instances(2, group)
    instances = _instances(aws).values()
    assert {i["InstanceType"] for i in instances} == {"m7i.xlarge"}
    assert {i.get("InstanceLifecycle") for i in instances} == {None}


# ---- placement --------------------------------------------------------------------------


def test_tasks_binpack_wait_in_provisioning_and_run_when_capacity_comes(aws: Emulator) -> None:
    group = _pool(aws, types=("c7i.xlarge", "m7i.xlarge"), max_size=3)
    autoscaling = aws.client("autoscaling")
    autoscaling.set_desired_capacity(AutoScalingGroupName=group, DesiredCapacity=2)
    small, large = aws.ec2.wait_for_instances(2, group)  # c7i: 7985 MiB, m7i: 15970 MiB

    # 0.5 vCPU / 2 GiB tasks, binpacked by memory: the instance with the least memory left
    # first, so the first three go to the c7i.xlarge (and fill it: not four, it registers
    # less than 8 GiB), the next seven fill the m7i.xlarge; the eleventh fits nowhere.
    task_def = _task_definition(aws, ["python", "-c", WHERE_AM_I], cpu=512)
    first = [t["taskArn"] for t in _run(aws, task_def, 3)["tasks"]]
    aws.runner.wait_for_tasks(first, "RUNNING")
    assert {aws.ec2.host_of(arn) for arn in first} == {small}
    answer = _run(aws, task_def, 8)
    assert answer["failures"] == []
    assert answer["tasks"][-1]["lastStatus"] == "PROVISIONING"
    assert {t["launchType"] for t in answer["tasks"]} == {"EC2"}
    arns = first + [t["taskArn"] for t in answer["tasks"]]
    aws.runner.wait_for_tasks(arns[:10], "RUNNING")
    hosts = Counter(aws.ec2.host_of(arn) for arn in arns)
    assert hosts == {small: 3, large: 7, None: 1}

    # Managed scaling adds an instance for the waiting task; it is placed there.
    waiting = arns[10]
    aws.runner.wait_for_tasks([waiting], "RUNNING")
    third = aws.ec2.host_of(waiting)
    assert third not in (small, large)
    described = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group])
    assert described["AutoScalingGroups"][0]["DesiredCapacity"] == 3

    # Each task's process runs, and finds its own instance through the metadata endpoint.
    for arn in arns:
        _wait(lambda arn=arn: aws.runner.output(arn), "the task to print")
        assert aws.runner.output(arn) == [f"on {aws.ec2.host_of(arn)}"]
    task = aws.client("ecs").describe_tasks(cluster=CLUSTER, tasks=[waiting])["tasks"][0]
    assert task["lastStatus"] == "RUNNING" and task["capacityProviderName"] == group
    assert aws.runner.history(waiting) == ["PROVISIONING", "PENDING", "RUNNING"]
    full = {ci["ec2InstanceId"]: ci for ci in _container_instances(aws)}[small]
    assert full["runningTasksCount"] == 3
    assert _resource(full, "remainingResources", "MEMORY") == 7985 - 3 * 2048
    assert _resource(full, "remainingResources", "CPU") == 4096 - 3 * 512

    # A stopped task gives its instance's resources back.
    aws.client("ecs").stop_task(cluster=CLUSTER, task=waiting)
    aws.runner.wait_for_tasks([waiting])

    def memory_back() -> bool:
        ci = {c["ec2InstanceId"]: c for c in _container_instances(aws)}[third]
        return _resource(ci, "remainingResources", "MEMORY") == 7985

    _wait(memory_back, "the third instance's memory to come back")


def test_draining_instances_take_no_new_tasks(aws: Emulator) -> None:
    group = _pool(aws, types=("c7i.xlarge",), managed=False)
    aws.client("autoscaling").set_desired_capacity(AutoScalingGroupName=group, DesiredCapacity=1)
    aws.ec2.wait_for_instances(1, group)
    ecs = aws.client("ecs")
    (arn,) = ecs.list_container_instances(cluster=CLUSTER)["containerInstanceArns"]
    ecs.update_container_instances_state(
        cluster=CLUSTER, containerInstances=[arn], status="DRAINING"
    )
    # Without managed scaling a task that fits nowhere fails at once, as ECS lists it.
    answer = _run(aws, _task_definition(aws, ["true"]), 2)
    assert answer["tasks"] == []
    assert (
        answer["failures"] == [{"reason": "No Container Instances were found in your cluster."}] * 2
    )
    ecs.update_container_instances_state(cluster=CLUSTER, containerInstances=[arn], status="ACTIVE")
    big = _task_definition(aws, ["true"], cpu=1024, memory=8192)
    answer = _run(aws, big, 1)
    assert answer["failures"] == [{"arn": arn, "reason": "RESOURCE:MEMORY"}]


def test_gpu_tasks_go_only_to_gpu_instances(aws: Emulator) -> None:
    autoscaling = aws.client("autoscaling")
    for group in (_pool(aws, "cpu", ("c7i.xlarge",), managed=False),
                  _pool(aws, "gpu", ("g5.xlarge",), managed=False)):  # fmt: skip
        autoscaling.set_desired_capacity(AutoScalingGroupName=group, DesiredCapacity=1)
    (cpu_host,) = aws.ec2.wait_for_instances(1, "cpu")
    (gpu_host,) = aws.ec2.wait_for_instances(1, "gpu")
    gpu_ci = next(c for c in _container_instances(aws) if c["ec2InstanceId"] == gpu_host)
    (gpu,) = [r for r in gpu_ci["registeredResources"] if r["name"] == "GPU"]
    assert len(gpu["stringSetValue"]) == 1  # a g5.xlarge has one GPU
    cpu_ci = next(c for c in _container_instances(aws) if c["ec2InstanceId"] == cpu_host)
    assert "GPU" not in {r["name"] for r in cpu_ci["registeredResources"]}

    needs_gpu = _task_definition(aws, ["sleep", "60"], gpus=1)
    answer = _run(aws, needs_gpu, 2, "cpu", "gpu")
    (placed,) = answer["tasks"]
    assert answer["failures"][0]["reason"] == "RESOURCE:GPU"  # one GPU, two tasks
    aws.runner.wait_for_tasks([placed["taskArn"]], "RUNNING")
    assert aws.ec2.host_of(placed["taskArn"]) == gpu_host
    task = aws.client("ecs").describe_tasks(cluster=CLUSTER, tasks=[placed["taskArn"]])
    assert task["tasks"][0]["capacityProviderName"] == "gpu"


def test_deleting_a_group_terminates_its_instances(aws: Emulator) -> None:
    autoscaling = aws.client("autoscaling")
    group = _pool(aws, types=("c7i.xlarge",), managed=False)
    autoscaling.set_desired_capacity(AutoScalingGroupName=group, DesiredCapacity=2)
    launched = aws.ec2.wait_for_instances(2, group)
    autoscaling.delete_auto_scaling_group(AutoScalingGroupName=group, ForceDelete=True)
    _wait(lambda: aws.ec2.instances() == [], "the instances to go")
    assert {_instances(aws)[i]["State"]["Name"] for i in launched} == {"terminated"}
    assert _container_instances(aws) == []


def test_at_most_500_tasks_wait_in_provisioning_per_cluster(aws: Emulator) -> None:
    group = _pool(aws)
    aws.faults.fail_launches(group, "spot")  # nothing ever gets placed
    task_def = _task_definition(aws, ["true"])
    for _ in range(50):
        assert len(_run(aws, task_def, 10)["tasks"]) == 10
    with pytest.raises(ClientError) as caught:
        _run(aws, task_def, 1)
    assert caught.value.response["Error"]["Code"] == "ClientException"
    assert (
        caught.value.response["Error"]["Message"] == "Tasks provisioning capacity limit exceeded."
    )
    listed = aws.client("ecs").get_paginator("list_tasks").paginate(cluster=CLUSTER)
    assert sum(len(page["taskArns"]) for page in listed) == 500
    # A waiting task stopped by its caller stops at once, never started, and makes room.
    first = aws.runner.task_arns[0]
    aws.client("ecs").stop_task(cluster=CLUSTER, task=first, reason="spot is slow")
    aws.runner.wait_for_tasks([first])
    task = aws.client("ecs").describe_tasks(cluster=CLUSTER, tasks=[first])["tasks"][0]
    assert task["stopCode"] == "UserInitiated" and task["stoppedReason"] == "spot is slow"
    assert aws.runner.process(first) is None
    assert len(_run(aws, task_def, 1)["tasks"]) == 1


def test_managed_scaling_ignores_tasks_too_big_for_the_smallest_type(aws: Emulator) -> None:
    autoscaling = aws.client("autoscaling")
    group = _pool(aws, types=("c7i.xlarge", "m7i.xlarge"), step=2)
    # 8 GiB fits an m7i.xlarge but not the 7985 MiB a c7i.xlarge registers: no scaling.
    too_big = _run(aws, _task_definition(aws, ["true"], memory=8192), 1)["tasks"][0]["taskArn"]
    time.sleep(1.0)
    assert aws.ec2.instances(group) == []
    # A task that fits every type: one step of minimumScalingStepSize instances.
    fits = _run(aws, _task_definition(aws, ["sleep", "60"]), 1)["tasks"][0]["taskArn"]
    aws.runner.wait_for_tasks([fits], "RUNNING")
    described = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group])
    assert described["AutoScalingGroups"][0]["DesiredCapacity"] == 2
    # Once an m7i.xlarge is up, the big task is placed there after all.
    aws.runner.wait_for_tasks([too_big], "PENDING")
    assert _instances(aws)[aws.ec2.host_of(too_big)]["InstanceType"] == "m7i.xlarge"


# ---- Spot interruptions -----------------------------------------------------------------


def test_a_spot_notice_shows_in_imds_and_termination_stops_the_tasks(aws: Emulator) -> None:
    group = _pool(aws, types=("c7i.xlarge",), managed=False)
    aws.client("autoscaling").set_desired_capacity(AutoScalingGroupName=group, DesiredCapacity=1)
    (instance,) = aws.ec2.wait_for_instances(1, group)
    arns = [t["taskArn"] for t in _run(aws, _task_definition(aws, ["sleep", "60"]), 2)["tasks"]]
    aws.runner.wait_for_tasks(arns, "RUNNING")

    assert _imds(aws, instance, "instance-id") == (200, instance)
    assert _imds(aws, instance, "instance-life-cycle") == (200, "spot")
    assert _imds(aws, instance, "spot/instance-action") == (404, "")
    aws.faults.spot_notice(instance)
    status, body = _imds(aws, instance, "spot/instance-action")
    assert status == 200 and json.loads(body)["action"] == "terminate"
    assert json.loads(body)["time"].endswith("Z")
    import urllib.error
    import urllib.request

    no_token = aws.ec2.imds_endpoint(instance) + "/latest/meta-data/instance-id"
    with pytest.raises(urllib.error.HTTPError, match="401"):
        urllib.request.urlopen(no_token)

    aws.faults.terminate_instance(instance)
    aws.runner.wait_for_tasks(arns)
    for task in aws.client("ecs").describe_tasks(cluster=CLUSTER, tasks=arns)["tasks"]:
        assert task["stopCode"] == "TerminationNotice"
        assert task["stoppedReason"] == f"Host EC2 (instance {instance}) terminated."
    assert _instances(aws)[instance]["State"]["Name"] == "terminated"
    # Its container instance left the cluster; the group launched a replacement.
    replacement = _wait(
        lambda: [i for i in aws.ec2.instances(group, registered=True) if i != instance],
        "a replacement instance",
    )
    assert [ci["ec2InstanceId"] for ci in _container_instances(aws)] == replacement


# ---- failed launches --------------------------------------------------------------------


def test_injected_spot_shortage_and_quota_appear_as_failed_scaling_activities(
    aws: Emulator,
) -> None:
    autoscaling = aws.client("autoscaling")
    group = _pool(aws, types=("c7i.xlarge",))
    aws.faults.fail_launches(group, "spot")
    autoscaling.set_desired_capacity(AutoScalingGroupName=group, DesiredCapacity=1)

    def failed() -> list[dict[str, Any]]:
        activities = autoscaling.describe_scaling_activities(AutoScalingGroupName=group)
        return [a for a in activities["Activities"] if a["StatusCode"] == "Failed"]

    shortage = _wait(lambda: len(failed()) >= 2 and failed(), "repeated failed launches")
    assert shortage[0]["StatusMessage"].startswith(SPOT_SHORTAGE)
    assert aws.ec2.instances(group) == []
    aws.faults.clear_launch_failures(group)
    aws.ec2.wait_for_instances(1, group)

    # The Spot vCPU quota (L-34B43A08): 6 vCPUs hold one 4-vCPU instance, not two.
    aws.quotas.set("L-34B43A08", 6)
    autoscaling.set_desired_capacity(AutoScalingGroupName=group, DesiredCapacity=2)
    quota = _wait(lambda: [a for a in failed() if "vCPU limit" in a["StatusMessage"]], "quota")
    assert "current vCPU limit of 6 allows" in quota[0]["StatusMessage"]
    assert len(aws.ec2.instances(group)) == 1


# ---- scale in ---------------------------------------------------------------------------


def test_scale_in_removes_only_unprotected_instances(aws: Emulator) -> None:
    autoscaling = aws.client("autoscaling")
    group = _pool(aws, types=("c7i.xlarge",), managed=False)
    autoscaling.set_desired_capacity(AutoScalingGroupName=group, DesiredCapacity=3)
    first, second, third = aws.ec2.wait_for_instances(3, group)

    # TerminateInstanceInAutoScalingGroup, decrementing: gone, and not replaced.
    autoscaling.terminate_instance_in_auto_scaling_group(
        InstanceId=first, ShouldDecrementDesiredCapacity=True
    )
    _wait(lambda: first not in aws.ec2.instances(group), "the instance to go")
    _wait(lambda: len(_container_instances(aws)) == 2, "its container instance to leave")

    # Lower desired capacity: only the unprotected instance goes.
    autoscaling.set_instance_protection(
        AutoScalingGroupName=group, InstanceIds=[third], ProtectedFromScaleIn=False
    )
    autoscaling.set_desired_capacity(AutoScalingGroupName=group, DesiredCapacity=0)
    _wait(lambda: aws.ec2.instances(group) == [second], "the unprotected instance to go")
    time.sleep(0.3)  # no replacement comes
    assert aws.ec2.instances(group) == [second]
    assert {ci["ec2InstanceId"] for ci in _container_instances(aws)} == {second}
    states = _instances(aws)
    assert states[first]["State"]["Name"] == states[third]["State"]["Name"] == "terminated"


# ---- quotas and prices ------------------------------------------------------------------


def test_ec2_vcpu_quotas_and_prices_are_readable(aws: Emulator) -> None:
    sq = aws.client("service-quotas")
    names = {
        code: sq.get_service_quota(ServiceCode="ec2", QuotaCode=code)["Quota"]
        for code in ("L-1216C47A", "L-34B43A08", "L-DB2E81BA", "L-3819A6DF")
    }
    assert names["L-1216C47A"]["QuotaName"].startswith("Running On-Demand Standard")
    assert names["L-3819A6DF"]["QuotaName"] == "All G and VT Spot Instance Requests"
    assert names["L-34B43A08"]["UsageMetric"]["MetricDimensions"]["Service"] == "EC2"
    aws.quotas.set("L-34B43A08", 32)
    assert sq.get_service_quota(ServiceCode="ec2", QuotaCode="L-34B43A08")["Quota"]["Value"] == 32
    default = sq.get_aws_default_service_quota(ServiceCode="ec2", QuotaCode="L-DB2E81BA")
    assert default["Quota"]["Value"] == 0
    listed = sq.list_service_quotas(ServiceCode="ec2")["Quotas"]
    assert {q["QuotaCode"] for q in listed} == set(names)
    with pytest.raises(ClientError, match="NoSuchResourceException"):
        sq.get_service_quota(ServiceCode="ec2", QuotaCode="L-3032A538")  # a Fargate code

    ec2 = aws.client("ec2")
    aws.prices.set_spot("c7i.xlarge", 0.0612, zone="us-east-1b")
    history = ec2.describe_spot_price_history(
        InstanceTypes=["c7i.xlarge", "m7i.xlarge"], ProductDescriptions=["Linux/UNIX"]
    )["SpotPriceHistory"]
    prices = {(h["InstanceType"], h["AvailabilityZone"]): float(h["SpotPrice"]) for h in history}
    assert prices[("c7i.xlarge", "us-east-1b")] == 0.0612
    assert prices[("c7i.xlarge", "us-east-1a")] == round(0.1785 * 0.35, 4)
    assert ("m7i.xlarge", "us-east-1a") in prices

    aws.prices.set_instance("c7i.xlarge", 0.2)
    filters = [
        {"Type": "TERM_MATCH", "Field": field, "Value": value}
        for field, value in (
            ("instanceType", "c7i.xlarge"),
            ("regionCode", "us-east-1"),
            ("operatingSystem", "Linux"),
            ("tenancy", "Shared"),
            ("preInstalledSw", "NA"),
            ("capacitystatus", "Used"),
        )
    ]
    (item,) = aws.client("pricing").get_products(ServiceCode="AmazonEC2", Filters=filters)[
        "PriceList"
    ]
    (term,) = json.loads(item)["terms"]["OnDemand"].values()
    (dimension,) = term["priceDimensions"].values()
    assert float(dimension["pricePerUnit"]["USD"]) == 0.2
