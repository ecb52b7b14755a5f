"""The EC2 backend's fleet: each worker is an ECS task on an EC2 instance of starburst's
Auto Scaling groups (``starburst setup --ec2``), several workers packed on one instance.

Started with RunTask as ``ecs_tasks`` does for every ECS fleet; what is EC2's own:

* tasks use host networking on public-IP instances (no NAT, no ENI per task) and poll the
  instance metadata for Spot notices (``--spot-notices``);
* RunTask names the Spot or on-demand capacity provider (weight 1, never a launch type, so
  that managed scaling sees the tasks); too many tasks waiting for instances is
  back-pressure (a ``capacity`` shortfall: the driver asks again later);
* capacity is kick-started: before the first launch, the group's types are set to those
  that carry this worker size and its desired capacity raised to the fewest instances that
  carry the workers, within the vCPU quota (a notice says when the quota is the limit);
* when the session ends, its empty instances are drained and terminated (scale to zero),
  never one that runs another session's tasks.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any, ClassVar

import botocore.exceptions

from ...aws import resources as r
from ...aws.connection import Aws, translate_errors
from ...aws.ec2_resources import overrides, template_kind
from ...aws.quotas import ec2_quotas
from ...cost.ec2_prices import ec2_prices
from ...errors import SetupRequiredError, StarburstError
from ...store import Store
from ..ecs_tasks import EcsTaskFleet, discard_unreadable, place_session
from .instances import InstanceType, choose_instance_types, fewest_instances

if TYPE_CHECKING:
    from ...cost.prices import PriceBook
    from ...options import WorkerSpec
    from ..base import LaunchRequest, Placement

#: How long the end of a session waits for its own tasks to stop before it gives back the
#: instances they leave empty (those still busy then are left to managed scaling).
_STOP_WAIT_SECONDS = 30.0


class Ec2Fleet(EcsTaskFleet):
    """Workers as ECS tasks on starburst's EC2 instances (Spot or on-demand)."""

    name = "ec2"
    phases: ClassVar[dict[str, str]] = {
        "PROVISIONING": "waiting for an instance",
        "PENDING": "pulling image",
        "ACTIVATING": "starting",
    }

    def __init__(self, aws: Aws, resources: dict[str, Any], image: str) -> None:
        super().__init__(aws, resources, image)
        self.ec2 = resources["ec2"]
        self.autoscaling = aws.client("autoscaling")
        self._kick_started = False

    @property
    def cluster(self) -> str:
        return str(self.ec2["cluster"])

    def price_book(self) -> PriceBook:
        """EC2 prices of the instance types (or families) and arch this session names."""
        chosen = self.resources.get("instance_types") or None
        return ec2_prices(self.aws, only=chosen, arch=self.resources.get("arch"))

    def size(self, spec: WorkerSpec) -> tuple[int, int]:
        return round(spec.cpu * 1024), spec.memory_mib or default_memory_mib(spec.cpu)

    def task_definition_body(self, cpu_units: int, memory_mib: int) -> dict[str, Any]:
        return {
            "networkMode": "host",  # the instance's public IP: awsvpc would have no route out
            "requiresCompatibilities": ["EC2"],
            "cpu": str(cpu_units),  # task-level sizes: what ECS binpacks by
            "memory": str(memory_mib),
            "containerDefinitions": [self._container(memory_mib)],
            **self.roles(),
        }

    def _container(self, memory_mib: int) -> dict[str, Any]:
        container = self.container(memory_mib, ["python", "-m", "starburst.worker"])
        gpus = int(self.resources.get("gpus") or 0)
        if gpus:  # ECS places the task only where this many GPUs are free
            container["resourceRequirements"] = [{"type": "GPU", "value": str(gpus)}]
        return container

    def worker_command(self, request: LaunchRequest) -> list[str]:
        return [*super().worker_command(request), "--spot-notices"]

    def placement(self, spot: bool) -> dict[str, Any]:
        provider = self.ec2["capacity_providers"]["spot" if spot else "on-demand"]
        return {"capacityProviderStrategy": [{"capacityProvider": provider, "weight": 1}]}

    def on_spot(self, task: dict[str, Any]) -> bool:
        return bool(task.get("capacityProviderName") == self.ec2["capacity_providers"]["spot"])

    # Kick-starting capacity ----------------------------------------------------------------

    def before_launch(self, request: LaunchRequest, count: int) -> None:
        """Before the first launch: the group's types for this worker size, and enough
        instances for ``count`` workers (managed scaling tops up, one step at a time)."""
        if self._kick_started:
            return
        self._kick_started = True
        spec = request.spec
        cpu_units, memory_mib = self.size(spec)
        types = self.instance_types(spec)
        gpus = int(self.resources.get("gpus") or 0)
        plan = fewest_instances(count, cpu_units / 1024, memory_mib, types, gpus)
        capacity = "spot" if spec.spot else "on-demand"
        wanted = self._within_quota(plan.count, types, spec.spot, gpus > 0)
        self._set_group(self.ec2["groups"][capacity], types, wanted)

    def instance_types(self, spec: WorkerSpec) -> list[InstanceType]:
        """The types that carry this session's workers (its choice, kept in its record)."""
        cpu_units, memory_mib = self.size(spec)
        return choose_instance_types(
            cpu_units / 1024,
            memory_mib,
            int(self.resources.get("gpus") or 0),
            self.resources.get("instance_types") or None,
            self.resources.get("arch"),
        )

    def _within_quota(self, wanted: int, types: list[InstanceType], spot: bool, gpus: bool) -> int:
        """``wanted`` instances, or as many as the free vCPU quota holds (saying so)."""
        try:
            quota = next(
                q for q in ec2_quotas(self.aws) if q.spot == spot and "G and VT" not in q.service
            )
        except (StarburstError, botocore.exceptions.BotoCoreError, StopIteration) as exc:
            self._notices.append(
                f"could not read the EC2 vCPU quota ({exc}): asking for {wanted} instances."
            )
            return wanted
        if quota.free is None:
            return wanted
        largest = max(t.vcpus for t in types)
        fits = math.floor(quota.free / largest)
        if fits >= wanted:
            return wanted
        self._notices.append(
            f"starting {fits} of the {wanted} instances these workers need: the {quota.label} "
            f"vCPU quota ({quota.code}: {quota.limit:g} vCPUs, {quota.used:g} in use) holds no "
            "more; `starburst quota` shows it, and AWS raises it on request"
        )
        return fits

    def _set_group(self, group_name: str, types: list[InstanceType], wanted: int) -> None:
        """Give ``group_name`` this run's types and at least ``wanted`` instances."""
        names = r.Names(self.resources["account_id"], self.aws.region)
        with translate_errors(f"start instances in the Auto Scaling group {group_name}"):
            group = self.autoscaling.describe_auto_scaling_groups(
                AutoScalingGroupNames=[group_name]
            )["AutoScalingGroups"][0]
            policy = {
                "LaunchTemplate": {
                    "LaunchTemplateSpecification": {
                        "LaunchTemplateName": names.launch_template(template_kind(types[0])),
                        "Version": "$Default",
                    },
                    "Overrides": overrides(names, types),
                },
                "InstancesDistribution": group["MixedInstancesPolicy"]["InstancesDistribution"],
            }
            desired = max(group["DesiredCapacity"], wanted)
            self.autoscaling.update_auto_scaling_group(
                AutoScalingGroupName=group_name,
                MixedInstancesPolicy=policy,  # (whole: a partial one is dropped)
                MaxSize=max(group["MaxSize"], desired),
                DesiredCapacity=desired,
            )

    # Scale to zero -------------------------------------------------------------------------

    def release_capacity(self, session_id: str) -> None:
        """Once the session's tasks have stopped (waiting up to ``_STOP_WAIT_SECONDS``),
        terminate every instance of starburst's groups that runs no task: registered ones
        are drained first, never one that still runs another session's work; one still
        booting (a managed-scaling step that came too late) goes too, unless tasks of
        another session wait for capacity."""
        deadline = time.monotonic() + _STOP_WAIT_SECONDS
        while any(info.state != "stopped" for info in self.find(session_id)):
            if time.monotonic() > deadline:
                break
            time.sleep(1.0)
        with translate_errors("give back the session's empty instances"):
            empty, booting = self._idle_instances()
            if empty:
                self.ecs.update_container_instances_state(
                    cluster=self.cluster, containerInstances=list(empty), status="DRAINING"
                )
                # A task placed between the look and the drain keeps its instance.
                busy = self._busy(list(empty))
                if busy:
                    self.ecs.update_container_instances_state(
                        cluster=self.cluster, containerInstances=busy, status="ACTIVE"
                    )
                for arn in busy:
                    del empty[arn]
            if booting and self._tasks_waiting():
                booting = {}
            for instance_id, group in [*empty.values(), *booting.items()]:
                self.autoscaling.set_instance_protection(
                    AutoScalingGroupName=group,
                    InstanceIds=[instance_id],
                    ProtectedFromScaleIn=False,
                )
                self.autoscaling.terminate_instance_in_auto_scaling_group(
                    InstanceId=instance_id, ShouldDecrementDesiredCapacity=True
                )

    def _idle_instances(self) -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
        """The instances of starburst's groups that run and expect no task: registered
        ones (container instance ARN -> (instance id, group)) and those not registered
        yet (instance id -> group)."""
        groups = self.autoscaling.describe_auto_scaling_groups(
            AutoScalingGroupNames=list(self.ec2["groups"].values())
        )["AutoScalingGroups"]
        group_of = {
            i["InstanceId"]: g["AutoScalingGroupName"]
            for g in groups
            for i in g["Instances"]
            if i["LifecycleState"] in ("Pending", "InService")
        }
        arns = [
            arn
            for page in self.ecs.get_paginator("list_container_instances").paginate(
                cluster=self.cluster
            )
            for arn in page["containerInstanceArns"]
        ]
        empty: dict[str, tuple[str, str]] = {}
        registered: set[str] = set()
        for start in range(0, len(arns), 100):
            described = self.ecs.describe_container_instances(
                cluster=self.cluster, containerInstances=arns[start : start + 100]
            )["containerInstances"]
            for ci in described:
                instance_id = ci["ec2InstanceId"]
                registered.add(instance_id)
                idle = ci["runningTasksCount"] + ci["pendingTasksCount"] == 0
                if idle and instance_id in group_of:
                    empty[ci["containerInstanceArn"]] = (instance_id, group_of[instance_id])
        booting = {i: g for i, g in group_of.items() if i not in registered}
        return empty, booting

    def _busy(self, arns: list[str]) -> list[str]:
        described = self.ecs.describe_container_instances(
            cluster=self.cluster, containerInstances=arns
        )["containerInstances"]
        return [
            ci["containerInstanceArn"]
            for ci in described
            if ci["runningTasksCount"] + ci["pendingTasksCount"] > 0
        ]

    def _tasks_waiting(self) -> bool:
        """Whether any task in the cluster still waits for an instance."""
        arns = self.ecs.list_tasks(cluster=self.cluster, desiredStatus="RUNNING")["taskArns"]
        for start in range(0, len(arns), 100):
            tasks = self.ecs.describe_tasks(cluster=self.cluster, tasks=arns[start : start + 100])
            if any(t["lastStatus"] == "PROVISIONING" for t in tasks["tasks"]):
                return True
        return False


def default_memory_mib(cpu: float) -> int:
    """A worker's memory when ``memory`` is not given: 1.75 GiB per vCPU, so that two
    1-vCPU workers fit the memory a c-family ``large`` registers."""
    return math.ceil(cpu * 1792)


def ec2_resources(resources: dict[str, Any]) -> None:
    """Refuse an account where ``starburst setup --ec2`` has not been run."""
    if not resources.get("ec2"):
        raise SetupRequiredError(
            "backend='ec2' needs its instances' groups, which are not set up in this AWS "
            "account yet: run `starburst setup --ec2` (a few minutes; free while idle), "
            "then try again"
        )


def place_on_ec2(spec: WorkerSpec, session_id: str) -> Placement:
    """The S3 store and EC2 fleet of the configured account."""
    chosen = {"gpus": spec.gpus, "instance_types": list(spec.instance_types), "arch": spec.arch}
    return place_session(Ec2Fleet, spec, session_id, check=ec2_resources, chosen=chosen)


def discard_unreadable_on_ec2(store: Store, session_id: str) -> None:
    """Remove a session whose record cannot be read: its EC2 tasks, definitions, role and
    data, and the instances it leaves empty."""
    discard_unreadable(Ec2Fleet, store, session_id)
