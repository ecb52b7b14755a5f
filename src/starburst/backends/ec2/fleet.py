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
  never one that runs another session's tasks; with ``keep_warm`` they stay up for the next
  call until a time the groups carry (``warmth.py``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

import botocore.exceptions

from ...aws import resources as r
from ...aws.connection import Aws, translate_errors
from ...aws.ec2_resources import overrides, template_kind
from ...aws.quotas import VcpuQuota, ec2_quotas
from ...cost.ec2_prices import ec2_prices
from ...errors import AwsPermissionError, SetupRequiredError, StarburstError
from ...settings import resolve
from ...store import Store
from ..ecs_tasks import EcsTaskFleet, discard_unreadable, place_session
from .instances import (
    InstanceType,
    Kickstart,
    fewest_instances,
    most_workers_within,
)
from .sharing import Need, forget_needs, group_types, is_fresh, record_need, recorded_needs
from .usage import InstanceUsage
from .warmth import keep_warm_until, warm_until

if TYPE_CHECKING:
    from ...cost.prices import PriceBook
    from ...options import WorkerSpec
    from ..base import InstanceUse, LaunchRequest, Placement, WorkerInfo

#: How long the end of a session waits for its own tasks to stop before it gives back the
#: instances they leave empty (those still busy then are left to managed scaling).
_STOP_WAIT_SECONDS = 30.0
#: How long Spot workers may wait for an instance before they move to on-demand ones (the
#: ``spot_patience`` setting changes it).
SPOT_PATIENCE_SECONDS = 180.0
#: How often the groups' scaling activities are read while workers wait for instances.
_ACTIVITY_SECONDS = 10.0
#: What a worker stopped to move to on-demand says it stopped for.
_MOVED = "no Spot capacity: moved to an on-demand instance"
#: The lifecycle states of an Auto Scaling group's instances that are (or will be) up.
_UP = ("Pending", "InService")


class Ec2Fleet(EcsTaskFleet):
    """Workers as ECS tasks on starburst's EC2 instances (Spot or on-demand)."""

    name = "ec2"
    quota_name = "EC2 vCPU quota"
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
        self.spot_fallback = False  # Spot found no instance in time: on-demand from then on
        self._spec: WorkerSpec | None = None
        self._session_id = ""  # the session that launches (known at its first launch)
        self._opened = time.time()  # scaling activities before this are another session's
        self._spot_waiting_since: float | None = None
        self._activities_read = 0.0
        self._activities_seen: set[str] = set()
        self._moved: set[str] = set()  # workers stopped to move to on-demand

    reads_instances = True

    @staticmethod
    def cluster_in(resources: dict[str, Any]) -> str:
        return str(resources["ec2"]["cluster"])

    def price_book(self) -> PriceBook:
        """EC2 prices of the instance types (or families) and arch this session names."""
        chosen = self.resources.get("instance_types") or None
        return ec2_prices(self.aws, only=chosen, arch=self.resources.get("arch"))

    def instance_usage(self, session_id: str, since: float) -> list[InstanceUse]:
        """The instances of starburst's groups this session's workers ran on since ``since``,
        each at its own price, shared ones split by task vCPU-seconds (``usage.py``)."""
        return self._usage.read(session_id, since)

    @functools.cached_property
    def _usage(self) -> InstanceUsage:
        return InstanceUsage(self.aws, self.cluster, list(self.ec2["groups"].values()))

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
        spot = spot and not self.spot_fallback
        provider = self.ec2["capacity_providers"]["spot" if spot else "on-demand"]
        return {"capacityProviderStrategy": [{"capacityProvider": provider, "weight": 1}]}

    def on_spot(self, task: dict[str, Any]) -> bool:
        return bool(task.get("capacityProviderName") == self.ec2["capacity_providers"]["spot"])

    # Kick-starting capacity ----------------------------------------------------------------

    def before_launch(self, request: LaunchRequest, count: int) -> None:
        """Before the first launch: the group's types for this worker size, and enough
        instances for ``count`` workers (managed scaling tops up, one step at a time)."""
        self._spec, self._session_id = request.spec, request.session_id
        if self._kick_started:
            return
        self._kick_started = True
        with self._or_managed_scaling():
            self._hold_warm_instances()
            self._kick_start(request.spec, count, request.spec.spot and not self.spot_fallback)

    @contextlib.contextmanager
    def _or_managed_scaling(self) -> Iterator[None]:
        """Change the groups in the block; where this session may not (a worker supervising
        a detached session: its role reads the groups, never changes them), say that the
        capacity provider's managed scaling starts the instances instead."""
        try:
            yield
        except AwsPermissionError as exc:
            self._notices.append(
                f"could not raise the Auto Scaling group ({exc}); the capacity provider's "
                "managed scaling starts instances for the waiting workers instead, in a few "
                "minutes"
            )

    def _hold_warm_instances(self) -> None:
        """With ``keep_warm``, move the groups' warm time on now: an earlier call's process
        must not give back the instances this session is about to use or has just used."""
        if self.resources.get("keep_warm"):
            with translate_errors("keep the instances warm"):
                self._move_warm_time(leave_behind=False)

    def _move_warm_time(self, *, leave_behind: bool) -> float:
        """Move the groups' warm time on to this session's ``keep_warm`` from now (never
        back; ``leave_behind``: with the process that gives the instances back then), and
        return the warm time."""
        groups = list(self.ec2["groups"].values())
        until = warm_until(self.autoscaling, groups)
        keep = float(self.resources.get("keep_warm") or 0.0)
        if keep and time.time() + keep > until:
            until = time.time() + keep
            keep_warm_until(self.autoscaling, groups, until, leave_behind=leave_behind)
        return until

    def _kick_start(self, spec: WorkerSpec, count: int, spot: bool) -> None:
        """Raise the Spot or on-demand group by the fewest instances that carry the
        ``count`` workers its instances have no room for (warm ones, those booting, room
        left beside another session's tasks), within the vCPU quota, with the types every
        live session on the group can use (``sharing.py``), this run's first."""
        cpu_units, memory_mib = self.size(spec)
        gpus = int(self.resources.get("gpus") or 0)
        group = self._group(spot)
        need = self._need(spec)
        types = self._shared_types(group, need)
        mine = [t for t in types if need.carried_by(t)]
        lacking = max(0, count - self._room(group, need, mine))
        plan = fewest_instances(lacking, cpu_units / 1024, memory_mib, mine, gpus)
        more = self._within_quota(plan.count, plan, spot, gpus > 0) if plan.count else 0
        self._set_group(group, plan.first_in(types), group["DesiredCapacity"] + more)

    def _need(self, spec: WorkerSpec) -> Need:
        """What this session's workers need of an instance, as the groups record it."""
        cpu_units, memory_mib = self.size(spec)
        return Need(
            cpu_units,
            memory_mib,
            int(self.resources.get("gpus") or 0),
            self.resources.get("arch"),
            tuple(self.resources.get("instance_types") or ()),
            recorded=time.time(),
        )

    def _shared_types(self, group: dict[str, Any], need: Need) -> list[InstanceType]:
        """Record this session's ``need`` on ``group`` and return the types for it and for
        the other sessions live on the group (those with tasks, or that just asked); the
        needs of sessions gone without a word (a killed client) are taken off."""
        name = group["AutoScalingGroupName"]
        others = {s: n for s, n in recorded_needs(group).items() if s != self._session_id}
        gone = [s for s, n in others.items() if not is_fresh(n) and not self._has_tasks(s)]
        with translate_errors(f"record this session's instance types on {name}"):
            forget_needs(self.autoscaling, name, gone)
            record_need(self.autoscaling, name, self._session_id, need)
        return group_types([need, *(n for s, n in others.items() if s not in gone)])

    def _has_tasks(self, session_id: str) -> bool:
        """Whether a session has a task in the cluster that is not stopping."""
        with translate_errors("list the tasks of the sessions sharing the instances"):
            return bool(
                self.ecs.list_tasks(
                    cluster=self.cluster, startedBy=session_id, desiredStatus="RUNNING"
                )["taskArns"]
            )

    def _room(self, group: dict[str, Any], need: Need, types: list[InstanceType]) -> int:
        """How many workers of ``need``'s size ``group``'s instances take now: the room left
        on those registered (warm, or beside other tasks), and on each still booting or asked
        for and not launched as much as the least of ``types`` carries."""
        cpu, gpus = need.cpu_units / 1024, need.gpus
        least = min((t.workers_that_fit(cpu, need.memory_mib, gpus) for t in types), default=0)
        up = {i["InstanceId"] for i in group["Instances"] if i["LifecycleState"] in _UP}
        with translate_errors(f"see the room on the instances of {group['AutoScalingGroupName']}"):
            mine = [ci for ci in self._container_instances() if ci["ec2InstanceId"] in up]
        room = sum(
            _workers_left(ci["remainingResources"], need)
            for ci in mine
            if ci.get("status") == "ACTIVE"
        )
        return room + max(0, group["DesiredCapacity"] - len(mine)) * least

    def instance_types(self, spec: WorkerSpec) -> list[InstanceType]:
        """The types that carry this session's workers (its choice, kept in its record)."""
        return self._need(spec).types()

    def quota_room(self, spec: WorkerSpec) -> tuple[int, str] | None:
        """How many workers the group's instances (the room they have left: ``_room``)
        and the free EC2 vCPU quota can carry: the quota's room is counted in the fewest
        instances that carry them."""
        quota = self._quota(spec.spot, spec.gpus > 0)
        if quota is None or quota.free is None:
            return None
        cpu_units, memory_mib = self.size(spec)
        cpu, types = cpu_units / 1024, self.instance_types(spec)
        warm = self._room(self._group(spec.spot), self._need(spec), types)
        more = most_workers_within(quota.free, spec.workers, cpu, memory_mib, types, spec.gpus)
        about = (
            f"({quota.label} quota {quota.code}: {quota.limit:g} vCPUs, {quota.used:g} in use; "
            "`starburst quota` shows it, and AWS raises it on request)"
        )
        return warm + more, about

    def _quota(self, spot: bool, gpus: bool) -> VcpuQuota | None:
        """The EC2 vCPU quota this session's instances count against (``None``, with a
        notice, when it cannot be read)."""
        try:
            return next(
                q
                for q in ec2_quotas(self.aws)
                if q.spot == spot and ("G and VT" in q.service) == gpus
            )
        except (StarburstError, botocore.exceptions.BotoCoreError, StopIteration) as exc:
            self._notices.append(f"could not read the EC2 vCPU quota ({exc}).")
            return None

    def _within_quota(self, wanted: int, plan: Kickstart, spot: bool, gpus: bool) -> int:
        """``wanted`` more instances of ``plan``'s, or as many as the free vCPU quota holds
        (saying so)."""
        quota = self._quota(spot, gpus)
        if quota is None or quota.free is None:
            return wanted
        largest = max(t.vcpus for t, _ in plan.instances)
        fits = math.floor(quota.free / largest)
        if fits >= wanted:
            return wanted
        self._notices.append(
            f"starting {fits} of the {wanted} instances these workers need: the {quota.label} "
            f"vCPU quota ({quota.code}: {quota.limit:g} vCPUs, {quota.used:g} in use) holds no "
            "more; `starburst quota` shows it, and AWS raises it on request"
        )
        return fits

    def _group(self, spot: bool) -> dict[str, Any]:
        """The Spot or on-demand Auto Scaling group, as AWS describes it."""
        name = self.ec2["groups"]["spot" if spot else "on-demand"]
        with translate_errors(f"read the Auto Scaling group {name}"):
            return dict(
                self.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])[
                    "AutoScalingGroups"
                ][0]
            )

    def _set_group(
        self, group: dict[str, Any], types: list[InstanceType], wanted: int | None = None
    ) -> None:
        """Give ``group`` these types (the first launched first, on-demand) and ``wanted``
        instances (None: as many as it has)."""
        names = r.Names(self.resources["account_id"], self.aws.region)
        group_name = group["AutoScalingGroupName"]
        with translate_errors(f"start instances in the Auto Scaling group {group_name}"):
            policy = {
                "LaunchTemplate": {
                    "LaunchTemplateSpecification": {
                        "LaunchTemplateName": names.launch_template(template_kind(types[0])),
                        "Version": "$Default",
                    },
                    "Overrides": overrides(names, types),
                },
                "InstancesDistribution": {  # (on-demand in this order: Kickstart.first_in)
                    **group["MixedInstancesPolicy"]["InstancesDistribution"],
                    "OnDemandAllocationStrategy": "prioritized",
                },
            }
            size = {} if wanted is None else {
                "MaxSize": max(group["MaxSize"], wanted), "DesiredCapacity": wanted
            }  # fmt: skip
            self.autoscaling.update_auto_scaling_group(
                AutoScalingGroupName=group_name,
                MixedInstancesPolicy=policy,  # (whole: a partial one is dropped)
                **size,
            )

    # Watching placement: scaling activities, and Spot falling back to on-demand -----------

    def describe(self, worker_ids: list[str]) -> list[WorkerInfo]:
        infos = [self._moved_info(info) for info in super().describe(worker_ids)]
        self._watch_placement(infos)
        return infos

    def _moved_info(self, info: WorkerInfo) -> WorkerInfo:
        """A worker stopped to move to on-demand stopped for the provider's want of capacity:
        like a Spot interruption, its stop uses up no attempt of its items."""
        if info.worker_id not in self._moved or info.state != "stopped":
            return info
        return dataclasses.replace(info, fault="interrupted", reason=_MOVED)

    def _watch_placement(self, infos: list[WorkerInfo]) -> None:
        """While workers wait for instances: say what the groups' failed scaling activities
        say (AWS reports Spot shortages, quota limits and unavailable types only there), and
        move Spot workers that waited ``spot_patience`` seconds to on-demand instances."""
        provisioning = self.phases["PROVISIONING"]
        waiting = [i for i in infos if i.state == "pending" and i.phase == provisioning]
        now = time.monotonic()
        if waiting and now - self._activities_read >= _ACTIVITY_SECONDS:
            self._activities_read = now
            self._read_scaling_activities()
        spot_waiting = [i for i in waiting if i.spot]
        if not spot_waiting or self.spot_fallback:
            self._spot_waiting_since = None
            return
        self._spot_waiting_since = self._spot_waiting_since or now
        if now - self._spot_waiting_since >= _spot_patience():
            self._fall_back_to_on_demand([i.worker_id for i in spot_waiting])

    def _read_scaling_activities(self) -> None:
        """One notice per failed scaling activity of starburst's groups since this session
        opened: what AWS said, and what to do about it."""
        for capacity, group in self.ec2["groups"].items():
            with translate_errors(f"read the scaling activities of {group}"):
                activities = self.autoscaling.describe_scaling_activities(
                    AutoScalingGroupName=group, MaxRecords=20
                )["Activities"]
            for activity in activities:
                if activity["ActivityId"] in self._activities_seen:
                    continue
                self._activities_seen.add(activity["ActivityId"])
                started = activity.get("StartTime")
                if started is not None and started.timestamp() < self._opened:
                    continue
                if activity.get("StatusCode") in ("Failed", "Cancelled"):
                    self._notices.append(_activity_notice(capacity, activity))

    def _fall_back_to_on_demand(self, worker_ids: list[str]) -> None:
        """Spot gave no instance in time: stop the waiting Spot workers (the driver starts
        others, on-demand from now on), start on-demand instances for them, and stop asking
        the Spot group for more than it runs."""
        self.spot_fallback = True
        patience = _spot_patience()
        self._notices.append(
            f"Spot found no instance for {len(worker_ids)} workers in {patience:g} s: moving "
            "them to on-demand instances (more `instance_types` give Spot more pools; the "
            "`spot_patience` setting changes the wait)"
        )
        self._moved.update(worker_ids)
        self.stop(worker_ids, grace=False)
        spot_group = self._group(spot=True)
        in_service = sum(1 for i in spot_group["Instances"] if i["LifecycleState"] == "InService")
        with self._or_managed_scaling():
            with translate_errors(f"stop asking {spot_group['AutoScalingGroupName']} for more"):
                self.autoscaling.update_auto_scaling_group(
                    AutoScalingGroupName=spot_group["AutoScalingGroupName"],
                    DesiredCapacity=min(spot_group["DesiredCapacity"], in_service),
                )
            if self._spec is not None:
                self._kick_start(self._spec, len(worker_ids), spot=False)

    # Scale to zero -------------------------------------------------------------------------

    def release_capacity(self, session_id: str) -> None:
        """Once the session's tasks have stopped (waiting up to ``_STOP_WAIT_SECONDS``),
        give back the empty instances (``release_idle``), unless they are kept warm: by this
        session's ``keep_warm`` (which moves the groups' warm time on) or an earlier one's."""
        deadline = time.monotonic() + _STOP_WAIT_SECONDS
        while any(info.state != "stopped" for info in self.find(session_id)):
            if time.monotonic() > deadline:
                break
            time.sleep(1.0)
        self._leave_groups(session_id)
        with translate_errors("keep the instances warm or give them back"):
            if self._move_warm_time(leave_behind=True) > time.time():
                return
        self.release_idle()

    def _leave_groups(self, session_id: str) -> None:
        """Take the session's need off the groups it recorded it on, and give each the
        types its other live sessions need (a group no session needs keeps its types)."""
        for capacity in self.ec2["groups"]:
            group = self._group(capacity == "spot")
            needs = recorded_needs(group)
            if session_id not in needs:
                continue
            del needs[session_id]
            with translate_errors(f"take this session's instance types off {capacity}"):
                forget_needs(self.autoscaling, group["AutoScalingGroupName"], [session_id])
            live = [n for s, n in needs.items() if is_fresh(n) or self._has_tasks(s)]
            if live:
                self._set_group(group, group_types(live))

    def release_idle(self) -> None:
        """Terminate every instance of starburst's groups that runs no task, registered
        (drained first) or still booting (a managed-scaling step that came too late). None
        goes while a task in the cluster waits for an instance (a call starting on warm
        instances), and never one that runs another session's work."""
        with translate_errors("give back the empty instances"):
            if self._tasks_waiting():
                return
            groups = self.autoscaling.describe_auto_scaling_groups(
                AutoScalingGroupNames=list(self.ec2["groups"].values())
            )["AutoScalingGroups"]
            self._cancel_pending_launches(groups)
            empty, booting = self._idle_instances(groups)
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
            for instance_id, group in [*empty.values(), *booting.items()]:
                self.autoscaling.set_instance_protection(
                    AutoScalingGroupName=group,
                    InstanceIds=[instance_id],
                    ProtectedFromScaleIn=False,
                )
                self.autoscaling.terminate_instance_in_auto_scaling_group(
                    InstanceId=instance_id, ShouldDecrementDesiredCapacity=True
                )

    def _cancel_pending_launches(self, groups: list[dict[str, Any]]) -> None:
        """Lower a group (of ``groups``, as described) whose desired capacity is above the
        instances it has to those it has: with no task waiting, a launch still to come (a
        managed-scaling step taken for tasks that have since stopped) would start an
        instance that nobody needs and that nobody would give back until managed scaling's
        own scale-in, many minutes later."""
        for group in groups:
            up = sum(i["LifecycleState"] in _UP for i in group["Instances"])
            if group["DesiredCapacity"] > up:
                self.autoscaling.update_auto_scaling_group(
                    AutoScalingGroupName=group["AutoScalingGroupName"], DesiredCapacity=up
                )

    def _idle_instances(
        self, groups: list[dict[str, Any]]
    ) -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
        """The instances of starburst's ``groups`` (as described) that run and expect no
        task: registered ones (container instance ARN -> (instance id, group)) and those not
        registered yet (instance id -> group)."""
        group_of = {
            i["InstanceId"]: g["AutoScalingGroupName"]
            for g in groups
            for i in g["Instances"]
            if i["LifecycleState"] in _UP
        }
        empty: dict[str, tuple[str, str]] = {}
        registered: set[str] = set()
        for ci in self._container_instances():
            instance_id = ci["ec2InstanceId"]
            registered.add(instance_id)
            idle = ci["runningTasksCount"] + ci["pendingTasksCount"] == 0
            if idle and instance_id in group_of:
                empty[ci["containerInstanceArn"]] = (instance_id, group_of[instance_id])
        booting = {i: g for i, g in group_of.items() if i not in registered}
        return empty, booting

    def _container_instances(self) -> list[dict[str, Any]]:
        """Every container instance of the cluster, as ECS describes it."""
        arns = [
            arn
            for page in self.ecs.get_paginator("list_container_instances").paginate(
                cluster=self.cluster
            )
            for arn in page["containerInstanceArns"]
        ]
        return [
            ci
            for start in range(0, len(arns), 100)
            for ci in self.ecs.describe_container_instances(
                cluster=self.cluster, containerInstances=arns[start : start + 100]
            )["containerInstances"]
        ]

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


def _workers_left(remaining: list[dict[str, Any]], need: Need) -> int:
    """How many workers of ``need``'s size a container instance's remaining resources
    (as ECS describes them) take."""
    left = {
        r["name"]: len(r.get("stringSetValue") or [])
        if r.get("type") == "STRINGSET"
        else int(r.get("integerValue") or 0)
        for r in remaining
    }
    fits = [left.get("CPU", 0) // need.cpu_units, left.get("MEMORY", 0) // need.memory_mib]
    if need.gpus:
        fits.append(left.get("GPU", 0) // need.gpus)
    return max(0, min(fits))


def _spot_patience() -> float:
    """Seconds Spot workers may wait for an instance (the ``spot_patience`` setting)."""
    return float(resolve("spot_patience", None, default=SPOT_PATIENCE_SECONDS))


def _activity_notice(capacity: str, activity: dict[str, Any]) -> str:
    """A failed scaling activity as one line: what failed, AWS's reason, what to do."""
    message = " ".join(str(activity.get("StatusMessage") or activity.get("Cause") or "").split())
    lowered = message.lower()
    if "spot capacity" in lowered or "insufficient" in lowered:
        advice = "more `instance_types` give it more pools" + (
            "; its workers move to on-demand if none comes" if capacity == "spot" else ""
        )
    elif "vcpu" in lowered or "limit" in lowered:
        advice = "`starburst quota` shows the EC2 vCPU quotas; AWS raises them on request"
    else:
        advice = "other `instance_types` may be offered where this one is not"
    return f"the {capacity} instances could not start: {message[:300]} ({advice})"


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
    chosen = {
        "gpus": spec.gpus,
        "instance_types": list(spec.instance_types),
        "arch": spec.arch,
        "keep_warm": spec.keep_warm,
    }
    return place_session(Ec2Fleet, spec, session_id, check=ec2_resources, chosen=chosen)


def discard_unreadable_on_ec2(store: Store, session_id: str) -> None:
    """Remove a session whose record cannot be read: its EC2 tasks, definitions, role and
    data, and the instances it leaves empty."""
    discard_unreadable(Ec2Fleet, store, session_id)
